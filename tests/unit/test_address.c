/* test_address.c - table-driven tests for mail/address (RFC 5322 3.4, RFC 6531). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mail/address.h"

struct valid_case {
	const char *in;
	const char *spec;
	const char *name;
	bool utf8;
	const char *header;      /* address_format() result */
};

static const struct valid_case valid_cases[] = {
	{ "a@b", "a@b", "", false, "a@b" },
	{ "  user@example.com\t ", "user@example.com", "", false, "user@example.com" },
	{ "<user@example.com>", "user@example.com", "", false, "user@example.com" },
	{ "Joe <joe@example.com>", "joe@example.com", "Joe", false,
	  "Joe <joe@example.com>" },
	{ "Joe<joe@example.com>", "joe@example.com", "Joe", false,
	  "Joe <joe@example.com>" },
	{ "  Joe   Bloggs   <joe@example.com>  ", "joe@example.com", "Joe Bloggs",
	  false, "Joe Bloggs <joe@example.com>" },
	{ "\"Last, First\" <lf@example.com>", "lf@example.com", "Last, First",
	  false, "\"Last, First\" <lf@example.com>" },
	{ "John Q. Public <jqp@example.com>", "jqp@example.com", "John Q. Public",
	  false, "\"John Q. Public\" <jqp@example.com>" },
	{ "\"a\\\"b\" <ab@example.com>", "ab@example.com", "a\"b", false,
	  "\"a\\\"b\" <ab@example.com>" },
	{ "\"=?x?=\" <q@example.com>", "q@example.com", "=?x?=", false,
	  "\"=?x?=\" <q@example.com>" },
	{ "\"john doe\"@example.com", "\"john doe\"@example.com", "", false,
	  "\"john doe\"@example.com" },
	{ "\"john\"@example.com", "john@example.com", "", false, "john@example.com" },
	{ "\"a\\\\b\"@example.com", "\"a\\\\b\"@example.com", "", false,
	  "\"a\\\\b\"@example.com" },
	{ "user+tag@sub.example.com", "user+tag@sub.example.com", "", false,
	  "user+tag@sub.example.com" },
	{ "o'brien@example.ie", "o'brien@example.ie", "", false, "o'brien@example.ie" },
	{ "first.last@example.com", "first.last@example.com", "", false,
	  "first.last@example.com" },
	{ "x@localhost", "x@localhost", "", false, "x@localhost" },
	{ "a@x-y.example", "a@x-y.example", "", false, "a@x-y.example" },
	{ "a@[192.0.2.1]", "a@[192.0.2.1]", "", false, "a@[192.0.2.1]" },
	{ "a@[IPv6:2001:db8::1]", "a@[IPv6:2001:db8::1]", "", false,
	  "a@[IPv6:2001:db8::1]" },
	{ "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a",
	  "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a",
	  "", true,
	  "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a" },
	{ "J\xc3\xbcrgen M\xc3\xbcller <jm@example.de>", "jm@example.de",
	  "J\xc3\xbcrgen M\xc3\xbcller", false,
	  "=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.de>" },
	{ "\"M\xc3\xbcller, J\xc3\xbcrgen\" <jm@example.de>", "jm@example.de",
	  "M\xc3\xbcller, J\xc3\xbcrgen", false,
	  "=?UTF-8?Q?M=C3=BCller=2C_J=C3=BCrgen?= <jm@example.de>" },
	{ "\xe5\xb1\xb1\xe7\x94\xb0 <yamada@example.jp>", "yamada@example.jp",
	  "\xe5\xb1\xb1\xe7\x94\xb0", false, "=?UTF-8?B?5bGx55Sw?= <yamada@example.jp>" },
	/* RFC 2047 encoded display names are decoded (and re-encoded) */
	{ "=?UTF-8?Q?J=C3=B6rg?= <j@example.com>", "j@example.com", "J\xc3\xb6rg",
	  false, "=?UTF-8?Q?J=C3=B6rg?= <j@example.com>" },
	{ "=?utf-8?b?5bGx55Sw?=  =?UTF-8?B?5aSq6YOO?= <y@example.jp>", "y@example.jp",
	  "\xe5\xb1\xb1\xe7\x94\xb0\xe5\xa4\xaa\xe9\x83\x8e", false,
	  "=?UTF-8?B?5bGx55Sw5aSq6YOO?= <y@example.jp>" },
	{ "Dr. =?UTF-8?Q?M=C3=BCller?= <m@example.de>", "m@example.de",
	  "Dr. M\xc3\xbcller", false, "=?UTF-8?Q?Dr=2E_M=C3=BCller?= <m@example.de>" },
	/* a word that would decode to a LF stays literal (and is quoted) */
	{ "=?UTF-8?Q?a=0Ab?= <x@example.com>", "x@example.com", "=?UTF-8?Q?a=0Ab?=",
	  false, "\"=?UTF-8?Q?a=0Ab?=\" <x@example.com>" },
	/* spaces that would fold away unquoted keep their quotes */
	{ "\"a  b\" <a@b>", "a@b", "a  b", false, "\"a  b\" <a@b>" },
	{ "\" a\" <a@b>", "a@b", " a", false, "\" a\" <a@b>" },
	{ "\"a \" <a@b>", "a@b", "a ", false, "\"a \" <a@b>" },
	{ "\" \" <a@b>", "a@b", " ", false, "\" \" <a@b>" },
	{ "+ \"\"<lf@e>", "lf@e", "+ ", false, "\"+ \" <lf@e>" },
	{ "=?UTF-8?Q?_M?= <j@e.org>", "j@e.org", " M", false, "\" M\" <j@e.org>" },
	{ "x =?UTF-8?Q?_M?= <j@e.org>", "j@e.org", "x  M", false,
	  "\"x  M\" <j@e.org>" },
	/* a TAB in a quoted display name is kept (and stays quoted) */
	{ "\"a\tb\" <a@b>", "a@b", "a\tb", false, "\"a\tb\" <a@b>" },
	/* local part of exactly 64 octets */
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@b",
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@b", "",
	  false, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@b" },
};

struct invalid_case {
	const char *in;
	const char *fragment;    /* expected in the error message */
};

#define L64 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define D49 "ddddddddddddddddddddddddddddddddddddddddddddddddd"

static const struct invalid_case invalid_cases[] = {
	{ "a@b\r\nBcc: x@y", "contains a CR" },
	{ "a@b\nx", "contains a LF" },
	{ "a\x01@b", "control character 0x01" },
	{ "a@b\x7f", "control character 0x7F" },
	{ "", "has no address" },
	{ "   ", "has no address" },
	{ "ab", "has no '@'" },
	{ "Joe <ab>", "has no '@'" },
	{ "@b", "has an empty local part (before '@')" },
	{ "\"\"@b", "has an empty local part (before '@')" },
	{ "a@", "has an empty domain (after '@')" },
	{ "a@-b.com", "label '-b' starting or ending with '-'" },
	{ "a@b-.com", "label 'b-' starting or ending with '-'" },
	{ "a@b..com", "has an empty label in the domain" },
	{ "a@.b.com", "empty label" },
	{ "a@b.com.", "empty label" },
	{ "a@b_c.com", "has '_' in the domain" },
	{ "a@b c.com", "has a space in the domain" },
	{ "a@" L64 ".com", "longer than 63" },
	{ "\"abc@d", "unbalanced quotes" },
	{ "Joe \"Bloggs <a@b>", "unbalanced quotes" },
	{ "a\"b\"@c", "unbalanced quotes in the local part" },
	{ "Joe <a@b", "'<' without '>'" },
	{ "Joe a@b>", "'>' without '<'" },
	{ "<<a@b>>", "more than one '<'" },
	{ "a" L64 "@b", "longer than 64" },
	/* longer than the spec buffer itself: refused before any copy */
	{ L64 L64 L64 L64 L64 L64 L64 L64 L64 L64 L64 "@b",
	  "has a local part of 704 octets, longer than 64" },
	{ "Joe <" L64 L64 L64 L64 "x@b>", "has a local part of 257 octets" },
	{ L64 "@" D49 "." D49 "." D49 "." D49 ".com", "has an address of 268 octets, longer than 254" },
	{ "john doe@example.com", "has a space in the local part (quote it" },
	{ "a..b@c", "misplaced '.'" },
	{ ".a@c", "misplaced '.'" },
	{ "a.@c", "misplaced '.'" },
	{ "a[b@c", "has '[' in the local part, which is not allowed unquoted" },
	{ "a(comment)@b", "comments '(...)' are not supported" },
	{ "a@b (Joe)", "comments '(...)' are not supported" },
	{ "a@b, c@d", "one address expected" },
	{ "group: a@b;", "group syntax" },
	{ "Joe <a@b> x", "has text after '>'" },
	{ "<>", "has an empty address '<>'" },
	{ "<@relay:a@b>", "has a source route" },
	{ "a@[300.1.1.1]", "has '[300.1.1.1]', which is not a valid address literal" },
	{ "a@[IPv6:zz::1]", "not a valid IPv6" },
	{ "a@[1.2.3.4", "unbalanced '['" },
	{ "\xff@b", "not valid UTF-8" },
	{ "a@b@c", "has '@' in the local part" },
	{ "Joe@home <a@b>", "has '@' in the display name; put the name in double quotes" },
	{ "Joe [x] <a@b>", "has '[' in the display name" },
	/* TAB: fine in a display name, never in the addr-spec (RFC 5321 4.1.2) */
	{ "\"a\tb\"@example.com", "has a TAB in the quoted local part" },
	{ "\"a\\\tb\"@example.com", "has a TAB in the quoted local part" },
	{ "\"jxh2S do\t<`:e\"@o", "has a TAB in the quoted local part" },
	{ "Joe <\"a\tb\"@example.com>", "has a TAB in the quoted local part" },
	{ "a\tb@example.com", "has a space in the local part" },
	{ "a@b\tc.com", "has a space in the domain" },
};

static void test_valid(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
		const struct valid_case *c = &valid_cases[i];
		struct address a;
		struct dm_err err;
		char hdr[ADDRESS_HEADER_MAX];

		dm_err_clear(&err);
		enum dm_status st = address_parse(c->in, &a, &err);
		if (st != DM_OK)
			fail_msg("case %zu '%s': %s", i, c->in, err.msg);
		assert_string_equal(a.spec, c->spec);
		assert_string_equal(a.name, c->name);
		assert_int_equal(address_needs_smtputf8(&a), c->utf8);
		assert_int_equal(address_format(&a, hdr, sizeof(hdr), &err), DM_OK);
		assert_string_equal(hdr, c->header);
		/* the header form parses back to the same addr-spec and name */
		struct address b;
		assert_int_equal(address_parse(hdr, &b, &err), DM_OK);
		assert_string_equal(b.spec, a.spec);
		assert_string_equal(b.name, a.name);
	}
}

static void test_invalid(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(invalid_cases) / sizeof(invalid_cases[0]); i++) {
		const struct invalid_case *c = &invalid_cases[i];
		struct address a;
		struct dm_err err;

		dm_err_clear(&err);
		enum dm_status st = address_parse(c->in, &a, &err);
		if (st != DM_EINVAL)
			fail_msg("case %zu '%s': expected DM_EINVAL, got %d", i, c->in, st);
		if (!strstr(err.msg, c->fragment))
			fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg,
			         c->fragment);
		/* never echo a raw CR/LF back */
		assert_null(strchr(err.msg, '\r'));
		assert_null(strchr(err.msg, '\n'));
	}
}

static void test_list(void **state)
{
	(void)state;
	struct address *list;
	size_t n;
	struct dm_err err;

	dm_err_clear(&err);
	assert_int_equal(address_list_parse("a@b, \"Last, First\" <c@d>; e@f ,",
	                                    &list, &n, &err), DM_OK);
	assert_int_equal(n, 3);
	assert_string_equal(list[0].spec, "a@b");
	assert_string_equal(list[1].spec, "c@d");
	assert_string_equal(list[1].name, "Last, First");
	assert_string_equal(list[2].spec, "e@f");
	address_list_free(list);

	assert_int_equal(address_list_parse(" , ,", &list, &n, &err), DM_OK);
	assert_int_equal(n, 0);
	assert_null(list);
	assert_int_equal(address_list_parse(NULL, &list, &n, &err), DM_OK);
	assert_int_equal(n, 0);

	dm_err_clear(&err);
	assert_int_equal(address_list_parse("a@b, bad, c@d", &list, &n, &err),
	                 DM_EINVAL);
	assert_non_null(strstr(err.msg, "'bad'"));
	assert_non_null(strstr(err.msg, "has no '@'"));
	assert_null(list);

	dm_err_clear(&err);
	assert_int_equal(address_list_parse("a@b, \"open <c@d>", &list, &n, &err),
	                 DM_EINVAL);
	assert_non_null(strstr(err.msg, "unbalanced quotes"));
}

static void test_same(void **state)
{
	(void)state;
	struct address a, b;
	assert_int_equal(address_parse("A@Example.COM", &a, NULL), DM_OK);
	assert_int_equal(address_parse("Someone <A@example.com>", &b, NULL), DM_OK);
	assert_true(address_same(&a, &b));
	assert_int_equal(address_parse("a@example.com", &b, NULL), DM_OK);
	assert_false(address_same(&a, &b));
}

static void test_format_cap(void **state)
{
	(void)state;
	struct address a;
	char small[8];
	struct dm_err err;

	dm_err_clear(&err);
	assert_int_equal(address_parse("Joe <joe@example.com>", &a, NULL), DM_OK);
	assert_int_equal(address_format(&a, small, sizeof(small), &err), DM_ENOMEM);
	assert_true(err.msg[0] != '\0');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_same),
		cmocka_unit_test(test_format_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
