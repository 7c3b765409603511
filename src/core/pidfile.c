/*
 * pidfile.c - the daemon's PID file and single-instance lock (see pidfile.h
 * for why the lock is a POSIX record lock).
 */
#include "core/pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/paths.h"

#define PIDFILE_TRIES 8   /* opens retried when the file is swapped under us */

struct pidfile {
	int fd;
	char path[DM_PATH_MAX];
};

static void pidfile_lock_whole(struct flock *fl, short type)
{
	memset(fl, 0, sizeof(*fl));
	fl->l_type = type;
	fl->l_whence = SEEK_SET;
	fl->l_start = 0;
	fl->l_len = 0;            /* to the end, however long */
}

/* The holder's PID as the kernel reports it, 0 when nobody holds a lock
 * that conflicts with ours, -1 on error. */
static pid_t pidfile_getlk(int fd)
{
	struct flock fl;

	pidfile_lock_whole(&fl, F_WRLCK);
	if (fcntl(fd, F_GETLK, &fl) != 0)
		return -1;
	return fl.l_type == F_UNLCK ? 0 : fl.l_pid;
}

enum dm_status pidfile_acquire(const char *path, struct pidfile **out,
                               pid_t *holder, struct dm_err *err)
{
	struct pidfile *pf;
	struct flock fl;
	struct stat a, b;
	char text[32];

	*out = NULL;
	if (holder)
		*holder = 0;
	if (strlen(path) >= DM_PATH_MAX)
		return dm_err_set(err, DM_EINVAL, "PID file path too long: %s", path);
	if (!(pf = calloc(1, sizeof(*pf))))
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	snprintf(pf->path, sizeof(pf->path), "%s", path);
	for (int tries = 0;; tries++) {
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (fd < 0) {
			int e = errno;
			free(pf);
			return dm_err_set(err, DM_EIO, "cannot open %s: %s", path,
			                  strerror(e));
		}
		pidfile_lock_whole(&fl, F_WRLCK);
		if (fcntl(fd, F_SETLK, &fl) != 0) {
			int e = errno;
			pid_t who = (e == EACCES || e == EAGAIN) ? pidfile_getlk(fd) : -1;
			close(fd);
			if (e == EACCES || e == EAGAIN) {
				if (who == 0 && tries < PIDFILE_TRIES)
					continue;   /* released meanwhile: try again */
				free(pf);
				if (holder)
					*holder = who > 0 ? who : 0;
				if (who > 0)
					return dm_err_set(err, DM_EBUSY, "another devmaild "
					    "(pid %ld) holds %s", (long)who, path);
				return dm_err_set(err, DM_EBUSY, "another process holds "
				                  "the lock on %s", path);
			}
			free(pf);
			return dm_err_set(err, DM_EIO, "cannot lock %s: %s", path,
			                  strerror(e));
		}
		/* The previous holder unlinks the file before it drops the lock;
		 * if we opened it just before that, we now hold a lock on a file
		 * nobody else can find.  Make sure the path is our file. */
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			pf->fd = fd;
			break;
		}
		close(fd);
		if (tries >= PIDFILE_TRIES) {
			free(pf);
			return dm_err_set(err, DM_EIO, "%s keeps changing under us",
			                  path);
		}
	}
	int n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
	int e = 0;
	if (ftruncate(pf->fd, 0) != 0)
		e = errno;
	else if (lseek(pf->fd, 0, SEEK_SET) < 0)
		e = errno;
	else if ((e = paths_write_all(pf->fd, text, (size_t)n)) == 0 &&
	         fsync(pf->fd) != 0)
		e = errno;
	if (e) {
		close(pf->fd);
		free(pf);
		return dm_err_set(err, DM_EIO, "cannot write %s: %s", path,
		                  strerror(e));
	}
	*out = pf;
	return DM_OK;
}

void pidfile_release(struct pidfile *pf)
{
	if (!pf)
		return;
	/* Unlink first, while the lock still says "taken": a newcomer either
	 * fails to lock the old file or creates a new one. */
	unlink(pf->path);
	close(pf->fd);
	free(pf);
}

pid_t pidfile_holder(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	/* F_GETLK with F_WRLCK on a read-only descriptor is allowed: it only
	 * asks, it does not lock. */
	pid_t who = pidfile_getlk(fd);
	int e = errno;
	close(fd);
	errno = e;
	return who;
}

pid_t pidfile_daemon_pid(const char *root)
{
	char path[DM_PATH_MAX];

	if (paths_join(root, PIDFILE_DAEMON, path, sizeof(path), NULL) != DM_OK)
		return 0;
	pid_t who = pidfile_holder(path);
	return who > 0 ? who : 0;
}
