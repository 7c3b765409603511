/*
 * transport.c - the transport handle, its dispatch, plain TCP, and the one
 * poll loop of net/.
 *
 * RFCs: 793/9293 (TCP), 3493 (getaddrinfo, IPv6 and IPv4 in turn).
 *
 * Why the write buffer: msmtp loses ~90 ms per message to Nagle stalls and
 * makes one send() per line.  Here transport_write() only appends to a
 * 16 KiB buffer; a full buffer or transport_flush() sends it in one send()
 * (plain) or one TLS record (TLS), with TCP_NODELAY on so the flight leaves
 * at once.  TCP_QUICKACK is re-armed after each read because Linux clears
 * it, and MTAs that hold their reply behind our delayed ACK cost ~40 ms.
 *
 * The socket is non-blocking for its whole life; every wait is a poll()
 * bounded by the handle's timeout that also watches the handle's cancel
 * (net/cancel.h), so a shutdown ends any wait at once with DM_ECANCELED.
 *
 * Secrets: the output buffer carries AUTH lines, so the bytes of each
 * flight are wiped right after they are sent, and unsent bytes when the
 * handle is freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "net/cancel.h"
#include "net/resolve.h"
#include "net/server_cert.h"
#include "net/transport.h"
#include "net/transport_ops.h"

#define TRANSPORT_DEFAULT_TIMEOUT_MS 60000

static void transport_quickack_fd(int fd)
{
#ifdef TCP_QUICKACK
	int one = 1;
	/* Best effort: not every socket (socketpair in tests) is TCP. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
#else
	(void)fd;
#endif
}

void transport_quickack(struct transport *t)
{
	transport_quickack_fd(t->fd);
	t->stats.quickacks++;
}

void transport_peer_name(const struct transport *t, char *out, size_t cap)
{
	if (strchr(t->host, ':') != NULL)
		snprintf(out, cap, "[%s]:%u", t->host, t->port);
	else
		snprintf(out, cap, "%s:%u", t->host, t->port);
}

long transport_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int transport_poll_set(struct pollfd *fds, size_t n, long deadline_ms,
                       const struct cancel *cancel)
{
	struct pollfd p[TRANSPORT_POLL_MAX + 1];
	int cfd = cancel_fd(cancel);
	if (n > TRANSPORT_POLL_MAX) {
		errno = EINVAL;
		return -1;
	}
	for (int tries = 0; tries < 1000; tries++) {
		/* Also after EINTR: a signal handler may have fired it. */
		if (cancel_fired(cancel))
			return TRANSPORT_POLL_CANCELED;
		long left = deadline_ms - transport_now_ms();
		if (left < 0)
			left = 0;
		if (left > INT_MAX)
			left = INT_MAX;
		size_t np = n;
		memcpy(p, fds, n * sizeof(*p));
		if (cfd >= 0)
			p[np++] = (struct pollfd){ .fd = cfd, .events = POLLIN };
		int r = poll(p, (nfds_t)np, (int)left);
		if (r > 0) {
			if (cfd >= 0 && p[n].revents != 0)
				return TRANSPORT_POLL_CANCELED;
			for (size_t i = 0; i < n; i++)
				fds[i].revents = p[i].revents;
			return r;
		}
		if (r == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
	errno = EINTR;
	return -1;
}

int transport_poll_until(int fd, short events, long deadline_ms,
                         const struct cancel *cancel)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r = transport_poll_set(&p, 1, deadline_ms, cancel);
	return r > 0 ? 1 : r;
}

enum dm_status transport_wait(struct transport *t, short events,
                              long deadline_ms, const char *what,
                              struct dm_err *err)
{
	char peer[300];
	int r = transport_poll_until(t->fd, events, deadline_ms, t->cancel);
	if (r > 0)
		return DM_OK;
	transport_peer_name(t, peer, sizeof(peer));
	if (r == 0)
		return dm_err_set(err, DM_ETIMEOUT, "%s %s: timed out", what, peer);
	if (r == TRANSPORT_POLL_CANCELED)
		return dm_err_set(err, DM_ECANCELED, "%s %s: canceled", what, peer);
	return dm_err_set(err, DM_ENET, "%s %s: poll: %s", what, peer,
	                  strerror(errno));
}

/* The entry check of every operation: a closed handle ("op: transport is
 * closed"), or a fired cancel ("what peer: canceled"; then nothing more
 * happens on the handle, not even with bytes ready). */
static enum dm_status transport_check(struct transport *t, const char *op,
                                      const char *what, struct dm_err *err)
{
	if (t == NULL || t->fd < 0)
		return dm_err_set(err, DM_EINVAL, "%s: transport is closed", op);
	if (cancel_fired(t->cancel)) {
		char peer[300];
		transport_peer_name(t, peer, sizeof(peer));
		return dm_err_set(err, DM_ECANCELED, "%s %s: canceled", what, peer);
	}
	return DM_OK;
}

/* ---- plain implementation ---------------------------------------------- */

static enum dm_status transport_plain_read(struct transport *t, void *buf,
                                           size_t cap, long deadline_ms,
                                           size_t *got, struct dm_err *err)
{
	char peer[300];
	for (int tries = 0; tries < 1000; tries++) {
		ssize_t n = recv(t->fd, buf, cap, 0);
		if (n >= 0) {
			if (n > 0)
				transport_quickack(t);
			*got = (size_t)n;
			return DM_OK;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			break;
		enum dm_status st = transport_wait(t, POLLIN, deadline_ms,
		                                   "read from", err);
		if (st != DM_OK)
			return st;
	}
	transport_peer_name(t, peer, sizeof(peer));
	return dm_err_set(err, DM_ENET, "read from %s: %s", peer, strerror(errno));
}

static enum dm_status transport_plain_send(struct transport *t,
                                           const void *buf, size_t len,
                                           struct dm_err *err)
{
	const unsigned char *p = buf;
	char peer[300];
	/* Bounded: each pass either sends bytes or waits up to the timeout. */
	for (int tries = 0; len > 0 && tries < 10000; tries++) {
		ssize_t n = send(t->fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			t->stats.writes++;
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			enum dm_status st = transport_wait(t, POLLOUT,
			                                   transport_now_ms() + t->timeout_ms,
			                                   "write to", err);
			if (st != DM_OK)
				return st;
			continue;
		}
		transport_peer_name(t, peer, sizeof(peer));
		return dm_err_set(err, DM_ENET, "write to %s: %s", peer,
		                  n < 0 ? strerror(errno) : "no progress");
	}
	if (len > 0) {
		transport_peer_name(t, peer, sizeof(peer));
		return dm_err_set(err, DM_ENET, "write to %s: no progress", peer);
	}
	return DM_OK;
}

/* Starting TLS on a plain handle: the cleartext phase ends here. */
static enum dm_status transport_plain_start_tls(struct transport *t,
                                                struct dm_err *err)
{
	/* Anything still buffered for output belongs to the cleartext phase
	 * (the server's "220 Ready to start TLS", a client's STARTTLS). */
	enum dm_status st = transport_flush(t, err);
	if (st != DM_OK)
		return st;
	/* RFC 3207 section 4.2 / CVE-2011-0411: bytes the server sent after
	 * its reply to STARTTLS were injected in cleartext; never let them be
	 * read as if they came over TLS.  A server, on the other hand, may
	 * already hold the client's ClientHello here: that is the handshake. */
	if (t->role == TRANSPORT_CLIENT) {
		int avail = 0;
		if (ioctl(t->fd, FIONREAD, &avail) < 0) {
			char probe;
			ssize_t n = recv(t->fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
			avail = n > 0 ? 1 : 0;
		}
		if (avail > 0)
			return dm_err_set(err, DM_EPROTO,
			                  "unexpected data after STARTTLS reply "
			                  "(possible response injection)");
	}
	return transport_tls_handshake(t, err);
}

static void transport_plain_close(struct transport *t)
{
	(void)t;
}

const struct transport_ops transport_plain_ops = {
	.name = "plain",
	.start_tls = transport_plain_start_tls,
	.read = transport_plain_read,
	.send = transport_plain_send,
	.close = transport_plain_close,
};

/* ---- handle ------------------------------------------------------------ */

static void transport_free(struct transport *t)
{
	if (t == NULL)
		return;
	explicit_bzero(t->obuf, t->olen);   /* never sent: may hold a secret */
	if (t->tls != NULL)
		transport_tls_discard(t);   /* prepared, never started */
	server_cert_free(t->cert);          /* drops the handle's reference */
	free(t->cafile);
	free(t->fingerprint);
	free(t);
}

static enum dm_status transport_new(const struct transport_settings *s,
                                    struct transport **out, struct dm_err *err)
{
	struct transport *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return dm_err_set(err, DM_ENOMEM, "transport: out of memory");
	t->fd = -1;
	t->ops = &transport_plain_ops;
	t->timeout_ms = s->timeout_ms > 0 ? s->timeout_ms
	                                  : TRANSPORT_DEFAULT_TIMEOUT_MS;
	t->verify = s->verify;
	t->system_trust = s->system_trust;
	t->role = s->role;
	t->cancel = s->cancel;
	if (s->role == TRANSPORT_SERVER && s->server_cert != NULL)
		t->cert = server_cert_ref(s->server_cert);
	t->port = s->port;
	if (s->host != NULL)
		snprintf(t->host, sizeof(t->host), "%s", s->host);
	if (s->cafile != NULL && (t->cafile = strdup(s->cafile)) == NULL)
		goto nomem;
	if (s->fingerprint != NULL &&
	    (t->fingerprint = strdup(s->fingerprint)) == NULL)
		goto nomem;
	*out = t;
	return DM_OK;
nomem:
	transport_free(t);
	return dm_err_set(err, DM_ENOMEM, "transport: out of memory");
}

static void transport_tune_socket(int fd)
{
	int one = 1;
	/* Best effort on non-TCP sockets (socketpair in tests). */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	transport_quickack_fd(fd);
}

enum dm_status transport_from_fd(int fd, const struct transport_settings *s,
                                 struct transport **out, struct dm_err *err)
{
	*out = NULL;
	if (fd < 0)
		return dm_err_set(err, DM_EINVAL, "transport: invalid fd %d", fd);
	struct transport *t = NULL;
	enum dm_status st = transport_new(s, &t, err);
	if (st != DM_OK) {
		close(fd);
		return st;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	transport_tune_socket(fd);
	t->fd = fd;
	*out = t;
	return DM_OK;
}

/* One non-blocking connect to `ai`, bounded by timeout_ms and the cancel.
 * Returns the fd, or -1 with errno set (ETIMEDOUT on timeout, ECANCELED). */
static int transport_connect_one(const struct addrinfo *ai, int timeout_ms,
                                 const struct cancel *cancel)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
	                ai->ai_protocol);
	if (fd < 0)
		return -1;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	if (errno != EINPROGRESS && errno != EINTR)
		goto fail;
	int r = transport_poll_until(fd, POLLOUT, transport_now_ms() + timeout_ms,
	                             cancel);
	if (r == 0) {
		errno = ETIMEDOUT;
		goto fail;
	}
	if (r == TRANSPORT_POLL_CANCELED) {
		errno = ECANCELED;
		goto fail;
	}
	if (r < 0)
		goto fail;
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		goto fail;
	if (soerr != 0) {
		errno = soerr;
		goto fail;
	}
	return fd;
fail:;
	int saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

enum dm_status transport_connect(const struct transport_settings *s,
                                 struct transport **out, struct dm_err *err)
{
	*out = NULL;
	if (s->host == NULL || s->host[0] == '\0')
		return dm_err_set(err, DM_ECONFIG, "transport: no host given");
	if (s->port == 0 || s->port > 65535)
		return dm_err_set(err, DM_ECONFIG,
		                  "transport: port '%u' is out of range (1-65535)",
		                  s->port);
	if (s->role != TRANSPORT_CLIENT)
		return dm_err_set(err, DM_EINVAL,
		                  "transport: connect makes client handles only");
	struct transport *t = NULL;
	enum dm_status st = transport_new(s, &t, err);
	if (st != DM_OK)
		return st;
	char peer[300];
	transport_peer_name(t, peer, sizeof(peer));

	struct addrinfo *res = NULL;
	st = resolve_tcp(s->host, s->port, peer,
	                 transport_now_ms() + t->timeout_ms, t->cancel, &res, err);
	if (st != DM_OK) {
		transport_free(t);
		return st;
	}
	int fd = -1, last_errno = 0;
	char last_addr[INET6_ADDRSTRLEN] = "";
	for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		fd = transport_connect_one(ai, t->timeout_ms, t->cancel);
		if (fd < 0 && errno == ECANCELED) {
			last_errno = ECANCELED;
			break;
		}
		if (fd < 0) {
			last_errno = errno;
			const void *a = ai->ai_family == AF_INET
				? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
				: (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
			inet_ntop(ai->ai_family, a, last_addr, sizeof(last_addr));
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		int timeout_ms = t->timeout_ms;   /* t is freed next */
		transport_free(t);
		if (last_errno == 0)
			return dm_err_set(err, DM_ENET,
			                  "cannot connect to %s: no IPv4 or IPv6 address",
			                  peer);
		if (last_errno == ECANCELED)
			return dm_err_set(err, DM_ECANCELED, "connect to %s: canceled",
			                  peer);
		if (last_errno == ETIMEDOUT)
			return dm_err_set(err, DM_ETIMEOUT,
			                  "cannot connect to %s (last tried %s): "
			                  "no answer within %d ms",
			                  peer, last_addr, timeout_ms);
		return dm_err_set(err, DM_ENET,
		                  "cannot connect to %s (last tried %s): %s", peer,
		                  last_addr, strerror(last_errno));
	}
	transport_tune_socket(fd);
	t->fd = fd;
	*out = t;
	return DM_OK;
}

void transport_prepare_tls(struct transport *t)
{
	if (t != NULL && t->role == TRANSPORT_CLIENT &&
	    t->ops == &transport_plain_ops && t->tls == NULL)
		transport_tls_prepare(t);
}

enum dm_status transport_start_tls(struct transport *t, struct dm_err *err)
{
	enum dm_status st = transport_check(t, "start TLS", "TLS with", err);
	if (st != DM_OK)
		return st;
	return t->ops->start_tls(t, err);
}

enum dm_status transport_read(struct transport *t, void *buf, size_t cap,
                              size_t *got, struct dm_err *err)
{
	long timeout = t != NULL ? t->timeout_ms : 0;
	return transport_read_until(t, buf, cap, transport_now_ms() + timeout, got,
	                            err);
}

enum dm_status transport_read_until(struct transport *t, void *buf, size_t cap,
                                    long deadline_ms, size_t *got,
                                    struct dm_err *err)
{
	*got = 0;
	enum dm_status st = transport_check(t, "read", "read from", err);
	if (st != DM_OK)
		return st;
	if (cap == 0)
		return DM_OK;
	/* TCP_QUICKACK is re-armed inside the ops, after each recv() that got
	 * bytes: a TLS read may consume records that yield nothing here. */
	st = t->ops->read(t, buf, cap, deadline_ms, got, err);
	if (st == DM_OK)
		t->stats.bytes_in += *got;
	return st;
}

enum dm_status transport_flush(struct transport *t, struct dm_err *err)
{
	enum dm_status st = transport_check(t, "flush", "write to", err);
	if (st == DM_EINVAL)
		return st;
	size_t n = t->olen;
	/* The buffer is emptied whatever happens: after a failed (or
	 * cancelled) send the stream is broken and the session ends. */
	t->olen = 0;
	if (st == DM_OK && n == 0)
		return DM_OK;
	if (st == DM_OK)
		st = t->ops->send(t, t->obuf, n, err);
	/* What was sent may be an AUTH line (password, token): wipe the used
	 * bytes at once (DESIGN.md, security rules).  The cost is one pass
	 * over at most 16 KiB per flight. */
	explicit_bzero(t->obuf, n);
	if (st != DM_OK)
		return st;
	t->stats.flushes++;
	t->stats.bytes_out += n;
	return DM_OK;
}

enum dm_status transport_write(struct transport *t, const void *buf,
                               size_t len, struct dm_err *err)
{
	enum dm_status st = transport_check(t, "write", "write to", err);
	if (st != DM_OK)
		return st;
	const unsigned char *p = buf;
	while (len > 0) {
		size_t room = sizeof(t->obuf) - t->olen;
		size_t n = len < room ? len : room;
		memcpy(t->obuf + t->olen, p, n);
		t->olen += n;
		p += n;
		len -= n;
		if (t->olen == sizeof(t->obuf)) {
			st = transport_flush(t, err);
			if (st != DM_OK)
				return st;
		}
	}
	return DM_OK;
}

const struct transport_tls_info *transport_tls_info(const struct transport *t)
{
	static const struct transport_tls_info none;
	return t != NULL ? &t->info : &none;
}

enum dm_status transport_channel_binding(struct transport *t, const char *type,
                                         unsigned char *out, size_t cap,
                                         size_t *len, struct dm_err *err)
{
	*len = 0;
	if (t == NULL || !t->info.active)
		return dm_err_set(err, DM_ENOTFOUND,
		                  "channel binding %s: TLS is not active",
		                  type != NULL ? type : "(null)");
	return transport_tls_channel_binding(t, type, out, cap, len, err);
}

const struct transport_stats *transport_stats(const struct transport *t)
{
	static const struct transport_stats none;
	return t != NULL ? &t->stats : &none;
}

int transport_fd(const struct transport *t)
{
	return t != NULL ? t->fd : -1;
}

void transport_close(struct transport *t)
{
	if (t == NULL)
		return;
	if (t->fd >= 0) {
		t->ops->close(t);
		close(t->fd);
		t->fd = -1;
	}
	transport_free(t);
}
