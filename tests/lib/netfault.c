/* netfault.c - blocked-connect, silent-peer and delayed-cancel fixtures
 * (see netfault.h).  Loopback only. */
#include "netfault.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net/cancel.h"
#include "net/transport.h"

#define BACKLOG_PROBE_MS 200   /* a connect not done by then is stuck */

static socklen_t netfault_loopback(int family, struct sockaddr_storage *ss,
                                   unsigned port)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		a->sin6_port = htons((uint16_t)port);
		return sizeof(*a);
	}
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a->sin_port = htons((uint16_t)port);
	return sizeof(*a);
}

/* A listener on the loopback of `family`, port chosen by the kernel. */
static int netfault_listen(int family, int backlog, unsigned *port,
                           char *why, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t sl = netfault_loopback(family, &ss, 0);
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) < 0 ||
	    listen(fd, backlog) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		snprintf(why, cap, "listen on %s loopback: %s",
		         family == AF_INET6 ? "::1" : "127.0.0.1", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
	                                 : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

int backlog_full_open(int family, struct backlog_full *b, char *why,
                      size_t cap)
{
	memset(b, 0, sizeof(*b));
	b->host = family == AF_INET6 ? "::1" : "127.0.0.1";
	b->lfd = netfault_listen(family, 0, &b->port, why, cap);
	if (b->lfd < 0)
		return -1;
	struct sockaddr_storage ss;
	socklen_t sl = netfault_loopback(family, &ss, b->port);
	while (b->n < BACKLOG_FULL_MAX) {
		int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			break;
		b->fds[b->n++] = fd;
		if (connect(fd, (struct sockaddr *)&ss, sl) == 0)
			continue;
		if (errno != EINPROGRESS) {
			snprintf(why, cap, "connect: %s", strerror(errno));
			backlog_full_close(b);
			return -1;
		}
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int r;
		do
			r = poll(&p, 1, BACKLOG_PROBE_MS);
		while (r < 0 && errno == EINTR);
		if (r == 0)
			return 0;   /* stuck in SYN-SENT: the queue is full */
	}
	snprintf(why, cap, "%zu connects to a listen(fd, 0) socket all "
	         "completed: the backlog never filled", b->n);
	backlog_full_close(b);
	return -1;
}

void backlog_full_close(struct backlog_full *b)
{
	for (size_t i = 0; i < b->n; i++)
		close(b->fds[i]);
	b->n = 0;
	if (b->lfd >= 0)
		close(b->lfd);
	b->lfd = -1;
}

int silent_peer_open(int family, struct silent_peer *p, char *why, size_t cap)
{
	p->host = family == AF_INET6 ? "::1" : "127.0.0.1";
	p->lfd = netfault_listen(family, 8, &p->port, why, cap);
	return p->lfd < 0 ? -1 : 0;
}

void silent_peer_close(struct silent_peer *p)
{
	if (p->lfd >= 0)
		close(p->lfd);
	p->lfd = -1;
}

static void *fire_later_main(void *arg)
{
	struct fire_later *f = arg;
	struct timespec ts = { f->delay_ms / 1000, (f->delay_ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	f->fired_at = transport_now_ms();
	cancel_fire(f->cancel);
	return NULL;
}

int fire_later_start(struct fire_later *f, struct cancel *c, int delay_ms)
{
	f->cancel = c;
	f->delay_ms = delay_ms;
	f->fired_at = 0;
	f->started = pthread_create(&f->thread, NULL, fire_later_main, f) == 0;
	return f->started ? 0 : -1;
}

long fire_later_join(struct fire_later *f)
{
	if (f->started) {
		pthread_join(f->thread, NULL);
		f->started = false;
	}
	return f->fired_at;
}
