/*
 * tls_server.c - loopback plain/TLS test server in a thread (GnuTLS).
 * See tls_server.h.  Test code only: src/ names GnuTLS in one file, tests
 * may use it directly to play the server side of real handshakes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "tls_server.h"

#define TLS_SERVER_DEFAULT_TIMEOUT_MS 10000
#define TLS_SERVER_CB_MAX 64

struct tls_server_conn {
	struct tls_server *s;
	int fd;
	gnutls_session_t session;  /* NULL while plain */
};

struct tls_server {
	struct tls_server_opts o;
	char *cert, *key, *priority;
	int lfd;
	unsigned port;
	pthread_t thread;
	bool running;
	int result;
	struct tls_server_conn conn;
	gnutls_certificate_credentials_t cred;
	char err[512];
	char version[32];
	unsigned char cb_unique[TLS_SERVER_CB_MAX];
	size_t cb_unique_len;
	unsigned char cb_exporter[TLS_SERVER_CB_MAX];
	size_t cb_exporter_len;
};

static void tls_server_fail(struct tls_server *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void tls_server_fail(struct tls_server *s, const char *fmt, ...)
{
	if (s->err[0] != '\0')
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
}

static void tls_server_capture_cb(struct tls_server *s, gnutls_session_t ses,
                                  gnutls_channel_binding_t type,
                                  unsigned char *out, size_t *len)
{
	gnutls_datum_t cb = { NULL, 0 };
	*len = 0;
	if (gnutls_session_channel_binding(ses, type, &cb) < 0)
		return;
	if (cb.size <= TLS_SERVER_CB_MAX) {
		memcpy(out, cb.data, cb.size);
		*len = cb.size;
	}
	gnutls_free(cb.data);
	(void)s;
}

int tls_server_start_tls(struct tls_server_conn *c)
{
	struct tls_server *s = c->s;
	if (s->cred == NULL) {
		tls_server_fail(s, "start_tls: no certificate configured");
		return -1;
	}
	if (c->session != NULL) {
		tls_server_fail(s, "start_tls: TLS already active");
		return -1;
	}
	gnutls_session_t ses;
	if (gnutls_init(&ses, GNUTLS_SERVER | GNUTLS_NO_SIGNAL) < 0) {
		tls_server_fail(s, "gnutls_init failed");
		return -1;
	}
	const char *where = NULL;
	int rc = gnutls_priority_set_direct(ses, s->priority, &where);
	if (rc >= 0)
		rc = gnutls_credentials_set(ses, GNUTLS_CRD_CERTIFICATE, s->cred);
	if (rc < 0) {
		tls_server_fail(s, "server TLS setup: %s", gnutls_strerror(rc));
		gnutls_deinit(ses);
		return -1;
	}
	gnutls_certificate_server_set_request(ses, GNUTLS_CERT_IGNORE);
	gnutls_transport_set_int(ses, c->fd);
	gnutls_handshake_set_timeout(ses, (unsigned)s->o.timeout_ms);
	gnutls_record_set_timeout(ses, (unsigned)s->o.timeout_ms);
	for (int tries = 0; tries < 100; tries++) {
		rc = gnutls_handshake(ses);
		if (rc == 0 || gnutls_error_is_fatal(rc) || rc == GNUTLS_E_AGAIN)
			break;
	}
	if (rc != 0) {
		tls_server_fail(s, "server handshake: %s", gnutls_strerror(rc));
		gnutls_deinit(ses);
		return -1;
	}
	c->session = ses;
	const char *v = gnutls_protocol_get_name(gnutls_protocol_get_version(ses));
	snprintf(s->version, sizeof(s->version), "%s", v != NULL ? v : "?");
	tls_server_capture_cb(s, ses, GNUTLS_CB_TLS_UNIQUE, s->cb_unique,
	                      &s->cb_unique_len);
	tls_server_capture_cb(s, ses, GNUTLS_CB_TLS_EXPORTER, s->cb_exporter,
	                      &s->cb_exporter_len);
	return 0;
}

ssize_t tls_server_read(struct tls_server_conn *c, void *buf, size_t cap)
{
	for (int tries = 0; tries < 100; tries++) {
		if (c->session != NULL) {
			ssize_t r = gnutls_record_recv(c->session, buf, cap);
			if (r >= 0)
				return r;
			if (r == GNUTLS_E_INTERRUPTED)
				continue;
			if (r == GNUTLS_E_PREMATURE_TERMINATION)
				return 0;
			tls_server_fail(c->s, "server read: %s", gnutls_strerror((int)r));
			return -1;
		}
		ssize_t r = recv(c->fd, buf, cap, 0);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		tls_server_fail(c->s, "server read: %s", strerror(errno));
		return -1;
	}
	return -1;
}

ssize_t tls_server_read_line(struct tls_server_conn *c, char *buf, size_t cap)
{
	size_t n = 0;
	/* One byte at a time so nothing past the line is consumed (a STARTTLS
	 * handshake must find the client's bytes still in the socket). */
	while (n + 1 < cap) {
		ssize_t r = tls_server_read(c, buf + n, 1);
		if (r < 0)
			return -1;
		if (r == 0) {
			buf[n] = '\0';
			return n == 0 ? 0 : -1;
		}
		if (buf[n++] == '\n') {
			buf[n] = '\0';
			return (ssize_t)n;
		}
	}
	tls_server_fail(c->s, "server read_line: line longer than %zu", cap);
	return -1;
}

int tls_server_write(struct tls_server_conn *c, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	for (int tries = 0; len > 0 && tries < 10000; tries++) {
		ssize_t r;
		if (c->session != NULL) {
			r = gnutls_record_send(c->session, p, len);
			if (r == GNUTLS_E_INTERRUPTED)
				continue;
			if (r < 0) {
				tls_server_fail(c->s, "server write: %s",
				                gnutls_strerror((int)r));
				return -1;
			}
		} else {
			r = send(c->fd, p, len, MSG_NOSIGNAL);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				tls_server_fail(c->s, "server write: %s", strerror(errno));
				return -1;
			}
		}
		p += r;
		len -= (size_t)r;
	}
	return len == 0 ? 0 : -1;
}

int tls_server_writes(struct tls_server_conn *c, const char *text)
{
	return tls_server_write(c, text, strlen(text));
}

int tls_server_wait_close(struct tls_server_conn *c)
{
	char buf[4096];
	for (int i = 0; i < 100000; i++) {
		ssize_t r = tls_server_read(c, buf, sizeof(buf));
		if (r == 0)
			return 0;
		if (r < 0)
			return -1;
	}
	return -1;
}

int tls_server_conn_fd(const struct tls_server_conn *c)
{
	return c->fd;
}

static int tls_server_echo(struct tls_server_conn *c, void *arg)
{
	(void)arg;
	char buf[4096];
	for (int i = 0; i < 100000; i++) {
		ssize_t r = tls_server_read(c, buf, sizeof(buf));
		if (r == 0)
			return 0;
		if (r < 0 || tls_server_write(c, buf, (size_t)r) != 0)
			return -1;
	}
	return -1;
}

static void *tls_server_main(void *arg)
{
	struct tls_server *s = arg;
	s->result = -1;
	struct pollfd p = { .fd = s->lfd, .events = POLLIN };
	int n;
	do
		n = poll(&p, 1, s->o.timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		tls_server_fail(s, "no connection within %d ms", s->o.timeout_ms);
		return NULL;
	}
	int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		tls_server_fail(s, "accept: %s", strerror(errno));
		return NULL;
	}
	struct timeval tv = { .tv_sec = s->o.timeout_ms / 1000,
	                      .tv_usec = (s->o.timeout_ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	s->conn.s = s;
	s->conn.fd = fd;
	s->conn.session = NULL;
	if (!s->o.implicit_tls || tls_server_start_tls(&s->conn) == 0)
		s->result = (s->o.fn != NULL ? s->o.fn : tls_server_echo)(&s->conn,
		                                                          s->o.arg);
	if (s->conn.session != NULL) {
		gnutls_bye(s->conn.session, GNUTLS_SHUT_WR);
		gnutls_deinit(s->conn.session);
		s->conn.session = NULL;
	}
	close(fd);
	s->conn.fd = -1;
	return NULL;
}

static char *tls_server_dup(const char *text)
{
	return text != NULL ? strdup(text) : NULL;
}

void tls_server_free(struct tls_server *s)
{
	if (s == NULL)
		return;
	tls_server_stop(s);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->cred != NULL)
		gnutls_certificate_free_credentials(s->cred);
	free(s->cert);
	free(s->key);
	free(s->priority);
	free(s);
}

int tls_server_start(const struct tls_server_opts *o, struct tls_server **out,
                     char *errbuf, size_t errcap)
{
	*out = NULL;
	struct tls_server *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -1;
	s->o = *o;
	s->lfd = -1;
	s->conn.fd = -1;
	if (s->o.family == 0)
		s->o.family = AF_INET;
	if (s->o.timeout_ms <= 0)
		s->o.timeout_ms = TLS_SERVER_DEFAULT_TIMEOUT_MS;
	s->cert = tls_server_dup(o->cert);
	s->key = tls_server_dup(o->key);
	s->priority = tls_server_dup(o->priority != NULL ? o->priority : "NORMAL");
	if (s->priority == NULL)
		goto fail;
	if (s->cert != NULL) {
		int rc = gnutls_certificate_allocate_credentials(&s->cred);
		if (rc >= 0)
			rc = gnutls_certificate_set_x509_key_file(s->cred, s->cert, s->key,
			                                          GNUTLS_X509_FMT_PEM);
		if (rc < 0) {
			tls_server_fail(s, "load %s: %s", s->cert, gnutls_strerror(rc));
			goto fail;
		}
	}
	s->lfd = socket(s->o.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0) {
		tls_server_fail(s, "socket: %s", strerror(errno));
		goto fail;
	}
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	if (s->o.family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*a);
	}
	if (bind(s->lfd, (struct sockaddr *)&ss, sl) < 0 || listen(s->lfd, 4) < 0 ||
	    getsockname(s->lfd, (struct sockaddr *)&ss, &sl) < 0) {
		tls_server_fail(s, "bind/listen on loopback: %s", strerror(errno));
		goto fail;
	}
	s->port = ntohs(s->o.family == AF_INET6
	                ? ((struct sockaddr_in6 *)&ss)->sin6_port
	                : ((struct sockaddr_in *)&ss)->sin_port);
	if (pthread_create(&s->thread, NULL, tls_server_main, s) != 0) {
		tls_server_fail(s, "pthread_create failed");
		goto fail;
	}
	s->running = true;
	*out = s;
	return 0;
fail:
	if (errbuf != NULL && errcap > 0)
		snprintf(errbuf, errcap, "%s", s->err);
	tls_server_free(s);
	return -1;
}

unsigned tls_server_port(const struct tls_server *s)
{
	return s->port;
}

int tls_server_stop(struct tls_server *s)
{
	if (s == NULL)
		return -1;
	if (s->running) {
		/* Wakes a thread still waiting for a connection that will not
		 * come; a connection already queued is left for the thread to
		 * accept, and an accepted connection's steps are bounded by
		 * timeout_ms on their own. */
		struct pollfd p = { .fd = s->lfd, .events = POLLIN };
		if (poll(&p, 1, 0) == 0)
			shutdown(s->lfd, SHUT_RDWR);
		pthread_join(s->thread, NULL);
		s->running = false;
	}
	return s->result;
}

const char *tls_server_error(const struct tls_server *s)
{
	return s->err;
}

const char *tls_server_version(const struct tls_server *s)
{
	return s->version;
}

size_t tls_server_channel_binding(const struct tls_server *s, const char *type,
                                  unsigned char *out, size_t cap)
{
	const unsigned char *src = NULL;
	size_t n = 0;
	if (strcmp(type, "tls-unique") == 0) {
		src = s->cb_unique;
		n = s->cb_unique_len;
	} else if (strcmp(type, "tls-exporter") == 0) {
		src = s->cb_exporter;
		n = s->cb_exporter_len;
	}
	if (src == NULL || n > cap)
		return 0;
	memcpy(out, src, n);
	return n;
}

int tls_server_fingerprint(const char *pem_file, char out[96])
{
	gnutls_datum_t pem = { NULL, 0 };
	gnutls_x509_crt_t crt = NULL;
	unsigned char fp[32];
	size_t sz = sizeof(fp);
	int ok = -1;
	if (gnutls_load_file(pem_file, &pem) < 0)
		return -1;
	if (gnutls_x509_crt_init(&crt) >= 0 &&
	    gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM) >= 0 &&
	    gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, fp, &sz) >= 0 &&
	    sz == sizeof(fp)) {
		static const char hex[] = "0123456789abcdef";
		size_t o = 0;
		for (size_t i = 0; i < sz; i++) {
			if (i > 0)
				out[o++] = ':';
			out[o++] = hex[fp[i] >> 4];
			out[o++] = hex[fp[i] & 15];
		}
		out[o] = '\0';
		ok = 0;
	}
	if (crt != NULL)
		gnutls_x509_crt_deinit(crt);
	gnutls_free(pem.data);
	return ok;
}

int tls_server_make_pki(const char *dir)
{
	const char *src = getenv("DEVMAIL_SOURCE_DIR");
	if (src == NULL || strchr(src, '\'') != NULL || strchr(dir, '\'') != NULL)
		return -1;
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "bash '%s/tests/lib/pki.sh' '%s'", src, dir);
	return system(cmd) == 0 ? 0 : -1;
}
