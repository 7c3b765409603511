/* test_smtp_reply.c - the SMTP reply parser (RFC 5321 4.2), RFC 3463
 * enhanced codes, EHLO capability parsing (failure classification: test_verdict). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mail/smtp.h"
#include "mail/smtp_reply.h"

/* Feeds `in` whole, then again byte by byte; both must agree. */
static enum dm_status parse(const char *in, struct smtp_reply *out, size_t *used)
{
	static struct smtp_reply_parser p, q;
	smtp_reply_parser_init(&p);
	bool done = false;
	enum dm_status st = smtp_reply_feed(&p, in, strlen(in), used, &done, NULL);
	smtp_reply_parser_init(&q);
	size_t total = 0, u = 0;
	bool qdone = false;
	enum dm_status qst = DM_OK;
	for (size_t i = 0; i < strlen(in) && !qdone && qst == DM_OK; i++) {
		qst = smtp_reply_feed(&q, in + i, 1, &u, &qdone, NULL);
		total += u;
	}
	assert_int_equal(st, qst);
	if (st == DM_OK) {
		assert_true(done == qdone);
		if (done) {
			assert_int_equal(*used, total);
			assert_int_equal(p.reply.code, q.reply.code);
			assert_string_equal(p.reply.text, q.reply.text);
		} else {
			return DM_ENOTFOUND;   /* incomplete */
		}
	}
	*out = p.reply;
	return st;
}

static void test_replies(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		enum dm_status st;
		int code;
		const char *enh, *text;
		size_t used;
	} cases[] = {
		{ "220 mx ESMTP\r\n", DM_OK, 220, "", "mx ESMTP", 14 },
		{ "250\r\n", DM_OK, 250, "", "", 5 },
		{ "250-a\r\n250-b\r\n250 c\r\n", DM_OK, 250, "", "a\nb\nc", 21 },
		{ "250 2.1.0 Ok\r\nEXTRA", DM_OK, 250, "2.1.0", "Ok", 14 },
		{ "550 5.1.1 no\n", DM_OK, 550, "5.1.1", "no", 13 },
		{ "550 4.1.1 class mismatch\r\n", DM_OK, 550, "", "4.1.1 class mismatch", 26 },
		{ "451 4.7.100 x\r\n", DM_OK, 451, "4.7.100", "x", 15 },
		{ "451 4.7.1000 x\r\n", DM_OK, 451, "", "4.7.1000 x", 16 },
		{ "250-a\r\n", DM_ENOTFOUND, 0, "", "", 0 },
		{ "hello\r\n", DM_EPROTO, 0, "", "", 0 },
		{ "25 x\r\n", DM_EPROTO, 0, "", "", 0 },
		{ "250x\r\n", DM_EPROTO, 0, "", "", 0 },
		{ "650 x\r\n", DM_EPROTO, 0, "", "", 0 },
		{ "190 x\r\n", DM_EPROTO, 0, "", "", 0 },
		{ "250-a\r\n251 b\r\n", DM_EPROTO, 0, "", "", 0 },
		{ "250 a\rb\r\n", DM_EPROTO, 0, "", "", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_reply r;
		size_t used = 0;
		enum dm_status st = parse(cases[i].in, &r, &used);
		if (st != cases[i].st)
			fail_msg("case %zu '%s': status %d, want %d", i, cases[i].in, st,
			         cases[i].st);
		if (st != DM_OK)
			continue;
		assert_int_equal(r.code, cases[i].code);
		assert_string_equal(r.enhanced, cases[i].enh);
		assert_string_equal(r.text, cases[i].text);
		assert_int_equal(used, cases[i].used);
	}
}

static void test_line_cap(void **state)
{
	(void)state;
	char *big = malloc(SMTP_REPLY_LINE_MAX + 16);
	assert_non_null(big);
	memcpy(big, "250 ", 4);
	memset(big + 4, 'x', SMTP_REPLY_LINE_MAX + 4);
	memcpy(big + SMTP_REPLY_LINE_MAX + 8, "\r\n", 3);
	struct smtp_reply_parser p;
	memset(&p, 0, sizeof(p));   /* on_line unset: init keeps it */
	smtp_reply_parser_init(&p);
	size_t used;
	bool done;
	assert_int_equal(smtp_reply_feed(&p, big, strlen(big), &used, &done, NULL),
	                 DM_EPROTO);
	free(big);
	/* too many lines */
	smtp_reply_parser_init(&p);
	enum dm_status st = DM_OK;
	for (int i = 0; i <= SMTP_REPLY_LINES_MAX && st == DM_OK; i++)
		st = smtp_reply_feed(&p, "250-x\r\n", 7, &used, &done, NULL);
	assert_int_equal(st, DM_EPROTO);
}

static void test_caps(void **state)
{
	(void)state;
	struct smtp_reply r;
	size_t used;
	assert_int_equal(parse("250-mx.test hi\r\n250-PIPELINING\r\n250-size 1000\r\n"
	                       "250-8BITMIME\r\n250-SMTPUTF8\r\n250-STARTTLS\r\n"
	                       "250-ENHANCEDSTATUSCODES\r\n250-AUTH plain LOGIN cram-md5\r\n"
	                       "250-AUTH=LOGIN XOAUTH2 bad!name\r\n250-CHUNKING\r\n"
	                       "250 PIPELININGX\r\n", &r, &used), DM_OK);
	struct smtp_caps c;
	smtp_caps_parse(&r, &c);
	assert_true(c.pipelining && c.eightbitmime && c.smtputf8 && c.starttls);
	assert_true(c.enhanced && c.chunking && c.auth && c.size);
	assert_int_equal(c.size_max, 1000);
	assert_string_equal(c.auth_mechs, "PLAIN LOGIN CRAM-MD5 XOAUTH2");
	assert_true(smtp_caps_has_mech(&c, "cram-md5"));
	assert_false(smtp_caps_has_mech(&c, "CRAM"));
	/* first line is the domain, never a keyword */
	assert_int_equal(parse("250-STARTTLS\r\n250 SIZE\r\n", &r, &used), DM_OK);
	smtp_caps_parse(&r, &c);
	assert_false(c.starttls);
	assert_true(c.size);
	assert_int_equal(c.size_max, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replies),
		cmocka_unit_test(test_line_cap),
		cmocka_unit_test(test_caps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
