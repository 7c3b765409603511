/*
 * outbox.h - the durable outbox: a spool of messages waiting for delivery,
 * with the retry policy (RetryMin doubling up to RetryMax, jittered; give up
 * after MaxAge).
 *
 * A message accepted by outbox_enqueue() is on disk (fsynced, renamed into
 * spool/queue, directory fsynced) before its id is returned, and stays there
 * until a delivery attempt ends in "delivered" (removed), "refused
 * permanently" or "expired" (moved to spool/failed with the reason).  All
 * retry state lives on disk, so it survives restarts; several processes may
 * use one spool at once (a message being delivered is flock()ed, and another
 * deliverer skips it).  The spool layout is described in docs/outbox.md.
 *
 * The outbox does not talk SMTP and does not read the registry: the caller
 * passes the policy (Outbox/MaxAge, Outbox/RetryMin, Outbox/RetryMax) in
 * struct outbox_options and a delivery callback that returns a dm_status.
 * The SMTP layer maps server replies onto statuses (4xx -> DM_ETEMPFAIL,
 * 5xx -> DM_EPERMFAIL, network -> DM_ENET, ...); outbox_status_is_temporary()
 * is the one place deciding retry vs give up.
 *
 * Every step is written to the system log (core/log.h):
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

struct outbox;

#define OUTBOX_ID_MAX 64            /* buffer size for an id, NUL included */
#define OUTBOX_DETAIL_MAX 512       /* "sent" detail supplied by the callback */
#define OUTBOX_MAX_RCPT 256         /* recipients per message */
#define OUTBOX_ADDR_MAX 320         /* bytes per address */
#define OUTBOX_BATCH_MAX 64         /* messages per batch callback */

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
	 * called after each durable step (names in docs/outbox.md) so a crash
	 * driver can stop the process between any two of them. */
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

/* Delivers one message.  `msg` reads the spooled bytes once, front to end.
 * On success return DM_OK and optionally write a one-line summary (server,
 * TLS, AUTH, reply) into detail[detail_cap] for the "sent" log line.  On
 * failure return a status (classified by outbox_status_is_temporary()) and
 * fill err: our diagnosis in msg, the server's reply in smtp_code,
 * enhanced and server_text. */
typedef enum dm_status (*outbox_deliver_fn)(void *ctx,
                                            const struct outbox_item *item,
                                            const struct mail_source *msg,
                                            char *detail, size_t detail_cap,
                                            struct dm_err *err);

/* What became of a delivery run. */
struct outbox_stats {
	unsigned sent;      /* delivered and removed */
	unsigned deferred;  /* temporary failure, retry scheduled */
	unsigned failed;    /* refused permanently or expired: moved to failed */
	unsigned busy;      /* skipped: locked by another deliverer */
};

/* With `id`: delivers that queued message now (even if not yet due).
 * Returns the callback's status (its detail in err), DM_ENOTFOUND (no such
 * queued id), DM_EBUSY (another process is delivering it), DM_EIO.
 * With id == NULL: delivers every queued message that is due, one callback
 * per message, oldest first; returns DM_OK unless a local error (DM_EIO)
 * stopped the run.  `stats` may be NULL. */
enum dm_status outbox_deliver(struct outbox *ob, const char *id,
                              outbox_deliver_fn fn, void *ctx,
                              struct outbox_stats *stats, struct dm_err *err);

/* Outcome of one message of a batch, filled by the batch callback. */
struct outbox_outcome {
	enum dm_status status;          /* DM_OK: delivered (preset to DM_EIO) */
	struct dm_err err;              /* as for outbox_deliver_fn */
	char detail[OUTBOX_DETAIL_MAX]; /* "sent" summary on success */
	/* Some recipients to try again (RFC 5321 sec. 3.3 and 4.2.5: a 4xx
	 * RCPT reply means "retry this recipient later"): with nretry > 0,
	 * retry[k] != 0 marks recipient k of the item.  With DM_OK the
	 * message was accepted for the others: "sent <id> <detail>" is
	 * logged, then the envelope is rewritten atomically with only the
	 * marked recipients and the message deferred (err is the reason;
	 * counted in stats.deferred), or failed when it has expired.  With a
	 * temporary status the message is deferred for the marked recipients
	 * only (the others were refused permanently).  Ignored with a
	 * permanent status.  Preset: 0. */
	size_t nretry;
	unsigned char retry[OUTBOX_MAX_RCPT];
};

/* Delivers n (1..max_batch) due messages in one call, e.g. over one SMTP
 * connection with RSET between them.  items[i] and msgs[i] describe
 * message i; fill out[i] for each.  A message whose outcome is left at its
 * preset (DM_EIO, "not attempted") counts as a permanent failure, so set
 * DM_ENET or similar for messages not reached when the connection broke. */
typedef void (*outbox_batch_fn)(void *ctx, size_t n,
                                const struct outbox_item *items,
                                const struct mail_source *msgs,
                                struct outbox_outcome *out);

/* outbox_deliver(id) with a batch callback (a batch of one), so that the
 * callback can also report recipients to retry (outcome.retry).  Same
 * returns as outbox_deliver() with an id; id must not be NULL. */
enum dm_status outbox_deliver_one(struct outbox *ob, const char *id,
                                  outbox_batch_fn fn, void *ctx,
                                  struct outbox_stats *stats,
                                  struct dm_err *err);

/* Delivers every due queued message, handing up to max_batch of them
 * (1..OUTBOX_BATCH_MAX; 0 means OUTBOX_BATCH_MAX) to each callback.
 * Locked messages are skipped.  Errors: DM_EIO, DM_ENOMEM. */
enum dm_status outbox_deliver_due(struct outbox *ob, size_t max_batch,
                                  outbox_batch_fn fn, void *ctx,
                                  struct outbox_stats *stats,
                                  struct dm_err *err);

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

/* The one function deciding retry vs give up: DM_ETEMPFAIL, DM_ENET,
 * DM_ETIMEOUT and DM_EBUSY are temporary; every other failure is permanent.
 * DM_OK is not a failure and yields false. */
bool outbox_status_is_temporary(enum dm_status status);

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
