/*
 * transport_ops.h - private to the transport: the handle layout and the
 * table of operations with a plain and a TLS implementation.
 *
 * Only transport.c and net/tls.c include this file.  The handle's
 * `ops` pointer is the only place "plain or TLS?" is decided: read and write
 * sites call through it.  transport_start_tls() swaps the table in place.
 */
#ifndef DEVMAIL_NET_TRANSPORT_OPS_H
#define DEVMAIL_NET_TRANSPORT_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"
#include "net/transport.h"

#define TRANSPORT_OBUF 16384   /* one full TLS record (RFC 8446 5.1) */

struct transport_ops {
	const char *name;
	/* Reads up to cap bytes into buf, waiting at most until deadline_ms
	 * (transport_now_ms() scale); *got == 0 means the peer closed. */
	enum dm_status (*read)(struct transport *t, void *buf, size_t cap,
	                       long deadline_ms, size_t *got, struct dm_err *err);
	/* Sends len bytes (len <= TRANSPORT_OBUF) as one send()/one record,
	 * retrying only on partial writes; counts stats.writes. */
	enum dm_status (*send)(struct transport *t, const void *buf, size_t len,
	                       struct dm_err *err);
	/* Releases the layer's state (TLS: close_notify, session free). */
	void (*close)(struct transport *t);
};

struct transport {
	int fd;
	int timeout_ms;
	const struct transport_ops *ops;
	void *tls;                 /* struct transport_tls *, owned by net/tls.c */
	char host[256];
	unsigned port;
	bool verify;
	bool system_trust;
	char *cafile;              /* owned copies, NULL when unset */
	char *fingerprint;
	struct transport_stats stats;
	struct transport_tls_info info;
	size_t olen;
	unsigned char obuf[TRANSPORT_OBUF];
};

/* The plain table (transport.c). */
extern const struct transport_ops transport_plain_ops;

/* poll() for `events` (POLLIN/POLLOUT) until ready or `deadline_ms`
 * passes; EINTR restarts with the time left.  Returns 1 ready, 0 timeout,
 * -1 error (errno).  The one poll loop of both implementations. */
int transport_poll_until(int fd, short events, long deadline_ms);

/* Waits until fd is ready for `events` (POLLIN/POLLOUT) or deadline_ms
 * passes.  DM_ETIMEOUT, DM_ENET. */
enum dm_status transport_wait(struct transport *t, short events,
                              long deadline_ms, const char *what,
                              struct dm_err *err);

/* Re-arms TCP_QUICKACK (Linux resets it after each ACK decision). */
void transport_quickack(int fd);

/* Formats "host:port" ("[::1]:25" for IPv6 literals) into out[cap]. */
void transport_peer_name(const struct transport *t, char *out, size_t cap);

/* TLS side (net/tls.c): handshake on t->fd, verify, and on success
 * install the TLS table on the handle. */
enum dm_status transport_tls_handshake(struct transport *t, struct dm_err *err);

/* Channel binding data from the TLS layer (net/tls.c). */
enum dm_status transport_tls_channel_binding(struct transport *t,
                                             const char *type,
                                             unsigned char *out, size_t cap,
                                             size_t *len, struct dm_err *err);

#endif
