/*
 * smtp.c - the SMTP submission engine: an explicit state machine.
 *
 * RFCs: 5321 (SMTP), 3207 (STARTTLS), 8314 (implicit TLS for submission),
 * 4954 (AUTH), 4616 (PLAIN), 5802 / 7677 (SCRAM, SCRAM-SHA-256), 2920
 * (PIPELINING), 1870 (SIZE), 6152 (8BITMIME), 6531 (SMTPUTF8), 3030
 * (CHUNKING: BDAT; BINARYMIME is not used), 3463 (enhanced status codes).
 *
 * Shape: `enum smtp_state` with a parallel name table; smtp_set_state() is
 * the only place the state changes (and traces it); smtp_dispatch() hands
 * each complete reply to the current state's handler; each step is a pair
 * smtp_send_X() / smtp_on_X().  The engine does no socket I/O itself: it
 * parses bytes handed to smtp_feed() and writes commands through the
 * transport; smtp_run() is the small pump (transport_read_until ->
 * smtp_feed) and holds each reply's deadline.
 *
 * Policy lives in the states: no AUTH before TLS (unless the operator allows
 * it for this host); EHLO again after TLS with capabilities reset; bytes
 * after the STARTTLS 220 abort (RFC 3207 5); credentials set but no AUTH
 * offered is an error; RequireTLS fails before any MAIL.
 *
 * Pipelined AUTH (settings.pipeline_auth, RFC 4954 4): a one-round-trip
 * AUTH with an initial response is held at open (state READY, auth_held)
 * and leads the first command group; state AUTH_PIPELINED takes its reply
 * and then hands over to the state of what was pipelined behind it
 * (after_auth).  A refusal fails the session before any later reply is
 * read: nothing after the AUTH is acted on by a conforming server (530 /
 * 503 / 554), and should one still answer DATA with 354, dropping the
 * connection without the final dot discards the message (RFC 5321 4.1.1.4:
 * only the dot completes it).
 *
 * CHUNKING (RFC 3030): when offered (and not turned off), a message goes
 * as "BDAT n" chunks of CRLF-normalised bytes, not dot-stuffed, the last
 * one "BDAT n LAST" (state BDAT takes one reply per chunk).  The chunk is
 * filled before its BDAT line is written, so n is exact and a message
 * that fits one chunk is one "BDAT n LAST".  With PIPELINING the chunks
 * ride with MAIL/RCPT, and after the BDAT LAST come RSET and the next
 * message's group: nothing waits for a 354.  The RSET is there because
 * the state after a failed BDAT is indeterminate (RFC 3030 2) and the
 * next MAIL is on the wire before we know; it costs a reply, not a round
 * trip.  At most SMTP_BDAT_WINDOW chunks of a message are unanswered and
 * a further message is pipelined only while fewer than
 * SMTP_PIPELINE_DEPTH replies are due, so the replies we are not reading
 * while we write stay small (the deadlock RFC 2920 3.1 warns of).
 */
#include "mail/smtp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mail/sasl.h"
#include "mail/smtp_reply.h"

enum smtp_state {
	SMTP_STATE_GREETING,   /* waiting for 220 */
	SMTP_STATE_EHLO,
	SMTP_STATE_HELO,
	SMTP_STATE_STARTTLS,
	SMTP_STATE_AUTH,       /* AUTH sent; 334 loop */
	SMTP_STATE_AUTH_PIPELINED, /* held AUTH sent with a command group */
	SMTP_STATE_READY,      /* idle: waiting for the caller */
	SMTP_STATE_MAIL,
	SMTP_STATE_RCPT,
	SMTP_STATE_DATA,
	SMTP_STATE_DOT,        /* body and final dot sent */
	SMTP_STATE_BDAT,       /* BDAT chunks sent: one reply per chunk */
	SMTP_STATE_RSET,
	SMTP_STATE_QUIT,
	SMTP_STATE_CLOSED,     /* QUIT answered */
	SMTP_STATE_FAILED,     /* session unusable; error in c->serr */
	SMTP_STATE_COUNT
};

static const char *const smtp_state_names[SMTP_STATE_COUNT] = {
	[SMTP_STATE_GREETING] = "GREETING",
	[SMTP_STATE_EHLO] = "EHLO",
	[SMTP_STATE_HELO] = "HELO",
	[SMTP_STATE_STARTTLS] = "STARTTLS",
	[SMTP_STATE_AUTH] = "AUTH",
	[SMTP_STATE_AUTH_PIPELINED] = "AUTH_PIPELINED",
	[SMTP_STATE_READY] = "READY",
	[SMTP_STATE_MAIL] = "MAIL",
	[SMTP_STATE_RCPT] = "RCPT",
	[SMTP_STATE_DATA] = "DATA",
	[SMTP_STATE_DOT] = "DOT",
	[SMTP_STATE_BDAT] = "BDAT",
	[SMTP_STATE_RSET] = "RSET",
	[SMTP_STATE_QUIT] = "QUIT",
	[SMTP_STATE_CLOSED] = "CLOSED",
	[SMTP_STATE_FAILED] = "FAILED",
};

#define SMTP_AUTH_STEPS_MAX 10
#define SMTP_TIMEOUT_MS 60000          /* settings.timeout_ms <= 0 */
#define SMTP_DOT_TIMEOUT_MS 600000     /* RFC 5321 4.5.3.2.6: 10 minutes */
#define SMTP_RBUF 4096
#define SMTP_PATH_MAX 256      /* RFC 5321 4.5.3.1.3 */
#define SMTP_BDAT_CHUNK (128u * 1024)  /* settings.bdat_chunk == 0 */
#define SMTP_BDAT_CHUNK_MAX (16u * 1024 * 1024)
#define SMTP_BDAT_WINDOW 4     /* unanswered chunks of one message */
#define SMTP_PIPELINE_DEPTH 64 /* replies due before another message is
                                  pipelined behind a BDAT LAST */
#define SMTP_BODY_IN 8192      /* one read from a message source */

/* CRLF normalisation of a message stream, shared by DATA and BDAT: bare LF
 * and bare CR become CRLF, a missing final line end is added. */
struct smtp_norm {
	bool cr;                     /* a CR waits for the next byte */
	bool bol;                    /* the output ends at a line start */
};

/* What went on the wire for one message of the batch. */
struct smtp_wire {
	bool group;                  /* its MAIL group was written */
	unsigned chunks;             /* BDAT commands written */
	unsigned answered;           /* ... and replied to */
	bool last;                   /* BDAT LAST written */
	bool aborted;                /* its source failed: no more chunks */
	bool rset_after;             /* RSET pipelined after its commands */
};

/* The message being cut into BDAT chunks (one at a time: the next
 * message's group is only written after this one's BDAT LAST). */
struct smtp_chunker {
	bool active;
	size_t msg;                  /* index in the batch */
	char *buf;                   /* chunk bytes (cap), allocated once */
	size_t cap, len;
	char carry[4];               /* normalised bytes that did not fit */
	size_t ncarry;
	char in[SMTP_BODY_IN];       /* source bytes not yet normalised */
	size_t ipos, ilen;
	struct smtp_norm norm;
	bool eof;                    /* the source is exhausted */
	unsigned long reads;
	unsigned long long total;    /* bytes sent in chunks */
};

struct smtp_client {
	struct transport *t;
	enum smtp_state state;
	struct smtp_info info;
	struct smtp_caps caps;
	smtp_transcript_fn transcript;
	void *tctx;
	char helo[256];
	bool starttls, require_tls, allow_plain, tls_tried;
	int timeout_ms;                  /* for each whole reply */
	const struct smtp_settings *s;   /* only during open: credentials */
	bool have_creds;

	/* input */
	char rbuf[SMTP_RBUF];
	size_t rpos, rlen;
	struct smtp_reply_parser parser;
	unsigned outstanding;            /* commands whose reply is due */
	unsigned long replies;           /* replies dispatched so far */
	bool out_pending;                /* bytes written, not yet flushed */

	/* AUTH */
	struct sasl_client *sasl;
	unsigned auth_steps;
	bool auth_cancelled;
	char auth_diag[DM_ERR_TEXT];
	char *auth_held;                 /* pipeline_auth: base64 initial
	                                    response waiting for the first group
	                                    (secret: wiped and freed once sent) */
	char auth_user[256];             /* for messages after open */
	enum smtp_state after_auth;      /* state of what follows a pipelined AUTH */

	/* batch */
	const struct smtp_envelope *env;
	struct smtp_result *res;
	unsigned char *done;             /* per message: result final */
	size_t n, cur, sent, rcpt_i;
	unsigned flags;
	bool txn_open, cur_failed;
	bool quit_sent;
	struct smtp_wire *wire;          /* per message of the batch */
	bool bdat;                       /* this batch uses BDAT (CHUNKING) */
	bool no_chunking;                /* settings.no_chunking */
	bool body_waits;                 /* the group being written follows a
	                                    held AUTH: no chunk ahead of the
	                                    envelope replies */
	struct smtp_chunker ck;

	/* session error */
	enum dm_status sstatus;
	struct dm_err serr;
	enum smtp_state fail_state;      /* the state the session failed in */
};

/* ---- transcript and state ------------------------------------------------ */

/* Hands one line to the transcript with control characters (tab
 * excepted) shown as '?': server text (and our notes quoting it) goes to
 * a terminal with -v, and an ESC sequence there would be obeyed.  `line`
 * is modified. */
static void smtp_transcript_line(struct smtp_client *c, enum smtp_dir dir,
                                 char *line)
{
	for (unsigned char *p = (unsigned char *)line; *p; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			*p = '?';
	c->transcript(c->tctx, dir, line);
}

static void smtp_note(struct smtp_client *c, enum smtp_dir dir,
                      const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void smtp_note(struct smtp_client *c, enum smtp_dir dir,
                      const char *fmt, ...)
{
	if (!c->transcript)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	smtp_transcript_line(c, dir, line);
}

/* The only place the state changes. */
static void smtp_set_state(struct smtp_client *c, enum smtp_state next)
{
	if (c->state != next)
		smtp_note(c, SMTP_DIR_INFO, "state %s -> %s",
		          smtp_state_names[c->state], smtp_state_names[next]);
	c->state = next;
}

static void smtp_on_raw_line(void *ctx, const char *line)
{
	struct smtp_client *c = ctx;
	if (!c->transcript)
		return;
	char copy[SMTP_REPLY_LINE_MAX + 2];
	snprintf(copy, sizeof(copy), "%s", line);
	smtp_transcript_line(c, SMTP_DIR_SERVER, copy);
}

/* ---- errors -------------------------------------------------------------- */

static enum dm_status smtp_status_for_code(int code)
{
	if (code >= 400 && code < 500)
		return DM_ETEMPFAIL;
	if (code >= 500)
		return DM_EPERMFAIL;
	return DM_EPROTO;
}

static void smtp_err_reply(struct dm_err *e, const struct smtp_reply *r)
{
	e->smtp_code = r->code;
	snprintf(e->enhanced, sizeof(e->enhanced), "%s", r->enhanced);
	smtp_reply_first_line(r, e->server_text, sizeof(e->server_text));
}

/* Fails the session; `r` (may be NULL) is the server's reply. */
static void smtp_fail(struct smtp_client *c, enum dm_status st,
                      const struct smtp_reply *r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void smtp_fail(struct smtp_client *c, enum dm_status st,
                      const struct smtp_reply *r, const char *fmt, ...)
{
	if (c->state == SMTP_STATE_FAILED)
		return;
	va_list ap;
	va_start(ap, fmt);
	if (c->serr.msg[0] == '\0')
		vsnprintf(c->serr.msg, sizeof(c->serr.msg), fmt, ap);
	va_end(ap);
	if (r)
		smtp_err_reply(&c->serr, r);
	c->sstatus = st;
	c->fail_state = c->state;
	smtp_note(c, SMTP_DIR_INFO, "error: %s", c->serr.msg);
	smtp_set_state(c, SMTP_STATE_FAILED);
}

/* ---- output -------------------------------------------------------------- */

static bool smtp_write(struct smtp_client *c, const void *buf, size_t len)
{
	if (c->state == SMTP_STATE_FAILED)
		return false;
	struct dm_err e;
	dm_err_clear(&e);
	enum dm_status st = transport_write(c->t, buf, len, &e);
	if (st != DM_OK) {
		smtp_fail(c, st, NULL, "sending to %s:%u: %s", c->info.host,
		          c->info.port, e.msg);
		return false;
	}
	c->out_pending = true;
	return true;
}

/* Writes one command line (CRLF added) that expects one reply. */
static void smtp_cmd(struct smtp_client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void smtp_cmd(struct smtp_client *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2) {
		smtp_fail(c, DM_EINVAL, NULL, "SMTP command too long");
		return;
	}
	smtp_note(c, SMTP_DIR_CLIENT, "%s", line);
	memcpy(line + n, "\r\n", 2);
	if (smtp_write(c, line, (size_t)n + 2))
		c->outstanding++;
}

/* AUTH lines carry secrets: the transcript shows `shown`, the wire gets
 * prefix + payload; the caller wipes the payload. */
static void smtp_cmd_secret(struct smtp_client *c, const char *prefix,
                            const char *payload, const char *shown)
{
	smtp_note(c, SMTP_DIR_CLIENT, "%s", shown);
	if (smtp_write(c, prefix, strlen(prefix)) &&
	    smtp_write(c, payload, strlen(payload)) &&
	    smtp_write(c, "\r\n", 2))
		c->outstanding++;
}

/* ---- steps: greeting, EHLO, HELO ---------------------------------------- */

static void smtp_send_ehlo(struct smtp_client *c)
{
	smtp_cmd(c, "EHLO %s", c->helo);
	smtp_set_state(c, SMTP_STATE_EHLO);
}

static void smtp_on_greeting(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code != 220) {
		smtp_fail(c, smtp_status_for_code(r->code), r,
		          "%s:%u refused the session in its greeting (RFC 5321 4.3.1)",
		          c->info.host, c->info.port);
		return;
	}
	smtp_send_ehlo(c);
}

static void smtp_after_hello(struct smtp_client *c);

static void smtp_on_ehlo(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code == 250) {
		smtp_caps_parse(r, &c->caps);
		c->info.esmtp = true;
		smtp_after_hello(c);
		return;
	}
	/* RFC 5321 4.1.4: fall back to HELO only when EHLO is not understood. */
	if (r->code == 500 || r->code == 502) {
		smtp_cmd(c, "HELO %s", c->helo);
		smtp_set_state(c, SMTP_STATE_HELO);
		return;
	}
	smtp_fail(c, smtp_status_for_code(r->code), r, "EHLO refused by %s:%u",
	          c->info.host, c->info.port);
}

static void smtp_on_helo(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code != 250) {
		smtp_fail(c, smtp_status_for_code(r->code), r,
		          "EHLO and HELO refused by %s:%u", c->info.host, c->info.port);
		return;
	}
	memset(&c->caps, 0, sizeof(c->caps));
	c->info.esmtp = false;
	smtp_after_hello(c);
}

/* ---- STARTTLS and the clear-text policy ---------------------------------- */

static void smtp_auth_begin(struct smtp_client *c);

/* Decides whether the session may go on without TLS; `why` says why there
 * is none.  Returns false after failing the session. */
static bool smtp_clear_policy(struct smtp_client *c, const char *why,
                              const struct smtp_reply *r)
{
	if (c->require_tls) {
		smtp_fail(c, DM_ETLS, r, "RequireTLS is on and %s: refusing to send "
		          "over an unencrypted connection to %s:%u", why,
		          c->info.host, c->info.port);
		return false;
	}
	if (c->have_creds && !c->allow_plain) {
		smtp_fail(c, DM_EAUTH, r, "refusing to send credentials in clear text "
		          "to %s:%u (%s); enable TLS, or allow plaintext AUTH for "
		          "this host explicitly", c->info.host, c->info.port, why);
		return false;
	}
	smtp_note(c, SMTP_DIR_INFO, "continuing WITHOUT TLS: %s", why);
	return true;
}

static void smtp_after_hello(struct smtp_client *c)
{
	c->info.pipelining = c->caps.pipelining;
	c->info.eightbitmime = c->caps.eightbitmime;
	c->info.smtputf8 = c->caps.smtputf8;
	c->info.enhancedstatuscodes = c->caps.enhanced;
	c->info.chunking = c->caps.chunking;
	c->info.size_max = c->caps.size_max;
	snprintf(c->info.auth_offered, sizeof(c->info.auth_offered), "%s",
	         c->caps.auth_mechs);
	if (!c->info.tls.active) {
		c->info.starttls_offered = c->caps.starttls;
		if (c->starttls && c->caps.starttls && !c->tls_tried) {
			c->tls_tried = true;
			smtp_cmd(c, "STARTTLS");
			smtp_set_state(c, SMTP_STATE_STARTTLS);
			return;
		}
		const char *why = !c->starttls ? "StartTLS is off"
		                  : c->tls_tried ? "STARTTLS was refused"
		                  : "the server does not offer STARTTLS";
		if (!smtp_clear_policy(c, why, NULL))
			return;
	}
	smtp_auth_begin(c);
}

static void smtp_on_starttls(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code != 220) {
		smtp_note(c, SMTP_DIR_INFO, "STARTTLS refused (%d)", r->code);
		char why[64];
		snprintf(why, sizeof(why), "STARTTLS was refused (%d)", r->code);
		if (smtp_clear_policy(c, why, r))
			smtp_auth_begin(c);
		return;
	}
	/* RFC 3207 5 / CVE-2011-0411: anything the server sent after 220 was
	 * sent in clear and must not be read as if it came over TLS. */
	if (c->rpos < c->rlen) {
		smtp_fail(c, DM_EPROTO, r, "STARTTLS response injection: %zu bytes "
		          "received after the 220 reply; session aborted",
		          c->rlen - c->rpos);
		return;
	}
	struct dm_err e;
	dm_err_clear(&e);
	enum dm_status st = transport_start_tls(c->t, &e);
	if (st != DM_OK) {
		smtp_fail(c, st, NULL, "STARTTLS with %s:%u: %s", c->info.host,
		          c->info.port, e.msg);
		return;
	}
	c->info.tls = *transport_tls_info(c->t);
	c->info.tls_mode = SMTP_TLS_STARTTLS;
	smtp_note(c, SMTP_DIR_INFO, "TLS established: %s %s%s", c->info.tls.version,
	          c->info.tls.cipher, c->info.tls.verified ? ", verified" : "");
	/* RFC 3207 4.2: forget everything learned before TLS, EHLO again. */
	memset(&c->caps, 0, sizeof(c->caps));
	smtp_send_ehlo(c);
}

/* ---- AUTH (RFC 4954) ----------------------------------------------------- */

static void smtp_auth_end(struct smtp_client *c)
{
	sasl_client_free(c->sasl);
	c->sasl = NULL;
}

static void smtp_auth_drop_held(struct smtp_client *c)
{
	sasl_free_response(c->auth_held);   /* wipes */
	c->auth_held = NULL;
}

/* Writes "AUTH MECH <initial response>" with the given secret payload. */
static void smtp_auth_write(struct smtp_client *c, const char *initial)
{
	char prefix[64], shown[96];
	snprintf(prefix, sizeof(prefix), "AUTH %s ", c->info.mechanism);
	snprintf(shown, sizeof(shown), "AUTH %s <redacted>", c->info.mechanism);
	/* RFC 4954 4: an empty initial response is sent as "=". */
	smtp_cmd_secret(c, prefix, initial[0] ? initial : "=", shown);
}

/* Sends the held AUTH ahead of what the caller writes next; the caller
 * then calls smtp_auth_pipelined_wait() once the group is written. */
static void smtp_auth_send_held(struct smtp_client *c)
{
	smtp_note(c, SMTP_DIR_INFO, "AUTH %s pipelined with the next commands "
	          "(RFC 4954 4)", c->info.mechanism);
	smtp_auth_write(c, c->auth_held);
	smtp_auth_drop_held(c);
}

/* The group behind the held AUTH is written (its state is the current
 * one): wait for the AUTH reply first. */
static void smtp_auth_pipelined_wait(struct smtp_client *c)
{
	if (c->state == SMTP_STATE_FAILED)
		return;
	c->after_auth = c->state;
	smtp_set_state(c, SMTP_STATE_AUTH_PIPELINED);
}

static void smtp_auth_begin(struct smtp_client *c)
{
	if (!c->have_creds) {
		smtp_set_state(c, SMTP_STATE_READY);
		return;
	}
	const struct smtp_settings *s = c->s;
	if (!c->caps.auth || !c->caps.auth_mechs[0]) {
		smtp_fail(c, DM_EAUTH, NULL, "credentials are set but %s:%u offers no "
		          "AUTH%s; not sending unauthenticated", c->info.host,
		          c->info.port, c->info.tls.active ? " (after TLS)" : "");
		return;
	}
	struct sasl_creds cr = { s->username, s->password, s->oauth_token };
	const char *mech = NULL;
	if (s->mechanism && s->mechanism[0] && strcasecmp(s->mechanism, "auto")) {
		if (!smtp_caps_has_mech(&c->caps, s->mechanism)) {
			smtp_fail(c, DM_EAUTH, NULL, "AUTH mechanism %s is configured but "
			          "%s:%u offers only: %s", s->mechanism, c->info.host,
			          c->info.port, c->caps.auth_mechs);
			return;
		}
		mech = s->mechanism;
	} else {
		unsigned char cb[128];
		size_t cbl = 0;
		bool have_cb =
			transport_channel_binding(c->t, "tls-exporter", cb, sizeof(cb),
			                          &cbl, NULL) == DM_OK ||
			transport_channel_binding(c->t, "tls-unique", cb, sizeof(cb),
			                          &cbl, NULL) == DM_OK;
		mech = sasl_choose(&c->caps, &cr, have_cb,
		                   c->info.tls.active && c->info.tls.verified);
		if (!mech) {
			smtp_fail(c, DM_EAUTH, NULL, "no AUTH mechanism offered by %s:%u "
			          "(%s) fits the credentials set", c->info.host,
			          c->info.port, c->caps.auth_mechs);
			return;
		}
	}
	char *initial = NULL;
	struct dm_err e;
	dm_err_clear(&e);
	enum dm_status st = sasl_client_start(mech, &cr, c->t, &c->sasl, &initial, &e);
	if (st != DM_OK) {
		smtp_fail(c, st, NULL, "%s", e.msg);
		return;
	}
	snprintf(c->info.mechanism, sizeof(c->info.mechanism), "%s", mech);
	for (char *p = c->info.mechanism; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	c->auth_steps = 0;
	c->auth_cancelled = false;
	snprintf(c->auth_user, sizeof(c->auth_user), "%s", s->username);
	if (initial && s->pipeline_auth && c->caps.pipelining &&
	    sasl_one_round_trip(mech)) {
		/* RFC 4954 4: may lead a pipelined group; keep only the encoded
		 * response (the SASL session and its password copy go now). */
		c->auth_held = initial;
		smtp_auth_end(c);
		smtp_note(c, SMTP_DIR_INFO, "AUTH %s held for the first command "
		          "group (PIPELINING)", c->info.mechanism);
		smtp_set_state(c, SMTP_STATE_READY);
		return;
	}
	if (initial) {
		smtp_auth_write(c, initial);
		sasl_free_response(initial);
	} else {
		smtp_cmd(c, "AUTH %s", c->info.mechanism);
	}
	smtp_set_state(c, SMTP_STATE_AUTH);
}

static void smtp_on_auth(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code == 334 && !c->auth_cancelled && !c->sasl) {
		/* Not expected (a held one-round-trip AUTH sent alone): cancel. */
		snprintf(c->auth_diag, sizeof(c->auth_diag), "AUTH %s: unexpected "
		         "challenge from %s:%u", c->info.mechanism, c->info.host,
		         c->info.port);
		c->auth_cancelled = true;
		smtp_cmd(c, "*");
		return;
	}
	if (r->code == 334 && !c->auth_cancelled) {
		if (++c->auth_steps > SMTP_AUTH_STEPS_MAX) {
			smtp_auth_end(c);
			smtp_fail(c, DM_EPROTO, r, "AUTH %s: more than %d challenges",
			          c->info.mechanism, SMTP_AUTH_STEPS_MAX);
			return;
		}
		char chal[SMTP_REPLY_LINE_MAX + 1];
		smtp_reply_first_line(r, chal, sizeof(chal));
		char *resp = NULL;
		struct dm_err e;
		dm_err_clear(&e);
		if (sasl_client_step(c->sasl, chal, &resp, &e) != DM_OK) {
			/* RFC 4954 4: "*" cancels; the server answers 501. */
			snprintf(c->auth_diag, sizeof(c->auth_diag), "AUTH %s: %.400s",
			         c->info.mechanism, e.msg);
			c->auth_cancelled = true;
			smtp_cmd(c, "*");
			return;
		}
		smtp_cmd_secret(c, "", resp, "<redacted>");
		sasl_free_response(resp);
		return;
	}
	smtp_auth_end(c);
	if (r->code == 235 && !c->auth_cancelled) {
		c->info.tls = *transport_tls_info(c->t);
		smtp_set_state(c, SMTP_STATE_READY);
		return;
	}
	if (c->auth_cancelled) {
		smtp_fail(c, DM_EAUTH, r, "%s", c->auth_diag);
		return;
	}
	/* 535 bad credentials, 534 mechanism too weak, 454 temporary, 5xx
	 * other: all DM_EAUTH; the code tells temporary from permanent. */
	smtp_fail(c, DM_EAUTH, r, "AUTH %s as '%s' refused by %s:%u",
	          c->info.mechanism, c->auth_user, c->info.host, c->info.port);
}

/* The reply to a held AUTH that led a pipelined group. */
static void smtp_on_auth_pipelined(struct smtp_client *c,
                                   const struct smtp_reply *r)
{
	if (r->code == 235) {
		c->info.tls = *transport_tls_info(c->t);
		smtp_set_state(c, c->after_auth);
		return;
	}
	if (r->code == 334 && ++c->auth_steps <= SMTP_AUTH_STEPS_MAX) {
		/* A challenge (XOAUTH2 sends its error this way): the server
		 * takes our next pipelined line as the answer and then refuses.
		 * With nothing pipelined behind, cancel (RFC 4954 4). */
		smtp_note(c, SMTP_DIR_INFO, "AUTH %s: challenge to a pipelined "
		          "AUTH; waiting for the refusal", c->info.mechanism);
		if (c->outstanding == 0) {
			snprintf(c->auth_diag, sizeof(c->auth_diag), "AUTH %s: challenge "
			         "from %s:%u", c->info.mechanism, c->info.host,
			         c->info.port);
			smtp_cmd(c, "*");
		}
		return;
	}
	smtp_fail(c, DM_EAUTH, r, "AUTH %s as '%s' refused by %s:%u (sent "
	          "pipelined; nothing after it was sent or accepted)",
	          c->info.mechanism, c->auth_user, c->info.host, c->info.port);
}

/* ---- messages ------------------------------------------------------------ */

/* What a reply in this state answered, for the current message. */
static enum smtp_phase smtp_phase_of(enum smtp_state st)
{
	switch (st) {
	case SMTP_STATE_READY:          return SMTP_PHASE_LOCAL;  /* precheck */
	case SMTP_STATE_AUTH_PIPELINED: return SMTP_PHASE_AUTH;
	case SMTP_STATE_MAIL:           return SMTP_PHASE_MAIL;
	case SMTP_STATE_RCPT:           return SMTP_PHASE_RCPT;
	case SMTP_STATE_DATA:
	case SMTP_STATE_DOT:
	case SMTP_STATE_BDAT:           return SMTP_PHASE_DATA;
	default:                        return SMTP_PHASE_NONE;
	}
}

static bool smtp_addr_ok(const char *a, bool *utf8)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)a; *p; p++, n++) {
		if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
			return false;
		if (*p >= 0x80)
			*utf8 = true;
	}
	return n <= SMTP_PATH_MAX;
}

static void smtp_msg_fail(struct smtp_client *c, size_t i, enum dm_status st,
                          const struct smtp_reply *r, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void smtp_msg_fail(struct smtp_client *c, size_t i, enum dm_status st,
                          const struct smtp_reply *r, const char *fmt, ...)
{
	struct smtp_result *res = &c->res[i];
	if (c->done[i])
		return;
	res->status = st;
	res->phase = smtp_phase_of(c->state);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->diag, sizeof(res->diag), fmt, ap);
	va_end(ap);
	if (r) {
		res->code = r->code;
		snprintf(res->enhanced, sizeof(res->enhanced), "%s", r->enhanced);
		smtp_reply_first_line(r, res->text, sizeof(res->text));
	}
	c->done[i] = 1;
	smtp_note(c, SMTP_DIR_INFO, "message %zu not sent: %s", i + 1, res->diag);
}

/* Checks done before anything is sent for a message. */
static void smtp_precheck(struct smtp_client *c, size_t i)
{
	const struct smtp_envelope *m = &c->env[i];
	bool utf8 = m->needs_smtputf8;
	c->res[i].nrcpt = m->nrcpt;
	if (!m->from || !m->rcpt || !m->body.read || m->nrcpt == 0 ||
	    m->nrcpt > SMTP_MAX_RCPT) {
		smtp_msg_fail(c, i, DM_EINVAL, NULL, "message %zu: needs a sender, a "
		              "body and 1-%d recipients", i + 1, SMTP_MAX_RCPT);
		return;
	}
	if (!smtp_addr_ok(m->from, &utf8)) {
		smtp_msg_fail(c, i, DM_EINVAL, NULL, "sender address '%.*s' contains "
		              "CR, LF, a control character or <>, or is too long",
		              (int)strcspn(m->from, "\r\n"), m->from);
		return;
	}
	for (size_t k = 0; k < m->nrcpt; k++) {
		const char *a = m->rcpt[k];
		if (!a || !a[0] || !smtp_addr_ok(a, &utf8)) {
			smtp_msg_fail(c, i, DM_EINVAL, NULL, "recipient address '%.*s' "
			              "is empty, contains CR, LF, a control character "
			              "or <>, or is too long",
			              a ? (int)strcspn(a, "\r\n") : 0, a ? a : "");
			return;
		}
	}
	if (c->caps.size && c->caps.size_max > 0 && m->size > c->caps.size_max) {
		smtp_msg_fail(c, i, DM_EPERMFAIL, NULL, "message size %zu exceeds the "
		              "limit of %lu bytes announced by %s:%u (SIZE, RFC 1870)",
		              m->size, c->caps.size_max, c->info.host, c->info.port);
		return;
	}
	if (m->needs_8bit && !c->caps.eightbitmime) {
		smtp_msg_fail(c, i, DM_EPERMFAIL, NULL, "message has 8-bit content but "
		              "%s:%u does not offer 8BITMIME (RFC 6152)",
		              c->info.host, c->info.port);
		return;
	}
	if (utf8 && !c->caps.smtputf8) {
		const char *who = m->from;
		for (size_t k = 0; k < m->nrcpt; k++) {
			bool u = false;
			smtp_addr_ok(m->rcpt[k], &u);
			if (u)
				who = m->rcpt[k];
		}
		smtp_msg_fail(c, i, DM_EPERMFAIL, NULL, "address '%s' needs SMTPUTF8 "
		              "(RFC 6531), which %s:%u does not offer", who,
		              c->info.host, c->info.port);
		return;
	}
}

static bool smtp_msg_utf8(const struct smtp_envelope *m)
{
	bool utf8 = m->needs_smtputf8;
	smtp_addr_ok(m->from, &utf8);
	for (size_t k = 0; k < m->nrcpt; k++)
		smtp_addr_ok(m->rcpt[k], &utf8);
	return utf8;
}

/* The next message from `from` on that is still to be sent or whose
 * replies are still due: a message refused before anything was sent for
 * it is skipped, one that failed while its commands were in flight (its
 * source broke) is not. */
static size_t smtp_next_msg(struct smtp_client *c, size_t from)
{
	while (from < c->n && c->done[from] && !c->wire[from].group)
		from++;
	return from;
}

static void smtp_send_rcpt(struct smtp_client *c, size_t k)
{
	smtp_cmd(c, "RCPT TO:<%s>", c->env[c->cur].rcpt[k]);
}

static void smtp_bdat_start(struct smtp_client *c, size_t i);

/* MAIL FROM (RFC 5321 4.1.1.2) with SIZE (RFC 1870 6), BODY (RFC 6152 3),
 * SMTPUTF8 (RFC 6531 3.4); with PIPELINING (RFC 2920 3.1) also all RCPTs and
 * DATA, or the first BDAT chunks (RFC 3030 2), in the same flight. */
static void smtp_send_mail_group(struct smtp_client *c, size_t i)
{
	const struct smtp_envelope *m = &c->env[i];
	char params[128] = "";
	size_t pl = 0;
	if (c->caps.size && m->size > 0)
		pl += (size_t)snprintf(params + pl, sizeof(params) - pl, " SIZE=%zu",
		                       m->size);
	if (m->needs_8bit && c->caps.eightbitmime)
		pl += (size_t)snprintf(params + pl, sizeof(params) - pl,
		                       " BODY=8BITMIME");
	if (smtp_msg_utf8(m) && c->caps.smtputf8)
		snprintf(params + pl, sizeof(params) - pl, " SMTPUTF8");
	smtp_cmd(c, "MAIL FROM:<%s>%s", m->from, params);
	c->wire[i].group = true;
	if (c->caps.pipelining) {
		for (size_t k = 0; k < m->nrcpt; k++)
			smtp_cmd(c, "RCPT TO:<%s>", m->rcpt[k]);
		if (!c->bdat)
			smtp_cmd(c, "DATA");
	}
	c->sent = i + 1;
	if (c->bdat && c->caps.pipelining && !c->body_waits)
		smtp_bdat_start(c, i);
}

static void smtp_begin_msg(struct smtp_client *c, size_t i)
{
	c->cur = i;
	c->rcpt_i = 0;
	c->cur_failed = c->done[i] != 0;   /* its source failed in flight */
	c->res[i].accepted = 0;
	if (c->sent <= i)
		smtp_send_mail_group(c, i);
	smtp_set_state(c, SMTP_STATE_MAIL);
}

static void smtp_send_quit(struct smtp_client *c)
{
	if (!c->quit_sent) {
		c->quit_sent = true;
		smtp_cmd(c, "QUIT");
	}
	smtp_set_state(c, SMTP_STATE_QUIT);
}

/* After the current message is final: the next one, QUIT, or idle. */
static void smtp_advance(struct smtp_client *c)
{
	size_t next = smtp_next_msg(c, c->cur + 1);
	if (next < c->n) {
		smtp_begin_msg(c, next);
		return;
	}
	c->cur = c->n;
	if (c->flags & SMTP_SEND_QUIT)
		smtp_send_quit(c);
	else
		smtp_set_state(c, SMTP_STATE_READY);
}

/* The current message failed; RSET only when a transaction is open (and
 * QUIT is not on its way already). */
static void smtp_msg_abandon(struct smtp_client *c)
{
	if (c->txn_open && !c->quit_sent) {
		smtp_cmd(c, "RSET");
		smtp_set_state(c, SMTP_STATE_RSET);
		return;
	}
	smtp_advance(c);
}

static void smtp_on_rset(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code != 250) {
		smtp_fail(c, smtp_status_for_code(r->code), r, "RSET refused");
		return;
	}
	c->txn_open = false;
	smtp_advance(c);
}

static void smtp_on_mail(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code / 100 == 2) {
		c->txn_open = true;
		if (!c->caps.pipelining)
			smtp_send_rcpt(c, 0);
	} else {
		smtp_msg_fail(c, c->cur, smtp_status_for_code(r->code), r,
		              "sender <%s> refused", c->env[c->cur].from);
		c->cur_failed = true;
		if (!c->caps.pipelining) {
			smtp_msg_abandon(c);
			return;
		}
	}
	smtp_set_state(c, SMTP_STATE_RCPT);
}

static void smtp_bdat_after_rcpt(struct smtp_client *c);

static void smtp_on_rcpt(struct smtp_client *c, const struct smtp_reply *r)
{
	const struct smtp_envelope *m = &c->env[c->cur];
	struct smtp_result *res = &c->res[c->cur];
	size_t k = c->rcpt_i++;
	if (!c->cur_failed) {
		struct smtp_rcpt_result *rr = &res->rcpt[k];
		rr->code = r->code;
		snprintf(rr->enhanced, sizeof(rr->enhanced), "%s", r->enhanced);
		smtp_reply_first_line(r, rr->text, sizeof(rr->text));
		if (r->code / 100 == 2)
			res->accepted++;
		else
			smtp_note(c, SMTP_DIR_INFO, "recipient <%s> refused (%d)",
			          m->rcpt[k], r->code);
	}
	if (c->rcpt_i < m->nrcpt) {
		if (!c->caps.pipelining)
			smtp_send_rcpt(c, c->rcpt_i);
		return;
	}
	if (c->cur_failed) {
		/* Failed already: MAIL refused, or its source broke. */
	} else if (res->accepted == 0) {
		/* Temporary when any refusal was temporary (retry may help). */
		const struct smtp_reply *deciding = r;
		enum dm_status st = DM_EPERMFAIL;
		for (size_t j = 0; j < m->nrcpt; j++)
			if (res->rcpt[j].code / 100 == 4)
				st = DM_ETEMPFAIL;
		smtp_msg_fail(c, c->cur, st, deciding, "all %zu recipient(s) refused",
		              m->nrcpt);
		c->cur_failed = true;
	}
	if (c->bdat) {
		smtp_bdat_after_rcpt(c);
		return;
	}
	if (c->caps.pipelining) {
		smtp_set_state(c, SMTP_STATE_DATA);  /* DATA already in flight */
		return;
	}
	if (c->cur_failed) {
		smtp_msg_abandon(c);
		return;
	}
	smtp_cmd(c, "DATA");
	smtp_set_state(c, SMTP_STATE_DATA);
}

/* Appends the normalised form of input byte b to out (at most 4 bytes: a
 * waiting CR's CRLF, then b, dot-stuffed when `stuff`); returns the count. */
static size_t smtp_norm_byte(struct smtp_norm *nm, char b, bool stuff,
                             char *out)
{
	size_t o = 0;
	if (nm->cr) {
		nm->cr = false;
		out[o++] = '\r';
		out[o++] = '\n';
		nm->bol = true;
		if (b == '\n')
			return o;
	}
	if (b == '\r') {
		nm->cr = true;
		return o;
	}
	if (b == '\n') {
		out[o++] = '\r';
		out[o++] = '\n';
		nm->bol = true;
		return o;
	}
	if (stuff && nm->bol && b == '.')
		out[o++] = '.';
	out[o++] = b;
	nm->bol = false;
	return o;
}

/* At the end of the input: the line end a last line lacks (0 or 2 bytes). */
static size_t smtp_norm_end(struct smtp_norm *nm, char *out)
{
	if (!nm->cr && nm->bol)
		return 0;
	nm->cr = false;
	nm->bol = true;
	out[0] = '\r';
	out[1] = '\n';
	return 2;
}

/* Streams the body: CRLF normalisation and dot-stuffing (RFC 5321 4.5.2),
 * then the final "." line. */
static void smtp_send_body(struct smtp_client *c, const struct smtp_envelope *m)
{
	char in[SMTP_BODY_IN], out[16384 + 4];
	struct smtp_norm nm = { .bol = true };
	size_t total = 0;
	for (unsigned guard = 0; ; guard++) {
		size_t got = 0;
		struct dm_err e;
		dm_err_clear(&e);
		enum dm_status st = m->body.read(m->body.ctx, in, sizeof(in), &got, &e);
		if (st != DM_OK || guard > (1u << 30)) {
			smtp_msg_fail(c, c->cur, st ? st : DM_EIO, NULL,
			              "reading the message body: %s", e.msg);
			/* RFC 5321 has no way to abort DATA: drop the connection so
			 * the server discards the partial message. */
			smtp_fail(c, DM_EIO, NULL, "session aborted: message %zu's "
			          "body could not be read", c->cur + 1);
			return;
		}
		if (got == 0)
			break;
		size_t o = 0;
		for (size_t i = 0; i < got; i++) {
			o += smtp_norm_byte(&nm, in[i], true, out + o);
			if (o >= sizeof(out) - 4) {
				if (!smtp_write(c, out, o))
					return;
				total += o;
				o = 0;
			}
		}
		if (o && !smtp_write(c, out, o))
			return;
		total += o;
	}
	size_t o = smtp_norm_end(&nm, out);
	if (o && !smtp_write(c, out, o))
		return;
	total += o;
	smtp_note(c, SMTP_DIR_INFO, "message body: %zu bytes", total);
	smtp_note(c, SMTP_DIR_CLIENT, ".");
	if (smtp_write(c, ".\r\n", 3))
		c->outstanding++;
}

static void smtp_on_data(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code == 354) {
		if (c->cur_failed) {
			/* RFC 2920 3.1: DATA accepted though no recipient was: send
			 * an empty message to get back in step, and ignore it. */
			smtp_note(c, SMTP_DIR_CLIENT, ".");
			if (smtp_write(c, ".\r\n", 3))
				c->outstanding++;
		} else {
			smtp_send_body(c, &c->env[c->cur]);
			if (c->state == SMTP_STATE_FAILED)
				return;
			/* RFC 2920 3.1: the next transaction (or QUIT) goes in the
			 * same flight as the final dot. */
			if (c->caps.pipelining) {
				size_t next = smtp_next_msg(c, c->cur + 1);
				if (next < c->n)
					smtp_send_mail_group(c, next);
				else if (c->flags & SMTP_SEND_QUIT) {
					c->quit_sent = true;
					smtp_cmd(c, "QUIT");
				}
			}
		}
		smtp_set_state(c, SMTP_STATE_DOT);
		return;
	}
	if (!c->cur_failed) {
		smtp_msg_fail(c, c->cur, smtp_status_for_code(r->code), r,
		              "DATA refused");
		c->cur_failed = true;
	}
	smtp_msg_abandon(c);
}

static void smtp_on_dot(struct smtp_client *c, const struct smtp_reply *r)
{
	c->txn_open = false;
	if (!c->cur_failed) {
		struct smtp_result *res = &c->res[c->cur];
		if (r->code / 100 == 2) {
			res->status = DM_OK;
			res->phase = SMTP_PHASE_DATA;
			res->code = r->code;
			snprintf(res->enhanced, sizeof(res->enhanced), "%s", r->enhanced);
			smtp_reply_first_line(r, res->text, sizeof(res->text));
			c->done[c->cur] = 1;
			smtp_note(c, SMTP_DIR_INFO, "message %zu accepted", c->cur + 1);
		} else {
			smtp_msg_fail(c, c->cur, smtp_status_for_code(r->code), r,
			              "message refused after its content was sent");
		}
	}
	smtp_advance(c);
}

/* ---- CHUNKING (RFC 3030) ------------------------------------------------- */

/* Moves normalised bytes into the chunk; what does not fit waits in
 * carry for the next chunk (chunks are exactly ck->cap bytes but the
 * last). */
static void smtp_chunk_put(struct smtp_chunker *ck, const char *b, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		if (ck->len < ck->cap)
			ck->buf[ck->len++] = b[k];
		else
			ck->carry[ck->ncarry++] = b[k];
	}
}

/* Fills the chunk with the next normalised bytes of the message.  *last
 * tells whether the message ends with it: a full chunk is the last only
 * when the source has nothing more (so the size of a message that fits
 * is exact, and "BDAT 0 LAST" is only sent for an empty message).
 * Errors: the source's own, DM_EIO for a source that never ends. */
static enum dm_status smtp_chunk_fill(struct smtp_chunker *ck,
                                      const struct mail_source *src,
                                      bool *last, struct dm_err *e)
{
	char tmp[4];
	size_t k = 0;
	for (; k < ck->ncarry && k < ck->cap; k++)
		ck->buf[k] = ck->carry[k];
	ck->len = k;
	memmove(ck->carry, ck->carry + k, ck->ncarry - k);
	ck->ncarry -= k;
	*last = false;
	for (;;) {
		if (ck->len == ck->cap && (ck->ncarry || ck->ipos < ck->ilen))
			return DM_OK;             /* full, and more follows */
		if (ck->ipos < ck->ilen) {
			/* Not full here.  A run of bytes that are neither CR nor LF
			 * (with no CR waiting) goes in as it is, in one copy. */
			const char *p = ck->in + ck->ipos;
			size_t lim = ck->ilen - ck->ipos, run = 0;
			if (lim > ck->cap - ck->len)
				lim = ck->cap - ck->len;
			while (!ck->norm.cr && run < lim && p[run] != '\r' &&
			       p[run] != '\n')
				run++;
			if (run > 0) {
				memcpy(ck->buf + ck->len, p, run);
				ck->len += run;
				ck->ipos += run;
				ck->norm.bol = false;
				continue;
			}
			size_t n = smtp_norm_byte(&ck->norm, ck->in[ck->ipos++],
			                          false, tmp);
			smtp_chunk_put(ck, tmp, n);
			continue;
		}
		if (ck->eof) {
			*last = ck->ncarry == 0;
			return DM_OK;
		}
		size_t got = 0;
		enum dm_status st = src->read(src->ctx, ck->in, sizeof(ck->in), &got,
		                              e);
		if (st != DM_OK)
			return st;
		if (++ck->reads > (1ul << 30) || got > sizeof(ck->in))
			return dm_err_set(e, DM_EIO, "the message source misbehaves "
			                  "(more than 2^30 reads, or an overrun)");
		ck->ipos = 0;
		ck->ilen = got;
		if (got == 0) {
			ck->eof = true;
			smtp_chunk_put(ck, tmp, smtp_norm_end(&ck->norm, tmp));
		}
	}
}

static void smtp_bdat_pump(struct smtp_client *c);
static void smtp_bdat_abort(struct smtp_client *c, size_t i,
                            enum dm_status st, const struct dm_err *e);

/* Starts cutting message i into chunks and sends the first ones. */
static void smtp_bdat_start(struct smtp_client *c, size_t i)
{
	struct smtp_chunker *ck = &c->ck;
	if (!ck->buf && !(ck->buf = malloc(ck->cap))) {
		struct dm_err e;
		dm_err_clear(&e);
		dm_err_set(&e, DM_ENOMEM, "no memory for a BDAT chunk of %zu bytes",
		           ck->cap);
		smtp_bdat_abort(c, i, DM_ENOMEM, &e);
		return;
	}
	ck->active = true;
	ck->msg = i;
	ck->len = ck->ncarry = ck->ipos = ck->ilen = 0;
	ck->norm = (struct smtp_norm){ .bol = true };
	ck->eof = false;
	ck->reads = 0;
	ck->total = 0;
	smtp_bdat_pump(c);
}

/* After message i's last command (its BDAT LAST, or the chunks before its
 * source broke), with PIPELINING: RSET when `rset` or when another message
 * follows, then that message's group, or QUIT, in the same flight (RFC
 * 2920 3.1).  The RSET makes the next MAIL safe whatever becomes of this
 * message: the state after a failed BDAT is indeterminate (RFC 3030 2). */
static void smtp_bdat_continue(struct smtp_client *c, size_t i, bool rset)
{
	if (!c->caps.pipelining || c->state == SMTP_STATE_FAILED)
		return;
	size_t next = smtp_next_msg(c, i + 1);
	bool ahead = next < c->n && c->outstanding < SMTP_PIPELINE_DEPTH;
	if (rset || ahead) {
		smtp_cmd(c, "RSET");
		c->wire[i].rset_after = true;
	}
	if (ahead)
		smtp_send_mail_group(c, next);
	else if (next >= c->n && (c->flags & SMTP_SEND_QUIT) && !c->quit_sent) {
		c->quit_sent = true;
		smtp_cmd(c, "QUIT");
	}
}

/* Message i's source failed: no more chunks (none is ever sent short:
 * a chunk is filled before its BDAT line).  The message fails; the
 * session goes on (RSET discards the chunks sent, RFC 3030 2). */
static void smtp_bdat_abort(struct smtp_client *c, size_t i,
                            enum dm_status st, const struct dm_err *e)
{
	smtp_msg_fail(c, i, st, NULL, "reading the message body: %s", e->msg);
	c->wire[i].aborted = true;
	c->ck.active = false;
	if (i == c->cur)
		c->cur_failed = true;
	smtp_bdat_continue(c, i, true);
}

/* Writes chunks of the message being cut while fewer than the window are
 * unanswered (one without PIPELINING: each BDAT waits for its reply) and
 * the message has not failed.  After its BDAT LAST the pipeline goes on. */
static void smtp_bdat_pump(struct smtp_client *c)
{
	struct smtp_chunker *ck = &c->ck;
	if (!ck->active)
		return;
	size_t i = ck->msg;
	struct smtp_wire *w = &c->wire[i];
	if (c->done[i]) {
		ck->active = false;       /* refused: no further chunk */
		return;
	}
	unsigned window = c->caps.pipelining ? SMTP_BDAT_WINDOW : 1;
	while (!w->last && !c->done[i] && w->chunks - w->answered < window &&
	       c->state != SMTP_STATE_FAILED) {
		bool last = false;
		struct dm_err e;
		dm_err_clear(&e);
		enum dm_status st = smtp_chunk_fill(ck, &c->env[i].body, &last, &e);
		if (st != DM_OK) {
			smtp_bdat_abort(c, i, st, &e);
			return;
		}
		smtp_cmd(c, "BDAT %zu%s", ck->len, last ? " LAST" : "");
		if (ck->len && !smtp_write(c, ck->buf, ck->len))
			return;
		w->chunks++;
		ck->total += ck->len;
		if (last) {
			w->last = true;
			ck->active = false;
			smtp_note(c, SMTP_DIR_INFO, "message body: %llu bytes in %u "
			          "BDAT chunk%s", ck->total, w->chunks,
			          w->chunks == 1 ? "" : "s");
			smtp_bdat_continue(c, i, false);
		}
	}
}

/* Every RCPT of the current message is answered: its chunks are in flight
 * (PIPELINING), or are sent now (lockstep, or behind a held AUTH), or the
 * message failed. */
static void smtp_bdat_settle(struct smtp_client *c);

static void smtp_bdat_after_rcpt(struct smtp_client *c)
{
	struct smtp_wire *w = &c->wire[c->cur];
	smtp_set_state(c, SMTP_STATE_BDAT);
	if (!c->cur_failed && w->chunks == 0 && !w->aborted)
		smtp_bdat_start(c, c->cur);
	smtp_bdat_settle(c);
}

/* Once every chunk of the current message is answered: the RSET already
 * pipelined behind it is answered next; else a failed message gets RSET
 * (after a BDAT error the state is indeterminate, RFC 3030 2); else the
 * next message. */
static void smtp_bdat_settle(struct smtp_client *c)
{
	struct smtp_wire *w = &c->wire[c->cur];
	if (c->state == SMTP_STATE_FAILED || w->answered < w->chunks)
		return;
	if (!w->last && !w->aborted && !c->cur_failed)
		return;                       /* the pump has more to send */
	if (w->rset_after) {
		smtp_set_state(c, SMTP_STATE_RSET);
		return;
	}
	if (c->cur_failed) {
		if (w->chunks > 0)
			c->txn_open = true;
		smtp_msg_abandon(c);
		return;
	}
	smtp_advance(c);
}

/* One reply per BDAT chunk (RFC 3030 2).  The reply to the LAST chunk
 * decides the message as the reply to the final dot does; an error to an
 * earlier chunk fails it, and no further chunk is sent (those already in
 * the pipeline get their replies, errors too). */
static void smtp_on_bdat(struct smtp_client *c, const struct smtp_reply *r)
{
	struct smtp_wire *w = &c->wire[c->cur];
	w->answered++;
	bool final = w->last && w->answered == w->chunks;
	if (r->code / 100 != 2) {
		enum dm_status st = smtp_status_for_code(r->code);
		if (c->cur_failed)
			;   /* already decided (MAIL or every RCPT refused) */
		else if (final)
			smtp_msg_fail(c, c->cur, st, r, "message refused after its "
			              "content was sent (BDAT LAST)");
		else
			smtp_msg_fail(c, c->cur, st, r, "BDAT chunk %u refused; no "
			              "further chunk sent", w->answered);
		c->cur_failed = true;
	} else if (final && !c->cur_failed) {
		struct smtp_result *res = &c->res[c->cur];
		c->txn_open = false;
		res->status = DM_OK;
		res->phase = SMTP_PHASE_DATA;
		res->code = r->code;
		snprintf(res->enhanced, sizeof(res->enhanced), "%s", r->enhanced);
		smtp_reply_first_line(r, res->text, sizeof(res->text));
		c->done[c->cur] = 1;
		smtp_note(c, SMTP_DIR_INFO, "message %zu accepted", c->cur + 1);
	}
	if (c->ck.active && c->ck.msg == c->cur)
		smtp_bdat_pump(c);
	smtp_bdat_settle(c);
}

static void smtp_on_quit(struct smtp_client *c, const struct smtp_reply *r)
{
	(void)r;
	smtp_set_state(c, SMTP_STATE_CLOSED);
}

/* ---- dispatcher and pump ------------------------------------------------- */

typedef void (*smtp_handler)(struct smtp_client *c, const struct smtp_reply *r);

static const smtp_handler smtp_handlers[SMTP_STATE_COUNT] = {
	[SMTP_STATE_GREETING] = smtp_on_greeting,
	[SMTP_STATE_EHLO] = smtp_on_ehlo,
	[SMTP_STATE_HELO] = smtp_on_helo,
	[SMTP_STATE_STARTTLS] = smtp_on_starttls,
	[SMTP_STATE_AUTH] = smtp_on_auth,
	[SMTP_STATE_AUTH_PIPELINED] = smtp_on_auth_pipelined,
	[SMTP_STATE_MAIL] = smtp_on_mail,
	[SMTP_STATE_RCPT] = smtp_on_rcpt,
	[SMTP_STATE_DATA] = smtp_on_data,
	[SMTP_STATE_DOT] = smtp_on_dot,
	[SMTP_STATE_BDAT] = smtp_on_bdat,
	[SMTP_STATE_RSET] = smtp_on_rset,
	[SMTP_STATE_QUIT] = smtp_on_quit,
};

static void smtp_dispatch(struct smtp_client *c, const struct smtp_reply *r)
{
	smtp_handler h = smtp_handlers[c->state];
	if (c->outstanding == 0 || !h) {
		smtp_fail(c, DM_EPROTO, r, "unexpected reply %d in state %s "
		          "(nothing was asked)", r->code, smtp_state_names[c->state]);
		return;
	}
	c->outstanding--;
	c->replies++;
	/* Leftover bytes when no other reply is due: the server talks out of
	 * turn (pipelined junk, RFC 5321 4.3.1 / RFC 2920 3.2). */
	if (c->outstanding == 0 && c->rpos < c->rlen &&
	    c->state != SMTP_STATE_STARTTLS && c->state != SMTP_STATE_QUIT) {
		smtp_fail(c, DM_EPROTO, r, "server sent %zu unexpected bytes after "
		          "its reply in state %s", c->rlen - c->rpos,
		          smtp_state_names[c->state]);
		return;
	}
	/* RFC 5321 3.8: 421 may come at any point; the server is closing. */
	if (r->code == 421 && c->state != SMTP_STATE_QUIT) {
		smtp_fail(c, DM_ETEMPFAIL, r, "%s:%u is closing the connection "
		          "(421 in state %s)", c->info.host, c->info.port,
		          smtp_state_names[c->state]);
		return;
	}
	h(c, r);
}

/* Feeds received bytes to the parser; dispatches complete replies.  Stops
 * early when the state rests (READY/CLOSED/FAILED) or TLS starts. */
static void smtp_feed(struct smtp_client *c)
{
	while (c->rpos < c->rlen && c->state != SMTP_STATE_FAILED) {
		size_t used = 0;
		bool done = false;
		struct dm_err e;
		dm_err_clear(&e);
		enum dm_status st = smtp_reply_feed(&c->parser, c->rbuf + c->rpos,
		                                    c->rlen - c->rpos, &used, &done, &e);
		if (st != DM_OK) {
			smtp_fail(c, st, NULL, "from %s:%u: %s", c->info.host,
			          c->info.port, e.msg);
			return;
		}
		c->rpos += used;
		if (!done)
			return;
		smtp_dispatch(c, &c->parser.reply);
		smtp_reply_parser_init(&c->parser);
	}
}

static bool smtp_resting(const struct smtp_client *c)
{
	return c->state == SMTP_STATE_READY || c->state == SMTP_STATE_CLOSED ||
	       c->state == SMTP_STATE_FAILED;
}

/* How long the reply now due may take, all of it.  RFC 5321 4.5.3.2.6
 * recommends 10 minutes for the reply to the final dot: the server may
 * filter the content before it answers, and giving up early makes the
 * message be sent again (a duplicate) though it was accepted.  A reply to
 * BDAT (RFC 3030) is the same wait: the LAST one ends the message, and an
 * earlier one may wait for the server to store its chunk. */
static long smtp_reply_timeout(const struct smtp_client *c)
{
	if ((c->state == SMTP_STATE_DOT || c->state == SMTP_STATE_BDAT) &&
	    c->timeout_ms < SMTP_DOT_TIMEOUT_MS)
		return SMTP_DOT_TIMEOUT_MS;
	return c->timeout_ms;
}

/* The pump: flush what the engine wrote, read, feed, until resting.  Each
 * reply has one deadline, set when we start waiting for it: a server that
 * trickles a byte now and then cannot hold the session beyond it. */
static void smtp_run(struct smtp_client *c)
{
	long deadline = 0, budget = 0;
	unsigned long seen = c->replies;
	for (unsigned long guard = 0; !smtp_resting(c); guard++) {
		if (guard > 10000000UL) {
			smtp_fail(c, DM_EPROTO, NULL, "SMTP session did not converge");
			return;
		}
		struct dm_err e;
		dm_err_clear(&e);
		if (c->out_pending) {
			c->out_pending = false;
			enum dm_status st = transport_flush(c->t, &e);
			if (st != DM_OK) {
				smtp_fail(c, st, NULL, "sending to %s:%u: %s", c->info.host,
				          c->info.port, e.msg);
				return;
			}
		}
		if (c->rpos < c->rlen) {
			smtp_feed(c);
			continue;
		}
		c->rpos = c->rlen = 0;
		if (c->replies != seen || deadline == 0) {
			seen = c->replies;
			budget = smtp_reply_timeout(c);
			deadline = transport_now_ms() + budget;
		}
		size_t got = 0;
		enum dm_status st = transport_read_until(c->t, c->rbuf,
		                                         sizeof(c->rbuf), deadline,
		                                         &got, &e);
		if (st == DM_ETIMEOUT) {
			smtp_fail(c, st, NULL, "%s:%u sent no complete reply within "
			          "%ld ms in state %s", c->info.host, c->info.port,
			          budget, smtp_state_names[c->state]);
			return;
		}
		if (st != DM_OK) {
			smtp_fail(c, st, NULL, "waiting for %s:%u in state %s: %s",
			          c->info.host, c->info.port,
			          smtp_state_names[c->state], e.msg);
			return;
		}
		if (got == 0) {
			smtp_fail(c, DM_ENET, NULL, "%s:%u closed the connection in "
			          "state %s", c->info.host, c->info.port,
			          smtp_state_names[c->state]);
			return;
		}
		c->rlen = got;
		smtp_feed(c);
	}
}

/* ---- public API ---------------------------------------------------------- */

static void smtp_err_copy(struct dm_err *err, const struct dm_err *from)
{
	if (err && err->msg[0] == '\0')
		*err = *from;
}

static bool smtp_name_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return false;
	return true;
}

static enum dm_status smtp_check_settings(const struct smtp_settings *s,
                                          struct dm_err *err)
{
	if (!s->host || !s->host[0] || !smtp_name_ok(s->host))
		return dm_err_set(err, DM_ECONFIG, "Email/MailHost: '%s' is not a "
		                  "host name", s->host ? s->host : "");
	if (s->port > 65535)
		return dm_err_set(err, DM_ECONFIG, "Email/Port: '%u' is out of range "
		                  "(integer 1-65535)", s->port);
	if (s->require_tls && !s->smtps && !s->starttls)
		return dm_err_set(err, DM_ECONFIG, "Email/RequireTLS is on but both "
		                  "Email/SMTPS and Email/StartTLS are off");
	if (s->helo_name && s->helo_name[0] &&
	    (!smtp_name_ok(s->helo_name) || strlen(s->helo_name) > 255))
		return dm_err_set(err, DM_ECONFIG, "EHLO name '%.40s' is not a valid "
		                  "domain", s->helo_name);
	bool user = s->username && s->username[0];
	bool secret = (s->password && s->password[0]) ||
	              (s->oauth_token && s->oauth_token[0]);
	if (user && !secret)
		return dm_err_set(err, DM_ECONFIG, "Email/Username is set but there is "
		                  "no password or token");
	if (!user && secret)
		return dm_err_set(err, DM_ECONFIG, "a password is set but "
		                  "Email/Username is empty");
	if (s->mechanism && s->mechanism[0] && strcasecmp(s->mechanism, "auto") &&
	    !sasl_supported(s->mechanism))
		return dm_err_set(err, DM_ECONFIG, "Email/AuthMechanism: '%s' is not "
		                  "one of auto, PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, "
		                  "SCRAM-SHA-256-PLUS, XOAUTH2", s->mechanism);
	return DM_OK;
}

static void smtp_free(struct smtp_client *c)
{
	if (!c)
		return;
	smtp_auth_end(c);
	smtp_auth_drop_held(c);
	transport_close(c->t);
	explicit_bzero(c->rbuf, sizeof(c->rbuf));
	free(c->ck.buf);
	free(c);
}

enum dm_status smtp_client_open_transport(const struct smtp_settings *s,
                                          struct transport *t,
                                          struct smtp_client **out,
                                          struct dm_err *err)
{
	*out = NULL;
	enum dm_status st = smtp_check_settings(s, err);
	if (st != DM_OK) {
		transport_close(t);
		return st;
	}
	struct smtp_client *c = calloc(1, sizeof(*c));
	if (!c) {
		transport_close(t);
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	}
	c->t = t;
	c->transcript = s->transcript;
	c->tctx = s->transcript_ctx;
	snprintf(c->helo, sizeof(c->helo), "%s",
	         s->helo_name && s->helo_name[0] ? s->helo_name : "localhost");
	snprintf(c->info.host, sizeof(c->info.host), "%s", s->host);
	c->info.port = s->port ? s->port : (s->smtps ? 465 : 25);
	c->starttls = s->starttls && !s->smtps;
	c->require_tls = s->require_tls;
	c->allow_plain = s->allow_plaintext_auth;
	c->no_chunking = s->no_chunking;
	c->ck.cap = s->bdat_chunk == 0 ? SMTP_BDAT_CHUNK
	            : s->bdat_chunk > SMTP_BDAT_CHUNK_MAX ? SMTP_BDAT_CHUNK_MAX
	            : s->bdat_chunk;
	c->timeout_ms = s->timeout_ms > 0 ? s->timeout_ms : SMTP_TIMEOUT_MS;
	c->have_creds = s->username && s->username[0];
	c->s = s;
	c->state = SMTP_STATE_GREETING;
	c->outstanding = 1;   /* the greeting */
	smtp_reply_parser_init(&c->parser);
	c->parser.on_line = smtp_on_raw_line;
	c->parser.on_line_ctx = c;
	c->info.tls = *transport_tls_info(t);
	/* The TLS session is made while the server takes its time over the
	 * greeting, EHLO and STARTTLS replies (net/transport.h). */
	if (c->starttls)
		transport_prepare_tls(t);
	if (s->smtps) {
		/* RFC 8314 3.3: TLS from the first byte; STARTTLS is not used. */
		struct dm_err e;
		dm_err_clear(&e);
		st = transport_start_tls(t, &e);
		if (st != DM_OK) {
			smtp_fail(c, st, NULL, "TLS with %s:%u: %s", c->info.host,
			          c->info.port, e.msg);
		} else {
			c->info.tls = *transport_tls_info(t);
			c->info.tls_mode = SMTP_TLS_SMTPS;
			smtp_note(c, SMTP_DIR_INFO, "TLS established: %s %s%s",
			          c->info.tls.version, c->info.tls.cipher,
			          c->info.tls.verified ? ", verified" : "");
		}
	}
	if (c->state != SMTP_STATE_FAILED)
		smtp_run(c);
	c->s = NULL;
	smtp_auth_end(c);
	if (c->state != SMTP_STATE_READY) {
		st = c->sstatus ? c->sstatus : DM_EPROTO;
		smtp_err_copy(err, &c->serr);
		smtp_free(c);
		return st;
	}
	*out = c;
	return DM_OK;
}

enum dm_status smtp_client_open(const struct smtp_settings *s,
                                struct smtp_client **out, struct dm_err *err)
{
	*out = NULL;
	enum dm_status st = smtp_check_settings(s, err);
	if (st != DM_OK)
		return st;
	struct transport_settings ts = {
		.host = s->host,
		.port = s->port ? s->port : (s->smtps ? 465 : 25),
		.timeout_ms = s->timeout_ms,
		.verify = s->verify,
		.cafile = s->cafile,
		.fingerprint = s->fingerprint,
		.system_trust = true,
		.cancel = s->cancel,
	};
	struct transport *t = NULL;
	st = transport_connect(&ts, &t, err);
	if (st != DM_OK)
		return st;
	return smtp_client_open_transport(s, t, out, err);
}

enum dm_status smtp_client_send(struct smtp_client *c,
                                const struct smtp_envelope *env, size_t n,
                                struct smtp_result *results, unsigned flags,
                                struct dm_err *err)
{
	for (size_t i = 0; i < n; i++) {
		memset(&results[i], 0, sizeof(results[i]));
		results[i].status = DM_EPROTO;
	}
	if (c->state != SMTP_STATE_READY) {
		enum dm_status st = c->sstatus ? c->sstatus : DM_EPROTO;
		for (size_t i = 0; i < n; i++) {
			results[i].status = st;
			snprintf(results[i].diag, sizeof(results[i].diag),
			         "SMTP session is not usable (state %s)",
			         smtp_state_names[c->state]);
		}
		return dm_err_set(err, st, "SMTP session is not usable (state %s)",
		                  smtp_state_names[c->state]);
	}
	if (n == 0)
		return DM_OK;
	unsigned char *done = calloc(n, 1);
	struct smtp_wire *wire = calloc(n, sizeof(*wire));
	if (!done || !wire) {
		free(done);
		free(wire);
		for (size_t i = 0; i < n; i++) {
			results[i].status = DM_ENOMEM;
			snprintf(results[i].diag, sizeof(results[i].diag),
			         "out of memory");
		}
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	}
	c->env = env;
	c->res = results;
	c->done = done;
	c->wire = wire;
	c->n = n;
	c->flags = flags;
	c->sent = 0;
	c->bdat = c->caps.chunking && !c->no_chunking;
	c->ck.active = false;
	for (size_t i = 0; i < n; i++)
		smtp_precheck(c, i);
	size_t first = smtp_next_msg(c, 0);
	c->cur = first;
	bool held = c->auth_held != NULL;
	if (held)
		smtp_auth_send_held(c);
	c->body_waits = held;
	if (first < n)
		smtp_begin_msg(c, first);
	else if (flags & SMTP_SEND_QUIT)
		smtp_send_quit(c);
	c->body_waits = false;
	if (held)
		smtp_auth_pipelined_wait(c);
	smtp_run(c);
	/* Messages left without a final result share the session's fate:
	 * the one in progress where the session failed, the others with the
	 * reply that ended it (a 421 ends the session for all of them). */
	for (size_t i = 0; i < n; i++) {
		if (done[i])
			continue;
		results[i].status = c->sstatus ? c->sstatus : DM_EPROTO;
		enum smtp_phase ph = smtp_phase_of(c->fail_state);
		results[i].phase = i == c->cur && ph != SMTP_PHASE_LOCAL
		                   ? ph : SMTP_PHASE_NONE;
		snprintf(results[i].diag, sizeof(results[i].diag), "%s", c->serr.msg);
		if (!results[i].code) {
			results[i].code = c->serr.smtp_code;
			snprintf(results[i].enhanced, sizeof(results[i].enhanced), "%s",
			         c->serr.enhanced);
			snprintf(results[i].text, sizeof(results[i].text), "%s",
			         c->serr.server_text);
		}
	}
	c->env = NULL;
	c->res = NULL;
	c->done = NULL;
	c->wire = NULL;
	c->ck.active = false;
	c->n = 0;
	free(done);
	free(wire);
	for (size_t i = 0; i < n; i++) {
		if (results[i].status == DM_OK)
			continue;
		if (err && err->msg[0] == '\0') {
			snprintf(err->msg, sizeof(err->msg), "message %zu: %.480s",
			         i + 1, results[i].diag);
			err->smtp_code = results[i].code;
			snprintf(err->enhanced, sizeof(err->enhanced), "%s",
			         results[i].enhanced);
			snprintf(err->server_text, sizeof(err->server_text), "%s",
			         results[i].text);
		}
		return results[i].status;
	}
	return DM_OK;
}

bool smtp_client_usable(const struct smtp_client *c)
{
	return c->state == SMTP_STATE_READY && !c->quit_sent;
}

const struct smtp_info *smtp_client_info(const struct smtp_client *c)
{
	return &c->info;
}

enum dm_status smtp_client_close(struct smtp_client *c, struct dm_err *err)
{
	if (!c)
		return DM_OK;
	enum dm_status st = DM_OK;
	if (c->state == SMTP_STATE_READY) {
		bool held = c->auth_held != NULL;
		if (held)
			smtp_auth_send_held(c);
		smtp_send_quit(c);
		if (held)
			smtp_auth_pipelined_wait(c);
		smtp_run(c);
		if (c->state == SMTP_STATE_FAILED) {
			st = c->sstatus;
			smtp_err_copy(err, &c->serr);
		}
	}
	smtp_free(c);
	return st;
}

const char *smtp_tls_mode_str(enum smtp_tls_mode m)
{
	switch (m) {
	case SMTP_TLS_STARTTLS: return "STARTTLS";
	case SMTP_TLS_SMTPS:    return "SMTPS";
	case SMTP_TLS_NONE:     break;
	}
	return "none";
}
