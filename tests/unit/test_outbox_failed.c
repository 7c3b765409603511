/*
 * test_outbox_failed.c - the outbox functions behind OUTBOX -f ID,
 * OUTBOX -R ID and ids given by a prefix: outbox_resolve (whole id, unique
 * prefix, ambiguous, none, where), outbox_get, the dialogue kept with a
 * failed message (save, read, last lines kept, one line each, damaged
 * file, locked message), and outbox_requeue (fresh attempts, created now,
 * dialogue dropped, delivered afterwards, a crash between its two steps
 * completed by running it again, damaged and unknown entries refused).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/paths.h"
#include "mail/outbox.h"
#include "testroot.h"

struct clockctx {
	time_t now;
};

static time_t fake_clock(void *ctx) { return ((struct clockctx *)ctx)->now; }
static double fake_jitter(void *ctx) { (void)ctx; return 0.0; }

struct fx {
	char root[256];
	struct clockctx cc;
	struct outbox *ob;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f || !testroot_make("obfailed", f->root, sizeof(f->root)))
		return -1;
	f->cc.now = 1700000000;
	struct outbox_options opt = {
		.clock = fake_clock, .jitter = fake_jitter, .hook_ctx = &f->cc,
	};
	if (outbox_open(f->root, &opt, &f->ob, NULL) != DM_OK)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	outbox_close(f->ob);
	int rc = testroot_remove(f->root);
	free(f);
	return rc;
}

struct memsrc {
	const char *p;
	size_t len, off;
};

static enum dm_status memsrc_read(void *ctx, char *buf, size_t cap, size_t *got,
                                  struct dm_err *err)
{
	struct memsrc *m = ctx;
	size_t n = m->len - m->off;
	(void)err;
	if (n > cap)
		n = cap;
	memcpy(buf, m->p + m->off, n);
	m->off += n;
	*got = n;
	return DM_OK;
}

static const char MSG[] = "From: a@example.com\r\nTo: b@example.com\r\n"
                          "Subject: s\r\n\r\nbody\r\n";

static void enqueue(struct fx *f, char id[OUTBOX_ID_MAX])
{
	static const char *const rcpt[] = { "b@example.com" };
	struct outbox_envelope env = { .from = "a@example.com", .rcpt = rcpt,
	                               .nrcpt = 1 };
	struct memsrc ms = { MSG, sizeof(MSG) - 1, 0 };
	struct mail_source src = { memsrc_read, &ms };
	assert_int_equal(outbox_enqueue(f->ob, &env, &src, id, NULL), DM_OK);
}

struct fixed_status {
	enum dm_status status;
	unsigned calls;
};

static enum dm_status verdict_fn(void *ctx, const struct outbox_item *item,
                                 const struct mail_source *msg, char *detail,
                                 size_t detail_cap, struct dm_err *err)
{
	struct fixed_status *v = ctx;
	(void)item;
	(void)msg;
	(void)detail;
	(void)detail_cap;
	v->calls++;
	if (v->status != DM_OK) {
		dm_err_set(err, v->status, "test refusal");
		err->smtp_code = 550;
		snprintf(err->enhanced, sizeof(err->enhanced), "5.1.1");
		snprintf(err->server_text, sizeof(err->server_text), "No such user");
	}
	return v->status;
}

/* Enqueues a message and fails it permanently. */
static void make_failed(struct fx *f, char id[OUTBOX_ID_MAX])
{
	struct fixed_status v = { DM_EPERMFAIL, 0 };
	enqueue(f, id);
	assert_int_equal(outbox_deliver(f->ob, id, verdict_fn, &v, NULL, NULL),
	                 DM_EPERMFAIL);
	assert_int_equal(v.calls, 1);
}

static char *spool_file(struct fx *f, const char *which, const char *id,
                        const char *file)
{
	char path[DM_PATH_MAX];
	snprintf(path, sizeof(path), "%s/spool/%s/%s/%s", f->root, which, id, file);
	return testroot_slurp(path, NULL);
}

/* ---- outbox_resolve ------------------------------------------------------ */

static void test_resolve(void **state)
{
	struct fx *f = *state;
	char q1[OUTBOX_ID_MAX], q2[OUTBOX_ID_MAX], fl[OUTBOX_ID_MAX];
	char id[OUTBOX_ID_MAX], pre[OUTBOX_ID_MAX];
	enum outbox_which where;
	struct dm_err err;

	enqueue(f, q1);
	enqueue(f, q2);
	make_failed(f, fl);

	/* Whole ids, each where it is. */
	assert_int_equal(outbox_resolve(f->ob, OUTBOX_IN_QUEUE | OUTBOX_IN_FAILED,
	                                q1, id, &where, NULL), DM_OK);
	assert_string_equal(id, q1);
	assert_int_equal(where, OUTBOX_QUEUE);
	assert_int_equal(outbox_resolve(f->ob, OUTBOX_IN_QUEUE | OUTBOX_IN_FAILED,
	                                fl, id, &where, NULL), DM_OK);
	assert_string_equal(id, fl);
	assert_int_equal(where, OUTBOX_FAILED);

	/* The ids differ in their random tail: the shortest unique prefixes. */
	size_t common = 0;
	while (q1[common] && q1[common] == q2[common])
		common++;
	assert_true(common < strlen(q1));
	snprintf(pre, sizeof(pre), "%.*s", (int)common + 1, q1);
	/* q1's prefix may also match fl's id; only the queue is asked. */
	dm_err_clear(&err);
	enum dm_status st = outbox_resolve(f->ob, OUTBOX_IN_QUEUE, pre, id, &where,
	                                   &err);
	assert_int_equal(st, DM_OK);
	assert_string_equal(id, q1);

	/* A prefix shared by all three: ambiguous, names them and the count. */
	size_t all = 0;
	while (q1[all] && q1[all] == q2[all] && q1[all] == fl[all])
		all++;
	assert_true(all >= 8);     /* the same date */
	snprintf(pre, sizeof(pre), "%.*s", 8, q1);
	dm_err_clear(&err);
	assert_int_equal(outbox_resolve(f->ob, OUTBOX_IN_QUEUE | OUTBOX_IN_FAILED,
	                                pre, id, NULL, &err), DM_EINVAL);
	assert_non_null(strstr(err.msg, "matches 3 messages"));
	assert_non_null(strstr(err.msg, q1));
	assert_string_equal(id, "");
	/* Only failed: the same prefix is unique there. */
	assert_int_equal(outbox_resolve(f->ob, OUTBOX_IN_FAILED, pre, id, &where,
	                                NULL), DM_OK);
	assert_string_equal(id, fl);
	assert_int_equal(where, OUTBOX_FAILED);

	/* No match, bad characters. */
	dm_err_clear(&err);
	assert_int_equal(outbox_resolve(f->ob, OUTBOX_IN_QUEUE, "19990101", id,
	                                NULL, &err), DM_ENOTFOUND);
	assert_non_null(strstr(err.msg, "19990101"));
	dm_err_clear(&err);
	assert_int_equal(outbox_resolve(f->ob, OUTBOX_IN_QUEUE, "../x", id, NULL,
	                                &err), DM_EINVAL);
	assert_int_equal(outbox_resolve(f->ob, OUTBOX_IN_QUEUE, "", id, NULL,
	                                NULL), DM_EINVAL);
}

/* ---- outbox_get ------------------------------------------------------------ */

struct got {
	unsigned calls;
	char id[OUTBOX_ID_MAX];
	char err[1024];
	unsigned attempts;
	bool failed, damaged;
};

static int got_fn(void *ctx, const struct outbox_item *it)
{
	struct got *g = ctx;
	g->calls++;
	snprintf(g->id, sizeof(g->id), "%s", it->id);
	snprintf(g->err, sizeof(g->err), "%s", it->last_error);
	g->attempts = it->attempts;
	g->failed = it->failed;
	g->damaged = it->damaged;
	return 0;
}

static void test_get(void **state)
{
	struct fx *f = *state;
	char q[OUTBOX_ID_MAX], fl[OUTBOX_ID_MAX];
	struct got g = { 0 };
	struct dm_err err;

	enqueue(f, q);
	make_failed(f, fl);
	assert_int_equal(outbox_get(f->ob, OUTBOX_FAILED, fl, got_fn, &g, NULL), DM_OK);
	assert_int_equal(g.calls, 1);
	assert_string_equal(g.id, fl);
	assert_true(g.failed && !g.damaged);
	assert_int_equal(g.attempts, 1);
	assert_non_null(strstr(g.err, "test refusal"));
	assert_non_null(strstr(g.err, "550 5.1.1 No such user"));

	memset(&g, 0, sizeof(g));
	assert_int_equal(outbox_get(f->ob, OUTBOX_QUEUE, q, got_fn, &g, NULL), DM_OK);
	assert_true(g.calls == 1 && !g.failed && g.attempts == 0);

	dm_err_clear(&err);
	assert_int_equal(outbox_get(f->ob, OUTBOX_QUEUE, fl, got_fn, &g, &err),
	                 DM_ENOTFOUND);
	assert_non_null(strstr(err.msg, "outbox queue"));

	/* A damaged envelope is handed over as such. */
	char path[DM_PATH_MAX];
	snprintf(path, sizeof(path), "%s/spool/queue/%s/env", f->root, q);
	assert_int_equal(testroot_write(path, "DEVMAIL-OUTBOX 1\ngarbage"), 0);
	memset(&g, 0, sizeof(g));
	assert_int_equal(outbox_get(f->ob, OUTBOX_QUEUE, q, got_fn, &g, NULL), DM_OK);
	assert_true(g.calls == 1 && g.damaged);
	assert_non_null(strstr(g.err, "malformed"));
}

/* ---- dialogue ---------------------------------------------------------------- */

struct lines {
	size_t n;
	char line[64][OUTBOX_DIALOGUE_LINE_MAX];
};

static void lines_fn(void *ctx, const char *line)
{
	struct lines *l = ctx;
	if (l->n < 64)
		snprintf(l->line[l->n++], OUTBOX_DIALOGUE_LINE_MAX, "%s", line);
}

static void test_dialogue(void **state)
{
	struct fx *f = *state;
	char fl[OUTBOX_ID_MAX];
	struct lines *l = calloc(1, sizeof(*l));
	struct dm_err err;
	char long_line[2000];
	const char *some[40];
	char buf[40][32];

	assert_non_null(l);
	make_failed(f, fl);
	/* Nothing stored yet: no lines, no error. */
	assert_int_equal(outbox_dialogue_read(f->ob, OUTBOX_FAILED, fl, lines_fn, l,
	                                      NULL), DM_OK);
	assert_int_equal(l->n, 0);

	const char *three[] = { ">>> MAIL FROM:<a@example.com>",
	                        "<<< 550 5.1.1 No such user\r\n\x1b[31mred",
	                        "--- message 1 not sent: refused" };
	assert_int_equal(outbox_dialogue_save(f->ob, OUTBOX_FAILED, fl, three, 3,
	                                      NULL), DM_OK);
	assert_int_equal(outbox_dialogue_read(f->ob, OUTBOX_FAILED, fl, lines_fn, l,
	                                      NULL), DM_OK);
	assert_int_equal(l->n, 3);
	assert_string_equal(l->line[0], three[0]);
	/* CR, LF, ESC: one line, controls shown as spaces */
	assert_null(strchr(l->line[1], '\x1b'));
	assert_null(strchr(l->line[1], '\n'));
	assert_non_null(strstr(l->line[1], "No such user"));
	assert_string_equal(l->line[2], three[2]);
	char *text = spool_file(f, "failed", fl, "dialogue");
	assert_non_null(text);
	assert_true(strncmp(text, "DEVMAIL-DIALOGUE 1\n", 19) == 0);
	free(text);

	/* Forty lines: the last OUTBOX_DIALOGUE_LINES are kept; a long line is
	 * cut; the new dialogue replaces the old one. */
	for (int i = 0; i < 40; i++) {
		snprintf(buf[i], sizeof(buf[i]), "line %d", i);
		some[i] = buf[i];
	}
	memset(long_line, 'x', sizeof(long_line) - 1);
	long_line[sizeof(long_line) - 1] = '\0';
	some[39] = long_line;
	assert_int_equal(outbox_dialogue_save(f->ob, OUTBOX_FAILED, fl, some, 40,
	                                      NULL), DM_OK);
	memset(l, 0, sizeof(*l));
	assert_int_equal(outbox_dialogue_read(f->ob, OUTBOX_FAILED, fl, lines_fn, l,
	                                      NULL), DM_OK);
	assert_int_equal(l->n, OUTBOX_DIALOGUE_LINES);
	char want[32];
	snprintf(want, sizeof(want), "line %d", 40 - OUTBOX_DIALOGUE_LINES);
	assert_string_equal(l->line[0], want);
	assert_int_equal(strlen(l->line[OUTBOX_DIALOGUE_LINES - 1]),
	                 OUTBOX_DIALOGUE_LINE_MAX - 1);

	/* Unknown message; message locked by a deliverer. */
	dm_err_clear(&err);
	assert_int_equal(outbox_dialogue_save(f->ob, OUTBOX_QUEUE, fl, three, 3,
	                                      &err), DM_ENOTFOUND);
	assert_int_equal(outbox_dialogue_read(f->ob, OUTBOX_QUEUE, fl, lines_fn, l,
	                                      NULL), DM_ENOTFOUND);
	char path[DM_PATH_MAX];
	snprintf(path, sizeof(path), "%s/spool/failed/%s/msg", f->root, fl);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	dm_err_clear(&err);
	assert_int_equal(outbox_dialogue_save(f->ob, OUTBOX_FAILED, fl, three, 3,
	                                      &err), DM_EBUSY);
	close(fd);

	/* A damaged file yields no line and DM_EINVAL. */
	snprintf(path, sizeof(path), "%s/spool/failed/%s/dialogue", f->root, fl);
	assert_int_equal(testroot_write(path, "DEVMAIL-DIALOGUE 1\nline a\n"), 0);
	memset(l, 0, sizeof(*l));
	dm_err_clear(&err);
	assert_int_equal(outbox_dialogue_read(f->ob, OUTBOX_FAILED, fl, lines_fn, l,
	                                      &err), DM_EINVAL);
	assert_int_equal(l->n, 0);
	assert_int_equal(testroot_write(path, "DEVMAIL-DIALOGUE 2\nend\n"), 0);
	assert_int_equal(outbox_dialogue_read(f->ob, OUTBOX_FAILED, fl, lines_fn, l,
	                                      NULL), DM_EINVAL);

	/* Deleting the message removes its dialogue with it. */
	assert_int_equal(outbox_delete(f->ob, fl, NULL), DM_OK);
	assert_int_equal(access(path, F_OK), -1);
	free(l);
}

/* ---- requeue ------------------------------------------------------------------- */

static void test_requeue(void **state)
{
	struct fx *f = *state;
	char fl[OUTBOX_ID_MAX];
	struct got g = { 0 };
	struct dm_err err;
	time_t when = 0;

	make_failed(f, fl);
	const char *one[] = { "<<< 550 no" };
	assert_int_equal(outbox_dialogue_save(f->ob, OUTBOX_FAILED, fl, one, 1,
	                                      NULL), DM_OK);
	assert_int_equal(outbox_next_due(f->ob, &when, NULL), DM_ENOTFOUND);

	f->cc.now += 5000;
	dm_err_clear(&err);
	assert_int_equal(outbox_requeue(f->ob, fl, &err), DM_OK);
	assert_int_equal(outbox_get(f->ob, OUTBOX_FAILED, fl, got_fn, &g, NULL),
	                 DM_ENOTFOUND);
	assert_int_equal(outbox_get(f->ob, OUTBOX_QUEUE, fl, got_fn, &g, NULL), DM_OK);
	assert_true(g.calls == 1 && !g.failed && g.attempts == 0);
	assert_string_equal(g.err, "");
	char *env = spool_file(f, "queue", fl, "env");
	assert_non_null(env);
	char want[160];
	snprintf(want, sizeof(want), "created %lld\n", (long long)f->cc.now);
	assert_non_null(strstr(env, want));
	snprintf(want, sizeof(want), "next %lld\n", (long long)f->cc.now);
	assert_non_null(strstr(env, want));
	assert_non_null(strstr(env, "state queued\n"));
	assert_null(strstr(env, "\nerror "));
	free(env);
	char *d = spool_file(f, "queue", fl, "dialogue");
	assert_null(d);
	/* Due now, and the message itself is intact. */
	assert_int_equal(outbox_next_due(f->ob, &when, NULL), DM_OK);
	assert_int_equal(when, f->cc.now);
	char *msg = spool_file(f, "queue", fl, "msg");
	assert_non_null(msg);
	assert_string_equal(msg, MSG);
	free(msg);
	/* Logged. */
	char path[DM_PATH_MAX];
	snprintf(path, sizeof(path), "%s/log/system.log", f->root);
	char *log = testroot_slurp(path, NULL);
	assert_non_null(log);
	snprintf(want, sizeof(want), "requeued %s from the failed outbox", fl);
	assert_non_null(strstr(log, want));
	free(log);

	/* Not failed any more: a second requeue says so. */
	dm_err_clear(&err);
	assert_int_equal(outbox_requeue(f->ob, fl, &err), DM_ENOTFOUND);
	assert_non_null(strstr(err.msg, fl));

	/* It is delivered like any other. */
	struct fixed_status v = { DM_OK, 0 };
	struct outbox_stats stats = { 0 };
	assert_int_equal(outbox_deliver(f->ob, NULL, verdict_fn, &v, &stats, NULL),
	                 DM_OK);
	assert_int_equal(v.calls, 1);
	assert_int_equal(stats.sent, 1);
	assert_int_equal(outbox_next_due(f->ob, &when, NULL), DM_ENOTFOUND);
}

/* A crash after the envelope rewrite and the removal of the retry file,
 * before the move: the entry stays in failed/ (listed there, as never
 * tried) and a second requeue completes it. */
static void test_requeue_interrupted(void **state)
{
	struct fx *f = *state;
	char fl[OUTBOX_ID_MAX];
	struct got g = { 0 };

	make_failed(f, fl);
	char path[DM_PATH_MAX];
	snprintf(path, sizeof(path), "%s/spool/failed/%s", f->root, fl);
	char *env = spool_file(f, "failed", fl, "env");
	assert_non_null(env);
	/* the failure is in the retry file (docs/outbox.md), not the env */
	assert_null(strstr(env, "state failed\n"));
	assert_non_null(strstr(env, "state queued\n"));
	free(env);
	char rpath[DM_PATH_MAX + 8];
	snprintf(rpath, sizeof(rpath), "%s/retry", path);
	assert_int_equal(access(rpath, F_OK), 0);
	assert_int_equal(unlink(rpath), 0);
	/* still listed as failed, not in the queue */
	assert_int_equal(outbox_get(f->ob, OUTBOX_FAILED, fl, got_fn, &g, NULL), DM_OK);
	assert_true(g.failed);
	assert_int_equal(outbox_get(f->ob, OUTBOX_QUEUE, fl, got_fn, &g, NULL),
	                 DM_ENOTFOUND);
	assert_int_equal(outbox_requeue(f->ob, fl, NULL), DM_OK);
	assert_int_equal(outbox_get(f->ob, OUTBOX_QUEUE, fl, got_fn, &g, NULL), DM_OK);
}

static void test_requeue_refusals(void **state)
{
	struct fx *f = *state;
	char q[OUTBOX_ID_MAX], fl[OUTBOX_ID_MAX];
	struct dm_err err;

	enqueue(f, q);
	dm_err_clear(&err);
	assert_int_equal(outbox_requeue(f->ob, q, &err), DM_ENOTFOUND);
	assert_non_null(strstr(err.msg, "no failed message"));
	assert_int_equal(outbox_requeue(f->ob, "../../etc", NULL), DM_EINVAL);

	make_failed(f, fl);
	char path[DM_PATH_MAX];
	snprintf(path, sizeof(path), "%s/spool/failed/%s/env", f->root, fl);
	assert_int_equal(testroot_write(path, "DEVMAIL-OUTBOX 9\nend\n"), 0);
	dm_err_clear(&err);
	assert_int_equal(outbox_requeue(f->ob, fl, &err), DM_EINVAL);
	assert_non_null(strstr(err.msg, "cannot be re-queued"));
	snprintf(path, sizeof(path), "%s/spool/failed/%s", f->root, fl);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);     /* left where it was */

	/* Locked (being deleted by someone): busy. */
	char fl2[OUTBOX_ID_MAX];
	make_failed(f, fl2);
	snprintf(path, sizeof(path), "%s/spool/failed/%s/msg", f->root, fl2);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	assert_int_equal(outbox_requeue(f->ob, fl2, NULL), DM_EBUSY);
	close(fd);
	assert_int_equal(outbox_requeue(f->ob, fl2, NULL), DM_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_resolve, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dialogue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_requeue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_requeue_interrupted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_requeue_refusals, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
