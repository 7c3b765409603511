/*
 * submit.h - mail submission glue shared by SENDMAIL, devmail-sendmail,
 * OUTBOX -r/-a, the daemon's outbox worker and the web page ("commands are
 * thin").
 *
 * Two halves:
 *   enqueue  a message built from a struct message_spec (SENDMAIL, web,
 *            boot mail), or a raw RFC 5322 message read from a source
 *            (devmail-sendmail, submit_raw.c): Date and Message-ID are
 *            added when missing, LF line ends become CRLF.  The message is
 *            in the outbox (durable) before the id is returned.
 *   deliver  reads the outbox policy (Outbox/MaxAge, Outbox/RetryMin,
 *            Outbox/RetryMax, Outbox/Sessions, Log/MaxSize) and the
 *            account (account_load) from the registry, and drains the
 *            outbox (submit_send.c) through up to Outbox/Sessions SMTP
 *            sessions in parallel, each one kept open across the outbox's
 *            batches (RSET-free pipelined transactions, RFC 2920).  A
 *            server that ends a session's allowance (421, or 452 4.5.3 to
 *            MAIL after N messages) gets a new session for the rest, and at
 *            most N messages per session from then on.  The caller gets one
 *            report per message, after the outbox applied its outcome (the
 *            new state and next try come from the outcome, the spool is not
 *            read again): id, outcome, the real status, a result line, and
 *            the command-line exit status.  The last lines of the
 *            dialogue of each message that moves to spool/failed are
 *            stored beside it (mail/dialogue.h, one recorder per
 *            session), whatever the caller's hooks.  A cancel
 *            (hooks->cancel) ends the sessions at once and leaves the
 *            messages not yet accepted queued, with no attempt counted.
 *
 * Retry policy: mail/verdict.h decides, the outbox applies.  In short:
 *   - A failure of the session itself (connect, TLS, greeting, EHLO, AUTH -
 *     also an AUTH pipelined with the first MAIL - everything before the
 *     message) says nothing about the message: it stays queued and is
 *     retried until Outbox/MaxAge.  In particular a wrong password
 *     (DM_EAUTH, 535) keeps the mail queued (exit 77) so that the operator
 *     can fix it with IPCONFIG, and 454 (a temporary AUTH failure) keeps
 *     it queued with exit 75.  The report carries the real cause
 *     (DM_EAUTH, DM_ETLS, ...).  Once a session could not be opened, the
 *     rest of the run does not try again.
 *   - Failures of one message (5xx at MAIL/RCPT/DATA, SIZE exceeded, bad
 *     envelope) are permanent: the message moves to spool/failed (exit 69).
 *   - 4xx replies, network errors and timeouts while sending are
 *     temporary (exit 75).
 *   - 421 and 452 4.5.3 at MAIL, once the session has delivered something,
 *     are not attempts: the message goes over the next session of the run.
 *   - Recipients refused with 4xx while others were accepted (or refused
 *     with 5xx) are retried alone: the message stays queued for just them
 *     (outbox_outcome.retry), exit 75; 5xx recipients are dropped and
 *     named in the result line and the log.
 *
 * Exit statuses (the command-line edge; submit_exit()):
 *   0 delivered; 75 queued for retry; 69 refused permanently;
 *   77 authentication failed for good (message kept queued, see above);
 *   78 configuration missing (the message names the key); 65 bad input;
 *   66 missing input file (attachment, body file); 74 local I/O error.
 */
#ifndef DEVMAIL_MAIL_SUBMIT_H
#define DEVMAIL_MAIL_SUBMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "core/err.h"
#include "core/registry.h"
#include "mail/message.h"
#include "mail/outbox.h"
#include "mail/smtp.h"
#include "mail/source.h"
#include "net/cancel.h"

#define SUBMIT_LINE_MAX 1024          /* a report's result line */
/* Recipients per message at enqueue: what one SMTP transaction carries
 * (SMTP_MAX_RCPT; RFC 5321 4.5.3.1.8 lets a server stop at 100).  More
 * is refused with DM_EINVAL (exit 65) before anything is queued, instead
 * of being queued and then refused at delivery. */
#define SUBMIT_MAX_RCPT SMTP_MAX_RCPT
#define SUBMIT_HEADER_MAX (256 * 1024) /* raw message: header block cap */
#define SUBMIT_RAW_MAX (64L * 1024 * 1024) /* raw message: default size cap */

/* ---- enqueue ------------------------------------------------------------- */

/* Flags for the enqueue functions. */
#define SUBMIT_NEED_ACCOUNT 0x1u  /* refuse with DM_ECONFIG (naming the key,
                                     e.g. Email/MailHost) when the account
                                     cannot be loaded, before anything is
                                     queued */

/* Builds the message and spools it with its envelope (From; To+Cc+Bcc).
 * Defaults from the registry: spec->from NULL -> Email/FromAddress;
 * no recipient at all (nto == ncc == nbcc == 0) -> Email/ToAddress;
 * spec->hostname NULL -> IpConfig/HostName (Message-ID right side).
 * A default that is unset -> DM_ECONFIG naming the key.  The spec is not
 * modified.  Validation happens before anything is written: on any error
 * nothing is queued.  id[OUTBOX_ID_MAX] receives the id.
 * Errors: DM_EINVAL (bad address, CR/LF in a header value, ...),
 * DM_ENOINPUT (attachment or body file missing; the message names it),
 * DM_ECONFIG, DM_EIO, DM_ENOMEM, and account_load()'s errors with
 * SUBMIT_NEED_ACCOUNT. */
enum dm_status submit_enqueue_message(const char *root, struct registry *reg,
                                      const struct message_spec *spec,
                                      unsigned flags,
                                      char id[OUTBOX_ID_MAX],
                                      struct dm_err *err);

/* A raw message (devmail-sendmail). */
struct submit_raw {
	struct mail_source src;   /* RFC 5322 bytes, LF or CRLF line ends;
	                             read to its end */
	const char *from;         /* envelope sender; NULL: the address of the
	                             From header, else Email/FromAddress */
	const char *const *rcpt;  /* envelope recipients (bare or Name <a@b>) */
	size_t nrcpt;
	/* sendmail -t: also take recipients from To, Cc and Bcc, and drop the
	 * Bcc field from the spooled message. */
	bool rcpt_from_headers;
	const char *hostname;     /* Message-ID right side; NULL:
	                             IpConfig/HostName */
	uint64_t max_size;        /* cap on the spooled size; 0: SUBMIT_RAW_MAX */
};

/* Reads the header block (at most SUBMIT_HEADER_MAX bytes, else DM_EINVAL)
 * into memory, then spools: a Date and a Message-ID field first when the
 * message has none (and From: Email/FromAddress when it has no From),
 * then the header as given (minus Bcc with rcpt_from_headers), then the
 * body streamed from the source.  LF becomes CRLF; a bare CR becomes
 * CRLF in the body but is refused in the header block (up to the first
 * empty line), where it would start a header field of its own.
 * Errors: DM_EINVAL (no recipient, bad address, NUL byte, bare CR in the
 * header, header too long, message over max_size), DM_ECONFIG (no sender anywhere), the
 * source's own errors, DM_EIO, DM_ENOMEM; nothing is queued on error. */
enum dm_status submit_enqueue_raw(const char *root, struct registry *reg,
                                  const struct submit_raw *raw, unsigned flags,
                                  char id[OUTBOX_ID_MAX], struct dm_err *err);

/* ---- deliver --------------------------------------------------------------- */

enum submit_outcome {
	SUBMIT_SENT,       /* accepted by the server, removed from the queue */
	SUBMIT_DEFERRED,   /* still queued, next_try set */
	SUBMIT_FAILED,     /* moved to spool/failed */
};

struct submit_report {
	char id[OUTBOX_ID_MAX];
	enum submit_outcome outcome;
	enum dm_status status;       /* the real cause: DM_OK, DM_EAUTH, DM_ENET,
	                                DM_EPERMFAIL, ... (not the status the
	                                outbox was given) */
	struct dm_err err;           /* our diagnosis + the server's reply */
	/* One line for the user:
	 *  "Sent to a@x via host:587 (STARTTLS, TLS1.3, AES-256-GCM,
	 *   certificate verified, AUTH PLAIN): 250 2.0.0 Ok"
	 *  "Queued <id> for retry: <reason>; next try in 60s"
	 *  "Failed <id>: <reason>" */
	char line[SUBMIT_LINE_MAX];
	/* For SENT: the session line above; else the server/TLS part of it when
	 * a session was open ("" when the connection never came up). */
	char detail[SUBMIT_LINE_MAX];
	long next_try_in;            /* DEFERRED: seconds until the next try */
	/* Sent to some recipients, still queued for those refused with 4xx
	 * (outcome DEFERRED, status DM_ETEMPFAIL, exit 75); the line starts
	 * "Sent to ..." and names the recipients kept for retry. */
	bool partial;
	int exit_code;               /* submit_exit() of this report */
};

/* Called with sent bytes so far and the message size, as the message is
 * read by the SMTP engine (at most once per 64 KiB chunk, and at the end). */
typedef void (*submit_progress_fn)(void *ctx, const char *id, uint64_t sent,
                                   uint64_t total);
/* Called once per message attempted, after its outcome is applied and
 * durable (at the end of its outbox batch).  With several sessions the
 * calls (like those of the transcript and progress hooks) come from
 * several threads, one at a time. */
typedef void (*submit_report_fn)(void *ctx, const struct submit_report *r);

struct submit_hooks {
	smtp_transcript_fn transcript; /* the engine's redacted transcript, live */
	void *transcript_ctx;
	bool transcript_tagged;        /* each line starts "[k] " (k: the
	                                  session, 0..): the lines of parallel
	                                  sessions may then interleave, and the
	                                  transcript no longer forces one
	                                  session */
	submit_progress_fn progress;
	void *progress_ctx;
	submit_report_fn report;
	void *report_ctx;
	size_t batch;                  /* messages per outbox batch (one fsync,
	                                  one burst of reports; sessions go on
	                                  across batches); 0: OUTBOX_BATCH_MAX */
	bool all;                      /* submit_deliver_due: every queued
	                                  message, due or not (OUTBOX -a,
	                                  devmail-sendmail -q) */
	unsigned sessions;             /* submit_deliver_due: parallel SMTP
	                                  sessions; 0: Outbox/Sessions.  With a
	                                  transcript hook always 1 (unless
	                                  transcript_tagged), so that the
	                                  dialogue reads in order */
	/* NULL: none.  Given to every session of the run (net/cancel.h).
	 * Once fired, the sessions in flight end with DM_ECANCELED at once;
	 * a message whose final reply (250 to the dot, or to BDAT LAST) was
	 * not received stays queued untouched (no attempt counted, no
	 * backoff; report DEFERRED with next_try_in 0), the messages the
	 * server accepted are recorded as sent (the batch is still
	 * committed), and no new session or batch is started.  Must outlive
	 * the call. */
	struct cancel *cancel;
	/* submit_deliver_due without `all`: called each time the run has
	 * drained the queue; true looks at the queue again in the same run,
	 * over the sessions still open (a daemon: new messages arrived, so a
	 * burst goes over the same connections), false ends the run (QUIT).
	 * It may wait a little for new work; it should return false soon
	 * after `cancel` fires.  NULL: one drain, the last batch carries
	 * QUIT. */
	bool (*more)(void *ctx);
	void *more_ctx;
	/* Test hooks passed to the outbox (NULL: the real thing). */
	time_t (*clock)(void *ctx);
	void *clock_ctx;
};

/* Delivers one queued message now (even when not yet due) and waits for
 * the outcome, which *report receives (also passed to hooks->report).
 * hooks may be NULL.  Returns report->status when an attempt was made.
 * Errors before any attempt (nothing changes in the spool): DM_ECONFIG
 * (no Email/MailHost; message names the key), DM_ECRYPTO/DM_EPERM
 * (password cannot be unsealed), DM_ENOTFOUND (no such queued id),
 * DM_EBUSY (another process is delivering it), DM_EINVAL (malformed id),
 * DM_EIO.  report may be NULL. */
enum dm_status submit_deliver(const char *root, struct registry *reg,
                              const char *id, const struct submit_hooks *hooks,
                              struct submit_report *report,
                              struct dm_err *err);

/* Delivers every due queued message (every queued one with hooks->all)
 * through up to Outbox/Sessions sessions, one hooks->report call per
 * message.  `stats` may be NULL.  Returns DM_OK when the run completed
 * (whatever the messages' outcomes), else the errors of submit_deliver()
 * before any attempt, DM_EIO. */
enum dm_status submit_deliver_due(const char *root, struct registry *reg,
                                  const struct submit_hooks *hooks,
                                  struct outbox_stats *stats,
                                  struct dm_err *err);

/* Opens the outbox with the policy from the registry (for OUTBOX listing,
 * retry_now, delete).  Errors: as outbox_open(), DM_EINVAL for a stored
 * policy value that is not an integer. */
enum dm_status submit_outbox_open(const char *root, struct registry *reg,
                                  struct outbox **out, struct dm_err *err);

/* ---- the command-line edge ---------------------------------------------- */

/* Exit status of a report (see the table at the top). */
int submit_exit(const struct submit_report *r);

/* Exit status of a status returned before any delivery attempt (enqueue,
 * configuration): DM_EINVAL 65, DM_ENOINPUT 66, DM_ECONFIG 78, DM_EAUTH 77,
 * temporary statuses 75, DM_EPERMFAIL 69, else dm_status_exit(). */
int submit_status_exit(enum dm_status st);

/* The session part of a result line: "host:port (STARTTLS, TLS1.3,
 * AES-256-GCM, certificate verified, AUTH PLAIN)" or "host:port (no TLS,
 * AUTH none)".  Returns the length it wanted (snprintf-like). */
size_t submit_session_str(const struct smtp_info *info, char *out, size_t cap);

#endif
