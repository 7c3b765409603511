/*
 * test_daemon_parts.c - the pure parts of devmaild: the clock watch's
 * schedule, the boot line and boot mail text (from a fixed boot_info), the
 * boot mail queued from the registry (and refused without a recipient),
 * (the dialogue of failed messages: tests/unit/test_dialogue.c).
 * The daemon as a process is tested by tests/daemon/test_*.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/registry.h"
#include "daemon/boot.h"
#include "daemon/clockwatch.h"
#include "mail/outbox.h"
#include "testroot.h"

/* ---- clock watch ------------------------------------------------------------ */

static void test_clock_schedule(void **state)
{
	(void)state;
	long want[] = { 60, 120, 240, 480, 960, 960, 960 };
	long cur = 0;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		cur = clockwatch_next_interval(0, cur);
		assert_int_equal(cur, want[i]);
	}
	/* unknown behaves as unsynchronised */
	assert_int_equal(clockwatch_next_interval(-1, 0), CLOCKWATCH_FIRST);
	/* synchronised: once an hour, whatever came before */
	assert_int_equal(clockwatch_next_interval(1, 0), CLOCKWATCH_SYNCED);
	assert_int_equal(clockwatch_next_interval(1, 960), CLOCKWATCH_SYNCED);
	/* the first look within 30 min: 1, 3, 7, 15 min */
	long t = 0, looks = 0;
	cur = 0;
	while (t < 1800) {
		cur = clockwatch_next_interval(0, cur);
		t += cur;
		looks += t < 1800;
	}
	assert_int_equal(looks, 4);
	assert_string_equal(clockwatch_state_str(1), "synchronised (NTP)");
	assert_string_equal(clockwatch_state_str(0), "not synchronised");
}

/* ---- boot text ---------------------------------------------------------------- */

static void fixed_info(struct boot_info *bi)
{
	memset(bi, 0, sizeof(*bi));
	snprintf(bi->host, sizeof(bi->host), "boiler-room");
	snprintf(bi->version, sizeof(bi->version), "9.8.7");
	bi->pid = 4242;
	bi->started = 1718092800;          /* 2024-06-11 08:00:00 UTC */
	bi->uptime = 3 * 86400 + 4 * 3600 + 5 * 60 + 6;
	struct netinfo_addr lo = { "lo", "127.0.0.1", 8, false, true };
	struct netinfo_addr e4 = { "eth0", "192.0.2.7", 24, false, true };
	struct netinfo_addr e6 = { "eth0", "2001:db8::7", 64, true, true };
	struct netinfo_addr down = { "eth1", "198.51.100.1", 24, false, false };
	bi->ni.addrs[0] = lo;
	bi->ni.addrs[1] = e4;
	bi->ni.addrs[2] = e6;
	bi->ni.addrs[3] = down;
	bi->ni.n_addrs = 4;
	snprintf(bi->ni.gateways[0], sizeof(bi->ni.gateways[0]), "192.0.2.1 (eth0)");
	bi->ni.n_gateways = 1;
	snprintf(bi->ni.dns[0], sizeof(bi->ni.dns[0]), "192.0.2.53");
	snprintf(bi->ni.dns[1], sizeof(bi->ni.dns[1]), "192.0.2.54");
	bi->ni.n_dns = 2;
	bi->ni.clock_synced = 1;
}

static void test_boot_text(void **state)
{
	struct boot_info bi;
	char line[2048], body[BOOT_BODY_MAX], subj[300], addrs[512];
	(void)state;

	fixed_info(&bi);
	boot_addresses(&bi, ", ", addrs, sizeof(addrs));
	/* loopback and interfaces that are down are left out */
	assert_string_equal(addrs, "eth0 192.0.2.7/24, eth0 2001:db8::7/64");
	boot_log_line(&bi, line, sizeof(line));
	assert_string_equal(line, "devmail 9.8.7 started on boiler-room (pid 4242); "
	                    "addresses eth0 192.0.2.7/24, eth0 2001:db8::7/64; "
	                    "gateway 192.0.2.1 (eth0); DNS 192.0.2.53, 192.0.2.54; "
	                    "clock synchronised (NTP)");
	boot_mail_subject(&bi, subj, sizeof(subj));
	assert_string_equal(subj, "boiler-room booted");
	size_t n = boot_mail_body(&bi, body, sizeof(body));
	assert_int_equal(n, strlen(body));
	assert_true(strncmp(body, "boiler-room booted.\n\n", 21) == 0);
	assert_non_null(strstr(body, "\nHost name:    boiler-room\n"));
	assert_non_null(strstr(body, "\ndevmail:      9.8.7 (devmaild, pid 4242)\n"));
	assert_non_null(strstr(body, "\nBoot time:    2024-06-11 "));
	assert_non_null(strstr(body, "\nUptime:       3 days 04:05:06 (machine up since "));
	assert_non_null(strstr(body, "\nAddresses:    eth0 192.0.2.7/24\n"
	                             "              eth0 2001:db8::7/64\n"));
	assert_non_null(strstr(body, "\nGateway:      192.0.2.1 (eth0)\n"));
	assert_non_null(strstr(body, "\nDNS servers:  192.0.2.53, 192.0.2.54\n"));
	assert_non_null(strstr(body, "\nClock:        synchronised (NTP)\n"));
	assert_null(strstr(body, "may be wrong"));

	/* Nothing but loopback; no gateway, no DNS; clock not synchronised. */
	bi.ni.n_addrs = 1;
	bi.ni.n_gateways = 0;
	bi.ni.n_dns = 0;
	bi.ni.clock_synced = 0;
	bi.uptime = 59;
	boot_mail_body(&bi, body, sizeof(body));
	assert_non_null(strstr(body, "\nAddresses:    lo 127.0.0.1/8\n"));
	assert_non_null(strstr(body, "\nGateway:      none\n"));
	assert_non_null(strstr(body, "\nDNS servers:  none\n"));
	assert_non_null(strstr(body, "\nUptime:       00:00:59 "));
	assert_non_null(strstr(body, "\nClock:        not synchronised\n"));
	assert_non_null(strstr(body, "may be wrong"));
	bi.ni.n_addrs = 0;
	boot_addresses(&bi, ", ", addrs, sizeof(addrs));
	assert_string_equal(addrs, "none");

	/* A small buffer cuts, never overruns. */
	char tiny[40];
	assert_int_equal(boot_mail_body(&bi, tiny, sizeof(tiny)), sizeof(tiny) - 1);
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
}

static int reg_setup(void **state) { return testroot_reg_setup(state, "bootmail"); }
static int reg_teardown(void **state) { return testroot_reg_teardown(state); }

static void test_boot_mail_queue(void **state)
{
	struct testroot_reg *t = *state;
	struct boot_info bi;
	char id[OUTBOX_ID_MAX], path[512];
	struct dm_err err;

	fixed_info(&bi);
	assert_int_equal(registry_set(t->reg, "Email/FromAddress", "unit@example.com",
	                              NULL, NULL), DM_OK);
	dm_err_clear(&err);
	assert_int_equal(boot_mail_queue(t->root, t->reg, &bi, id, &err), DM_ECONFIG);
	assert_non_null(strstr(err.msg, "Email/ToAddress"));
	assert_string_equal(id, "");

	assert_int_equal(registry_set(t->reg, "Email/ToAddress",
	                              "ops@example.com, boss@example.com", NULL, NULL),
	                 DM_OK);
	dm_err_clear(&err);
	assert_int_equal(boot_mail_queue(t->root, t->reg, &bi, id, &err), DM_OK);
	snprintf(path, sizeof(path), "%s/spool/queue/%s/msg", t->root, id);
	char *msg = testroot_slurp(path, NULL);
	assert_non_null(msg);
	assert_non_null(strstr(msg, "\r\nSubject: boiler-room booted\r\n"));
	assert_non_null(strstr(msg, "From: unit@example.com\r\n"));
	assert_non_null(strstr(msg, "\r\nHost name:    boiler-room\r\n"));
	free(msg);
	snprintf(path, sizeof(path), "%s/spool/queue/%s/env", t->root, id);
	char *env = testroot_slurp(path, NULL);
	assert_non_null(env);
	assert_non_null(strstr(env, "\nrcpt ops@example.com\nrcpt boss@example.com\n"));
	free(env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clock_schedule),
		cmocka_unit_test(test_boot_text),
		cmocka_unit_test_setup_teardown(test_boot_mail_queue, reg_setup, reg_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
