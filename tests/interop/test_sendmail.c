/*
 * test_sendmail.c - SENDMAIL and mail/submit against real servers on
 * loopback (aiosmtpd with the test CA, tests/lib/peers.h).
 *
 * The command runs in-process through the shell dispatcher (output and
 * errors captured in temp files); the data root is configured through the
 * registry and account_save() (the password sealed by the vault).  One
 * case runs the devmail binary to feed the body on stdin.  Every delivered
 * message is checked at the server: envelope (Bcc delivered), headers (Cc
 * present, Bcc absent), attachments by SHA-256.  Failures are checked in
 * the spool with outbox_list().  The queue path: a server limiting
 * messages per connection (452 4.5.3), AUTH 454, and parallel sessions,
 * counted by the peer's connection log.
 */
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/registry.h"
#include "mail/account.h"
#include "mail/outbox.h"
#include "mail/submit.h"
#include "peers.h"
#include "shell/shell.h"

#define USER "alice"
#define PASS "s3cret-Pa55:word"
#define FROM "device@example.org"
#define RCPT "ops@example.net"

/* The run's temp dir, PKI and peer pool (stopped by PID after each test). */
static struct peer_group grp;

static int test_teardown(void **state)
{
	(void)state;
	peer_group_stop_all(&grp);
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	return peer_group_setup(&grp, "sendmail");
}

static int group_teardown(void **state)
{
	(void)state;
	return peer_group_teardown(&grp);
}

/* Starts a peer (the PKI's server certificate unless tls is "none"); fails
 * the test when it cannot start. */
static struct peer *start_kind(enum peer_kind kind, const char *tls,
                               const char *const *extra)
{
	struct dm_err err;
	dm_err_clear(&err);
	struct peer *p = peer_group_start(&grp, kind, tls,
	                                  strcmp(tls, "none") ? "server" : NULL,
	                                  extra, &err);
	if (!p)
		fail_msg("starting %s: %s", kind == PEER_AIOSMTPD ? "aiosmtpd" :
		         "smtp-server", err.msg);
	return p;
}

static struct peer *start_peer(const char *tls, const char *const *extra)
{
	return start_kind(PEER_AIOSMTPD, tls, extra);
}

/* A fresh data root for one test, in root[cap]. */
static void new_root(char *root, size_t cap)
{
	int n = snprintf(root, cap, "%s/root-%u", grp.dir, ++grp.seq);
	assert_true(n > 0 && (size_t)n < cap);
	assert_int_equal(mkdir(root, 0700), 0);
}

enum acct { ACCT_STARTTLS, ACCT_SMTPS, ACCT_PLAIN };

/* Configures the account of `root` for a peer on 127.0.0.1:port. */
static void configure(const char *root, unsigned port, enum acct mode,
                      const char *password)
{
	struct registry *reg = NULL;
	struct dm_err err;
	char portbuf[16], ca[PATH_MAX + 16];
	dm_err_clear(&err);
	assert_int_equal(registry_open(root, &reg, &err), DM_OK);
	snprintf(portbuf, sizeof portbuf, "%u", port);
	struct account_update u = {
		.mailhost = "127.0.0.1",
		.port = portbuf,
		.smtps = mode == ACCT_SMTPS ? "true" : "false",
		.starttls = mode == ACCT_PLAIN ? "false" : "true",
		.require_tls = mode == ACCT_PLAIN ? "false" : "true",
		.from = FROM,
		.to = RCPT,
	};
	if (mode != ACCT_PLAIN) {
		u.username = USER;
		u.password = password;
		u.password_len = strlen(password);
	}
	if (account_save(reg, root, &u, &err) != DM_OK)
		fail_msg("account_save: %s", err.msg);
	snprintf(ca, sizeof ca, "%s/ca.pem", grp.pki);
	assert_int_equal(registry_set(reg, "Email/CAFile", ca, NULL, &err), DM_OK);
	assert_int_equal(registry_set(reg, "Email/Timeout", "20", NULL, &err), DM_OK);
	registry_close(reg);
}

/* ---- running SENDMAIL ------------------------------------------------------- */

struct run {
	int rc;
	char out[16384];
	char err[65536];
};

/* Copies what the command wrote to stream s of a memory io into buf[cap]. */
static void take(const struct shell_io *io, enum shell_stream s, char *buf,
                 size_t cap)
{
	snprintf(buf, cap, "%s", shell_io_mem_output(io, s, NULL));
}

/* Runs command `name` with the words in ap (NULL-terminated) in root. */
static void vcommand(struct run *r, const char *root, const char *name,
                     va_list ap)
{
	char *argv[64];
	int argc = 0;
	argv[argc++] = (char *)name;
	for (const char *w; (w = va_arg(ap, const char *)) != NULL;) {
		assert_true(argc < 63);
		argv[argc++] = (char *)w;
	}
	argv[argc] = NULL;
	struct shell_io *io = NULL;
	assert_int_equal(shell_io_mem_new(&(struct shell_io_mem_settings){ 0 },
	                                  &io, NULL), DM_OK);
	struct shell_settings s = { .root = root, .io = io };
	struct shell *sh = NULL;
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(shell_new(&s, &sh, &e), DM_OK);
	r->rc = shell_run_argv(sh, argc, argv);
	shell_free(sh);
	take(io, SHELL_OUT, r->out, sizeof r->out);
	take(io, SHELL_ERR, r->err, sizeof r->err);
	shell_io_mem_free(io);
}

/* Runs SENDMAIL with the given words (NULL-terminated) in root. */
static void sendmail(struct run *r, const char *root, ...)
{
	va_list ap;
	va_start(ap, root);
	vcommand(r, root, "SENDMAIL", ap);
	va_end(ap);
}

/* Runs OUTBOX with the given words (NULL-terminated) in root. */
static void outbox_cmd(struct run *r, const char *root, ...)
{
	va_list ap;
	va_start(ap, root);
	vcommand(r, root, "OUTBOX", ap);
	va_end(ap);
}

static void set_key(const char *root, const char *key, const char *value)
{
	struct registry *reg = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(registry_open(root, &reg, &err), DM_OK);
	if (registry_set(reg, key, value, NULL, &err) != DM_OK)
		fail_msg("%s = %s: %s", key, value, err.msg);
	registry_close(reg);
}

static int count_cb(void *ctx, const struct outbox_item *it)
{
	(void)it;
	(*(size_t *)ctx)++;
	return 0;
}

struct attempts_seen {
	size_t n;
	unsigned attempts[16];
	char error[16][600];
};

static int attempts_cb(void *ctx, const struct outbox_item *it)
{
	struct attempts_seen *a = ctx;
	if (a->n < 16) {
		a->attempts[a->n] = it->attempts;
		snprintf(a->error[a->n], sizeof a->error[0], "%s", it->last_error);
	}
	a->n++;
	return 0;
}

/* Attempts and last error of the queued messages of root. */
static void queue_attempts(const char *root, struct attempts_seen *a)
{
	struct outbox *ob = NULL;
	struct dm_err err;
	memset(a, 0, sizeof *a);
	dm_err_clear(&err);
	assert_int_equal(outbox_open(root, NULL, &ob, &err), DM_OK);
	assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, attempts_cb, a, &err), DM_OK);
	outbox_close(ob);
}

/* Messages in spool/queue or spool/failed of root. */
static size_t spool_count(const char *root, enum outbox_which which)
{
	struct outbox *ob = NULL;
	struct dm_err err;
	size_t n = 0;
	dm_err_clear(&err);
	assert_int_equal(outbox_open(root, NULL, &ob, &err), DM_OK);
	assert_int_equal(outbox_list(ob, which, count_cb, &n, &err), DM_OK);
	outbox_close(ob);
	return n;
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

static void assert_lacks(const char *hay, const char *needle)
{
	if (strstr(hay, needle))
		fail_msg("did not expect \"%s\" in:\n%s", needle, hay);
}

static void load(const struct peer *p, unsigned n, struct peer_message *m)
{
	struct dm_err err;
	dm_err_clear(&err);
	if (peer_message_load(p, n, m, &err) != DM_OK)
		fail_msg("capture %u: %s", n, err.msg);
}

/* ---- tests ------------------------------------------------------------------- */

/* Every option against STARTTLS + AUTH; -v transcript redacted. */
static void test_all_options_starttls(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, NULL };
	struct peer *p = start_peer("starttls-required", extra);
	char root[2048], a1[PATH_MAX + 16], a2[PATH_MAX + 16], h1[65], h2[65];
	struct dm_err err;
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_STARTTLS, PASS);
	snprintf(a1, sizeof a1, "%s/report.bin", root);
	snprintf(a2, sizeof a2, "%s/log.txt", root);
	dm_err_clear(&err);
	assert_int_equal(peer_write_random_file(a1, 300000, 7, &err), DM_OK);
	assert_int_equal(peer_write_random_file(a2, 1234, 8, &err), DM_OK);
	assert_int_equal(peer_sha256_file(a1, h1, &err), DM_OK);
	assert_int_equal(peer_sha256_file(a2, h2, &err), DM_OK);

	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	sendmail(r, root, "-t", "a@example.net,b@example.net", "-c", "cc@example.net",
	         "-b", "hidden@example.net", "-f", "Unit 7 <unit7@example.org>",
	         "-s", "Pump report", "-m", "Pressure nominal.", "-a", a1, "-a", a2,
	         "-v", NULL);
	if (r->rc != 0)
		fail_msg("rc %d\nout: %s\nerr: %s", r->rc, r->out, r->err);
	assert_contains(r->out, "Sent to a@example.net, b@example.net, cc@example.net, "
	                        "hidden@example.net via 127.0.0.1:");
	assert_contains(r->out, "(STARTTLS, TLS1.3, ");
	assert_contains(r->out, ", certificate verified, AUTH ");
	assert_lacks(r->out, "unknown cipher");
	assert_contains(r->out, "): 250");
	/* -v: live transcript, password never shown */
	assert_contains(r->err, "C: EHLO");
	assert_contains(r->err, "S: 220");
	assert_contains(r->err, "C: STARTTLS");
	assert_contains(r->err, "<redacted>");
	assert_lacks(r->err, PASS);
	assert_lacks(r->err, "czNjcmV0");   /* base64 of the password's start */

	assert_int_equal(peer_capture_count(p), 1);
	struct peer_message m;
	load(p, 1, &m);
	assert_string_equal(m.mail_from, "unit7@example.org");
	assert_int_equal(m.nrcpt, 4);
	assert_string_equal(m.rcpt[3], "hidden@example.net");
	assert_string_equal(m.auth, USER);
	assert_string_equal(m.tls, "TLSv1.3");
	char v[1024];
	assert_true(peer_message_header(&m, "Cc", v, sizeof v));
	assert_contains(v, "cc@example.net");
	assert_false(peer_message_header(&m, "Bcc", v, sizeof v));
	assert_null(memmem(m.data, (size_t)(m.body - m.data), "hidden@", 7));
	assert_true(peer_message_header(&m, "Subject", v, sizeof v));
	assert_string_equal(v, "Pump report");
	assert_true(peer_message_header(&m, "From", v, sizeof v));
	assert_contains(v, "unit7@example.org");
	assert_non_null(memmem(m.body, m.body_len, "Pressure nominal.", 17));
	unsigned char *att = NULL;
	size_t len = 0;
	char h[65];
	assert_int_equal(peer_message_attachment(&m, "report.bin", &att, &len, &err), DM_OK);
	peer_sha256_hex(att, len, h);
	assert_string_equal(h, h1);
	free(att);
	assert_int_equal(peer_message_attachment(&m, "log.txt", &att, &len, &err), DM_OK);
	peer_sha256_hex(att, len, h);
	assert_string_equal(h, h2);
	free(att);
	peer_message_free(&m);
	assert_int_equal(spool_count(root, OUTBOX_QUEUE), 0);
	assert_int_equal(spool_count(root, OUTBOX_FAILED), 0);
	free(r);
}

/* Implicit TLS; defaults for To and From from the registry. */
static void test_smtps_defaults(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, NULL };
	struct peer *p = start_peer("implicit", extra);
	char root[2048];
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_SMTPS, PASS);
	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	sendmail(r, root, "-s", "hello", "-m", "implicit", NULL);
	if (r->rc != 0)
		fail_msg("rc %d\nout: %s\nerr: %s", r->rc, r->out, r->err);
	assert_contains(r->out, "Sent to " RCPT " via 127.0.0.1:");
	assert_contains(r->out, "(SMTPS, TLS1.3, ");
	assert_contains(r->out, "certificate verified, AUTH ");
	struct peer_message m;
	load(p, 1, &m);
	assert_string_equal(m.mail_from, FROM);
	assert_string_equal(m.rcpt[0], RCPT);
	peer_message_free(&m);
	free(r);
}

/* A plaintext server without credentials: the line says so. */
static void test_plaintext(void **state)
{
	(void)state;
	const char *extra[] = { "--no-auth", NULL };
	struct peer *p = start_peer("none", extra);
	char root[2048];
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_PLAIN, "");
	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	sendmail(r, root, "-t", RCPT, "-m", "clear", NULL);
	if (r->rc != 0)
		fail_msg("rc %d\nout: %s\nerr: %s", r->rc, r->out, r->err);
	assert_contains(r->out, "(no TLS, AUTH none): 250");
	assert_int_equal(peer_capture_count(p), 1);
	free(r);
}

/* HELP SENDMAIL names what retries a queued message: devmaild, OUTBOX. */
static void test_help_retry(void **state)
{
	(void)state;
	char root[2048];
	new_root(root, sizeof root);
	struct shell_io *io = NULL;
	assert_int_equal(shell_io_mem_new(&(struct shell_io_mem_settings){ 0 },
	                                  &io, NULL), DM_OK);
	struct shell_settings s = { .root = root, .io = io };
	struct shell *sh = NULL;
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(shell_new(&s, &sh, &e), DM_OK);
	assert_int_equal(shell_run_line(sh, "HELP SENDMAIL"), 0);
	shell_free(sh);
	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	take(io, SHELL_OUT, r->out, sizeof r->out);
	take(io, SHELL_ERR, r->err, sizeof r->err);
	shell_io_mem_free(io);
	/* HELP may fold lines: compare with the white space squeezed */
	char *p = r->out, *q = r->out;
	for (bool sp = false; *p; p++) {
		bool w = *p == ' ' || *p == '\n';
		if (!(w && sp))
			*q++ = w ? ' ' : *p;
		sp = w;
	}
	*q = '\0';
	assert_lacks(r->out, "daemon retries");
	assert_lacks(r->out, "the daemon or OUTBOX");
	assert_lacks(r->out, "Nothing retries");
	assert_lacks(r->out, "no mail daemon");
	assert_contains(r->out, "devmaild retries it by itself");
	assert_contains(r->out, "OUTBOX -r ID sends it now, OUTBOX -a every "
	                        "queued message");
	assert_contains(r->out, "devmail-sendmail -q from cron");
	assert_contains(r->out, "OUTBOX -R ID re-queues it");
	free(r);
}

/* Server gone: 75, the message waits in the queue with the reason. */
static void test_server_down(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, NULL };
	struct peer *p = start_peer("starttls-required", extra);
	unsigned port = p->port;
	peer_stop(p);
	char root[2048];
	new_root(root, sizeof root);
	configure(root, port, ACCT_STARTTLS, PASS);
	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	sendmail(r, root, "-s", "down", "-m", "x", NULL);
	assert_int_equal(r->rc, 75);
	assert_contains(r->err, "Queued ");
	assert_contains(r->err, " for retry: ");
	assert_contains(r->err, "; next try in ");
	assert_int_equal(spool_count(root, OUTBOX_QUEUE), 1);
	assert_int_equal(spool_count(root, OUTBOX_FAILED), 0);
	free(r);
}

/* RCPT 5xx: 69, moved to failed. */
static void test_rcpt_refused(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, "--rcpt-reply",
	                        "nobody@example.net=550 5.1.1 No such user", NULL };
	struct peer *p = start_peer("starttls-required", extra);
	char root[2048];
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_STARTTLS, PASS);
	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	sendmail(r, root, "-t", "nobody@example.net", "-m", "x", NULL);
	assert_int_equal(r->rc, 69);
	assert_contains(r->err, "550");
	assert_contains(r->err, "No such user");
	assert_int_equal(spool_count(root, OUTBOX_QUEUE), 0);
	assert_int_equal(spool_count(root, OUTBOX_FAILED), 1);
	assert_int_equal(peer_capture_count(p), 0);
	free(r);
}

/* Many recipients: the result line abbreviates them so the reason shows. */
static void test_many_rcpt_reason(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, "--data-reply",
	                        FROM "=554 5.6.0 Content rejected by test", NULL };
	struct peer *p = start_peer("starttls-required", extra);
	char root[2048];
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_STARTTLS, PASS);
	/* 100 addresses, 10 per -t (a console word is at most 1024 bytes) */
	static char list[10][10 * 40];
	for (unsigned j = 0; j < 10; j++) {
		size_t len = 0;
		for (unsigned i = 0; i < 10; i++)
			len += (size_t)snprintf(list[j] + len, sizeof list[j] - len,
			                        "%srecipient-number-%03u@example.net",
			                        i ? "," : "", j * 10 + i);
	}
	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	sendmail(r, root, "-t", list[0], "-t", list[1], "-t", list[2], "-t",
	         list[3], "-t", list[4], "-t", list[5], "-t", list[6], "-t",
	         list[7], "-t", list[8], "-t", list[9], "-s", "many", "-m", "x",
	         NULL);
	if (r->rc != 69)
		fail_msg("rc %d\nout: %s\nerr: %s", r->rc, r->out, r->err);
	assert_contains(r->err, "Not sent to recipient-number-000@example.net "
	                        "+99 more via ");
	assert_contains(r->err, "554 5.6.0 Content rejected by test");
	assert_contains(r->err, "moved to the failed outbox");
	assert_int_equal(spool_count(root, OUTBOX_FAILED), 1);
	free(r);
}

/* More recipients than one SMTP transaction carries: refused at enqueue
 * (65, clear message), nothing queued, nothing sent. */
static void test_too_many_rcpt(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, NULL };
	struct peer *p = start_peer("starttls-required", extra);
	char root[2048];
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_STARTTLS, PASS);
	static char list[12][10 * 24];
	for (unsigned j = 0; j < 12; j++) {
		size_t len = 0;
		for (unsigned i = 0; i < 10; i++)
			len += (size_t)snprintf(list[j] + len, sizeof list[j] - len,
			                        "%sr%03u@example.net", i ? "," : "",
			                        j * 10 + i);
	}
	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	sendmail(r, root, "-t", list[0], "-t", list[1], "-t", list[2], "-t",
	         list[3], "-t", list[4], "-t", list[5], "-t", list[6], "-t",
	         list[7], "-t", list[8], "-t", list[9], "-t", list[10], "-t",
	         list[11], "-s", "many", "-m", "x", NULL);
	if (r->rc != 65)
		fail_msg("rc %d\nout: %s\nerr: %s", r->rc, r->out, r->err);
	assert_contains(r->err, "120 recipients (1 to 100 allowed");
	assert_int_equal(spool_count(root, OUTBOX_QUEUE), 0);
	assert_int_equal(spool_count(root, OUTBOX_FAILED), 0);
	assert_int_equal(peer_capture_count(p), 0);
	free(r);
}

/* Wrong password: 77, kept queued for after the fix. */
static void test_wrong_password(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, NULL };
	struct peer *p = start_peer("starttls-required", extra);
	char root[2048];
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_STARTTLS, "not-the-password");
	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	sendmail(r, root, "-m", "x", "-v", NULL);
	assert_int_equal(r->rc, 77);
	assert_contains(r->err, "Queued ");
	assert_lacks(r->err, "not-the-password");
	assert_int_equal(spool_count(root, OUTBOX_QUEUE), 1);
	assert_int_equal(peer_capture_count(p), 0);

	/* The operator fixes the password; the queued message goes out. */
	configure(root, p->port, ACCT_STARTTLS, PASS);
	struct registry *reg = NULL;
	struct dm_err err;
	struct outbox_stats st;
	dm_err_clear(&err);
	assert_int_equal(registry_open(root, &reg, &err), DM_OK);
	struct outbox *ob = NULL;
	assert_int_equal(submit_outbox_open(root, reg, &ob, &err), DM_OK);
	assert_int_equal(outbox_retry_now(ob, NULL, NULL, &err), DM_OK);
	outbox_close(ob);
	assert_int_equal(submit_deliver_due(root, reg, NULL, &st, &err), DM_OK);
	registry_close(reg);
	assert_int_equal(st.sent, 1);
	assert_int_equal(peer_capture_count(p), 1);
	assert_int_equal(spool_count(root, OUTBOX_QUEUE), 0);
	free(r);
}

/* Wrong password against a pipelining server (npm smtp-server): AUTH PLAIN
 * rides with MAIL/RCPT/DATA (RFC 4954 section 4); its 535 still means 77
 * and the message stays queued, and no body went out. */
static void test_wrong_password_pipelined(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, "--auth-methods", "PLAIN",
	                        NULL };
	struct peer *p = start_kind(PEER_SMTP_SERVER, "starttls", extra);
	char root[2048];
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_STARTTLS, "not-the-password");
	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	sendmail(r, root, "-m", "x", "-v", NULL);
	assert_int_equal(r->rc, 77);
	/* The AUTH and the MAIL left in one flight: the transcript shows
	 * MAIL before the 535 reply. */
	const char *auth = strstr(r->err, "AUTH PLAIN");
	const char *mail = strstr(r->err, "MAIL FROM:");
	const char *refused = strstr(r->err, "535");
	assert_non_null(auth);
	assert_non_null(mail);
	assert_non_null(refused);
	assert_true(auth < mail && mail < refused);
	assert_contains(r->err, "Queued ");
	assert_lacks(r->err, "not-the-password");
	assert_int_equal(spool_count(root, OUTBOX_QUEUE), 1);
	assert_int_equal(spool_count(root, OUTBOX_FAILED), 0);
	assert_int_equal(peer_capture_count(p), 0);

	configure(root, p->port, ACCT_STARTTLS, PASS);
	sendmail(r, root, "-m", "second", NULL);
	assert_int_equal(r->rc, 0);
	assert_contains(r->out, "AUTH PLAIN");
	assert_int_equal(peer_capture_count(p), 1);
	free(r);
}

/* No MailHost: 78 naming the key; nothing queued. */
static void test_no_mailhost(void **state)
{
	(void)state;
	char root[2048];
	new_root(root, sizeof root);
	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	sendmail(r, root, "-t", RCPT, "-f", FROM, "-m", "x", NULL);
	assert_int_equal(r->rc, 78);
	assert_contains(r->err, "Email/MailHost");
	assert_int_equal(spool_count(root, OUTBOX_QUEUE), 0);
	/* and no To anywhere: 78 naming Email/ToAddress */
	sendmail(r, root, "-f", FROM, "-m", "x", NULL);
	assert_int_equal(r->rc, 78);
	assert_contains(r->err, "Email/ToAddress");
	free(r);
}

/* Bad input: nothing reaches the spool. */
static void test_bad_input(void **state)
{
	(void)state;
	char root[2048], missing[PATH_MAX + 16];
	new_root(root, sizeof root);
	configure(root, 1, ACCT_STARTTLS, PASS);
	snprintf(missing, sizeof missing, "%s/no-such-file.pdf", root);
	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	sendmail(r, root, "-m", "x", "-a", missing, NULL);
	assert_int_equal(r->rc, 66);
	assert_contains(r->err, "no-such-file.pdf");
	sendmail(r, root, "-t", "not an address", "-m", "x", NULL);
	assert_int_equal(r->rc, 65);
	sendmail(r, root, "-t", RCPT, "-s", "two\r\nBcc: evil@example.com", "-m", "x", NULL);
	assert_int_equal(r->rc, 65);
	sendmail(r, root, "-t", RCPT, "-m", "x", "-F", "/etc/hostname", NULL);
	assert_int_equal(r->rc, 64);
	sendmail(r, root, "-t", RCPT, "stray", NULL);
	assert_int_equal(r->rc, 64);
	assert_int_equal(spool_count(root, OUTBOX_QUEUE), 0);
	assert_int_equal(spool_count(root, OUTBOX_FAILED), 0);

	/* -q only queues (port 1 would refuse the connection) */
	sendmail(r, root, "-q", "-m", "later", NULL);
	assert_int_equal(r->rc, 0);
	assert_contains(r->out, "Queued ");
	assert_int_equal(spool_count(root, OUTBOX_QUEUE), 1);
	free(r);
}

/* Body from stdin through the devmail binary. */
static void test_stdin_body(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, NULL };
	struct peer *p = start_peer("starttls-required", extra);
	char root[2048], body[PATH_MAX + 16], bin[PATH_MAX];
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_STARTTLS, PASS);
	snprintf(body, sizeof body, "%s/body.txt", root);
	FILE *f = fopen(body, "w");
	assert_non_null(f);
	fputs("line one from stdin\nline two\n", f);
	fclose(f);
	const char *bd = getenv("DEVMAIL_BUILD_DIR");
	assert_non_null(bd);
	snprintf(bin, sizeof bin, "%s/devmail", bd);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(body, O_RDONLY);
		int nul = open("/dev/null", O_WRONLY);
		if (fd < 0 || nul < 0)
			_exit(127);
		dup2(fd, 0);
		dup2(nul, 1);
		execl(bin, "devmail", "--root", root, "SENDMAIL", "-s", "stdin", NULL);
		_exit(127);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	struct peer_message m;
	load(p, 1, &m);
	assert_non_null(memmem(m.body, m.body_len, "line one from stdin\r\nline two", 29));
	peer_message_free(&m);
}

/* A large message on a terminal: the progress bar reaches 100 %. */
static void test_progress_tty(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, NULL };
	struct peer *p = start_peer("starttls-required", extra);
	char root[2048], att[2100], bin[PATH_MAX];
	struct dm_err err;
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_STARTTLS, PASS);
	snprintf(att, sizeof att, "%s/big.bin", root);
	dm_err_clear(&err);
	assert_int_equal(peer_write_random_file(att, 2 * 1024 * 1024, 3, &err), DM_OK);
	const char *bd = getenv("DEVMAIL_BUILD_DIR");
	assert_non_null(bd);
	snprintf(bin, sizeof bin, "%s/devmail", bd);
	int master = -1;
	pid_t pid = forkpty(&master, NULL, NULL, NULL);
	assert_true(pid >= 0);
	if (pid == 0) {
		execl(bin, "devmail", "--root", root, "SENDMAIL", "-m", "big", "-a", att,
		      NULL);
		_exit(127);
	}
	char *buf = calloc(1, 65536);
	assert_non_null(buf);
	size_t len = 0;
	for (int rounds = 0; rounds < 600 && len + 1 < 65536; rounds++) {
		struct pollfd pfd = { master, POLLIN, 0 };
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		ssize_t n = read(master, buf + len, 65535 - len);
		if (n <= 0)
			break;   /* EIO once the child has closed the terminal */
		len += (size_t)n;
	}
	close(master);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("exit %d: %s", WEXITSTATUS(status), buf);
	assert_contains(buf, "100% ");
	assert_contains(buf, " MiB");
	assert_contains(buf, "Sent to " RCPT);
	free(buf);
	assert_int_equal(peer_capture_count(p), 1);
}

/* Raw messages (devmail-sendmail): Date/Message-ID added, LF -> CRLF,
 * recipients from the header with Bcc dropped; two messages over one
 * connection with submit_deliver_due. */
struct strsrc {
	const char *s;
	size_t len, off;
};

static enum dm_status strsrc_read(void *ctx, char *buf, size_t cap, size_t *got,
                                  struct dm_err *err)
{
	(void)err;
	struct strsrc *s = ctx;
	size_t n = s->len - s->off < cap ? s->len - s->off : cap;
	if (n > 7)
		n = 7;   /* small chunks: the header scan must join them */
	memcpy(buf, s->s + s->off, n);
	s->off += n;
	*got = n;
	return DM_OK;
}

static int report_cb_count;
static void report_cb(void *ctx, const struct submit_report *r)
{
	(void)ctx;
	assert_int_equal(r->outcome, SUBMIT_SENT);
	assert_int_equal(r->exit_code, 0);
	assert_true(strncmp(r->line, "Sent to ", 8) == 0);
	report_cb_count++;
}

static void test_raw_batch(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, NULL };
	struct peer *p = start_peer("starttls-required", extra);
	char root[2048], id1[OUTBOX_ID_MAX], id2[OUTBOX_ID_MAX];
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_STARTTLS, PASS);
	struct registry *reg = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(registry_open(root, &reg, &err), DM_OK);

	const char *m1 = "From: Cron <cron@example.org>\nTo: ops@example.net\n"
	                 "Bcc: secret@example.net,\n other@example.net\n"
	                 "Subject: nightly\n\nall good\n.\nend";
	struct strsrc s1 = { m1, strlen(m1), 0 };
	struct submit_raw raw = { .src = { strsrc_read, &s1 },
	                          .rcpt_from_headers = true, .hostname = "unit.test" };
	assert_int_equal(submit_enqueue_raw(root, reg, &raw, 0, id1, &err), DM_OK);
	const char *m2 = "Subject: second\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	                 "\r\nbody two\r\n";
	struct strsrc s2 = { m2, strlen(m2), 0 };
	const char *rc2[] = { "x@example.net" };
	struct submit_raw raw2 = { .src = { strsrc_read, &s2 }, .rcpt = rc2, .nrcpt = 1 };
	assert_int_equal(submit_enqueue_raw(root, reg, &raw2, 0, id2, &err), DM_OK);

	/* no recipient at all: refused, nothing queued */
	struct strsrc s3 = { "Subject: x\n\ny\n", 14, 0 };
	char id3[OUTBOX_ID_MAX];
	struct submit_raw raw3 = { .src = { strsrc_read, &s3 } };
	assert_int_equal(submit_enqueue_raw(root, reg, &raw3, 0, id3, &err), DM_EINVAL);
	assert_int_equal(spool_count(root, OUTBOX_QUEUE), 2);

	/* one session: the captures come in queue order */
	struct submit_hooks hooks = { .report = report_cb, .sessions = 1 };
	struct outbox_stats st;
	report_cb_count = 0;
	assert_int_equal(submit_deliver_due(root, reg, &hooks, &st, &err), DM_OK);
	registry_close(reg);
	assert_int_equal(st.sent, 2);
	assert_int_equal(report_cb_count, 2);
	assert_int_equal(peer_capture_count(p), 2);

	struct peer_message m;
	char v[512];
	load(p, 1, &m);
	assert_string_equal(m.mail_from, "cron@example.org");
	assert_int_equal(m.nrcpt, 3);
	assert_string_equal(m.rcpt[1], "secret@example.net");
	assert_false(peer_message_header(&m, "Bcc", v, sizeof v));
	assert_null(memmem(m.data, m.data_len, "other@", 6));
	assert_true(peer_message_header(&m, "Date", v, sizeof v));
	assert_true(peer_message_header(&m, "Message-ID", v, sizeof v));
	assert_contains(v, "@unit.test>");
	for (size_t i = 0; i < m.data_len; i++)
		if (m.data[i] == '\n' && (i == 0 || m.data[i - 1] != '\r'))
			fail_msg("bare LF at %zu", i);
	assert_non_null(memmem(m.body, m.body_len, "all good\r\n.\r\nend\r\n", 18));
	peer_message_free(&m);
	load(p, 2, &m);
	assert_string_equal(m.mail_from, FROM);   /* from the registry */
	assert_true(peer_message_header(&m, "From", v, sizeof v));
	assert_contains(v, FROM);
	assert_true(peer_message_header(&m, "Date", v, sizeof v));
	assert_string_equal(v, "Mon, 1 Jan 2024 00:00:00 +0000");
	peer_message_free(&m);
}

/* More messages in one run than the report array's first capacity (8):
 * every report must name its own message, down and up. */
#define MANY 20
struct many {
	char id[MANY][OUTBOX_ID_MAX];
	unsigned seen[MANY];
	unsigned reports;
	enum submit_outcome want;
};

static void many_report(void *ctx, const struct submit_report *r)
{
	struct many *m = ctx;
	m->reports++;
	for (size_t i = 0; i < MANY; i++) {
		if (strcmp(r->id, m->id[i]) != 0)
			continue;
		m->seen[i]++;
		if (r->outcome != m->want)
			fail_msg("%s: outcome %d, want %d: %s", r->id, (int)r->outcome,
			         (int)m->want, r->line);
		char want[128];
		if (m->want == SUBMIT_SENT) {
			snprintf(want, sizeof want, "Sent to r%02zu@example.net via ", i);
			assert_int_equal(r->exit_code, 0);
		} else {
			snprintf(want, sizeof want, "Queued %s for retry: ", r->id);
			assert_int_equal(r->exit_code, 75);
		}
		if (strncmp(r->line, want, strlen(want)) != 0)
			fail_msg("report of %s: expected \"%s...\", got \"%s\"", r->id,
			         want, r->line);
		return;
	}
	fail_msg("report for an unknown id '%s': %s", r->id, r->line);
}

static void test_batch_many(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, NULL };
	struct peer *p = start_peer("starttls-required", extra);
	unsigned port = p->port;
	peer_stop(p);
	char root[2048];
	new_root(root, sizeof root);
	configure(root, port, ACCT_STARTTLS, PASS);
	struct registry *reg = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(registry_open(root, &reg, &err), DM_OK);
	struct many *m = calloc(1, sizeof *m);
	assert_non_null(m);
	for (size_t i = 0; i < MANY; i++) {
		char to[64];
		snprintf(to, sizeof to, "r%02zu@example.net", i);
		const char *rc[] = { to };
		struct strsrc s = { "Subject: many\n\nx\n", 17, 0 };
		struct submit_raw raw = { .src = { strsrc_read, &s }, .rcpt = rc,
		                          .nrcpt = 1 };
		assert_int_equal(submit_enqueue_raw(root, reg, &raw, 0, m->id[i], &err),
		                 DM_OK);
	}
	struct submit_hooks hooks = { .report = many_report, .report_ctx = m };
	struct outbox_stats st;

	/* server down: one session failure, twenty deferred reports */
	m->want = SUBMIT_DEFERRED;
	assert_int_equal(submit_deliver_due(root, reg, &hooks, &st, &err), DM_OK);
	assert_int_equal(st.deferred, MANY);
	assert_int_equal(m->reports, MANY);
	for (size_t i = 0; i < MANY; i++)
		assert_int_equal(m->seen[i], 1);

	/* server up (new port): all due again, twenty sent over one session */
	p = start_peer("starttls-required", extra);
	registry_close(reg);
	configure(root, p->port, ACCT_STARTTLS, PASS);
	assert_int_equal(registry_open(root, &reg, &err), DM_OK);
	struct outbox *ob = NULL;
	assert_int_equal(outbox_open(root, NULL, &ob, &err), DM_OK);
	assert_int_equal(outbox_retry_now(ob, NULL, NULL, &err), DM_OK);
	outbox_close(ob);
	memset(m->seen, 0, sizeof m->seen);
	m->reports = 0;
	m->want = SUBMIT_SENT;
	assert_int_equal(submit_deliver_due(root, reg, &hooks, &st, &err), DM_OK);
	registry_close(reg);
	assert_int_equal(st.sent, MANY);
	assert_int_equal(m->reports, MANY);
	for (size_t i = 0; i < MANY; i++)
		assert_int_equal(m->seen[i], 1);
	assert_int_equal(peer_capture_count(p), MANY);
	assert_int_equal(spool_count(root, OUTBOX_QUEUE), 0);
	free(m);
}

/* The client side of the transcript, one line each. */
struct mailfrom_lines {
	char line[4][512];
	size_t n;
};

static void mailfrom_collect(void *ctx, enum smtp_dir dir, const char *line)
{
	struct mailfrom_lines *t = ctx;
	if (dir == SMTP_DIR_CLIENT && strncmp(line, "MAIL FROM:", 10) == 0 && t->n < 4)
		snprintf(t->line[t->n++], sizeof(t->line[0]), "%s", line);
}

/* A raw message with an 8-bit body and ASCII addresses goes out with
 * BODY=8BITMIME (RFC 6152 sec. 3): the flag is found as the bytes are
 * spooled and kept in the outbox across the enqueue/delivery reopen; a
 * 7-bit message in the same run goes without it. */
static void test_raw_8bit_body(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, NULL };
	struct peer *p = start_peer("starttls-required", extra);
	char root[2048], id1[OUTBOX_ID_MAX], id2[OUTBOX_ID_MAX];
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_STARTTLS, PASS);
	struct registry *reg = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(registry_open(root, &reg, &err), DM_OK);

	const char *m1 = "From: plant@example.org\nTo: ops@example.net\n"
	                 "Subject: boiler\nMIME-Version: 1.0\n"
	                 "Content-Type: text/plain; charset=utf-8\n"
	                 "Content-Transfer-Encoding: 8bit\n\n"
	                 "Kessel 2: 85 \xc2\xb0" "C, Druck gr\xc3\xb6\xc3\x9f" "er als 3 bar\n";
	struct strsrc s1 = { m1, strlen(m1), 0 };
	struct submit_raw raw = { .src = { strsrc_read, &s1 },
	                          .rcpt_from_headers = true, .hostname = "unit.test" };
	assert_int_equal(submit_enqueue_raw(root, reg, &raw, 0, id1, &err), DM_OK);
	const char *m2 = "From: plant@example.org\nTo: ops@example.net\n"
	                 "Subject: ascii\n\nall 7-bit\n";
	struct strsrc s2 = { m2, strlen(m2), 0 };
	struct submit_raw raw2 = { .src = { strsrc_read, &s2 },
	                           .rcpt_from_headers = true, .hostname = "unit.test" };
	assert_int_equal(submit_enqueue_raw(root, reg, &raw2, 0, id2, &err), DM_OK);

	struct mailfrom_lines t = { 0 };
	struct submit_hooks hooks = { .transcript = mailfrom_collect,
	                              .transcript_ctx = &t };
	struct outbox_stats st;
	assert_int_equal(submit_deliver_due(root, reg, &hooks, &st, &err), DM_OK);
	registry_close(reg);
	assert_int_equal(st.sent, 2);
	assert_int_equal(t.n, 2);
	/* oldest first: the 8-bit message, then the ASCII one */
	assert_contains(t.line[0], "MAIL FROM:<plant@example.org>");
	assert_contains(t.line[0], " BODY=8BITMIME");
	assert_lacks(t.line[0], "SMTPUTF8");
	assert_contains(t.line[1], "MAIL FROM:<plant@example.org>");
	assert_lacks(t.line[1], "BODY=8BITMIME");

	struct peer_message m;
	load(p, 1, &m);
	assert_false(m.smtputf8);
	assert_non_null(memmem(m.body, m.body_len, "85 \xc2\xb0" "C", 5));
	peer_message_free(&m);
}

/* Queues n messages with subjects "<tag>0".. with SENDMAIL -q. */
static void queue_n(struct run *r, const char *root, const char *tag, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		char subj[32], to[64];
		snprintf(subj, sizeof subj, "%s%u", tag, i);
		snprintf(to, sizeof to, "%s%u@example.net", tag, i);
		sendmail(r, root, "-q", "-t", to, "-s", subj, "-m", "queued", NULL);
		if (r->rc != 0)
			fail_msg("SENDMAIL -q: %d %s", r->rc, r->err);
	}
}

/* Checks that captures from..to-1 hold the subjects "<tag>0".."<tag>n-1"
 * once each; counts how many came over each connection into per[]. */
static void captures_once(const struct peer *p, unsigned from, const char *tag,
                          unsigned n, unsigned per[16])
{
	unsigned seen[64] = { 0 };
	assert_true(n <= 64);
	memset(per, 0, 16 * sizeof(*per));
	assert_int_equal(peer_capture_count(p), from - 1 + n);
	for (unsigned c = from; c < from + n; c++) {
		struct peer_message m;
		char v[64];
		load(p, c, &m);
		assert_true(peer_message_header(&m, "Subject", v, sizeof v));
		assert_true(strncmp(v, tag, strlen(tag)) == 0);
		unsigned i = (unsigned)atoi(v + strlen(tag));
		assert_true(i < n);
		seen[i]++;
		assert_true(m.session >= 1 && m.session < 16);
		per[m.session]++;
		peer_message_free(&m);
	}
	for (unsigned i = 0; i < n; i++)
		if (seen[i] != 1)
			fail_msg("%s%u delivered %u times", tag, i, seen[i]);
}

/* A server that takes 3 messages per connection (452 4.5.3 to the 4th
 * MAIL, as OpenSMTPD does past its limit): OUTBOX -a with Outbox/Sessions
 * 1 delivers all 10 exactly once, reconnecting when told and then every 3
 * messages - 4 connections - and the refusals are not attempts. */
static void test_session_limit(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, "--session-limit", "3", NULL };
	struct peer *p = start_peer("starttls-required", extra);
	char root[2048];
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_STARTTLS, PASS);
	set_key(root, "Outbox/Sessions", "1");
	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	queue_n(r, root, "lim", 10);
	outbox_cmd(r, root, "-a", NULL);
	if (r->rc != 0)
		fail_msg("rc %d\nout: %s\nerr: %s", r->rc, r->out, r->err);
	assert_contains(r->out, "10 sent, 0 deferred, 0 failed");
	size_t lines = 0;
	for (const char *q = r->out; (q = strstr(q, ": Sent to ")); q++)
		lines++;
	assert_int_equal(lines, 10);
	/* The reply text, not the digits: message IDs and ports are random
	 * and may hold "452". */
	assert_lacks(r->out, "4.5.3");
	assert_lacks(r->out, "Too many messages");
	unsigned per[16];
	captures_once(p, 1, "lim", 10, per);
	assert_int_equal(peer_connection_count(p), 4);
	assert_int_equal(per[1], 3);
	assert_int_equal(per[2], 3);
	assert_int_equal(per[3], 3);
	assert_int_equal(per[4], 1);
	assert_int_equal(spool_count(root, OUTBOX_QUEUE), 0);
	assert_int_equal(spool_count(root, OUTBOX_FAILED), 0);
	free(r);
}

/* AUTH answered 454 4.7.0 (temporary): exit 75, the message stays queued
 * with the attempt counted, and the line says it is queued for a retry and
 * why; the same through OUTBOX -a.  (535 is 77: test_wrong_password.) */
static void test_auth_454(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, "--auth-reply",
	                        "454 4.7.0 Temporary authentication failure", NULL };
	struct peer *p = start_peer("starttls-required", extra);
	char root[2048];
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_STARTTLS, PASS);
	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	sendmail(r, root, "-s", "auth later", "-m", "x", NULL);
	if (r->rc != 75)
		fail_msg("rc %d\nout: %s\nerr: %s", r->rc, r->out, r->err);
	assert_contains(r->err, "Queued ");
	assert_contains(r->err, " for retry: ");
	assert_contains(r->err, "454 4.7.0 Temporary authentication failure");
	assert_contains(r->err, "; next try in ");
	struct attempts_seen a;
	queue_attempts(root, &a);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.attempts[0], 1);
	assert_contains(a.error[0], "454 4.7.0");
	outbox_cmd(r, root, "-a", NULL);
	if (r->rc != 75)
		fail_msg("rc %d\nout: %s\nerr: %s", r->rc, r->out, r->err);
	assert_contains(r->out, "0 sent, 1 deferred, 0 failed");
	assert_contains(r->out, "454 4.7.0 Temporary authentication failure");
	queue_attempts(root, &a);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.attempts[0], 2);
	assert_int_equal(spool_count(root, OUTBOX_FAILED), 0);
	assert_int_equal(peer_capture_count(p), 0);
	free(r);
}

/* Outbox/Sessions 2: OUTBOX -a opens two connections that share the
 * queue, each message goes exactly once; with 1, one connection. */
static void test_sessions_parallel(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, NULL };
	struct peer *p = start_peer("starttls-required", extra);
	char root[2048];
	new_root(root, sizeof root);
	configure(root, p->port, ACCT_STARTTLS, PASS);
	set_key(root, "Outbox/Sessions", "2");
	struct run *r = calloc(1, sizeof *r);
	assert_non_null(r);
	queue_n(r, root, "par", 10);
	outbox_cmd(r, root, "-a", NULL);
	if (r->rc != 0)
		fail_msg("rc %d\nout: %s\nerr: %s", r->rc, r->out, r->err);
	assert_contains(r->out, "10 sent, 0 deferred, 0 failed");
	unsigned per[16];
	captures_once(p, 1, "par", 10, per);
	assert_int_equal(peer_connection_count(p), 2);
	assert_true(per[1] >= 1 && per[2] >= 1);
	assert_int_equal(per[1] + per[2], 10);

	set_key(root, "Outbox/Sessions", "1");
	queue_n(r, root, "one", 6);
	outbox_cmd(r, root, "-a", NULL);
	if (r->rc != 0)
		fail_msg("rc %d\nout: %s\nerr: %s", r->rc, r->out, r->err);
	captures_once(p, 11, "one", 6, per);
	assert_int_equal(peer_connection_count(p), 3);
	assert_int_equal(per[3], 6);
	assert_int_equal(spool_count(root, OUTBOX_QUEUE), 0);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_all_options_starttls, test_teardown),
		cmocka_unit_test_teardown(test_smtps_defaults, test_teardown),
		cmocka_unit_test_teardown(test_plaintext, test_teardown),
		cmocka_unit_test_teardown(test_help_retry, test_teardown),
		cmocka_unit_test_teardown(test_server_down, test_teardown),
		cmocka_unit_test_teardown(test_rcpt_refused, test_teardown),
		cmocka_unit_test_teardown(test_too_many_rcpt, test_teardown),
		cmocka_unit_test_teardown(test_many_rcpt_reason, test_teardown),
		cmocka_unit_test_teardown(test_wrong_password, test_teardown),
		cmocka_unit_test_teardown(test_wrong_password_pipelined, test_teardown),
		cmocka_unit_test_teardown(test_no_mailhost, test_teardown),
		cmocka_unit_test_teardown(test_bad_input, test_teardown),
		cmocka_unit_test_teardown(test_stdin_body, test_teardown),
		cmocka_unit_test_teardown(test_progress_tty, test_teardown),
		cmocka_unit_test_teardown(test_raw_batch, test_teardown),
		cmocka_unit_test_teardown(test_batch_many, test_teardown),
		cmocka_unit_test_teardown(test_raw_8bit_body, test_teardown),
		cmocka_unit_test_teardown(test_session_limit, test_teardown),
		cmocka_unit_test_teardown(test_auth_454, test_teardown),
		cmocka_unit_test_teardown(test_sessions_parallel, test_teardown),
	};
	return cmocka_run_group_tests_name("sendmail", tests, group_setup,
	                                   group_teardown);
}
