/* test_log.c - the system log: line format in local time, sanitising,
 * truncation, rotation, several lines in one write (log_write_lines), log_tail across rotation, and several real processes
 * (tests/lib/prog_logwriter.c) appending at once, with and without rotation
 * under contention. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "testroot.h"

#define STAMP_RE "^([0-9]{2})/([0-9]{2})/([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})\\.([0-9]{3}), "
#define STAMP_LEN 23

struct log_fixture {
	char root[256];
	char file[300];
	char bak[300];
};

static int setup(void **state)
{
	struct log_fixture *f = calloc(1, sizeof(*f));
	if (!f || !testroot_make("log", f->root, sizeof(f->root)))
		return -1;
	snprintf(f->file, sizeof(f->file), "%s/log/system.log", f->root);
	snprintf(f->bak, sizeof(f->bak), "%s/log/system.log.bak", f->root);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct log_fixture *f = *state;
	assert_int_equal(testroot_remove(f->root), 0);
	free(f);
	return 0;
}

/* The lines of a file.  Fails the test unless the file is empty or ends
 * with a newline (no partial line).  A missing file gives 0 lines. */
struct lines {
	char *buf;
	char **v;
	size_t n;
};

static void lines_read(const char *path, struct lines *l)
{
	size_t size = 0;
	memset(l, 0, sizeof(*l));
	l->buf = testroot_slurp(path, &size);
	if (!l->buf) {
		assert_int_equal(errno, ENOENT);
		return;
	}
	if (size > 0 && l->buf[size - 1] != '\n')
		fail_msg("%s does not end with a newline", path);
	assert_int_equal(strlen(l->buf), size);   /* no NUL bytes */
	size_t count = 0;
	for (size_t i = 0; i < size; i++)
		count += l->buf[i] == '\n';
	l->v = calloc(count + 1, sizeof(char *));
	assert_non_null(l->v);
	char *p = l->buf;
	for (size_t i = 0; i < count; i++) {
		char *nl = strchr(p, '\n');
		*nl = '\0';
		l->v[l->n++] = p;
		p = nl + 1;
	}
}

static void lines_free(struct lines *l)
{
	free(l->buf);
	free(l->v);
}

static off_t file_size(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return -1;
	return st.st_size;
}

/* Collects log_tail output. */
struct tail_out {
	char lines[1000][LOG_LINE_MAX + 64];
	size_t n;
};

static void tail_collect(const char *line, void *ctx)
{
	struct tail_out *t = ctx;
	assert_true(t->n < 1000);
	assert_true(strlen(line) < sizeof(t->lines[0]));
	strcpy(t->lines[t->n++], line);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Format, in local time: with a zone 5:30 off UTC, a UTC stamp or a swapped
 * day and month cannot fall inside the window around the write. */
static void test_format_local_time(void **state)
{
	struct log_fixture *f = *state;
	struct lines l;
	regex_t re;
	regmatch_t m[8];

	setenv("TZ", "XST-5:30", 1);
	tzset();
	long long before = now_ms();
	assert_int_equal(log_write(f->root, 0, NULL, "hello %s %d", "world", 42), DM_OK);
	long long after = now_ms();

	lines_read(f->file, &l);
	assert_int_equal(l.n, 1);
	assert_int_equal(regcomp(&re, STAMP_RE "hello world 42$", REG_EXTENDED), 0);
	if (regexec(&re, l.v[0], 8, m, 0) != 0)
		fail_msg("line does not match the JANOS form: '%s'", l.v[0]);
	int f_[7];
	for (int i = 0; i < 7; i++)
		f_[i] = atoi(l.v[0] + m[i + 1].rm_so);
	struct tm tm = { 0 };
	tm.tm_mon = f_[0] - 1;
	tm.tm_mday = f_[1];
	tm.tm_year = 100 + f_[2];
	tm.tm_hour = f_[3];
	tm.tm_min = f_[4];
	tm.tm_sec = f_[5];
	tm.tm_isdst = 0;
	long long stamp = (long long)mktime(&tm) * 1000 + f_[6];
	if (stamp < before || stamp > after)
		fail_msg("stamp '%.23s' (%lld) outside [%lld, %lld]", l.v[0], stamp,
		         before, after);
	regfree(&re);
	lines_free(&l);

	/* log/ was created with the files private to the unit. */
	struct stat st;
	char dir[300];
	snprintf(dir, sizeof(dir), "%s/log", f->root);
	assert_int_equal(stat(dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(stat(f->file, &st), 0);
	assert_int_equal(st.st_mode & 077, 0);
	unsetenv("TZ");
	tzset();
}

static void test_sanitise(void **state)
{
	struct log_fixture *f = *state;
	struct lines l;

	assert_int_equal(log_write(f->root, 0, NULL, "%s", "a\r\nb\tc\x01" "d\x7f" "e\x1b[0m"),
	                 DM_OK);
	assert_int_equal(log_write(f->root, 0, NULL, "%s",
	                 "login ok\r\n01/01/70 00:00:00.000, forged entry"), DM_OK);
	assert_int_equal(log_write(f->root, 0, NULL, "%s", ""), DM_OK);
	assert_int_equal(log_write(f->root, 0, NULL, "%s", "caf\xc3\xa9"), DM_OK);
	lines_read(f->file, &l);
	assert_int_equal(l.n, 4);
	assert_string_equal(l.v[0] + STAMP_LEN, "a  b c d e [0m");
	assert_string_equal(l.v[1] + STAMP_LEN,
	                    "login ok  01/01/70 00:00:00.000, forged entry");
	assert_string_equal(l.v[2] + STAMP_LEN, "");
	assert_string_equal(l.v[2] + STAMP_LEN - 2, ", ");
	assert_string_equal(l.v[3] + STAMP_LEN, "caf\xc3\xa9");
	lines_free(&l);
}

static void test_truncate(void **state)
{
	struct log_fixture *f = *state;
	char *big = malloc(5001);
	struct lines l;

	assert_non_null(big);
	memset(big, 'y', 5000);
	big[5000] = '\0';
	assert_int_equal(log_write(f->root, 0, NULL, "%s", big), DM_OK);
	/* A 2-byte character straddling the limit is dropped whole. */
	memset(big, 'a', LOG_LINE_MAX - 1);
	strcpy(big + LOG_LINE_MAX - 1, "\xc3\xa9tail");
	assert_int_equal(log_write(f->root, 0, NULL, "%s", big), DM_OK);
	lines_read(f->file, &l);
	assert_int_equal(l.n, 2);
	assert_int_equal(strlen(l.v[0]), STAMP_LEN + LOG_LINE_MAX);
	assert_int_equal(strlen(l.v[1]), STAMP_LEN + LOG_LINE_MAX - 1);
	assert_int_equal(l.v[1][strlen(l.v[1]) - 1], 'a');
	lines_free(&l);
	free(big);
}

/* Parses "line NNN" payloads; returns the number. */
static int payload_num(const char *line)
{
	int n = -1;
	if (sscanf(line + STAMP_LEN, "line %d", &n) != 1)
		fail_msg("bad line '%s'", line);
	return n;
}

/* Several lines in one call: each stamped and cleaned like log_write(),
 * in order, NULL as an empty line, a long one cut; with a limit the whole
 * group goes into the file after the rotation (never split across). */
static void test_write_lines(void **state)
{
	struct log_fixture *f = *state;
	struct lines l;
	char *big = malloc(LOG_LINE_MAX + 100);
	assert_non_null(big);
	memset(big, 'z', LOG_LINE_MAX + 99);
	big[LOG_LINE_MAX + 99] = '\0';
	const char *group[] = { "sent a", "deferred b:\r\nforged", NULL, big };

	assert_int_equal(log_write(f->root, 0, NULL, "before"), DM_OK);
	assert_int_equal(log_write_lines(f->root, 0, group, 4, NULL), DM_OK);
	assert_int_equal(log_write_lines(f->root, 0, group, 0, NULL), DM_OK);
	lines_read(f->file, &l);
	assert_int_equal(l.n, 5);
	assert_string_equal(l.v[0] + STAMP_LEN, "before");
	assert_string_equal(l.v[1] + STAMP_LEN, "sent a");
	assert_string_equal(l.v[2] + STAMP_LEN, "deferred b:  forged");
	assert_string_equal(l.v[3] + STAMP_LEN, "");
	assert_int_equal(strlen(l.v[4]), STAMP_LEN + LOG_LINE_MAX);
	for (size_t i = 0; i < l.n; i++) {
		regex_t re;
		assert_int_equal(regcomp(&re, STAMP_RE, REG_EXTENDED), 0);
		assert_int_equal(regexec(&re, l.v[i], 0, NULL, 0), 0);
		regfree(&re);
	}
	lines_free(&l);

	/* 10 lines of 32 bytes against a 400-byte limit: the file holds 5 + 10
	 * after the first group would pass it, so the second group starts a new
	 * file whole. */
	char names[10][16];
	const char *ten[10];
	for (int i = 0; i < 10; i++) {
		snprintf(names[i], sizeof(names[i]), "line %03d", i);
		ten[i] = names[i];
	}
	assert_int_equal(log_write_lines(f->root, 400, ten, 10, NULL), DM_OK);
	lines_read(f->file, &l);
	assert_int_equal(l.n, 10);
	assert_int_equal(payload_num(l.v[0]), 0);
	assert_int_equal(payload_num(l.v[9]), 9);
	lines_free(&l);
	lines_read(f->bak, &l);
	assert_int_equal(l.n, 5);
	lines_free(&l);
	free(big);
}

/* 100 lines of 32 bytes ("MM/DD/YY HH:MM:SS.mmm, line NNN\n") with a
 * 1000-byte limit: 31 lines fit (992 bytes), the 32nd would pass the limit,
 * so rotation happens before lines 31, 62 and 93. */
static void log_fill_rotating(struct log_fixture *f)
{
	for (int i = 0; i < 100; i++) {
		assert_int_equal(log_write(f->root, 1000, NULL, "line %03d", i), DM_OK);
		off_t sz = file_size(f->file);
		assert_true(sz > 0 && sz <= 1000);
	}
}

static void test_rotation(void **state)
{
	struct log_fixture *f = *state;
	struct lines live, bak;

	log_fill_rotating(f);
	lines_read(f->file, &live);
	lines_read(f->bak, &bak);
	assert_int_equal(bak.n, 31);
	assert_int_equal(live.n, 7);
	assert_int_equal(file_size(f->bak), 31 * 32);
	for (size_t i = 0; i < bak.n; i++)
		assert_int_equal(payload_num(bak.v[i]), 62 + (int)i);
	for (size_t i = 0; i < live.n; i++)
		assert_int_equal(payload_num(live.v[i]), 93 + (int)i);
	lines_free(&live);
	lines_free(&bak);
}

static void test_tail(void **state)
{
	struct log_fixture *f = *state;
	static struct tail_out t;
	static const struct { size_t n, got; int first; } cases[] = {
		{ 1, 1, 99 }, { 3, 3, 97 }, { 7, 7, 93 }, { 8, 8, 92 },
		{ 10, 10, 90 }, { 38, 38, 62 }, { 1000, 38, 62 },
	};

	/* Nothing logged yet: no lines, no error, nothing created. */
	t.n = 0;
	assert_int_equal(log_tail(f->root, 10, tail_collect, &t, NULL), DM_OK);
	assert_int_equal(t.n, 0);
	assert_int_equal(file_size(f->file), -1);

	log_fill_rotating(f);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		t.n = 0;
		assert_int_equal(log_tail(f->root, cases[c].n, tail_collect, &t, NULL), DM_OK);
		assert_int_equal(t.n, cases[c].got);
		for (size_t i = 0; i < t.n; i++)
			assert_int_equal(payload_num(t.lines[i]), cases[c].first + (int)i);
	}
	t.n = 0;
	assert_int_equal(log_tail(f->root, 0, tail_collect, &t, NULL), DM_OK);
	assert_int_equal(t.n, 0);
}

/* A file written by something else: last line without a newline, empty
 * lines; and only the live file present. */
static void test_tail_foreign_file(void **state)
{
	struct log_fixture *f = *state;
	static struct tail_out t;
	char dir[300];

	snprintf(dir, sizeof(dir), "%s/log", f->root);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(testroot_write(f->file, "first\n\nthird\nlast-no-newline"), 0);
	t.n = 0;
	assert_int_equal(log_tail(f->root, 10, tail_collect, &t, NULL), DM_OK);
	assert_int_equal(t.n, 4);
	assert_string_equal(t.lines[0], "first");
	assert_string_equal(t.lines[1], "");
	assert_string_equal(t.lines[2], "third");
	assert_string_equal(t.lines[3], "last-no-newline");
	t.n = 0;
	assert_int_equal(log_tail(f->root, 2, tail_collect, &t, NULL), DM_OK);
	assert_int_equal(t.n, 2);
	assert_string_equal(t.lines[0], "third");
	assert_string_equal(t.lines[1], "last-no-newline");
}

/* Starts `nproc` logwriter processes and waits for all of them. */
static void run_writers(const char *root, int nproc, long count, long max_size,
                        int pad)
{
	const char *bdir = getenv("DEVMAIL_BUILD_DIR");
	char prog[1024];
	pid_t pids[16];

	if (!bdir || !*bdir)
		fail_msg("DEVMAIL_BUILD_DIR is not set (run under ctest)");
	snprintf(prog, sizeof(prog), "%s/logwriter", bdir);
	if (access(prog, X_OK) != 0)
		fail_msg("%s: %s (build the logwriter target)", prog, strerror(errno));
	assert_true(nproc <= 16);
	for (int i = 0; i < nproc; i++) {
		char id[16], cnt[24], max[24], padtxt[16];
		snprintf(id, sizeof(id), "%d", i);
		snprintf(cnt, sizeof(cnt), "%ld", count);
		snprintf(max, sizeof(max), "%ld", max_size);
		snprintf(padtxt, sizeof(padtxt), "%d", pad);
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			execl(prog, "logwriter", root, id, cnt, max, padtxt, (char *)NULL);
			_exit(127);
		}
	}
	for (int i = 0; i < nproc; i++) {
		int status;
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail_msg("logwriter %d failed (status 0x%x)", i, status);
	}
}

/* Checks each line is whole and returns writer and seq. */
static void parse_writer_line(regex_t *re, const char *line, int pad,
                              int *writer, long *seq)
{
	regmatch_t m[11];
	if (regexec(re, line, 11, m, 0) != 0)
		fail_msg("garbled line: '%s'", line);
	*writer = atoi(line + m[8].rm_so);
	*seq = atol(line + m[9].rm_so);
	if (m[10].rm_eo - m[10].rm_so != pad)
		fail_msg("line with %d pad bytes, want %d: '%s'",
		         (int)(m[10].rm_eo - m[10].rm_so), pad, line);
}

/* Four processes, 10,000 lines each, limit high enough that nothing rotates:
 * all 40,000 lines present, whole, each writer's sequence complete and in
 * order. */
static void test_four_writers(void **state)
{
	struct log_fixture *f = *state;
	enum { NW = 4, COUNT = 10000 };
	struct lines l;
	regex_t re;
	long next[NW] = { 0 };

	run_writers(f->root, NW, COUNT, 64L * 1024 * 1024, 3);
	assert_int_equal(file_size(f->bak), -1);
	lines_read(f->file, &l);
	assert_int_equal(l.n, NW * COUNT);
	assert_int_equal(regcomp(&re, STAMP_RE "writer ([0-9]+) seq ([0-9]+) pad (x*)$",
	                         REG_EXTENDED), 0);
	for (size_t i = 0; i < l.n; i++) {
		int w;
		long seq;
		parse_writer_line(&re, l.v[i], 3, &w, &seq);
		assert_true(w >= 0 && w < NW);
		if (seq != next[w])
			fail_msg("line %zu: writer %d seq %ld, expected %ld", i, w, seq, next[w]);
		next[w]++;
	}
	for (int w = 0; w < NW; w++)
		assert_int_equal(next[w], COUNT);
	regfree(&re);
	lines_free(&l);
}

/* Rotation under contention: a small limit makes the log rotate dozens of
 * times while four processes write.  Older lines are dropped by design, but
 * the .bak and live files together hold a contiguous tail of all appends,
 * so every line is whole and, for each writer present, its sequence numbers
 * there are consecutive and end at its last line. */
static void test_rotation_contended(void **state)
{
	struct log_fixture *f = *state;
	enum { NW = 4, COUNT = 3000, PAD = 100 };
	const long max_size = 32 * 1024;
	struct lines parts[2];
	regex_t re;
	long first[NW], last[NW];

	run_writers(f->root, NW, COUNT, max_size, PAD);
	assert_true(file_size(f->bak) > 0);
	assert_true(file_size(f->bak) <= max_size);
	assert_true(file_size(f->file) <= max_size);
	lines_read(f->bak, &parts[0]);
	lines_read(f->file, &parts[1]);
	/* Rotated many times: far fewer lines survive than were written. */
	assert_true(parts[0].n + parts[1].n < NW * COUNT / 4);
	assert_int_equal(regcomp(&re, STAMP_RE "writer ([0-9]+) seq ([0-9]+) pad (x*)$",
	                         REG_EXTENDED), 0);
	for (int w = 0; w < NW; w++)
		first[w] = last[w] = -1;
	for (int p = 0; p < 2; p++) {
		for (size_t i = 0; i < parts[p].n; i++) {
			int w;
			long seq;
			parse_writer_line(&re, parts[p].v[i], PAD, &w, &seq);
			assert_true(w >= 0 && w < NW);
			if (last[w] >= 0 && seq != last[w] + 1)
				fail_msg("%s line %zu: writer %d seq %ld after %ld",
				         p ? "live" : "bak", i, w, seq, last[w]);
			if (first[w] < 0)
				first[w] = seq;
			last[w] = seq;
		}
	}
	int present = 0;
	for (int w = 0; w < NW; w++) {
		if (last[w] < 0)
			continue;
		present++;
		if (last[w] != COUNT - 1)
			fail_msg("writer %d's lines %ld..%ld do not reach its last line",
			         w, first[w], last[w]);
	}
	assert_true(present >= 1);
	regfree(&re);
	lines_free(&parts[0]);
	lines_free(&parts[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_format_local_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sanitise, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tail_foreign_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_four_writers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_contended, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
