/*
 * test_registry.c - the registry against real SQLite files in temporary
 * roots, with real helper processes (regtool) for the multi-process cases:
 * opening while another process holds the write lock (an open only reads),
 * read snapshots, the root and a missing table made on open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/registry.h"
#include "core/text.h"
#include "core/vault.h"
#include "testroot.h"

static int fx_setup(void **state)
{
	return testroot_reg_setup(state, "registry");
}

static void fx_reopen(struct testroot_reg *f)
{
	registry_close(f->reg);
	assert_int_equal(registry_open(f->root, &f->reg, NULL), DM_OK);
}

/* ---- helpers ------------------------------------------------------------ */

struct dump { char buf[1 << 16]; size_t len; size_t count; };

static int dump_one(const struct registry_entry *e, void *ctx)
{
	struct dump *d = ctx;
	d->len += (size_t)snprintf(d->buf + d->len, sizeof(d->buf) - d->len,
	                           "%s=%s%s\n", e->key, e->value, e->is_set ? "" : " (default)");
	d->count++;
	return 0;
}

static void dump_all(struct registry *reg, struct dump *d)
{
	memset(d, 0, sizeof(*d));
	assert_int_equal(registry_list(reg, NULL, true, dump_one, d, NULL), DM_OK);
}

static void set_ok(struct registry *reg, const char *k, const char *v)
{
	struct dm_err err;
	dm_err_clear(&err);
	if (registry_set(reg, k, v, NULL, &err) != DM_OK)
		fail_msg("set %s=%s: %s", k, v, err.msg);
}

static void check_reg(struct registry *reg, const char *k, const char *want,
                         bool want_set)
{
	char v[REG_VALUE_MAX];
	bool set;
	assert_int_equal(registry_get(reg, k, v, sizeof(v), &set, NULL), DM_OK);
	assert_string_equal(v, want);
	assert_int_equal(set, want_set);
}

static void write_file(const char *path, const char *text)
{
	assert_int_equal(testroot_write(path, text), 0);
}

static const char *regtool_path(void)
{
	static char path[1024];
	const char *b = getenv("DEVMAIL_BUILD_DIR");
	snprintf(path, sizeof(path), "%s/regtool", b ? b : ".");
	return path;
}

/* Starts regtool with argv; stdout to *out_fd when out_fd != NULL. */
static pid_t regtool_spawn(char *const argv[], int *out_fd, const char *env)
{
	int p[2] = { -1, -1 };
	if (out_fd)
		assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (out_fd) {
			dup2(p[1], 1);
			close(p[0]);
			close(p[1]);
		}
		if (env)
			putenv((char *)env);
		execv(regtool_path(), argv);
		_exit(127);
	}
	if (out_fd) {
		close(p[1]);
		*out_fd = p[0];
	}
	return pid;
}

static int wait_exit(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		assert_int_equal(errno, EINTR);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- validation leaves the registry unchanged ---------------------------- */

static const struct registry_pair bad_pairs[] = {
	{ "Email/Port", "70000" }, { "Email/Port", "25x" }, { "Email/Port", "" },
	{ "Email/SMTPS", "maybe" }, { "Email/MailHost", "a..b" },
	{ "Email/MailHost", "-bad.example" }, { "Email/MailHost", "ok.example\r\nX" },
	{ "Email/FromAddress", "not-an-address" }, { "Email/FromAddress", "a@b.com\nBcc: c@d" },
	{ "Email/ToAddress", "a@b.com,,c@d.com" }, { "Email/AuthMechanism", "DIGEST-MD5" },
	{ "Email/CAFile", "relative.pem" }, { "Email/Fingerprint", "abc" },
	{ "Email/Username", "bob\n" }, { "Email/Timeout", "0" },
	{ "Outbox/RetryMax", "604801" }, { "MyApp/Note", "two\nlines" },
	{ "Log/MaxSize", "1k" },
};

static void test_invalid_values_change_nothing(void **state)
{
	struct testroot_reg *f = *state;
	struct dump before, after;

	set_ok(f->reg, "Email/Port", "587");
	set_ok(f->reg, "Email/MailHost", "smtp.example.com");
	set_ok(f->reg, "MyApp/Note", "keep");
	dump_all(f->reg, &before);
	uint64_t c0 = registry_change_counter(f->reg);
	for (size_t i = 0; i < sizeof(bad_pairs) / sizeof(bad_pairs[0]); i++) {
		struct dm_err err;
		char esc[96];
		dm_err_clear(&err);
		if (registry_set(f->reg, bad_pairs[i].key, bad_pairs[i].value, NULL, &err) != DM_EINVAL)
			fail_msg("%s='%s' accepted", bad_pairs[i].key, bad_pairs[i].value);
		assert_non_null(strstr(err.msg, bad_pairs[i].key));
		assert_non_null(strstr(err.msg, text_escape(bad_pairs[i].value, esc, sizeof(esc))));
		assert_non_null(strchr(err.msg, '('));   /* the rule */
		/* The same value inside a batch of good ones: nothing written. */
		struct registry_pair batch[] = {
			{ "Email/Port", "465" }, bad_pairs[i], { "MyApp/Other", "x" },
		};
		assert_int_equal(registry_set_batch(f->reg, batch, 3, true, NULL), DM_EINVAL);
	}
	assert_int_equal(registry_set(f->reg, "Bad Name/x", "1", NULL, NULL), DM_EINVAL);
	assert_int_equal(registry_set(f->reg, "NoSection", "1", NULL, NULL), DM_EINVAL);
	fx_reopen(f);
	dump_all(f->reg, &after);
	assert_string_equal(before.buf, after.buf);
	assert_int_equal(registry_change_counter(f->reg), c0);
}

/* ---- round trips -------------------------------------------------------- */

static void test_set_get_delete(void **state)
{
	struct testroot_reg *f = *state;
	char v[REG_VALUE_MAX], name[160];
	bool unknown = true, known = false;
	long port;
	bool b;

	check_reg(f->reg, "Email/Port", "25", false);
	assert_int_equal(registry_set(f->reg, "email/PORT", " 0587 ", &unknown, NULL), DM_OK);
	assert_false(unknown);
	check_reg(f->reg, "EMAIL/port", "587", true);
	assert_int_equal(registry_get_int(f->reg, "Email/Port", &port, NULL), DM_OK);
	assert_int_equal(port, 587);
	set_ok(f->reg, "email/starttls", "off");
	check_reg(f->reg, "Email/StartTLS", "false", true);
	assert_int_equal(registry_get_bool(f->reg, "Email/StartTLS", &b, NULL), DM_OK);
	assert_false(b);
	assert_int_equal(registry_get_bool(f->reg, "Email/SMTPS", &b, NULL), DM_OK);
	assert_false(b);
	assert_int_equal(registry_canon(f->reg, "email/starttls", name, sizeof(name), &known, NULL), DM_OK);
	assert_string_equal(name, "Email/StartTLS");
	assert_true(known);
	set_ok(f->reg, "Email/AuthMechanism", "cram-md5");
	check_reg(f->reg, "Email/AuthMechanism", "CRAM-MD5", true);

	assert_int_equal(registry_delete(f->reg, "EMAIL/PORT", NULL), DM_OK);
	check_reg(f->reg, "Email/Port", "25", false);
	assert_int_equal(registry_delete(f->reg, "Email/Port", NULL), DM_OK);  /* unset: fine */
	assert_int_equal(registry_get_int(f->reg, "Email/Timeout", &port, NULL), DM_OK);
	assert_int_equal(port, 60);
	assert_int_equal(registry_get_int(f->reg, "Email/MailHost", &port, NULL), DM_ENOTFOUND);

	char host[256] = "";
	gethostname(host, sizeof(host));
	check_reg(f->reg, "IpConfig/HostName", host, false);
	assert_int_equal(registry_get(f->reg, "bad name", v, sizeof(v), NULL, NULL), DM_EINVAL);
	set_ok(f->reg, "Email/Username", "a-rather-long-user-name");
	assert_int_equal(registry_get(f->reg, "Email/Username", v, 8, NULL, NULL), DM_ENOMEM);
}

static void test_unknown_keys(void **state)
{
	struct testroot_reg *f = *state;
	char name[160];
	bool unknown = false, known = true;

	assert_int_equal(registry_set(f->reg, "MyApp/PumpDelay", "15", &unknown, NULL), DM_OK);
	assert_true(unknown);
	assert_int_equal(registry_set(f->reg, "MYAPP/pumpdelay", "16", &unknown, NULL), DM_OK);
	assert_true(unknown);
	check_reg(f->reg, "myapp/PUMPDELAY", "16", true);
	assert_int_equal(registry_canon(f->reg, "myapp/pumpdelay", name, sizeof(name), &known, NULL), DM_OK);
	assert_string_equal(name, "MyApp/PumpDelay");   /* first-written case kept */
	assert_false(known);
	check_reg(f->reg, "MyApp/Unset", "", false);

	struct dump d;
	memset(&d, 0, sizeof(d));
	assert_int_equal(registry_list(f->reg, "myapp", false, dump_one, &d, NULL), DM_OK);
	assert_string_equal(d.buf, "MyApp/PumpDelay=16\n");
}

static void test_sealed_keys(void **state)
{
	struct testroot_reg *f = *state;
	struct dm_err err;
	char *sealed = NULL;

	dm_err_clear(&err);
	assert_int_equal(registry_set(f->reg, "email/password", "hunter2", NULL, &err), DM_EPERM);
	assert_non_null(strstr(err.msg, "Email/Password"));
	assert_non_null(strstr(err.msg, "IPCONFIG"));
	assert_null(strstr(err.msg, "hunter2"));

	struct registry_pair clear[] = { { "Email/Username", "bob" }, { "Email/Password", "hunter2" } };
	dm_err_clear(&err);
	assert_int_equal(registry_set_batch(f->reg, clear, 2, true, &err), DM_EPERM);
	assert_null(strstr(err.msg, "hunter2"));
	check_reg(f->reg, "Email/Username", "", false);
	/* Sealed-looking prefix with junk is not sealed either. */
	clear[1].value = VAULT_PREFIX "not base64!";
	assert_int_equal(registry_set_batch(f->reg, clear, 2, true, NULL), DM_EPERM);

	assert_int_equal(vault_seal(f->root, "hunter2", 7, &sealed, NULL), DM_OK);
	struct registry_pair ok[] = { { "Email/Username", "bob" }, { "Email/Password", sealed } };
	assert_int_equal(registry_set_batch(f->reg, ok, 2, false, NULL), DM_EPERM);
	assert_int_equal(registry_set_batch(f->reg, ok, 2, true, NULL), DM_OK);
	check_reg(f->reg, "Email/Password", sealed, true);
	check_reg(f->reg, "Email/Username", "bob", true);
	assert_int_equal(registry_delete(f->reg, "Email/Password", NULL), DM_OK);
	check_reg(f->reg, "Email/Password", "", false);
	free(sealed);
}

static int stop_after_two(const struct registry_entry *e, void *ctx)
{
	(void)e;
	return ++*(int *)ctx == 2 ? 7 : 0;
}

static void test_list(void **state)
{
	struct testroot_reg *f = *state;
	struct dump d;
	size_t n;

	schema_keys(&n);
	set_ok(f->reg, "Events/OnBoot/Email", "yes");
	set_ok(f->reg, "Email/Port", "465");
	set_ok(f->reg, "Zeta/Key", "z");
	set_ok(f->reg, "alpha/Key", "a");
	memset(&d, 0, sizeof(d));
	assert_int_equal(registry_list(f->reg, NULL, false, dump_one, &d, NULL), DM_OK);
	assert_string_equal(d.buf, "Email/Port=465\nEvents/OnBoot/Email=true\n"
	                           "alpha/Key=a\nZeta/Key=z\n");
	dump_all(f->reg, &d);
	assert_int_equal(d.count, n + 2);
	assert_non_null(strstr(d.buf, "Email/StartTLS=true (default)\n"));
	memset(&d, 0, sizeof(d));
	assert_int_equal(registry_list(f->reg, "EVENTS", true, dump_one, &d, NULL), DM_OK);
	assert_string_equal(d.buf, "Events/OnBoot/Email=true\n");
	memset(&d, 0, sizeof(d));
	assert_int_equal(registry_list(f->reg, "Email", false, dump_one, &d, NULL), DM_OK);
	assert_string_equal(d.buf, "Email/Port=465\n");
	int calls = 0;
	assert_int_equal(registry_list(f->reg, NULL, true, stop_after_two, &calls, NULL), 7);
	assert_int_equal(calls, 2);
}

static void test_export_import_round_trip(void **state)
{
	struct testroot_reg *f = *state;
	char path[512], *sealed = NULL;
	struct dump d1, d2;
	struct testroot_reg g;

	assert_int_equal(vault_seal(f->root, "pw", 2, &sealed, NULL), DM_OK);
	struct registry_pair p[] = { { "Email/Password", sealed } };
	assert_int_equal(registry_set_batch(f->reg, p, 1, true, NULL), DM_OK);
	set_ok(f->reg, "Email/Port", "587");
	set_ok(f->reg, "Email/ToAddress", "\"Ops, Night\" <ops@example.com>, b@example.org");
	set_ok(f->reg, "Events/OnBoot/Email", "on");
	set_ok(f->reg, "MyApp/Note", "semi; colon # hash = equals");
	set_ok(f->reg, "Email/Username", "bob");
	snprintf(path, sizeof(path), "%s/export.ini", f->root);
	assert_int_equal(registry_export(f->reg, path, NULL), DM_OK);
	char *text = testroot_slurp(path, NULL);
	assert_non_null(text);
	assert_non_null(strstr(text, "\n[Email]\nPort = 587\n"));
	assert_non_null(strstr(text, "\nPassword = dmv1:"));
	assert_non_null(strstr(text, "\n[Events/OnBoot]\nEmail = true\n"));
	assert_non_null(strstr(text, "\n[MyApp]\nNote = semi; colon # hash = equals\n"));
	assert_null(strstr(text, "StartTLS"));   /* only set keys */

	memcpy(g.root, f->root, sizeof(g.root));
	assert_true(strlen(g.root) + 7 < sizeof(g.root));
	strcat(g.root, "/other");
	assert_int_equal(registry_open(g.root, &g.reg, NULL), DM_OK);
	assert_int_equal(registry_import(g.reg, path, NULL), DM_OK);
	dump_all(f->reg, &d1);
	dump_all(g.reg, &d2);
	assert_string_equal(d1.buf, d2.buf);
	registry_close(g.reg);
	free(text);
	free(sealed);
}

static void test_import_syntax(void **state)
{
	struct testroot_reg *f = *state;
	char path[512];

	snprintf(path, sizeof(path), "%s/in.ini", f->root);
	write_file(path, "; comment\n# another\n\n  [ Email ]  \r\n  port=2525\r\n"
	                 "StartTLS   =   no\n[IpConfig]\nHostName = unit-7\n"
	                 "Email/SMTPS = yes\n");
	assert_int_equal(registry_import(f->reg, path, NULL), DM_OK);
	check_reg(f->reg, "Email/Port", "2525", true);
	check_reg(f->reg, "Email/StartTLS", "false", true);
	check_reg(f->reg, "IpConfig/HostName", "unit-7", true);
	check_reg(f->reg, "IpConfig/Email/SMTPS", "yes", true);  /* unknown key inside [IpConfig]: text */
	check_reg(f->reg, "Email/SMTPS", "false", false);

	snprintf(path, sizeof(path), "%s/missing.ini", f->root);
	assert_int_equal(registry_import(f->reg, path, NULL), DM_ENOINPUT);
}

static void test_import_errors_all_or_nothing(void **state)
{
	struct testroot_reg *f = *state;
	static const char *const bad[] = {
		"[Email]\nPort = 2626\nMailHost = ok.example\nTimeout = 99999\n",
		"[Email]\nPort = 2626\nMailHost = ok.example\nno equals sign\n",
		"[Email]\nPort = 2626\nMailHost = ok.example\n[Email\n",
		"[Email]\nPort = 2626\nMailHost = ok.example\nPassword = hunter2\n",
		"[Email]\nPort = 2626\nMailHost = ok.example\nbad key = 1\n",
	};
	char path[512];
	struct dump before, after;

	set_ok(f->reg, "Email/Port", "587");
	dump_all(f->reg, &before);
	snprintf(path, sizeof(path), "%s/bad.ini", f->root);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct dm_err err;
		char want[600];
		write_file(path, bad[i]);
		dm_err_clear(&err);
		assert_int_not_equal(registry_import(f->reg, path, &err), DM_OK);
		snprintf(want, sizeof(want), "%s:4: ", path);
		if (!strstr(err.msg, want))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, want);
		assert_null(strstr(err.msg, "hunter2"));
	}
	dump_all(f->reg, &after);
	assert_string_equal(before.buf, after.buf);
}

/* ---- several processes -------------------------------------------------- */

static void test_counter_sees_other_process(void **state)
{
	struct testroot_reg *f = *state;
	uint64_t c0 = registry_change_counter(f->reg);

	set_ok(f->reg, "Email/Port", "587");
	uint64_t c1 = registry_change_counter(f->reg);
	assert_true(c1 > c0);
	char *argv[] = { "regtool", f->root, "set", "Email/MailHost", "mx.example.net", NULL };
	assert_int_equal(wait_exit(regtool_spawn(argv, NULL, NULL)), 0);
	assert_true(registry_change_counter(f->reg) > c1);
	check_reg(f->reg, "Email/MailHost", "mx.example.net", true);
}

static void test_two_writers_lose_nothing(void **state)
{
	struct testroot_reg *f = *state;
	char *a[] = { "regtool", f->root, "fill", "WriterA", "1000", NULL };
	char *b[] = { "regtool", f->root, "fill", "WriterB", "1000", NULL };
	struct dump d;
	uint64_t c0 = registry_change_counter(f->reg);

	pid_t pa = regtool_spawn(a, NULL, NULL);
	pid_t pb = regtool_spawn(b, NULL, NULL);
	assert_int_equal(wait_exit(pa), 0);
	assert_int_equal(wait_exit(pb), 0);
	memset(&d, 0, sizeof(d));
	assert_int_equal(registry_list(f->reg, "WriterA", false, dump_one, &d, NULL), DM_OK);
	assert_int_equal(d.count, 1000);
	memset(&d, 0, sizeof(d));
	assert_int_equal(registry_list(f->reg, "WriterB", false, dump_one, &d, NULL), DM_OK);
	assert_int_equal(d.count, 1000);
	check_reg(f->reg, "writera/k999", "v999", true);
	check_reg(f->reg, "WriterB/k0", "v0", true);
	assert_int_equal(registry_change_counter(f->reg), c0 + 2000);
}

/* Reads one line from fd, waiting at most 60 s (a bound, not an assertion). */
static void read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap) {
		struct pollfd p = { fd, POLLIN, 0 };
		assert_int_equal(poll(&p, 1, 60000), 1);
		ssize_t r = read(fd, buf + n, 1);
		assert_int_equal(r, 1);
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = '\0';
}

static void test_kill_mid_import_keeps_old_values(void **state)
{
	struct testroot_reg *f = *state;
	char path[512], line[128];
	struct dump before, after;
	int out = -1;

	set_ok(f->reg, "Email/Port", "2525");
	set_ok(f->reg, "Email/MailHost", "old.example.com");
	set_ok(f->reg, "MyApp/Mode", "old");
	dump_all(f->reg, &before);
	uint64_t c0 = registry_change_counter(f->reg);
	snprintf(path, sizeof(path), "%s/new.ini", f->root);
	write_file(path, "[Email]\nPort = 587\nMailHost = new.example.com\n"
	                 "Username = newuser\n[MyApp]\nMode = new\nExtra = 1\n");

	char *argv[] = { "regtool", f->root, "import", path, NULL };
	pid_t pid = regtool_spawn(argv, &out, "DEVMAIL_TEST_IMPORT_PAUSE_US=30000000");
	read_line(out, line, sizeof(line));
	assert_string_equal(line, "applying 1/5");   /* inside the transaction */
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(wait_exit(pid), 128 + SIGKILL);
	close(out);

	fx_reopen(f);
	dump_all(f->reg, &after);
	assert_string_equal(before.buf, after.buf);
	check_reg(f->reg, "Email/Username", "", false);
	check_reg(f->reg, "MyApp/Extra", "", false);
	assert_int_equal(registry_change_counter(f->reg), c0);
	/* The dead writer left no lock behind: the same import now goes through. */
	assert_int_equal(registry_import(f->reg, path, NULL), DM_OK);
	check_reg(f->reg, "Email/Port", "587", true);
	check_reg(f->reg, "MyApp/Extra", "1", true);
}

/* ---- opening ------------------------------------------------------------ */

/* An open of a set-up registry only reads: it goes through while another
 * process holds the write lock (it used to start a write transaction,
 * which waited the 5 s busy timeout and failed), and a write from the new
 * handle waits for the lock as every write does. */
static void test_open_while_other_process_writes(void **state)
{
	struct testroot_reg *f = *state;
	char path[512], line[128];
	struct registry *second = NULL;
	struct dm_err e;
	int out = -1;

	set_ok(f->reg, "Email/Port", "2525");
	registry_close(f->reg);
	f->reg = NULL;
	snprintf(path, sizeof(path), "%s/new.ini", f->root);
	write_file(path, "[Email]\nPort = 587\nMailHost = new.example.com\n");
	char *argv[] = { "regtool", f->root, "import", path, NULL };
	pid_t pid = regtool_spawn(argv, &out, "DEVMAIL_TEST_IMPORT_PAUSE_US=30000000");
	read_line(out, line, sizeof(line));
	assert_string_equal(line, "applying 1/2");   /* it holds the write lock */

	dm_err_clear(&e);
	if (registry_open(f->root, &second, &e) != DM_OK)
		fail_msg("open while another process writes: %s", e.msg);
	check_reg(second, "Email/Port", "2525", true);   /* the last commit */
	registry_close(second);

	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(wait_exit(pid), 128 + SIGKILL);
	close(out);
	assert_int_equal(registry_open(f->root, &f->reg, NULL), DM_OK);
	set_ok(f->reg, "Email/Port", "465");   /* statements made on first use */
	assert_int_equal(registry_delete(f->reg, "Email/Port", NULL), DM_OK);
	set_ok(f->reg, "MyApp/Mode", "x");
	check_reg(f->reg, "Email/Port", "25", false);
	check_reg(f->reg, "MyApp/Mode", "x", true);
}

/* A snapshot sees one committed state until it ends, nests, and a listing
 * inside one works. */
static void test_read_snapshot(void **state)
{
	struct testroot_reg *f = *state;
	struct dump d;

	set_ok(f->reg, "Email/Port", "2525");
	assert_int_equal(registry_read_begin(f->reg, NULL), DM_OK);
	check_reg(f->reg, "Email/Port", "2525", true);
	char *argv[] = { "regtool", f->root, "set", "Email/Port", "587", NULL };
	assert_int_equal(wait_exit(regtool_spawn(argv, NULL, NULL)), 0);
	check_reg(f->reg, "Email/Port", "2525", true);   /* still the snapshot */
	assert_int_equal(registry_read_begin(f->reg, NULL), DM_OK);   /* nests */
	dump_all(f->reg, &d);
	assert_non_null(strstr(d.buf, "Email/Port=2525\n"));
	registry_read_end(f->reg);
	check_reg(f->reg, "Email/Port", "2525", true);   /* outer one holds */
	registry_read_end(f->reg);
	check_reg(f->reg, "Email/Port", "587", true);
	registry_read_end(f->reg);                        /* unbalanced: no-op */
	set_ok(f->reg, "Email/Port", "465");
	check_reg(f->reg, "Email/Port", "465", true);
}

/* The root is made when missing (several levels), mode 0700. */
static void test_open_makes_root(void **state)
{
	struct testroot_reg *f = *state;
	char root[512];
	struct registry *reg = NULL;
	struct stat st;

	snprintf(root, sizeof(root), "%s/a/b/unit", f->root);
	assert_int_equal(registry_open(root, &reg, NULL), DM_OK);
	assert_int_equal(stat(root, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	set_ok(reg, "Email/Port", "587");
	registry_close(reg);
	assert_int_equal(registry_open(root, &reg, NULL), DM_OK);
	check_reg(reg, "Email/Port", "587", true);
	registry_close(reg);
}

/* A file with the meta table but without keys (not written by us, but it
 * must not make every read fail): the open creates what is missing. */
static void test_open_creates_missing_table(void **state)
{
	struct testroot_reg *f = *state;
	char path[512];
	sqlite3 *db;

	registry_close(f->reg);
	f->reg = NULL;
	snprintf(path, sizeof(path), "%s/registry.db", f->root);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "DROP TABLE keys", NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(registry_open(f->root, &f->reg, NULL), DM_OK);
	check_reg(f->reg, "Email/Port", "25", false);
	set_ok(f->reg, "Email/Port", "587");
	check_reg(f->reg, "Email/Port", "587", true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_invalid_values_change_nothing, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_set_get_delete, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_unknown_keys, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_sealed_keys, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_list, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_export_import_round_trip, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_import_syntax, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_import_errors_all_or_nothing, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_counter_sees_other_process, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_two_writers_lose_nothing, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_kill_mid_import_keeps_old_values, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_open_while_other_process_writes, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_read_snapshot, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_open_makes_root, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_open_creates_missing_table, fx_setup, testroot_reg_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
