/*
 * transport.h - the byte pipe under a session: plain TCP or TLS, client or
 * server end.
 *
 * One handle; STARTTLS upgrades the same handle in place, in either role.
 * Read and write sites never ask "is this TLS?": the handle dispatches
 * through a table of operations (start_tls, read, send, close) with a plain
 * and a TLS implementation.  GnuTLS is named only in net/tls.c.
 *
 * Client handles come from transport_connect() (or transport_from_fd());
 * server handles from listener_accept() (net/listener.h), owned by the
 * server that accepted them.  On a server handle transport_start_tls()
 * runs the server side of the handshake with the listener's certificate
 * (net/server_cert.h).
 *
 * Writes are buffered and coalesced into whole TLS records (up to 16 KiB):
 * transport_write() only appends; transport_flush() sends.  TCP_NODELAY is
 * on, and TCP_QUICKACK is re-armed after every read from the socket on
 * Linux, TLS records the library consumed on its own included.
 *
 * Every wait can be cancelled (settings.cancel, net/cancel.h): it then
 * returns DM_ECANCELED and the handle is only good for transport_close().
 * A cancelled write or flush may have sent part of the buffer: whatever it
 * carried must not be recorded as delivered.
 */
#ifndef DEVMAIL_NET_TRANSPORT_H
#define DEVMAIL_NET_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "core/err.h"

struct transport;
struct cancel;
struct server_cert;

enum transport_role {
	TRANSPORT_CLIENT = 0,      /* we connected; start_tls is a TLS client */
	TRANSPORT_SERVER,          /* we accepted; start_tls is a TLS server */
};

struct transport_settings {
	const char *host;          /* name or address; also SNI and verify name */
	unsigned port;
	int timeout_ms;            /* resolve, connect, handshake, each read/flush;
	                            * <=0: 60 s */
	bool verify;               /* verify chain + host name (default true) */
	const char *cafile;        /* extra trust anchors (PEM) or NULL */
	const char *fingerprint;   /* SHA-256 pin, 64 hex digits (colons ok), or NULL */
	bool system_trust;         /* also trust the system store (default true) */
	struct cancel *cancel;     /* NULL: none.  Borrowed: it must outlive the
	                            * handle */
	/* transport_from_fd() only (the listener sets these on what it
	 * accepts): the server end of a connection.  verify, cafile,
	 * fingerprint and system_trust do not apply to it; host and port name
	 * the peer in messages. */
	enum transport_role role;
	struct server_cert *server_cert; /* our certificate for start_tls; the
	                            * handle takes a reference.  NULL: plain only */
};

/* What was negotiated, filled after a successful handshake.  On a server
 * handle only active, version and cipher are set: clients present no
 * certificate, so the peer fields stay empty and verified false. */
struct transport_tls_info {
	bool active;               /* TLS is on */
	char version[16];          /* "TLS1.3" */
	char cipher[96];           /* "AES-256-GCM" or the suite name */
	bool verified;             /* chain + host name verified (or pin matched) */
	bool pinned;               /* the SHA-256 pin matched */
	char verify_error[256];    /* why verification failed, "" when verified */
	char subject[256];         /* peer certificate subject DN */
	char fingerprint[96];      /* peer certificate SHA-256, lowercase hex with colons */
};

/* Resolves host (getaddrinfo in a helper thread, IPv6 and IPv4, bounded by
 * the timeout and the cancel), tries each address in turn with the connect
 * timeout, returns a plain client handle, which the caller owns.
 * Errors: DM_ENET, DM_ETIMEOUT, DM_ECANCELED, DM_ENOMEM, DM_ECONFIG (no
 * host, port out of range), DM_EINVAL (role is not TRANSPORT_CLIENT). */
enum dm_status transport_connect(const struct transport_settings *s,
                                 struct transport **out, struct dm_err *err);

/* Wraps an already connected socket (tests, socketpair, a socket handed
 * over by a supervisor) in the role s->role.  Takes ownership of fd, also
 * on failure.  Errors: DM_EINVAL (fd < 0), DM_ENOMEM. */
enum dm_status transport_from_fd(int fd, const struct transport_settings *s,
                                 struct transport **out, struct dm_err *err);

/* Starts TLS on the handle, the same call in both roles: implicit TLS right
 * after connect/accept, or STARTTLS after the 220 reply.  Buffered
 * cleartext is flushed first.
 * Client role: the TLS client handshake; fails with DM_EPROTO if the kernel
 * already holds bytes from the peer (STARTTLS response injection, RFC 3207
 * section 4.2).  Verification (see net/tls.c for the policy): chain to the
 * system store (system_trust) plus cafile, and host name (IP literals
 * against IP SANs).  A SHA-256 pin, when set, must match the leaf or the
 * handshake fails even with verify off; when it matches the certificate is
 * accepted even if its chain is not trusted (how a self-signed server is
 * trusted).  verify == false without a pin accepts anything, with
 * tls_info.verified false and the reason in tls_info.verify_error.
 * Server role: the TLS server handshake with the handle's server_cert (no
 * client certificate asked).  Bytes the client already sent are its
 * ClientHello, so there is no injection check here: cleartext the server
 * read past its STARTTLS command is the server's to refuse.
 * Either role: TLS 1.2 and 1.3 only; the handshake is bounded by the
 * timeout.  On failure the handle is only good for transport_close().
 * Errors: DM_ETLS (handshake, verification, pin mismatch), DM_ETIMEOUT,
 * DM_ECANCELED, DM_ENET, DM_EPROTO (injection; TLS already active),
 * DM_ECONFIG (unreadable cafile, malformed pin, server handle without a
 * certificate). */
enum dm_status transport_start_tls(struct transport *t, struct dm_err *err);

/* Client role: does now, ahead of transport_start_tls(), the part of the
 * TLS handshake that does not need the peer: the cafile's anchors read, the
 * session made and set up.  A STARTTLS client calls it right after
 * connecting, before it reads the greeting, so that this work (~1 ms cold,
 * mostly first use of the TLS library's code) overlaps the server's three
 * replies (greeting, EHLO, STARTTLS) instead of following them.  Best
 * effort, nothing to report: what fails here is done again by
 * transport_start_tls(), which reports it as it always did; a prepared
 * session that is never started is freed by transport_close().  No-op on
 * a server handle and once TLS is active or prepared. */
void transport_prepare_tls(struct transport *t);

/* Reads up to cap bytes, waiting at most the timeout.  Returns the count
 * (> 0) in *got; *got == 0 means the peer closed.  The timeout bounds this
 * one call: a peer sending a byte now and then keeps each call short, so a
 * caller that needs a bound on a whole exchange uses transport_read_until().
 * Errors: DM_ETIMEOUT, DM_ECANCELED, DM_ENET, DM_ETLS. */
enum dm_status transport_read(struct transport *t, void *buf, size_t cap,
                              size_t *got, struct dm_err *err);

/* Milliseconds on the monotonic clock that deadlines are given on. */
long transport_now_ms(void);

/* transport_read() waiting at most until deadline_ms (transport_now_ms()
 * scale) instead of the handle's timeout.  Bytes already received are
 * returned even when the deadline has passed.  Errors: as transport_read(). */
enum dm_status transport_read_until(struct transport *t, void *buf, size_t cap,
                                    long deadline_ms, size_t *got,
                                    struct dm_err *err);

/* Appends to the output buffer, sending whole records when it fills.
 * Errors: DM_ENET, DM_ETIMEOUT, DM_ECANCELED, DM_ETLS. */
enum dm_status transport_write(struct transport *t, const void *buf,
                               size_t len, struct dm_err *err);

/* Sends everything buffered, then wipes the buffer's used bytes (they may
 * hold an AUTH payload).  Each wait for the peer to take bytes is bounded by
 * the timeout.  DM_ECANCELED may come after part of the buffer left: the
 * stream is then broken, and what it carried must count as not sent.
 * Errors: DM_ENET, DM_ETIMEOUT, DM_ECANCELED, DM_ETLS. */
enum dm_status transport_flush(struct transport *t, struct dm_err *err);

/* Injection has two halves: bytes already moved into the session's own
 * read buffer are the session's to refuse (it must not call
 * transport_start_tls() while that buffer holds anything after the 220);
 * bytes still in the kernel are refused by transport_start_tls(). */

/* TLS details (active == false on a plain connection).  Never NULL. */
const struct transport_tls_info *transport_tls_info(const struct transport *t);

/* tls-unique / tls-exporter channel binding data for SCRAM-*-PLUS, written
 * into out[cap], *len set.  `type` is "tls-unique" or "tls-exporter".
 * Errors: DM_ENOTFOUND when not available (plain, or TLS 1.3 tls-unique). */
enum dm_status transport_channel_binding(struct transport *t, const char *type,
                                         unsigned char *out, size_t cap,
                                         size_t *len, struct dm_err *err);

/* Counts for tests and the benchmark: send calls made, bytes sent. */
struct transport_stats {
	unsigned long writes;      /* send()/record writes issued */
	unsigned long flushes;     /* flights sent */
	unsigned long bytes_out;
	unsigned long bytes_in;    /* application bytes returned by reads */
	unsigned long quickacks;   /* TCP_QUICKACK re-arms: one per recv() that
	                            * got bytes, handshake and TLS records the
	                            * library consumed on its own included */
};
const struct transport_stats *transport_stats(const struct transport *t);

/* The socket fd (for poll in callers); -1 when closed. */
int transport_fd(const struct transport *t);

/* Sends close_notify when TLS is active (bounded: at most 1 s, not at all
 * once cancelled), closes the socket, frees.  NULL ok. */
void transport_close(struct transport *t);

#endif
