/*
 * service.c - devmaild's boot sequence and its one poll loop (see
 * devmaild.h for the picture, docs/internals/daemon.md for the reasons).
 *
 * Who wakes the loop, and nothing else does:
 *   signalfd      SIGTERM/SIGINT (stop), SIGHUP (reload)
 *   inotify       spool/queue   IN_MOVED_TO: a message was queued (the
 *                               enqueue's commit is a rename into queue/)
 *                 ROOT          registry.db*: a committed registry change
 *                               (then the change counter says whether)
 *                 timesync dir  systemd-timesyncd synchronised the clock
 *   due timer     CLOCK_REALTIME, absolute, at the earliest next try of
 *                 the queue; disarmed when nothing waits
 *   clock timer   clockwatch.h: a clock step, or its rare look
 *   done eventfd  the worker's round ended
 */
#include "daemon/devmaild.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/paths.h"
#include "core/pidfile.h"
#include "core/registry.h"
#include "daemon/boot.h"
#include "daemon/clockwatch.h"
#include "daemon/dlog.h"
#include "daemon/worker.h"
#include "mail/outbox.h"
#include "mail/submit.h"

#ifndef DEVMAIL_VERSION
#define DEVMAIL_VERSION "unknown"
#endif

enum { PFD_SIG, PFD_INO, PFD_DUE, PFD_CLK, PFD_DONE, PFD_N };

struct dmd {
	struct devmaild_settings s;
	struct dlog log;
	struct pidfile *pf;
	struct registry *reg;        /* the main thread's handle */
	struct outbox *ob;           /* the main thread's: next due, retry now */
	struct worker_pool *pool;
	struct clockwatch cw;
	int sig_fd, ino_fd, due_fd, done_fd;
	int wd_queue, wd_root;
	uint64_t reg_changes;        /* registry_change_counter() last seen */
	uint64_t email_hash;         /* of the Email/ keys that are set */
	unsigned sessions;           /* Outbox/Sessions */
	bool round_active;
	bool dirty;                  /* start a round as soon as possible */
	bool retry_after_round;      /* Email/ changed during a round */
	bool blocked;                /* the account cannot be used: wait for a
	                                registry change, SIGHUP or a new message */
	char blocked_msg[DM_ERR_TEXT];
	long busy_wait;              /* seconds before looking again at a due
	                                message another process holds */
	time_t due_at;               /* what the due timer is armed for; 0 none */
	bool stopping;
	const char *stop_reason;
};

static _Atomic(struct worker_pool *) dmd_pool;

void devmaild_cancel_inflight(void)
{
	struct worker_pool *p = atomic_load(&dmd_pool);

	if (p)
		worker_pool_cancel(p);
}

/* ---- settings ------------------------------------------------------------ */

static long dmd_reg_long(struct registry *reg, const char *key, long def)
{
	long v = 0;

	if (registry_get_int(reg, key, &v, NULL) != DM_OK)
		return def;
	return v;
}

/* Outbox/Sessions, for the log only: submit_deliver_due() reads it (the
 * schema gives the default and the range). */
static unsigned dmd_sessions(struct registry *reg)
{
	long v = dmd_reg_long(reg, "Outbox/Sessions", 0);

	return v < 0 ? 0 : (unsigned)v;
}

struct dmd_hash {
	uint64_t h;
};

static void dmd_hash_bytes(struct dmd_hash *x, const char *s)
{
	for (; *s; s++) {
		x->h ^= (unsigned char)*s;
		x->h *= 1099511628211ULL;          /* FNV-1a */
	}
	x->h ^= 0xff;
	x->h *= 1099511628211ULL;
}

static int dmd_hash_entry(const struct registry_entry *e, void *ctx)
{
	dmd_hash_bytes(ctx, e->key);
	dmd_hash_bytes(ctx, e->value);
	return 0;
}

/* A fingerprint of the Email/ keys that are set (the password in its
 * sealed form: a new password changes it too). */
static uint64_t dmd_email_hash(struct registry *reg)
{
	struct dmd_hash x = { 14695981039346656037ULL };

	if (registry_list(reg, "Email", false, dmd_hash_entry, &x, NULL) != DM_OK)
		return 0;
	return x.h;
}

static void dmd_read_settings(struct dmd *d)
{
	d->log.max_size = dmd_reg_long(d->reg, "Log/MaxSize", 0);
	d->sessions = dmd_sessions(d->reg);
}

/* ---- scheduling ----------------------------------------------------------- */

static void dmd_arm_due(struct dmd *d, time_t when)
{
	struct itimerspec its;

	if (when == d->due_at)
		return;
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = when;      /* 0: disarm */
	timerfd_settime(d->due_fd, TFD_TIMER_ABSTIME, &its, NULL);
	d->due_at = when;
}

/* Starts a round when one is wanted and something is due, else arms the
 * due timer at the earliest next try (or disarms it: nothing waits, no
 * wake-up).  `dirty` means "look now": set by a queued message, the due
 * timer, a settings change; an empty queue starts no round (and no thread
 * exists before the first message). */
static void dmd_schedule(struct dmd *d)
{
	time_t when = 0, now;
	struct dm_err e;

	if (d->round_active || d->stopping)
		return;
	if (d->blocked) {
		dmd_arm_due(d, 0);
		return;
	}
	dm_err_clear(&e);
	enum dm_status st = outbox_next_due(d->ob, &when, &e);
	if (st == DM_ENOTFOUND) {
		d->dirty = false;
		dmd_arm_due(d, 0);
		return;
	}
	now = time(NULL);
	if (st != DM_OK) {
		dlog(&d->log, "cannot read the queue: %s", e.msg);
		when = now;
	}
	if (when <= now && d->dirty) {
		d->dirty = false;
		if (worker_pool_round(d->pool)) {
			d->round_active = true;
			dmd_arm_due(d, 0);
			return;
		}
		dlog(&d->log, "cannot start a delivery thread; trying again in %lds",
		     d->busy_wait);
	}
	d->dirty = false;
	if (when <= now) {
		/* Due, yet the last round did not take it: another process holds
		 * it (SENDMAIL delivering it now, OUTBOX -r), or the run failed.
		 * Look again later, backing off, instead of spinning. */
		if (d->due_at > now)
			return;            /* that look is armed already */
		when = now + d->busy_wait;
		d->busy_wait = d->busy_wait * 2 > DEVMAILD_BUSY_WAIT_MAX
		                   ? DEVMAILD_BUSY_WAIT_MAX : d->busy_wait * 2;
	}
	dmd_arm_due(d, when);
}

static void dmd_retry_queue(struct dmd *d, const char *why)
{
	unsigned n = 0;
	struct dm_err e;

	dm_err_clear(&e);
	if (outbox_retry_now(d->ob, NULL, &n, &e) != DM_OK)
		dlog(&d->log, "cannot make the queue due: %s", e.msg);
	else if (n > 0)
		dlog(&d->log, "%s: %u queued message%s due now", why, n,
		     n == 1 ? "" : "s");
	d->dirty = true;
	d->busy_wait = 1;
}

static void dmd_round_done(struct dmd *d)
{
	struct worker_result r;
	uint64_t v;

	if (read(d->done_fd, &v, sizeof(v)) < 0)
		return;
	worker_pool_result(d->pool, &r);
	d->round_active = false;
	if (r.stats.sent + r.stats.deferred + r.stats.failed > 0)
		d->busy_wait = 1;
	if (r.status == DM_ECONFIG || r.status == DM_ECRYPTO ||
	    r.status == DM_EPERM) {
		d->blocked = true;
		if (strcmp(d->blocked_msg, r.msg) != 0) {
			snprintf(d->blocked_msg, sizeof(d->blocked_msg), "%s", r.msg);
			dlog(&d->log, "cannot deliver the queue: %s; waiting for the "
			     "settings to change (IPCONFIG, REG) or SIGHUP", r.msg);
		}
	} else if (r.status != DM_OK) {
		dlog(&d->log, "delivery run failed: %s", r.msg);
	} else {
		d->blocked_msg[0] = '\0';
	}
	if (d->retry_after_round) {
		d->retry_after_round = false;
		dmd_retry_queue(d, "Email settings changed during a delivery");
	}
}

/* ---- registry -------------------------------------------------------------- */

static void dmd_email_check(struct dmd *d)
{
	uint64_t h = dmd_email_hash(d->reg);

	if (h == d->email_hash)
		return;
	d->email_hash = h;
	d->blocked = false;
	if (d->round_active) {
		d->retry_after_round = true;
		worker_pool_nudge(d->pool, true);   /* end it after its drain */
	} else
		dmd_retry_queue(d, "Email settings changed");
}

static void dmd_registry_check(struct dmd *d)
{
	uint64_t c = registry_change_counter(d->reg);

	if (c == 0 || c == d->reg_changes)
		return;
	d->reg_changes = c;
	dmd_read_settings(d);
	if (d->round_active)   /* the next round reads the new settings */
		worker_pool_nudge(d->pool, true);
	if (d->blocked) {
		d->blocked = false;
		d->dirty = true;
	}
	dmd_email_check(d);
}

static void dmd_reload(struct dmd *d)
{
	struct registry *reg = NULL;
	struct dm_err e;

	dm_err_clear(&e);
	if (registry_open(d->s.root, &reg, &e) != DM_OK) {
		dlog(&d->log, "SIGHUP: cannot open the registry again: %s; keeping "
		     "the one open", e.msg);
	} else {
		registry_close(d->reg);
		d->reg = reg;
		d->reg_changes = registry_change_counter(d->reg);
	}
	worker_pool_reload(d->pool);
	dmd_read_settings(d);
	dlog(&d->log, "reloaded the registry (SIGHUP): Outbox/Sessions %u",
	     d->sessions);
	d->blocked = false;
	d->dirty = true;
	d->busy_wait = 1;
	dmd_email_check(d);
}

/* ---- events ------------------------------------------------------------------- */

static void dmd_clock(struct dmd *d, bool from_timer)
{
	int state;

	if (clockwatch_event(&d->cw, from_timer, &state))
		dlog(&d->log, "clock %s", state > 0 ? "synchronised (NTP)" :
		     state == 0 ? "no longer synchronised (NTP)" : "state unknown");
}

static bool dmd_is_registry_file(const char *name)
{
	return strncmp(name, "registry.db", 11) == 0;
}

static void dmd_inotify(struct dmd *d)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool reg = false, clk = false;

	for (;;) {
		ssize_t n = read(d->ino_fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				/* events were lost: look at everything */
				d->dirty = true;
				d->blocked = false;
				reg = clk = true;
			} else if (ev->wd == d->wd_queue) {
				if (ev->mask & (IN_MOVED_TO | IN_CREATE)) {
					d->dirty = true;      /* a message was queued */
					if (d->round_active)  /* into the running round */
						worker_pool_nudge(d->pool, false);
					d->blocked = false;
					d->busy_wait = 1;
				}
			} else if (ev->wd == d->wd_root) {
				if (ev->len && dmd_is_registry_file(ev->name))
					reg = true;
			} else if (ev->wd == d->cw.wd && d->cw.wd >= 0) {
				clk = true;
			}
		}
	}
	if (reg)
		dmd_registry_check(d);
	if (clk)
		dmd_clock(d, false);
}

static void dmd_signals(struct dmd *d)
{
	struct signalfd_siginfo si;

	while (read(d->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			d->stopping = true;
			d->stop_reason = si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT";
			return;
		case SIGHUP:
			dmd_reload(d);
			break;
		default:
			break;
		}
	}
}

/* ---- boot -------------------------------------------------------------------- */

static void dmd_ready(struct dmd *d, int code, const char *msg)
{
	char line[DM_ERR_TEXT + 32];
	int n;

	if (d->s.ready_fd < 0)
		return;
	if (code == 0)
		n = snprintf(line, sizeof(line), "OK %ld\n", (long)getpid());
	else
		n = snprintf(line, sizeof(line), "ERR %d %s\n", code, msg);
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	(void)paths_write_all(d->s.ready_fd, line, (size_t)n);
	close(d->s.ready_fd);
	d->s.ready_fd = -1;
}

/* Reports a boot failure everywhere it can be seen; returns code. */
static int dmd_fail(struct dmd *d, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int dmd_fail(struct dmd *d, int code, const char *fmt, ...)
{
	char msg[DM_ERR_TEXT];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_write(d->s.root, d->log.max_size, NULL, "devmaild: not started: %s",
	          msg);
	if (d->s.foreground || d->s.ready_fd < 0)
		fprintf(stderr, "devmaild: %s\n", msg);
	dmd_ready(d, code, msg);
	return code;
}

static int dmd_open_fds(struct dmd *d)
{
	char queue[DM_PATH_MAX];
	sigset_t set;
	struct dm_err e;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	/* Blocked before any thread exists, so every thread inherits it and
	 * only the signalfd sees them. */
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0 ||
	    (d->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
		return dmd_fail(d, EX_OSERR, "signalfd: %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);
	if ((d->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0)
		return dmd_fail(d, EX_OSERR, "inotify: %s", strerror(errno));
	if (paths_join(d->s.root, "spool/queue", queue, sizeof(queue), NULL) != DM_OK)
		return dmd_fail(d, EX_IOERR, "data root path too long");
	d->wd_queue = inotify_add_watch(d->ino_fd, queue, IN_MOVED_TO | IN_CREATE |
	                                IN_ONLYDIR);
	if (d->wd_queue < 0)
		return dmd_fail(d, EX_OSERR, "inotify on %s: %s", queue,
		                strerror(errno));
	d->wd_root = inotify_add_watch(d->ino_fd, d->s.root, IN_MODIFY |
	                               IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE |
	                               IN_ONLYDIR);
	if (d->wd_root < 0)
		return dmd_fail(d, EX_OSERR, "inotify on %s: %s", d->s.root,
		                strerror(errno));
	if ((d->due_fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK |
	                                TFD_CLOEXEC)) < 0 ||
	    (d->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		return dmd_fail(d, EX_OSERR, "timerfd/eventfd: %s", strerror(errno));
	dm_err_clear(&e);
	if (clockwatch_open(&d->cw, d->ino_fd, &e) != DM_OK)
		return dmd_fail(d, EX_OSERR, "%s", e.msg);
	return 0;
}

static void dmd_boot_mail(struct dmd *d, const struct boot_info *bi)
{
	char id[OUTBOX_ID_MAX], to[REG_VALUE_MAX] = "";
	bool on = false;
	struct dm_err e;

	dm_err_clear(&e);
	if (registry_get_bool(d->reg, "Events/OnBoot/Email", &on, &e) != DM_OK) {
		dlog(&d->log, "Events/OnBoot/Email: %s; no boot mail", e.msg);
		return;
	}
	if (!on)
		return;
	dm_err_clear(&e);
	if (boot_mail_queue(d->s.root, d->reg, bi, id, &e) != DM_OK) {
		dlog(&d->log, "boot mail not queued: %s", e.msg);
		return;
	}
	registry_get(d->reg, "Email/ToAddress", to, sizeof(to), NULL, NULL);
	dlog(&d->log, "boot mail %s queued for %s", id, to);
}

/* ---- stop --------------------------------------------------------------------- */

static void dmd_close(struct dmd *d)
{
	clockwatch_close(&d->cw, d->ino_fd);
	if (d->sig_fd >= 0)
		close(d->sig_fd);
	if (d->ino_fd >= 0)
		close(d->ino_fd);
	if (d->due_fd >= 0)
		close(d->due_fd);
	if (d->done_fd >= 0)
		close(d->done_fd);
	outbox_close(d->ob);
	registry_close(d->reg);
	pidfile_release(d->pf);
}

static int dmd_stop(struct dmd *d)
{
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	bool inflight = d->round_active;
	dlog(&d->log, "stopping (%s)%s", d->stop_reason ? d->stop_reason : "",
	     inflight ? ": cancelling the delivery in flight" : "");
	devmaild_cancel_inflight();
	bool joined = worker_pool_stop(d->pool, DEVMAILD_STOP_MS);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (long)(t1.tv_sec - t0.tv_sec) * 1000 +
	          (t1.tv_nsec - t0.tv_nsec) / 1000000;
	if (!joined) {
		/* A session is still blocked in the network.  Nothing is lost by
		 * leaving now: the outbox records "sent" only after the server's
		 * reply, and the kernel drops the message's lock with us. */
		dlog(&d->log, "stopped after %ld ms with a delivery in flight; its "
		     "message stays queued for the next start", ms);
		pidfile_release(d->pf);
		_exit(0);
	}
	atomic_store(&dmd_pool, NULL);
	if (inflight)
		/* The cancel ended the sessions: what the server had accepted
		 * is recorded as sent, the rest is queued, no attempt counted. */
		dlog(&d->log, "stopped (%ld ms) with a delivery in flight; its "
		     "messages not accepted by the server stay queued", ms);
	else
		dlog(&d->log, "stopped (%ld ms)", ms);
	dmd_close(d);
	return 0;
}

/* ---- the loop ---------------------------------------------------------------- */

static void dmd_loop(struct dmd *d)
{
	struct pollfd pfd[PFD_N];

	pfd[PFD_SIG].fd = d->sig_fd;
	pfd[PFD_INO].fd = d->ino_fd;
	pfd[PFD_DUE].fd = d->due_fd;
	pfd[PFD_CLK].fd = d->cw.fd;
	pfd[PFD_DONE].fd = d->done_fd;
	for (int i = 0; i < PFD_N; i++)
		pfd[i].events = POLLIN;
	while (!d->stopping) {
		dmd_schedule(d);
		int n = poll(pfd, PFD_N, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			dlog(&d->log, "poll: %s; stopping", strerror(errno));
			d->stopping = true;
			d->stop_reason = "poll failed";
			break;
		}
		if (pfd[PFD_SIG].revents)
			dmd_signals(d);
		if (d->stopping)
			break;
		if (pfd[PFD_DONE].revents)
			dmd_round_done(d);
		if (pfd[PFD_INO].revents)
			dmd_inotify(d);
		if (pfd[PFD_DUE].revents) {
			uint64_t v;
			if (read(d->due_fd, &v, sizeof(v)) > 0) {
				d->due_at = 0;
				d->dirty = true;
			}
		}
		if (pfd[PFD_CLK].revents)
			dmd_clock(d, true);
	}
}

int devmaild_run(const struct devmaild_settings *s)
{
	char pidpath[DM_PATH_MAX], line[LOG_LINE_MAX];
	struct boot_info *bi;
	struct dmd d;
	struct dm_err e;
	pid_t holder = 0;
	int rc;

	memset(&d, 0, sizeof(d));
	d.s = *s;
	d.log.root = s->root;
	d.log.to_stderr = s->foreground;
	d.sig_fd = d.ino_fd = d.due_fd = d.done_fd = -1;
	d.cw.fd = d.cw.wd = -1;
	d.wd_queue = d.wd_root = -1;
	d.busy_wait = 1;
	time_t started = time(NULL);

	dm_err_clear(&e);
	if (paths_join(s->root, PIDFILE_DAEMON, pidpath, sizeof(pidpath), &e) ||
	    paths_ensure(s->root, &e))
		return dmd_fail(&d, EX_IOERR, "%s", e.msg);
	if (pidfile_acquire(pidpath, &d.pf, &holder, &e) != DM_OK) {
		if (holder > 0)
			return dmd_fail(&d, EX_TEMPFAIL, "already running on %s "
			                "(pid %ld holds %s)", s->root, (long)holder,
			                pidpath);
		return dmd_fail(&d, EX_TEMPFAIL, "%s", e.msg);
	}
	if (registry_open(s->root, &d.reg, &e) != DM_OK) {
		rc = dmd_fail(&d, EX_IOERR, "%s", e.msg);
		goto fail;
	}
	dmd_read_settings(&d);
	if (submit_outbox_open(s->root, d.reg, &d.ob, &e) != DM_OK) {
		rc = dmd_fail(&d, EX_IOERR, "%s", e.msg);
		goto fail;
	}
	if ((rc = dmd_open_fds(&d)) != 0)
		goto fail;

	/* The boot line: version, host name, addresses, clock. */
	if (!(bi = malloc(sizeof(*bi)))) {
		rc = dmd_fail(&d, EX_OSERR, "out of memory");
		goto fail;
	}
	boot_info_read(d.reg, started, DEVMAIL_VERSION, bi);
	bi->ni.clock_synced = d.cw.state;
	boot_log_line(bi, line, sizeof(line));
	dlog(&d.log, "%s", line);

	/* The outbox worker, then the boot mail for it to deliver. */
	struct worker_settings ws = {
		.root = s->root, .log = &d.log, .verbose = s->verbose && s->foreground,
		.done_fd = d.done_fd,
	};
	if (worker_pool_new(&ws, &d.pool, &e) != DM_OK) {
		free(bi);
		rc = dmd_fail(&d, EX_OSERR, "%s", e.msg);
		goto fail;
	}
	atomic_store(&dmd_pool, d.pool);
	dmd_boot_mail(&d, bi);
	free(bi);

	d.reg_changes = registry_change_counter(d.reg);
	d.email_hash = dmd_email_hash(d.reg);
	d.dirty = true;              /* whatever is due now goes at once */
	dlog(&d.log, "ready (Outbox/Sessions %u, clock %s)", d.sessions,
	     clockwatch_state_str(d.cw.state));
	dmd_ready(&d, 0, NULL);
	dmd_loop(&d);
	return dmd_stop(&d);
fail:
	if (d.pool) {
		atomic_store(&dmd_pool, NULL);
		worker_pool_stop(d.pool, DEVMAILD_STOP_MS);
	}
	dmd_close(&d);
	return rc;
}
