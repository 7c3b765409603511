/*
 * devmaild.h - the devmail service: the unit runs by itself.
 *
 * devmaild_run() is the whole life of the daemon in the calling process
 * (src/bin/devmaild.c parses the command line, detaches unless
 * --foreground, and calls it):
 *
 *   boot      take ROOT/devmaild.pid (a second daemon on the same root
 *             refuses, naming the PID that holds it), open or create the
 *             registry and the spool, write the boot line to the system
 *             log (version, host name, addresses, gateway, DNS, clock),
 *             start the outbox worker, queue the boot mail when
 *             Events/OnBoot/Email is on (exactly one per start);
 *   run       one poll loop (service.c) over: a signalfd (SIGTERM, SIGINT,
 *             SIGHUP), inotify (spool/queue: a message queued by any
 *             process; the data root: registry.db and its WAL, a changed
 *             setting; /run/systemd/timesync: NTP), a timerfd at the
 *             earliest next try of the queue (none when nothing waits: no
 *             timer wake-up), the clock watch's timerfd (clockwatch.h),
 *             and the worker's eventfd (a delivery round ended);
 *   stop      SIGTERM/SIGINT: no new round, devmaild_cancel_inflight(),
 *             wait at most DEVMAILD_STOP_MS for the worker, exit 0 (within 2 s); a
 *             message whose final dot was not answered stays queued.
 *             SIGHUP: reload the registry.
 *
 * Everything it does is written to the system log, and to stderr with
 * foreground.  docs/internals/daemon.md has the details, devmaild(8) the
 * user's view.
 */
#ifndef DEVMAIL_DAEMON_DEVMAILD_H
#define DEVMAIL_DAEMON_DEVMAILD_H

#include <stdbool.h>

#define DEVMAILD_STOP_MS 1800     /* waiting for the worker at a stop: with
                                     the rest of the exit, within 2 s */
#define DEVMAILD_BUSY_WAIT_MAX 30    /* seconds: recheck of a due message
                                        another process holds */

struct devmaild_settings {
	const char *root;        /* data root: an absolute path that exists */
	bool foreground;         /* report on stderr too */
	bool verbose;            /* with foreground: the SMTP dialogue too */
	/* >= 0: once boot is done (or failed) one line is written here and
	 * the descriptor closed: "OK <pid>\n" or "ERR <exit status> <text>\n"
	 * (the parent of a detaching devmaild waits for it). */
	int ready_fd;
};

/* Runs the daemon until SIGTERM/SIGINT.  Returns the exit status: 0
 * after a requested stop; 75 (EX_TEMPFAIL) when another devmaild serves
 * the root; 74 (EX_IOERR) when the registry, spool or log cannot be used;
 * 71 (EX_OSERR) when a kernel facility (signalfd, inotify, timerfd) is
 * missing.  Should the worker still be inside an SMTP session
 * DEVMAILD_STOP_MS after the stop request (the cancel should have ended
 * it), the process exits at once with 0 (_exit): the message stays
 * queued. */
int devmaild_run(const struct devmaild_settings *s);

/* The one place where a stop cancels the delivery in flight: fires the
 * worker's cancel handle (net/cancel.h), so a blocked connect, read or
 * write of every SMTP session returns DM_ECANCELED at once; the messages
 * the server accepted are recorded as sent, the others stay queued with no
 * attempt counted, and no new round starts.  Async-signal-safe; does
 * nothing before devmaild_run() started the worker. */
void devmaild_cancel_inflight(void);

#endif
