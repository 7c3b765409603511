/* worker.c - the delivery thread of devmaild (see worker.h). */
#include "daemon/worker.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/registry.h"
#include "mail/submit.h"
#include "net/cancel.h"

struct worker_pool {
	struct worker_settings s;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	bool have_thread;
	uint64_t gen;                 /* round generation */
	uint64_t seen;                /* the thread's last one */
	uint64_t reload_gen, reload_seen;
	bool active;                  /* a round is running */
	bool stop;
	atomic_bool cancelled;
	atomic_bool fresh;            /* settings changed during the round */
	struct cancel *cancel;        /* every session of every round */
	int nudge_fd;                 /* eventfd: new work during a round */
	struct registry *reg;         /* the thread's own */
	struct worker_result res;
};

/* ---- one round --------------------------------------------------------------- */

static void worker_transcript(void *ctx, enum smtp_dir dir, const char *line)
{
	struct worker_pool *p = ctx;

	/* lines come "[k] ..." (k: the session); one at a time */
	dlog_stderr(p->s.log, "%s %s", dir == SMTP_DIR_CLIENT ? ">>>" :
	            dir == SMTP_DIR_SERVER ? "<<<" : "---", line);
}

static void worker_report(void *ctx, const struct submit_report *r)
{
	struct worker_pool *p = ctx;

	/* The outbox has logged sent/deferred/failed (and stored a failed
	 * message's dialogue); in the foreground the user also sees the
	 * result line. */
	dlog_stderr(p->s.log, "%s", r->line);
}

/* Empties the nudge eventfd; true when something was there. */
static bool worker_nudged(struct worker_pool *p)
{
	uint64_t v;
	return read(p->nudge_fd, &v, sizeof(v)) == (ssize_t)sizeof(v);
}

/* submit_hooks.more: the queue was drained; go on when new work came in
 * (or comes within WORKER_LINGER_MS), not after a settings change or a
 * cancel. */
static bool worker_more(void *ctx)
{
	struct worker_pool *p = ctx;
	struct pollfd pfd[2] = {
		{ .fd = p->nudge_fd, .events = POLLIN },
		{ .fd = cancel_fd(p->cancel), .events = POLLIN },
	};
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (cancel_fired(p->cancel) || atomic_load(&p->fresh))
			return false;
		if (worker_nudged(p))
			return !atomic_load(&p->fresh);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		long ms = (long)(t1.tv_sec - t0.tv_sec) * 1000 +
		          (t1.tv_nsec - t0.tv_nsec) / 1000000;
		if (ms >= WORKER_LINGER_MS)
			return false;
		if (poll(pfd, 2, (int)(WORKER_LINGER_MS - ms)) < 0 && errno != EINTR)
			return false;
	}
}

static void worker_run(struct worker_pool *p, bool reload)
{
	struct submit_hooks h;
	struct dm_err e;
	enum dm_status st;

	dm_err_clear(&e);
	if (reload && p->reg) {
		registry_close(p->reg);
		p->reg = NULL;
	}
	if (!p->reg && (st = registry_open(p->s.root, &p->reg, &e)) != DM_OK)
		goto out;
	memset(&h, 0, sizeof(h));
	if (p->s.verbose) {
		h.transcript = worker_transcript;
		h.transcript_ctx = p;
		h.transcript_tagged = true;   /* Outbox/Sessions still applies */
	}
	h.report = worker_report;
	h.report_ctx = p;
	h.cancel = p->cancel;
	h.more = worker_more;
	h.more_ctx = p;
	st = submit_deliver_due(p->s.root, p->reg, &h, &p->res.stats, &e);
	p->res.runs = 1;
out:
	p->res.status = st;
	if (st != DM_OK)
		snprintf(p->res.msg, sizeof(p->res.msg), "%s",
		         e.msg[0] ? e.msg : dm_status_str(st));
}

/* ---- the thread ---------------------------------------------------------------- */

static void worker_done_signal(struct worker_pool *p)
{
	uint64_t one = 1;
	ssize_t r;

	do
		r = write(p->s.done_fd, &one, sizeof(one));
	while (r < 0 && errno == EINTR);
}

static void *worker_main(void *arg)
{
	struct worker_pool *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop && p->seen == p->gen)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop)
			break;
		p->seen = p->gen;
		bool reload = p->reload_seen != p->reload_gen;
		p->reload_seen = p->reload_gen;
		pthread_mutex_unlock(&p->mu);
		if (!atomic_load(&p->cancelled))
			worker_run(p, reload);
		pthread_mutex_lock(&p->mu);
		p->active = false;
		worker_done_signal(p);
	}
	pthread_mutex_unlock(&p->mu);
	registry_close(p->reg);
	p->reg = NULL;
	return NULL;
}

enum dm_status worker_pool_new(const struct worker_settings *s,
                               struct worker_pool **out, struct dm_err *err)
{
	struct worker_pool *p = calloc(1, sizeof(*p));
	enum dm_status st;

	*out = NULL;
	if (!p)
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	p->s = *s;
	if ((st = cancel_new(&p->cancel, err)) != DM_OK) {
		free(p);
		return st;
	}
	p->nudge_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->nudge_fd < 0) {
		cancel_free(p->cancel);
		free(p);
		return dm_err_set(err, DM_EIO, "eventfd: %s", strerror(errno));
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	atomic_init(&p->cancelled, false);
	atomic_init(&p->fresh, false);
	*out = p;
	return DM_OK;
}

bool worker_pool_round(struct worker_pool *p)
{
	pthread_mutex_lock(&p->mu);
	if (p->active || p->stop || atomic_load(&p->cancelled)) {
		pthread_mutex_unlock(&p->mu);
		return false;
	}
	if (!p->have_thread) {
		p->seen = p->gen;
		p->reload_seen = p->reload_gen;
		if (pthread_create(&p->th, NULL, worker_main, p) != 0) {
			pthread_mutex_unlock(&p->mu);
			return false;
		}
		p->have_thread = true;
	}
	memset(&p->res, 0, sizeof(p->res));
	atomic_store(&p->fresh, false);
	(void)worker_nudged(p);       /* what came before this round */
	p->active = true;
	p->gen++;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return true;
}

void worker_pool_nudge(struct worker_pool *p, bool fresh)
{
	uint64_t one = 1;

	if (fresh)
		atomic_store(&p->fresh, true);
	if (write(p->nudge_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is full, i.e. nudged already */
	}
}

void worker_pool_result(struct worker_pool *p, struct worker_result *r)
{
	pthread_mutex_lock(&p->mu);
	*r = p->res;
	pthread_mutex_unlock(&p->mu);
}

void worker_pool_reload(struct worker_pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->reload_gen++;
	pthread_mutex_unlock(&p->mu);
}

void worker_pool_cancel(struct worker_pool *p)
{
	atomic_store(&p->cancelled, true);
	/* Every session in flight gets DM_ECANCELED from its blocked
	 * connect/read/write and the round ends at once. */
	cancel_fire(p->cancel);
}

bool worker_pool_stop(struct worker_pool *p, int timeout_ms)
{
	struct timespec deadline;

	worker_pool_cancel(p);
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	if (p->have_thread && pthread_timedjoin_np(p->th, NULL, &deadline) != 0)
		return false;      /* still in a session: abandoned */
	close(p->nudge_fd);
	cancel_free(p->cancel);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
	return true;
}
