/*
 * smtp_reply.c - SMTP reply parser, RFC 3463 enhanced codes, EHLO caps.
 *
 * RFCs: 5321 (4.2 reply syntax, 4.5.3.1.5 line length), 3463 (enhanced
 * status codes), 2034 (ENHANCEDSTATUSCODES), 4954 (AUTH keyword), 1870
 * (SIZE), 2920 (PIPELINING), 6152 (8BITMIME), 6531 (SMTPUTF8), 3207
 * (STARTTLS).
 */
#include "mail/smtp_reply.h"
#include "core/text.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void smtp_reply_parser_init(struct smtp_reply_parser *p)
{
	p->reply.code = 0;
	p->reply.enhanced[0] = '\0';
	p->reply.nlines = 0;
	p->reply.text[0] = '\0';
	p->textlen = 0;
	p->linelen = 0;
}

/* RFC 3463 2: class "." subject "." detail; subject 1-3 digits, detail
 * 1-3 digits; class is 2, 4 or 5 and must match the reply code's class. */
size_t smtp_reply_enhanced(const char *s, int cls, char out[16])
{
	size_t i = 0;
	if (s[0] != '0' + cls || (cls != 2 && cls != 4 && cls != 5) || s[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;
		while (d < 3 && isdigit((unsigned char)s[i])) {
			i++;
			d++;
		}
		if (d == 0 || isdigit((unsigned char)s[i]))
			return 0;
		if (part == 0) {
			if (s[i] != '.')
				return 0;
			i++;
		}
	}
	if (s[i] != '\0' && s[i] != ' ')
		return 0;
	memcpy(out, s, i);
	out[i] = '\0';
	return i;
}

/* One complete line (CRLF stripped) into the reply; sets *last. */
static enum dm_status smtp_reply_line(struct smtp_reply_parser *p, char *line,
                                      size_t len, bool *last,
                                      struct dm_err *err)
{
	struct smtp_reply *r = &p->reply;
	char shown[96];     /* the line as quoted in errors, escaped */

	if (len < 3 || !isdigit((unsigned char)line[0]) ||
	    !isdigit((unsigned char)line[1]) || !isdigit((unsigned char)line[2]) ||
	    (len > 3 && line[3] != ' ' && line[3] != '-'))
		return dm_err_set(err, DM_EPROTO,
		                  "malformed SMTP reply line '%s' (RFC 5321 4.2: "
		                  "3 digits, then space or '-')",
		                  text_escape(line, shown, sizeof(shown)));
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (line[0] < '2' || line[0] > '5' || line[1] > '5')
		return dm_err_set(err, DM_EPROTO,
		                  "SMTP reply code %d out of range in '%s'", code,
		                  text_escape(line, shown, sizeof(shown)));
	if (r->nlines > 0 && code != r->code)
		return dm_err_set(err, DM_EPROTO,
		                  "SMTP reply code changed from %d to %d inside a "
		                  "multi-line reply", r->code, code);
	if (r->nlines >= SMTP_REPLY_LINES_MAX)
		return dm_err_set(err, DM_EPROTO,
		                  "SMTP reply has more than %d lines", SMTP_REPLY_LINES_MAX);
	r->code = code;
	*last = len == 3 || line[3] == ' ';
	const char *text = len > 4 ? line + 4 : "";
	char enh[16];
	size_t el = smtp_reply_enhanced(text, code / 100, enh);
	if (el > 0) {
		if (r->nlines == 0)
			memcpy(r->enhanced, enh, sizeof(enh));
		text += el;
		while (*text == ' ')
			text++;
	}
	size_t tl = strlen(text);
	if (p->textlen + tl + 2 > sizeof(r->text))
		return dm_err_set(err, DM_EPROTO, "SMTP reply longer than %d bytes",
		                  SMTP_REPLY_TEXT_MAX);
	if (r->nlines > 0)
		r->text[p->textlen++] = '\n';
	memcpy(r->text + p->textlen, text, tl);
	p->textlen += tl;
	r->text[p->textlen] = '\0';
	r->nlines++;
	return DM_OK;
}

enum dm_status smtp_reply_feed(struct smtp_reply_parser *p, const char *buf,
                               size_t len, size_t *used, bool *done,
                               struct dm_err *err)
{
	*done = false;
	*used = 0;
	for (size_t i = 0; i < len; i++) {
		char ch = buf[i];
		if (ch == '\0')
			return dm_err_set(err, DM_EPROTO, "NUL byte in SMTP reply");
		if (ch != '\n') {
			if (p->linelen >= SMTP_REPLY_LINE_MAX + 1)
				return dm_err_set(err, DM_EPROTO,
				                  "SMTP reply line longer than %d bytes",
				                  SMTP_REPLY_LINE_MAX);
			p->line[p->linelen++] = ch;
			continue;
		}
		size_t ll = p->linelen;
		if (ll > 0 && p->line[ll - 1] == '\r')
			ll--;
		if (ll > SMTP_REPLY_LINE_MAX)
			return dm_err_set(err, DM_EPROTO,
			                  "SMTP reply line longer than %d bytes",
			                  SMTP_REPLY_LINE_MAX);
		p->line[ll] = '\0';
		if (p->on_line)
			p->on_line(p->on_line_ctx, p->line);
		for (size_t k = 0; k < ll; k++)
			if (p->line[k] == '\r')
				return dm_err_set(err, DM_EPROTO, "bare CR in SMTP reply");
		bool last = false;
		enum dm_status st = smtp_reply_line(p, p->line, ll, &last, err);
		if (st != DM_OK)
			return st;
		p->linelen = 0;
		if (last) {
			*used = i + 1;
			*done = true;
			return DM_OK;
		}
	}
	*used = len;
	return DM_OK;
}

void smtp_reply_first_line(const struct smtp_reply *r, char *out, size_t cap)
{
	if (cap == 0)
		return;
	size_t n = strcspn(r->text, "\n");
	if (n >= cap)
		n = cap - 1;
	/* The text goes to result lines, logs and terminals: a server's
	 * control characters (ESC sequences, bare CR) become '?'. */
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)r->text[i];
		out[i] = (ch < 0x20 && ch != '\t') || ch == 0x7f ? '?' : (char)ch;
	}
	out[n] = '\0';
}

/* RFC 4422 3.1: SASL mechanism names are 1-20 of [A-Z0-9-_]. */
static bool smtp_caps_mech_ok(const char *m, size_t n)
{
	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = (char)toupper((unsigned char)m[i]);
		if (!(isupper((unsigned char)c) || isdigit((unsigned char)c) ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

static void smtp_caps_add_mechs(struct smtp_caps *caps, const char *s)
{
	while (*s) {
		while (*s == ' ' || *s == '\t')
			s++;
		size_t n = strcspn(s, " \t");
		if (n == 0)
			break;
		char name[24];
		if (smtp_caps_mech_ok(s, n)) {
			for (size_t i = 0; i < n; i++)
				name[i] = (char)toupper((unsigned char)s[i]);
			name[n] = '\0';
			size_t cur = strlen(caps->auth_mechs);
			if (!smtp_caps_has_mech(caps, name) &&
			    cur + n + 2 <= sizeof(caps->auth_mechs)) {
				if (cur > 0)
					caps->auth_mechs[cur++] = ' ';
				memcpy(caps->auth_mechs + cur, name, n + 1);
			}
		}
		s += n;
	}
}

bool smtp_caps_has_mech(const struct smtp_caps *caps, const char *mech)
{
	size_t n = strlen(mech);
	const char *s = caps->auth_mechs;
	while (*s) {
		size_t k = strcspn(s, " ");
		if (k == n && strncasecmp(s, mech, n) == 0)
			return true;
		s += k;
		while (*s == ' ')
			s++;
	}
	return false;
}

/* Keyword match: `kw` followed by end, space or (for legacy AUTH) '='. */
static const char *smtp_caps_kw(const char *line, const char *kw)
{
	size_t n = strlen(kw);
	if (strncasecmp(line, kw, n) != 0)
		return NULL;
	if (line[n] == '\0')
		return line + n;
	if (line[n] == ' ' || line[n] == '=')
		return line + n + 1;
	return NULL;
}

void smtp_caps_parse(const struct smtp_reply *r, struct smtp_caps *caps)
{
	memset(caps, 0, sizeof(*caps));
	const char *s = r->text;
	size_t lineno = 0;
	while (*s) {
		size_t n = strcspn(s, "\n");
		char line[SMTP_REPLY_LINE_MAX + 1];
		if (n > SMTP_REPLY_LINE_MAX)
			n = SMTP_REPLY_LINE_MAX;
		memcpy(line, s, n);
		line[n] = '\0';
		s += n;
		if (*s == '\n')
			s++;
		if (lineno++ == 0)
			continue;   /* "domain greeting" (RFC 5321 4.1.1.1) */
		const char *arg;
		if ((arg = smtp_caps_kw(line, "PIPELINING")) && !*arg)
			caps->pipelining = true;
		else if ((arg = smtp_caps_kw(line, "8BITMIME")) && !*arg)
			caps->eightbitmime = true;
		else if ((arg = smtp_caps_kw(line, "SMTPUTF8")) && !*arg)
			caps->smtputf8 = true;
		else if ((arg = smtp_caps_kw(line, "STARTTLS")) && !*arg)
			caps->starttls = true;
		else if ((arg = smtp_caps_kw(line, "ENHANCEDSTATUSCODES")) && !*arg)
			caps->enhanced = true;
		else if ((arg = smtp_caps_kw(line, "CHUNKING")) && !*arg)
			caps->chunking = true;
		else if ((arg = smtp_caps_kw(line, "SIZE"))) {
			caps->size = true;
			/* RFC 1870 4: optional decimal limit, 0 = no fixed limit */
			char *end = NULL;
			unsigned long v = 0;
			if (isdigit((unsigned char)*arg))
				v = strtoul(arg, &end, 10);
			caps->size_max = (end && (*end == '\0' || *end == ' ')) ? v : 0;
		} else if ((arg = smtp_caps_kw(line, "AUTH"))) {
			caps->auth = true;
			smtp_caps_add_mechs(caps, arg);
		}
	}
}
