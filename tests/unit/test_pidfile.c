/*
 * test_pidfile.c - the daemon's PID file and single-instance lock: the PID
 * is written, a second acquirer (another process) is refused with the
 * holder's PID, pidfile_holder() names the holder without taking the lock
 * (so a probe never makes an acquirer fail), the lock dies with its
 * process (SIGKILL), release removes the file, and pidfile_daemon_pid()
 * reads ROOT/devmaild.pid.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/paths.h"
#include "core/pidfile.h"
#include "testroot.h"

struct fx {
	char root[256];
	char path[DM_PATH_MAX];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f || !testroot_make("pidfile", f->root, sizeof(f->root)))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/%s", f->root, PIDFILE_DAEMON);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	int rc = testroot_remove(f->root);
	free(f);
	return rc;
}

/* A child that takes the lock, reports on a pipe, then waits to be killed. */
static pid_t holder_start(const char *path)
{
	int p[2];
	char c = 0;

	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct pidfile *pf = NULL;
		close(p[0]);
		if (pidfile_acquire(path, &pf, NULL, NULL) != DM_OK)
			_exit(2);
		c = 'L';
		if (write(p[1], &c, 1) != 1)
			_exit(3);
		for (int i = 0; i < 600; i++)     /* at most 60 s */
			usleep(100000);
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	assert_int_equal(c, 'L');
	close(p[0]);
	return pid;
}

static void holder_kill(pid_t pid)
{
	int st;
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &st, 0), pid);
}

static void test_acquire_writes_pid(void **state)
{
	struct fx *f = *state;
	struct pidfile *pf = NULL;
	struct dm_err err;
	char want[32];

	dm_err_clear(&err);
	assert_int_equal(pidfile_acquire(f->path, &pf, NULL, &err), DM_OK);
	char *text = testroot_slurp(f->path, NULL);
	assert_non_null(text);
	snprintf(want, sizeof(want), "%ld\n", (long)getpid());
	assert_string_equal(text, want);
	free(text);
	struct stat sb;
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0644);
	/* Our own lock does not show as a holder to ourselves. */
	assert_int_equal(pidfile_holder(f->path), 0);
	pidfile_release(pf);
	assert_int_equal(access(f->path, F_OK), -1);
	assert_int_equal(errno, ENOENT);
}

static void test_second_refused_names_holder(void **state)
{
	struct fx *f = *state;
	struct pidfile *pf = NULL;
	struct dm_err err;
	pid_t who = -5;
	char want[64];

	pid_t child = holder_start(f->path);
	dm_err_clear(&err);
	assert_int_equal(pidfile_acquire(f->path, &pf, &who, &err), DM_EBUSY);
	assert_null(pf);
	assert_int_equal(who, child);
	snprintf(want, sizeof(want), "(pid %ld)", (long)child);
	assert_non_null(strstr(err.msg, want));
	assert_non_null(strstr(err.msg, f->path));
	/* The probe names it and takes nothing: ask many times, then make sure
	 * the holder still holds and we still cannot get in. */
	for (int i = 0; i < 50; i++)
		assert_int_equal(pidfile_holder(f->path), child);
	assert_int_equal(pidfile_daemon_pid(f->root), child);
	assert_int_equal(pidfile_acquire(f->path, &pf, NULL, NULL), DM_EBUSY);

	/* SIGKILL: the kernel drops the lock; the stale file does not block. */
	holder_kill(child);
	assert_int_equal(access(f->path, F_OK), 0);
	assert_int_equal(pidfile_holder(f->path), 0);
	assert_int_equal(pidfile_daemon_pid(f->root), 0);
	dm_err_clear(&err);
	assert_int_equal(pidfile_acquire(f->path, &pf, &who, &err), DM_OK);
	assert_int_equal(who, 0);
	pidfile_release(pf);
}

static void test_missing_file_no_holder(void **state)
{
	struct fx *f = *state;
	assert_int_equal(pidfile_holder(f->path), 0);
	assert_int_equal(pidfile_daemon_pid(f->root), 0);
	assert_int_equal(pidfile_daemon_pid("/nonexistent/devmail-root"), 0);
}

static void test_unopenable_path(void **state)
{
	struct fx *f = *state;
	struct pidfile *pf = NULL;
	struct dm_err err;
	char path[DM_PATH_MAX];

	snprintf(path, sizeof(path), "%s/no/such/dir/devmaild.pid", f->root);
	dm_err_clear(&err);
	assert_int_equal(pidfile_acquire(path, &pf, NULL, &err), DM_EIO);
	assert_null(pf);
	assert_non_null(strstr(err.msg, path));
}

/* Many processes race for one lock: exactly one wins each round. */
static void test_race_one_winner(void **state)
{
	struct fx *f = *state;
	enum { RACERS = 8, ROUNDS = 5 };

	for (int round = 0; round < ROUNDS; round++) {
		int p[2], q[2];
		pid_t kids[RACERS];
		int wins = 0;
		assert_int_equal(pipe(p), 0);
		assert_int_equal(pipe(q), 0);
		for (int i = 0; i < RACERS; i++) {
			kids[i] = fork();
			assert_true(kids[i] >= 0);
			if (kids[i] == 0) {
				struct pidfile *pf = NULL;
				close(p[0]);
				close(q[1]);
				char c = pidfile_acquire(f->path, &pf, NULL, NULL) == DM_OK
				             ? 'W' : 'L';
				if (write(p[1], &c, 1) != 1)
					_exit(3);
				/* hold it until every racer has tried (EOF on q) */
				if (read(q[0], &c, 1) != 0)
					_exit(4);
				pidfile_release(pf);
				_exit(0);
			}
		}
		close(p[1]);
		close(q[0]);
		for (int i = 0; i < RACERS; i++) {
			char c;
			assert_int_equal(read(p[0], &c, 1), 1);
			wins += c == 'W';
		}
		close(p[0]);
		close(q[1]);
		for (int i = 0; i < RACERS; i++) {
			int st;
			assert_int_equal(waitpid(kids[i], &st, 0), kids[i]);
			assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		}
		assert_int_equal(wins, 1);
		assert_int_equal(access(f->path, F_OK), -1);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_acquire_writes_pid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_refused_names_holder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file_no_holder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unopenable_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_race_one_winner, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
