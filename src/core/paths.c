/* paths.c - data root resolution, directory creation, durable writes. */
#include "core/paths.h"
#include "core/rand.h"
#include "core/text.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATHS_TMP_TRIES 16   /* random temp names tried before giving up */

enum dm_status paths_root(const char *cli_root, char *out, size_t cap,
                          struct dm_err *err)
{
	const char *env = getenv("DEVMAIL_ROOT");
	int n;

	if (cli_root && *cli_root)
		n = snprintf(out, cap, "%s", cli_root);
	else if (env && *env)
		n = snprintf(out, cap, "%s", env);
	else if (geteuid() == 0)
		n = snprintf(out, cap, "/var/lib/devmail");
	else {
		const char *xdg = getenv("XDG_STATE_HOME");
		const char *home = getenv("HOME");
		if (xdg && *xdg)
			n = snprintf(out, cap, "%s/devmail", xdg);
		else if (home && *home)
			n = snprintf(out, cap, "%s/.local/state/devmail", home);
		else
			return dm_err_set(err, DM_ECONFIG,
			    "no data root: use --root DIR or set DEVMAIL_ROOT");
	}
	if (n < 0 || (size_t)n >= cap)
		return dm_err_set(err, DM_EINVAL, "data root path too long");
	/* Trailing slashes make joined paths ugly; keep "/" itself. */
	while (n > 1 && out[n - 1] == '/')
		out[--n] = '\0';
	return DM_OK;
}

enum dm_status paths_join(const char *root, const char *rel, char *out,
                          size_t cap, struct dm_err *err)
{
	int n = snprintf(out, cap, "%s/%s", root, rel);
	if (n < 0 || (size_t)n >= cap)
		return dm_err_set(err, DM_EINVAL, "path too long: %s/%s", root, rel);
	return DM_OK;
}

/* mkdir -p, cheapest when the directory exists (the usual case: every
 * command of a unit after its first): one stat().  Otherwise the deepest
 * missing ancestor is found by backing off from the leaf on ENOENT, and the
 * path is created from there down, so an existing prefix is never walked. */
enum dm_status paths_mkdirs(const char *dir, unsigned mode, struct dm_err *err)
{
	char buf[DM_PATH_MAX];
	size_t len = strlen(dir);
	struct stat st;

	if (len == 0 || len >= sizeof(buf))
		return dm_err_set(err, DM_EINVAL, "bad directory path '%s'", dir);
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return dm_err_set(err, DM_EIO, "%s is not a directory", dir);
		return DM_OK;
	}
	if (errno != ENOENT)
		return dm_err_set(err, DM_EIO, "cannot create %s: %s", dir,
		                  strerror(errno));
	memcpy(buf, dir, len + 1);
	/* Back off: cut at the last '/' until a mkdir works or finds its
	 * directory there (each cut leaves a '\0' where a '/' was). */
	for (;;) {
		if (mkdir(buf, mode) == 0 || errno == EEXIST)
			break;
		char *slash = errno == ENOENT ? strrchr(buf, '/') : NULL;
		while (slash && slash > buf && slash[-1] == '/')
			slash--;          /* "a//b": cut before the whole run */
		if (!slash || slash == buf)
			return dm_err_set(err, DM_EIO, "cannot create %s: %s", buf,
			                  strerror(errno));
		*slash = '\0';
	}
	/* Forward: put each cut '/' back and create that level. */
	for (size_t n = strlen(buf); n < len; n = strlen(buf)) {
		buf[n] = '/';
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return dm_err_set(err, DM_EIO, "cannot create %s: %s", buf,
			                  strerror(errno));
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return dm_err_set(err, DM_EIO, "%s is not a directory", dir);
	return DM_OK;
}

enum dm_status paths_ensure(const char *root, struct dm_err *err)
{
	/* Only the root: spool/, log/ and tls/ are made by their owners
	 * (outbox_open, the log's first line, server_cert) when they find
	 * them missing, so a command that never touches them pays nothing. */
	return paths_mkdirs(root, 0700, err);
}

enum dm_status paths_fsync_dir(const char *dir, struct dm_err *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return dm_err_set(err, DM_EIO, "cannot open %s: %s", dir, strerror(errno));
	int rc = fsync(fd);
	int e = errno;
	close(fd);
	if (rc != 0)
		return dm_err_set(err, DM_EIO, "fsync %s: %s", dir, strerror(e));
	return DM_OK;
}

int paths_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (w == 0)
			return EIO;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

enum dm_status paths_write_atomic(const char *path, const void *data,
                                  size_t len, unsigned mode,
                                  struct dm_err *err)
{
	char tmp[DM_PATH_MAX], dir[DM_PATH_MAX];
	int fd = -1, e;

	/* The temp file gets a random name and is created exclusively, never
	 * through a symbolic link: with a predictable name (path.tmp.<pid>)
	 * in a shared directory (REG -x /tmp/x.ini) anyone could plant a
	 * link there and have us truncate and write the file it points to. */
	for (int tries = 0; tries < PATHS_TMP_TRIES && fd < 0; tries++) {
		unsigned char rnd[8];
		if ((e = rand_bytes(rnd, sizeof(rnd))) != 0)
			return dm_err_set(err, DM_EIO, "cannot create a temp name for "
			                  "%s: getrandom: %s", path, strerror(e));
		int n = snprintf(tmp, sizeof(tmp), "%s.tmp.", path);
		if (n < 0 || (size_t)n + 2 * sizeof(rnd) >= sizeof(tmp))
			return dm_err_set(err, DM_EINVAL, "path too long: %s", path);
		text_hex(rnd, sizeof(rnd), tmp + n, sizeof(tmp) - (size_t)n, false,
		         '\0');
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		          mode);
		if (fd < 0 && errno != EEXIST)
			return dm_err_set(err, DM_EIO, "cannot create %s: %s", tmp,
			                  strerror(errno));
	}
	if (fd < 0)
		return dm_err_set(err, DM_EIO, "cannot create a temp file next to %s: "
		                  "%d random names were all taken", path,
		                  PATHS_TMP_TRIES);
	if ((e = paths_write_all(fd, data, len)) != 0) {
		close(fd);
		unlink(tmp);
		return dm_err_set(err, DM_EIO, "cannot write %s: %s", tmp, strerror(e));
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		e = errno;
		unlink(tmp);
		return dm_err_set(err, DM_EIO, "cannot sync %s: %s", tmp, strerror(e));
	}
	if (rename(tmp, path) != 0) {
		e = errno;
		unlink(tmp);
		return dm_err_set(err, DM_EIO, "cannot rename to %s: %s", path, strerror(e));
	}
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	return paths_fsync_dir(dir, err);
}
