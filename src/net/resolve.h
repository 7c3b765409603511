/*
 * resolve.h - name resolution for transport_connect() that a deadline and
 * a cancel can interrupt.
 *
 * getaddrinfo(3) blocks for as long as the resolver likes (retries over
 * every name server in resolv.conf) and nothing interrupts it.  Numeric
 * addresses are converted at once; a name is resolved in a short-lived
 * detached thread while the caller waits in the one poll loop
 * (transport_poll_until) on an eventfd, its deadline and its cancel.  A
 * caller that gives up leaves the thread to finish on its own and free the
 * job (a reference count of two: caller and thread).
 */
#ifndef DEVMAIL_NET_RESOLVE_H
#define DEVMAIL_NET_RESOLVE_H

#include <netdb.h>
#include "core/err.h"

struct cancel;

/* Resolves host for a TCP connect to `port` (AF_UNSPEC: IPv6 and IPv4 in
 * the resolver's order).  `peer` names the destination in messages
 * ("smtp.example.com:587").  Waits at most until deadline_ms
 * (transport_now_ms() scale).  On success *out is a list for
 * freeaddrinfo().  Errors: DM_ENET (the name does not resolve, or the
 * resolver failed), DM_ETIMEOUT, DM_ECANCELED, DM_ENOMEM. */
enum dm_status resolve_tcp(const char *host, unsigned port, const char *peer,
                           long deadline_ms, const struct cancel *cancel,
                           struct addrinfo **out, struct dm_err *err);

#endif
