/*
 * resolve.c - getaddrinfo() in a helper thread, waited for in the one poll
 * loop with a deadline and a cancel (see resolve.h).
 *
 * RFC 3493 (getaddrinfo).  The helper thread blocks every signal, so a
 * SIGTERM meant to cancel lands on a thread whose poll() it interrupts.
 */
#include "net/resolve.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "net/cancel.h"
#include "net/transport_ops.h"

struct resolve_job {
	atomic_int refs;           /* caller + thread; the last one frees */
	atomic_int done;           /* set (release) before fd is written */
	int fd;                    /* eventfd, readable when done */
	char host[256];
	char service[8];
	int gai;                   /* getaddrinfo()'s result */
	int gai_errno;             /* errno after it (EAI_SYSTEM) */
	struct addrinfo *res;
};

static const struct addrinfo resolve_hints = {
	.ai_family = AF_UNSPEC,
	.ai_socktype = SOCK_STREAM,
	.ai_flags = AI_NUMERICSERV,
};

static void resolve_job_unref(struct resolve_job *j)
{
	if (atomic_fetch_sub(&j->refs, 1) != 1)
		return;
	if (j->res != NULL)
		freeaddrinfo(j->res);
	close(j->fd);
	free(j);
}

static void *resolve_thread(void *arg)
{
	struct resolve_job *j = arg;
	j->gai = getaddrinfo(j->host, j->service, &resolve_hints, &j->res);
	j->gai_errno = errno;
	atomic_store_explicit(&j->done, 1, memory_order_release);
	uint64_t one = 1;
	ssize_t n;
	do
		n = write(j->fd, &one, sizeof(one));
	while (n < 0 && errno == EINTR);
	resolve_job_unref(j);
	return NULL;
}

static enum dm_status resolve_result(int gai, int gai_errno, const char *peer,
                                     struct dm_err *err)
{
	if (gai == EAI_MEMORY)
		return dm_err_set(err, DM_ENOMEM, "cannot resolve %s: out of memory",
		                  peer);
	return dm_err_set(err, DM_ENET, "cannot resolve %s: %s", peer,
	                  gai == EAI_SYSTEM ? strerror(gai_errno)
	                                    : gai_strerror(gai));
}

/* Starts the helper thread with every signal blocked.  0 or an errno. */
static int resolve_spawn(struct resolve_job *j)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t th;
	int rc = pthread_attr_init(&attr);
	if (rc != 0)
		return rc;
	(void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	(void)pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&th, &attr, resolve_thread, j);
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return rc;
}

enum dm_status resolve_tcp(const char *host, unsigned port, const char *peer,
                           long deadline_ms, const struct cancel *cancel,
                           struct addrinfo **out, struct dm_err *err)
{
	*out = NULL;
	if (cancel_fired(cancel))
		return dm_err_set(err, DM_ECANCELED, "resolve %s: canceled", peer);
	char service[8];
	snprintf(service, sizeof(service), "%u", port);

	/* An address literal needs no resolver and cannot block. */
	struct addrinfo hints = resolve_hints;
	hints.ai_flags |= AI_NUMERICHOST;
	int gai = getaddrinfo(host, service, &hints, out);
	if (gai == 0)
		return DM_OK;
	if (gai != EAI_NONAME)
		return resolve_result(gai, errno, peer, err);

	struct resolve_job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return dm_err_set(err, DM_ENOMEM, "resolve %s: out of memory", peer);
	if (strlen(host) >= sizeof(j->host)) {
		free(j);
		return dm_err_set(err, DM_ENET, "cannot resolve %s: name too long",
		                  peer);
	}
	snprintf(j->host, sizeof(j->host), "%s", host);
	snprintf(j->service, sizeof(j->service), "%s", service);
	atomic_init(&j->refs, 2);
	atomic_init(&j->done, 0);
	j->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (j->fd < 0) {
		int e = errno;
		free(j);
		return dm_err_set(err, DM_ENET, "resolve %s: eventfd: %s", peer,
		                  strerror(e));
	}
	int rc = resolve_spawn(j);
	if (rc != 0) {
		close(j->fd);
		free(j);
		return dm_err_set(err, rc == EAGAIN ? DM_ENOMEM : DM_ENET,
		                  "resolve %s: cannot start a resolver thread: %s",
		                  peer, strerror(rc));
	}
	int r = transport_poll_until(j->fd, POLLIN, deadline_ms, cancel);
	enum dm_status st;
	if (r > 0 && atomic_load_explicit(&j->done, memory_order_acquire)) {
		if (j->gai == 0) {
			*out = j->res;
			j->res = NULL;
			st = DM_OK;
		} else {
			st = resolve_result(j->gai, j->gai_errno, peer, err);
		}
	} else if (r == TRANSPORT_POLL_CANCELED) {
		st = dm_err_set(err, DM_ECANCELED, "resolve %s: canceled", peer);
	} else if (r == 0) {
		st = dm_err_set(err, DM_ETIMEOUT, "cannot resolve %s: no answer "
		                "from the resolver in time", peer);
	} else {
		st = dm_err_set(err, DM_ENET, "resolve %s: poll: %s", peer,
		                strerror(errno));
	}
	resolve_job_unref(j);
	return st;
}
