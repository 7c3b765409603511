/* test_message.c - the streaming MIME builder (mail/message) and the
 * extension table (mail/mimetype). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base64.h"
#include "mail/message.h"
#include "mail/mimetype.h"

static char tmpdir[256];

static int setup(void **state)
{
	(void)state;
	const char *t = getenv("TMPDIR");
	snprintf(tmpdir, sizeof(tmpdir), "%s/dm_test_message.XXXXXX",
	         t && *t ? t : "/tmp");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void tmp_path(const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const void *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	close(fd);
}

/* Reads the whole message through its source in `chunk`-byte calls. */
static char *read_all(struct message *m, size_t chunk, size_t *len)
{
	struct mail_source src = message_source(m);
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap + 1);
	assert_non_null(buf);
	for (;;) {
		size_t got;
		struct dm_err err;
		dm_err_clear(&err);
		if (n + chunk > cap) {
			cap = cap * 2 + chunk;
			buf = realloc(buf, cap + 1);
			assert_non_null(buf);
		}
		enum dm_status st = src.read(src.ctx, buf + n, chunk, &got, &err);
		if (st != DM_OK)
			fail_msg("read: %s", err.msg);
		assert_true(got <= chunk);
		if (got == 0)
			break;
		n += got;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* CRLF everywhere (no bare CR or LF), every line at most 998 octets. */
static void check_lines(const char *s, size_t n)
{
	size_t col = 0;
	assert_true(n >= 2 && s[n - 2] == '\r' && s[n - 1] == '\n');
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r') {
			if (i + 1 >= n || s[i + 1] != '\n')
				fail_msg("bare CR at offset %zu", i);
			i++;
			col = 0;
			continue;
		}
		if (s[i] == '\n')
			fail_msg("bare LF at offset %zu", i);
		if (++col > 998)
			fail_msg("line longer than 998 octets at offset %zu", i);
	}
}

/* The header block (up to the first empty line), NUL-terminated copy. */
static char *header_block(const char *msg)
{
	const char *e = strstr(msg, "\r\n\r\n");
	assert_non_null(e);
	return strndup(msg, (size_t)(e - msg) + 2);
}

static struct message *build_ok(const struct message_spec *spec)
{
	struct message *m = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = message_build(spec, &m, &err);
	if (st != DM_OK)
		fail_msg("message_build: %s (%s)", err.msg, dm_status_str(st));
	return m;
}

static const char *const to_one[] = { "Ann <ann@example.com>" };

/* ---- exact output of a simple message ---------------------------------------- */

static void test_simple_exact(void **state)
{
	(void)state;
	static const char body[] = "Hello,\nthe pump stopped.\n";
	struct message_spec spec = {
		.from = "Controller <io@example.com>",
		.to = to_one, .nto = 1,
		.subject = "Pump alarm",
		.body = body, .body_len = sizeof(body) - 1,
		.date = "Tue, 24 Nov 2026 18:41:00 +0000",
		.message_id = "<1@example.com>",
	};
	struct message *m = build_ok(&spec);
	size_t n;
	char *out = read_all(m, 4096, &n);
	assert_string_equal(out,
		"Date: Tue, 24 Nov 2026 18:41:00 +0000\r\n"
		"Message-ID: <1@example.com>\r\n"
		"From: Controller <io@example.com>\r\n"
		"To: Ann <ann@example.com>\r\n"
		"Subject: Pump alarm\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=UTF-8\r\n"
		"Content-Transfer-Encoding: 7bit\r\n"
		"\r\n"
		"Hello,\r\nthe pump stopped.\r\n");
	assert_int_equal(message_size_estimate(m), n);
	assert_string_equal(message_sender(m), "io@example.com");
	assert_int_equal(message_recipient_count(m), 1);
	assert_string_equal(message_recipient(m, 0), "ann@example.com");
	assert_null(message_recipient(m, 1));
	assert_string_equal(message_id(m), "<1@example.com>");
	assert_false(message_needs_8bitmime(m));
	assert_false(message_needs_smtputf8(m));

	/* rewind gives the same bytes, read one byte at a time */
	assert_int_equal(message_rewind(m, NULL), DM_OK);
	size_t n2;
	char *again = read_all(m, 1, &n2);
	assert_int_equal(n2, n);
	assert_memory_equal(again, out, n);
	free(again);
	free(out);
	message_free(m);
}

/* ---- generated Date and Message-ID ------------------------------------------- */

static void test_generated_ids(void **state)
{
	(void)state;
	struct message_spec spec = {
		.from = "io@example.com", .to = to_one, .nto = 1,
		.hostname = "plc7.example.net",
	};
	struct message *a = build_ok(&spec), *b = build_ok(&spec);
	assert_int_equal(strncmp(message_id(a), "<", 1), 0);
	assert_non_null(strstr(message_id(a), "@plc7.example.net>"));
	assert_string_not_equal(message_id(a), message_id(b));
	size_t n;
	char *out = read_all(a, 512, &n);
	char *h = header_block(out);
	/* "Date: Tue, 24 Nov 2026 18:41:00 +0000" shape */
	const char *d = strstr(h, "Date: ");
	assert_non_null(d);
	int day, year, hh, mi, ss;
	char wd[4], mon[4], sign;
	assert_int_equal(sscanf(d, "Date: %3s, %d %3s %d %d:%d:%d %c", wd, &day,
	                        mon, &year, &hh, &mi, &ss, &sign), 8);
	assert_true(sign == '+' || sign == '-');
	assert_int_equal(message_size_estimate(a), n);
	/* empty body, single part */
	assert_non_null(strstr(out, "7bit\r\n\r\n"));
	assert_int_equal(out[n - 1], '\n');
	free(h);
	free(out);
	message_free(a);
	message_free(b);

	struct message *m = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	spec.hostname = "bad host";
	assert_int_equal(message_build(&spec, &m, &err), DM_EINVAL);
	assert_non_null(strstr(err.msg, "host name"));
	spec.hostname = NULL;
	spec.message_id = "<no-at-sign>";
	dm_err_clear(&err);
	assert_int_equal(message_build(&spec, &m, &err), DM_EINVAL);
	assert_non_null(strstr(err.msg, "Message-ID"));
	assert_null(m);
}

/* ---- non-ASCII subject and names, QP body, Bcc ------------------------------ */

static void test_international_bcc(void **state)
{
	(void)state;
	static const char *const to[] = { "Zo\xc3\xab Dupont <zoe@example.fr>, bob@example.com" };
	static const char *const cc[] = { "\"M\xc3\xbcller, J\xc3\xbcrgen\" <jm@example.de>",
	                                  "bob@EXAMPLE.COM" };
	static const char *const bcc[] = { "secret-auditor@example.org", "bob@example.com" };
	static const char body[] = "Gr\xc3\xbc\xc3\x9f" "e aus der Halle 3.\r\n"
	                           "Temperatur: 85 \xc2\xb0" "C \r\n";
	struct message_spec spec = {
		.from = "J\xc3\xb6rg <io@example.com>",
		.to = to, .nto = 1, .cc = cc, .ncc = 2, .bcc = bcc, .nbcc = 2,
		.subject = "Gr\xc3\xb6\xc3\x9f" "e \xc3\xbc" "berschritten: Sensor 12",
		.body = body, .body_len = sizeof(body) - 1,
	};
	struct message *m = build_ok(&spec);
	size_t n;
	char *out = read_all(m, 100, &n);
	check_lines(out, n);
	char *h = header_block(out);

	assert_null(strstr(out, "secret-auditor"));
	assert_null(strstr(out, "Bcc"));
	assert_non_null(strstr(h, "From: =?UTF-8?Q?J=C3=B6rg?= <io@example.com>\r\n"));
	assert_non_null(strstr(h, "To: =?UTF-8?Q?Zo=C3=AB_Dupont?= <zoe@example.fr>,"));
	assert_non_null(strstr(h, "=?UTF-8?Q?M=C3=BCller=2C_J=C3=BCrgen?= <jm@example.de>"));
	assert_non_null(strstr(h, "Subject: =?UTF-8?"));
	assert_non_null(strstr(h, "Sensor 12\r\n"));
	assert_non_null(strstr(h, "Content-Transfer-Encoding: quoted-printable\r\n"));
	/* the header block is pure ASCII */
	for (const char *p = h; *p; p++)
		assert_true((unsigned char)*p < 0x80);
	const char *b = strstr(out, "\r\n\r\n") + 4;
	assert_string_equal(b, "Gr=C3=BC=C3=9Fe aus der Halle 3.\r\n"
	                       "Temperatur: 85 =C2=B0C=20\r\n");
	assert_int_equal(message_size_estimate(m), n);

	/* envelope: To+Cc+Bcc, deduplicated (domain case-insensitive) */
	assert_int_equal(message_recipient_count(m), 4);
	assert_string_equal(message_recipient(m, 0), "zoe@example.fr");
	assert_string_equal(message_recipient(m, 1), "bob@example.com");
	assert_string_equal(message_recipient(m, 2), "jm@example.de");
	assert_string_equal(message_recipient(m, 3), "secret-auditor@example.org");
	assert_false(message_needs_smtputf8(m));
	free(h);
	free(out);
	message_free(m);
}

static void test_bcc_only_and_utf8_address(void **state)
{
	(void)state;
	static const char *const bcc[] = { "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a" };
	struct message_spec spec = {
		.from = "io@example.com", .bcc = bcc, .nbcc = 1,
		.subject = "only bcc", .body = "x", .body_len = 1,
	};
	struct message *m = build_ok(&spec);
	size_t n;
	char *out = read_all(m, 4096, &n);
	assert_non_null(strstr(out, "To: undisclosed-recipients:;\r\n"));
	assert_null(strstr(out, "\xe7\x94\xa8"));
	assert_true(message_needs_smtputf8(m));
	assert_true(message_needs_8bitmime(m));
	assert_int_equal(message_recipient_count(m), 1);
	free(out);
	message_free(m);
}

/* ---- attachments ----------------------------------------------------------------- */

/* Extracts and decodes the base64 body of the part whose header block
 * contains `marker`. */
static unsigned char *decode_part(const char *msg, const char *marker,
                                  size_t *len)
{
	const char *p = strstr(msg, marker);
	assert_non_null(p);
	const char *start = strstr(p, "\r\n\r\n");
	assert_non_null(start);
	start += 4;
	const char *end = strstr(start, "--=_devmail_");
	assert_non_null(end);
	size_t enc = (size_t)(end - start);
	/* base64 lines are exactly 76 characters except the last */
	for (const char *l = start; l < end;) {
		const char *e = strstr(l, "\r\n");
		assert_true(e - l <= 76);
		if (e + 2 < end)
			assert_int_equal(e - l, 76);
		l = e + 2;
	}
	unsigned char *out = malloc(enc);
	assert_non_null(out);
	assert_int_equal(base64_decode(start, enc, out, enc, len, NULL), DM_OK);
	return out;
}

static void test_attachment_roundtrip(void **state)
{
	(void)state;
	enum { SZ = 300 * 1024 + 7 };
	unsigned char *data = malloc(SZ);
	char path1[300], path2[300];
	assert_non_null(data);
	assert_int_equal(getrandom(data, SZ, 0), SZ);
	tmp_path("random.bin", path1, sizeof(path1));
	write_file(path1, data, SZ);
	tmp_path("report.csv", path2, sizeof(path2));
	write_file(path2, "a,b\n1,2\n", 8);

	struct message_attachment att[] = {
		{ .path = path1 },
		{ .path = path2, .name = "Pr\xc3\xbc" "fbericht \"M\xc3\xa4rz\".csv" },
		{ .path = path2, .name = "data.bin", .content_type = "application/x-custom" },
	};
	static const char body[] = "See attached.\n";
	struct message_spec spec = {
		.from = "io@example.com", .to = to_one, .nto = 1,
		.subject = "Report", .body = body, .body_len = sizeof(body) - 1,
		.attachments = att, .nattachments = 3,
	};
	struct message *m = build_ok(&spec);
	static const size_t chunks[] = { 4096, 1000, 77, 65536 };
	char *first = NULL;
	size_t firstlen = 0;
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		size_t n;
		assert_int_equal(message_rewind(m, NULL), DM_OK);
		char *out = read_all(m, chunks[c], &n);
		if (!first) {
			first = out;
			firstlen = n;
			continue;
		}
		assert_int_equal(n, firstlen);
		assert_memory_equal(out, first, n);
		free(out);
	}
	check_lines(first, firstlen);
	assert_int_equal(message_size_estimate(m), firstlen);

	/* structure */
	char *h = header_block(first);
	assert_non_null(strstr(h, "Content-Type: multipart/mixed;\r\n boundary=\"=_devmail_"));
	const char *bnd = strstr(h, "boundary=\"") + 10;
	char boundary[80];
	size_t bl = (size_t)(strchr(bnd, '"') - bnd);
	memcpy(boundary, bnd, bl);
	boundary[bl] = '\0';
	char close_delim[100];
	snprintf(close_delim, sizeof(close_delim), "\r\n--%s--\r\n", boundary);
	assert_true(firstlen > strlen(close_delim));
	assert_string_equal(first + firstlen - strlen(close_delim), close_delim);
	assert_non_null(strstr(first, "Content-Type: text/plain; charset=UTF-8\r\n"
	                              "Content-Transfer-Encoding: 7bit\r\n\r\n"
	                              "See attached.\r\n\r\n--"));
	/* The text's own line break survives: the CRLF right before the
	 * delimiter belongs to the delimiter (RFC 2046 section 5.1.1). */

	/* 1: random bytes, name from the path, type from the extension */
	assert_non_null(strstr(first, "Content-Type: application/octet-stream;\r\n"
	                              " name=\"random.bin\"\r\n"
	                              "Content-Disposition: attachment;\r\n"
	                              " filename=\"random.bin\"\r\n"
	                              "Content-Transfer-Encoding: base64\r\n\r\n"));
	size_t dl;
	unsigned char *dec = decode_part(first, "filename=\"random.bin\"", &dl);
	assert_int_equal(dl, SZ);
	assert_memory_equal(dec, data, SZ);
	free(dec);

	/* 2: non-ASCII name: RFC 2231 plus ASCII fallback, quotes escaped */
	assert_non_null(strstr(first, "Content-Type: text/csv;\r\n"
	                              " name=\"Pr_fbericht \\\"M_rz\\\".csv\"\r\n"
	                              "Content-Disposition: attachment;\r\n"
	                              " filename*=UTF-8''Pr%C3%BCfbericht%20%22M%C3%A4rz%22.csv;\r\n"
	                              " filename=\"Pr_fbericht \\\"M_rz\\\".csv\"\r\n"));
	dec = decode_part(first, "filename*=UTF-8''Pr", &dl);
	assert_int_equal(dl, 8);
	assert_memory_equal(dec, "a,b\n1,2\n", 8);
	free(dec);

	/* 3: explicit content type */
	assert_non_null(strstr(first, "Content-Type: application/x-custom;\r\n"
	                              " name=\"data.bin\"\r\n"));

	/* the boundary occurs in the header and as delimiters only */
	size_t count = 0;
	for (const char *p = first; (p = strstr(p, boundary)); p += bl)
		count++;
	assert_int_equal(count, 1 + 1 + 3 + 1);

	/* message_write_fd gives the same bytes */
	char outpath[300];
	tmp_path("spool.eml", outpath, sizeof(outpath));
	int fd = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(message_write_fd(m, fd, NULL), DM_OK);
	close(fd);
	struct stat st;
	assert_int_equal(stat(outpath, &st), 0);
	assert_int_equal((size_t)st.st_size, firstlen);
	char *disk = malloc(firstlen);
	fd = open(outpath, O_RDONLY);
	assert_int_equal(read(fd, disk, firstlen), (ssize_t)firstlen);
	close(fd);
	assert_memory_equal(disk, first, firstlen);
	free(disk);

	free(h);
	free(first);
	free(data);
	message_free(m);
}

static void test_attachment_only_and_empty(void **state)
{
	(void)state;
	char path[300];
	tmp_path("empty.txt", path, sizeof(path));
	write_file(path, "", 0);
	struct message_attachment att[] = { { .path = path } };
	struct message_spec spec = {
		.from = "io@example.com", .to = to_one, .nto = 1,
		.attachments = att, .nattachments = 1,
	};
	struct message *m = build_ok(&spec);
	size_t n;
	char *out = read_all(m, 4096, &n);
	check_lines(out, n);
	assert_null(strstr(out, "text/plain; charset"));
	assert_non_null(strstr(out, "Content-Type: text/plain;\r\n name=\"empty.txt\""));
	assert_int_equal(message_size_estimate(m), n);
	free(out);
	message_free(m);
}

/* ---- body rules -------------------------------------------------------------------- */

static void test_body_encoding_choice(void **state)
{
	(void)state;
	char path[300], longline[2101];
	memset(longline, 'x', 2100);
	longline[2100] = '\0';
	struct { const char *body; size_t len; bool multipart; const char *cte; } cases[] = {
		{ "plain ascii\r\n", 13, false, "7bit" },
		{ longline, 2100, false, "quoted-printable" },
		{ longline, 998, false, "7bit" },
		{ "caf\xc3\xa9", 5, false, "quoted-printable" },
		{ "bare\rcr", 7, false, "quoted-printable" },
		{ "nul\0byte", 8, false, "quoted-printable" },
		/* could collide with the boundary: never 7bit in multipart */
		{ "--=_devmail_\r\n", 14, true, "quoted-printable" },
		{ "--=_devmail_\r\n", 14, false, "7bit" },
	};
	tmp_path("att.txt", path, sizeof(path));
	write_file(path, "x", 1);
	struct message_attachment att[] = { { .path = path } };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct message_spec spec = {
			.from = "io@example.com", .to = to_one, .nto = 1,
			.body = cases[i].body, .body_len = cases[i].len,
			.attachments = att, .nattachments = cases[i].multipart ? 1 : 0,
		};
		struct message *m = build_ok(&spec);
		size_t n;
		char *out = read_all(m, 333, &n);
		char want[80];
		snprintf(want, sizeof(want), "Content-Transfer-Encoding: %s\r\n",
		         cases[i].cte);
		if (!strstr(out, want))
			fail_msg("case %zu: no '%s'", i, want);
		check_lines(out, n);
		assert_int_equal(message_size_estimate(m), n);
		free(out);
		message_free(m);
	}

	/* invalid UTF-8 body refused */
	struct message *m = NULL;
	struct dm_err err;
	struct message_spec bad = {
		.from = "io@example.com", .to = to_one, .nto = 1,
		.body = "bad \xc3(", .body_len = 6,
	};
	dm_err_clear(&err);
	assert_int_equal(message_build(&bad, &m, &err), DM_EINVAL);
	assert_non_null(strstr(err.msg, "UTF-8"));
}

static void test_body_file(void **state)
{
	(void)state;
	char path[300];
	static const char text[] = "line one\nline two \xe2\x82\xac\n";
	tmp_path("body.txt", path, sizeof(path));
	write_file(path, text, sizeof(text) - 1);
	struct message_spec spec = {
		.from = "io@example.com", .to = to_one, .nto = 1,
		.body_path = path,
	};
	struct message *m = build_ok(&spec);
	size_t n;
	char *out = read_all(m, 7, &n);
	assert_non_null(strstr(out, "quoted-printable\r\n\r\nline one\r\nline two =E2=82=AC\r\n"));
	assert_int_equal(message_size_estimate(m), n);

	/* the file grows after build: the read fails instead of sending more
	 * than SIZE declared */
	write_file(path, "longer than before, much longer\n", 32);
	assert_int_equal(message_rewind(m, NULL), DM_OK);
	struct mail_source src = message_source(m);
	char buf[4096];
	size_t got;
	enum dm_status st = DM_OK;
	struct dm_err err;
	dm_err_clear(&err);
	for (int i = 0; i < 100 && st == DM_OK; i++) {
		st = src.read(src.ctx, buf, sizeof(buf), &got, &err);
		if (st == DM_OK && got == 0)
			break;
	}
	assert_int_equal(st, DM_EIO);
	assert_non_null(strstr(err.msg, "changed size"));
	free(out);
	message_free(m);
}

/* ---- refusals ---------------------------------------------------------------------- */

static void test_refusals(void **state)
{
	(void)state;
	char missing[300], dir[300];
	tmp_path("does-not-exist.pdf", missing, sizeof(missing));
	snprintf(dir, sizeof(dir), "%s", tmpdir);
	struct message_attachment att_missing[] = { { .path = missing } };
	struct message_attachment att_dir[] = { { .path = dir } };
	char okfile[300];
	tmp_path("ok.txt", okfile, sizeof(okfile));
	write_file(okfile, "ok", 2);
	struct message_attachment att_ct[] = { { .path = okfile, .content_type = "text" } };
	struct message_attachment att_ctl[] = { { .path = okfile, .name = "a\nb.txt" } };
	static const char *const to_crlf[] = { "a@example.com\r\nBcc: evil@example.com" };
	static const char *const to_bad[] = { "ok@example.com, broken" };
	struct message_header hdr_lf[] = { { "X-Note", "one\ntwo" } };
	struct message_header hdr_res[] = { { "bcc", "x@example.com" } };
	struct message_header hdr_name[] = { { "X Bad", "v" } };

	struct {
		struct message_spec spec;
		enum dm_status st;
		const char *frag;
	} cases[] = {
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .attachments = att_missing, .nattachments = 1 },
		  DM_ENOINPUT, "does-not-exist.pdf" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .attachments = att_dir, .nattachments = 1 },
		  DM_ENOINPUT, "not a regular file" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .attachments = att_ct, .nattachments = 1 },
		  DM_EINVAL, "type/subtype" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .attachments = att_ctl, .nattachments = 1 },
		  DM_EINVAL, "a LF" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .body_path = missing },
		  DM_ENOINPUT, "does-not-exist.pdf" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .subject = "hello\r\nBcc: evil@example.com" },
		  DM_EINVAL, "Subject" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .subject = "hello\nworld" },
		  DM_EINVAL, "LF" },
		{ { .from = "io@example.com", .to = to_crlf, .nto = 1 },
		  DM_EINVAL, "CR" },
		{ { .from = "io@example.com", .to = to_bad, .nto = 1 },
		  DM_EINVAL, "'broken'" },
		{ { .from = "io@example.com\n", .to = to_one, .nto = 1 },
		  DM_EINVAL, "LF" },
		{ { .from = NULL, .to = to_one, .nto = 1 },
		  DM_EINVAL, "From" },
		{ { .from = "io@example.com" },
		  DM_EINVAL, "no recipient" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .headers = hdr_lf, .nheaders = 1 },
		  DM_EINVAL, "X-Note" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .headers = hdr_res, .nheaders = 1 },
		  DM_EINVAL, "set by the message builder" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .headers = hdr_name, .nheaders = 1 },
		  DM_EINVAL, "header name" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .body = "x", .body_len = 1, .body_path = missing },
		  DM_EINVAL, "not both" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .date = "Mon, 1 Jan 2026\r\n 00:00:00 +0000" },
		  DM_EINVAL, "Date" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct message *m = (struct message *)1;
		struct dm_err err;
		dm_err_clear(&err);
		enum dm_status st = message_build(&cases[i].spec, &m, &err);
		if (st != cases[i].st)
			fail_msg("case %zu: status %s, want %s (%s)", i, dm_status_str(st),
			         dm_status_str(cases[i].st), err.msg);
		if (!strstr(err.msg, cases[i].frag))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].frag);
		assert_null(m);
	}

	/* extra headers are written (and encoded) when valid */
	struct message_header ok[] = { { "X-Device", "JNIOR 410 \xe2\x80\x94 Halle 3" } };
	struct message_spec spec = {
		.from = "io@example.com", .to = to_one, .nto = 1,
		.headers = ok, .nheaders = 1,
	};
	struct message *m = build_ok(&spec);
	size_t n;
	char *out = read_all(m, 4096, &n);
	assert_non_null(strstr(out, "X-Device: JNIOR 410 =?UTF-8?"));
	free(out);
	message_free(m);
}

/* ---- values quoted in refusals are escaped ------------------------------------ */

/* A refused value that holds CR/LF is quoted escaped, so that a forged
 * second line never reaches err.msg (and from there the log or console). */
static void test_refusal_messages_escaped(void **state)
{
	(void)state;
	char okfile[300], lfpath[300];
	tmp_path("ok2.txt", okfile, sizeof(okfile));
	write_file(okfile, "ok", 2);
	tmp_path("no\nsuch\rfile", lfpath, sizeof(lfpath));
	struct message_attachment att_ct[] = {
		{ .path = okfile, .content_type = "--=_boundary\r\nx\n" } };
	struct message_attachment att_ct2[] = {
		{ .path = okfile, .content_type = "text/pl ain\r\nInjected: x" } };
	struct message_attachment att_ct3[] = {
		{ .path = okfile, .content_type = "text/a/b\nInjected: x" } };
	struct message_attachment att_lf[] = { { .path = lfpath } };
	struct message_header hdr_cr[] = { { "Bad\rName", "v" } };
	struct message_header hdr_crlf[] = { { "X-A\r\nInjected: x", "v" } };

	struct {
		struct message_spec spec;
		enum dm_status st;
		const char *frag;
	} cases[] = {
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .message_id = "bad\r\nInjected: line@x" },
		  DM_EINVAL, "Message-ID 'bad\\r\\nInjected: line@x'" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .message_id = "<a\rb@example.com>" },
		  DM_EINVAL, "'<a\\rb@example.com>'" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .message_id = "no-at-sign\n" },
		  DM_EINVAL, "expected <left@right>" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .hostname = "host\r\nInjected: x" },
		  DM_EINVAL, "host name 'host\\r\\nInjected: x'" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .attachments = att_ct, .nattachments = 1 },
		  DM_EINVAL, "content type '--=_boundary\\r\\nx\\n'" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .attachments = att_ct2, .nattachments = 1 },
		  DM_EINVAL, "not allowed in a token" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .attachments = att_ct3, .nattachments = 1 },
		  DM_EINVAL, "type/subtype" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .attachments = att_lf, .nattachments = 1 },
		  DM_ENOINPUT, "no\\nsuch\\rfile" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .body_path = lfpath },
		  DM_ENOINPUT, "cannot open" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .headers = hdr_cr, .nheaders = 1 },
		  DM_EINVAL, "header name 'Bad\\rName'" },
		{ { .from = "io@example.com", .to = to_one, .nto = 1,
		    .headers = hdr_crlf, .nheaders = 1 },
		  DM_EINVAL, "header name 'X-A\\r\\nInjected: x'" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct message *m = (struct message *)1;
		struct dm_err err;
		dm_err_clear(&err);
		enum dm_status st = message_build(&cases[i].spec, &m, &err);
		if (st != cases[i].st)
			fail_msg("case %zu: status %s, want %s (%s)", i, dm_status_str(st),
			         dm_status_str(cases[i].st), err.msg);
		if (strpbrk(err.msg, "\r\n"))
			fail_msg("case %zu: CR/LF in the message '%s'", i, err.msg);
		if (!strstr(err.msg, cases[i].frag))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].frag);
		assert_null(m);
	}
}

/* ---- bounded memory on a 50 MiB attachment ------------------------------------- */

static long max_rss_kib(void)
{
	struct rusage ru;
	assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
	return ru.ru_maxrss;
}

static void test_large_attachment_bounded(void **state)
{
	(void)state;
	enum { MIB = 1024 * 1024 };
	const off_t size = 50 * (off_t)MIB;
	char path[300];
	tmp_path("big.bin", path, sizeof(path));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);   /* sparse: reads as zeros */
	close(fd);

	struct message_attachment att[] = { { .path = path } };
	struct message_spec spec = {
		.from = "io@example.com", .to = to_one, .nto = 1,
		.body = "big one", .body_len = 7,
		.attachments = att, .nattachments = 1,
	};
	struct message *m = build_ok(&spec);
	size_t mem0 = message_memory(m);
	/* the builder holds its fixed buffers plus small rendered headers */
	assert_true(mem0 < MESSAGE_IN_CHUNK + MESSAGE_OUT_BUF + 8192);
	long rss0 = max_rss_kib();

	struct mail_source src = message_source(m);
	char buf[4096];
	/* decode each base64 line of the attachment as it streams by */
	char line[1024];
	size_t linelen = 0, total = 0, decoded = 0, maxline = 0;
	bool in_b64 = false, done = false;
	for (;;) {
		size_t got;
		assert_int_equal(src.read(src.ctx, buf, sizeof(buf), &got, NULL), DM_OK);
		if (got == 0)
			break;
		total += got;
		for (size_t i = 0; i < got; i++) {
			assert_true(linelen < sizeof(line));
			line[linelen++] = buf[i];
			if (buf[i] != '\n')
				continue;
			assert_true(linelen >= 2 && line[linelen - 2] == '\r');
			size_t l = linelen - 2;
			if (l > maxline)
				maxline = l;
			if (in_b64 && !done && l == 0 && decoded == 0) {
				/* separator after the part header */
			} else if (in_b64 && !done) {
				if (l >= 2 && line[0] == '-' && line[1] == '-') {
					done = true;
				} else {
					unsigned char out[64];
					size_t dl;
					assert_true(l <= 76);
					assert_int_equal(base64_decode(line, l, out, sizeof(out),
					                               &dl, NULL), DM_OK);
					for (size_t k = 0; k < dl; k++)
						assert_int_equal(out[k], 0);
					decoded += dl;
				}
			} else if (l == strlen("Content-Transfer-Encoding: base64") &&
			           memcmp(line, "Content-Transfer-Encoding: base64", l) == 0) {
				in_b64 = true;
			}
			linelen = 0;
		}
		/* memory held by the builder does not change while reading */
		assert_int_equal(message_memory(m), mem0);
	}
	assert_true(done);
	assert_int_equal(decoded, (size_t)size);
	assert_int_equal(total, message_size_estimate(m));
	assert_true(maxline <= 998);
	/* peak RSS grew far less than the 50 MiB file (68 MiB as base64) */
	long grown = max_rss_kib() - rss0;
	if (grown > 8 * 1024)
		fail_msg("peak RSS grew by %ld KiB while streaming 50 MiB", grown);
	message_free(m);
	unlink(path);
}

/* ---- mimetype -------------------------------------------------------------------- */

static void test_mimetype(void **state)
{
	(void)state;
	static const struct { const char *name; const char *type; } cases[] = {
		{ "report.pdf", "application/pdf" },
		{ "REPORT.PDF", "application/pdf" },
		{ "log.CSV", "text/csv" },
		{ "backup.tar.gz", "application/gzip" },
		{ "photo.jpeg", "image/jpeg" },
		{ "notes.txt", "text/plain" },
		{ "/var/log/dm/system.log", "text/plain" },
		{ "config.json", "application/json" },
		{ ".profile", "application/octet-stream" },
		{ "noext", "application/octet-stream" },
		{ "trailing.", "application/octet-stream" },
		{ "dir.d/file", "application/octet-stream" },
		{ "x.unknownext", "application/octet-stream" },
		{ NULL, "application/octet-stream" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_string_equal(mimetype_from_name(cases[i].name), cases[i].type);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_exact),
		cmocka_unit_test(test_generated_ids),
		cmocka_unit_test(test_international_bcc),
		cmocka_unit_test(test_bcc_only_and_utf8_address),
		cmocka_unit_test(test_attachment_roundtrip),
		cmocka_unit_test(test_attachment_only_and_empty),
		cmocka_unit_test(test_body_encoding_choice),
		cmocka_unit_test(test_body_file),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_refusal_messages_escaped),
		cmocka_unit_test(test_large_attachment_bounded),
		cmocka_unit_test(test_mimetype),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
