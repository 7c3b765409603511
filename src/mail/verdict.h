/*
 * verdict.h - the one place that decides what becomes of a message after a
 * delivery attempt: sent, try again later (temporary), or give up
 * (permanent), for the message and for each of its recipients.
 *
 * Inputs are what the attempt produced: our status (core/err.h), the
 * server's deciding reply (code and enhanced status code, RFC 5321 4.2,
 * RFC 3463), each recipient's RCPT reply, and where the attempt stopped
 * (the session before the message, the reply to MAIL FROM, or the
 * message's own transaction).  The SMTP engine fills those in (mail/smtp.h),
 * submit.c turns them into a verdict, the outbox applies it (mail/outbox.h).
 * Nothing else decides retry versus give up.
 *
 * The rules (docs/outbox.md, "Retry policy"):
 *   1. A failure is judged by its reply code when there is one: 4xx is
 *      temporary, 5xx permanent (RFC 5321 4.2.1).  Without a code by the
 *      status: network, timeout, protocol glitches, local I/O, memory, a
 *      busy lock, cancellation and DM_ETEMPFAIL are temporary; TLS
 *      verification, AUTH, configuration, policy, bad input and
 *      DM_EPERMFAIL (SIZE exceeded, 8BITMIME/SMTPUTF8 missing) permanent.
 *   2. A failure of the session rather than the message - before the
 *      message (connect, TLS, greeting, EHLO, AUTH, also a pipelined AUTH
 *      refused in the message's first flight), any DM_EAUTH, or a
 *      cancelled run (DM_ECANCELED) - keeps the message queued whatever
 *      rule 1 says about the failure: a wrong password must not lose a
 *      boot mail.  `failure` still says whether the cause will pass by
 *      itself (454) or needs the operator (535).
 *   3. 421 at any point, or 452 with enhanced code 4.5.3 in reply to MAIL
 *      FROM (a server limiting messages per session, e.g. OpenSMTPD), end
 *      the session's allowance: the message was not judged at all
 *      (`session_end`); another session may take it at once.
 *   4. Recipients: 2xx sent, 4xx temporary (RFC 5321 3.3 and 4.2.5: "this
 *      one, later"), 5xx permanent.  A message accepted with some 4xx
 *      recipients is sent and stays queued for those alone; a message kept
 *      for a retry drops the recipients already refused with 5xx; a
 *      message whose every recipient was refused permanently is refused.
 */
#ifndef DEVMAIL_MAIL_VERDICT_H
#define DEVMAIL_MAIL_VERDICT_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"

enum verdict_kind {
	VERDICT_SENT,        /* accepted; nothing failed */
	VERDICT_TEMPORARY,   /* try again later */
	VERDICT_PERMANENT,   /* give up */
};

/* Where the attempt stopped, as far as this message is concerned. */
enum verdict_phase {
	VERDICT_SESSION,     /* the session, before any command of this
	                        message was answered: connect, TLS, greeting,
	                        EHLO, AUTH (pipelined too), or the session
	                        ended before the message's turn */
	VERDICT_MAIL,        /* the reply to MAIL FROM */
	VERDICT_MESSAGE,     /* anything else of the message's own: checks
	                        before sending, RCPT, DATA, content, final dot */
};

struct verdict_input {
	enum dm_status status;   /* DM_OK: the server accepted the message */
	enum verdict_phase phase;
	int code;                /* the deciding reply's code, 0: none */
	const char *enhanced;    /* its enhanced status code ("4.5.3"); NULL or
	                            "": none */
	const int *rcpt_code;    /* each recipient's RCPT reply code (0: not
	                            answered); NULL when unknown */
	size_t nrcpt;            /* entries in rcpt_code */
};

struct verdict {
	enum verdict_kind message;  /* SENT: accepted (maybe still queued for
	                               the recipients marked in retry[]);
	                               TEMPORARY: stays queued; PERMANENT:
	                               refused, moves to failed */
	enum verdict_kind failure;  /* the failure on its own (rule 1); SENT
	                               when nothing failed */
	bool session;               /* rule 2: a session failure */
	bool session_end;           /* rule 3: not an attempt of the message */
	size_t nretry;              /* recipients marked in retry[] */
};

/* Decides for one message.  `retry` (may be NULL; else room for
 * in->nrcpt bytes, zeroed here) marks the recipients that stay queued
 * when that is a strict subset of them (rule 4): with message SENT, those
 * refused with 4xx; with TEMPORARY, those not refused with 5xx.  nretry
 * counts them (0: no subset, i.e. none with SENT, all with TEMPORARY). */
void verdict_decide(const struct verdict_input *in, struct verdict *out,
                    unsigned char *retry);

/* One recipient's RCPT reply: 2xx SENT, 4xx TEMPORARY, 5xx PERMANENT;
 * no reply (0) or another class TEMPORARY. */
enum verdict_kind verdict_rcpt(int code);

/* Rule 1 alone: the kind of a failure with this status and reply code
 * (0: none).  DM_OK yields VERDICT_SENT. */
enum verdict_kind verdict_failure(enum dm_status status, int code);

/* "sent", "temporary" or "permanent". */
const char *verdict_kind_str(enum verdict_kind k);

#endif
