/* test_text.c - the shared core helpers: hex encoding (with and without a
 * separator, both cases, caps that cut), UTF-8 validation (RFC 3629
 * edges), one-line copies, escaped quotes, the address grammar shared by
 * the registry and the mail parser, random bytes and write-all,
 * table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/paths.h"
#include "core/rand.h"
#include "core/text.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

struct hex_case {
	const char *in;      /* bytes (may hold \0: length is `n`) */
	size_t n;
	size_t cap;
	bool upper;
	char sep;
	const char *want;
};

static const struct hex_case hex_cases[] = {
	{ "", 0, 8, false, '\0', "" },
	{ "\x00", 1, 8, false, '\0', "00" },
	{ "\xff\x0a\xb3", 3, 8, false, '\0', "ff0ab3" },
	{ "\xff\x0a\xb3", 3, 8, true, '\0', "FF0AB3" },
	{ "\x01\x23\x45\x67\x89\xab\xcd\xef", 8, 17, false, '\0',
	  "0123456789abcdef" },
	{ "\xde\xad\xbe\xef", 4, 16, false, ':', "de:ad:be:ef" },
	{ "\xde\xad\xbe\xef", 4, 16, true, ':', "DE:AD:BE:EF" },
	{ "=", 1, 3, true, '\0', "3D" },             /* exactly 2n+1 */
	/* Caps that cut: whole bytes only, always NUL-terminated. */
	{ "\xab\xcd\xef", 3, 6, false, '\0', "abcd" },
	{ "\xab\xcd\xef", 3, 7, false, '\0', "abcdef" },
	{ "\xab\xcd\xef", 3, 2, false, '\0', "" },
	{ "\xab\xcd\xef", 3, 8, false, ':', "ab:cd" },   /* 3n-1 chars need 3n */
	{ "\xab\xcd\xef", 3, 9, false, ':', "ab:cd:ef" },
	{ "\xab\xcd\xef", 3, 1, false, ':', "" },
};

static void test_hex_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(hex_cases); i++) {
		const struct hex_case *c = &hex_cases[i];
		char out[64];
		memset(out, 'X', sizeof(out));
		size_t n = text_hex(c->in, c->n, out, c->cap, c->upper, c->sep);
		assert_string_equal(out, c->want);
		assert_int_equal(n, strlen(c->want));
		assert_int_equal(out[c->cap], 'X');          /* nothing past cap */
	}
}

static void test_hex_cap_zero(void **state)
{
	(void)state;
	char out[4] = "XXX";
	assert_int_equal(text_hex("\x01", 1, out, 0, false, '\0'), 0);
	assert_string_equal(out, "XXX");
}

/* A SHA-256 fingerprint fills the 96-byte field of struct transport_info. */
static void test_hex_fingerprint_fits(void **state)
{
	(void)state;
	unsigned char fp[32];
	char out[96];
	for (size_t i = 0; i < sizeof(fp); i++)
		fp[i] = (unsigned char)(i * 37);
	assert_int_equal(text_hex(fp, sizeof(fp), out, sizeof(out), false, ':'),
	                 95);
	assert_int_equal(out[95], '\0');
}

struct utf8_case {
	const char *s;
	size_t len;          /* 0: strlen(s) */
	size_t seq;          /* text_utf8_seq at s[0] */
	bool valid;          /* text_utf8_valid of the whole */
};

static const struct utf8_case utf8_cases[] = {
	{ "a", 0, 1, true },
	{ "\x7f", 0, 1, true },
	{ "\0x", 2, 1, true },                      /* NUL is a character */
	{ "\xc2\x80", 0, 2, true },                 /* U+0080 */
	{ "\xdf\xbf", 0, 2, true },                 /* U+07FF */
	{ "\xc0\x80", 0, 0, false },                /* overlong NUL */
	{ "\xc1\xbf", 0, 0, false },                /* overlong */
	{ "\xc2", 0, 0, false },                     /* cut short */
	{ "\xc2\x41", 0, 0, false },                /* bad continuation */
	{ "\xe0\xa0\x80", 0, 3, true },             /* U+0800 */
	{ "\xe0\x9f\xbf", 0, 0, false },            /* overlong 3-byte */
	{ "\xed\x9f\xbf", 0, 3, true },             /* U+D7FF */
	{ "\xed\xa0\x80", 0, 0, false },            /* surrogate U+D800 */
	{ "\xef\xbf\xbf", 0, 3, true },             /* U+FFFF */
	{ "\xe2\x82", 0, 0, false },                /* cut short */
	{ "\xf0\x90\x80\x80", 0, 4, true },         /* U+10000 */
	{ "\xf0\x8f\xbf\xbf", 0, 0, false },        /* overlong 4-byte */
	{ "\xf4\x8f\xbf\xbf", 0, 4, true },         /* U+10FFFF */
	{ "\xf4\x90\x80\x80", 0, 0, false },        /* past U+10FFFF */
	{ "\xf5\x80\x80\x80", 0, 0, false },
	{ "\xf0\x9f\x98", 0, 0, false },            /* cut short */
	{ "\x80", 0, 0, false },                     /* lone continuation */
	{ "\xff", 0, 0, false },
	{ "caf\xc3\xa9 \xe2\x82\xac", 0, 1, true },
	{ "ok\xc3", 0, 1, false },                   /* bad at the end */
	{ "", 0, 0, true },                          /* empty: valid, no seq */
};

static void test_utf8_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(utf8_cases); i++) {
		const struct utf8_case *c = &utf8_cases[i];
		size_t len = c->len ? c->len : strlen(c->s);
		if (text_utf8_seq(c->s, len) != c->seq ||
		    text_utf8_valid(c->s, len) != c->valid)
			fail_msg("utf8 case %zu: seq %zu valid %d", i,
			         text_utf8_seq(c->s, len), text_utf8_valid(c->s, len));
	}
}

struct one_line_case {
	const char *in;
	size_t len;          /* 0: strlen(in) */
	size_t cap;
	char repl;
	const char *want;
	size_t ret;
};

static const struct one_line_case one_line_cases[] = {
	{ "plain text", 0, 32, ' ', "plain text", 10 },
	{ "a\r\nRCPT TO:<x>", 0, 32, ' ', "a  RCPT TO:<x>", 14 },
	{ "tab\there\x7f\x01", 0, 32, '?', "tab?here??", 10 },
	{ "nul\0inside", 10, 32, ' ', "nul inside", 10 },   /* NULs too */
	{ "caf\xc3\xa9", 0, 32, ' ', "caf\xc3\xa9", 5 },    /* UTF-8 kept */
	{ "abcdef", 0, 4, ' ', "abc", 3 },                   /* cut */
	{ "abc", 0, 4, ' ', "abc", 3 },                      /* exactly fits */
	{ "abc", 0, 1, ' ', "", 0 },
	{ "", 0, 8, ' ', "", 0 },
};

static void test_one_line_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(one_line_cases); i++) {
		const struct one_line_case *c = &one_line_cases[i];
		size_t len = c->len ? c->len : strlen(c->in);
		char out[64];
		memset(out, 'X', sizeof(out));
		size_t n = text_one_line(c->in, len, out, c->cap, c->repl);
		assert_int_equal(n, c->ret);
		assert_string_equal(out, c->want);
		assert_int_equal(out[c->cap], 'X');
	}
}

static void test_one_line_in_place_and_edges(void **state)
{
	(void)state;
	char buf[] = "one\ntwo\rthree";
	assert_int_equal(text_one_line(buf, strlen(buf), buf, sizeof(buf), ' '),
	                 13);
	assert_string_equal(buf, "one two three");
	char out[4] = "XXX";
	assert_int_equal(text_one_line("abc", 3, out, 0, ' '), 0);
	assert_string_equal(out, "XXX");
	assert_int_equal(text_one_line(NULL, 0, out, sizeof(out), ' '), 0);
	assert_string_equal(out, "");
	for (unsigned c = 0; c < 256; c++)
		assert_int_equal(text_is_ctl((unsigned char)c), c < 0x20 || c == 0x7f);
}

/* Sizes below, at and past getrandom's 256-byte single-call guarantee:
 * every byte is written (a sentinel pattern does not survive) and two
 * draws differ. */
static void test_rand_sizes(void **state)
{
	(void)state;
	static const size_t sizes[] = { 1, 4, 8, 12, 16, 255, 256, 257, 4096 };
	static unsigned char a[4096 + 1], b[4096 + 1];
	for (size_t i = 0; i < NELEM(sizes); i++) {
		size_t n = sizes[i];
		memset(a, 0xA5, sizeof(a));
		memset(b, 0xA5, sizeof(b));
		assert_int_equal(rand_bytes(a, n), 0);
		assert_int_equal(rand_bytes(b, n), 0);
		assert_int_equal(a[n], 0xA5);                /* nothing past n */
		if (n >= 8)
			assert_memory_not_equal(a, b, n);
		/* The last 16 bytes were written too (a chance of 2^-128
		 * that they still equal the sentinel). */
		if (n >= 16) {
			unsigned char sentinel[16];
			memset(sentinel, 0xA5, sizeof(sentinel));
			assert_memory_not_equal(a + n - 16, sentinel, 16);
		}
	}
	assert_int_equal(rand_bytes(a, 0), 0);
}

/* Whole buffers of each size reach a file; a pipe whose buffer is smaller
 * than the data forces short writes, drained by a child so the writer
 * finishes; errors come back as errno values. */
static void test_write_all_sizes(void **state)
{
	(void)state;
	static const size_t sizes[] = { 0, 1, 4095, 4096, 65537, 1 << 20 };
	unsigned char *data = malloc(1 << 20), *back = malloc(1 << 20);
	assert_non_null(data);
	assert_non_null(back);
	for (size_t i = 0; i < (1u << 20); i++)
		data[i] = (unsigned char)(i * 131 + 7);
	for (size_t i = 0; i < NELEM(sizes); i++) {
		FILE *f = tmpfile();
		assert_non_null(f);
		int fd = fileno(f);
		assert_int_equal(paths_write_all(fd, data, sizes[i]), 0);
		assert_int_equal(lseek(fd, 0, SEEK_END), (off_t)sizes[i]);
		assert_int_equal(pread(fd, back, sizes[i], 0), (ssize_t)sizes[i]);
		assert_memory_equal(back, data, sizes[i]);
		fclose(f);
	}
	free(data);
	free(back);
}

static void test_write_all_pipe(void **state)
{
	(void)state;
	enum { N = 300000 };   /* well past a 64 KiB pipe buffer */
	unsigned char *data = malloc(N);
	int fds[2];
	assert_non_null(data);
	for (size_t i = 0; i < N; i++)
		data[i] = (unsigned char)(i % 251);
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Child: read everything, exit 0 only if it matches. */
		unsigned char buf[8192];
		size_t total = 0;
		int ok = 1;
		close(fds[1]);
		for (;;) {
			ssize_t r = read(fds[0], buf, sizeof(buf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			for (ssize_t k = 0; k < r; k++)
				if (buf[k] != (unsigned char)((total + (size_t)k) % 251))
					ok = 0;
			total += (size_t)r;
		}
		_exit(ok && total == N ? 0 : 1);
	}
	close(fds[0]);
	assert_int_equal(paths_write_all(fds[1], data, N), 0);
	close(fds[1]);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	free(data);
}

static void test_write_all_errors(void **state)
{
	(void)state;
	struct { int fd; int want; } cases[] = {
		{ -1, EBADF },
		{ -1, 0 },      /* filled below: a read-only fd */
		{ -1, EPIPE },  /* filled below: a pipe with no reader */
	};
	cases[1].fd = open("/dev/null", O_RDONLY);
	cases[1].want = EBADF;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	close(fds[0]);
	cases[2].fd = fds[1];
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < NELEM(cases); i++)
		assert_int_equal(paths_write_all(cases[i].fd, "x", 1), cases[i].want);
	close(cases[1].fd);
	close(fds[1]);
	/* Nothing to write is never an error, even on a bad fd. */
	assert_int_equal(paths_write_all(-1, "x", 0), 0);
}

/* RFC 5322 3.2.3 dot-atom, with UTF-8 octets allowed (RFC 6532). */
static void test_dot_atom_table(void **state)
{
	(void)state;
	static const struct { const char *s; bool ok; } cases[] = {
		{ "a", true }, { "john.doe", true }, { "a.b.c", true },
		{ "x+tag", true }, { "!#$%&'*+-/=?^_`{|}~", true },
		{ "J\xc3\xb6rg", true }, { "a1.B2", true },
		{ "", false }, { ".a", false }, { "a.", false }, { "a..b", false },
		{ "a b", false }, { "a\"b", false }, { "a@b", false },
		{ "a(b", false }, { "a,b", false }, { "a\tb", false },
		{ "a\\b", false }, { "[a]", false }, { ".", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool got = text_dot_atom(cases[i].s, strlen(cases[i].s));
		if (got != cases[i].ok)
			fail_msg("text_dot_atom(\"%s\") = %d, want %d", cases[i].s,
			         got, cases[i].ok);
	}
	assert_true(text_atext('a') && text_atext('~') && text_atext(0xc3));
	assert_false(text_atext('.') || text_atext(' ') || text_atext('\0') ||
	             text_atext('@') || text_atext(0x7f));
}

/* text_escape(): what a message may quote of untrusted text. */
static void test_escape_table(void **state)
{
	(void)state;
	static const struct { const char *in; size_t cap; const char *want; } cases[] = {
		{ "plain", 32, "plain" },
		{ "a\nb\rc\td", 32, "a\\nb\\rc\\td" },
		{ "it's", 32, "it\\'s" },
		{ "back\\slash", 32, "back\\\\slash" },
		{ "\x01\x1b[2J\x7f", 32, "\\x01\\x1b[2J\\x7f" },
		{ "caf\xc3\xa9 \"q\"", 32, "caf\xc3\xa9 \"q\"" },   /* UTF-8, '"' kept */
		{ "", 32, "" },
		/* cuts: room for "..." is kept, an escape is never split */
		{ "abcd", 8, "abcd" },
		{ "abcde", 8, "abcd..." },
		{ "abcdefghijklmnop", 8, "abcd..." },
		{ "ab\ncd", 8, "ab\\n..." },
		{ "a\x01", 8, "a..." },
		{ "abc", 7, "" },                                   /* cap < 8 */
	};
	for (size_t i = 0; i < NELEM(cases); i++) {
		char out[64];
		memset(out, 'X', sizeof(out));
		const char *r = text_escape(cases[i].in, out, cases[i].cap);
		assert_ptr_equal(r, out);
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("text_escape(\"%s\", cap %zu) = \"%s\", want \"%s\"",
			         cases[i].in, cases[i].cap, out, cases[i].want);
		assert_int_equal(out[cases[i].cap], 'X');
		for (const char *p = out; *p; p++)
			assert_false(text_is_ctl((unsigned char)*p));
	}
	char out[4] = "XXX";
	assert_ptr_equal(text_escape("abc", out, 0), out);
	assert_string_equal(out, "XXX");                        /* cap 0: untouched */
}

/* The address grammar the registry and the mail parser share: spans,
 * canonical local parts, refusals in words, list steps.  (test_schema and
 * test_address run it through both callers.) */
static void test_mailbox_parse_spans(void **state)
{
	(void)state;
	struct text_mailbox m;
	char why[160];
	const char *s = " Dr.  \"Who\\\"s\"\t<\"john\"@example.com> ";

	assert_true(text_mailbox_parse(s, strlen(s), &m, why, sizeof(why)));
	assert_string_equal(why, "");
	assert_int_equal(m.name_len, strlen("Dr.  \"Who\\\"s\""));
	assert_memory_equal(s + m.name_off, "Dr.", 3);
	assert_int_equal(m.name_text, strlen("Dr. Who\"s"));
	assert_int_equal(m.local_len, 6);
	assert_memory_equal(s + m.local_off, "\"john\"", 6);
	assert_int_equal(m.local_canon, 4);
	assert_int_equal(m.domain_len, strlen("example.com"));
	assert_memory_equal(s + m.domain_off, "example.com", 11);

	s = "a@[IPv6:2001:db8::1]";
	assert_true(text_mailbox_parse(s, strlen(s), &m, why, sizeof(why)));
	assert_int_equal(m.name_len, 0);
	assert_int_equal(m.local_off, 0);
	assert_int_equal(m.local_len, 1);
	assert_int_equal(m.domain_off, 2);

	static const struct { const char *in; const char *why; } bad[] = {
		{ "a b@c.example", "has a space in the local part (quote it: \"a b\"@example.com)" },
		{ "a@b_c.example", "has '_' in the domain (labels are letters, digits and '-')" },
		{ "a\x01@b", "has a control character in the local part" },
		{ "\"a\tb\"@c", "has a TAB in the quoted local part (RFC 5321 4.1.2 allows only printable characters and spaces)" },
		{ "Jo;e <a@b>", "has a ',' or ';' outside quotes: one address expected (lists are separated by ',')" },
		{ "Jo:e <a@b>", "has ':' outside quotes (group syntax 'name: a@b;' is not supported)" },
		{ "Jo[e] <a@b>", "has '[' in the display name; put the name in double quotes" },
		{ "a@-x.example", "has a domain label '-x' starting or ending with '-'" },
		{ "a@[1.2.3]", "has '[1.2.3]', which is not a valid address literal ([192.0.2.1] or [IPv6:2001:db8::1])" },
		{ "<a@b> x", "has text after '>'" },
		{ "\xc3(@b", "is not valid UTF-8" },
		{ "", "has no address" },
	};
	for (size_t i = 0; i < NELEM(bad); i++) {
		if (text_mailbox_parse(bad[i].in, strlen(bad[i].in), &m, why, sizeof(why)))
			fail_msg("'%s' accepted", bad[i].in);
		if (strcmp(why, bad[i].why) != 0)
			fail_msg("'%s': \"%s\", want \"%s\"", bad[i].in, why, bad[i].why);
	}
	/* A small buffer: cut, NUL-terminated, never overrun. */
	char small[12];
	memset(small, 'X', sizeof(small));
	assert_false(text_mailbox_parse("a b@c", 5, &m, small, 8));
	assert_string_equal(small, "has a s");
	assert_int_equal(small[8], 'X');
}

static void test_local_canon_table(void **state)
{
	(void)state;
	static const struct { const char *in; const char *want; } cases[] = {
		{ "john.doe", "john.doe" },
		{ "\"john\"", "john" },                  /* dot-atom inside */
		{ "\"j\\ohn\"", "john" },                /* escape undone */
		{ "\"john doe\"", "\"john doe\"" },
		{ "\"a\\\"b\"", "\"a\\\"b\"" },          /* a"b */
		{ "\"a\\\\b\"", "\"a\\\\b\"" },          /* a\b */
		{ "\".a\"", "\".a\"" },
		{ "\"a..b\"", "\"a..b\"" },
		{ "\"a.\"", "\"a.\"" },
		{ "\"j\xc3\xb6rg\"", "j\xc3\xb6rg" },    /* UTF-8 is atext */
	};
	for (size_t i = 0; i < NELEM(cases); i++) {
		char out[32];
		size_t n = text_local_canon(cases[i].in, strlen(cases[i].in), out,
		                            sizeof(out));
		if (n != strlen(cases[i].want) || strcmp(out, cases[i].want) != 0)
			fail_msg("text_local_canon(%s) = %s (%zu), want %s",
			         cases[i].in, out, n, cases[i].want);
		assert_int_equal(text_local_canon(cases[i].in, strlen(cases[i].in),
		                                  NULL, 0), n);
	}
	char tiny[4] = "XYZ";
	assert_int_equal(text_local_canon("\"john doe\"", 10, tiny, sizeof(tiny)), 10);
	assert_string_equal(tiny, "XYZ");                 /* did not fit: untouched */
}

static void test_list_next(void **state)
{
	(void)state;
	const char *s = " a@b, \"x, y\" <c@d;e>;; e@f ,";
	static const char *const want[] = { "a@b", "\"x, y\" <c@d;e>", "", "e@f", "" };
	size_t pos = 0, b, e, n = 0, len = strlen(s);

	while (text_list_next(s, len, &pos, &b, &e)) {
		assert_true(n < NELEM(want));
		if (e - b != strlen(want[n]) || strncmp(s + b, want[n], e - b) != 0)
			fail_msg("entry %zu: '%.*s', want '%s'", n, (int)(e - b), s + b,
			         want[n]);
		n++;
	}
	assert_int_equal(n, NELEM(want));
	pos = 0;
	assert_true(text_list_next("", 0, &pos, &b, &e));   /* one empty entry */
	assert_int_equal(e - b, 0);
	assert_false(text_list_next("", 0, &pos, &b, &e));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hex_table),
		cmocka_unit_test(test_hex_cap_zero),
		cmocka_unit_test(test_hex_fingerprint_fits),
		cmocka_unit_test(test_utf8_table),
		cmocka_unit_test(test_one_line_table),
		cmocka_unit_test(test_dot_atom_table),
		cmocka_unit_test(test_one_line_in_place_and_edges),
		cmocka_unit_test(test_escape_table),
		cmocka_unit_test(test_mailbox_parse_spans),
		cmocka_unit_test(test_local_canon_table),
		cmocka_unit_test(test_list_next),
		cmocka_unit_test(test_rand_sizes),
		cmocka_unit_test(test_write_all_sizes),
		cmocka_unit_test(test_write_all_pipe),
		cmocka_unit_test(test_write_all_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
