/*
 * listener.h - the server role: listening sockets that accept transports.
 *
 * A listener binds a list of addresses (IPv4 and IPv6 literals with a port,
 * "127.0.0.1:2525", "[::1]:2525", "[::]:990"; port 0 picks a free one, see
 * listener_port()) and listener_accept() waits on all of them at once for
 * the next connection, with a deadline and the cancel.  What it yields is a
 * server-role transport (net/transport.h) that the caller (the server) owns
 * and closes: plain, or with TLS already started when the listener is for
 * implicit TLS (FTPS 990, SMTPS 465, HTTPS).  A plain server handle is
 * upgraded in place by transport_start_tls() after the protocol's STARTTLS
 * or AUTH TLS reply, with the listener's certificate (net/server_cert.h).
 */
#ifndef DEVMAIL_NET_LISTENER_H
#define DEVMAIL_NET_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"

struct listener;
struct transport;
struct cancel;
struct server_cert;

#define LISTENER_MAX_ADDRS 8   /* addresses one listener binds */
#define LISTENER_BACKLOG 64    /* pending connections per address (default) */

struct listener_settings {
	const char *const *addrs;  /* "IPv4:port" or "[IPv6]:port", literals */
	size_t n_addrs;            /* 1..LISTENER_MAX_ADDRS */
	int backlog;               /* <= 0: LISTENER_BACKLOG */
	bool implicit_tls;         /* TLS server handshake inside accept */
	struct server_cert *cert;  /* for implicit TLS and for start_tls on the
	                            * accepted handles; the listener and each
	                            * handle take a reference.  NULL: plain only */
	int timeout_ms;            /* accepted handles: handshake, each read and
	                            * flush; <= 0: 60 s */
	struct cancel *cancel;     /* accept and the accepted handles; NULL: none.
	                            * Borrowed: it must outlive them all */
};

/* Binds and listens on every address (SO_REUSEADDR; IPv6 sockets are
 * IPv6-only, so "[::]:25" and "0.0.0.0:25" can both be given).  The caller
 * owns the listener.  Errors: DM_ECONFIG (no address, too many, not a
 * literal with a port, implicit_tls without a certificate), DM_ENET
 * (socket, bind, listen: "address already in use" and the like), DM_ENOMEM.
 * On error nothing stays bound. */
enum dm_status listener_open(const struct listener_settings *s,
                             struct listener **out, struct dm_err *err);

/* Number of bound addresses (n_addrs of the settings). */
size_t listener_count(const struct listener *l);

/* The port addrs[i] is bound to (the one the kernel chose for port 0); 0
 * when i is out of range. */
unsigned listener_port(const struct listener *l, size_t i);

/* Waits until deadline_ms (transport_now_ms() scale) for a connection on
 * any of the addresses and accepts it into *out, a server-role transport the
 * caller owns (transport_close()).  With implicit_tls the TLS handshake is
 * done here, bounded by timeout_ms; a server that must not be held by a
 * slow client's handshake turns implicit_tls off and calls
 * transport_start_tls() on the handle in the session's own thread.
 * Errors: DM_ETIMEOUT, DM_ECANCELED, DM_ENET (accept failed: out of
 * descriptors and the like; the caller may back off and call again),
 * DM_ENOMEM, and the handshake's errors (DM_ETLS, DM_ETIMEOUT, DM_ENET,
 * DM_ECANCELED) with the peer named: that connection is closed, the
 * listener stays good. */
enum dm_status listener_accept(struct listener *l, long deadline_ms,
                               struct transport **out, struct dm_err *err);

/* Closes every listening socket and frees; handles already accepted stay
 * good.  NULL ok. */
void listener_close(struct listener *l);

#endif
