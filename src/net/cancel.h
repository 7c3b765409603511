/*
 * cancel.h - one switch that stops every wait of the network layer.
 *
 * A daemon shutting down (SIGTERM) must not sit out a 60 s SMTP timeout or
 * a blocked accept.  A cancel handle is an eventfd that every wait of the
 * transport and the listener polls next to its socket (transport_poll_until,
 * the one poll loop of net/).  cancel_fire() makes it readable and it stays
 * so: every connect (name resolution included), read, write/flush, TLS
 * handshake and accept blocked on it, now or later, returns DM_ECANCELED at
 * once.  One handle may be shared by any number of transports and
 * listeners, in any threads.
 *
 * What a cancelled operation leaves: the handle is only good for
 * transport_close() / listener_close().  Bytes may have been half sent, so
 * a caller must never record a message as sent after DM_ECANCELED (the SMTP
 * layer keeps it queued: it was not acknowledged by the 250 to the final
 * dot).
 */
#ifndef DEVMAIL_NET_CANCEL_H
#define DEVMAIL_NET_CANCEL_H

#include <stdbool.h>
#include "core/err.h"

struct cancel;

/* Makes an unfired handle.  Free with cancel_free() after every transport
 * and listener that was given it is closed.  Errors: DM_ENOMEM, DM_EIO
 * (eventfd failed: out of descriptors). */
enum dm_status cancel_new(struct cancel **out, struct dm_err *err);

/* Fires the handle: every wait on it ends with DM_ECANCELED within one poll
 * wake-up.  Idempotent.  Async-signal-safe (one atomic store and one
 * write(2); errno is preserved), so a SIGTERM handler may call it.  NULL is
 * a no-op. */
void cancel_fire(struct cancel *c);

/* True once cancel_fire() was called.  Async-signal-safe.  NULL: false. */
bool cancel_fired(const struct cancel *c);

/* The descriptor to poll for POLLIN next to one's own (readable once
 * fired, never read by anyone so it stays readable), or -1 for NULL. */
int cancel_fd(const struct cancel *c);

/* Closes the eventfd and frees.  NULL ok. */
void cancel_free(struct cancel *c);

#endif
