/*
 * fuzz_message.c - the MIME message builder (mail/message.h).
 *
 * Input: byte 0 holds flags (bit 0: an attachment, bit 1: a Cc list,
 * bit 2: an extra header, bit 3: a given Message-ID, bit 4: no Subject),
 * then NUL-separated fields: from, to, cc, subject, extra header name,
 * extra header value, attachment name, attachment content type,
 * Message-ID, and the body (the rest, NULs included).  The attachment is
 * one small file made once per process.
 * Properties, for every message built:
 *   - the output has CRLF line ends only, every line at most 998 octets,
 *     and ends in CRLF;
 *   - message_size_estimate() is at least the size, and reading again after
 *     message_rewind() gives the same bytes;
 *   - the header block parses back: each field is "Name: value", From
 *     parses to the envelope sender, the To/Cc fields parse as address
 *     lists, the Subject decodes to the subject given, no Bcc;
 *   - without attachments the body decodes (7bit or quoted-printable) to
 *     the body given with line ends made CRLF.
 */
#include "fuzz_util.h"
#include "fuzz_text.h"

#include <strings.h>
#include <unistd.h>

#include "mail/address.h"
#include "mail/message.h"

#define FUZZ_MSG_MAX (4u << 20)

static char fuzz_att_path[64];

static void fuzz_att_cleanup(void)
{
	if (fuzz_att_path[0])
		unlink(fuzz_att_path);
}

static const char *fuzz_att_file(void)
{
	if (!fuzz_att_path[0]) {
		const char *t = getenv("TMPDIR");
		snprintf(fuzz_att_path, sizeof(fuzz_att_path), "%s/dm_fuzz_att.XXXXXX",
		         t && *t && strlen(t) < 40 ? t : "/tmp");
		int fd = mkstemp(fuzz_att_path);
		if (fd < 0)
			abort();
		static const char body[] = "attachment \x00\x01\xff bytes\r\n";
		if (write(fd, body, sizeof(body)) != (ssize_t)sizeof(body))
			abort();
		close(fd);
		atexit(fuzz_att_cleanup);
	}
	return fuzz_att_path;
}

static int fuzz_hexv(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Reads the whole source; returns a malloc'd buffer, *len set. */
static char *fuzz_read_all(struct message *m, size_t *len)
{
	struct mail_source src = message_source(m);
	size_t cap = 8192, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		abort();
	for (;;) {
		if (cap - n < 4096) {
			cap *= 2;
			FUZZ_CHECK(cap <= FUZZ_MSG_MAX * 2, "message larger than %u", FUZZ_MSG_MAX);
			buf = realloc(buf, cap);
			if (!buf)
				abort();
		}
		size_t got = 0;
		struct dm_err err;
		dm_err_clear(&err);
		enum dm_status st = src.read(src.ctx, buf + n, 1 + (n % 4096), &got, &err);
		FUZZ_CHECK(st == DM_OK, "read: %s", err.msg);
		FUZZ_CHECK(got <= 1 + (n % 4096), "read returned too much");
		if (got == 0)
			break;
		n += got;
	}
	*len = n;
	return buf;
}

/* The unfolded value of header `name` (first occurrence) in the header
 * block hdr[hl], into a malloc'd string, or NULL. */
static char *fuzz_header(const char *hdr, size_t hl, const char *name)
{
	size_t nl = strlen(name);
	for (size_t i = 0; i < hl;) {
		const char *line = hdr + i;
		size_t end = i;
		/* the field runs until a CRLF not followed by WSP */
		while (end + 1 < hl && !(hdr[end] == '\r' && hdr[end + 1] == '\n' &&
		                         (end + 2 >= hl || (hdr[end + 2] != ' ' && hdr[end + 2] != '\t'))))
			end++;
		if (end - i > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			char *u = malloc(end - i + 1);
			if (!u)
				abort();
			size_t ul = fuzz_unfold(line + nl + 1, end - i - nl - 1, u);
			(void)ul;
			return u;
		}
		i = end + 2;
	}
	return NULL;
}

static void fuzz_check_message(const char *msg, size_t len, const struct message *m,
                               const char *subject, const char *body, size_t body_len,
                               bool multipart)
{
	const char *why = fuzz_lines_check(msg, len, 998, true);
	FUZZ_CHECK(why == NULL, "message: %s", why);
	const char *sep = memmem(msg, len, "\r\n\r\n", 4);
	FUZZ_CHECK(sep != NULL, "no blank line after the header");
	size_t hl = (size_t)(sep - msg) + 2;

	/* every header line is "Name: ..." or a continuation */
	for (size_t i = 0; i < hl;) {
		const char *e = memmem(msg + i, hl - i, "\r\n", 2);
		if (msg[i] != ' ' && msg[i] != '\t') {
			const char *colon = memchr(msg + i, ':', (size_t)(e - (msg + i)));
			FUZZ_CHECK(colon && colon > msg + i, "header line without a name");
			for (const char *p = msg + i; p < colon; p++)
				FUZZ_CHECK(*p > 32 && *p < 127, "bad header name character");
			FUZZ_CHECK(strncasecmp(msg + i, "Bcc:", 4) != 0, "Bcc written");
		}
		i = (size_t)(e - msg) + 2;
	}

	char *from = fuzz_header(msg, hl, "From");
	FUZZ_CHECK(from != NULL, "no From");
	struct address a;
	struct dm_err err;
	dm_err_clear(&err);
	FUZZ_CHECK(address_parse(from, &a, &err) == DM_OK, "From '%s' does not parse: %s",
	           from, err.msg);
	FUZZ_CHECK(strcmp(a.spec, message_sender(m)) == 0, "From '%s' is not the sender '%s'",
	           a.spec, message_sender(m));
	free(from);

	const char *lists[] = { "To", "Cc" };
	for (size_t k = 0; k < 2; k++) {
		char *v = fuzz_header(msg, hl, lists[k]);
		if (!v)
			continue;
		if (strcmp(v, " undisclosed-recipients:;") != 0) {
			struct address *l = NULL;
			size_t n = 0;
			dm_err_clear(&err);
			FUZZ_CHECK(address_list_parse(v, &l, &n, &err) == DM_OK,
			           "%s '%s' does not parse: %s", lists[k], v, err.msg);
			FUZZ_CHECK(n >= 1, "%s is empty", lists[k]);
			address_list_free(l);
		}
		free(v);
	}

	char *subj = fuzz_header(msg, hl, "Subject");
	if (subject) {
		FUZZ_CHECK(subj != NULL, "no Subject");
		size_t tl = strlen(subject);
		const char *t = subject;
		while (tl > 0 && (t[tl - 1] == ' ' || t[tl - 1] == '\t'))
			tl--;
		while (tl > 0 && (*t == ' ' || *t == '\t')) {
			t++;
			tl--;
		}
		char *dec = malloc(strlen(subj) + 1);
		if (!dec)
			abort();
		const char *sv = subj[0] == ' ' ? subj + 1 : subj;
		size_t dl = fuzz_text_decode(sv, strlen(sv), dec);
		FUZZ_CHECK(dl != (size_t)-1, "Subject '%s' holds a bad encoded-word", subj);
		FUZZ_CHECK(dl == tl && memcmp(dec, t, tl) == 0,
		           "Subject decodes to '%s', not '%.*s'", dec, (int)tl, t);
		free(dec);
	} else {
		FUZZ_CHECK(subj == NULL, "Subject without a subject");
	}
	free(subj);

	if (multipart || body_len == 0)
		return;
	/* the body, normalised: LF and CRLF become CRLF, CRLF added at the end */
	char *want = malloc(2 * body_len + 3);
	if (!want)
		abort();
	size_t wl = 0;
	for (size_t i = 0; i < body_len; i++) {
		if (body[i] == '\n' && (i == 0 || body[i - 1] != '\r'))
			want[wl++] = '\r';
		want[wl++] = body[i];
	}
	if (wl < 2 || want[wl - 2] != '\r' || want[wl - 1] != '\n') {
		want[wl++] = '\r';
		want[wl++] = '\n';
	}
	char *cte = fuzz_header(msg, hl, "Content-Transfer-Encoding");
	FUZZ_CHECK(cte != NULL, "no Content-Transfer-Encoding");
	const char *b = sep + 4;
	size_t bl = len - (size_t)(b - msg);
	char *got = malloc(bl + 1);
	if (!got)
		abort();
	size_t gl = 0;
	if (strcmp(cte, " quoted-printable") == 0) {
		for (size_t i = 0; i < bl; i++) {
			if (b[i] != '=') {
				got[gl++] = b[i];
			} else if (i + 2 < bl && b[i + 1] == '\r' && b[i + 2] == '\n') {
				i += 2;
			} else {
				FUZZ_CHECK(i + 2 < bl, "truncated QP escape");
				int h = fuzz_hexv((unsigned char)b[i + 1]), l = fuzz_hexv((unsigned char)b[i + 2]);
				FUZZ_CHECK(h >= 0 && l >= 0, "bad QP escape");
				got[gl++] = (char)(h * 16 + l);
				i += 2;
			}
		}
	} else {
		FUZZ_CHECK(strcmp(cte, " 7bit") == 0, "encoding '%s'", cte);
		for (size_t i = 0; i < bl; i++) {
			unsigned char c = (unsigned char)b[i];
			FUZZ_CHECK(c != 0 && c < 0x80, "7bit body holds 0x%02x", c);
		}
		memcpy(got, b, bl);
		gl = bl;
	}
	FUZZ_CHECK(gl == wl && memcmp(got, want, wl) == 0,
	           "body does not decode back (%zu vs %zu bytes, %s)", gl, wl, cte);
	free(got);
	free(cte);
	free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 256 * 1024)
		return 0;
	unsigned flags = data[0];
	enum { F_FROM, F_TO, F_CC, F_SUBJ, F_HNAME, F_HVAL, F_ANAME, F_ATYPE, F_MSGID, F_BODY, F_N };
	char *f[F_N];
	size_t lens[F_N];
	fuzz_fields(data + 1, size - 1, f, lens, F_N);

	const char *to[] = { f[F_TO] };
	const char *cc[] = { f[F_CC] };
	const char *bcc[] = { "hidden@example.org" };
	struct message_attachment att = {
		.path = fuzz_att_file(),
		.name = f[F_ANAME][0] ? f[F_ANAME] : NULL,
		.content_type = f[F_ATYPE][0] ? f[F_ATYPE] : NULL,
	};
	struct message_header hdr = { f[F_HNAME], f[F_HVAL] };
	struct message_spec spec = {
		.from = f[F_FROM],
		.to = to, .nto = 1,
		.cc = cc, .ncc = (flags & 2) ? 1 : 0,
		.bcc = bcc, .nbcc = (flags & 32) ? 1 : 0,
		.subject = (flags & 16) ? NULL : f[F_SUBJ],
		.body = f[F_BODY], .body_len = lens[F_BODY],
		.attachments = &att, .nattachments = (flags & 1) ? 1 : 0,
		.headers = &hdr, .nheaders = (flags & 4) ? 1 : 0,
		.date = "Mon, 24 Nov 2025 18:00:00 +0100",
		.message_id = (flags & 8) ? f[F_MSGID] : "<fuzz@devmail.example>",
		.hostname = "fuzz.example",
	};

	struct message *m = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = message_build(&spec, &m, &err);
	if (st != DM_OK) {
		FUZZ_CHECK(st == DM_EINVAL || st == DM_ENOMEM, "build status %d: %s", (int)st, err.msg);
		FUZZ_CHECK(err.msg[0] != '\0' && strpbrk(err.msg, "\r\n") == NULL,
		           "error message '%s'", err.msg);
		message_free(m);
		fuzz_fields_free(f, F_N);
		return 0;
	}
	size_t len = 0;
	char *msg = fuzz_read_all(m, &len);
	FUZZ_CHECK(message_size_estimate(m) >= len, "estimate %llu < size %zu",
	           (unsigned long long)message_size_estimate(m), len);
	FUZZ_CHECK(message_recipient_count(m) >= 1 && message_recipient_count(m) <= ADDRESS_LIST_MAX * 3,
	           "recipients");
	for (size_t i = 0; i < message_recipient_count(m); i++)
		FUZZ_CHECK(strpbrk(message_recipient(m, i), "\r\n") == NULL, "recipient CR/LF");
	const char *id = message_id(m);
	FUZZ_CHECK(id && id[0] == '<' && id[strlen(id) - 1] == '>' && !strpbrk(id, "\r\n"),
	           "message id '%s'", id ? id : "(null)");
	fuzz_check_message(msg, len, m, spec.subject, spec.body, spec.body_len,
	                   spec.nattachments > 0);

	dm_err_clear(&err);
	FUZZ_CHECK(message_rewind(m, &err) == DM_OK, "rewind: %s", err.msg);
	size_t len2 = 0;
	char *again = fuzz_read_all(m, &len2);
	FUZZ_CHECK(len2 == len && memcmp(again, msg, len) == 0, "second read differs");
	free(again);
	free(msg);
	message_free(m);
	fuzz_fields_free(f, F_N);
	return 0;
}
