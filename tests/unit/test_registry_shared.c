/*
 * test_registry_shared.c - two registry handles in one process (devmaild:
 * one per thread) keep seeing what other processes commit.
 *
 * Regression: registry_open() used to open and close registry.db itself
 * before SQLite did.  Closing any descriptor of a file drops every POSIX
 * lock the process holds on it, so the second open in a process dropped
 * the first connection's locks; the next writer process to close then
 * believed it was the last connection, deleted the WAL and shared-memory
 * files, and the first connection read a stale snapshot forever (the
 * daemon missed every later REG change).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/registry.h"
#include "testroot.h"

static int setup(void **state) { return testroot_reg_setup(state, "regshared"); }
static int teardown(void **state) { return testroot_reg_teardown(state); }

/* Another process (regtool, exec'd: a forked child would share SQLite's
 * in-memory lock table with us) sets key = value and closes its handle. */
static void write_elsewhere(const char *root, const char *key, const char *value)
{
	const char *build = getenv("DEVMAIL_BUILD_DIR");
	char tool[1024];
	snprintf(tool, sizeof(tool), "%s/regtool", build && *build ? build : ".");
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, 1);
		execl(tool, "regtool", root, "set", key, value, (char *)NULL);
		_exit(127);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("%s set %s failed (status %d)", tool, key, st);
}

static void test_second_handle_keeps_seeing_changes(void **state)
{
	struct testroot_reg *t = *state;
	struct registry *b = NULL;
	char v[REG_VALUE_MAX];
	const char *hosts[] = { "a.example", "b.example", "c.example" };

	/* t->reg is the first handle; this is the second, same process. */
	assert_int_equal(registry_open(t->root, &b, NULL), DM_OK);
	uint64_t c0 = registry_change_counter(t->reg);
	for (size_t i = 0; i < 3; i++) {
		write_elsewhere(t->root, "Email/MailHost", hosts[i]);
		assert_int_equal(registry_change_counter(t->reg), c0 + i + 1);
		assert_int_equal(registry_get(t->reg, "Email/MailHost", v, sizeof(v),
		                              NULL, NULL), DM_OK);
		assert_string_equal(v, hosts[i]);
		assert_int_equal(registry_get(b, "Email/MailHost", v, sizeof(v),
		                              NULL, NULL), DM_OK);
		assert_string_equal(v, hosts[i]);
	}
	registry_close(b);
	/* Closing the second handle does not blind the first either. */
	write_elsewhere(t->root, "Email/MailHost", "d.example");
	assert_int_equal(registry_get(t->reg, "Email/MailHost", v, sizeof(v),
	                              NULL, NULL), DM_OK);
	assert_string_equal(v, "d.example");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_second_handle_keeps_seeing_changes,
		                                setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
