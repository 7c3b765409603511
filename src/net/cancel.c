/*
 * cancel.c - the cancel handle: an eventfd plus a flag (see cancel.h).
 *
 * The eventfd's counter is written once and never read, so it stays
 * readable for every poll() that includes it, in any number of threads:
 * level-triggered by construction, no reset, no lost wake-ups.  The flag
 * lets a caller check without a system call.
 */
#include "net/cancel.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct cancel {
	int fd;
	atomic_int fired;   /* lock-free on Linux: safe in a signal handler */
};

enum dm_status cancel_new(struct cancel **out, struct dm_err *err)
{
	*out = NULL;
	struct cancel *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return dm_err_set(err, DM_ENOMEM, "cancel: out of memory");
	c->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->fd < 0) {
		int e = errno;
		free(c);
		return dm_err_set(err, DM_EIO, "cancel: eventfd: %s", strerror(e));
	}
	atomic_init(&c->fired, 0);
	*out = c;
	return DM_OK;
}

void cancel_fire(struct cancel *c)
{
	if (c == NULL)
		return;
	int saved = errno;
	if (atomic_exchange(&c->fired, 1) == 0) {
		uint64_t one = 1;
		/* Cannot block (EFD_NONBLOCK) and cannot overflow: written
		 * once.  Nothing useful to do on failure in a signal handler;
		 * the flag still stops the next operation. */
		ssize_t n;
		do
			n = write(c->fd, &one, sizeof(one));
		while (n < 0 && errno == EINTR);
	}
	errno = saved;
}

bool cancel_fired(const struct cancel *c)
{
	return c != NULL && atomic_load(&c->fired) != 0;
}

int cancel_fd(const struct cancel *c)
{
	return c != NULL ? c->fd : -1;
}

void cancel_free(struct cancel *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	free(c);
}
