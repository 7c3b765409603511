/* test_shell.c - commands run through the dispatcher against a real registry
 * in a temporary data root, reading and writing through a memory shell_io
 * (shell/io.h): output captured, input (answers, secrets, a message body)
 * from a buffer.  The IPCONFIG, SENDMAIL and interrupt cases prove the seam
 * is real: no terminal, no stdin, no signal is involved.  The OUTBOX case
 * makes failed messages through the outbox itself (a 550 from a fake
 * deliverer, a dialogue stored with outbox_dialogue_save()) and drives
 * -f ID, -R ID, -r, -d with whole ids, prefixes, ambiguous and unknown
 * ones. */
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

#include <errno.h>

#include "core/log.h"
#include "core/paths.h"
#include "core/registry.h"
#include "core/vault.h"
#include "mail/outbox.h"
#include "shell/io.h"
#include "shell/shell.h"
#include "testroot.h"

struct fx {
	char root[256];
	struct shell *sh;
	struct shell_io *io;   /* memory, no input: the default for run() */
	char *out;      /* output of the last run */
	char *err;
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_non_null(testroot_make("test-shell", f->root, sizeof(f->root)));
	assert_int_equal(shell_io_mem_new(&(struct shell_io_mem_settings){ 0 },
	                                  &f->io, NULL), DM_OK);
	struct shell_settings s = { .root = f->root, .io = f->io };
	assert_int_equal(shell_new(&s, &f->sh, NULL), DM_OK);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	shell_free(f->sh);
	shell_io_mem_free(f->io);
	free(f->out);
	free(f->err);
	assert_int_equal(testroot_remove(f->root), 0);
	free(f);
	return 0;
}

/* Keeps what io captured in f->out / f->err. */
static void take(struct fx *f, struct shell_io *io)
{
	free(f->out);
	free(f->err);
	f->out = strdup(shell_io_mem_output(io, SHELL_OUT, NULL));
	f->err = strdup(shell_io_mem_output(io, SHELL_ERR, NULL));
	assert_non_null(f->out);
	assert_non_null(f->err);
	shell_io_mem_clear(io);
}

/* Runs one console line; f->out / f->err hold what it printed. */
static int run(struct fx *f, const char *line)
{
	shell_io_mem_clear(f->io);
	int rc = shell_run_line(f->sh, line);
	take(f, f->io);
	print_message("> %s  [rc %d]\n%s%s", line, rc, f->out, f->err);
	return rc;
}

/* Runs `words` (NULL-terminated) in the one-shot form, or `line` as a
 * console line when words is NULL, through a memory io `ms` (its input
 * included); *left receives the input bytes the command did not read. */
static int run_io(struct fx *f, const struct shell_io_mem_settings *ms,
                  const char *line, char *const *words, size_t *left)
{
	struct shell_io *io = NULL;
	int rc, argc = 0;

	assert_int_equal(shell_io_mem_new(ms, &io, NULL), DM_OK);
	shell_set_io(f->sh, io);
	if (words) {
		while (words[argc])
			argc++;
		rc = shell_run_argv(f->sh, argc, words);
	} else {
		rc = shell_run_line(f->sh, line);
	}
	shell_set_io(f->sh, f->io);
	if (left)
		*left = shell_io_mem_input_left(io);
	take(f, io);
	shell_io_mem_free(io);
	print_message("> %s  [rc %d]\n%s%s", words ? words[0] : line, rc, f->out,
	              f->err);
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

	assert_int_equal(shell_run_argv(f->sh, 2, set), 0);
	assert_int_equal(shell_run_argv(f->sh, 2, get), 0);
	assert_has(shell_io_mem_output(f->io, SHELL_OUT, NULL), "Email/Port = 2525");
	char *const bad[] = { "NOPE", NULL };
	assert_int_equal(shell_run_argv(f->sh, 1, bad), 64);
	assert_has(shell_io_mem_output(f->io, SHELL_ERR, NULL),
	           "unknown command 'NOPE'");
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

/* ---- the io seam ------------------------------------------------------------ */

#define PW_MEM "Mem-S3cret-pw-9137"

/* The value of a registry key as stored ("" when not set). */
static void stored(struct fx *f, const char *key, char *buf, size_t cap)
{
	struct registry *reg;
	bool set = false;
	assert_int_equal(shell_registry(f->sh, &reg, NULL), DM_OK);
	assert_int_equal(registry_get(reg, key, buf, cap, &set, NULL), DM_OK);
	if (!set)
		buf[0] = '\0';
}

/* Unseals Email/Password (or Email/OAuthToken) and compares it. */
static void assert_sealed_is(struct fx *f, const char *key, const char *want)
{
	char sealed[REG_VALUE_MAX];
	char *plain = NULL;
	size_t len = 0;

	stored(f, key, sealed, sizeof(sealed));
	assert_true(strncmp(sealed, VAULT_PREFIX, strlen(VAULT_PREFIX)) == 0);
	assert_int_equal(vault_unseal(f->root, sealed, &plain, &len, NULL), DM_OK);
	assert_string_equal(plain, want);
	vault_wipe(plain, len);
	free(plain);
}

/* The one-shot form (`devmail IPCONFIG --password-stdin`): the secret is
 * one line of the io's input; no prompt in a pipe; it is never written
 * back; the rest of the input is left alone. */
static void test_io_password_stdin_oneshot(void **state)
{
	struct fx *f = *state;
	static const char input[] = PW_MEM "\r\nnot read\n";
	char *const words[] = { "IPCONFIG", "--mailhost", "smtp.example.com",
	                        "--username", "unit7", "--password-stdin", NULL };
	size_t left = 0;

	assert_int_equal(run_io(f, &(struct shell_io_mem_settings){
	    .input = input, .input_len = strlen(input) }, NULL, words, &left), 0);
	assert_int_equal(left, strlen("not read\n"));
	assert_has(f->out, "Email account saved (password sealed).");
	assert_has(f->out, "  Password:   set (sealed)\n");
	assert_has(f->out, "  MailHost:   smtp.example.com\n");
	assert_string_equal(f->err, "");        /* a pipe gets no prompt */
	assert_lacks(f->out, PW_MEM);
	assert_sealed_is(f, "Email/Password", PW_MEM);
	assert_int_equal(run(f, "LOG"), 0);
	assert_has(f->out, "IPCONFIG: email account updated: MailHost=smtp.example.com");
	assert_lacks(f->out, PW_MEM);

	/* A person at a terminal-like io is prompted on the error stream; the
	 * answer is not echoed (the memory io echoes lines read as answers,
	 * so a secret read as a plain line would show here). */
	static const char input2[] = "Second-" PW_MEM "\n";
	char *const words2[] = { "IPCONFIG", "--password-stdin", NULL };
	assert_int_equal(run_io(f, &(struct shell_io_mem_settings){
	    .input = input2, .input_len = strlen(input2), .interactive = true,
	    .echo = true }, NULL, words2, &left), 0);
	assert_string_equal(f->err, "Password: \n");
	assert_lacks(f->out, PW_MEM);
	assert_sealed_is(f, "Email/Password", "Second-" PW_MEM);

	/* Nothing to read: refused, nothing changed. */
	assert_int_equal(run_io(f, &(struct shell_io_mem_settings){ 0 }, NULL,
	                        words2, NULL), 65);
	assert_has(f->err, "IPCONFIG: --password-stdin: nothing on standard input");
	assert_sealed_is(f, "Email/Password", "Second-" PW_MEM);
}

/* In a console the io's input carries the commands: the secret is the next
 * line, and SENDMAIL does not take the following lines as its body. */
static void test_io_console_input(void **state)
{
	struct fx *f = *state;
	static const char token[] = "ya29.mem-token-5521\nREG Email/Port\n";
	size_t left = 0;

	shell_set_console(f->sh);
	assert_false(shell_input_free(f->sh));
	assert_int_equal(run_io(f, &(struct shell_io_mem_settings){
	    .input = token, .input_len = strlen(token) },
	    "IPCONFIG --oauth-token-stdin", NULL, &left), 0);
	assert_int_equal(left, strlen("REG Email/Port\n"));
	assert_has(f->out, "OAuth token: set (sealed; XOAUTH2)");
	assert_lacks(f->out, "mem-token");
	assert_sealed_is(f, "Email/OAuthToken", "ya29.mem-token-5521");

	static const char next[] = "REG Email/Port\n";
	assert_int_equal(run_io(f, &(struct shell_io_mem_settings){
	    .input = next, .input_len = strlen(next) },
	    "SENDMAIL -t ops@example.com -s x", NULL, &left), 64);
	assert_has(f->err, "-m TEXT or -F FILE");
	assert_int_equal(left, strlen(next));
}

/* IPCONFIG -E answered through the io: prompts on the output stream, the
 * password twice without echo, everything saved at once. */
static void test_io_setup(void **state)
{
	struct fx *f = *state;
	static const char answers[] =
		"bad host!\n"                   /* refused, asked again */
		"smtp.mem.example\n"
		"465\n"
		"\n"                            /* Enter: SMTPS on (the default) */
		"Unit 7 <unit7@mem.example>\n"
		"ops@mem.example\n"
		"unit7\n"
		PW_MEM "\n" "typo\n"            /* mismatch, asked again */
		PW_MEM "\n" PW_MEM "\n";
	char v[256];

	assert_int_equal(run_io(f, &(struct shell_io_mem_settings){
	    .input = answers, .input_len = strlen(answers), .interactive = true,
	    .echo = true }, "IPCONFIG -E", NULL, NULL), 0);
	assert_has(f->out, "Mail server (Email/MailHost): bad host!\n");
	assert_has(f->out, "Email/MailHost: 'bad host!'");
	assert_has(f->out, "Port (Email/Port) [25]: 465\n");
	assert_has(f->out, "Turn on SMTPS? [Y/n]: \n");
	assert_has(f->out, "Password (not shown; Enter for none): \n");
	assert_has(f->out, "the passwords do not match; try again");
	assert_has(f->out, "Email account saved (password sealed).");
	assert_has(f->out, "Security:   SMTPS (TLS from the first byte)");
	assert_lacks(f->out, PW_MEM);
	assert_lacks(f->out, "typo");
	assert_string_equal(f->err, "");
	stored(f, "Email/SMTPS", v, sizeof(v));
	assert_string_equal(v, "true");
	stored(f, "Email/FromAddress", v, sizeof(v));
	assert_string_equal(v, "Unit 7 <unit7@mem.example>");
	assert_sealed_is(f, "Email/Password", PW_MEM);

	/* Input that ends half way: 66, nothing changed. */
	static const char part[] = "other.mem.example\n";
	assert_int_equal(run_io(f, &(struct shell_io_mem_settings){
	    .input = part, .input_len = strlen(part) }, "IPCONFIG -E", NULL,
	    NULL), 66);
	assert_has(f->err, "IPCONFIG: input ended; nothing changed");
	stored(f, "Email/MailHost", v, sizeof(v));
	assert_string_equal(v, "smtp.mem.example");
}

/* An interrupt (Ctrl-C on a terminal, IAC IP on Telnet) is the io's: the
 * command sees it through shell_interrupted() / SHELL_READ_INTR, stops with
 * 130 and changes nothing; the dispatcher clears it afterwards. */
static void test_io_interrupt(void **state)
{
	struct fx *f = *state;
	static const char answers[] = "smtp.intr.example\n25\n";
	struct shell_io *io = NULL;
	char v[256];

	assert_int_equal(shell_io_mem_new(&(struct shell_io_mem_settings){
	    .input = answers, .input_len = strlen(answers) }, &io, NULL), DM_OK);
	shell_set_io(f->sh, io);
	shell_io_mem_interrupt(io);
	assert_true(shell_interrupted(f->sh));
	assert_int_equal(shell_run_line(f->sh, "IPCONFIG -E"), 130);
	assert_has(shell_io_mem_output(io, SHELL_ERR, NULL),
	           "IPCONFIG: interrupted; nothing changed");
	assert_false(shell_interrupted(f->sh));
	assert_int_equal(shell_io_mem_input_left(io), strlen(answers));
	shell_io_mem_clear(io);

	/* --password-stdin likewise. */
	shell_io_mem_interrupt(io);
	assert_int_equal(shell_run_line(f->sh, "IPCONFIG --mailhost x.example "
	                                "--password-stdin"), 130);
	assert_false(shell_interrupted(f->sh));
	shell_set_io(f->sh, f->io);
	shell_io_mem_free(io);
	stored(f, "Email/MailHost", v, sizeof(v));
	assert_string_equal(v, "");
}

/* SENDMAIL in the one-shot form takes its body from the io's input when it
 * is not a person at a terminal, and leaves a terminal's input alone. */
static void test_io_sendmail_body(void **state)
{
	struct fx *f = *state;
	static const char body[] = "Body line one from the io.\nline two\n";
	char *const words[] = { "SENDMAIL", "-q", "-t", "ops@example.com", "-s",
	                        "seam", NULL };
	char id[128], path[600];
	size_t left = 0, len = 0;

	assert_int_equal(run(f, "REG Email/MailHost = smtp.example.com"), 0);
	assert_int_equal(run(f, "REG Email/FromAddress = unit7@example.com"), 0);
	assert_int_equal(run_io(f, &(struct shell_io_mem_settings){
	    .input = body, .input_len = strlen(body) }, NULL, words, &left), 0);
	assert_int_equal(left, 0);
	assert_true(sscanf(f->out, "Queued %127s", id) == 1);
	snprintf(path, sizeof(path), "%s/spool/queue/%s/msg", f->root, id);
	char *msg = testroot_slurp(path, &len);
	assert_non_null(msg);
	assert_non_null(strstr(msg, "Body line one from the io."));
	free(msg);

	assert_int_equal(run_io(f, &(struct shell_io_mem_settings){
	    .input = body, .input_len = strlen(body), .interactive = true },
	    NULL, words, &left), 0);
	assert_int_equal(left, strlen(body));
}

/* A third implementation, as a server would write one: only `write`.  A
 * NULL read is the end of input, so a secret cannot be had and nothing
 * changes; output arrives one whole message per write. */
struct rec_io {
	char text[8192];
	size_t len, writes;
};

static int rec_write(void *ctx, enum shell_stream s, const char *p, size_t n)
{
	struct rec_io *r = ctx;
	const char *tag = s == SHELL_ERR ? "E|" : "O|";
	int w = snprintf(r->text + r->len, sizeof(r->text) - r->len, "%s%.*s",
	                 tag, (int)n, p);
	if (w > 0 && (size_t)w < sizeof(r->text) - r->len)
		r->len += (size_t)w;
	r->writes++;
	return 0;
}

static void test_io_minimal_ops(void **state)
{
	struct fx *f = *state;
	static const struct shell_io_ops rec_ops = { .write = rec_write };
	struct rec_io rec = { .len = 0 };
	struct shell_io io = { .ops = &rec_ops, .ctx = &rec };

	shell_set_io(f->sh, &io);
	assert_false(shell_interactive(f->sh));
	assert_int_equal(shell_width(f->sh, SHELL_ERR), 0);
	assert_false(shell_interrupted(f->sh));
	assert_int_equal(shell_run_line(f->sh, "REG Email/Port = 99999"), 65);
	assert_int_equal(rec.writes, 1);
	assert_true(strncmp(rec.text, "E|REG: Email/Port: '99999'", 26) == 0);
	rec.len = rec.writes = 0;
	assert_int_equal(shell_run_line(f->sh, "IPCONFIG --password-stdin"), 65);
	assert_has(rec.text, "E|IPCONFIG: --password-stdin: nothing on standard input");
	shell_set_io(f->sh, f->io);

	/* shell_new refuses an io without write. */
	static const struct shell_io_ops no_ops = { .write = NULL };
	struct shell_io bad = { .ops = &no_ops };
	struct shell *sh2 = NULL;
	struct shell_settings s = { .root = f->root, .io = &bad };
	assert_int_equal(shell_new(&s, &sh2, NULL), DM_EINVAL);
	assert_null(sh2);
}

/* The memory io itself: caps, CRLF, long lines, data reads. */
static void test_io_mem(void **state)
{
	(void)state;
	static const char in[] = "one\r\n" "0123456789\n" "tail";
	struct shell_io *io = NULL;
	char buf[8];
	size_t len = 0;

	assert_int_equal(shell_io_mem_new(&(struct shell_io_mem_settings){
	    .input = in, .input_len = strlen(in), .out_max = 10 }, &io, NULL),
	    DM_OK);
	const struct shell_io_ops *o = io->ops;
	assert_int_equal(o->read_line(io->ctx, SHELL_OUT, "> ", buf, sizeof(buf)),
	                 SHELL_READ_OK);
	assert_string_equal(buf, "one");
	assert_int_equal(o->read_secret(io->ctx, SHELL_OUT, NULL, buf, sizeof(buf)),
	                 SHELL_READ_LONG);
	assert_string_equal(buf, "");
	assert_int_equal(o->read_data(io->ctx, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "tail", 4);
	assert_int_equal(o->read_line(io->ctx, SHELL_OUT, NULL, buf, sizeof(buf)),
	                 SHELL_READ_EOF);
	assert_int_equal(o->write(io->ctx, SHELL_OUT, "0123456789abc", 13), ENOSPC);
	assert_string_equal(shell_io_mem_output(io, SHELL_OUT, &len), "> 01234567");
	assert_int_equal(len, 10);
	assert_string_equal(shell_io_mem_output(io, SHELL_ERR, NULL), "");
	shell_io_mem_clear(io);
	assert_string_equal(shell_io_mem_output(io, SHELL_OUT, &len), "");
	shell_io_mem_free(io);
}

/* ---- OUTBOX: failed messages, -f ID, -R ID, prefixes -------------------- */

struct ob_memsrc {
	const char *p;
	size_t len, off;
};

static enum dm_status ob_memsrc_read(void *ctx, char *buf, size_t cap,
                                     size_t *got, struct dm_err *err)
{
	struct ob_memsrc *m = ctx;
	size_t n = m->len - m->off;
	(void)err;
	if (n > cap)
		n = cap;
	memcpy(buf, m->p + m->off, n);
	m->off += n;
	*got = n;
	return DM_OK;
}

static void ob_enqueue(struct outbox *ob, const char *to, char id[OUTBOX_ID_MAX])
{
	static const char msg[] = "From: a@example.com\r\nTo: b@example.com\r\n"
	                          "Subject: s\r\n\r\nbody\r\n";
	const char *rcpt[] = { to, "second@example.com" };
	struct outbox_envelope env = { .from = "a@example.com", .rcpt = rcpt,
	                               .nrcpt = 2 };
	struct ob_memsrc ms = { msg, sizeof(msg) - 1, 0 };
	struct mail_source src = { ob_memsrc_read, &ms };
	assert_int_equal(outbox_enqueue(ob, &env, &src, id, NULL), DM_OK);
}

/* The deliverer: refuses with 550 5.1.1, or accepts (ok). */
static enum dm_status ob_deliver(void *ctx, const struct outbox_item *item,
                                 const struct mail_source *msg, char *detail,
                                 size_t detail_cap, struct dm_err *err)
{
	bool ok = *(bool *)ctx;
	(void)item;
	(void)msg;
	if (ok) {
		snprintf(detail, detail_cap, "250 ok");
		return DM_OK;
	}
	dm_err_set(err, DM_EPERMFAIL, "refused by the test server");
	err->smtp_code = 550;
	snprintf(err->enhanced, sizeof(err->enhanced), "5.1.1");
	snprintf(err->server_text, sizeof(err->server_text), "No such user here");
	return DM_EPERMFAIL;
}

static int ob_state_row(void *ctx, const struct outbox_item *it)
{
	char *buf = ctx;
	size_t n = strlen(buf);
	snprintf(buf + n, 4096 - n, "%s %s %u|", it->failed ? "F" : "Q", it->id,
	         it->attempts);
	return 0;
}

/* Queue and failed with attempts, as one string (the "nothing changed"
 * check; ages are left out, they move with the clock). */
static void ob_state(struct outbox *ob, char buf[4096])
{
	buf[0] = '\0';
	assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, ob_state_row, buf, NULL),
	                 DM_OK);
	assert_int_equal(outbox_list(ob, OUTBOX_FAILED, ob_state_row, buf, NULL),
	                 DM_OK);
}

/* The shortest prefix of a that is not a prefix of b (one more than the
 * common part). */
static void ob_prefix(const char *a, const char *b, char *out, size_t cap)
{
	size_t n = 0;
	while (a[n] && a[n] == b[n])
		n++;
	assert_true(a[n] != '\0');
	snprintf(out, cap, "%.*s", (int)(n + 1), a);
}

static int ob_attempts_cb(void *ctx, const struct outbox_item *it)
{
	*(unsigned *)ctx = it->attempts;
	return 0;
}

static void test_outbox_failed_prefix(void **state)
{
	struct fx *f = *state;
	struct outbox *ob;
	char a[OUTBOX_ID_MAX], b[OUTBOX_ID_MAX], q[OUTBOX_ID_MAX];
	char pa[OUTBOX_ID_MAX], pb[OUTBOX_ID_MAX], common[OUTBOX_ID_MAX];
	char before[4096], after[4096], line[256];
	bool ok = false;
	static const char *const dlg[] = {
		">>> MAIL FROM:<a@example.com>", "<<< 250 2.1.0 Ok",
		">>> RCPT TO:<nobody@example.com>",
		"<<< 550 5.1.1 No such user here",
	};

	assert_int_equal(outbox_open(f->root, NULL, &ob, NULL), DM_OK);
	ob_enqueue(ob, "nobody@example.com", a);
	ob_enqueue(ob, "other@example.com", b);
	assert_int_equal(outbox_deliver(ob, a, ob_deliver, &ok, NULL, NULL),
	                 DM_EPERMFAIL);
	assert_int_equal(outbox_deliver(ob, b, ob_deliver, &ok, NULL, NULL),
	                 DM_EPERMFAIL);
	assert_int_equal(outbox_dialogue_save(ob, OUTBOX_FAILED, a, dlg, 4, NULL),
	                 DM_OK);
	ob_enqueue(ob, "queued@example.com", q);
	ob_prefix(a, b, pa, sizeof(pa));
	ob_prefix(b, a, pb, sizeof(pb));
	snprintf(common, sizeof(common), "%.*s", (int)strlen(pa) - 1, pa);

	/* OUTBOX -f alone: the list, as before. */
	assert_int_equal(run(f, "OUTBOX -f"), 0);
	assert_has(f->out, a);
	assert_has(f->out, b);
	assert_has(f->out, "2 failed messages");

	/* -f by prefix: envelope, attempts, reason, the dialogue. */
	snprintf(line, sizeof(line), "OUTBOX -f %s", pa);
	assert_int_equal(run(f, line), 0);
	assert_string_equal(f->err, "");
	snprintf(line, sizeof(line), "id:        %s\n", a);
	assert_has(f->out, line);
	assert_has(f->out, "from:      a@example.com\n");
	assert_has(f->out, "to:        nobody@example.com, second@example.com\n");
	assert_has(f->out, "attempts:  1\n");
	assert_has(f->out, "reason:    ");
	assert_has(f->out, "550");
	assert_has(f->out, "No such user here");
	assert_has(f->out, "age:       ");
	assert_has(f->out, "\n    >>> RCPT TO:<nobody@example.com>\n"
	                   "    <<< 550 5.1.1 No such user here\n");
	assert_lacks(f->out, "no dialogue kept");
	/* --failed ID and the whole id work too; without a dialogue it says so. */
	snprintf(line, sizeof(line), "OUTBOX --failed %s", b);
	assert_int_equal(run(f, line), 0);
	assert_has(f->out, "dialogue:  no dialogue kept\n");
	assert_has(f->out, "to:        other@example.com, second@example.com\n");

	ob_state(ob, before);
	/* Ambiguous prefix: refused with the candidates, nothing changes. */
	const char *amb[] = { "-f", "-R", "-d" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(line, sizeof(line), "OUTBOX %s %s", amb[i], common);
		assert_int_equal(run(f, line), 65);
		assert_has(f->err, "OUTBOX: ");
		assert_has(f->err, "matches ");
		assert_has(f->err, a);
		assert_has(f->err, b);
		assert_lacks(f->err, "outbox: ");
		assert_string_equal(f->out, "");
	}
	/* Unknown ids (well formed, and not id characters): 65, unchanged. */
	const char *unk[] = { "OUTBOX -f 19990101", "OUTBOX -R 19990101",
	                      "OUTBOX -d 19990101", "OUTBOX -r 19990101",
	                      "OUTBOX -R ../x" };
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(run(f, unk[i]), 65);
		assert_string_equal(f->out, "");
		assert_has(f->err, "OUTBOX: ");
	}
	assert_has(f->err, "OUTBOX: ");
	/* The wrong side: -r of a failed one, -f / -R of a queued one. */
	snprintf(line, sizeof(line), "OUTBOX -r %s", pa);
	assert_int_equal(run(f, line), 65);
	assert_has(f->err, "failed permanently");
	assert_has(f->err, "OUTBOX -R ");
	snprintf(line, sizeof(line), "OUTBOX -R %s", q);
	assert_int_equal(run(f, line), 65);
	assert_has(f->err, "is queued, not failed");
	snprintf(line, sizeof(line), "OUTBOX -f %s", q);
	assert_int_equal(run(f, line), 65);
	assert_has(f->err, "is queued, not failed");
	/* Usage: an operand without -f, two actions. */
	assert_int_equal(run(f, "OUTBOX x"), 64);
	snprintf(line, sizeof(line), "OUTBOX -R %s -f", pa);
	assert_int_equal(run(f, line), 64);
	ob_state(ob, after);
	assert_string_equal(before, after);

	/* -R by prefix: back in the queue with attempts 0, dialogue dropped;
	 * small -r is still retry (letters match their own case first). */
	snprintf(line, sizeof(line), "OUTBOX -R %s", pa);
	assert_int_equal(run(f, line), 0);
	assert_string_equal(f->err, "");
	snprintf(line, sizeof(line), "Re-queued %s to nobody@example.com +1 with "
	         "fresh attempts (0)", a);
	assert_has(f->out, line);
	unsigned attempts = 99;
	assert_int_equal(outbox_get(ob, OUTBOX_QUEUE, a, ob_attempts_cb, &attempts,
	                            NULL), DM_OK);
	assert_int_equal(attempts, 0);
	assert_int_equal(outbox_get(ob, OUTBOX_FAILED, a, ob_attempts_cb, &attempts,
	                            NULL), DM_ENOTFOUND);
	/* Now the common prefix names one failed message: b. */
	snprintf(line, sizeof(line), "OUTBOX -f %s", common);
	assert_int_equal(run(f, line), 0);
	snprintf(line, sizeof(line), "id:        %s\n", b);
	assert_has(f->out, line);
	/* And it delivers. */
	ok = true;
	assert_int_equal(outbox_deliver(ob, a, ob_deliver, &ok, NULL, NULL), DM_OK);
	assert_int_equal(outbox_get(ob, OUTBOX_QUEUE, a, ob_attempts_cb, &attempts,
	                            NULL), DM_ENOTFOUND);

	/* -d by prefix, across queue and failed. */
	ob_prefix(b, q, pb, sizeof(pb));
	snprintf(line, sizeof(line), "OUTBOX -d %s", pb);
	assert_int_equal(run(f, line), 0);
	snprintf(line, sizeof(line), "deleted %s from the failed messages", b);
	assert_has(f->out, line);

	assert_int_equal(run(f, "HELP OUTBOX"), 0);
	assert_has(f->out, "-R ID");
	assert_has(f->out, "-f ID");
	assert_has(f->out, "devmaild");
	assert_has(f->out, "prefix");
	outbox_close(ob);
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
		T(test_io_password_stdin_oneshot),
		T(test_io_console_input),
		T(test_io_setup),
		T(test_io_interrupt),
		T(test_io_sendmail_body),
		T(test_io_minimal_ops),
		T(test_io_mem),
		T(test_outbox_failed_prefix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
