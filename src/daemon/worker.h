/*
 * worker.h - the outbox worker: delivery threads, so that the daemon's
 * main loop stays responsive (signals, inotify, timers) while an SMTP
 * session runs.
 *
 * The main loop starts a ROUND with worker_pool_round(pool, n): n threads
 * (Outbox/Sessions, at most WORKER_MAX) each call submit_deliver_due() once
 * on the same spool.  The outbox's per-message locks share the due
 * messages out between them (a thread skips what another holds), so up to
 * n SMTP sessions run in parallel and each message is sent by one of them.
 * When the last thread of the round is done it writes to `done_fd` (an
 * eventfd in the main loop's poll set); worker_pool_result() then hands
 * over the round's sums.  Threads are created when first needed and then
 * sleep on a condition variable between rounds: an idle pool costs no
 * wake-up.
 *
 * Each thread owns its registry handle (a struct registry belongs to one
 * thread), opened again after worker_pool_reload() (SIGHUP); the account
 * and the outbox policy are read afresh by every submit_deliver_due(), so
 * a changed Email/MailHost is used by the next round without a restart.
 * For each message that ends in spool/failed the thread stores the last
 * lines of its dialogue beside it (daemon/dialogue.h,
 * outbox_dialogue_save()).
 *
 * Shutdown: worker_pool_cancel() (async-signal-safe) marks the pool
 * cancelled: no thread starts another run.  It is where the transport's
 * cancel handle will be fired once src/net has one (a blocked connect,
 * read or write then returns DM_ECANCELED).  worker_pool_stop() waits for
 * the threads up to a deadline; a thread still inside a session is then
 * abandoned (the caller exits the process), which loses nothing: the
 * outbox records "sent" only after the server's reply, and the message's
 * lock dies with the process.
 */
#ifndef DEVMAIL_DAEMON_WORKER_H
#define DEVMAIL_DAEMON_WORKER_H

#include <stdbool.h>
#include "core/err.h"
#include "daemon/dlog.h"
#include "mail/outbox.h"

#define WORKER_MAX 8              /* parallel sessions at most */

struct worker_pool;

struct worker_settings {
	const char *root;         /* data root (borrowed for the pool's life) */
	const struct dlog *log;   /* borrowed */
	bool verbose;             /* SMTP dialogue on stderr (foreground) */
	int done_fd;              /* eventfd: written when a round ends */
};

/* What one round did, summed over its threads. */
struct worker_result {
	struct outbox_stats stats;
	unsigned runs;            /* threads that ran submit_deliver_due() */
	/* The first error that stopped a run before any attempt (DM_ECONFIG
	 * naming the key, DM_ECRYPTO/DM_EPERM for the vault, DM_EIO), or
	 * DM_OK; msg says what. */
	enum dm_status status;
	char msg[DM_ERR_TEXT];
};

/* Creates the pool (no thread yet).  *out owned by the caller: stop it
 * with worker_pool_stop().  Errors: DM_ENOMEM. */
enum dm_status worker_pool_new(const struct worker_settings *s,
                               struct worker_pool **out, struct dm_err *err);

/* Starts a round with `sessions` threads (1..WORKER_MAX), creating the
 * threads that do not exist yet.  false when a round is still running,
 * the pool is cancelled, or no thread could be created. */
bool worker_pool_round(struct worker_pool *p, unsigned sessions);

/* After done_fd fired: the round's sums (and the pool is idle again). */
void worker_pool_result(struct worker_pool *p, struct worker_result *r);

/* The threads reopen their registry handle before their next run. */
void worker_pool_reload(struct worker_pool *p);

/* Async-signal-safe: no new run starts; the session in flight is
 * cancelled once the transport can be (see the top). */
void worker_pool_cancel(struct worker_pool *p);

/* Cancels, then waits until every thread has ended or timeout_ms passed.
 * true: all joined and the pool is freed.  false: a thread is still in a
 * session; the pool stays allocated (the caller is about to exit). */
bool worker_pool_stop(struct worker_pool *p, int timeout_ms);

#endif
