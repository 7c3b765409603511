/*
 * clockwatch.h - notice when the system clock becomes synchronised (NTP),
 * or stops being so, without waking up periodically for it.
 *
 * The kernel keeps the state (adjtimex(2): STA_UNSYNC, TIME_ERROR) but
 * sends no event when it changes.  Three sources, cheapest first:
 *   1. a CLOCK_REALTIME timerfd armed with TFD_TIMER_CANCEL_ON_SET: its
 *      read fails with ECANCELED as soon as anyone steps the clock
 *      (settimeofday, clock_settime, adjtimex ADJ_SETOFFSET) - what every
 *      NTP client does at its first sync when the clock is off by more
 *      than a fraction of a second, which a unit without a battery-backed
 *      clock always is at boot;
 *   2. inotify on /run/systemd/timesync/: systemd-timesyncd touches
 *      "synchronized" there each time it syncs (the file systemd's own
 *      time-wait-sync watches), which covers a sync that only slews;
 *   3. a rare look: the same timerfd expires after CLOCKWATCH_FIRST s,
 *      then each wait doubles up to CLOCKWATCH_UNSYNCED_MAX s while the
 *      clock is not synchronised (chrony or ntpd slewing a small offset),
 *      and CLOCKWATCH_SYNCED s once it is (the kernel sets STA_UNSYNC only
 *      after its error estimate has grown to 16 s, hours after the NTP
 *      client stopped).  Any event from 1 or 2 starts the doubling again.
 * So an idle daemon wakes for the clock once an hour when synchronised;
 * when it is not and nothing else tells it, 1, 3, 7, 15 and 31 minutes
 * after the start (or the last event), then every 16 minutes.
 */
#ifndef DEVMAIL_DAEMON_CLOCKWATCH_H
#define DEVMAIL_DAEMON_CLOCKWATCH_H

#include <stdbool.h>
#include "core/err.h"

#define CLOCKWATCH_FIRST 60L          /* seconds to the first look */
#define CLOCKWATCH_UNSYNCED_MAX 960L  /* longest wait while unsynchronised */
#define CLOCKWATCH_SYNCED 3600L       /* wait while synchronised */
#define CLOCKWATCH_TIMESYNC_DIR "/run/systemd/timesync"

struct clockwatch {
	int fd;          /* the timerfd (poll it for POLLIN) */
	int wd;          /* inotify watch on CLOCKWATCH_TIMESYNC_DIR, or -1 */
	int state;       /* last state seen: 1 synced, 0 not, -1 unknown */
	long interval;   /* the current wait, seconds */
};

/* The wait after `cur` (0: the first) for a clock in `state`; pure, for
 * tests: 60, 120, 240, 480, 960, 960, ... unsynchronised (or unknown),
 * CLOCKWATCH_SYNCED synchronised. */
long clockwatch_next_interval(int state, long cur);

/* Creates the timerfd, adds the timesync watch to `ino_fd` (when the
 * directory exists; ino_fd < 0: none), reads the state and arms the
 * timer.  Errors: DM_EIO. */
enum dm_status clockwatch_open(struct clockwatch *cw, int ino_fd,
                               struct dm_err *err);
void clockwatch_close(struct clockwatch *cw, int ino_fd);

/* Called when cw->fd is readable (expiry or clock step) or an inotify
 * event came for cw->wd: reads the state again and re-arms the timer.
 * Returns true when the state changed (*state receives the new one). */
bool clockwatch_event(struct clockwatch *cw, bool from_timer, int *state);

/* "synchronised (NTP)", "not synchronised", "unknown". */
const char *clockwatch_state_str(int state);

#endif
