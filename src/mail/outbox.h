/*
 * outbox.h - the durable outbox: a spool of messages waiting for delivery,
 * with the retry policy (RetryMin doubling up to RetryMax, jittered; give up
 * after MaxAge).
 *
 * A message accepted by outbox_enqueue() is on disk (fsynced, renamed into
 * spool/queue, directory fsynced) before its id is returned, and stays there
 * until a delivery attempt ends in "delivered" (removed), "refused
 * permanently" or "expired" (moved to spool/failed with the reason).  Several
 * processes may use one spool at once (a message being delivered is
 * flock()ed, and another deliverer skips it).  The spool layout is described
 * in docs/outbox.md.
 *
 * Delivery goes in batches: the outbox locks up to OUTBOX_BATCH_MAX due
 * messages, hands them to the caller's deliverer (one SMTP session may serve
 * many batches), applies each outcome and then makes the batch durable with
 * one fsync of spool/queue (and spool/failed when something failed), not one
 * per message.  A crash can therefore send a message twice (between the
 * server's 250 and the batch's fsync), never lose one.  Retry state
 * (attempts, next try, last error) is advisory and never fsynced: losing it
 * only makes the next try come sooner.
 *
 * The outbox does not talk SMTP and does not read the registry: the caller
 * passes the policy (Outbox/MaxAge, Outbox/RetryMin, Outbox/RetryMax) in
 * struct outbox_options, and each outcome carries the verdict of
 * mail/verdict.h (sent / temporary / permanent, per recipient), which the
 * outbox applies and answers with the new state and next try.
 *
 * Every step is written to the system log (core/log.h), a batch at a time:
 *   queued <id> from <from> to <n> recipient(s) (<size> bytes)
 *   sent <id> <detail from the callback>
 *   deferred <id>: <reason>; next try in <N>s
 *   failed <id>: <reason>
 */
#ifndef DEVMAIL_MAIL_OUTBOX_H
#define DEVMAIL_MAIL_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "core/err.h"
#include "mail/source.h"
#include "mail/verdict.h"
#include "net/cancel.h"

struct outbox;

#define OUTBOX_ID_MAX 64            /* buffer size for an id, NUL included */
#define OUTBOX_DETAIL_MAX 512       /* "sent" detail supplied by the callback */
#define OUTBOX_MAX_RCPT 256         /* recipients per message */
#define OUTBOX_ADDR_MAX 320         /* bytes per address */
#define OUTBOX_BATCH_MAX 64         /* messages per batch: one deliverer call,
                                       one fsync, one burst of log lines */
#define OUTBOX_REASON_MAX 1200      /* a recorded reason, NUL included */

#define OUTBOX_DEFAULT_MAX_AGE (3L * 24 * 3600)   /* Outbox/MaxAge, seconds */
#define OUTBOX_DEFAULT_RETRY_MIN 60L              /* Outbox/RetryMin, seconds */
#define OUTBOX_DEFAULT_RETRY_MAX 3600L            /* Outbox/RetryMax, seconds */

struct outbox_options {
	long max_age;      /* seconds since enqueue; <= 0: OUTBOX_DEFAULT_MAX_AGE */
	long retry_min;    /* first delay, seconds; <= 0: default */
	long retry_max;    /* cap on the delay, seconds; <= 0: default */
	long log_max_size; /* passed to log_write(); <= 0: the log's default */
	/* Hooks; NULL means the real thing.  `clock` returns "now" (time(NULL));
	 * `jitter` returns a value in [-1, 1] (from getrandom()); `step` is
	 * called after each step (names in docs/outbox.md) so a crash driver
	 * can stop the process between any two of them.  With a drain run by
	 * several threads they are called from each: they must be
	 * thread-safe. */
	time_t (*clock)(void *ctx);
	double (*jitter)(void *ctx);
	void (*step)(void *ctx, const char *step, const char *id);
	void *hook_ctx;
};

/* Opens root/spool (creating spool/{tmp,queue,failed} when missing) and
 * removes stale spool/tmp entries left by a crash (only when no other
 * process is between steps of an enqueue or removal).  `opt` may be NULL
 * (defaults); it is copied.  *out is owned by the caller, released with
 * outbox_close().  Errors: DM_EIO, DM_ENOMEM, DM_EINVAL (path too long). */
enum dm_status outbox_open(const char *root, const struct outbox_options *opt,
                           struct outbox **out, struct dm_err *err);
void outbox_close(struct outbox *ob);

/* The envelope given to enqueue.  Strings are borrowed for the call.
 * The two flags are kept in the spool and handed back in outbox_item, so
 * that delivery asks for BODY=8BITMIME (RFC 6152 sec. 3) and SMTPUTF8
 * (RFC 6531 sec. 3.4) when the message needs them.  Zero means "7-bit
 * ASCII" as far as the caller knows; the outbox sets them itself too: both
 * for a non-ASCII address, and from the bytes it copies from a
 * mail_source (see struct outbox_scan).  They are read when the envelope
 * file is written, after the message: a writer (outbox_enqueue_writer)
 * that scans what it writes may set them on the envelope its caller
 * passed, through its own pointer, before it returns. */
struct outbox_envelope {
	const char *from;              /* envelope sender; "" allowed (bounce) */
	const char *const *rcpt;       /* 1..OUTBOX_MAX_RCPT recipients */
	size_t nrcpt;
	bool needs_8bit;               /* an octet >= 0x80 anywhere */
	bool needs_smtputf8;           /* UTF-8 in the header or an address */
};

/* Streaming scan of RFC 5322 bytes for the two envelope flags: any octet
 * >= 0x80 sets eight_bit; one in the header section (before the first
 * empty line; CR is ignored, so LF and CRLF both end lines) also sets
 * utf8_header.  Zero-initialise (or outbox_scan_init), then feed the
 * message front to end in chunks of any size. */
struct outbox_scan {
	bool in_body;
	bool mid_line;      /* the header line has a character before this */
	bool eight_bit;
	bool utf8_header;
};
void outbox_scan_init(struct outbox_scan *sc);
void outbox_scan_bytes(struct outbox_scan *sc, const void *p, size_t n);

/* Writes the whole message (RFC 5322, CRLF, not dot-stuffed) to fd, which
 * is an empty regular file opened for writing.  Must not close fd. */
typedef enum dm_status (*outbox_write_fn)(void *ctx, int fd,
                                          struct dm_err *err);

/* Spools a message pulled from `src` (read to its end, in chunks: memory
 * does not grow with size) with its envelope, durably, and writes its id
 * into id[OUTBOX_ID_MAX].  Logs "queued ...".  Ids are unique across
 * processes (time, pid, random).
 * Errors: DM_EINVAL (no recipient, CR/LF/NUL or over-long address), DM_EIO,
 * DM_ENOMEM, or the source's own error (nothing is left in the spool). */
enum dm_status outbox_enqueue(struct outbox *ob,
                              const struct outbox_envelope *env,
                              const struct mail_source *src,
                              char id[OUTBOX_ID_MAX], struct dm_err *err);

/* The same with a writer callback (e.g. the MIME builder rendering to fd). */
enum dm_status outbox_enqueue_writer(struct outbox *ob,
                                     const struct outbox_envelope *env,
                                     outbox_write_fn write, void *ctx,
                                     char id[OUTBOX_ID_MAX],
                                     struct dm_err *err);

/* One spooled message as shown to delivery and listing callbacks.  All
 * pointers are valid only during the callback. */
struct outbox_item {
	const char *id;
	const char *from;
	const char *const *rcpt;
	size_t nrcpt;
	time_t created;         /* enqueue time */
	long age;               /* now - created, seconds */
	unsigned attempts;      /* delivery attempts so far */
	time_t next_try;        /* earliest next attempt */
	const char *last_error; /* "" when none */
	uint64_t size;          /* message bytes */
	bool failed;            /* in spool/failed */
	bool needs_8bit;        /* as stored at enqueue (outbox_envelope) */
	bool needs_smtputf8;
	/* outbox_list only: the envelope file cannot be read (malformed,
	 * another format version); last_error says why, from/rcpt are empty,
	 * the numbers 0.  Delivery moves such a queued message to failed. */
	bool damaged;
};

/* What became of a message, as the outbox applied its outcome. */
enum outbox_state {
	OUTBOX_STATE_PENDING,  /* nothing applied: given back to the run
	                          (outcome.requeue), or not reached */
	OUTBOX_STATE_SENT,     /* delivered and removed */
	OUTBOX_STATE_DEFERRED, /* still queued until next_try; also when it
	                          was sent to some recipients and stays for the
	                          others */
	OUTBOX_STATE_FAILED,   /* moved to spool/failed: refused, or expired */
};

/* Outcome of one message of a batch.  The first part is filled by the
 * deliverer, the second by the outbox once the outcome is applied. */
struct outbox_outcome {
	/* The real cause: DM_OK when the server accepted it, else DM_EAUTH,
	 * DM_ENET, DM_EPERMFAIL, ...  Shown and logged, not judged: the
	 * verdict decides.  Preset: DM_EIO. */
	enum dm_status status;
	/* What to do with the message (verdict_decide()).  Preset:
	 * VERDICT_PERMANENT ("not attempted by the deliverer"), so a
	 * deliverer that loses its connection part way must say so for the
	 * messages it did not reach. */
	struct verdict verdict;
	/* With verdict.nretry > 0, retry[k] != 0 marks recipient k of the
	 * item as one that stays queued (RFC 5321 3.3, 4.2.5): with message
	 * SENT "sent <id>" is logged and the message stays queued for them
	 * alone (the envelope is rewritten durably with only them); with
	 * TEMPORARY it stays queued for them only (the others were refused
	 * for good). */
	unsigned char retry[OUTBOX_MAX_RCPT];
	/* Not an attempt: the server ended the session's allowance (verdict
	 * session_end) and the deliverer can send it over another session in
	 * this run.  The message is given back to the run untouched (no
	 * attempt counted, no backoff) and handed to a later batch.  A message
	 * given back more than a few times in one run is judged by its verdict
	 * instead. */
	bool requeue;
	struct dm_err err;              /* our diagnosis + the server's reply:
	                                   the reason recorded on failure */
	char detail[OUTBOX_DETAIL_MAX]; /* "sent" summary on success */

	/* Filled by the outbox (valid in the deliverer's `done` callback). */
	enum outbox_state state;
	unsigned attempts;              /* attempts so far, this one included */
	time_t next_try;                /* DEFERRED: the next attempt */
	long next_try_in;               /* DEFERRED: seconds from now */
	bool expired;                   /* FAILED because of Outbox/MaxAge */
	/* The run was cancelled (status DM_ECANCELED, verdict not SENT): the
	 * final reply (250 to the dot, or to BDAT LAST) was never received.
	 * The message stays queued untouched: no attempt counted, no
	 * backoff, no expiry; state DEFERRED with next_try_in 0 and
	 * `attempts` as before. */
	bool canceled;
	char reason[OUTBOX_REASON_MAX]; /* DEFERRED, FAILED: as recorded */
};

/* A batch: n due messages, locked.  items[i] and msgs[i] describe message
 * i (msgs[i] reads the spooled bytes once, front to end); the deliverer
 * fills out[i] for each.  `last`: when the batch was taken nothing else
 * was left for this run (a deliverer may say QUIT with the last message;
 * a message given back later gets a batch of its own). */
struct outbox_batch {
	size_t n;
	const struct outbox_item *items;
	const struct mail_source *msgs;
	struct outbox_outcome *out;
	bool last;
};

struct outbox_deliverer {
	/* Sends the batch (e.g. over one SMTP session kept between batches)
	 * and fills b->out[0..n). */
	void (*deliver)(void *ctx, const struct outbox_batch *b);
	/* Optional: called once the outcomes are applied and durable, with
	 * out[i].state etc. filled (the items are still valid).  Messages
	 * given back (OUTBOX_STATE_PENDING) come again in a later batch. */
	void (*done)(void *ctx, const struct outbox_batch *b);
	void *ctx;
	size_t batch;    /* messages per batch, 1..OUTBOX_BATCH_MAX; 0: max */
	/* NULL: none.  Once fired (net/cancel.h) the worker takes no new
	 * batch; the batch in flight is still applied and committed (what
	 * the server accepted is recorded as sent). */
	const struct cancel *cancel;
};

/* Delivers one message (the simple form, one call per message).  `msg`
 * reads the spooled bytes once, front to end.  On success return DM_OK
 * and optionally write a one-line summary (server, TLS, AUTH, reply) into
 * detail[detail_cap] for the "sent" log line.  On failure return a status
 * and fill err: our diagnosis in msg, the server's reply in smtp_code,
 * enhanced and server_text; the outbox asks verdict_decide() about them
 * (as a failure of the message itself). */
typedef enum dm_status (*outbox_deliver_fn)(void *ctx,
                                            const struct outbox_item *item,
                                            const struct mail_source *msg,
                                            char *detail, size_t detail_cap,
                                            struct dm_err *err);

/* What became of a delivery run. */
struct outbox_stats {
	unsigned sent;      /* delivered and removed */
	unsigned deferred;  /* temporary failure, retry scheduled (also partly
	                       delivered and kept for some recipients) */
	unsigned failed;    /* refused permanently or expired: moved to failed */
	unsigned busy;      /* skipped: locked by another deliverer */
	unsigned requeued;  /* given back to the run (not attempts) */
	unsigned canceled;  /* cancelled before the final reply: still queued,
	                       not attempts */
};

/* With `id`: delivers that queued message now (even if not yet due).
 * Returns the callback's status (its detail in err), DM_ENOTFOUND (no such
 * queued id), DM_EBUSY (another process is delivering it), DM_EIO.
 * With id == NULL: delivers every queued message that is due, in batches
 * of OUTBOX_BATCH_MAX, one callback per message, oldest first; returns
 * DM_OK unless a local error (DM_EIO) stopped the run.  `stats` may be
 * NULL. */
enum dm_status outbox_deliver(struct outbox *ob, const char *id,
                              outbox_deliver_fn fn, void *ctx,
                              struct outbox_stats *stats, struct dm_err *err);

/* outbox_deliver(id) with a deliverer (a batch of one, `last` set), so
 * that it can report recipients to retry and give the message back.
 * Returns the status of the message's final outcome, or as
 * outbox_deliver() with an id; id must not be NULL. */
enum dm_status outbox_deliver_one(struct outbox *ob, const char *id,
                                  const struct outbox_deliverer *d,
                                  struct outbox_stats *stats,
                                  struct dm_err *err);

/* Delivers every due queued message in batches of d->batch.  Locked
 * messages are skipped (stats.busy).  Errors: DM_EIO, DM_ENOMEM. */
enum dm_status outbox_deliver_due(struct outbox *ob,
                                  const struct outbox_deliverer *d,
                                  struct outbox_stats *stats,
                                  struct dm_err *err);

/* ---- drains: one run, several workers --------------------------------------
 *
 * A drain is one delivery run over the queue as it was when the drain was
 * opened, shared by up to `workers` threads (each with its own SMTP
 * session), as MTAs do.  Each worker calls outbox_drain_work() with its
 * index: its first batch is its own share of the due messages (so that
 * every worker gets one when there are enough), later batches come from
 * the rest, messages given back first.  The message locks keep workers
 * (and other processes) from sending one message twice. */

#define OUTBOX_DRAIN_ALL 0x1u   /* every queued message, due or not
                                   (OUTBOX -a, devmail-sendmail -q) */

struct outbox_drain;

/* Lists the queue (one directory read) for a run of `workers` (1..16)
 * workers.  The drain must not outlive ob.  Errors: DM_EIO, DM_ENOMEM,
 * DM_EINVAL (workers out of range). */
enum dm_status outbox_drain_open(struct outbox *ob, unsigned flags,
                                 unsigned workers, struct outbox_drain **out,
                                 struct dm_err *err);

/* Queued messages listed when the drain was opened. */
size_t outbox_drain_size(const struct outbox_drain *dr);

/* Runs worker `worker` (0..workers-1) until nothing is left for it: takes
 * a batch, locks it, calls d->deliver, applies the outcomes, one fsync,
 * the log lines, d->done; again.  Thread-safe across workers of one drain
 * (each uses its own lock descriptors; d->ctx must be the worker's own).
 * A worker index may be run only once.  Errors: DM_EIO, DM_ENOMEM (the
 * worker stops; what it applied stays applied). */
enum dm_status outbox_drain_work(struct outbox_drain *dr, unsigned worker,
                                 const struct outbox_deliverer *d,
                                 struct dm_err *err);

/* Adds the run's totals to *stats (may be NULL) and frees the drain. */
void outbox_drain_close(struct outbox_drain *dr, struct outbox_stats *stats);

enum outbox_which {
	OUTBOX_QUEUE,   /* spool/queue: waiting or being retried */
	OUTBOX_FAILED,  /* spool/failed: refused permanently or expired */
};

/* Calls fn for each message of one spool directory, in id (= enqueue)
 * order.  A non-zero return from fn stops the walk and is returned as is
 * (cast to enum dm_status).  Entries that vanish during the walk (delivered
 * by another process) are skipped; an entry whose envelope cannot be read
 * is listed with item->damaged and the reason, and the walk goes on.
 * Errors: DM_EIO, DM_ENOMEM. */
typedef int (*outbox_list_fn)(void *ctx, const struct outbox_item *item);
enum dm_status outbox_list(struct outbox *ob, enum outbox_which which,
                           outbox_list_fn fn, void *ctx, struct dm_err *err);

/* Counts the entries of one spool directory without reading them (one
 * directory read).  Errors: DM_EIO, DM_ENOMEM. */
enum dm_status outbox_count(struct outbox *ob, enum outbox_which which,
                            size_t *n, struct dm_err *err);

/* Makes a queued message (id) or every queued message (id == NULL) due now.
 * `count` (may be NULL) receives how many were changed; with id == NULL a
 * message being delivered is skipped.  Errors: DM_ENOTFOUND, DM_EBUSY (id
 * locked by a deliverer), DM_EINVAL (malformed id), DM_EIO. */
enum dm_status outbox_retry_now(struct outbox *ob, const char *id,
                                unsigned *count, struct dm_err *err);

/* Removes a message from the queue or from failed.  Errors: DM_ENOTFOUND,
 * DM_EBUSY (being delivered), DM_EINVAL (malformed id), DM_EIO. */
enum dm_status outbox_delete(struct outbox *ob, const char *id,
                             struct dm_err *err);

/* Earliest next_try over the queue into *when; DM_ENOTFOUND when the queue
 * is empty (the daemon's worker sleeps until then).  Errors: DM_EIO. */
enum dm_status outbox_next_due(struct outbox *ob, time_t *when,
                               struct dm_err *err);

/* Delay before the next attempt after `attempts` failed attempts (>= 1):
 * retry_min * 2^(attempts-1), capped at retry_max, then scaled by
 * (1 + u/10) with u in [-1, 1] (+-10 % jitter) and clamped to
 * [1, retry_max].  retry_min/retry_max <= 0 mean the defaults. */
long outbox_backoff(long retry_min, long retry_max, unsigned attempts,
                    double u);

/* ---- failed messages: lookup, dialogue, re-queue --------------------------
 * For OUTBOX -f ID, OUTBOX -R ID and ids given by a unique prefix.  The
 * last lines of the SMTP dialogue of a failed delivery are kept beside the
 * message as `dialogue` (see docs/outbox.md); the deliverer stores them
 * after the outcome is on disk. */

#define OUTBOX_DIALOGUE_LINES 24     /* lines kept per message */
#define OUTBOX_DIALOGUE_LINE_MAX 512 /* bytes per line, NUL included */

/* Where outbox_resolve() looks (bits). */
#define OUTBOX_IN_QUEUE 0x1u
#define OUTBOX_IN_FAILED 0x2u

/* Turns a unique prefix of an id (or a whole id) into the id, looking in
 * the queue, in failed, or both (`where`: OUTBOX_IN_* bits).  A whole id
 * always wins over longer ids it prefixes.  *found (may be NULL) says
 * where it is.  Errors: DM_EINVAL (not id characters, or the prefix
 * matches several messages: the message names up to three and the count),
 * DM_ENOTFOUND, DM_EIO, DM_ENOMEM. */
enum dm_status outbox_resolve(struct outbox *ob, unsigned where,
                              const char *prefix, char id[OUTBOX_ID_MAX],
                              enum outbox_which *found, struct dm_err *err);

/* Calls fn once with message `id` of queue or failed (an unreadable
 * envelope is shown as in outbox_list: item->damaged).  Returns fn's
 * non-zero value as is, else DM_OK.  Errors: DM_ENOTFOUND, DM_EINVAL
 * (malformed id), DM_EIO, DM_ENOMEM. */
enum dm_status outbox_get(struct outbox *ob, enum outbox_which which,
                          const char *id, outbox_list_fn fn, void *ctx,
                          struct dm_err *err);

/* Stores lines[0..n) (the last OUTBOX_DIALOGUE_LINES are kept, each cut
 * to one line of OUTBOX_DIALOGUE_LINE_MAX - 1 bytes, controls -> space)
 * as the dialogue of message `id`, replacing any earlier one, durably
 * (temp, fsync, rename).  The caller passes what a transcript showed:
 * AUTH payloads are already redacted there, and nothing here may carry a
 * secret.  Takes the message's lock: DM_EBUSY when a deliverer holds it.
 * Errors: DM_ENOTFOUND, DM_EBUSY, DM_EINVAL (malformed id), DM_EIO,
 * DM_ENOMEM. */
enum dm_status outbox_dialogue_save(struct outbox *ob, enum outbox_which which,
                                    const char *id, const char *const *lines,
                                    size_t n, struct dm_err *err);

/* Calls fn for each stored dialogue line of message `id`, oldest first.
 * A message without a stored dialogue yields no call and DM_OK.
 * Errors: DM_ENOTFOUND (no such message), DM_EINVAL (malformed id or a
 * damaged dialogue file), DM_EIO. */
typedef void (*outbox_line_fn)(void *ctx, const char *line);
enum dm_status outbox_dialogue_read(struct outbox *ob, enum outbox_which which,
                                    const char *id, outbox_line_fn fn,
                                    void *ctx, struct dm_err *err);

/* Puts failed message `id` back in the queue with fresh attempts: state
 * queued, attempts 0, due now, no last error, and `created` now (so that
 * Outbox/MaxAge counts from the re-queue, not from the first enqueue); the
 * stored dialogue is dropped.  Logs "requeued <id> from the failed
 * outbox".  Steps: the envelope is rewritten in failed/<id> (env-write),
 * then the directory is renamed into queue/ (requeue-move) and both
 * directories fsynced.  A crash between the two leaves the message in
 * failed/ with a queued envelope: it is listed as failed, and running
 * this again completes the move.  Errors: DM_ENOTFOUND (no failed message
 * with that id), DM_EBUSY (being deleted), DM_EINVAL (malformed id, or an
 * envelope that cannot be read: a damaged entry is not re-queued), DM_EIO. */
enum dm_status outbox_requeue(struct outbox *ob, const char *id,
                              struct dm_err *err);

#endif
