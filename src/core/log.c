/*
 * log.c - the system log, root/log/system.log, in the JANOS line form
 * `MM/DD/YY HH:MM:SS.mmm, text` (local time).
 *
 * Concurrency: every writer takes an exclusive flock(2) on
 * log/system.log.lock, then opens system.log with O_APPEND, checks the size,
 * rotates (rename to system.log.bak, replacing the older one) when the new
 * line would pass max_size, and appends the line with a single write(2).
 * The lock is on a separate file because rotation renames the log itself:
 * a lock held on the old inode would not exclude a writer that opened the
 * new one.  The log is reopened for every line, so a process never appends
 * to a file another process has already rotated away.  Readers (log_tail)
 * take the lock shared, so they never see a rotation half done.
 * The timestamp is taken under the lock, so the file is in time order as
 * far as the clock is.
 */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/paths.h"
#include "core/text.h"

#define LOG_DIR "log"
#define LOG_FILE "log/system.log"
#define LOG_BAK "log/system.log.bak"
#define LOG_LOCK "log/system.log.lock"
/* "MM/DD/YY HH:MM:SS.mmm, " */
#define LOG_STAMP_LEN 23

struct log_paths {
	char dir[DM_PATH_MAX];
	char file[DM_PATH_MAX];
	char bak[DM_PATH_MAX];
	char lock[DM_PATH_MAX];
};

static enum dm_status log_paths_make(const char *root, struct log_paths *p,
                                     struct dm_err *err)
{
	enum dm_status st;

	if ((st = paths_join(root, LOG_DIR, p->dir, sizeof(p->dir), err)) ||
	    (st = paths_join(root, LOG_FILE, p->file, sizeof(p->file), err)) ||
	    (st = paths_join(root, LOG_BAK, p->bak, sizeof(p->bak), err)) ||
	    (st = paths_join(root, LOG_LOCK, p->lock, sizeof(p->lock), err)))
		return st;
	return DM_OK;
}

/* Opens (creating log/ and the lock file when `create`) and flocks the lock
 * file with `how`; *fd gets the descriptor, closed to unlock.  Without
 * `create`, a missing lock file gives DM_OK and *fd = -1. */
static enum dm_status log_lock(const struct log_paths *p, int how, int create,
                               int *fd, struct dm_err *err)
{
	int flags = (create ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW;

	*fd = open(p->lock, flags, 0600);
	if (*fd < 0 && errno == ENOENT && create) {
		enum dm_status st = paths_mkdirs(p->dir, 0700, err);
		if (st)
			return st;
		*fd = open(p->lock, flags, 0600);
	}
	if (*fd < 0) {
		if (errno == ENOENT && !create)
			return DM_OK;
		return dm_err_set(err, DM_EIO, "cannot open %s: %s", p->lock,
		                  strerror(errno));
	}
	while (flock(*fd, how) != 0) {
		if (errno == EINTR)
			continue;
		int e = errno;
		close(*fd);
		*fd = -1;
		return dm_err_set(err, DM_EIO, "cannot lock %s: %s", p->lock, strerror(e));
	}
	return DM_OK;
}

/* Length of s[0..len) without a UTF-8 sequence cut at the end. */
static size_t log_utf8_trim(const char *s, size_t len)
{
	size_t i = len, back = 0;

	while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
		i--;
		back++;
	}
	if (i == 0)
		return len;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
	if (need > 1 && back + 1 < need)
		return i - 1;   /* incomplete sequence: drop it */
	return len;
}

static size_t log_stamp(char *out, size_t cap)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	int n = snprintf(out, cap, "%02d/%02d/%02d %02d:%02d:%02d.%03ld, ",
	                 tm.tm_mon + 1, tm.tm_mday, tm.tm_year % 100,
	                 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L);
	return n < 0 ? 0 : (size_t)n;
}

/* Opens the live log for appending, rotating it first when `add` more bytes
 * would take it past max_size.  Called with the lock held. */
static int log_open_for(const struct log_paths *p, long max_size, size_t add,
                        struct dm_err *err)
{
	struct stat st;
	int fd = open(p->file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	              0600);
	if (fd < 0) {
		dm_err_set(err, DM_EIO, "cannot open %s: %s", p->file, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		dm_err_set(err, DM_EIO, "cannot stat %s: %s", p->file, strerror(errno));
		close(fd);
		return -1;
	}
	/* A line longer than max_size still goes into an empty file. */
	if (st.st_size > 0 && (unsigned long long)st.st_size + add >
	                      (unsigned long long)max_size) {
		close(fd);
		if (rename(p->file, p->bak) != 0) {
			dm_err_set(err, DM_EIO, "cannot rotate %s to %s: %s", p->file,
			           p->bak, strerror(errno));
			return -1;
		}
		fd = open(p->file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
		          O_NOFOLLOW, 0600);
		if (fd < 0) {
			dm_err_set(err, DM_EIO, "cannot open %s: %s", p->file,
			           strerror(errno));
			return -1;
		}
	}
	return fd;
}

/* Copies text into out[LOG_LINE_MAX + 1] as one line: cut at LOG_LINE_MAX
 * bytes (never inside a UTF-8 sequence), control characters (CR, LF, tab,
 * DEL, ...) turned into spaces, so one event is always one line and cannot
 * forge a second one.  Returns the length. */
static size_t log_clean(const char *text, char *out)
{
	size_t tlen = strnlen(text, LOG_LINE_MAX + 1);
	if (tlen >= LOG_LINE_MAX)   /* maybe cut (also by log_vwrite's buffer) */
		tlen = log_utf8_trim(text, LOG_LINE_MAX);
	text_one_line(text, tlen, out, tlen + 1, ' ');
	return tlen;
}

enum dm_status log_write_lines(const char *root, long max_size,
                               const char *const *lines, size_t n,
                               struct dm_err *err)
{
	struct log_paths p;
	enum dm_status st;

	if (n == 0)
		return DM_OK;
	if (max_size <= 0)
		max_size = LOG_DEFAULT_MAX_SIZE;
	st = log_paths_make(root, &p, err);
	if (st)
		return st;
	if (n > SIZE_MAX / (LOG_STAMP_LEN + LOG_LINE_MAX + 2))
		return dm_err_set(err, DM_EINVAL, "log: too many lines at once");
	char *buf = malloc(n * (LOG_STAMP_LEN + LOG_LINE_MAX + 2) + 1);
	if (!buf)
		return dm_err_set(err, DM_ENOMEM, "log: out of memory");

	int lockfd;
	st = log_lock(&p, LOCK_EX, 1, &lockfd, err);
	if (st) {
		free(buf);
		return st;
	}
	/* Stamped under the lock: the file stays in time order. */
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		size_t k = log_stamp(buf + len, LOG_STAMP_LEN + 1);
		len += k < LOG_STAMP_LEN ? k : LOG_STAMP_LEN;
		len += log_clean(lines[i] ? lines[i] : "", buf + len);
		buf[len++] = '\n';
	}
	int fd = log_open_for(&p, max_size, len, err);
	if (fd < 0) {
		st = DM_EIO;
	} else {
		/* One write on an O_APPEND fd: the lines land whole at the end. */
		ssize_t w;
		do
			w = write(fd, buf, len);
		while (w < 0 && errno == EINTR);
		if (w < 0)
			st = dm_err_set(err, DM_EIO, "cannot write %s: %s", p.file,
			                strerror(errno));
		else if ((size_t)w != len)
			st = dm_err_set(err, DM_EIO, "short write to %s (%zd of %zu bytes)",
			                p.file, w, len);
		if (close(fd) != 0 && st == DM_OK)
			st = dm_err_set(err, DM_EIO, "cannot close %s: %s", p.file,
			                strerror(errno));
	}
	close(lockfd);
	free(buf);
	return st;
}

enum dm_status log_vwrite(const char *root, long max_size, struct dm_err *err,
                          const char *fmt, va_list ap)
{
	char text[LOG_LINE_MAX + 1];

	int n = vsnprintf(text, sizeof(text), fmt, ap);
	if (n < 0)
		return dm_err_set(err, DM_EINVAL, "log: bad format '%s'", fmt);
	const char *line = text;
	return log_write_lines(root, max_size, &line, 1, err);
}

enum dm_status log_write(const char *root, long max_size, struct dm_err *err,
                         const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	enum dm_status st = log_vwrite(root, max_size, err, fmt, ap);
	va_end(ap);
	return st;
}

/* Finds where the last `want` lines of fd start.  *start gets the offset,
 * *found the number of lines from there (fewer than `want` when the file is
 * shorter).  A last line without its newline counts as a line. */
static enum dm_status log_tail_start(int fd, const char *path, size_t want,
                                     off_t *start, size_t *found,
                                     struct dm_err *err)
{
	char buf[8192];
	struct stat st;

	*start = 0;
	*found = 0;
	if (fstat(fd, &st) != 0)
		return dm_err_set(err, DM_EIO, "cannot stat %s: %s", path, strerror(errno));
	off_t end = st.st_size;
	if (end == 0 || want == 0) {
		*start = end;
		return DM_OK;
	}
	/* The newline ending the file terminates the last line; skip it. */
	off_t pos = end;
	int skip_last = 1;
	size_t lines = 0;
	while (pos > 0) {
		size_t chunk = pos > (off_t)sizeof(buf) ? sizeof(buf) : (size_t)pos;
		pos -= (off_t)chunk;
		ssize_t r = pread(fd, buf, chunk, pos);
		if (r != (ssize_t)chunk)
			return dm_err_set(err, DM_EIO, "cannot read %s: %s", path,
			                  r < 0 ? strerror(errno) : "file shrank");
		for (size_t i = chunk; i-- > 0;) {
			if (buf[i] != '\n')
				continue;
			if (skip_last && pos + (off_t)i == end - 1) {
				skip_last = 0;
				continue;
			}
			/* A newline ends the line before it; the line after it is whole. */
			if (++lines == want) {
				*start = pos + (off_t)i + 1;
				*found = want;
				return DM_OK;
			}
		}
	}
	*start = 0;
	*found = lines + 1;   /* the first line has no newline before it */
	return DM_OK;
}

/* Emits every line of fd from `start` to the end.  Lines longer than the
 * buffer (not written by us) are cut. */
static enum dm_status log_emit(int fd, const char *path, off_t start,
                               log_line_fn fn, void *ctx, struct dm_err *err)
{
	char buf[8192];
	char line[LOG_STAMP_LEN + LOG_LINE_MAX + 2];
	size_t ll = 0;
	int have = 0;
	off_t pos = start;

	for (;;) {
		ssize_t r = pread(fd, buf, sizeof(buf), pos);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return dm_err_set(err, DM_EIO, "cannot read %s: %s", path,
			                  strerror(errno));
		if (r == 0)
			break;
		pos += r;
		for (ssize_t i = 0; i < r; i++) {
			if (buf[i] == '\n') {
				line[ll] = '\0';
				fn(line, ctx);
				ll = 0;
				have = 0;
				continue;
			}
			have = 1;
			if (ll < sizeof(line) - 1)
				line[ll++] = buf[i];
		}
	}
	if (have) {
		line[ll] = '\0';
		fn(line, ctx);
	}
	return DM_OK;
}

/* Opens a log file for reading; -1 with *missing set when absent. */
static int log_open_read(const char *path, int *missing, struct dm_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	*missing = 0;
	if (fd < 0) {
		if (errno == ENOENT)
			*missing = 1;
		else
			dm_err_set(err, DM_EIO, "cannot open %s: %s", path, strerror(errno));
	}
	return fd;
}

enum dm_status log_tail(const char *root, size_t n, log_line_fn fn, void *ctx,
                        struct dm_err *err)
{
	struct log_paths p;
	enum dm_status st;
	int missing, lockfd, fd = -1, bfd = -1;
	off_t start = 0, bstart = 0;
	size_t found = 0, bfound = 0;

	st = log_paths_make(root, &p, err);
	if (st)
		return st;
	if (n == 0)
		return DM_OK;
	/* Shared lock: no rotation between reading the two files.  No lock file
	 * means no writer ever ran; read anyway (there is nothing to race). */
	st = log_lock(&p, LOCK_SH, 0, &lockfd, err);
	if (st)
		return st;

	fd = log_open_read(p.file, &missing, err);
	if (fd < 0 && !missing) {
		st = DM_EIO;
		goto done;
	}
	if (fd >= 0 && (st = log_tail_start(fd, p.file, n, &start, &found, err)))
		goto done;
	if (found < n) {
		bfd = log_open_read(p.bak, &missing, err);
		if (bfd < 0 && !missing) {
			st = DM_EIO;
			goto done;
		}
		if (bfd >= 0 &&
		    (st = log_tail_start(bfd, p.bak, n - found, &bstart, &bfound, err)))
			goto done;
	}
	if (bfd >= 0 && bfound > 0 && (st = log_emit(bfd, p.bak, bstart, fn, ctx, err)))
		goto done;
	if (fd >= 0 && found > 0)
		st = log_emit(fd, p.file, start, fn, ctx, err);
done:
	if (fd >= 0)
		close(fd);
	if (bfd >= 0)
		close(bfd);
	if (lockfd >= 0)
		close(lockfd);
	return st;
}
