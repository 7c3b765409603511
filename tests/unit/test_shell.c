/* test_shell.c - commands run through the dispatcher against a real registry
 * in a temporary data root; output captured with open_memstream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/log.h"
#include "core/paths.h"
#include "core/registry.h"
#include "core/vault.h"
#include "shell/shell.h"
#include "testroot.h"

struct fx {
	char root[256];
	struct shell *sh;
	char *out;      /* output of the last run */
	char *err;
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_non_null(testroot_make("test-shell", f->root, sizeof(f->root)));
	struct shell_settings s = { .root = f->root, .out = stdout, .err = stderr };
	assert_int_equal(shell_new(&s, &f->sh, NULL), DM_OK);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	shell_free(f->sh);
	free(f->out);
	free(f->err);
	assert_int_equal(testroot_remove(f->root), 0);
	free(f);
	return 0;
}

/* Runs one console line; f->out / f->err hold what it printed. */
static int run(struct fx *f, const char *line)
{
	size_t n1, n2;
	free(f->out);
	free(f->err);
	FILE *o = open_memstream(&f->out, &n1);
	FILE *e = open_memstream(&f->err, &n2);
	assert_non_null(o);
	assert_non_null(e);
	shell_set_streams(f->sh, o, e);
	int rc = shell_run_line(f->sh, line);
	shell_set_streams(f->sh, stdout, stderr);
	fclose(o);
	fclose(e);
	print_message("> %s  [rc %d]\n%s%s", line, rc, f->out, f->err);
	return rc;
}

static void assert_has(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("expected [%s] in:\n%s", needle, hay);
}

static void assert_lacks(const char *hay, const char *needle)
{
	if (strstr(hay, needle))
		fail_msg("did not expect [%s] in:\n%s", needle, hay);
}

static void test_help(void **state)
{
	struct fx *f = *state;

	assert_int_equal(run(f, "HELP"), 0);
	assert_has(f->out, "  HELP ");
	assert_has(f->out, "  REG ");
	assert_has(f->out, "  LOG ");
	assert_string_equal(f->err, "");

	assert_int_equal(run(f, "help reg"), 0);
	assert_true(strncmp(f->out, "REG [-a] [SECTION | KEY] [= VALUE]\nOptions:\n", 44) == 0);
	assert_has(f->out, "-d KEY");
	assert_has(f->out, "Sealed keys");

	assert_int_equal(run(f, "HELP Email/Port"), 0);
	assert_true(strncmp(f->out, "NAME\n    Email/Port - ", 22) == 0);
	assert_has(f->out, "\nDEFAULT\n    25\n");
	assert_has(f->out, "\nDESCRIPTION\n    ");
	assert_has(f->out, "integer 1-65535");
	assert_has(f->out, "\nSEE ALSO\n    ");

	assert_int_equal(run(f, "HELP email/password"), 0);
	assert_has(f->out, "NAME\n    Email/Password");
	assert_has(f->out, "IPCONFIG");

	assert_int_equal(run(f, "HELP Email"), 0);
	assert_has(f->out, "Email/StartTLS");

	assert_int_equal(run(f, "HELP NoSuchThing"), 64);
	assert_has(f->err, "HELP: no help topic 'NoSuchThing'");
	assert_string_equal(f->out, "");
	assert_int_equal(run(f, "HELP Email/NoSuchKey"), 64);
	assert_int_equal(run(f, "HELP REG LOG"), 64);
	assert_has(f->err, "usage: HELP");
}

static void test_reg_set_get(void **state)
{
	struct fx *f = *state;

	assert_int_equal(run(f, "REG"), 0);
	assert_has(f->out, "no keys set");

	assert_int_equal(run(f, "REG Email/Port = 587"), 0);
	assert_string_equal(f->out, "Email/Port = 587\n");
	assert_int_equal(run(f, "reg email/port"), 0);
	assert_string_equal(f->out, "Email/Port = 587   [set; default 25]\n");
	assert_int_equal(run(f, "REG Email/Port=465"), 0);
	assert_string_equal(f->out, "Email/Port = 465\n");
	assert_int_equal(run(f, "REG Email/SMTPS = ON"), 0);
	assert_string_equal(f->out, "Email/SMTPS = true\n");
	assert_int_equal(run(f, "REG Email/MailHost=mail.example.com"), 0);

	assert_int_equal(run(f, "REG"), 0);
	assert_has(f->out, "Email/Port = 465\n");
	assert_has(f->out, "Email/MailHost = mail.example.com\n");
	assert_lacks(f->out, "StartTLS");

	assert_int_equal(run(f, "REG -a"), 0);
	assert_has(f->out, "Email/StartTLS = true   [default]\n");
	assert_has(f->out, "Email/Port = 465   [set; default 25]\n");
	assert_has(f->out, "Email/Password =    [not set]\n");

	assert_int_equal(run(f, "REG Email"), 0);
	assert_has(f->out, "Email/Port = 465");
	assert_int_equal(run(f, "REG Events"), 0);
	assert_has(f->out, "no keys set in section Events");

	/* The value is really in the registry, not just printed. */
	struct registry *reg;
	char v[64];
	bool set = false;
	assert_int_equal(registry_open(f->root, &reg, NULL), DM_OK);
	assert_int_equal(registry_get(reg, "Email/Port", v, sizeof(v), &set, NULL), DM_OK);
	assert_string_equal(v, "465");
	assert_true(set);
	registry_close(reg);

	/* Changes are logged. */
	assert_int_equal(run(f, "LOG -n 3"), 0);
	assert_has(f->out, "REG: Email/Port set to '465'");
	assert_has(f->out, "REG: Email/MailHost set to 'mail.example.com'");
}

static void test_reg_bad_value_changes_nothing(void **state)
{
	struct fx *f = *state;

	assert_int_equal(run(f, "REG Email/Port = 587"), 0);
	assert_int_equal(run(f, "LOG"), 0);
	char *log_before = strdup(f->out);

	assert_int_equal(run(f, "REG Email/Port = 70000"), 65);
	assert_string_equal(f->out, "");
	assert_true(strncmp(f->err, "REG: ", 5) == 0);
	assert_has(f->err, "Email/Port");
	assert_has(f->err, "70000");
	assert_has(f->err, "1-65535");
	assert_int_equal(run(f, "REG Email/SMTPS = maybe"), 65);
	assert_has(f->err, "maybe");
	assert_int_equal(run(f, "REG bad name = 1"), 64);

	assert_int_equal(run(f, "REG Email/Port"), 0);
	assert_string_equal(f->out, "Email/Port = 587   [set; default 25]\n");
	assert_int_equal(run(f, "REG Email/SMTPS"), 0);
	assert_string_equal(f->out, "Email/SMTPS = false   [default]\n");
	/* Nothing logged for refused changes. */
	assert_int_equal(run(f, "LOG"), 0);
	assert_string_equal(f->out, log_before);
	free(log_before);
}

static void test_reg_sealed(void **state)
{
	struct fx *f = *state;

	assert_int_equal(run(f, "REG Email/Password = hunter2"), 77);
	assert_has(f->err, "REG: Email/Password is sealed");
	assert_has(f->err, "IPCONFIG");
	assert_lacks(f->err, "hunter2");
	assert_int_equal(run(f, "REG Email/Password"), 0);
	assert_string_equal(f->out, "Email/Password =    [not set]\n");

	/* Stored the way IPCONFIG will: sealed by the vault. */
	struct registry *reg;
	char *sealed = NULL;
	assert_int_equal(shell_registry(f->sh, &reg, NULL), DM_OK);
	assert_int_equal(vault_seal(f->root, "s3cret", 6, &sealed, NULL), DM_OK);
	struct registry_pair p = { "Email/Password", sealed };
	assert_int_equal(registry_set_batch(reg, &p, 1, true, NULL), DM_OK);

	assert_int_equal(run(f, "REG Email/Password"), 0);
	assert_string_equal(f->out, "Email/Password = <sealed>   [set; default none]\n");
	assert_int_equal(run(f, "REG"), 0);
	assert_has(f->out, "Email/Password = <sealed>\n");
	assert_lacks(f->out, VAULT_PREFIX);
	assert_lacks(f->out, "s3cret");
	assert_int_equal(run(f, "REG -a Email"), 0);
	assert_lacks(f->out, VAULT_PREFIX);
	free(sealed);
}

static void test_reg_unknown_key(void **state)
{
	struct fx *f = *state;

	assert_int_equal(run(f, "REG Custom/Thing = hello world"), 0);
	assert_string_equal(f->out, "Custom/Thing = hello world   [unknown key, stored as text]\n");
	assert_int_equal(run(f, "REG Custom/Thing"), 0);
	assert_has(f->out, "Custom/Thing = hello world   [unknown key]\n");
	assert_int_equal(run(f, "REG Email/Prot"), 65);
	assert_has(f->err, "REG: Email/Prot: unknown key");
}

static void test_reg_delete(void **state)
{
	struct fx *f = *state;

	assert_int_equal(run(f, "REG Email/Port = 587"), 0);
	assert_int_equal(run(f, "REG -d email/port"), 0);
	assert_string_equal(f->out, "Email/Port deleted (reads as its default, 25)\n");
	assert_int_equal(run(f, "REG Email/Port"), 0);
	assert_string_equal(f->out, "Email/Port = 25   [default]\n");

	assert_int_equal(run(f, "REG Email/Port = 465"), 0);
	assert_int_equal(run(f, "REG Email/Port ="), 0);
	assert_has(f->out, "Email/Port deleted");
	assert_int_equal(run(f, "REG Email/Port"), 0);
	assert_string_equal(f->out, "Email/Port = 25   [default]\n");

	assert_int_equal(run(f, "LOG -n 1"), 0);
	assert_has(f->out, "REG: Email/Port deleted");
}

static void test_reg_export_import(void **state)
{
	struct fx *f = *state;
	char line[600], file[400];

	snprintf(file, sizeof(file), "%s/saved.ini", f->root);
	assert_int_equal(run(f, "REG Email/Port = 587"), 0);
	assert_int_equal(run(f, "REG Email/MailHost = smtp.example.org"), 0);
	snprintf(line, sizeof(line), "REG -x %s", file);
	assert_int_equal(run(f, line), 0);
	assert_has(f->out, "exported");
	assert_int_equal(access(file, R_OK), 0);

	assert_int_equal(run(f, "REG -d Email/Port"), 0);
	assert_int_equal(run(f, "REG -d Email/MailHost"), 0);
	assert_int_equal(run(f, "REG"), 0);
	assert_has(f->out, "no keys set");

	snprintf(line, sizeof(line), "REG -i %s", file);
	assert_int_equal(run(f, line), 0);
	assert_has(f->out, "imported");
	assert_int_equal(run(f, "REG"), 0);
	assert_has(f->out, "Email/Port = 587\n");
	assert_has(f->out, "Email/MailHost = smtp.example.org\n");

	/* Missing file: 66; bad file: 65 and nothing changes. */
	snprintf(line, sizeof(line), "REG -i %s/missing.ini", f->root);
	assert_int_equal(run(f, line), 66);
	assert_has(f->err, "REG: ");
	assert_has(f->err, "missing.ini");

	char bad[400];
	snprintf(bad, sizeof(bad), "%s/bad.ini", f->root);
	assert_int_equal(testroot_write(bad, "[Email]\nMailHost = other.example.org\n"
	                                     "Port = 99999\n"), 0);
	snprintf(line, sizeof(line), "REG -i %s", bad);
	assert_int_equal(run(f, line), 65);
	assert_has(f->err, "99999");
	assert_int_equal(run(f, "REG"), 0);
	assert_has(f->out, "Email/Port = 587\n");
	assert_has(f->out, "Email/MailHost = smtp.example.org\n");
}

static void test_usage_errors(void **state)
{
	struct fx *f = *state;

	assert_int_equal(run(f, "REG -z"), 64);
	assert_string_equal(f->err, "REG: unknown option -z\n");
	assert_int_equal(run(f, "REG --bogus"), 64);
	assert_has(f->err, "unknown option --bogus");
	assert_int_equal(run(f, "REG -d"), 64);
	assert_has(f->err, "needs a value");
	assert_int_equal(run(f, "REG -a -a"), 64);
	assert_has(f->err, "given twice");
	assert_int_equal(run(f, "REG -d Email/Port -x f"), 64);
	assert_int_equal(run(f, "REG Email Port"), 64);
	assert_int_equal(run(f, "REG = 5"), 64);
	assert_int_equal(run(f, "LOG -n"), 64);
	assert_int_equal(run(f, "LOG -n abc"), 64);
	assert_has(f->err, "LOG: -n: 'abc'");
	assert_int_equal(run(f, "LOG -n 0"), 64);
	assert_int_equal(run(f, "LOG extra"), 64);
	assert_int_equal(run(f, "FROB"), 64);
	assert_has(f->err, "unknown command 'FROB'");
	assert_int_equal(run(f, "REG 'unterminated"), 64);
	assert_has(f->err, "unterminated single quote");
	assert_int_equal(run(f, "   "), 0);
	assert_int_equal(run(f, "# a comment"), 0);
	assert_string_equal(f->out, "");
}

static void test_log(void **state)
{
	struct fx *f = *state;

	assert_int_equal(run(f, "LOG"), 0);
	assert_string_equal(f->out, "the system log is empty\n");
	for (int i = 0; i < 30; i++)
		assert_int_equal(log_write(f->root, 0, NULL, "line %d", i), DM_OK);
	assert_int_equal(run(f, "LOG"), 0);
	int lines = 0;
	for (const char *p = f->out; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 20);
	assert_has(f->out, "line 10\n");
	assert_lacks(f->out, "line 9\n");
	assert_int_equal(run(f, "log -N2"), 0);
	assert_lacks(f->out, "line 27\n");
	assert_has(f->out, "line 28\n");
	assert_has(f->out, "line 29\n");
}

static void test_argv_and_exit(void **state)
{
	struct fx *f = *state;
	char *const set[] = { "reg", "Email/Port=2525", NULL };
	char *const get[] = { "REG", "Email/Port", NULL };

	FILE *devnull = fopen("/dev/null", "w");
	assert_non_null(devnull);
	shell_set_streams(f->sh, devnull, devnull);
	assert_int_equal(shell_run_argv(f->sh, 2, set), 0);
	assert_int_equal(shell_run_argv(f->sh, 2, get), 0);
	char *const bad[] = { "NOPE", NULL };
	assert_int_equal(shell_run_argv(f->sh, 1, bad), 64);
	shell_set_streams(f->sh, stdout, stderr);
	fclose(devnull);
	assert_int_equal(run(f, "REG Email/Port"), 0);
	assert_has(f->out, "Email/Port = 2525");

	assert_false(shell_exit_requested(f->sh));
	assert_int_equal(run(f, "exit now"), 64);
	assert_false(shell_exit_requested(f->sh));
	assert_int_equal(run(f, "Quit"), 0);
	assert_true(shell_exit_requested(f->sh));
}

static void test_prompt(void **state)
{
	struct fx *f = *state;
	char buf[300];

	assert_int_equal(run(f, "REG IpConfig/HostName = jnior-7"), 0);
	assert_string_equal(shell_prompt(f->sh, buf, sizeof(buf)), "jnior-7 /> ");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
		T(test_help),
		T(test_reg_set_get),
		T(test_reg_bad_value_changes_nothing),
		T(test_reg_sealed),
		T(test_reg_unknown_key),
		T(test_reg_delete),
		T(test_reg_export_import),
		T(test_usage_errors),
		T(test_log),
		T(test_argv_and_exit),
		T(test_prompt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
