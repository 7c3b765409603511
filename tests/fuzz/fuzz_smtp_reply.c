/*
 * fuzz_smtp_reply.c - the SMTP reply parser and the EHLO capability parser
 * (mail/smtp_reply.h).
 *
 * Input: byte 0 picks the chunk size (1..32, or 0 = all at once) the bytes
 * are fed in; the rest is the server's byte stream.  Replies are parsed
 * one after another until an error or the end of input.
 * Properties:
 *   - *used never exceeds the bytes offered, and is all of them unless a
 *     reply completed; progress is always made;
 *   - feeding in chunks gives the same replies (and the same error
 *     position) as feeding everything at once;
 *   - a completed reply has a code 200..559, 1..SMTP_REPLY_LINES_MAX lines,
 *     text of nlines-1 '\n' separators, no CR/NUL, within the cap; the
 *     enhanced code, when present, has the reply's class;
 *   - capabilities: mechanism names are 1-20 of [A-Z0-9-_], upper case,
 *     single spaces, no duplicates, each found by smtp_caps_has_mech().
 */
#include "fuzz_util.h"

#include <ctype.h>

#include "mail/smtp_reply.h"

#define FUZZ_MAX_REPLIES 64

struct fuzz_run {
	size_t nreplies;
	struct smtp_reply replies[FUZZ_MAX_REPLIES];
	size_t consumed;         /* bytes consumed when the run stopped */
	int status;
};

static void fuzz_reply_check(const struct smtp_reply *r)
{
	FUZZ_CHECK(r->code >= 200 && r->code <= 559, "code %d", r->code);
	FUZZ_CHECK(r->nlines >= 1 && r->nlines <= SMTP_REPLY_LINES_MAX, "nlines %zu", r->nlines);
	size_t tl = strnlen(r->text, sizeof(r->text));
	FUZZ_CHECK(tl < sizeof(r->text), "text not terminated");
	size_t nl = 0;
	for (size_t i = 0; i < tl; i++) {
		FUZZ_CHECK(r->text[i] != '\r', "CR in reply text");
		if (r->text[i] == '\n')
			nl++;
	}
	FUZZ_CHECK(nl + 1 == r->nlines, "%zu separators for %zu lines", nl, r->nlines);
	size_t el = strnlen(r->enhanced, sizeof(r->enhanced));
	FUZZ_CHECK(el < sizeof(r->enhanced), "enhanced not terminated");
	if (el > 0)
		FUZZ_CHECK(r->enhanced[0] == '0' + r->code / 100 && el >= 5 && el <= 9,
		           "enhanced '%s' for code %d", r->enhanced, r->code);

	char first[64];
	smtp_reply_first_line(r, first, sizeof(first));
	FUZZ_CHECK(strlen(first) < sizeof(first) && strchr(first, '\n') == NULL,
	           "first line");
	FUZZ_CHECK(strncmp(first, r->text, strlen(first)) == 0, "first line not a prefix");

	struct smtp_caps caps;
	smtp_caps_parse(r, &caps);
	const char *m = caps.auth_mechs;
	size_t ml = strnlen(m, sizeof(caps.auth_mechs));
	FUZZ_CHECK(ml < sizeof(caps.auth_mechs), "auth_mechs not terminated");
	if (ml > 0)
		FUZZ_CHECK(caps.auth && m[0] != ' ' && m[ml - 1] != ' ', "mechs '%s'", m);
	const char *s = m;
	while (*s) {
		size_t n = strcspn(s, " ");
		FUZZ_CHECK(n >= 1 && n <= 20, "mech length %zu in '%s'", n, m);
		char name[24];
		memcpy(name, s, n);
		name[n] = '\0';
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK(isupper((unsigned char)name[i]) || isdigit((unsigned char)name[i]) ||
			           name[i] == '-' || name[i] == '_', "mech char in '%s'", m);
		FUZZ_CHECK(smtp_caps_has_mech(&caps, name), "has_mech(%s)", name);
		/* no duplicate: the name occurs once as a whole word */
		size_t count = 0;
		for (const char *t = m; *t;) {
			size_t k = strcspn(t, " ");
			if (k == n && memcmp(t, name, n) == 0)
				count++;
			t += k;
			while (*t == ' ')
				t++;
		}
		FUZZ_CHECK(count == 1, "mech %s listed %zu times in '%s'", name, count, m);
		s += n;
		if (*s == ' ') {
			s++;
			FUZZ_CHECK(*s != ' ' && *s != '\0', "double or trailing space in '%s'", m);
		}
	}
	if (!caps.size)
		FUZZ_CHECK(caps.size_max == 0, "size_max without SIZE");
}

static void fuzz_run(const char *buf, size_t len, size_t chunk, struct fuzz_run *run,
                     struct smtp_reply_parser *p)
{
	size_t off = 0;
	run->nreplies = 0;
	run->status = DM_OK;
	memset(p, 0, sizeof(*p));
	smtp_reply_parser_init(p);
	while (off < len && run->nreplies < FUZZ_MAX_REPLIES) {
		size_t n = len - off;
		if (chunk && n > chunk)
			n = chunk;
		size_t used = 12345;
		bool done = true;
		struct dm_err err;
		dm_err_clear(&err);
		enum dm_status st = smtp_reply_feed(p, buf + off, n, &used, &done, &err);
		if (st != DM_OK) {
			FUZZ_CHECK(st == DM_EPROTO, "status %d", (int)st);
			FUZZ_CHECK(err.msg[0] != '\0', "error without message");
			run->status = st;
			/* the error position: the byte being looked at */
			break;
		}
		FUZZ_CHECK(used <= n, "used %zu of %zu", used, n);
		if (!done)
			FUZZ_CHECK(used == n, "not done but used %zu of %zu", used, n);
		else
			FUZZ_CHECK(used >= 1, "done without consuming");
		off += used;
		if (done) {
			fuzz_reply_check(&p->reply);
			run->replies[run->nreplies++] = p->reply;
			smtp_reply_parser_init(p);
		}
	}
	run->consumed = off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t chunk = data[0] % 33;
	const char *buf = (const char *)data + 1;
	size_t len = size - 1;

	static struct fuzz_run whole, split;
	static struct smtp_reply_parser p;
	fuzz_run(buf, len, 0, &whole, &p);
	fuzz_run(buf, len, chunk ? chunk : 1, &split, &p);

	FUZZ_CHECK(whole.nreplies == split.nreplies, "%zu replies whole, %zu split",
	           whole.nreplies, split.nreplies);
	FUZZ_CHECK(whole.status == split.status, "status whole %d split %d",
	           whole.status, split.status);
	for (size_t i = 0; i < whole.nreplies; i++) {
		const struct smtp_reply *a = &whole.replies[i], *b = &split.replies[i];
		FUZZ_CHECK(a->code == b->code && a->nlines == b->nlines &&
		           strcmp(a->enhanced, b->enhanced) == 0 &&
		           strcmp(a->text, b->text) == 0, "reply %zu differs", i);
	}

	/* smtp_reply_enhanced on the raw input as a string */
	char s[64], enh[16];
	size_t n = len < sizeof(s) - 1 ? len : sizeof(s) - 1;
	memcpy(s, buf, n);
	s[n] = '\0';
	for (int cls = 2; cls <= 5; cls++) {
		size_t el = smtp_reply_enhanced(s, cls, enh);
		if (el > 0)
			FUZZ_CHECK(el <= 9 && strlen(enh) == el && memcmp(enh, s, el) == 0 &&
			           enh[0] == '0' + cls, "enhanced '%s' class %d", enh, cls);
	}
	return 0;
}
