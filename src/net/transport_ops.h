/*
 * transport_ops.h - private to net/: the handle layout, the table of
 * operations with a plain and a TLS implementation, the one poll loop, and
 * the hooks between transport.c, tls.c, listener.c and server_cert.c.
 *
 * The handle's `ops` pointer is the only place "plain or TLS?" is decided:
 * read, write and start_tls sites call through it.  A successful
 * start_tls swaps the table in place.
 */
#ifndef DEVMAIL_NET_TRANSPORT_OPS_H
#define DEVMAIL_NET_TRANSPORT_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <poll.h>
#include "core/err.h"
#include "net/transport.h"

#define TRANSPORT_OBUF 16384   /* one full TLS record (RFC 8446 5.1) */
#define TRANSPORT_POLL_MAX 16  /* descriptors one wait may watch (listener) */
#define TRANSPORT_POLL_CANCELED (-2)

struct transport_ops {
	const char *name;
	/* Starts TLS on the handle (the role decides client or server) and
	 * installs the TLS table; the TLS table's entry refuses (DM_EPROTO:
	 * already active). */
	enum dm_status (*start_tls)(struct transport *t, struct dm_err *err);
	/* Reads up to cap bytes into buf, waiting at most until deadline_ms
	 * (transport_now_ms() scale); *got == 0 means the peer closed.
	 * Re-arms TCP_QUICKACK after every recv() that got bytes. */
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
	enum transport_role role;
	struct server_cert *cert;  /* server role: a reference, or NULL */
	struct cancel *cancel;     /* borrowed, or NULL */
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

/* The one poll loop of net/: waits until one of fds[n] (n <=
 * TRANSPORT_POLL_MAX) is ready, deadline_ms (transport_now_ms() scale)
 * passes, or `cancel` fires (NULL: none), polling the cancel's eventfd next
 * to the sockets.  EINTR restarts with the time left (bounded in count).
 * A fired cancel wins over ready sockets and is checked before polling.
 * Returns > 0 ready (fds[].revents set), 0 timeout, TRANSPORT_POLL_CANCELED,
 * -1 error (errno). */
int transport_poll_set(struct pollfd *fds, size_t n, long deadline_ms,
                       const struct cancel *cancel);

/* transport_poll_set() on one descriptor for `events` (POLLIN/POLLOUT).
 * Returns 1 ready, 0 timeout, TRANSPORT_POLL_CANCELED, -1 error (errno). */
int transport_poll_until(int fd, short events, long deadline_ms,
                         const struct cancel *cancel);

/* Waits until t->fd is ready for `events` or deadline_ms passes, watching
 * the handle's cancel.  `what` starts the message ("read from").
 * DM_ETIMEOUT, DM_ECANCELED, DM_ENET. */
enum dm_status transport_wait(struct transport *t, short events,
                              long deadline_ms, const char *what,
                              struct dm_err *err);

/* Re-arms TCP_QUICKACK on t->fd (Linux leaves quick-ACK mode after each
 * ACK decision) and counts it in stats.quickacks.  Called after every
 * recv() that got bytes, by both tables and by the TLS pull function. */
void transport_quickack(struct transport *t);

/* Formats "host:port" ("[::1]:25" for IPv6 literals) into out[cap]. */
void transport_peer_name(const struct transport *t, char *out, size_t cap);

/* TLS side (net/tls.c): the handshake on t->fd in t->role (client: verify
 * per the settings; server: with t->cert), and on success the TLS table
 * installed on the handle.  Errors: see transport_start_tls(). */
enum dm_status transport_tls_handshake(struct transport *t, struct dm_err *err);

/* The handshake's setup done early on a client handle (net/tls.c): t->tls
 * holds a session ready for transport_tls_handshake(), or stays NULL when
 * anything failed.  transport_tls_discard() frees a session that never
 * became active (the handle is closed still in clear). */
void transport_tls_prepare(struct transport *t);
void transport_tls_discard(struct transport *t);

/* Channel binding data from the TLS layer (net/tls.c). */
enum dm_status transport_tls_channel_binding(struct transport *t,
                                             const char *type,
                                             unsigned char *out, size_t cap,
                                             size_t *len, struct dm_err *err);

/* ---- server credentials ------------------------------------------------ */

/* A certificate chain and its private key, loaded into the TLS library
 * (net/tls.c). */
struct transport_tls_creds;

/* Loads PEM texts: cert[cert_len] (leaf first, then any chain) and
 * key[key_len].  The key text is only read (the caller wipes it).  `what`
 * names the source in messages.  Errors: DM_ECONFIG (unparsable, or the key
 * does not match the certificate), DM_ENOMEM. */
enum dm_status transport_tls_creds_new(const char *cert, size_t cert_len,
                                       const char *key, size_t key_len,
                                       const char *what,
                                       struct transport_tls_creds **out,
                                       struct dm_err *err);
void transport_tls_creds_free(struct transport_tls_creds *c);

/* net/server_cert.c: one more reference (transports and listeners hold
 * one each; server_cert_free() drops one), and the loaded credentials. */
struct server_cert *server_cert_ref(struct server_cert *c);
struct transport_tls_creds *server_cert_creds(const struct server_cert *c);

#endif
