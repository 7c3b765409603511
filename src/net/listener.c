/*
 * listener.c - listening sockets and accept (see listener.h).
 *
 * RFCs: 9293 (TCP), 3493 (getaddrinfo with AI_NUMERICHOST | AI_PASSIVE:
 * literals only, so opening never waits on a resolver; IPV6_V6ONLY,
 * section 5.3).  Every wait is the one poll loop of net/
 * (transport_poll_set), over all listening sockets and the cancel.
 */
#include "net/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/cancel.h"
#include "net/server_cert.h"
#include "net/transport.h"
#include "net/transport_ops.h"

#if LISTENER_MAX_ADDRS > TRANSPORT_POLL_MAX
#error "one accept polls every listening socket at once"
#endif

struct listener {
	size_t n;
	int fds[LISTENER_MAX_ADDRS];
	unsigned ports[LISTENER_MAX_ADDRS];
	char names[LISTENER_MAX_ADDRS][INET6_ADDRSTRLEN + 16];  /* for messages */
	size_t next;               /* first socket served on the next accept */
	bool implicit_tls;
	struct server_cert *cert;  /* a reference, or NULL */
	int timeout_ms;
	struct cancel *cancel;
};

/* Splits "host:port" / "[host]:port" into host[cap] and *port.  False when
 * the text has not that shape. */
static bool listener_split(const char *text, char *host, size_t cap,
                           unsigned *port)
{
	const char *colon;
	size_t hlen;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || close[1] != ':')
			return false;
		hlen = (size_t)(close - text - 1);
		memcpy(host, text + 1, hlen < cap ? hlen : 0);
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL || memchr(text, ':', (size_t)(colon - text)) != NULL)
			return false;   /* a bare IPv6 address needs brackets */
		hlen = (size_t)(colon - text);
		memcpy(host, text, hlen < cap ? hlen : 0);
	}
	if (hlen == 0 || hlen >= cap)
		return false;
	host[hlen] = '\0';
	const char *p = colon + 1;
	unsigned long v = 0;
	if (*p == '\0' || strlen(p) > 5)
		return false;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v > 65535)
		return false;
	*port = (unsigned)v;
	return true;
}

/* Binds and listens on one address; the fd in *fd_out, the bound port in
 * *port_out, "host:port" with that port in name[cap] (for messages). */
static enum dm_status listener_bind(const char *text, int backlog,
                                    int *fd_out, unsigned *port_out,
                                    char *name, size_t cap,
                                    struct dm_err *err)
{
	char host[INET6_ADDRSTRLEN + 16], service[8];
	unsigned port = 0;
	if (!listener_split(text, host, sizeof(host), &port))
		return dm_err_set(err, DM_ECONFIG, "listen address '%s': expected "
		                  "IPv4:port or [IPv6]:port", text);
	snprintf(service, sizeof(service), "%u", port);
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
	};
	struct addrinfo *ai = NULL;
	int gai = getaddrinfo(host, service, &hints, &ai);
	if (gai != 0)
		return dm_err_set(err, DM_ECONFIG, "listen address '%s': '%s' is "
		                  "not an IPv4 or IPv6 address", text, host);
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	                0);
	const char *step = "socket";
	int one = 1;
	if (fd >= 0) {
		step = "setsockopt";
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    (ai->ai_family == AF_INET6 &&
		     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0))
			goto fail;
		step = "bind";
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
			goto fail;
		step = "listen";
		if (listen(fd, backlog) < 0)
			goto fail;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		step = "getsockname";
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
			goto fail;
		*port_out = ntohs(ss.ss_family == AF_INET6
		                  ? ((struct sockaddr_in6 *)&ss)->sin6_port
		                  : ((struct sockaddr_in *)&ss)->sin_port);
		snprintf(name, cap, ai->ai_family == AF_INET6 ? "[%s]:%u" : "%s:%u",
		         host, *port_out);
		freeaddrinfo(ai);
		*fd_out = fd;
		return DM_OK;
	}
fail:;
	int e = errno;
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return dm_err_set(err, DM_ENET, "listen on %s: %s: %s", text, step,
	                  strerror(e));
}

void listener_close(struct listener *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n; i++)
		close(l->fds[i]);
	server_cert_free(l->cert);
	free(l);
}

enum dm_status listener_open(const struct listener_settings *s,
                             struct listener **out, struct dm_err *err)
{
	*out = NULL;
	if (s->n_addrs == 0 || s->addrs == NULL)
		return dm_err_set(err, DM_ECONFIG, "listener: no address to listen on");
	if (s->n_addrs > LISTENER_MAX_ADDRS)
		return dm_err_set(err, DM_ECONFIG, "listener: %zu addresses, at "
		                  "most %d", s->n_addrs, LISTENER_MAX_ADDRS);
	if (s->implicit_tls && s->cert == NULL)
		return dm_err_set(err, DM_ECONFIG, "listener: implicit TLS needs "
		                  "a server certificate");
	struct listener *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return dm_err_set(err, DM_ENOMEM, "listener: out of memory");
	l->implicit_tls = s->implicit_tls;
	l->timeout_ms = s->timeout_ms;
	l->cancel = s->cancel;
	if (s->cert != NULL)
		l->cert = server_cert_ref(s->cert);
	int backlog = s->backlog > 0 ? s->backlog : LISTENER_BACKLOG;
	for (size_t i = 0; i < s->n_addrs; i++) {
		enum dm_status st = listener_bind(s->addrs[i], backlog, &l->fds[i],
		                                  &l->ports[i], l->names[i],
		                                  sizeof(l->names[i]), err);
		if (st != DM_OK) {
			listener_close(l);
			return st;
		}
		l->n++;
	}
	*out = l;
	return DM_OK;
}

size_t listener_count(const struct listener *l)
{
	return l != NULL ? l->n : 0;
}

unsigned listener_port(const struct listener *l, size_t i)
{
	return l != NULL && i < l->n ? l->ports[i] : 0;
}

/* Wraps an accepted socket in a server-role transport, TLS started when
 * the listener is for implicit TLS. */
static enum dm_status listener_wrap(struct listener *l, int fd,
                                    const struct sockaddr_storage *ss,
                                    struct transport **out,
                                    struct dm_err *err)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
	} else if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
	}
	struct transport_settings ts = {
		.host = host,
		.port = port,
		.timeout_ms = l->timeout_ms,
		.cancel = l->cancel,
		.role = TRANSPORT_SERVER,
		.server_cert = l->cert,
	};
	struct transport *t = NULL;
	enum dm_status st = transport_from_fd(fd, &ts, &t, err);
	if (st != DM_OK)
		return st;
	if (l->implicit_tls) {
		st = transport_start_tls(t, err);
		if (st != DM_OK) {
			transport_close(t);
			return st;
		}
	}
	*out = t;
	return DM_OK;
}

enum dm_status listener_accept(struct listener *l, long deadline_ms,
                               struct transport **out, struct dm_err *err)
{
	*out = NULL;
	if (l == NULL || l->n == 0)
		return dm_err_set(err, DM_EINVAL, "accept: listener is closed");
	struct pollfd p[LISTENER_MAX_ADDRS];
	/* Bounded: each pass waits (until the deadline) or accepts. */
	for (int tries = 0; tries < 1000; tries++) {
		for (size_t i = 0; i < l->n; i++)
			p[i] = (struct pollfd){ .fd = l->fds[i], .events = POLLIN };
		int r = transport_poll_set(p, l->n, deadline_ms, l->cancel);
		if (r == 0)
			return dm_err_set(err, DM_ETIMEOUT, "accept on %s: no connection "
			                  "in time", l->names[0]);
		if (r == TRANSPORT_POLL_CANCELED)
			return dm_err_set(err, DM_ECANCELED, "accept on %s: canceled",
			                  l->names[0]);
		if (r < 0)
			return dm_err_set(err, DM_ENET, "accept on %s: poll: %s",
			                  l->names[0], strerror(errno));
		/* Round robin, so a busy address cannot starve the others. */
		for (size_t k = 0; k < l->n; k++) {
			size_t i = (l->next + k) % l->n;
			if ((p[i].revents & (POLLIN | POLLERR | POLLHUP)) == 0)
				continue;
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			memset(&ss, 0, sizeof(ss));
			int fd = accept4(l->fds[i], (struct sockaddr *)&ss, &sl,
			                 SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd < 0) {
				/* Gone before we took it, or a signal: wait again. */
				if (errno == EAGAIN || errno == EWOULDBLOCK ||
				    errno == ECONNABORTED || errno == EINTR ||
				    errno == EPROTO)
					continue;
				return dm_err_set(err, errno == ENOMEM || errno == ENOBUFS
				                  ? DM_ENOMEM : DM_ENET,
				                  "accept on %s: %s", l->names[i],
				                  strerror(errno));
			}
			l->next = (i + 1) % l->n;
			return listener_wrap(l, fd, &ss, out, err);
		}
	}
	return dm_err_set(err, DM_ENET, "accept on %s: no progress", l->names[0]);
}
