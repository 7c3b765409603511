/*
 * test_outbox.c - the durable outbox: backoff table, enqueue durability,
 * delivery outcomes, max age, locking, batches (one commit per batch, the
 * outcome's new state), recipients kept for a retry, messages given back
 * to the run, the advisory retry file, stale tmp cleanup, a drain shared by
 * threads, two concurrent deliverers, and SIGKILL at every step and at
 * random points (outboxcrash).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/paths.h"
#include "mail/outbox.h"
#include "testroot.h"

/* ---- helpers ---------------------------------------------------------------- */

static size_t count_entries(const char *root, const char *sub)
{
	char path[DM_PATH_MAX];
	size_t n = 0;
	snprintf(path, sizeof(path), "%s/spool/%s", root, sub);
	DIR *d = opendir(path);
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static bool log_has(const char *root, const char *needle)
{
	char path[DM_PATH_MAX];
	assert_true(snprintf(path, sizeof(path), "%s/log/system.log", root) <
	            (int)sizeof(path));
	char *s = testroot_slurp(path, NULL);
	bool found = s && strstr(s, needle);
	free(s);
	return found;
}

/* A source over memory that hands out at most `chunk` bytes per read. */
struct memsrc {
	const char *p;
	size_t len, off, chunk;
	size_t fail_at;   /* fail with DM_EIO once off reaches this; 0: never */
};

static enum dm_status memsrc_read(void *ctx, char *buf, size_t cap, size_t *got,
                                  struct dm_err *err)
{
	struct memsrc *m = ctx;
	size_t n = m->len - m->off;
	if (m->fail_at && m->off >= m->fail_at) {
		*got = 0;
		return dm_err_set(err, DM_EIO, "test source: disk gone");
	}
	if (n > cap)
		n = cap;
	if (m->chunk && n > m->chunk)
		n = m->chunk;
	memcpy(buf, m->p + m->off, n);
	m->off += n;
	*got = n;
	return DM_OK;
}

static char *read_source(const struct mail_source *src, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	assert_non_null(buf);
	for (;;) {
		size_t got = 0;
		if (n + 4096 > cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		assert_int_equal(src->read(src->ctx, buf + n, cap - n - 1, &got, NULL), DM_OK);
		if (got == 0)
			break;
		n += got;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

static const char MSG1[] =
	"From: device@example.com\r\nTo: ops@example.com\r\nSubject: hi\r\n\r\nbody line\r\n";

struct clockctx {
	time_t now;
	double u;
};

static time_t fake_clock(void *ctx) { return ((struct clockctx *)ctx)->now; }
static double fake_jitter(void *ctx) { return ((struct clockctx *)ctx)->u; }

static struct outbox *open_fake(const char *root, struct clockctx *cc)
{
	struct outbox_options opt = {
		.clock = fake_clock, .jitter = fake_jitter, .hook_ctx = cc,
	};
	struct outbox *ob = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(outbox_open(root, &opt, &ob, &err), DM_OK);
	return ob;
}

static void enqueue_text(struct outbox *ob, const char *text, size_t nrcpt,
                         char id[OUTBOX_ID_MAX])
{
	static const char *const rcpt[] = { "ops@example.com", "boss@example.com",
	                                    "third@example.com" };
	struct outbox_envelope env = { .from = "device@example.com", .rcpt = rcpt, .nrcpt = nrcpt };
	struct memsrc ms = { text, strlen(text), 0, 5, 0 };
	struct mail_source src = { memsrc_read, &ms };
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(outbox_enqueue(ob, &env, &src, id, &err), DM_OK);
	assert_true(id[0] != '\0');
}

/* ---- backoff and classification ---------------------------------------------- */

static void test_backoff_table(void **state)
{
	static const struct {
		long min, max;
		unsigned attempts;
		double u;
		long want;
	} rows[] = {
		{ 60, 3600, 1, 0.0, 60 },     { 60, 3600, 2, 0.0, 120 },
		{ 60, 3600, 3, 0.0, 240 },    { 60, 3600, 4, 0.0, 480 },
		{ 60, 3600, 5, 0.0, 960 },    { 60, 3600, 6, 0.0, 1920 },
		{ 60, 3600, 7, 0.0, 3600 },   /* 3840 capped */
		{ 60, 3600, 8, 0.0, 3600 },   { 60, 3600, 1000, 0.0, 3600 },
		{ 60, 3600, 1, 1.0, 66 },     { 60, 3600, 1, -1.0, 54 },
		{ 60, 3600, 2, 0.5, 126 },    { 60, 3600, 2, -0.5, 114 },
		{ 60, 3600, 7, 1.0, 3600 },   /* jitter never exceeds the cap */
		{ 60, 3600, 7, -1.0, 3240 },  { 60, 3600, 1, 7.0, 66 }, /* u clamped */
		{ 0, 0, 1, 0.0, 60 },         { 0, 0, 9, 0.0, 3600 },   /* defaults */
		{ 10, 100, 4, 0.0, 80 },      { 10, 100, 5, 0.0, 100 },
		{ 1, 1, 5, -1.0, 1 },         /* never below 1 s */
		{ 500, 100, 1, 0.0, 100 },    /* min above max: max wins */
		{ 60, 3600, 0, 0.0, 60 },     /* attempts 0 treated as first */
	};
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		long got = outbox_backoff(rows[i].min, rows[i].max, rows[i].attempts, rows[i].u);
		if (got != rows[i].want)
			fail_msg("row %zu: backoff(%ld, %ld, %u, %.2f) = %ld, want %ld", i,
			         rows[i].min, rows[i].max, rows[i].attempts, rows[i].u,
			         got, rows[i].want);
	}
}

/* ---- enqueue ---------------------------------------------------------------------- */

struct bigwriter {
	size_t total;
};

static enum dm_status big_write(void *ctx, int fd, struct dm_err *err)
{
	struct bigwriter *b = ctx;
	char chunk[8192];
	for (size_t off = 0; off < b->total; off += sizeof(chunk)) {
		for (size_t i = 0; i < sizeof(chunk); i++)
			chunk[i] = (char)('a' + (off / sizeof(chunk) + i) % 26);
		size_t n = b->total - off < sizeof(chunk) ? b->total - off : sizeof(chunk);
		if (write(fd, chunk, n) != (ssize_t)n)
			return dm_err_set(err, DM_EIO, "short write");
	}
	return DM_OK;
}

struct listed {
	size_t n;
	char id[8][OUTBOX_ID_MAX];
	unsigned attempts[8];
	time_t next[8];
	char error[8][600];
	uint64_t size[8];
	size_t nrcpt[8];
	long age[8];
};

static int collect(void *ctx, const struct outbox_item *it)
{
	struct listed *l = ctx;
	if (l->n < 8) {
		snprintf(l->id[l->n], OUTBOX_ID_MAX, "%s", it->id);
		l->attempts[l->n] = it->attempts;
		l->next[l->n] = it->next_try;
		snprintf(l->error[l->n], sizeof(l->error[0]), "%s", it->last_error);
		l->size[l->n] = it->size;
		l->nrcpt[l->n] = it->nrcpt;
		l->age[l->n] = it->age;
	}
	l->n++;
	return 0;
}

/* ---- envelope flags (8BITMIME / SMTPUTF8) ------------------------------------ */

static void test_scan_flags(void **state)
{
	static const struct {
		const char *msg;
		bool eight_bit, utf8_header;
	} rows[] = {
		{ "Subject: hi\r\n\r\nplain\r\n", false, false },
		{ "Subject: hi\r\n\r\ncaf\xc3\xa9\r\n", true, false },
		{ "Subject: caf\xc3\xa9\r\n\r\nplain\r\n", true, true },
		{ "Subject: hi\n\ncaf\xc3\xa9\n", true, false },          /* bare LF */
		{ "Subject: hi\r\n X-Folded: caf\xc3\xa9\r\n\r\nx", true, true },
		{ "\r\nno header, caf\xc3\xa9", true, false },
		{ "From: a@b\r\nX: \xff", true, true },                   /* no body */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		size_t len = strlen(rows[i].msg);
		for (size_t chunk = 1; chunk <= len; chunk++) {  /* every split */
			struct outbox_scan sc;
			outbox_scan_init(&sc);
			for (size_t off = 0; off < len; off += chunk)
				outbox_scan_bytes(&sc, rows[i].msg + off,
				                  len - off < chunk ? len - off : chunk);
			assert_int_equal(sc.eight_bit, rows[i].eight_bit);
			assert_int_equal(sc.utf8_header, rows[i].utf8_header);
		}
	}
}

struct flagged {
	size_t n;
	char id[8][OUTBOX_ID_MAX];
	bool b8[8], u8[8];
};

static int collect_flags(void *ctx, const struct outbox_item *it)
{
	struct flagged *l = ctx;
	if (l->n < 8) {
		snprintf(l->id[l->n], OUTBOX_ID_MAX, "%s", it->id);
		l->b8[l->n] = it->needs_8bit;
		l->u8[l->n] = it->needs_smtputf8;
	}
	l->n++;
	return 0;
}

/* A writer that finds 8-bit data while writing and says so on the envelope
 * (the outbox reads the flags after the message). */
struct flagwriter {
	struct outbox_envelope *env;
};

static enum dm_status flag_write(void *ctx, int fd, struct dm_err *err)
{
	struct flagwriter *w = ctx;
	static const char m[] = "Subject: x\r\n\r\nna\xc3\xafve\r\n";
	if (write(fd, m, sizeof(m) - 1) != (ssize_t)(sizeof(m) - 1))
		return dm_err_set(err, DM_EIO, "short write");
	w->env->needs_8bit = true;
	return DM_OK;
}

static enum dm_status flag_deliver(void *ctx, const struct outbox_item *item,
                                   const struct mail_source *msg, char *detail,
                                   size_t cap, struct dm_err *err)
{
	struct flagged *l = ctx;
	(void)msg; (void)detail; (void)cap;
	collect_flags(l, item);
	return dm_err_set(err, DM_ETEMPFAIL, "kept for the test");
}

/* Overwrites the env of queued entry `id` with a version-1 envelope of a
 * `size`-byte message; `extra` ("" or whole lines) goes before "end". */
static void write_v1_env(const char *root, const char *id, size_t size, const char *extra)
{
	char path[DM_PATH_MAX], text[512];
	assert_true(snprintf(path, sizeof(path), "%s/spool/queue/%s/env", root,
	                     id) < (int)sizeof(path));
	int n = snprintf(text, sizeof(text),
	                 "DEVMAIL-OUTBOX 1\ncreated 1700000000\nattempts 0\nnext 1700000000\n"
	                 "size %zu\nstate queued\nfrom device@example.com\nrcpt ops@example.com\n"
	                 "%send\n", size, extra);
	assert_true(n > 0 && (size_t)n < sizeof(text));
	assert_int_equal(testroot_write(path, text), 0);
}

static void test_envelope_flags_persist(void **state)
{
	static const char *const ascii_rcpt[] = { "ops@example.com" };
	static const char *const utf8_rcpt[] = { "j\xc3\xb6rg@example.com" };
	static const char body8[] = "From: device@example.com\r\nSubject: temp\r\n"
	                            "\r\nTemperatur 85 \xc2\xb0" "C\r\n";
	static const char head8[] = "Subject: K\xc3\xbchlhaus\r\n\r\nok\r\n";
	char root[DM_PATH_MAX], path[DM_PATH_MAX + 128], ids[6][OUTBOX_ID_MAX];
	struct clockctx cc = { 1700000000, 0 };
	struct dm_err err;
	struct outbox *ob;
	struct flagged l = { 0 };

	(void)state;
	assert_non_null(testroot_make("outbox", root, sizeof(root)));
	ob = open_fake(root, &cc);
	dm_err_clear(&err);
	/* 0: 7-bit ASCII, 1: 8-bit body fed one byte at a time, 2: UTF-8
	 * header, 3: UTF-8 recipient, 4: caller's flag, 5: writer's flag */
	const char *texts[3] = { MSG1, body8, head8 };
	for (size_t i = 0; i < 4; i++) {
		struct outbox_envelope env = { .from = "device@example.com",
		    .rcpt = i == 3 ? utf8_rcpt : ascii_rcpt, .nrcpt = 1 };
		const char *t = texts[i == 3 ? 0 : i];
		struct memsrc ms = { t, strlen(t), 0, i == 1 ? 1 : 7, 0 };
		struct mail_source src = { memsrc_read, &ms };
		assert_int_equal(outbox_enqueue(ob, &env, &src, ids[i], &err), DM_OK);
	}
	struct bigwriter bw = { 100 };
	struct outbox_envelope e4 = { .from = "", .rcpt = ascii_rcpt, .nrcpt = 1,
	                              .needs_8bit = true };
	assert_int_equal(outbox_enqueue_writer(ob, &e4, big_write, &bw, ids[4], &err),
	                 DM_OK);
	struct outbox_envelope e5 = { .from = "", .rcpt = ascii_rcpt, .nrcpt = 1 };
	struct flagwriter fw = { &e5 };
	assert_int_equal(outbox_enqueue_writer(ob, &e5, flag_write, &fw, ids[5], &err),
	                 DM_OK);
	outbox_close(ob);

	/* on disk: the optional flags line, absent for 7-bit mail */
	size_t len;
	char *env;
	snprintf(path, sizeof(path), "%s/spool/queue/%s/env", root, ids[0]);
	assert_non_null(env = testroot_slurp(path, &len));
	assert_null(strstr(env, "flags"));
	free(env);
	snprintf(path, sizeof(path), "%s/spool/queue/%s/env", root, ids[1]);
	assert_non_null(env = testroot_slurp(path, &len));
	assert_non_null(strstr(env, "\nflags 8bitmime\n"));
	free(env);
	snprintf(path, sizeof(path), "%s/spool/queue/%s/env", root, ids[2]);
	assert_non_null(env = testroot_slurp(path, &len));
	assert_non_null(strstr(env, "\nflags 8bitmime smtputf8\n"));
	free(env);

	/* after a reopen, listing and delivery see them */
	static const bool want8[6] = { false, true, true, true, true, true };
	static const bool wantu[6] = { false, false, true, true, false, false };
	ob = open_fake(root, &cc);
	assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, collect_flags, &l, &err), DM_OK);
	assert_int_equal(l.n, 6);
	for (size_t i = 0; i < 6; i++) {
		assert_string_equal(l.id[i], ids[i]);
		assert_int_equal(l.b8[i], want8[i]);
		assert_int_equal(l.u8[i], wantu[i]);
	}
	memset(&l, 0, sizeof(l));
	assert_int_equal(outbox_deliver(ob, ids[1], flag_deliver, &l, NULL, &err),
	                 DM_ETEMPFAIL);
	assert_int_equal(l.n, 1);
	assert_true(l.b8[0]);
	assert_false(l.u8[0]);
	outbox_close(ob);

	/* the env rewrite after the deferral keeps the flag */
	ob = open_fake(root, &cc);
	memset(&l, 0, sizeof(l));
	assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, collect_flags, &l, &err), DM_OK);
	assert_int_equal(l.n, 6);
	assert_true(l.b8[1]);
	outbox_close(ob);

	/* a version-1 env written before the flags line existed still loads
	 * (flags off); unknown flag words are ignored */
	write_v1_env(root, ids[1], strlen(body8), "");
	write_v1_env(root, ids[2], strlen(head8), "flags binarymime smtputf8\n");
	ob = open_fake(root, &cc);
	memset(&l, 0, sizeof(l));
	assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, collect_flags, &l, &err), DM_OK);
	assert_int_equal(l.n, 6);
	assert_false(l.b8[1]);
	assert_false(l.u8[1]);
	assert_false(l.b8[2]);
	assert_true(l.u8[2]);
	outbox_close(ob);
	assert_int_equal(testroot_remove(root), 0);
}

static void test_enqueue_durable(void **state)
{
	char root[DM_PATH_MAX], path[DM_PATH_MAX + 128], id[OUTBOX_ID_MAX], id2[OUTBOX_ID_MAX];
	struct clockctx cc = { 1700000000, 0 };
	struct dm_err err;
	size_t len;
	(void)state;

	assert_non_null(testroot_make("outbox", root, sizeof(root)));
	struct outbox *ob = open_fake(root, &cc);
	enqueue_text(ob, MSG1, 2, id);

	snprintf(path, sizeof(path), "%s/spool/queue/%s/msg", root, id);
	char *body = testroot_slurp(path, &len);
	assert_non_null(body);
	assert_int_equal(len, strlen(MSG1));
	assert_memory_equal(body, MSG1, len);
	free(body);
	snprintf(path, sizeof(path), "%s/spool/queue/%s/env", root, id);
	char *env = testroot_slurp(path, NULL);
	assert_non_null(env);
	assert_non_null(strstr(env, "DEVMAIL-OUTBOX 1\n"));
	assert_non_null(strstr(env, "rcpt boss@example.com\n"));
	assert_non_null(strstr(env, "\nend\n"));
	free(env);
	assert_int_equal(count_entries(root, "tmp"), 0);
	assert_int_equal(count_entries(root, "queue"), 1);

	char want[256];
	snprintf(want, sizeof(want), "queued %s from device@example.com to 2 recipients (%zu bytes)",
	         id, strlen(MSG1));
	assert_true(log_has(root, want));

	/* A 3 MB message through the writer callback. */
	struct bigwriter bw = { 3u << 20 };
	static const char *const one[] = { "ops@example.com" };
	struct outbox_envelope e1 = { .from = "", .rcpt = one, .nrcpt = 1 };
	dm_err_clear(&err);
	assert_int_equal(outbox_enqueue_writer(ob, &e1, big_write, &bw, id2, &err), DM_OK);
	assert_string_not_equal(id, id2);
	struct listed l = { 0 };
	assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, collect, &l, NULL), DM_OK);
	assert_int_equal(l.n, 2);
	/* listed in id order = enqueue order */
	assert_string_equal(l.id[0], id);
	assert_int_equal(l.size[0], strlen(MSG1));
	assert_int_equal(l.nrcpt[0], 2);
	assert_string_equal(l.id[1], id2);
	assert_int_equal(l.size[1], 3u << 20);
	assert_int_equal(l.attempts[1], 0);
	assert_int_equal(l.next[1], cc.now);

	/* Bad input changes nothing. */
	static const char *const bad[] = { "ops@example.com\r\nRCPT TO:<x@evil>" };
	struct outbox_envelope eb = { .from = "device@example.com", .rcpt = bad, .nrcpt = 1 };
	struct memsrc ms = { MSG1, strlen(MSG1), 0, 0, 0 };
	struct mail_source src = { memsrc_read, &ms };
	dm_err_clear(&err);
	assert_int_equal(outbox_enqueue(ob, &eb, &src, id2, &err), DM_EINVAL);
	assert_non_null(strstr(err.msg, "control character"));
	struct outbox_envelope e0 = { .from = "device@example.com", .rcpt = one, .nrcpt = 0 };
	dm_err_clear(&err);
	assert_int_equal(outbox_enqueue(ob, &e0, &src, id2, &err), DM_EINVAL);
	/* A source failing half way: its error comes back, nothing is left. */
	static char big[200000];
	memset(big, 'x', sizeof(big));
	struct memsrc failing = { big, sizeof(big), 0, 4096, 100000 };
	struct mail_source fsrc = { memsrc_read, &failing };
	dm_err_clear(&err);
	assert_int_equal(outbox_enqueue(ob, &e1, &fsrc, id2, &err), DM_EIO);
	assert_string_equal(err.msg, "test source: disk gone");
	assert_string_equal(id2, "");
	assert_int_equal(count_entries(root, "queue"), 2);
	assert_int_equal(count_entries(root, "tmp"), 0);

	outbox_close(ob);
	assert_int_equal(testroot_remove(root), 0);
}

/* ---- delivery outcomes ----------------------------------------------------------- */

struct rule {
	const char *id;
	enum dm_status status;
	int code;
	const char *text;
};

struct dctx {
	struct rule rules[8];
	size_t nrules;
	unsigned calls;
	const char *expect_body;
};

static enum dm_status rule_deliver(void *ctx, const struct outbox_item *item,
                                   const struct mail_source *msg, char *detail,
                                   size_t cap, struct dm_err *err)
{
	struct dctx *d = ctx;
	size_t len;
	char *body = read_source(msg, &len);
	d->calls++;
	assert_int_equal(len, item->size);
	if (d->expect_body) {
		assert_int_equal(len, strlen(d->expect_body));
		assert_memory_equal(body, d->expect_body, len);
	}
	free(body);
	for (size_t i = 0; i < d->nrules; i++) {
		if (strcmp(d->rules[i].id, item->id) != 0)
			continue;
		if (d->rules[i].status == DM_OK) {
			snprintf(detail, cap, "server mx.example.com TLS1.3 AUTH PLAIN reply 250 2.0.0 queued as X");
			return DM_OK;
		}
		err->smtp_code = d->rules[i].code;
		snprintf(err->enhanced, sizeof(err->enhanced), "%d.1.1", d->rules[i].code / 100);
		snprintf(err->server_text, sizeof(err->server_text), "%s", d->rules[i].text);
		return dm_err_set(err, d->rules[i].status, "RCPT TO refused");
	}
	fail_msg("unexpected delivery of %s", item->id);
	return DM_EINVAL;
}

static void test_delivery_outcomes(void **state)
{
	char root[DM_PATH_MAX], a[OUTBOX_ID_MAX], b[OUTBOX_ID_MAX], c[OUTBOX_ID_MAX],
	     d[OUTBOX_ID_MAX], want[512];
	struct clockctx cc = { 1700000000, 0 };
	struct outbox_stats stats = { 0 };
	struct dm_err err;
	(void)state;

	assert_non_null(testroot_make("outbox", root, sizeof(root)));
	struct outbox *ob = open_fake(root, &cc);
	enqueue_text(ob, MSG1, 1, a);
	enqueue_text(ob, MSG1, 1, b);
	enqueue_text(ob, MSG1, 1, c);
	enqueue_text(ob, MSG1, 3, d);

	struct dctx dc = { .expect_body = MSG1 };
	dc.rules[dc.nrules++] = (struct rule){ a, DM_OK, 250, "" };
	dc.rules[dc.nrules++] = (struct rule){ b, DM_EPERMFAIL, 550, "no such user" };
	dc.rules[dc.nrules++] = (struct rule){ c, DM_ETEMPFAIL, 451, "greylisted" };
	dc.rules[dc.nrules++] = (struct rule){ d, DM_ENET, 0, "" };
	dm_err_clear(&err);
	assert_int_equal(outbox_deliver(ob, NULL, rule_deliver, &dc, &stats, &err), DM_OK);
	assert_int_equal(dc.calls, 4);
	assert_int_equal(stats.sent, 1);
	assert_int_equal(stats.failed, 1);
	assert_int_equal(stats.deferred, 2);
	assert_int_equal(stats.busy, 0);

	/* delivered: gone */
	struct listed q = { 0 }, f = { 0 };
	assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, collect, &q, NULL), DM_OK);
	assert_int_equal(q.n, 2);
	assert_string_equal(q.id[0], c);
	assert_string_equal(q.id[1], d);
	/* temporary: attempts and next try recorded */
	assert_int_equal(q.attempts[0], 1);
	assert_int_equal(q.next[0], cc.now + 60);
	assert_non_null(strstr(q.error[0], "451 4.1.1 greylisted"));
	assert_int_equal(q.attempts[1], 1);
	assert_non_null(strstr(q.error[1], "RCPT TO refused"));
	/* permanent: in failed with the reason */
	assert_int_equal(outbox_list(ob, OUTBOX_FAILED, collect, &f, NULL), DM_OK);
	assert_int_equal(f.n, 1);
	assert_string_equal(f.id[0], b);
	assert_non_null(strstr(f.error[0], "550 5.1.1 no such user"));
	assert_int_equal(count_entries(root, "tmp"), 0);

	snprintf(want, sizeof(want), "sent %s server mx.example.com TLS1.3", a);
	assert_true(log_has(root, want));
	snprintf(want, sizeof(want), "failed %s: RCPT TO refused (server said: 550 5.1.1 no such user)", b);
	assert_true(log_has(root, want));
	snprintf(want, sizeof(want), "deferred %s: RCPT TO refused (server said: 451 4.1.1 greylisted); next try in 60s", c);
	assert_true(log_has(root, want));

	/* Nothing is due yet: no callback. */
	dc.calls = 0;
	assert_int_equal(outbox_deliver(ob, NULL, rule_deliver, &dc, NULL, NULL), DM_OK);
	assert_int_equal(dc.calls, 0);

	/* Retry state survives a restart; the second failure doubles the delay
	 * (jitter +10 %: 120 -> 132). */
	outbox_close(ob);
	cc.now += 60;
	cc.u = 1.0;
	ob = open_fake(root, &cc);
	memset(&stats, 0, sizeof(stats));
	assert_int_equal(outbox_deliver(ob, NULL, rule_deliver, &dc, &stats, NULL), DM_OK);
	assert_int_equal(dc.calls, 2);
	assert_int_equal(stats.deferred, 2);
	memset(&q, 0, sizeof(q));
	assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, collect, &q, NULL), DM_OK);
	assert_int_equal(q.attempts[0], 2);
	assert_int_equal(q.next[0], cc.now + 132);
	assert_int_equal(q.age[0], 60);
	time_t d_next = q.next[1];
	assert_int_equal(d_next, cc.now + 132);

	/* Max age exceeded: a temporary failure now moves it to failed. */
	cc.now += OUTBOX_DEFAULT_MAX_AGE;
	dc.calls = 0;
	memset(&stats, 0, sizeof(stats));
	dm_err_clear(&err);
	assert_int_equal(outbox_deliver(ob, c, rule_deliver, &dc, &stats, &err), DM_ETEMPFAIL);
	assert_int_equal(err.smtp_code, 451);
	assert_int_equal(stats.failed, 1);
	memset(&f, 0, sizeof(f));
	assert_int_equal(outbox_list(ob, OUTBOX_FAILED, collect, &f, NULL), DM_OK);
	assert_int_equal(f.n, 2);
	assert_string_equal(f.id[1], c);
	assert_int_equal(f.attempts[1], 3);
	assert_non_null(strstr(f.error[1], "expired after"));
	assert_non_null(strstr(f.error[1], "greylisted"));
	snprintf(want, sizeof(want), "failed %s: expired after", c);
	assert_true(log_has(root, want));

	/* retry_now / delete / unknown ids */
	dm_err_clear(&err);
	assert_int_equal(outbox_retry_now(ob, "20000101T000000-000000-1-deadbeef", NULL, &err),
	                 DM_ENOTFOUND);
	assert_non_null(strstr(err.msg, "20000101T000000-000000-1-deadbeef"));
	dm_err_clear(&err);
	assert_int_equal(outbox_retry_now(ob, "../queue", NULL, &err), DM_EINVAL);
	dm_err_clear(&err);
	assert_int_equal(outbox_delete(ob, "nope", &err), DM_ENOTFOUND);
	assert_non_null(strstr(err.msg, "nope"));
	dm_err_clear(&err);
	assert_int_equal(outbox_deliver(ob, "nope", rule_deliver, &dc, NULL, &err), DM_ENOTFOUND);
	time_t when = 0;
	assert_int_equal(outbox_next_due(ob, &when, NULL), DM_OK);
	assert_int_equal(when, d_next);   /* d is the only one left queued */
	unsigned n = 0;
	assert_int_equal(outbox_retry_now(ob, d, &n, NULL), DM_OK);
	assert_int_equal(n, 1);
	assert_int_equal(outbox_next_due(ob, &when, NULL), DM_OK);
	assert_int_equal(when, cc.now);
	assert_int_equal(outbox_delete(ob, b, NULL), DM_OK);   /* from failed */
	assert_int_equal(outbox_delete(ob, d, NULL), DM_OK);   /* from queue */
	assert_int_equal(count_entries(root, "queue"), 0);
	assert_int_equal(count_entries(root, "failed"), 1);
	assert_int_equal(count_entries(root, "tmp"), 0);
	assert_int_equal(outbox_next_due(ob, &when, NULL), DM_ENOTFOUND);
	outbox_close(ob);
	assert_int_equal(testroot_remove(root), 0);
}

/* ---- locking ------------------------------------------------------------------------- */

static void test_locked_message_skipped(void **state)
{
	char root[DM_PATH_MAX], id[OUTBOX_ID_MAX], path[DM_PATH_MAX + 128];
	struct clockctx cc = { 1700000000, 0 };
	struct outbox_stats stats = { 0 };
	struct dm_err err;
	(void)state;

	assert_non_null(testroot_make("outbox", root, sizeof(root)));
	struct outbox *ob = open_fake(root, &cc);
	enqueue_text(ob, MSG1, 1, id);
	/* Another deliverer: the lock is on queue/<id>/msg (docs/outbox.md). */
	snprintf(path, sizeof(path), "%s/spool/queue/%s/msg", root, id);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);

	struct dctx dc = { .expect_body = MSG1 };
	dc.rules[dc.nrules++] = (struct rule){ id, DM_OK, 250, "" };
	assert_int_equal(outbox_deliver(ob, NULL, rule_deliver, &dc, &stats, NULL), DM_OK);
	assert_int_equal(dc.calls, 0);
	assert_int_equal(stats.busy, 1);
	dm_err_clear(&err);
	assert_int_equal(outbox_deliver(ob, id, rule_deliver, &dc, NULL, &err), DM_EBUSY);
	dm_err_clear(&err);
	assert_int_equal(outbox_delete(ob, id, &err), DM_EBUSY);
	dm_err_clear(&err);
	assert_int_equal(outbox_retry_now(ob, id, NULL, &err), DM_EBUSY);
	close(fd);
	assert_int_equal(outbox_deliver(ob, id, rule_deliver, &dc, NULL, NULL), DM_OK);
	assert_int_equal(dc.calls, 1);
	assert_int_equal(count_entries(root, "queue"), 0);
	outbox_close(ob);
	assert_int_equal(testroot_remove(root), 0);
}

/* ---- batches ---------------------------------------------------------------------------- */

struct bctx {
	unsigned calls;
	size_t sizes[8];
	bool last[8];
	char temp_id[OUTBOX_ID_MAX];
	char skip_id[OUTBOX_ID_MAX];
	unsigned done_calls;
	enum outbox_state states[8];
	long next_in[8];
	char reasons[8][OUTBOX_REASON_MAX];
	char ids[8][OUTBOX_ID_MAX];
	size_t ndone;
};

/* Sets an outcome as submit does: the status, and the verdict of it. */
static void outcome_set(struct outbox_outcome *o, enum dm_status st)
{
	struct verdict_input in = { .status = st, .phase = VERDICT_MESSAGE,
	                            .code = o->err.smtp_code,
	                            .enhanced = o->err.enhanced };
	o->status = st;
	verdict_decide(&in, &o->verdict, NULL);
}

static void batch_fn(void *ctx, const struct outbox_batch *bt)
{
	struct bctx *b = ctx;
	if (b->calls < 8) {
		b->sizes[b->calls] = bt->n;
		b->last[b->calls] = bt->last;
	}
	b->calls++;
	for (size_t i = 0; i < bt->n; i++) {
		size_t len;
		char *body = read_source(&bt->msgs[i], &len);
		assert_int_equal(len, strlen(MSG1));
		assert_memory_equal(body, MSG1, len);
		free(body);
		struct outbox_outcome *o = &bt->out[i];
		/* preset: not attempted, permanent */
		assert_int_equal(o->status, DM_EIO);
		assert_int_equal(o->verdict.message, VERDICT_PERMANENT);
		if (!strcmp(bt->items[i].id, b->skip_id))
			continue;                          /* left at the preset */
		if (!strcmp(bt->items[i].id, b->temp_id)) {
			dm_err_set(&o->err, DM_ENET, "connection lost");
			outcome_set(o, DM_ENET);
			continue;
		}
		outcome_set(o, DM_OK);
		snprintf(o->detail, sizeof(o->detail), "batch %u", b->calls);
	}
}

static void batch_done(void *ctx, const struct outbox_batch *bt)
{
	struct bctx *b = ctx;
	b->done_calls++;
	for (size_t i = 0; i < bt->n && b->ndone < 8; i++, b->ndone++) {
		snprintf(b->ids[b->ndone], OUTBOX_ID_MAX, "%s", bt->items[i].id);
		b->states[b->ndone] = bt->out[i].state;
		b->next_in[b->ndone] = bt->out[i].next_try_in;
		snprintf(b->reasons[b->ndone], OUTBOX_REASON_MAX, "%s", bt->out[i].reason);
	}
}

static void test_batch_delivery(void **state)
{
	char root[DM_PATH_MAX], ids[5][OUTBOX_ID_MAX];
	struct clockctx cc = { 1700000000, 0 };
	struct outbox_stats stats = { 0 };
	(void)state;

	assert_non_null(testroot_make("outbox", root, sizeof(root)));
	struct outbox *ob = open_fake(root, &cc);
	for (int i = 0; i < 5; i++)
		enqueue_text(ob, MSG1, 1, ids[i]);
	struct bctx b = { 0 };
	snprintf(b.temp_id, sizeof(b.temp_id), "%s", ids[2]);
	snprintf(b.skip_id, sizeof(b.skip_id), "%s", ids[4]);
	struct outbox_deliverer d = { batch_fn, batch_done, &b, 2, NULL };
	assert_int_equal(outbox_deliver_due(ob, &d, &stats, NULL), DM_OK);
	assert_int_equal(b.calls, 3);
	assert_int_equal(b.sizes[0], 2);
	assert_int_equal(b.sizes[1], 2);
	assert_int_equal(b.sizes[2], 1);
	assert_false(b.last[0]);
	assert_false(b.last[1]);
	assert_true(b.last[2]);
	assert_int_equal(stats.sent, 3);
	assert_int_equal(stats.deferred, 1);
	assert_int_equal(stats.failed, 1);
	/* What each message became, in the done callback, without reading the
	 * spool again. */
	assert_int_equal(b.done_calls, 3);
	assert_int_equal(b.ndone, 5);
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(b.ids[i], ids[i]);
	assert_int_equal(b.states[0], OUTBOX_STATE_SENT);
	assert_int_equal(b.states[1], OUTBOX_STATE_SENT);
	assert_int_equal(b.states[2], OUTBOX_STATE_DEFERRED);
	assert_int_equal(b.next_in[2], 60);
	assert_string_equal(b.reasons[2], "connection lost");
	assert_int_equal(b.states[3], OUTBOX_STATE_SENT);
	assert_int_equal(b.states[4], OUTBOX_STATE_FAILED);
	assert_non_null(strstr(b.reasons[4], "not attempted"));
	struct listed f = { 0 }, q = { 0 };
	assert_int_equal(outbox_list(ob, OUTBOX_FAILED, collect, &f, NULL), DM_OK);
	assert_int_equal(f.n, 1);
	assert_string_equal(f.id[0], ids[4]);
	assert_non_null(strstr(f.error[0], "not attempted"));
	assert_int_equal(f.attempts[0], 1);
	assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, collect, &q, NULL), DM_OK);
	assert_int_equal(q.n, 1);
	assert_string_equal(q.id[0], ids[2]);
	assert_string_equal(q.error[0], "connection lost");
	assert_int_equal(q.attempts[0], 1);
	assert_int_equal(q.next[0], cc.now + 60);
	outbox_close(ob);
	assert_int_equal(testroot_remove(root), 0);
}

/* ---- one commit per batch ------------------------------------------------------------- */

struct steplog {
	char names[256][24];
	size_t n;
};

static void record_step(void *ctx, const char *step, const char *id)
{
	struct steplog *l = ctx;
	(void)id;
	if (l->n < 256)
		snprintf(l->names[l->n++], sizeof(l->names[0]), "%s", step);
}

static enum dm_status ok_deliver(void *ctx, const struct outbox_item *item,
                                 const struct mail_source *msg, char *detail,
                                 size_t cap, struct dm_err *err)
{
	size_t len;
	(void)ctx; (void)item; (void)detail; (void)cap; (void)err;
	free(read_source(msg, &len));
	return DM_OK;
}

/* A batch of 5 delivered messages: every removal rename comes before the
 * commit (one fsync of queue/, then a remove-commit step per message),
 * the files go after it; a permanent failure joins the same commit. */
static void test_batch_commit_order(void **state)
{
	char root[DM_PATH_MAX], ids[5][OUTBOX_ID_MAX];
	struct steplog *l = calloc(1, sizeof(*l));
	(void)state;
	assert_non_null(l);
	assert_non_null(testroot_make("outbox", root, sizeof(root)));
	struct outbox_options opt = { .step = record_step, .hook_ctx = l };
	struct outbox *ob = NULL;
	assert_int_equal(outbox_open(root, &opt, &ob, NULL), DM_OK);
	for (int i = 0; i < 5; i++)
		enqueue_text(ob, MSG1, 1, ids[i]);
	l->n = 0;
	struct outbox_stats stats = { 0 };
	assert_int_equal(outbox_deliver(ob, NULL, ok_deliver, NULL, &stats, NULL), DM_OK);
	assert_int_equal(stats.sent, 5);
	static const char *const want[] = { "deliver-lock", "deliver-return",
	                                    "remove-rename", "remove-commit",
	                                    "remove-clean" };
	assert_int_equal(l->n, 25);
	for (size_t g = 0; g < 5; g++)
		for (size_t i = 0; i < 5; i++)
			if (strcmp(l->names[g * 5 + i], want[g]))
				fail_msg("step %zu is %s, want %s", g * 5 + i,
				         l->names[g * 5 + i], want[g]);
	assert_int_equal(count_entries(root, "queue"), 0);
	assert_int_equal(count_entries(root, "tmp"), 0);
	outbox_close(ob);
	assert_int_equal(testroot_remove(root), 0);
	free(l);
}

/* ---- recipients kept for a retry ------------------------------------------------------ */

static void partial_fn(void *ctx, const struct outbox_batch *bt)
{
	(void)ctx;
	for (size_t i = 0; i < bt->n; i++) {
		size_t len;
		free(read_source(&bt->msgs[i], &len));
		/* accepted for ops@, 450 for boss@, 550 for third@ */
		static const int codes[3] = { 250, 450, 550 };
		struct outbox_outcome *o = &bt->out[i];
		struct verdict_input in = { .status = DM_OK, .phase = VERDICT_MESSAGE,
		                            .code = 250, .rcpt_code = codes, .nrcpt = 3 };
		o->status = DM_OK;
		verdict_decide(&in, &o->verdict, o->retry);
		snprintf(o->detail, sizeof(o->detail), "partly");
		dm_err_set(&o->err, DM_ETEMPFAIL, "recipient boss@example.com refused for now");
		o->err.smtp_code = 450;
	}
}

static void test_partial_delivery(void **state)
{
	char root[DM_PATH_MAX], id[OUTBOX_ID_MAX], want[256], path[DM_PATH_MAX + 128];
	struct clockctx cc = { 1700000000, 0 };
	(void)state;
	assert_non_null(testroot_make("outbox", root, sizeof(root)));
	struct outbox *ob = open_fake(root, &cc);
	enqueue_text(ob, MSG1, 3, id);
	struct bctx b = { 0 };
	struct outbox_deliverer d = { partial_fn, batch_done, &b, 0, NULL };
	struct outbox_stats stats = { 0 };
	assert_int_equal(outbox_deliver_one(ob, id, &d, &stats, NULL), DM_OK);
	assert_int_equal(stats.deferred, 1);
	assert_int_equal(stats.sent, 0);
	assert_int_equal(b.states[0], OUTBOX_STATE_DEFERRED);
	assert_int_equal(b.next_in[0], 60);
	/* the envelope now names boss@ alone (rewritten durably) */
	snprintf(path, sizeof(path), "%s/spool/queue/%s/env", root, id);
	char *env = testroot_slurp(path, NULL);
	assert_non_null(env);
	assert_non_null(strstr(env, "rcpt boss@example.com\n"));
	assert_null(strstr(env, "ops@example.com"));
	assert_null(strstr(env, "third@example.com"));
	free(env);
	snprintf(want, sizeof(want), "sent %s partly", id);
	assert_true(log_has(root, want));
	snprintf(want, sizeof(want), "deferred %s: recipient boss@example.com "
	         "refused for now (server said: 450 ); next try in 60s", id);
	assert_true(log_has(root, want));
	outbox_close(ob);
	assert_int_equal(testroot_remove(root), 0);
}

/* ---- given back to the run ---------------------------------------------------------- */

struct requeue_ctx {
	char first[OUTBOX_ID_MAX];
	unsigned seen_first, calls;
	unsigned attempts_seen[16];
	bool always;        /* give it back every time */
};

static void requeue_fn(void *ctx, const struct outbox_batch *bt)
{
	struct requeue_ctx *r = ctx;
	r->calls++;
	for (size_t i = 0; i < bt->n; i++) {
		size_t len;
		free(read_source(&bt->msgs[i], &len));
		struct outbox_outcome *o = &bt->out[i];
		bool first = !strcmp(bt->items[i].id, r->first);
		if (first && r->seen_first < 16)
			r->attempts_seen[r->seen_first] = bt->items[i].attempts;
		if (first && (r->always || r->seen_first++ == 0)) {
			/* 452 4.5.3 at MAIL: the session's allowance ended */
			o->err.smtp_code = 452;
			snprintf(o->err.enhanced, sizeof(o->err.enhanced), "4.5.3");
			dm_err_set(&o->err, DM_ETEMPFAIL, "too many messages");
			struct verdict_input in = { DM_ETEMPFAIL, VERDICT_MAIL, 452,
			                            "4.5.3", NULL, 0 };
			o->status = DM_ETEMPFAIL;
			verdict_decide(&in, &o->verdict, NULL);
			o->requeue = o->verdict.session_end;
			continue;
		}
		outcome_set(o, DM_OK);
	}
}

static void test_requeue(void **state)
{
	char root[DM_PATH_MAX], ids[3][OUTBOX_ID_MAX];
	struct clockctx cc = { 1700000000, 0 };
	(void)state;
	assert_non_null(testroot_make("outbox", root, sizeof(root)));
	struct outbox *ob = open_fake(root, &cc);
	for (int i = 0; i < 3; i++)
		enqueue_text(ob, MSG1, 1, ids[i]);

	/* Given back once: delivered in a later batch of the same run, no
	 * attempt counted in between. */
	struct requeue_ctx r = { 0 };
	snprintf(r.first, sizeof(r.first), "%s", ids[0]);
	struct outbox_deliverer d = { requeue_fn, NULL, &r, 0, NULL };
	struct outbox_stats stats = { 0 };
	assert_int_equal(outbox_deliver_due(ob, &d, &stats, NULL), DM_OK);
	assert_int_equal(r.calls, 2);
	assert_int_equal(r.seen_first, 2);
	assert_int_equal(r.attempts_seen[1], 0);
	assert_int_equal(stats.sent, 3);
	assert_int_equal(stats.requeued, 1);
	assert_int_equal(stats.deferred, 0);
	assert_int_equal(count_entries(root, "queue"), 0);

	/* Given back every time: after a few rounds it is judged by its
	 * verdict (temporary: deferred, one attempt). */
	enqueue_text(ob, MSG1, 1, ids[0]);
	memset(&r, 0, sizeof(r));
	r.always = true;
	snprintf(r.first, sizeof(r.first), "%s", ids[0]);
	memset(&stats, 0, sizeof(stats));
	assert_int_equal(outbox_deliver_due(ob, &d, &stats, NULL), DM_OK);
	assert_true(r.calls > 2 && r.calls < 16);
	assert_int_equal(stats.deferred, 1);
	assert_int_equal(stats.requeued, r.calls - 1);
	for (unsigned i = 0; i < r.calls && i < 16; i++)
		assert_int_equal(r.attempts_seen[i], 0);
	struct listed q = { 0 };
	assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, collect, &q, NULL), DM_OK);
	assert_int_equal(q.n, 1);
	assert_int_equal(q.attempts[0], 1);
	assert_non_null(strstr(q.error[0], "452 4.5.3"));
	outbox_close(ob);
	assert_int_equal(testroot_remove(root), 0);
}

/* ---- the retry file is advisory ------------------------------------------------------- */

static enum dm_status temp_deliver(void *ctx, const struct outbox_item *item,
                                   const struct mail_source *msg, char *detail,
                                   size_t cap, struct dm_err *err)
{
	size_t len;
	(void)ctx; (void)item; (void)detail; (void)cap;
	free(read_source(msg, &len));
	err->smtp_code = 451;
	return dm_err_set(err, DM_ETEMPFAIL, "try later");
}

static void test_retry_file_advisory(void **state)
{
	char root[DM_PATH_MAX], id[OUTBOX_ID_MAX], path[DM_PATH_MAX + 128];
	struct clockctx cc = { 1700000000, 0 };
	(void)state;
	assert_non_null(testroot_make("outbox", root, sizeof(root)));
	struct outbox *ob = open_fake(root, &cc);
	enqueue_text(ob, MSG1, 1, id);
	snprintf(path, sizeof(path), "%s/spool/queue/%s/env", root, id);
	char *env_before = testroot_slurp(path, NULL);
	assert_non_null(env_before);
	assert_int_equal(outbox_deliver(ob, NULL, temp_deliver, NULL, NULL, NULL), DM_OK);
	/* the deferral wrote the retry file, not the envelope */
	char *env_after = testroot_slurp(path, NULL);
	assert_non_null(env_after);
	assert_string_equal(env_before, env_after);
	free(env_before);
	free(env_after);
	struct listed q = { 0 };
	assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, collect, &q, NULL), DM_OK);
	assert_int_equal(q.attempts[0], 1);
	assert_int_equal(q.next[0], cc.now + 60);
	assert_non_null(strstr(q.error[0], "try later (server said: 451 )"));

	/* A retry file torn by a crash (no "end", half a line) or of another
	 * version is ignored: the message is due again, never damaged. */
	static const char *const torn[] = {
		"DEVMAIL-OUTBOX-RETRY 1\nattempts 5\nnext 1800000000\n",
		"DEVMAIL-OUTBOX-RETRY 1\nattempts 5\nnext 18000",
		"DEVMAIL-OUTBOX-RETRY 2\nattempts 5\nnext 1800000000\nend\n",
		"DEVMAIL-OUTBOX-RETRY 1\nattempts five\nend\n",
		"",
	};
	snprintf(path, sizeof(path), "%s/spool/queue/%s/retry", root, id);
	for (size_t i = 0; i < sizeof(torn) / sizeof(torn[0]); i++) {
		assert_int_equal(testroot_write(path, torn[i]), 0);
		memset(&q, 0, sizeof(q));
		assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, collect, &q, NULL), DM_OK);
		assert_int_equal(q.n, 1);
		assert_int_equal(q.attempts[0], 0);
		assert_int_equal(q.next[0], cc.now);
		assert_string_equal(q.error[0], "");
	}
	/* and a whole one is read */
	assert_int_equal(testroot_write(path, "DEVMAIL-OUTBOX-RETRY 1\nattempts 4\n"
	                                      "next 1700000999\nerror x y\nfuture 1\nend\n"), 0);
	memset(&q, 0, sizeof(q));
	assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, collect, &q, NULL), DM_OK);
	assert_int_equal(q.attempts[0], 4);
	assert_int_equal(q.next[0], 1700000999);
	assert_string_equal(q.error[0], "x y");
	outbox_close(ob);
	assert_int_equal(testroot_remove(root), 0);
}

/* ---- a drain shared by threads ----------------------------------------------------------- */

#define DRAIN_MSGS 40
struct drain_worker {
	struct outbox_drain *dr;
	unsigned index;
	unsigned batches;
	unsigned got[DRAIN_MSGS];   /* indexes into the shared id table */
	size_t ngot;
	enum dm_status st;
	char (*ids)[OUTBOX_ID_MAX];
	pthread_mutex_t *mu;
	unsigned *count;            /* deliveries per id, shared */
};

static void drain_fn(void *ctx, const struct outbox_batch *bt)
{
	struct drain_worker *w = ctx;
	w->batches++;
	for (size_t i = 0; i < bt->n; i++) {
		size_t len;
		free(read_source(&bt->msgs[i], &len));
		pthread_mutex_lock(w->mu);
		for (unsigned k = 0; k < DRAIN_MSGS; k++)
			if (!strcmp(w->ids[k], bt->items[i].id))
				w->count[k]++;
		pthread_mutex_unlock(w->mu);
		outcome_set(&bt->out[i], DM_OK);
	}
	usleep(2000);   /* let the other worker run */
}

static void *drain_thread(void *arg)
{
	struct drain_worker *w = arg;
	struct outbox_deliverer d = { drain_fn, NULL, w, 4, NULL };
	w->st = outbox_drain_work(w->dr, w->index, &d, NULL);
	return NULL;
}

static void test_drain_threads(void **state)
{
	char root[DM_PATH_MAX];
	static char ids[DRAIN_MSGS][OUTBOX_ID_MAX];
	unsigned count[DRAIN_MSGS] = { 0 };
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	struct clockctx cc = { 1700000000, 0 };
	(void)state;
	assert_non_null(testroot_make("outbox", root, sizeof(root)));
	struct outbox *ob = open_fake(root, &cc);
	for (int i = 0; i < DRAIN_MSGS; i++)
		enqueue_text(ob, MSG1, 1, ids[i]);
	/* not due: only OUTBOX_DRAIN_ALL takes it */
	cc.now -= 1000;
	struct outbox_drain *dr = NULL;
	assert_int_equal(outbox_drain_open(ob, 0, 2, &dr, NULL), DM_OK);
	assert_int_equal(outbox_drain_size(dr), DRAIN_MSGS);
	struct drain_worker w[2];
	pthread_t t[2];
	for (unsigned k = 0; k < 2; k++) {
		w[k] = (struct drain_worker){ .dr = dr, .index = k, .ids = ids,
		                              .mu = &mu, .count = count };
	}
	/* a due-only drain while nothing is due: no batch at all */
	for (unsigned k = 0; k < 2; k++)
		assert_int_equal(pthread_create(&t[k], NULL, drain_thread, &w[k]), 0);
	for (unsigned k = 0; k < 2; k++)
		assert_int_equal(pthread_join(t[k], NULL), 0);
	assert_int_equal(w[0].batches + w[1].batches, 0);
	struct outbox_stats stats = { 0 };
	outbox_drain_close(dr, &stats);
	assert_int_equal(stats.sent, 0);
	assert_int_equal(count_entries(root, "queue"), DRAIN_MSGS);

	assert_int_equal(outbox_drain_open(ob, OUTBOX_DRAIN_ALL, 2, &dr, NULL), DM_OK);
	for (unsigned k = 0; k < 2; k++) {
		w[k].dr = dr;
		w[k].batches = 0;
		assert_int_equal(pthread_create(&t[k], NULL, drain_thread, &w[k]), 0);
	}
	for (unsigned k = 0; k < 2; k++)
		assert_int_equal(pthread_join(t[k], NULL), 0);
	memset(&stats, 0, sizeof(stats));
	outbox_drain_close(dr, &stats);
	assert_int_equal(w[0].st, DM_OK);
	assert_int_equal(w[1].st, DM_OK);
	/* both workers had their own share; every message exactly once */
	assert_true(w[0].batches >= 1);
	assert_true(w[1].batches >= 1);
	assert_int_equal(stats.sent, DRAIN_MSGS);
	for (unsigned k = 0; k < DRAIN_MSGS; k++)
		if (count[k] != 1)
			fail_msg("%s delivered %u times", ids[k], count[k]);
	assert_int_equal(count_entries(root, "queue"), 0);
	assert_int_equal(count_entries(root, "tmp"), 0);
	assert_true(log_has(root, "sent "));
	outbox_close(ob);
	assert_int_equal(testroot_remove(root), 0);
}

/* ---- crash leftovers ------------------------------------------------------------------- */

static enum dm_status damaged_never(void *ctx, const struct outbox_item *item,
                                    const struct mail_source *msg, char *detail,
                                    size_t cap, struct dm_err *err)
{
	(void)ctx; (void)item; (void)msg; (void)detail; (void)cap; (void)err;
	fail_msg("a message marked failed was sent");
	return DM_EINVAL;
}

static void test_stale_tmp_cleaned(void **state)
{
	char root[DM_PATH_MAX], path[DM_PATH_MAX + 128], id[OUTBOX_ID_MAX];
	struct clockctx cc = { 1700000000, 0 };
	(void)state;

	assert_non_null(testroot_make("outbox", root, sizeof(root)));
	struct outbox *ob = open_fake(root, &cc);
	enqueue_text(ob, MSG1, 1, id);
	outbox_close(ob);

	/* Leftovers of a crashed enqueue and a crashed removal. */
	snprintf(path, sizeof(path), "%s/spool/tmp/20990101T000000-000001-1-00000000", root);
	assert_int_equal(mkdir(path, 0700), 0);
	strcat(path, "/msg");
	assert_int_equal(testroot_write(path, "partial"), 0);
	snprintf(path, sizeof(path), "%s/spool/tmp/20990101T000000-000002-1-00000000.del", root);
	assert_int_equal(mkdir(path, 0700), 0);

	/* While someone is between steps (shared spool lock), nothing goes. */
	snprintf(path, sizeof(path), "%s/spool/lock", root);
	int lfd = open(path, O_RDWR);
	assert_true(lfd >= 0);
	assert_int_equal(flock(lfd, LOCK_SH), 0);
	ob = open_fake(root, &cc);
	assert_int_equal(count_entries(root, "tmp"), 2);
	outbox_close(ob);
	close(lfd);

	/* A queue entry marked failed by a move that was cut short. */
	snprintf(path, sizeof(path), "%s/spool/queue/%s/env", root, id);
	size_t len;
	char *env = testroot_slurp(path, &len);
	char *st = strstr(env, "state queued");
	assert_non_null(st);
	memcpy(st, "state failed", 12);
	assert_int_equal(paths_write_atomic(path, env, len, 0600, NULL), DM_OK);
	free(env);

	/* (an older version left it so; this one moves first and records
	 * the reason after) the next delivery run finishes the move without
	 * sending it; until then it is listed nowhere */
	ob = open_fake(root, &cc);
	assert_int_equal(count_entries(root, "tmp"), 0);
	struct listed lq = { 0 };
	assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, collect, &lq, NULL), DM_OK);
	assert_int_equal(lq.n, 0);
	struct outbox_stats ms = { 0 };
	assert_int_equal(outbox_deliver(ob, NULL, damaged_never, NULL, &ms, NULL), DM_OK);
	assert_int_equal(ms.sent + ms.failed + ms.deferred, 0);
	assert_int_equal(count_entries(root, "queue"), 0);
	assert_int_equal(count_entries(root, "failed"), 1);
	outbox_close(ob);

	/* A spool entry in a format version we do not know is refused, named. */
	snprintf(path, sizeof(path), "%s/spool/failed/%s/env", root, id);
	const char *v9 = "DEVMAIL-OUTBOX 9\nend\n";
	assert_int_equal(paths_write_atomic(path, v9, strlen(v9), 0600, NULL), DM_OK);
	ob = open_fake(root, &cc);
	struct listed l = { 0 };
	struct dm_err err;
	dm_err_clear(&err);
	/* listed as damaged, the reason naming the version */
	assert_int_equal(outbox_list(ob, OUTBOX_FAILED, collect, &l, &err), DM_OK);
	assert_int_equal(l.n, 1);
	assert_non_null(strstr(l.error[0], "version 9"));
	outbox_close(ob);
	assert_int_equal(testroot_remove(root), 0);
}

/* ---- a damaged envelope ------------------------------------------------------ */

struct damaged_seen {
	size_t n, damaged;
	char id[4][OUTBOX_ID_MAX];
	char reason[4][600];
};

static int collect_damaged(void *ctx, const struct outbox_item *it)
{
	struct damaged_seen *d = ctx;
	if (d->n < 4) {
		snprintf(d->id[d->n], OUTBOX_ID_MAX, "%s", it->id);
		snprintf(d->reason[d->n], sizeof(d->reason[0]), "%s",
		         it->damaged ? it->last_error : "");
	}
	d->n++;
	if (it->damaged) {
		d->damaged++;
		assert_int_equal(it->nrcpt, 0);
	}
	return 0;
}

static unsigned damaged_calls;
static enum dm_status damaged_deliver(void *ctx, const struct outbox_item *item,
                                      const struct mail_source *msg,
                                      char *detail, size_t cap,
                                      struct dm_err *err)
{
	(void)ctx; (void)item; (void)err; (void)detail; (void)cap;
	size_t len;
	free(read_source(msg, &len));
	damaged_calls++;
	return DM_OK;
}

/* One malformed env: listing shows it as damaged and goes on; delivery
 * moves it to failed (logged) instead of skipping it forever, and still
 * delivers the others. */
static void test_damaged_env(void **state)
{
	(void)state;
	char root[DM_PATH_MAX], path[DM_PATH_MAX + 128];
	char a[OUTBOX_ID_MAX], b[OUTBOX_ID_MAX], c[OUTBOX_ID_MAX];
	assert_non_null(testroot_make("outbox-damaged", root, sizeof(root)));
	struct clockctx cc = { 1700000000, 0.0 };
	struct outbox *ob = open_fake(root, &cc);
	enqueue_text(ob, MSG1, 1, a);
	enqueue_text(ob, MSG1, 1, b);
	enqueue_text(ob, MSG1, 1, c);
	snprintf(path, sizeof(path), "%s/spool/queue/%s/env", root, b);
	const char *bad = "DEVMAIL-OUTBOX 1\ncreated yesterday\nend\n";
	assert_int_equal(paths_write_atomic(path, bad, strlen(bad), 0600, NULL), DM_OK);

	struct damaged_seen d = { 0 };
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(outbox_list(ob, OUTBOX_QUEUE, collect_damaged, &d, &err), DM_OK);
	assert_int_equal(d.n, 3);
	assert_int_equal(d.damaged, 1);
	assert_string_equal(d.id[1], b);
	assert_non_null(strstr(d.reason[1], "malformed"));

	/* "Retry all now" (OUTBOX -a, devmail-sendmail -q) steps over the
	 * damaged entry instead of stopping the whole queue at it. */
	unsigned made_due = 0;
	dm_err_clear(&err);
	assert_int_equal(outbox_retry_now(ob, NULL, &made_due, &err), DM_OK);
	assert_int_equal(made_due, 2);

	struct outbox_stats st = { 0 };
	damaged_calls = 0;
	assert_int_equal(outbox_deliver(ob, NULL, damaged_deliver, NULL, &st, &err), DM_OK);
	assert_int_equal(damaged_calls, 2);
	assert_int_equal(st.sent, 2);
	assert_int_equal(st.failed, 1);
	assert_int_equal(count_entries(root, "queue"), 0);
	assert_int_equal(count_entries(root, "failed"), 1);
	char line[200];
	snprintf(line, sizeof(line), "failed %s: damaged envelope", b);
	assert_true(log_has(root, line));
	/* the files are kept as they were; OUTBOX -f shows it damaged */
	snprintf(path, sizeof(path), "%s/spool/failed/%s/env", root, b);
	char *kept = testroot_slurp(path, NULL);
	assert_non_null(kept);
	assert_string_equal(kept, bad);
	free(kept);
	memset(&d, 0, sizeof(d));
	assert_int_equal(outbox_list(ob, OUTBOX_FAILED, collect_damaged, &d, &err), DM_OK);
	assert_int_equal(d.n, 1);
	assert_int_equal(d.damaged, 1);
	outbox_close(ob);
	assert_int_equal(testroot_remove(root), 0);
}

/* ---- two processes at once ------------------------------------------------------------- */

struct appendctx {
	const char *path;
};

static enum dm_status append_deliver(void *ctx, const struct outbox_item *item,
                                     const struct mail_source *msg, char *detail,
                                     size_t cap, struct dm_err *err)
{
	struct appendctx *a = ctx;
	char line[OUTBOX_ID_MAX + 2];
	size_t len;
	(void)detail;
	(void)cap;
	char *body = read_source(msg, &len);
	free(body);
	if (len != item->size)
		return dm_err_set(err, DM_EINVAL, "short message");
	int fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT, 0600);
	if (fd < 0)
		return dm_err_set(err, DM_EIO, "sink");
	int n = snprintf(line, sizeof(line), "%s\n", item->id);
	ssize_t w = write(fd, line, (size_t)n);
	close(fd);
	return w == n ? DM_OK : dm_err_set(err, DM_EIO, "sink write");
}

static void append_batch(void *ctx, const struct outbox_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		outcome_set(&b->out[i], append_deliver(ctx, &b->items[i], &b->msgs[i],
		                                       b->out[i].detail,
		                                       sizeof(b->out[i].detail),
		                                       &b->out[i].err));
}

static void test_two_deliverers(void **state)
{
	enum { N = 200 };
	char root[DM_PATH_MAX], sink[DM_PATH_MAX + 16];
	static char ids[N][OUTBOX_ID_MAX];
	struct clockctx cc = { 0, 0 };
	int gate[2];
	pid_t kids[2];
	(void)state;

	assert_non_null(testroot_make("outbox", root, sizeof(root)));
	snprintf(sink, sizeof(sink), "%s/sink", root);
	cc.now = time(NULL);
	struct outbox *ob = open_fake(root, &cc);
	for (int i = 0; i < N; i++)
		enqueue_text(ob, MSG1, 1, ids[i]);
	outbox_close(ob);

	assert_int_equal(pipe(gate), 0);
	for (int k = 0; k < 2; k++) {
		kids[k] = fork();
		assert_true(kids[k] >= 0);
		if (kids[k] == 0) {
			char c;
			close(gate[1]);
			/* Both start when the parent closes the gate. */
			if (read(gate[0], &c, 1) != 0)
				_exit(3);
			struct outbox *o = NULL;
			struct appendctx a = { sink };
			struct outbox_stats s = { 0 };
			if (outbox_open(root, NULL, &o, NULL) != DM_OK)
				_exit(4);
			/* One per-message deliverer, one batch deliverer. */
			struct outbox_deliverer d = { append_batch, NULL, &a, 7, NULL };
			enum dm_status st = k == 0
				? outbox_deliver(o, NULL, append_deliver, &a, &s, NULL)
				: outbox_deliver_due(o, &d, &s, NULL);
			outbox_close(o);
			_exit(st == DM_OK && s.failed == 0 ? 0 : 5);
		}
	}
	close(gate[0]);
	close(gate[1]);
	for (int k = 0; k < 2; k++) {
		int status;
		assert_int_equal(waitpid(kids[k], &status, 0), kids[k]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	/* Every id exactly once. */
	char *all = testroot_slurp(sink, NULL);
	assert_non_null(all);
	size_t lines = 0;
	for (char *p = all; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, N);
	for (int i = 0; i < N; i++) {
		char needle[OUTBOX_ID_MAX + 2];
		snprintf(needle, sizeof(needle), "%.63s\n", ids[i]);
		char *first = strstr(all, needle);
		if (!first)
			fail_msg("%s never delivered", ids[i]);
		if (strstr(first + 1, needle))
			fail_msg("%s delivered twice", ids[i]);
	}
	free(all);
	assert_int_equal(count_entries(root, "queue"), 0);
	assert_int_equal(testroot_remove(root), 0);
}

/* ---- SIGKILL at random points ------------------------------------------------------------ */

#define CRASH_RUNS 56
#define CRASH_MSGS 6   /* seq 1, 5: deferred once; seq 4: refused for good;
                          seq 3: sent to its first recipient, kept for the
                          second (odd seqs have two recipients) */

/* Every step a run of the driver goes through; even runs kill at each in
 * turn (the first time it happens), so each one is a crash point. */
static const char *const crash_steps[] = {
	"enqueue-tmp", "enqueue-msg", "enqueue-env", "enqueue-rename",
	"enqueue-commit", "deliver-lock", "deliver-return", "remove-rename",
	"remove-commit", "remove-clean", "retry-write", "env-write",
	"fail-move", "fail-commit",
};
#define NCRASH_STEPS (sizeof(crash_steps) / sizeof(crash_steps[0]))
#define MAX_MARKS 4096

struct marks {
	char *line[MAX_MARKS];
	size_t n;
};

static uint64_t xs(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* Runs argv with stdout on a pipe, collecting marker lines.  With
 * kill_after > 0 the child is SIGKILLed after that many lines. */
static int run_driver(char *const argv[], struct marks *m, size_t kill_after)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execv(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	FILE *f = fdopen(p[0], "r");
	assert_non_null(f);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	bool killed = false;
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			line[n - 1] = '\0';
		if (m->n < MAX_MARKS)
			m->line[m->n++] = strdup(line);
		if (kill_after && !killed && m->n >= kill_after) {
			kill(pid, SIGKILL);
			killed = true;
		}
	}
	free(line);
	fclose(f);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void marks_free(struct marks *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->line[i]);
	m->n = 0;
}

static bool marks_has(const struct marks *m, const char *prefix, const char *id)
{
	char want[256];
	snprintf(want, sizeof(want), "%.40s %.200s", prefix, id);
	for (size_t i = 0; i < m->n; i++)
		if (!strcmp(m->line[i], want))
			return true;
	return false;
}

/* Is line a "step N <name> <id>" marker? */
static bool mark_is_step(const char *line, const char *name, const char *id)
{
	char tail[256];
	snprintf(tail, sizeof(tail), " %.40s %.200s", name, id);
	size_t tl = strlen(tail), l = strlen(line);
	return !strncmp(line, "step ", 5) && l > tl && !strcmp(line + l - tl, tail);
}

/* The duplicate window of docs/outbox.md for a SIGKILL: the "server" began
 * taking <id> and the outbox had not yet recorded it (the removal rename,
 * or the shorter recipient list) when the process died. */
static bool marks_unrecorded(const struct marks *m, const char *id)
{
	char accepting[128];
	bool pending = false;
	snprintf(accepting, sizeof(accepting), "accepting %.100s", id);
	for (size_t i = 0; i < m->n; i++) {
		if (!strcmp(m->line[i], accepting))
			pending = true;
		else if (mark_is_step(m->line[i], "remove-rename", id) ||
		         mark_is_step(m->line[i], "env-write", id))
			pending = false;
	}
	return pending;
}

/* The step name of the last "step N <name> <id>" marker, or "". */
static const char *marks_last_step(const struct marks *m, char *out, size_t cap)
{
	out[0] = '\0';
	for (size_t i = m->n; i-- > 0;) {
		long n;
		char name[64];
		if (sscanf(m->line[i], "step %ld %63s", &n, name) == 2) {
			snprintf(out, cap, "%s", name);
			break;
		}
	}
	return out;
}

struct rec {
	char id[OUTBOX_ID_MAX];
	unsigned seq;
	char rcpt[256];     /* "a@x" or "a@x,b@y" */
};

/* Parses a sink; checks each complete record against root/orig/<seq>.  A
 * torn last record (the kill landed while the "server" was writing) is
 * ignored only when `torn_ok`. */
static size_t parse_sink(const char *root, const char *path, struct rec *recs,
                         size_t max, bool torn_ok)
{
	size_t len, n = 0;
	char *s = testroot_slurp(path, &len);
	if (!s)
		return 0;
	size_t off = 0;
	while (off < len) {
		char id[OUTBOX_ID_MAX], rcpt[256];
		size_t blen;
		int hl = 0;
		if (sscanf(s + off, "REC %63s %zu %255s\n%n", id, &blen, rcpt, &hl) != 3 ||
		    hl == 0 || off + (size_t)hl + blen + 1 > len) {
			if (!torn_ok)
				fail_msg("%s: torn record at %zu", path, off);
			break;
		}
		const char *body = s + off + hl;
		const char *x = strstr(body, "X-Seq: ");
		assert_non_null(x);
		unsigned seq = (unsigned)strtoul(x + 7, NULL, 10);
		char opath[DM_PATH_MAX + 32];
		snprintf(opath, sizeof(opath), "%s/orig/%u", root, seq);
		size_t olen;
		char *orig = testroot_slurp(opath, &olen);
		assert_non_null(orig);
		if (olen != blen || memcmp(orig, body, blen) != 0)
			fail_msg("message seq %u (%s) delivered with different bytes", seq, id);
		free(orig);
		assert_true(n < max);
		snprintf(recs[n].id, sizeof(recs[n].id), "%s", id);
		snprintf(recs[n].rcpt, sizeof(recs[n].rcpt), "%s", rcpt);
		recs[n].seq = seq;
		n++;
		off += (size_t)hl + blen + 1;
	}
	free(s);
	return n;
}

/* Has rcpt list `list` ("a,b") the address `addr`? */
static bool rcpt_has(const char *list, const char *addr)
{
	size_t n = strlen(addr);
	for (const char *p = list; p && *p;) {
		const char *comma = strchr(p, ',');
		size_t l = comma ? (size_t)(comma - p) : strlen(p);
		if (l == n && !strncmp(p, addr, n))
			return true;
		p = comma ? comma + 1 : NULL;
	}
	return false;
}

/* One run of the driver (killed somewhere), then a restart that delivers
 * the rest; checks every (message, recipient) was served exactly once, or
 * twice inside the duplicate window.  Returns whether run 1 was killed;
 * *killed_at gets the last step name before a self-kill. */
static bool crash_one(const char *driver, unsigned run, const char *kill,
                      size_t kill_after, unsigned *dups, char *killed_at,
                      size_t cap)
{
	char root[DM_PATH_MAX], sink1[DM_PATH_MAX + 16], sink2[DM_PATH_MAX + 16];
	char seedbuf[32], countbuf[16], killbuf[64];
	struct marks m1 = { 0 }, m2 = { 0 };

	assert_non_null(testroot_make("outbox", root, sizeof(root)));
	snprintf(sink1, sizeof(sink1), "%s/sink1", root);
	snprintf(sink2, sizeof(sink2), "%s/sink2", root);
	snprintf(seedbuf, sizeof(seedbuf), "%u", run + 1);
	snprintf(countbuf, sizeof(countbuf), "%d", CRASH_MSGS);
	snprintf(killbuf, sizeof(killbuf), "%s", kill);
	char *argv1[] = { (char *)driver, "run", root, sink1, seedbuf, countbuf,
	                  killbuf, NULL };
	int status = run_driver(argv1, &m1, kill_after);
	bool crashed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
	if (!crashed) {
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		assert_true(m1.n > 0);
		assert_string_equal(m1.line[m1.n - 1], "done");
	}
	marks_last_step(&m1, killed_at, cap);

	char *argv2[] = { (char *)driver, "finish", root, sink2, NULL };
	status = run_driver(argv2, &m2, 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_string_equal(m2.line[m2.n - 1], "done");

	struct rec recs[64];
	size_t n1 = parse_sink(root, sink1, recs, 64, crashed);
	size_t n2 = parse_sink(root, sink2, recs + n1, 64 - n1, false);
	size_t total = n1 + n2;

	/* The message refused permanently (seq % 6 == 4) is in failed/,
	 * intact, unless the kill fell before its failure was recorded (then
	 * the restart delivered it). */
	int failed_seq = -1;
	size_t nfailed = count_entries(root, "failed");
	assert_true(nfailed <= 1);
	if (nfailed == 1) {
		char fdir[DM_PATH_MAX + 32], fpath[DM_PATH_MAX + 128], opath[DM_PATH_MAX + 32];
		snprintf(fdir, sizeof(fdir), "%s/spool/failed", root);
		DIR *d = opendir(fdir);
		assert_non_null(d);
		struct dirent *de;
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.')
				snprintf(fpath, sizeof(fpath), "%s/%.64s/msg", fdir, de->d_name);
		closedir(d);
		size_t flen, olen;
		char *fm = testroot_slurp(fpath, &flen);
		assert_non_null(fm);
		const char *x = strstr(fm, "X-Seq: ");
		assert_non_null(x);
		failed_seq = atoi(x + 7);
		assert_int_equal(failed_seq % 6, 4);
		snprintf(opath, sizeof(opath), "%s/orig/%d", root, failed_seq);
		char *om = testroot_slurp(opath, &olen);
		assert_non_null(om);
		assert_int_equal(flen, olen);
		assert_memory_equal(fm, om, flen);
		free(fm);
		free(om);
	}

	static const char *const rcpts[2] = { "ops@example.com", "backup@example.com" };
	for (unsigned seq = 0; seq < CRASH_MSGS; seq++) {
		char begin[32];
		snprintf(begin, sizeof(begin), "%u", seq);
		bool began = marks_has(&m1, "begin", begin);
		bool queued = false;
		for (size_t i = 0; i < m1.n; i++) {
			unsigned s2;
			if (sscanf(m1.line[i], "queued %u ", &s2) == 1 && s2 == seq)
				queued = true;
		}
		for (unsigned k = 0; k < 1 + seq % 2; k++) {
			unsigned count = 0;
			const char *id = NULL;
			for (size_t i = 0; i < total; i++) {
				if (recs[i].seq != seq)
					continue;
				if (id && strcmp(id, recs[i].id))
					fail_msg("run %u: seq %u delivered under two ids", run, seq);
				id = recs[i].id;
				count += rcpt_has(recs[i].rcpt, rcpts[k]);
			}
			if ((int)seq == failed_seq) {
				if (count)
					fail_msg("run %u: seq %u both failed and delivered", run, seq);
				continue;
			}
			if (queued && count == 0)
				fail_msg("run %u: seq %u was queued but never delivered to %s",
				         run, seq, rcpts[k]);
			if (!began && count)
				fail_msg("run %u: seq %u delivered but never enqueued", run, seq);
			if (count > 1) {
				/* Allowed only when the kill fell after the "server"
				 * took it and before the outbox recorded that. */
				if (!crashed || !marks_unrecorded(&m1, id) || count > 2)
					fail_msg("run %u: seq %u (%s) delivered %u times to %s "
					         "outside the crash window", run, seq, id, count,
					         rcpts[k]);
				(*dups)++;
			}
		}
	}
	assert_int_equal(count_entries(root, "queue"), 0);
	assert_int_equal(count_entries(root, "tmp"), 0);
	marks_free(&m1);
	marks_free(&m2);
	assert_int_equal(testroot_remove(root), 0);
	return crashed;
}

static void test_sigkill_random_points(void **state)
{
	const char *bdir = getenv("DEVMAIL_BUILD_DIR");
	char driver[DM_PATH_MAX];
	unsigned self_kills = 0, outside_kills = 0, dups = 0;
	bool hit[NCRASH_STEPS] = { false };
	(void)state;

	snprintf(driver, sizeof(driver), "%s/outboxcrash", bdir && *bdir ? bdir : ".");
	assert_int_equal(access(driver, X_OK), 0);

	for (unsigned run = 0; run < CRASH_RUNS; run++) {
		uint64_t rng = 0x9e3779b97f4a7c15ull ^ (run * 0x100000001b3ull + 1);
		char kill[64], at[64];
		size_t kill_after = 0;

		xs(&rng);
		/* Even runs: the driver kills itself at a named step, each name in
		 * turn (first occurrence, then second); runs 1 mod 4: at a random
		 * step number; runs 3 mod 4: we kill it from outside after a
		 * random number of progress lines (lands anywhere, also inside a
		 * step). */
		if (run % 2 == 0) {
			size_t k = (run / 2) % NCRASH_STEPS;
			snprintf(kill, sizeof(kill), "%s@%zu", crash_steps[k],
			         1 + (run / 2) / NCRASH_STEPS);
		} else if (run % 4 == 1) {
			snprintf(kill, sizeof(kill), "%ld", 1 + (long)(xs(&rng) % 80));
		} else {
			snprintf(kill, sizeof(kill), "0");
			kill_after = 1 + (size_t)(xs(&rng) % 100);
		}
		bool crashed = crash_one(driver, run, kill, kill_after, &dups, at,
		                         sizeof(at));
		if (!crashed)
			continue;
		if (run % 4 == 3) {
			outside_kills++;
			continue;
		}
		self_kills++;
		if (run % 2 == 0) {
			/* the kill came right after the named step */
			size_t k = (run / 2) % NCRASH_STEPS;
			if (!strcmp(at, crash_steps[k]))
				hit[k] = true;
		}
	}
	print_message("outbox crash: %u self-kills at steps, %u kills from outside, %u allowed duplicates\n",
	              self_kills, outside_kills, dups);
	/* The kills must actually have happened (the test cannot pass
	 * vacuously), and at every step at least once. */
	for (size_t k = 0; k < NCRASH_STEPS; k++)
		if (!hit[k])
			fail_msg("no run was killed right after step %s", crash_steps[k]);
	assert_true(self_kills >= CRASH_RUNS / 3);
	assert_true(outside_kills >= 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_table),
		cmocka_unit_test(test_enqueue_durable),
		cmocka_unit_test(test_scan_flags),
		cmocka_unit_test(test_envelope_flags_persist),
		cmocka_unit_test(test_delivery_outcomes),
		cmocka_unit_test(test_locked_message_skipped),
		cmocka_unit_test(test_batch_delivery),
		cmocka_unit_test(test_batch_commit_order),
		cmocka_unit_test(test_partial_delivery),
		cmocka_unit_test(test_requeue),
		cmocka_unit_test(test_retry_file_advisory),
		cmocka_unit_test(test_drain_threads),
		cmocka_unit_test(test_stale_tmp_cleaned),
		cmocka_unit_test(test_damaged_env),
		cmocka_unit_test(test_two_deliverers),
		cmocka_unit_test(test_sigkill_random_points),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
