/* test_netinfo.c - IPCONFIG's network facts: prefix lengths, resolv.conf,
 * and the live loopback interface. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/netinfo.h"

static void test_prefix_len(void **state)
{
	(void)state;
	static const struct { unsigned char m[4]; unsigned want; } cases[] = {
		{ { 255, 255, 255, 0 }, 24 },
		{ { 255, 0, 0, 0 }, 8 },
		{ { 255, 255, 255, 255 }, 32 },
		{ { 0, 0, 0, 0 }, 0 },
		{ { 255, 255, 240, 0 }, 20 },
		{ { 255, 255, 255, 252 }, 30 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(netinfo_prefix_len(cases[i].m, 4), cases[i].want);
	unsigned char v6[16] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	assert_int_equal(netinfo_prefix_len(v6, 16), 64);
}

static void test_resolv_parse(void **state)
{
	(void)state;
	char out[8][64];
	const char *text =
		"# comment\nsearch example.com\nnameserver 10.0.0.53\n"
		"  nameserver   2001:db8::53  \noptions ndots:2\nnameserver 1.1.1.1";
	size_t n = netinfo_parse_resolv(text, out, 8);
	assert_int_equal(n, 3);
	assert_string_equal(out[0], "10.0.0.53");
	assert_string_equal(out[1], "2001:db8::53");
	assert_string_equal(out[2], "1.1.1.1");
	assert_int_equal(netinfo_parse_resolv(text, out, 1), 1);
}

static void test_live_loopback(void **state)
{
	(void)state;
	struct netinfo ni;
	struct dm_err err;
	dm_err_clear(&err);
	char path[] = "/tmp/dm-resolv-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	fputs("nameserver 192.0.2.53\n", f);
	fclose(f);
	assert_int_equal(netinfo_read(&ni, path, &err), DM_OK);
	remove(path);
	assert_true(ni.hostname[0] != '\0');
	int found = 0;
	for (size_t i = 0; i < ni.n_addrs; i++)
		if (strcmp(ni.addrs[i].addr, "127.0.0.1") == 0 && ni.addrs[i].prefix == 8)
			found = 1;
	assert_true(found);
	assert_int_equal(ni.n_dns, 1);
	assert_string_equal(ni.dns[0], "192.0.2.53");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prefix_len),
		cmocka_unit_test(test_resolv_parse),
		cmocka_unit_test(test_live_loopback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
