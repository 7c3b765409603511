/*
 * smtp_reply.h - SMTP reply parser (RFC 5321 4.2, 4.5.3.1.5), enhanced
 * status codes (RFC 3463) and EHLO capability parsing (RFC 5321 4.1.1.1).
 *
 * The parser is fed raw bytes and stops at the end of each complete reply,
 * so the caller knows exactly which bytes are left over (STARTTLS response
 * injection, RFC 3207 5 / CVE-2011-0411).
 */
#ifndef DEVMAIL_MAIL_SMTP_REPLY_H
#define DEVMAIL_MAIL_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"

#define SMTP_REPLY_LINE_MAX 2048   /* a reply line, CRLF excluded (RFC: 512) */
#define SMTP_REPLY_LINES_MAX 128   /* lines of one multi-line reply */
#define SMTP_REPLY_TEXT_MAX 8192   /* all text of one reply */

struct smtp_reply {
	int code;                  /* 200..599 */
	char enhanced[16];         /* "2.1.0" from the first line, or "" */
	size_t nlines;
	char text[SMTP_REPLY_TEXT_MAX]; /* line texts (code, separator and
	                                   enhanced code removed) joined by '\n' */
};

struct smtp_reply_parser {
	struct smtp_reply reply;   /* the reply being assembled / completed */
	size_t textlen;
	char line[SMTP_REPLY_LINE_MAX + 2];
	size_t linelen;
	/* Optional: called with each raw line (CRLF removed) before it is
	 * parsed, for transcripts.  Kept by smtp_reply_parser_init(). */
	void (*on_line)(void *ctx, const char *line);
	void *on_line_ctx;
};

/* Resets the parser for a new reply (on_line is kept: zero the struct
 * before the first init). */
void smtp_reply_parser_init(struct smtp_reply_parser *p);

/* Consumes bytes from buf[len] up to and including the end of the first
 * complete reply; *used is set to the bytes consumed and *done to whether a
 * reply is complete (then p->reply holds it; call init before the next).
 * Lines end in CRLF (a bare LF is tolerated).  Errors: DM_EPROTO (not
 * "ddd[ -]text", code outside 2xx-5xx, code changing inside a multi-line
 * reply, NUL byte, line or reply too long). */
enum dm_status smtp_reply_feed(struct smtp_reply_parser *p, const char *buf,
                               size_t len, size_t *used, bool *done,
                               struct dm_err *err);

/* Parses "d.ddd.ddd" at the start of s (class must equal `cls`); writes it
 * to out[16] and returns its length, 0 when s does not start with one. */
size_t smtp_reply_enhanced(const char *s, int cls, char out[16]);

/* The first line of a reply's text into out[cap]. */
void smtp_reply_first_line(const struct smtp_reply *r, char *out, size_t cap);

/* EHLO keywords we act on. */
struct smtp_caps {
	bool pipelining, eightbitmime, smtputf8, starttls, enhanced, chunking;
	bool auth;                 /* AUTH (or legacy AUTH=) seen */
	bool size;                 /* SIZE announced */
	unsigned long size_max;    /* its limit, 0 = none */
	char auth_mechs[256];      /* upper-case names, single spaces */
};

/* Fills caps from a 250 reply to EHLO (line 1 is the greeting domain).
 * Unknown keywords are ignored; mechanism names that are not SASL names
 * are dropped; duplicates are removed. */
void smtp_caps_parse(const struct smtp_reply *r, struct smtp_caps *caps);

/* True when `mech` (case-insensitive) is in caps->auth_mechs. */
bool smtp_caps_has_mech(const struct smtp_caps *caps, const char *mech);

#endif
