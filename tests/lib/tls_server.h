/*
 * tls_server.h - a loopback test server, plain or TLS (GnuTLS), for tests.
 *
 * tls_server_start() listens on an ephemeral port of 127.0.0.1 or ::1 and
 * starts a thread that accepts ONE connection, performs the TLS handshake
 * at once when `implicit_tls` is set, then runs the caller's handler (or,
 * without one, echoes everything back until the peer closes).  The handler
 * talks to the client with tls_server_read/_read_line/_write and may call
 * tls_server_start_tls() on command (STARTTLS).
 *
 * Every wait (accept, handshake, read, write) is bounded by timeout_ms.
 * tls_server_stop() shuts the sockets down, joins the thread and returns
 * the handler's result; tls_server_free() releases everything (and stops
 * first if needed).  Details of the last handshake stay readable until free.
 */
#ifndef DEVMAIL_TESTS_TLS_SERVER_H
#define DEVMAIL_TESTS_TLS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct tls_server;
struct tls_server_conn;

/* Runs in the server thread with the accepted connection; its return value
 * (0 = the script went as expected) is what tls_server_stop() returns. */
typedef int (*tls_server_fn)(struct tls_server_conn *c, void *arg);

struct tls_server_opts {
	int family;            /* AF_INET (also when 0) or AF_INET6 */
	const char *cert;      /* PEM certificate (chain) file; NULL: no TLS */
	const char *key;       /* PEM private key file */
	bool implicit_tls;     /* handshake right after accept */
	const char *priority;  /* GnuTLS priority string; NULL: "NORMAL" */
	int timeout_ms;        /* each accept/handshake/read/write; <=0: 10 s */
	tls_server_fn fn;      /* NULL: echo until the peer closes */
	void *arg;
};

/* Listens and starts the thread.  Returns 0, or -1 with a message in
 * errbuf (may be NULL). */
int tls_server_start(const struct tls_server_opts *o, struct tls_server **out,
                     char *errbuf, size_t errcap);
unsigned tls_server_port(const struct tls_server *s);

/* Stops and joins (idempotent).  Returns the handler's result, or -1 when
 * no connection came, the implicit handshake failed, or the echo failed. */
int tls_server_stop(struct tls_server *s);
void tls_server_free(struct tls_server *s);

/* After stop: why the server side failed ("" when it did not). */
const char *tls_server_error(const struct tls_server *s);
/* After stop: negotiated version ("TLS1.3") or "" when TLS never came up. */
const char *tls_server_version(const struct tls_server *s);
/* After stop: server-side channel bindings from the handshake (size 0 when
 * not available).  type: "tls-unique" or "tls-exporter". */
size_t tls_server_channel_binding(const struct tls_server *s, const char *type,
                                  unsigned char *out, size_t cap);

/* In the handler.  read: > 0 bytes, 0 peer closed, -1 error or timeout. */
ssize_t tls_server_read(struct tls_server_conn *c, void *buf, size_t cap);
/* Reads one line up to and including "\n" (NUL-terminated, CRLF kept).
 * Returns its length, 0 on close before any byte, -1 on error/timeout/cap. */
ssize_t tls_server_read_line(struct tls_server_conn *c, char *buf, size_t cap);
/* Writes everything; 0 or -1. */
int tls_server_write(struct tls_server_conn *c, const void *buf, size_t len);
int tls_server_writes(struct tls_server_conn *c, const char *text);
/* Server-side TLS handshake now (after "220 Ready to start TLS").  0 / -1. */
int tls_server_start_tls(struct tls_server_conn *c);
/* Reads until the peer closes (discarding data); 0 on close, -1 otherwise. */
int tls_server_wait_close(struct tls_server_conn *c);
int tls_server_conn_fd(const struct tls_server_conn *c);

/* SHA-256 of the first certificate in a PEM file, lowercase hex with colons
 * (95 chars + NUL).  0 or -1. */
int tls_server_fingerprint(const char *pem_file, char out[96]);

/* Runs tests/lib/pki.sh (from $DEVMAIL_SOURCE_DIR) into dir.  0 or -1. */
int tls_server_make_pki(const char *dir);

#endif
