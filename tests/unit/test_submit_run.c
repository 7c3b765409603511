/*
 * test_submit_run.c - delivery runs of mail/submit against a fake server.
 *
 * submit_hooks.cancel: a cancel fired while a
 * session waits for the reply to the final dot ends the run at once; the
 * message the server accepted before is recorded as sent, the one whose
 * dot was not answered stays queued with no attempt counted (no retry
 * file, attempts 0, next try unchanged), and nothing more is started.
 *
 * The server is a plain-TCP fake on loopback (no PIPELINING, no
 * CHUNKING: lockstep DATA) that answers the first `accept` messages and
 * then swallows the rest without a reply.
 *
 * The dialogue of a failed message: stored beside it in spool/failed by
 * the library itself, without any transcript hook of the caller.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/registry.h"
#include "mail/submit.h"
#include "net/cancel.h"
#include "testroot.h"

struct fake {
	int ls;
	unsigned port;
	unsigned accept;           /* messages answered with 250 */
	bool refuse_rcpt;          /* 550 to every RCPT */
	atomic_uint connections;
	atomic_uint received;      /* final dots seen */
	atomic_bool hanging;       /* a dot is left without a reply */
	pthread_t th;
};

static void say(int fd, const char *s)
{
	ssize_t r = write(fd, s, strlen(s));
	(void)r;
}

/* Reads one CRLF line into buf (at most cap - 1 bytes); false at EOF. */
static bool read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r <= 0)
			return false;
		if (n + 1 < cap)
			buf[n++] = c;
		if (c == '\n')
			break;
	}
	buf[n] = '\0';
	return true;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int c = accept(f->ls, NULL, NULL);
	char line[2048];

	if (c < 0)
		return NULL;
	atomic_fetch_add(&f->connections, 1);
	say(c, "220 fake ESMTP\r\n");
	while (read_line(c, line, sizeof(line))) {
		if (!strncasecmp(line, "EHLO", 4)) {
			say(c, "250-fake\r\n250 8BITMIME\r\n");
		} else if (!strncasecmp(line, "RCPT", 4) && f->refuse_rcpt) {
			say(c, "550 5.1.1 no such user here\r\n");
		} else if (!strncasecmp(line, "MAIL", 4) ||
		           !strncasecmp(line, "RCPT", 4) ||
		           !strncasecmp(line, "RSET", 4)) {
			say(c, "250 ok\r\n");
		} else if (!strncasecmp(line, "DATA", 4)) {
			say(c, "354 go on\r\n");
			while (read_line(c, line, sizeof(line)) && strcmp(line, ".\r\n"))
				;
			unsigned k = atomic_fetch_add(&f->received, 1);
			if (k < f->accept) {
				say(c, "250 2.0.0 queued\r\n");
				continue;
			}
			atomic_store(&f->hanging, true);
			while (read(c, line, sizeof(line)) > 0)   /* never answers */
				;
			break;
		} else if (!strncasecmp(line, "QUIT", 4)) {
			say(c, "221 bye\r\n");
			break;
		} else {
			say(c, "502 no\r\n");
		}
	}
	close(c);
	return NULL;
}

static void fake_start(struct fake *f, unsigned accept, bool refuse_rcpt)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);

	memset(f, 0, sizeof(*f));
	f->accept = accept;
	f->refuse_rcpt = refuse_rcpt;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->ls >= 0);
	assert_int_equal(bind(f->ls, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f->ls, 4), 0);
	assert_int_equal(getsockname(f->ls, (struct sockaddr *)&a, &len), 0);
	f->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
	shutdown(f->ls, SHUT_RDWR);
	close(f->ls);
	pthread_join(f->th, NULL);
}

static void setup_account(struct registry *reg, unsigned port)
{
	char p[16];
	snprintf(p, sizeof(p), "%u", port);
	assert_int_equal(registry_set(reg, "Email/MailHost", "127.0.0.1", NULL, NULL), DM_OK);
	assert_int_equal(registry_set(reg, "Email/Port", p, NULL, NULL), DM_OK);
	assert_int_equal(registry_set(reg, "Email/StartTLS", "false", NULL, NULL), DM_OK);
	assert_int_equal(registry_set(reg, "Email/FromAddress", "dev@x.test", NULL, NULL), DM_OK);
	assert_int_equal(registry_set(reg, "Email/ToAddress", "ops@x.test", NULL, NULL), DM_OK);
	assert_int_equal(registry_set(reg, "Outbox/Sessions", "1", NULL, NULL), DM_OK);
}

static void enqueue(const char *root, struct registry *reg, const char *subject,
                    char id[OUTBOX_ID_MAX])
{
	struct message_spec spec;
	memset(&spec, 0, sizeof(spec));
	spec.from = "dev@x.test";
	spec.subject = subject;
	spec.body = "hello\n";
	spec.body_len = 6;
	spec.hostname = "x.test";
	assert_int_equal(submit_enqueue_message(root, reg, &spec, 0, id, NULL), DM_OK);
}

struct collect {
	size_t n;
	struct submit_report r[4];
};

static void on_report(void *ctx, const struct submit_report *r)
{
	struct collect *c = ctx;
	if (c->n < 4)
		c->r[c->n++] = *r;
}

struct run {
	const char *root;
	struct submit_hooks h;
	struct outbox_stats stats;
	enum dm_status st;
};

static void *run_main(void *arg)
{
	struct run *r = arg;
	struct registry *reg = NULL;
	if (registry_open(r->root, &reg, NULL) != DM_OK) {
		r->st = DM_EIO;
		return NULL;
	}
	r->st = submit_deliver_due(r->root, reg, &r->h, &r->stats, NULL);
	registry_close(reg);
	return NULL;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (long)(t1.tv_sec - t0->tv_sec) * 1000 +
	       (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

struct attempts_ctx {
	unsigned attempts;
	bool seen;
};

static int get_attempts(void *ctx, const struct outbox_item *it)
{
	struct attempts_ctx *a = ctx;
	a->attempts = it->attempts;
	a->seen = true;
	return 0;
}

/* A cancel while the second message's dot waits for its reply. */
static void test_cancel_mid_data(void **state)
{
	struct testroot_reg *f = *state;
	struct fake srv;
	char id1[OUTBOX_ID_MAX], id2[OUTBOX_ID_MAX];
	struct cancel *cx = NULL;
	struct collect col = { 0 };
	struct run run;
	pthread_t th;
	struct timespec t0;

	fake_start(&srv, 1, false);
	setup_account(f->reg, srv.port);
	enqueue(f->root, f->reg, "first", id1);
	enqueue(f->root, f->reg, "second", id2);
	assert_int_equal(cancel_new(&cx, NULL), DM_OK);

	memset(&run, 0, sizeof(run));
	run.root = f->root;
	run.h.report = on_report;
	run.h.report_ctx = &col;
	run.h.cancel = cx;
	assert_int_equal(pthread_create(&th, NULL, run_main, &run), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!atomic_load(&srv.hanging) && ms_since(&t0) < 10000)
		poll(NULL, 0, 5);
	assert_true(atomic_load(&srv.hanging));
	poll(NULL, 0, 50);               /* well inside the wait for the reply */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cancel_fire(cx);
	pthread_join(th, NULL);
	long took = ms_since(&t0);
	assert_true(took < 1000);        /* promptly, not at a timeout */
	assert_int_equal(run.st, DM_OK);

	/* The first was accepted and is recorded as sent; the second stays
	 * queued, untouched. */
	assert_int_equal(col.n, 2);
	assert_string_equal(col.r[0].id, id1);
	assert_int_equal(col.r[0].outcome, SUBMIT_SENT);
	assert_string_equal(col.r[1].id, id2);
	assert_int_equal(col.r[1].outcome, SUBMIT_DEFERRED);
	assert_int_equal(col.r[1].status, DM_ECANCELED);
	assert_int_equal(col.r[1].next_try_in, 0);
	assert_non_null(strstr(col.r[1].line, "cancelled"));
	assert_int_equal(run.stats.sent, 1);
	assert_int_equal(run.stats.deferred, 0);
	assert_int_equal(run.stats.canceled, 1);
	assert_int_equal(atomic_load(&srv.connections), 1);

	struct outbox *ob = NULL;
	struct attempts_ctx a = { 99, false };
	assert_int_equal(submit_outbox_open(f->root, f->reg, &ob, NULL), DM_OK);
	assert_int_equal(outbox_get(ob, OUTBOX_QUEUE, id1, get_attempts, &a, NULL),
	                 DM_ENOTFOUND);
	assert_int_equal(outbox_get(ob, OUTBOX_QUEUE, id2, get_attempts, &a, NULL),
	                 DM_OK);
	assert_true(a.seen);
	assert_int_equal(a.attempts, 0);
	outbox_close(ob);
	char path[512];
	struct stat sb;
	snprintf(path, sizeof(path), "%s/spool/queue/%s/retry", f->root, id2);
	assert_int_not_equal(stat(path, &sb), 0);   /* no retry state written */

	cancel_free(cx);
	fake_stop(&srv);
}

/* A cancel fired before the run: no connection, nothing attempted. */
static void test_cancel_before(void **state)
{
	struct testroot_reg *f = *state;
	struct fake srv;
	char id[OUTBOX_ID_MAX];
	struct cancel *cx = NULL;
	struct collect col = { 0 };
	struct run run;

	fake_start(&srv, 1, false);
	setup_account(f->reg, srv.port);
	enqueue(f->root, f->reg, "only", id);
	assert_int_equal(cancel_new(&cx, NULL), DM_OK);
	cancel_fire(cx);
	memset(&run, 0, sizeof(run));
	run.root = f->root;
	run.h.report = on_report;
	run.h.report_ctx = &col;
	run.h.cancel = cx;
	run_main(&run);
	assert_int_equal(run.st, DM_OK);
	assert_int_equal(col.n, 0);
	assert_int_equal(run.stats.sent + run.stats.deferred + run.stats.failed, 0);
	assert_int_equal(atomic_load(&srv.connections), 0);
	cancel_free(cx);
	fake_stop(&srv);
}

/* A 550 to RCPT: the message goes to failed with its dialogue, kept by
 * the library (no transcript hook here). */
static void test_failed_dialogue(void **state)
{
	struct testroot_reg *f = *state;
	struct fake srv;
	char id[OUTBOX_ID_MAX], path[512];
	struct collect col = { 0 };
	struct run run;

	fake_start(&srv, 1, true);
	setup_account(f->reg, srv.port);
	enqueue(f->root, f->reg, "refused", id);
	memset(&run, 0, sizeof(run));
	run.root = f->root;
	run.h.report = on_report;
	run.h.report_ctx = &col;
	run_main(&run);
	assert_int_equal(run.st, DM_OK);
	assert_int_equal(col.n, 1);
	assert_int_equal(col.r[0].outcome, SUBMIT_FAILED);
	snprintf(path, sizeof(path), "%s/spool/failed/%s/dialogue", f->root, id);
	char *text = testroot_slurp(path, NULL);
	assert_non_null(text);
	assert_non_null(strstr(text, ">>> RCPT TO:<ops@x.test>"));
	assert_non_null(strstr(text, "<<< 550 5.1.1 no such user here"));
	free(text);
	fake_stop(&srv);
}

static int setup(void **state) { return testroot_reg_setup(state, "cancel"); }
static int teardown(void **state) { return testroot_reg_teardown(state); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cancel_mid_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_before, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_dialogue, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
