/* worker.c - delivery threads for devmaild (see worker.h). */
#include "daemon/worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/registry.h"
#include "daemon/dialogue.h"
#include "mail/submit.h"

struct worker_thread {
	struct worker_pool *pool;
	unsigned idx;
	pthread_t th;
	uint64_t seen;                /* last round generation looked at */
	uint64_t reload_seen;
	struct registry *reg;         /* this thread's own */
	struct dialogue *dlg;
	struct outbox *ob;            /* opened when a dialogue is stored */
	/* this run */
	struct outbox_stats stats;
	enum dm_status status;
	struct dm_err err;
};

struct worker_pool {
	struct worker_settings s;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t gen;                 /* round generation */
	uint64_t reload_gen;
	unsigned round_n;             /* threads taking part in this round */
	unsigned active;              /* of those, still running */
	bool stop;
	atomic_bool cancelled;
	unsigned nthreads;
	struct worker_thread t[WORKER_MAX];
	struct worker_result res;
};

/* ---- one run ------------------------------------------------------------ */

static void worker_transcript(void *ctx, enum smtp_dir dir, const char *line)
{
	struct worker_thread *t = ctx;

	if (t->dlg)
		dialogue_line(t->dlg, dir, line);
	if (t->pool->s.verbose)
		dlog_stderr(t->pool->s.log, "[%u] %s %s", t->idx,
		            dir == SMTP_DIR_CLIENT ? ">>>" :
		            dir == SMTP_DIR_SERVER ? "<<<" : "---", line);
}

/* Keeps the last lines of the dialogue with a message that failed. */
static void worker_store_dialogue(struct worker_thread *t,
                                  const struct submit_report *r)
{
	const char *lines[DIALOGUE_SNAP_LINES];
	struct dm_err e;

	if (!t->dlg)
		return;
	size_t n = dialogue_for_failure(t->dlg, r->err.msg, lines,
	                                DIALOGUE_SNAP_LINES);
	if (n == 0)
		return;
	dm_err_clear(&e);
	if (!t->ob && submit_outbox_open(t->pool->s.root, t->reg, &t->ob, &e))
		return;
	/* Best effort: the message is failed already; without its dialogue
	 * OUTBOX -f still shows the reason. */
	(void)outbox_dialogue_save(t->ob, OUTBOX_FAILED, r->id, lines, n, NULL);
}

static void worker_report(void *ctx, const struct submit_report *r)
{
	struct worker_thread *t = ctx;

	if (r->outcome == SUBMIT_FAILED)
		worker_store_dialogue(t, r);
	/* The outbox has logged sent/deferred/failed; in the foreground the
	 * user also sees the result line. */
	dlog_stderr(t->pool->s.log, "%s", r->line);
}

static void worker_run(struct worker_thread *t, bool reload)
{
	struct worker_pool *p = t->pool;
	struct submit_hooks h;

	memset(&t->stats, 0, sizeof(t->stats));
	t->status = DM_OK;
	dm_err_clear(&t->err);
	if (reload && t->reg) {
		registry_close(t->reg);
		t->reg = NULL;
	}
	if (!t->reg && (t->status = registry_open(p->s.root, &t->reg, &t->err)))
		return;
	if (!t->dlg)
		t->dlg = dialogue_new();
	if (t->dlg)
		dialogue_reset(t->dlg);
	memset(&h, 0, sizeof(h));
	h.transcript = worker_transcript;
	h.transcript_ctx = t;
	h.report = worker_report;
	h.report_ctx = t;
	t->status = submit_deliver_due(p->s.root, t->reg, &h, &t->stats, &t->err);
	outbox_close(t->ob);
	t->ob = NULL;
	if (t->dlg)
		dialogue_reset(t->dlg);   /* free the snapshots while idle */
}

/* ---- threads ---------------------------------------------------------------- */

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
	struct worker_thread *t = arg;
	struct worker_pool *p = t->pool;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop && t->seen == p->gen)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop)
			break;
		t->seen = p->gen;
		if (t->idx >= p->round_n)
			continue;              /* not part of this round */
		bool reload = t->reload_seen != p->reload_gen;
		t->reload_seen = p->reload_gen;
		pthread_mutex_unlock(&p->mu);
		if (!atomic_load(&p->cancelled))
			worker_run(t, reload);
		pthread_mutex_lock(&p->mu);
		p->res.runs++;
		p->res.stats.sent += t->stats.sent;
		p->res.stats.deferred += t->stats.deferred;
		p->res.stats.failed += t->stats.failed;
		p->res.stats.busy += t->stats.busy;
		if (t->status != DM_OK && p->res.status == DM_OK) {
			p->res.status = t->status;
			snprintf(p->res.msg, sizeof(p->res.msg), "%s",
			         t->err.msg[0] ? t->err.msg : dm_status_str(t->status));
		}
		if (--p->active == 0)
			worker_done_signal(p);
	}
	pthread_mutex_unlock(&p->mu);
	registry_close(t->reg);
	t->reg = NULL;
	dialogue_free(t->dlg);
	t->dlg = NULL;
	return NULL;
}

enum dm_status worker_pool_new(const struct worker_settings *s,
                               struct worker_pool **out, struct dm_err *err)
{
	struct worker_pool *p = calloc(1, sizeof(*p));

	*out = NULL;
	if (!p)
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	p->s = *s;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	atomic_init(&p->cancelled, false);
	*out = p;
	return DM_OK;
}

bool worker_pool_round(struct worker_pool *p, unsigned sessions)
{
	if (sessions < 1)
		sessions = 1;
	if (sessions > WORKER_MAX)
		sessions = WORKER_MAX;
	pthread_mutex_lock(&p->mu);
	if (p->active > 0 || p->stop || atomic_load(&p->cancelled)) {
		pthread_mutex_unlock(&p->mu);
		return false;
	}
	while (p->nthreads < sessions) {
		struct worker_thread *t = &p->t[p->nthreads];
		memset(t, 0, sizeof(*t));
		t->pool = p;
		t->idx = p->nthreads;
		t->seen = p->gen;
		t->reload_seen = p->reload_gen;
		if (pthread_create(&t->th, NULL, worker_main, t) != 0)
			break;
		p->nthreads++;
	}
	if (p->nthreads == 0) {
		pthread_mutex_unlock(&p->mu);
		return false;
	}
	if (sessions > p->nthreads)
		sessions = p->nthreads;
	memset(&p->res, 0, sizeof(p->res));
	p->round_n = sessions;
	p->active = sessions;
	p->gen++;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return true;
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
	/* Here the transport's cancel handles are fired once src/net has
	 * them (issue 7): each thread then gets DM_ECANCELED from its blocked
	 * connect/read/write and ends its run at once. */
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
	for (unsigned i = 0; i < p->nthreads; i++) {
		if (pthread_timedjoin_np(p->t[i].th, NULL, &deadline) != 0)
			return false;      /* still in a session: abandoned */
		p->t[i].th = 0;
	}
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
	return true;
}
