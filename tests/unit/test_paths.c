/* test_paths.c - core/paths: durable writes (content, mode, no temp file
 * left, planted symbolic links never followed), mkdir -p (existing path,
 * missing levels, a file in the way, doubled and trailing slashes), the
 * root made by paths_ensure() and nothing else, and the data root's
 * precedence (--root, DEVMAIL_ROOT, /var/lib/devmail for root, XDG, HOME). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/paths.h"
#include "testroot.h"

static char dir[512];

static int setup(void **state)
{
	(void)state;
	return testroot_make("paths", dir, sizeof(dir)) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return testroot_remove(dir) == 0 ? 0 : -1;
}

static void join(char *out, size_t cap, const char *name)
{
	int n = snprintf(out, cap, "%s/%s", dir, name);
	assert_true(n > 0 && (size_t)n < cap);
}

/* Entries in dir other than . and .. */
static int count_entries(void)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void assert_file(const char *path, const char *want)
{
	size_t len = 0;
	char *got = testroot_slurp(path, &len);
	assert_non_null(got);
	assert_int_equal(len, strlen(want));
	assert_string_equal(got, want);
	free(got);
}

static void test_write_new_and_replace(void **state)
{
	(void)state;
	char path[600];
	join(path, sizeof(path), "x.ini");
	struct dm_err e;
	dm_err_clear(&e);
	mode_t old = umask(022);
	assert_int_equal(paths_write_atomic(path, "one\n", 4, 0600, &e), DM_OK);
	assert_file(path, "one\n");
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(paths_write_atomic(path, "second\n", 7, 0644, &e), DM_OK);
	assert_file(path, "second\n");
	assert_int_equal(paths_write_atomic(path, "", 0, 0644, &e), DM_OK);
	assert_file(path, "");
	umask(old);
	assert_int_equal(count_entries(), 1);   /* no temp file left behind */
}

/* The old temp name was "<path>.tmp.<pid>", opened with O_TRUNC and no
 * O_EXCL / O_NOFOLLOW: a link planted there made us write the target. */
static void test_planted_symlink_not_followed(void **state)
{
	(void)state;
	char path[600], victim[600], link[700];
	join(path, sizeof(path), "x.ini");
	join(victim, sizeof(victim), "victim");
	assert_int_equal(testroot_write(victim, "precious\n"), 0);
	int n = snprintf(link, sizeof(link), "%s.tmp.%ld", path, (long)getpid());
	assert_true(n > 0 && (size_t)n < sizeof(link));
	assert_int_equal(symlink(victim, link), 0);
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(paths_write_atomic(path, "new\n", 4, 0600, &e), DM_OK);
	assert_file(victim, "precious\n");
	assert_file(path, "new\n");
	struct stat st;
	assert_int_equal(lstat(link, &st), 0);
	assert_true(S_ISLNK(st.st_mode));   /* left alone */
	assert_int_equal(count_entries(), 3);   /* x.ini, victim, the link */
}

/* A link at the destination itself is replaced by the rename, and the
 * file it pointed to is untouched. */
static void test_symlink_at_path_replaced(void **state)
{
	(void)state;
	char path[600], victim[600];
	join(path, sizeof(path), "x.ini");
	join(victim, sizeof(victim), "victim");
	assert_int_equal(testroot_write(victim, "precious\n"), 0);
	assert_int_equal(symlink(victim, path), 0);
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(paths_write_atomic(path, "new\n", 4, 0600, &e), DM_OK);
	assert_file(victim, "precious\n");
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_file(path, "new\n");
}

static void test_missing_dir_fails_cleanly(void **state)
{
	(void)state;
	char path[600];
	join(path, sizeof(path), "nodir/x.ini");
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(paths_write_atomic(path, "x", 1, 0600, &e), DM_EIO);
	assert_non_null(strstr(e.msg, "cannot create"));
	assert_int_equal(count_entries(), 0);
}

/* ---- paths_mkdirs, paths_ensure ------------------------------------------ */

static void assert_dir(const char *path, unsigned mode)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, mode);
}

static void test_mkdirs(void **state)
{
	(void)state;
	char path[600], file[600];
	struct dm_err e;
	mode_t old = umask(022);

	/* Three missing levels under an existing one. */
	join(path, sizeof(path), "a/b/c");
	dm_err_clear(&e);
	assert_int_equal(paths_mkdirs(path, 0700, &e), DM_OK);
	assert_dir(path, 0700);
	join(path, sizeof(path), "a");
	assert_dir(path, 0700);
	/* Existing: fine, and nothing changes. */
	join(path, sizeof(path), "a/b/c");
	assert_int_equal(paths_mkdirs(path, 0755, &e), DM_OK);
	assert_dir(path, 0700);
	/* Doubled and trailing slashes. */
	join(path, sizeof(path), "a//d///e/");
	assert_int_equal(paths_mkdirs(path, 0700, &e), DM_OK);
	join(path, sizeof(path), "a/d/e");
	assert_dir(path, 0700);
	/* A file in the way, at the end or in the middle. */
	join(file, sizeof(file), "f");
	assert_int_equal(testroot_write(file, "x"), 0);
	dm_err_clear(&e);
	assert_int_equal(paths_mkdirs(file, 0700, &e), DM_EIO);
	assert_non_null(strstr(e.msg, "not a directory"));
	join(path, sizeof(path), "f/g/h");
	dm_err_clear(&e);
	assert_int_equal(paths_mkdirs(path, 0700, &e), DM_EIO);
	assert_non_null(strstr(e.msg, "cannot create"));
	/* Bad arguments. */
	dm_err_clear(&e);
	assert_int_equal(paths_mkdirs("", 0700, &e), DM_EINVAL);
	umask(old);
}

/* paths_ensure() makes the root only: spool/, log/ and tls/ are their
 * owners' to make when they first need them. */
static void test_ensure_makes_only_the_root(void **state)
{
	(void)state;
	char root[600], sub[700];
	struct dm_err e;

	join(root, sizeof(root), "unit/root");
	dm_err_clear(&e);
	assert_int_equal(paths_ensure(root, &e), DM_OK);
	assert_dir(root, 0700);
	assert_int_equal(paths_ensure(root, &e), DM_OK);
	static const char *const subs[] = { "spool", "log", "tls" };
	for (size_t i = 0; i < 3; i++) {
		struct stat st;
		snprintf(sub, sizeof(sub), "%s/%s", root, subs[i]);
		assert_int_equal(stat(sub, &st), -1);
	}
}

/* ---- paths_root ----------------------------------------------------------- */

static void root_env(const char *devmail_root, const char *xdg, const char *home)
{
#define SETENV(k, v) ((v) ? setenv((k), (v), 1) : unsetenv(k))
	assert_int_equal(SETENV("DEVMAIL_ROOT", devmail_root), 0);
	assert_int_equal(SETENV("XDG_STATE_HOME", xdg), 0);
	assert_int_equal(SETENV("HOME", home), 0);
#undef SETENV
}

static void test_root_precedence(void **state)
{
	(void)state;
	char *saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
	char out[DM_PATH_MAX];
	struct dm_err e;
	dm_err_clear(&e);

	root_env("/env/root", "/xdg", "/home/u");
	assert_int_equal(paths_root("/cli/root/", out, sizeof(out), &e), DM_OK);
	assert_string_equal(out, "/cli/root");          /* --root wins */
	assert_int_equal(paths_root(NULL, out, sizeof(out), &e), DM_OK);
	assert_string_equal(out, "/env/root");          /* then DEVMAIL_ROOT */
	assert_int_equal(paths_root("", out, sizeof(out), &e), DM_OK);
	assert_string_equal(out, "/env/root");          /* "" is no --root */

	root_env("", "/xdg", "/home/u");                /* "" is unset */
	assert_int_equal(paths_root(NULL, out, sizeof(out), &e), DM_OK);
	if (geteuid() == 0)
		assert_string_equal(out, "/var/lib/devmail");
	else
		assert_string_equal(out, "/xdg/devmail");

	root_env(NULL, NULL, "/home/u");
	assert_int_equal(paths_root(NULL, out, sizeof(out), &e), DM_OK);
	if (geteuid() == 0)
		assert_string_equal(out, "/var/lib/devmail");
	else
		assert_string_equal(out, "/home/u/.local/state/devmail");

	root_env(NULL, NULL, NULL);
	if (geteuid() != 0) {
		assert_int_equal(paths_root(NULL, out, sizeof(out), &e), DM_ECONFIG);
		assert_non_null(strstr(e.msg, "--root"));
	}

	root_env("/", NULL, NULL);
	assert_int_equal(paths_root(NULL, out, sizeof(out), &e), DM_OK);
	assert_string_equal(out, "/");                  /* "/" stays "/" */
	char small[8];
	assert_int_equal(paths_root("/much/too/long", small, sizeof(small), &e),
	                 DM_EINVAL);

	root_env(NULL, NULL, saved_home);
	free(saved_home);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_new_and_replace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_planted_symlink_not_followed, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_symlink_at_path_replaced, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_missing_dir_fails_cleanly, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_mkdirs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ensure_makes_only_the_root, setup,
		                                teardown),
		cmocka_unit_test(test_root_precedence),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
