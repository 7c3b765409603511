/*
 * testroot.c - temporary data roots and small file fixtures for tests (see
 * testroot.h).
 */
#include "testroot.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/registry.h"

char *testroot_make(const char *tag, char *out, size_t cap)
{
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	int n = snprintf(out, cap, "%s/devmail-%s-XXXXXX", tmp, tag);
	if (n < 0 || (size_t)n >= cap) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	return mkdtemp(out);
}

static int testroot_failures;

static int testroot_rm_one(const char *path, const struct stat *st, int flag,
                           struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int rc = flag == FTW_DP ? rmdir(path) : unlink(path);
	if (rc != 0)
		testroot_failures++;
	return 0;    /* keep going: remove as much as possible */
}

int testroot_remove(const char *path)
{
	if (!path || !strstr(path, "/devmail-")) {
		errno = EINVAL;
		return -1;
	}
	struct stat st;
	if (lstat(path, &st) != 0 && errno == ENOENT)
		return 0;
	testroot_failures = 0;
	if (nftw(path, testroot_rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
		return -1;
	return testroot_failures == 0 ? 0 : -1;
}

char *testroot_slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!fp)
		return NULL;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = (n + 4096 + 1) * 2;
			char *grown = realloc(buf, cap);
			if (!grown) {
				free(buf);
				fclose(fp);
				errno = ENOMEM;
				return NULL;
			}
			buf = grown;
		}
		size_t r = fread(buf + n, 1, 4096, fp);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(fp)) {
		int e = errno;
		free(buf);
		fclose(fp);
		errno = e ? e : EIO;
		return NULL;
	}
	fclose(fp);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

int testroot_write(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	if (!fp)
		return -1;
	size_t n = strlen(text);
	int ok = fwrite(text, 1, n, fp) == n;
	if (fclose(fp) != 0)
		ok = 0;
	return ok ? 0 : -1;
}

int testroot_reg_setup(void **state, const char *tag)
{
	struct testroot_reg *f = calloc(1, sizeof(*f));
	struct dm_err err;

	dm_err_clear(&err);
	if (!f)
		return -1;
	if (!testroot_make(tag, f->root, sizeof(f->root))) {
		fprintf(stderr, "%s: temp root: %s\n", tag, strerror(errno));
		free(f);
		return -1;
	}
	if (registry_open(f->root, &f->reg, &err) != DM_OK) {
		fprintf(stderr, "%s: open: %s\n", tag, err.msg);
		(void)testroot_remove(f->root);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

int testroot_reg_teardown(void **state)
{
	struct testroot_reg *f = *state;
	int rc = 0;

	registry_close(f->reg);
	if (testroot_remove(f->root) != 0) {
		fprintf(stderr, "could not remove %s\n", f->root);
		rc = -1;
	}
	free(f);
	*state = NULL;
	return rc;
}
