/*
 * test_daemon_parts.c - the pure parts of devmaild: the clock watch's
 * schedule, the boot line and boot mail text (from a fixed boot_info), the
 * boot mail queued from the registry (and refused without a recipient),
 * and the attribution of a run's SMTP transcript to failed messages.
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
#include "mail/dialogue.h"
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

/* ---- dialogue attribution ----------------------------------------------------- */

static void feed(struct dialogue *d, const char *const *lines, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *l = lines[i];
		enum smtp_dir dir = l[0] == '>' ? SMTP_DIR_CLIENT :
		                    l[0] == '<' ? SMTP_DIR_SERVER : SMTP_DIR_INFO;
		dialogue_line(d, dir, l + 2);
	}
}

static bool has_line(const char **got, size_t n, const char *want)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(got[i], want) == 0)
			return true;
	return false;
}

static void test_dialogue_attribution(void **state)
{
	struct dialogue *d = dialogue_new();
	const char *got[DIALOGUE_SNAP_LINES];
	(void)state;

	assert_non_null(d);
	static const char *const run[] = {
		"< 220 mx ESMTP",
		"> EHLO unit",
		"< 250 mx",
		"> MAIL FROM:<a@x>",
		"< 250 ok",
		"> RCPT TO:<nobody@x>",
		"< 550 5.1.1 No such user",
		"- message 1 not sent: recipient refused",
		"> RSET",
		"< 250 ok",
		"> MAIL FROM:<a@x>",
		"< 250 ok",
		"> RCPT TO:<ok@x>",
		"< 250 ok",
		"- message 2 accepted",
		"> MAIL FROM:<a@x>",
		"> RCPT TO:<big@x>",
		"< 552 5.3.4 too big",
		"- message 3 not sent: message too big",
	};
	feed(d, run, sizeof(run) / sizeof(run[0]));
	/* In report order: message 1, then message 3. */
	size_t n = dialogue_for_failure(d, "recipient refused", got,
	                                DIALOGUE_SNAP_LINES);
	assert_true(n >= 3);
	assert_string_equal(got[n - 1], "--- message 1 not sent: recipient refused");
	assert_true(has_line(got, n, "<<< 550 5.1.1 No such user"));
	assert_false(has_line(got, n, "<<< 552 5.3.4 too big"));
	n = dialogue_for_failure(d, "message too big", got, DIALOGUE_SNAP_LINES);
	assert_string_equal(got[n - 1], "--- message 3 not sent: message too big");
	assert_true(has_line(got, n, "<<< 552 5.3.4 too big"));
	/* The same diagnosis twice is handed out in order, once each. */
	dialogue_reset(d);
	static const char *const twice[] = {
		"> RCPT TO:<one@x>", "< 550 no one",
		"- message 1 not sent: recipient refused",
		"> RCPT TO:<two@x>", "< 550 no two",
		"- message 2 not sent: recipient refused",
	};
	feed(d, twice, 6);
	n = dialogue_for_failure(d, "recipient refused", got, 4);
	assert_true(has_line(got, n, "<<< 550 no one"));
	assert_false(has_line(got, n, "<<< 550 no two"));
	n = dialogue_for_failure(d, "recipient refused", got, 4);
	assert_true(has_line(got, n, "<<< 550 no two"));
	/* max limits to the last lines. */
	assert_int_equal(n, 4);
	assert_string_equal(got[3], "--- message 2 not sent: recipient refused");

	/* A session failure: every message (expired ones) gets its lines. */
	dialogue_reset(d);
	static const char *const sess[] = {
		"- connecting to 127.0.0.1:25",
		"- error: connect to 127.0.0.1:25: Connection refused",
	};
	feed(d, sess, 2);
	for (int k = 0; k < 2; k++) {
		n = dialogue_for_failure(d, "something else", got, DIALOGUE_SNAP_LINES);
		assert_int_equal(n, 2);
		assert_string_equal(got[1], "--- error: connect to 127.0.0.1:25: "
		                    "Connection refused");
	}

	/* No note at all: the tail of the run; nothing at all: no lines. */
	dialogue_reset(d);
	assert_int_equal(dialogue_for_failure(d, "x", got, DIALOGUE_SNAP_LINES), 0);
	for (int i = 0; i < 100; i++) {
		char l[32];
		snprintf(l, sizeof(l), "< 250 line %d", i);
		feed(d, (const char *const[]){ l }, 1);
	}
	n = dialogue_for_failure(d, "x", got, DIALOGUE_SNAP_LINES);
	assert_int_equal(n, DIALOGUE_SNAP_LINES);
	assert_string_equal(got[n - 1], "<<< 250 line 99");
	assert_string_equal(got[0], "<<< 250 line 84");

	/* A very long line is cut to what the outbox keeps. */
	char *big = malloc(5000);
	assert_non_null(big);
	memset(big, 'y', 4999);
	big[4999] = '\0';
	dialogue_line(d, SMTP_DIR_SERVER, big);
	n = dialogue_for_failure(d, "x", got, 1);
	assert_int_equal(strlen(got[0]), OUTBOX_DIALOGUE_LINE_MAX - 1);
	free(big);

	/* More notes than snapshots: no crash, later ones use the tail. */
	dialogue_reset(d);
	for (int i = 0; i < DIALOGUE_SNAPS + 20; i++)
		feed(d, (const char *const[]){ "- message 1 not sent: r" }, 1);
	for (int i = 0; i < DIALOGUE_SNAPS + 20; i++)
		assert_true(dialogue_for_failure(d, "r", got, DIALOGUE_SNAP_LINES) > 0);
	dialogue_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clock_schedule),
		cmocka_unit_test(test_boot_text),
		cmocka_unit_test_setup_teardown(test_boot_mail_queue, reg_setup, reg_teardown),
		cmocka_unit_test(test_dialogue_attribution),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
