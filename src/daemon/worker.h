/*
 * worker.h - the outbox worker: one delivery thread, so that the daemon's
 * main loop stays responsive (signals, inotify, timers) while SMTP
 * sessions run.
 *
 * The main loop starts a ROUND with worker_pool_round(): the thread calls
 * submit_deliver_due() once.  The parallelism is the library's: that call
 * delivers through up to Outbox/Sessions SMTP sessions of its own, each
 * kept open across the outbox's batches, and keeps the last lines of the
 * dialogue of each message that fails beside it (mail/dialogue.h).  While
 * a round runs, worker_pool_nudge() tells it that new messages arrived (or
 * a retry came due): when its drain of the queue is done, the round looks
 * at the queue again over the sessions still open, instead of ending and
 * opening new connections for the next round (a burst of messages goes
 * over Outbox/Sessions connections, one when it is 1).  With no nudge for
 * WORKER_LINGER_MS after a drain the round ends (QUIT).  A nudge with
 * `fresh` (the registry changed) ends the round after its drain, so the
 * next one reads the account again.
 *
 * When the round ends the thread writes to `done_fd` (an eventfd in the
 * main loop's poll set); worker_pool_result() then hands over its sums.
 * The thread is created when first needed and sleeps on a condition
 * variable between rounds: an idle pool costs no wake-up.  It owns its
 * registry handle (a struct registry belongs to one thread), opened again
 * after worker_pool_reload() (SIGHUP); the account and the outbox policy
 * are read afresh by every round.
 *
 * Shutdown: worker_pool_cancel() (async-signal-safe) fires the pool's
 * cancel handle (net/cancel.h), given to every SMTP session through
 * submit_hooks.cancel: a blocked connect, read or write returns
 * DM_ECANCELED at once, the messages the server accepted are recorded as
 * sent, the others stay queued with no attempt counted, and no new round,
 * session or batch starts.  worker_pool_stop() waits for the thread up to
 * a deadline; a thread still stuck (it should not be) is abandoned, which
 * loses nothing: the outbox records "sent" only after the server's reply.
 */
#ifndef DEVMAIL_DAEMON_WORKER_H
#define DEVMAIL_DAEMON_WORKER_H

#include <stdbool.h>
#include "core/err.h"
#include "daemon/dlog.h"
#include "mail/outbox.h"

#define WORKER_LINGER_MS 1000     /* a round waits this long for new work
                                     after draining the queue */

struct worker_pool;

struct worker_settings {
	const char *root;         /* data root (borrowed for the pool's life) */
	const struct dlog *log;   /* borrowed */
	bool verbose;             /* SMTP dialogue on stderr (foreground) */
	int done_fd;              /* eventfd: written when a round ends */
};

/* What one round did. */
struct worker_result {
	struct outbox_stats stats;
	unsigned runs;            /* submit_deliver_due() calls (0 or 1) */
	/* The error that stopped the run before any attempt (DM_ECONFIG
	 * naming the key, DM_ECRYPTO/DM_EPERM for the vault, DM_EIO), or
	 * DM_OK; msg says what. */
	enum dm_status status;
	char msg[DM_ERR_TEXT];
};

/* Creates the pool (no thread yet) and its cancel handle.  *out owned by
 * the caller: stop it with worker_pool_stop().  Errors: DM_ENOMEM, DM_EIO
 * (no eventfd). */
enum dm_status worker_pool_new(const struct worker_settings *s,
                               struct worker_pool **out, struct dm_err *err);

/* Starts a round, creating the thread if it does not exist yet.  false
 * when a round is still running, the pool is cancelled, or the thread
 * could not be created. */
bool worker_pool_round(struct worker_pool *p);

/* During a round: new work (a queued message, a retry due); with `fresh`
 * the settings changed and the round should end after its drain.  No
 * effect between rounds. */
void worker_pool_nudge(struct worker_pool *p, bool fresh);

/* After done_fd fired: the round's sums (and the pool is idle again). */
void worker_pool_result(struct worker_pool *p, struct worker_result *r);

/* The thread reopens its registry handle before its next run. */
void worker_pool_reload(struct worker_pool *p);

/* Async-signal-safe: fires the cancel; no new run starts. */
void worker_pool_cancel(struct worker_pool *p);

/* Cancels, then waits until the thread has ended or timeout_ms passed.
 * true: joined and the pool is freed.  false: the thread is still in a
 * session; the pool stays allocated (the caller is about to exit). */
bool worker_pool_stop(struct worker_pool *p, int timeout_ms);

#endif
