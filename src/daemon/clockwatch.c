/* clockwatch.c - clock synchronisation events without periodic wake-ups
 * (see clockwatch.h). */
#include "daemon/clockwatch.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "core/netinfo.h"

long clockwatch_next_interval(int state, long cur)
{
	if (state == 1)
		return CLOCKWATCH_SYNCED;
	if (cur <= 0)
		return CLOCKWATCH_FIRST;
	if (cur >= CLOCKWATCH_UNSYNCED_MAX / 2)
		return CLOCKWATCH_UNSYNCED_MAX;
	return cur * 2;
}

const char *clockwatch_state_str(int state)
{
	return state > 0 ? "synchronised (NTP)" : state == 0 ? "not synchronised"
	                                                    : "unknown";
}

/* Arms the timer at now + interval, absolute on CLOCK_REALTIME with
 * CANCEL_ON_SET, so that a step of the clock ends the wait at once. */
static void clockwatch_arm(struct clockwatch *cw)
{
	struct itimerspec its;
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = now.tv_sec + cw->interval;
	its.it_value.tv_nsec = now.tv_nsec;
	timerfd_settime(cw->fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET,
	                &its, NULL);
}

enum dm_status clockwatch_open(struct clockwatch *cw, int ino_fd,
                               struct dm_err *err)
{
	cw->wd = -1;
	cw->fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
	if (cw->fd < 0)
		return dm_err_set(err, DM_EIO, "timerfd_create: %s", strerror(errno));
	if (ino_fd >= 0)
		cw->wd = inotify_add_watch(ino_fd, CLOCKWATCH_TIMESYNC_DIR,
		                           IN_CREATE | IN_ATTRIB | IN_CLOSE_WRITE |
		                           IN_MOVED_TO | IN_ONLYDIR);
	cw->state = netinfo_clock_state();
	cw->interval = clockwatch_next_interval(cw->state, 0);
	clockwatch_arm(cw);
	return DM_OK;
}

void clockwatch_close(struct clockwatch *cw, int ino_fd)
{
	if (cw->wd >= 0 && ino_fd >= 0)
		inotify_rm_watch(ino_fd, cw->wd);
	if (cw->fd >= 0)
		close(cw->fd);
	cw->fd = cw->wd = -1;
}

bool clockwatch_event(struct clockwatch *cw, bool from_timer, int *state)
{
	bool stepped = !from_timer;

	if (from_timer) {
		uint64_t n;
		ssize_t r = read(cw->fd, &n, sizeof(n));
		if (r < 0 && errno == ECANCELED)
			stepped = true;    /* the clock was set */
		else if (r < 0)
			return false;      /* spurious (EAGAIN): keep the timer */
	}
	int now = netinfo_clock_state();
	bool changed = now != cw->state;
	cw->state = now;
	/* An event (a step, timesyncd) means something is happening: look
	 * again soon; the timer's own expiry doubles the wait. */
	cw->interval = clockwatch_next_interval(now, (stepped || changed)
	                                                 ? 0 : cw->interval);
	clockwatch_arm(cw);
	if (state)
		*state = now;
	return changed;
}
