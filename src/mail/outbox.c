/*
 * outbox.c - the durable outbox spool and its retry policy.
 *
 * Layout (docs/outbox.md has the full contract):
 *   spool/lock             flock()ed: shared by anyone with entries in tmp/,
 *                          exclusive (non-blocking) by the cleaner at open
 *   spool/tmp/<id>/        an enqueue in progress
 *   spool/tmp/<id>.del/    a removal in progress
 *   spool/queue/<id>/msg   the RFC 5322 bytes, immutable once queued
 *   spool/queue/<id>/env   the envelope (versioned text), durable; rewritten
 *                          (temp, fsync, rename, fsync) only when the
 *                          recipient list shrinks
 *   spool/queue/<id>/retry retry state (attempts, next try, last error):
 *                          advisory, replaced by rename, never fsynced
 *   spool/failed/<id>/     the same files; retry holds the reason
 *
 * A message directory appears in queue/ and leaves it by rename(2) only, so
 * every crash leaves either the old or the new state.  A deliverer holds an
 * exclusive non-blocking flock() on queue/<id>/msg; a second deliverer that
 * cannot take it skips the message.  Delivery applies a whole batch of
 * outcomes (renames out of queue/, retry files) and then fsyncs queue/ (and
 * failed/) once: a crash before that fsync can resend a message the server
 * already took (a duplicate), never lose one.
 */
#include "mail/outbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/paths.h"
#include "core/rand.h"
#include "core/text.h"

#define OB_FORMAT "DEVMAIL-OUTBOX"
#define OB_VERSION 1
#define OB_ENV_MAX (OUTBOX_MAX_RCPT * (OUTBOX_ADDR_MAX + 8) + 8192)
#define OB_CHUNK 65536
#define OB_REASON_MAX OUTBOX_REASON_MAX
#define OB_RETRY_FORMAT "DEVMAIL-OUTBOX-RETRY"
#define OB_RETRY_MAX 4096          /* bytes in a retry file */
#define OB_GIVE_BACK_MAX 8         /* requeues of one message in one drain */
#define OB_WORKERS_MAX 16

struct outbox {
	char root[DM_PATH_MAX];
	char tmp[DM_PATH_MAX];
	char queue[DM_PATH_MAX];
	char failed[DM_PATH_MAX];
	char lockpath[DM_PATH_MAX];  /* spool/lock */
	int lock_fd;                 /* spool/lock, for this thread's use */
	struct outbox_options opt;
};

/* The envelope file parsed, with the retry file over it; strings point
 * into buf or rbuf. */
struct ob_env {
	char *buf;
	char *rbuf;           /* the retry file's text, or NULL */
	bool retry_file;      /* a retry file is there (whole or not) */
	time_t created;
	time_t next_try;
	unsigned attempts;
	uint64_t size;
	bool failed;
	const char *from;
	const char **rcpt;
	size_t nrcpt;
	const char *error;
	bool needs_8bit;      /* "flags 8bitmime" */
	bool needs_smtputf8;  /* "flags smtputf8" */
};

/* ---- small helpers -------------------------------------------------------- */

static time_t ob_now(const struct outbox *ob)
{
	return ob->opt.clock ? ob->opt.clock(ob->opt.hook_ctx) : time(NULL);
}

static void ob_step(const struct outbox *ob, const char *step, const char *id)
{
	if (ob->opt.step)
		ob->opt.step(ob->opt.hook_ctx, step, id);
}

static double ob_jitter(const struct outbox *ob)
{
	uint32_t r = 0;

	if (ob->opt.jitter) {
		double u = ob->opt.jitter(ob->opt.hook_ctx);
		return u < -1.0 ? -1.0 : u > 1.0 ? 1.0 : u;
	}
	if (rand_bytes(&r, sizeof(r)) != 0)
		return 0.0;
	return (double)r / (double)UINT32_MAX * 2.0 - 1.0;
}

static const char *ob_dir(const struct outbox *ob, enum outbox_which which)
{
	return which == OUTBOX_FAILED ? ob->failed : ob->queue;
}

static enum dm_status ob_path(char *out, const char *dir, const char *id,
                              const char *file, struct dm_err *err)
{
	int n = file ? snprintf(out, DM_PATH_MAX, "%s/%s/%s", dir, id, file)
	             : snprintf(out, DM_PATH_MAX, "%s/%s", dir, id);
	if (n < 0 || n >= DM_PATH_MAX)
		return dm_err_set(err, DM_EINVAL, "spool path too long: %s/%s", dir, id);
	return DM_OK;
}

/* Ids are [0-9A-Za-z-] only, so that a name from the user can never leave
 * the spool and never collides with a ".del" entry. */
static bool ob_id_valid(const char *id)
{
	size_t n = 0;

	if (!id)
		return false;
	for (; id[n]; n++) {
		char c = id[n];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z') || c == '-'))
			return false;
	}
	return n > 0 && n < OUTBOX_ID_MAX;
}

static enum dm_status ob_check_id(const char *id, struct dm_err *err)
{
	if (!ob_id_valid(id))
		return dm_err_set(err, DM_EINVAL,
		    "outbox: '%s' is not a message id (letters, digits and '-')",
		    id ? id : "(null)");
	return DM_OK;
}

/* Time (UTC, to the microsecond) + pid + 32 random bits. */
static enum dm_status ob_make_id(char id[OUTBOX_ID_MAX], struct dm_err *err)
{
	struct timespec ts;
	struct tm tm;
	uint32_t r;

	int e = rand_bytes(&r, sizeof(r));
	if (e != 0)
		return dm_err_set(err, DM_EIO, "outbox: getrandom: %s", strerror(e));
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(id, OUTBOX_ID_MAX, "%04u%02u%02uT%02u%02u%02u-%06u-%u-%08" PRIx32,
	                 (unsigned)(tm.tm_year + 1900) % 10000u,
	                 (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
	                 (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u,
	                 (unsigned)tm.tm_sec % 100u,
	                 (unsigned)(ts.tv_nsec / 1000) % 1000000u,
	                 (unsigned)getpid(), r);
	if (n < 0 || n >= OUTBOX_ID_MAX)
		return dm_err_set(err, DM_EINVAL, "outbox: cannot format an id");
	return DM_OK;
}

/* Removes a file, or a directory of files (the spool never nests deeper). */
static enum dm_status ob_rmtree(const char *path, struct dm_err *err)
{
	char sub[DM_PATH_MAX];
	DIR *d;
	struct dirent *de;

	if (unlink(path) == 0 || errno == ENOENT)
		return DM_OK;
	if (errno != EISDIR && errno != EPERM)
		return dm_err_set(err, DM_EIO, "outbox: cannot remove %s: %s",
		                  path, strerror(errno));
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? DM_OK : dm_err_set(err, DM_EIO,
		    "outbox: cannot open %s: %s", path, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >= (int)sizeof(sub))
			continue;
		if (unlink(sub) != 0 && errno != ENOENT) {
			int e = errno;
			closedir(d);
			return dm_err_set(err, DM_EIO, "outbox: cannot remove %s: %s",
			                  sub, strerror(e));
		}
	}
	closedir(d);
	if (rmdir(path) != 0 && errno != ENOENT)
		return dm_err_set(err, DM_EIO, "outbox: cannot remove %s: %s",
		                  path, strerror(errno));
	return DM_OK;
}

/* Copies text (NULL: "") into out[cap] on one line (CR, LF, other
 * controls -> space). */
static void ob_one_line(char *out, size_t cap, const char *text)
{
	text_one_line(text, text ? strlen(text) : 0, out, cap, ' ');
}

/* ---- envelope file -------------------------------------------------------- */

static void ob_env_free(struct ob_env *env)
{
	if (env) {
		free(env->buf);
		free(env->rbuf);
		free(env->rcpt);
		free(env);
	}
}

static bool ob_parse_num(const char *s, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < 0)
		return false;
	*out = v;
	return true;
}

/* Reads dir/env.  DM_ENOTFOUND when the message is gone. */
static enum dm_status ob_env_read(const char *msgdir, struct ob_env **out,
                                  struct dm_err *err)
{
	char path[DM_PATH_MAX];
	struct ob_env *env;
	size_t len = 0;
	int fd;
	bool seen_end = false, seen_head = false;
	long long v;

	*out = NULL;
	if (snprintf(path, sizeof(path), "%s/env", msgdir) >= (int)sizeof(path))
		return dm_err_set(err, DM_EINVAL, "spool path too long: %s", msgdir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? DM_ENOTFOUND : dm_err_set(err, DM_EIO,
		    "outbox: cannot open %s: %s", path, strerror(errno));
	env = calloc(1, sizeof(*env));
	if (env) {
		env->buf = malloc(OB_ENV_MAX + 1);
		env->rcpt = calloc(OUTBOX_MAX_RCPT, sizeof(*env->rcpt));
	}
	if (!env || !env->buf || !env->rcpt) {
		close(fd);
		ob_env_free(env);
		return dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
	}
	for (;;) {
		ssize_t r = read(fd, env->buf + len, OB_ENV_MAX - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			ob_env_free(env);
			return dm_err_set(err, DM_EIO, "outbox: cannot read %s: %s",
			                  path, strerror(e));
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len == OB_ENV_MAX) {
			close(fd);
			ob_env_free(env);
			return dm_err_set(err, DM_EINVAL, "outbox: %s is too large", path);
		}
	}
	close(fd);
	env->buf[len] = '\0';
	env->error = "";
	env->from = "";
	for (char *line = env->buf, *nl; line && *line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		char *val = strchr(line, ' ');
		if (val)
			*val++ = '\0';
		else
			val = line + strlen(line);
		if (!seen_head) {
			if (strcmp(line, OB_FORMAT) != 0 || !ob_parse_num(val, &v))
				goto bad;
			if (v != OB_VERSION) {
				ob_env_free(env);
				return dm_err_set(err, DM_EINVAL,
				    "outbox: %s has format version %lld, this build reads %d",
				    path, v, OB_VERSION);
			}
			seen_head = true;
		} else if (!strcmp(line, "created")) {
			if (!ob_parse_num(val, &v)) goto bad;
			env->created = (time_t)v;
		} else if (!strcmp(line, "next")) {
			if (!ob_parse_num(val, &v)) goto bad;
			env->next_try = (time_t)v;
		} else if (!strcmp(line, "attempts")) {
			if (!ob_parse_num(val, &v) || v > 1000000) goto bad;
			env->attempts = (unsigned)v;
		} else if (!strcmp(line, "size")) {
			if (!ob_parse_num(val, &v)) goto bad;
			env->size = (uint64_t)v;
		} else if (!strcmp(line, "state")) {
			if (!strcmp(val, "failed"))
				env->failed = true;
			else if (strcmp(val, "queued") != 0)
				goto bad;
		} else if (!strcmp(line, "from")) {
			env->from = val;
		} else if (!strcmp(line, "rcpt")) {
			if (env->nrcpt == OUTBOX_MAX_RCPT) goto bad;
			env->rcpt[env->nrcpt++] = val;
		} else if (!strcmp(line, "error")) {
			env->error = val;
		} else if (!strcmp(line, "flags")) {
			/* space-separated words; unknown ones are from a later
			 * minor revision and ignored */
			for (char *w = val, *sp; w && *w; w = sp) {
				sp = strchr(w, ' ');
				if (sp)
					*sp++ = '\0';
				if (!strcmp(w, "8bitmime"))
					env->needs_8bit = true;
				else if (!strcmp(w, "smtputf8"))
					env->needs_smtputf8 = true;
			}
		} else if (!strcmp(line, "end")) {
			seen_end = true;
			break;
		}
		/* other keys: written by a later minor revision; ignored */
	}
	if (!seen_end || env->nrcpt == 0)
		goto bad;
	*out = env;
	return DM_OK;
bad:
	ob_env_free(env);
	return dm_err_set(err, DM_EINVAL, "outbox: %s is malformed", path);
}

/* Replaces msgdir/env atomically (temp, fsync, rename, fsync msgdir). */
static enum dm_status ob_env_write(const char *msgdir, const struct ob_env *env,
                                   struct dm_err *err)
{
	char path[DM_PATH_MAX], line[OB_REASON_MAX];
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	enum dm_status st;

	if (snprintf(path, sizeof(path), "%s/env", msgdir) >= (int)sizeof(path))
		return dm_err_set(err, DM_EINVAL, "spool path too long: %s", msgdir);
	f = open_memstream(&buf, &len);
	if (!f)
		return dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
	fprintf(f, "%s %d\ncreated %lld\nattempts %u\nnext %lld\nsize %" PRIu64
	        "\nstate %s\nfrom %s\n", OB_FORMAT, OB_VERSION,
	        (long long)env->created, env->attempts, (long long)env->next_try,
	        env->size, env->failed ? "failed" : "queued", env->from);
	for (size_t i = 0; i < env->nrcpt; i++)
		fprintf(f, "rcpt %s\n", env->rcpt[i]);
	if (env->needs_8bit || env->needs_smtputf8)
		fprintf(f, "flags%s%s\n", env->needs_8bit ? " 8bitmime" : "",
		        env->needs_smtputf8 ? " smtputf8" : "");
	if (env->error && *env->error) {
		ob_one_line(line, sizeof(line), env->error);
		fprintf(f, "error %s\n", line);
	}
	fputs("end\n", f);
	if (fclose(f) != 0) {
		free(buf);
		return dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
	}
	st = paths_write_atomic(path, buf, len, 0600, err);
	free(buf);
	return st;
}

/* ---- retry file ------------------------------------------------------------ */

/* Puts msgdir/retry, when it is there and whole, over env's attempts, next
 * try and last error.  Anything else (missing, torn by a crash, another
 * version) leaves env as it is: the retry state is advisory.  Reading it
 * costs one open when it is missing (a message never deferred). */
static void ob_retry_read(const char *msgdir, struct ob_env *env)
{
	char path[DM_PATH_MAX];
	char *buf;
	size_t len = 0;
	long long v = 0;

	if (snprintf(path, sizeof(path), "%s/retry", msgdir) >= (int)sizeof(path))
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	env->retry_file = true;
	buf = malloc(OB_RETRY_MAX + 1);
	if (!buf) {
		close(fd);
		return;
	}
	for (;;) {
		ssize_t r = read(fd, buf + len, OB_RETRY_MAX - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || (len += (size_t)r) == OB_RETRY_MAX)
			break;
	}
	close(fd);
	buf[len] = '\0';
	/* Whole: the format line first, "end" last, every number parses. */
	unsigned attempts = 0;
	time_t next = 0;
	const char *error = "";
	bool head = false, end = false, bad = false;
	for (char *line = buf, *nl; !bad && !end && line && *line; line = nl) {
		nl = strchr(line, '\n');
		if (!nl) {
			bad = true;       /* a torn last line */
			break;
		}
		*nl++ = '\0';
		char *val = strchr(line, ' ');
		if (val)
			*val++ = '\0';
		else
			val = line + strlen(line);
		if (!head) {
			head = !strcmp(line, OB_RETRY_FORMAT) &&
			       ob_parse_num(val, &v) && v == 1;
			bad = !head;
		} else if (!strcmp(line, "attempts")) {
			bad = !ob_parse_num(val, &v) || v > 1000000;
			attempts = (unsigned)v;
		} else if (!strcmp(line, "next")) {
			bad = !ob_parse_num(val, &v);
			next = (time_t)v;
		} else if (!strcmp(line, "error")) {
			error = val;
		} else if (!strcmp(line, "end")) {
			end = true;
		}
	}
	if (bad || !end) {
		free(buf);
		return;
	}
	free(env->rbuf);
	env->rbuf = buf;
	env->attempts = attempts;
	env->next_try = next;
	env->error = error;
}

/* Replaces msgdir/retry (temp file, rename; no fsync: see ob_retry_read).
 * Only the holder of the message's lock writes it. */
static enum dm_status ob_retry_write(const char *msgdir, unsigned attempts,
                                     time_t next, const char *error,
                                     struct dm_err *err)
{
	char path[DM_PATH_MAX], tmp[DM_PATH_MAX], line[OB_REASON_MAX], buf[OB_RETRY_MAX];

	if (snprintf(path, sizeof(path), "%s/retry", msgdir) >= (int)sizeof(path) ||
	    snprintf(tmp, sizeof(tmp), "%s/retry.tmp", msgdir) >= (int)sizeof(tmp))
		return dm_err_set(err, DM_EINVAL, "spool path too long: %s", msgdir);
	ob_one_line(line, sizeof(line), error);
	int n = snprintf(buf, sizeof(buf), "%s 1\nattempts %u\nnext %lld\n%s%s%send\n",
	                 OB_RETRY_FORMAT, attempts, (long long)next,
	                 line[0] ? "error " : "", line, line[0] ? "\n" : "");
	if (n < 0 || (size_t)n >= sizeof(buf))
		return dm_err_set(err, DM_EINVAL, "outbox: retry state too long");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return dm_err_set(err, DM_EIO, "outbox: cannot create %s: %s", tmp,
		                  strerror(errno));
	int e = paths_write_all(fd, buf, (size_t)n);
	if (close(fd) != 0 && e == 0)
		e = errno;
	if (e == 0 && rename(tmp, path) != 0)
		e = errno;
	if (e != 0) {
		(void)unlink(tmp);
		return dm_err_set(err, DM_EIO, "outbox: cannot write %s: %s", path,
		                  strerror(e));
	}
	return DM_OK;
}

/* The envelope and the retry state of msgdir. */
static enum dm_status ob_state_read(const char *msgdir, struct ob_env **out,
                                    struct dm_err *err)
{
	enum dm_status st = ob_env_read(msgdir, out, err);
	if (st == DM_OK)
		ob_retry_read(msgdir, *out);
	return st;
}

/* ---- open / close ----------------------------------------------------------- */

/* Removes everything in spool/tmp when nobody holds the spool lock shared
 * (i.e. no enqueue or removal is between steps): those entries are left
 * over from a crash.  When someone does, cleaning waits for the next open. */
static enum dm_status ob_clean_tmp(struct outbox *ob, struct dm_err *err)
{
	char path[DM_PATH_MAX];
	enum dm_status st = DM_OK;
	bool removed = false;
	DIR *d;
	struct dirent *de;

	if (flock(ob->lock_fd, LOCK_EX | LOCK_NB) != 0)
		return DM_OK;
	d = opendir(ob->tmp);
	if (!d) {
		st = dm_err_set(err, DM_EIO, "outbox: cannot open %s: %s",
		                ob->tmp, strerror(errno));
		goto out;
	}
	while ((de = readdir(d)) != NULL && st == DM_OK) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", ob->tmp, de->d_name) >= (int)sizeof(path))
			continue;
		st = ob_rmtree(path, err);
		removed = true;
	}
	closedir(d);
	if (st == DM_OK && removed)
		st = paths_fsync_dir(ob->tmp, err);
out:
	flock(ob->lock_fd, LOCK_UN);
	return st;
}

enum dm_status outbox_open(const char *root, const struct outbox_options *opt,
                           struct outbox **out, struct dm_err *err)
{
	char spool[DM_PATH_MAX];
	struct outbox *ob;
	enum dm_status st;

	*out = NULL;
	ob = calloc(1, sizeof(*ob));
	if (!ob)
		return dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
	ob->lock_fd = -1;
	if (opt)
		ob->opt = *opt;
	if (ob->opt.max_age <= 0)
		ob->opt.max_age = OUTBOX_DEFAULT_MAX_AGE;
	if (ob->opt.retry_min <= 0)
		ob->opt.retry_min = OUTBOX_DEFAULT_RETRY_MIN;
	if (ob->opt.retry_max <= 0)
		ob->opt.retry_max = OUTBOX_DEFAULT_RETRY_MAX;
	if (snprintf(ob->root, sizeof(ob->root), "%s", root) >= (int)sizeof(ob->root) ||
	    (st = paths_join(root, "spool", spool, sizeof(spool), err)) != DM_OK ||
	    (st = paths_join(spool, "tmp", ob->tmp, sizeof(ob->tmp), err)) != DM_OK ||
	    (st = paths_join(spool, "queue", ob->queue, sizeof(ob->queue), err)) != DM_OK ||
	    (st = paths_join(spool, "failed", ob->failed, sizeof(ob->failed), err)) != DM_OK ||
	    (st = paths_join(spool, "lock", ob->lockpath, sizeof(ob->lockpath), err)) != DM_OK) {
		free(ob);
		return dm_err_set(err, DM_EINVAL, "outbox: root path too long");
	}
	if ((st = paths_mkdirs(ob->tmp, 0700, err)) != DM_OK ||
	    (st = paths_mkdirs(ob->queue, 0700, err)) != DM_OK ||
	    (st = paths_mkdirs(ob->failed, 0700, err)) != DM_OK) {
		free(ob);
		return st;
	}
	ob->lock_fd = open(ob->lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (ob->lock_fd < 0) {
		st = dm_err_set(err, DM_EIO, "outbox: cannot open %s: %s",
		                ob->lockpath, strerror(errno));
		free(ob);
		return st;
	}
	/* A queue entry left marked failed by an older version's interrupted
	 * move is finished by the next delivery run that reaches it. */
	st = ob_clean_tmp(ob, err);
	if (st != DM_OK) {
		outbox_close(ob);
		return st;
	}
	*out = ob;
	return DM_OK;
}

void outbox_close(struct outbox *ob)
{
	if (!ob)
		return;
	if (ob->lock_fd >= 0)
		close(ob->lock_fd);
	free(ob);
}

/* ---- policy ------------------------------------------------------------------ */

long outbox_backoff(long retry_min, long retry_max, unsigned attempts, double u)
{
	long base;

	if (retry_min <= 0)
		retry_min = OUTBOX_DEFAULT_RETRY_MIN;
	if (retry_max <= 0)
		retry_max = OUTBOX_DEFAULT_RETRY_MAX;
	if (retry_min > retry_max)
		retry_min = retry_max;
	if (u < -1.0)
		u = -1.0;
	if (u > 1.0)
		u = 1.0;
	base = retry_min;
	for (unsigned i = 1; i < attempts && base < retry_max; i++)
		base = base > retry_max / 2 ? retry_max : base * 2;
	if (base > retry_max)
		base = retry_max;
	long d = base + (long)((double)base * u / 10.0 + (u < 0 ? -0.5 : 0.5));
	if (d > retry_max)
		d = retry_max;
	if (d < 1)
		d = 1;
	return d;
}

/* ---- enqueue ----------------------------------------------------------------- */

static enum dm_status ob_check_addr(const char *what, const char *a,
                                    bool allow_empty, struct dm_err *err)
{
	if (!a)
		return dm_err_set(err, DM_EINVAL, "outbox: %s address missing", what);
	if (!allow_empty && !*a)
		return dm_err_set(err, DM_EINVAL, "outbox: %s address is empty", what);
	if (strlen(a) > OUTBOX_ADDR_MAX)
		return dm_err_set(err, DM_EINVAL,
		    "outbox: %s address is longer than %d bytes", what, OUTBOX_ADDR_MAX);
	for (const char *p = a; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return dm_err_set(err, DM_EINVAL,
			    "outbox: %s address '%.60s' contains a control character (CR, LF, ...)",
			    what, a);
	return DM_OK;
}

void outbox_scan_init(struct outbox_scan *sc)
{
	memset(sc, 0, sizeof(*sc));
}

void outbox_scan_bytes(struct outbox_scan *sc, const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t i = 0;

	for (; i < n && !sc->in_body; i++) {
		if (b[i] >= 0x80) {
			sc->eight_bit = sc->utf8_header = true;
			sc->mid_line = true;
		} else if (b[i] == '\n') {
			if (!sc->mid_line)
				sc->in_body = true;    /* the empty line */
			sc->mid_line = false;
		} else if (b[i] != '\r') {
			sc->mid_line = true;
		}
	}
	for (; i < n && !sc->eight_bit; i++)
		if (b[i] >= 0x80)
			sc->eight_bit = true;
}

/* True when the address has a non-ASCII octet (needs SMTPUTF8). */
static bool ob_addr_utf8(const char *a)
{
	for (; *a; a++)
		if ((unsigned char)*a >= 0x80)
			return true;
	return false;
}

struct ob_body {
	const struct mail_source *src;
	outbox_write_fn write;
	void *ctx;
	struct outbox_scan scan;   /* of what was copied from src */
};

static enum dm_status ob_copy_source(const struct mail_source *src, int fd,
                                     struct outbox_scan *scan,
                                     struct dm_err *err)
{
	char *buf = malloc(OB_CHUNK);
	enum dm_status st = DM_OK;

	if (!buf)
		return dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
	for (;;) {
		size_t got = 0;
		st = src->read(src->ctx, buf, OB_CHUNK, &got, err);
		if (st != DM_OK || got == 0)
			break;
		if (got > OB_CHUNK) {
			st = dm_err_set(err, DM_EINVAL, "outbox: message source overran its buffer");
			break;
		}
		outbox_scan_bytes(scan, buf, got);
		int e = paths_write_all(fd, buf, got);
		if (e != 0) {
			st = dm_err_set(err, DM_EIO, "outbox: cannot write %s: %s",
			                "spooled message", strerror(e));
			break;
		}
	}
	free(buf);
	return st;
}

static enum dm_status ob_enqueue(struct outbox *ob,
                                 const struct outbox_envelope *e,
                                 struct ob_body *body,
                                 char id[OUTBOX_ID_MAX], struct dm_err *err)
{
	char dir[DM_PATH_MAX], path[DM_PATH_MAX], dest[DM_PATH_MAX];
	struct ob_env env;
	struct stat sb;
	enum dm_status st;
	int fd = -1;

	id[0] = '\0';
	if (!e || !e->rcpt || e->nrcpt == 0)
		return dm_err_set(err, DM_EINVAL, "outbox: a message needs at least one recipient");
	if (e->nrcpt > OUTBOX_MAX_RCPT)
		return dm_err_set(err, DM_EINVAL, "outbox: %zu recipients (at most %d)",
		                  e->nrcpt, OUTBOX_MAX_RCPT);
	if ((st = ob_check_addr("sender", e->from, true, err)) != DM_OK)
		return st;
	for (size_t i = 0; i < e->nrcpt; i++)
		if ((st = ob_check_addr("recipient", e->rcpt[i], false, err)) != DM_OK)
			return st;
	if ((st = ob_make_id(id, err)) != DM_OK ||
	    (st = ob_path(dir, ob->tmp, id, NULL, err)) != DM_OK ||
	    (st = ob_path(path, ob->tmp, id, "msg", err)) != DM_OK ||
	    (st = ob_path(dest, ob->queue, id, NULL, err)) != DM_OK) {
		id[0] = '\0';
		return st;
	}

	/* Shared spool lock: the cleaner at open must not remove our tmp entry. */
	while (flock(ob->lock_fd, LOCK_SH) != 0)
		if (errno != EINTR) {
			id[0] = '\0';
			return dm_err_set(err, DM_EIO, "outbox: cannot lock the spool: %s",
			                  strerror(errno));
		}
	if (mkdir(dir, 0700) != 0) {
		st = dm_err_set(err, DM_EIO, "outbox: cannot create %s: %s", dir, strerror(errno));
		goto fail_nodir;
	}
	ob_step(ob, "enqueue-tmp", id);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		st = dm_err_set(err, DM_EIO, "outbox: cannot create %s: %s", path, strerror(errno));
		goto fail;
	}
	outbox_scan_init(&body->scan);
	st = body->src ? ob_copy_source(body->src, fd, &body->scan, err)
	               : body->write(body->ctx, fd, err);
	if (st != DM_OK)
		goto fail;
	if (fstat(fd, &sb) != 0 || fsync(fd) != 0) {
		st = dm_err_set(err, DM_EIO, "outbox: cannot sync %s: %s", path, strerror(errno));
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		st = dm_err_set(err, DM_EIO, "outbox: cannot close %s: %s", path, strerror(errno));
		goto fail;
	}
	fd = -1;
	ob_step(ob, "enqueue-msg", id);

	memset(&env, 0, sizeof(env));
	env.created = ob_now(ob);
	env.next_try = env.created;
	env.size = (uint64_t)sb.st_size;
	env.from = e->from;
	env.rcpt = (const char **)e->rcpt;
	env.nrcpt = e->nrcpt;
	env.error = "";
	/* read now, after the message: a writer may have set them */
	env.needs_8bit = e->needs_8bit || body->scan.eight_bit;
	env.needs_smtputf8 = e->needs_smtputf8 || body->scan.utf8_header ||
	                     ob_addr_utf8(e->from);
	for (size_t i = 0; i < e->nrcpt; i++)
		env.needs_smtputf8 = env.needs_smtputf8 || ob_addr_utf8(e->rcpt[i]);
	if (env.needs_smtputf8)
		env.needs_8bit = true;   /* UTF-8 headers are 8-bit data too */
	if ((st = ob_env_write(dir, &env, err)) != DM_OK)   /* fsyncs dir too */
		goto fail;
	ob_step(ob, "enqueue-env", id);
	if (rename(dir, dest) != 0) {
		st = dm_err_set(err, DM_EIO, "outbox: cannot rename %s to %s: %s",
		                dir, dest, strerror(errno));
		goto fail;
	}
	ob_step(ob, "enqueue-rename", id);
	if ((st = paths_fsync_dir(ob->queue, err)) != DM_OK) {
		/* It is in queue/ but maybe not durably: report the failure and
		 * take it back so that the caller's error means "not queued". */
		if (rename(dest, dir) == 0)
			(void)ob_rmtree(dir, NULL);
		(void)paths_fsync_dir(ob->queue, NULL);
		goto fail_nodir;
	}
	ob_step(ob, "enqueue-commit", id);
	flock(ob->lock_fd, LOCK_UN);
	log_write(ob->root, ob->opt.log_max_size, NULL,
	          "queued %s from %s to %zu recipient%s (%" PRIu64 " bytes)",
	          id, *e->from ? e->from : "<>", e->nrcpt, e->nrcpt == 1 ? "" : "s",
	          env.size);
	return DM_OK;
fail:
	if (fd >= 0)
		close(fd);
	(void)ob_rmtree(dir, NULL);
fail_nodir:
	flock(ob->lock_fd, LOCK_UN);
	id[0] = '\0';
	return st;
}

enum dm_status outbox_enqueue(struct outbox *ob,
                              const struct outbox_envelope *env,
                              const struct mail_source *src,
                              char id[OUTBOX_ID_MAX], struct dm_err *err)
{
	struct ob_body body = { .src = src };

	if (!src || !src->read) {
		id[0] = '\0';
		return dm_err_set(err, DM_EINVAL, "outbox: no message source");
	}
	return ob_enqueue(ob, env, &body, id, err);
}

enum dm_status outbox_enqueue_writer(struct outbox *ob,
                                     const struct outbox_envelope *env,
                                     outbox_write_fn write, void *ctx,
                                     char id[OUTBOX_ID_MAX],
                                     struct dm_err *err)
{
	struct ob_body body = { .write = write, .ctx = ctx };

	if (!write) {
		id[0] = '\0';
		return dm_err_set(err, DM_EINVAL, "outbox: no message writer");
	}
	return ob_enqueue(ob, env, &body, id, err);
}

/* ---- locking, moving, removing ------------------------------------------- */

/* Opens and locks dir/<id>/msg (exclusive, non-blocking) into *fd.
 * DM_EBUSY: someone else holds it; DM_ENOTFOUND: no such message (or it
 * left the directory while we were waiting). */
static enum dm_status ob_lock(const char *dir, const char *id, int *fd,
                              struct dm_err *err)
{
	char path[DM_PATH_MAX];
	struct stat a, b;
	enum dm_status st;

	*fd = -1;
	if ((st = ob_path(path, dir, id, "msg", err)) != DM_OK)
		return st;
	int f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return errno == ENOENT ? DM_ENOTFOUND : dm_err_set(err, DM_EIO,
		    "outbox: cannot open %s: %s", path, strerror(errno));
	if (flock(f, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		close(f);
		if (e == EWOULDBLOCK)
			return DM_EBUSY;
		return dm_err_set(err, DM_EIO, "outbox: cannot lock %s: %s", path, strerror(e));
	}
	/* The holder before us may have removed or moved it meanwhile. */
	if (fstat(f, &a) != 0 || stat(path, &b) != 0 ||
	    a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
		close(f);
		return DM_ENOTFOUND;
	}
	*fd = f;
	return DM_OK;
}

/* Removes dir/<id> (the caller holds its lock): rename into tmp/<id>.del
 * (the commit point), fsync dir, then delete the files. */
static enum dm_status ob_remove(struct outbox *ob, const char *dir,
                                const char *id, struct dm_err *err)
{
	char from[DM_PATH_MAX], to[DM_PATH_MAX];
	enum dm_status st;

	if ((st = ob_path(from, dir, id, NULL, err)) != DM_OK)
		return st;
	if (snprintf(to, sizeof(to), "%s/%s.del", ob->tmp, id) >= (int)sizeof(to))
		return dm_err_set(err, DM_EINVAL, "spool path too long");
	while (flock(ob->lock_fd, LOCK_SH) != 0)
		if (errno != EINTR)
			return dm_err_set(err, DM_EIO, "outbox: cannot lock the spool: %s",
			                  strerror(errno));
	if (rename(from, to) != 0) {
		st = dm_err_set(err, DM_EIO, "outbox: cannot rename %s: %s", from, strerror(errno));
		goto out;
	}
	ob_step(ob, "remove-rename", id);
	if ((st = paths_fsync_dir(dir, err)) != DM_OK)
		goto out;
	ob_step(ob, "remove-commit", id);
	if ((st = ob_rmtree(to, err)) != DM_OK)
		goto out;
	st = paths_fsync_dir(ob->tmp, err);
	ob_step(ob, "remove-clean", id);
out:
	flock(ob->lock_fd, LOCK_UN);
	return st;
}

/* ---- directory scans ----------------------------------------------------------- */

struct ob_ids {
	char (*id)[OUTBOX_ID_MAX];
	size_t n, cap;
};

static int ob_id_cmp(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

/* Sorted ids of a spool directory (names that are not ids are ignored). */
static enum dm_status ob_scan(const char *dir, struct ob_ids *ids,
                              struct dm_err *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	memset(ids, 0, sizeof(*ids));
	if (!d)
		return dm_err_set(err, DM_EIO, "outbox: cannot open %s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (!ob_id_valid(de->d_name))
			continue;
		if (ids->n == ids->cap) {
			size_t cap = ids->cap ? ids->cap * 2 : 64;
			void *p = realloc(ids->id, cap * sizeof(*ids->id));
			if (!p) {
				closedir(d);
				free(ids->id);
				memset(ids, 0, sizeof(*ids));
				return dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
			}
			ids->id = p;
			ids->cap = cap;
		}
		memcpy(ids->id[ids->n++], de->d_name, strlen(de->d_name) + 1);
	}
	closedir(d);
	if (ids->n)
		qsort(ids->id, ids->n, sizeof(*ids->id), ob_id_cmp);
	return DM_OK;
}

/* ---- delivery: slots --------------------------------------------------------------- */

struct ob_src {
	int fd;
	const char *id;
};

static enum dm_status ob_src_read(void *ctx, char *buf, size_t cap, size_t *got,
                                  struct dm_err *err)
{
	struct ob_src *s = ctx;
	ssize_t r;

	do
		r = read(s->fd, buf, cap);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		*got = 0;
		return dm_err_set(err, DM_EIO, "outbox: cannot read spooled message %s: %s",
		                  s->id, strerror(errno));
	}
	*got = (size_t)r;
	return DM_OK;
}

/* A queued id waiting in a drain, and how often it was given back. */
struct ob_pending {
	char id[OUTBOX_ID_MAX];
	unsigned given_back;
};

/* One locked message of a batch. */
struct ob_slot {
	char id[OUTBOX_ID_MAX];
	char dir[DM_PATH_MAX];      /* queue/<id> */
	int fd;                     /* queue/<id>/msg, flock()ed; its reader */
	struct ob_env *env;         /* env with the retry state over it */
	struct ob_src src;
	unsigned given_back;
	bool renamed;               /* moved out of queue/ by this batch */
	enum { OB_SLOT_SEND, OB_SLOT_DAMAGED, OB_SLOT_MARKED } kind;
	char damage[DM_ERR_TEXT];   /* OB_SLOT_DAMAGED: why env is unreadable */
};

static void ob_slot_release(struct ob_slot *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	ob_env_free(s->env);
	s->env = NULL;
}

/* Locks id into slot and reads its state.  DM_OK with kind SEND: ready
 * to deliver (with `due_only`, only when due; else released and
 * DM_ENOTFOUND).  DM_OK with kind DAMAGED (env unreadable) or MARKED (an
 * older version's interrupted move to failed/): locked, to be moved.
 * Else released: DM_EBUSY, DM_ENOTFOUND, DM_EIO, DM_EINVAL (path). */
static enum dm_status ob_slot_take(struct outbox *ob, struct ob_slot *s,
                                   const char *id, bool due_only,
                                   struct dm_err *err)
{
	enum dm_status st;
	struct dm_err e;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	snprintf(s->id, sizeof(s->id), "%s", id);
	if ((st = ob_path(s->dir, ob->queue, id, NULL, err)) != DM_OK ||
	    (st = ob_lock(ob->queue, id, &s->fd, err)) != DM_OK)
		return st;
	dm_err_clear(&e);
	st = ob_state_read(s->dir, &s->env, &e);
	if (st == DM_EINVAL) {
		s->kind = OB_SLOT_DAMAGED;
		snprintf(s->damage, sizeof(s->damage), "%s", e.msg);
		return DM_OK;
	}
	if (st == DM_OK && s->env->failed)
		s->kind = OB_SLOT_MARKED;
	else if (st == DM_OK && due_only && s->env->next_try > ob_now(ob))
		st = DM_ENOTFOUND;
	if (st != DM_OK) {
		if (st != DM_ENOTFOUND && err && !err->msg[0])
			*err = e;
		ob_slot_release(s);
		return st;
	}
	if (s->kind == OB_SLOT_SEND)
		ob_step(ob, "deliver-lock", id);
	s->src.fd = s->fd;
	s->src.id = s->id;
	return DM_OK;
}

static void ob_item_fill(const struct outbox *ob, struct outbox_item *it,
                         const char *id, const struct ob_env *env)
{
	it->id = id;
	it->from = env->from;
	it->rcpt = env->rcpt;
	it->nrcpt = env->nrcpt;
	it->created = env->created;
	it->age = (long)(ob_now(ob) - env->created);
	it->attempts = env->attempts;
	it->next_try = env->next_try;
	it->last_error = env->error;
	it->size = env->size;
	it->failed = env->failed;
	it->needs_8bit = env->needs_8bit;
	it->needs_smtputf8 = env->needs_smtputf8;
	it->damaged = false;
}

/* "diagnosis (server said: 451 4.3.0 text)" on one line. */
static void ob_reason(const struct outbox_outcome *o, char *out, size_t cap)
{
	char line[OB_REASON_MAX];
	int n;

	n = snprintf(line, sizeof(line), "%s",
	             o->err.msg[0] ? o->err.msg : dm_status_str(o->status));
	if (o->err.smtp_code && n >= 0 && (size_t)n < sizeof(line))
		snprintf(line + n, sizeof(line) - (size_t)n, " (server said: %d%s%s %s)",
		         o->err.smtp_code, o->err.enhanced[0] ? " " : "",
		         o->err.enhanced, o->err.server_text);
	ob_one_line(out, cap, line);
}

/* ---- delivery: applying a batch ------------------------------------------------------ */

/* What applying one batch collects: renames to make durable, directories
 * to clean, log lines, messages to give back. */
struct ob_commit {
	bool queue_dirty;           /* something left queue/ */
	bool failed_dirty;          /* something entered failed/ */
	char **lines;               /* log lines, malloc'd */
	size_t nlines;
	enum dm_status st;          /* first local error */
	struct dm_err err;
};

static void ob_commit_log(struct ob_commit *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void ob_commit_log(struct ob_commit *c, const char *fmt, ...)
{
	char *line = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n >= 0)
		c->lines[c->nlines++] = line;   /* room: 2 per slot */
}

static void ob_commit_fail(struct ob_commit *c, enum dm_status st,
                           const struct dm_err *e)
{
	if (c->st == DM_OK) {
		c->st = st;
		if (e)
			c->err = *e;
	}
}

/* Removal, part one: queue/<id> -> tmp/<id>.del.  Durable at the batch's
 * fsync of queue/ (the commit point); the files go after it.  When the
 * rename fails the message stays queued (and is sent again later): a local
 * error for the run. */
static void ob_apply_remove(struct outbox *ob, struct ob_slot *s,
                            struct ob_commit *c)
{
	char to[DM_PATH_MAX];
	struct dm_err e;

	dm_err_clear(&e);
	if (snprintf(to, sizeof(to), "%s/%s.del", ob->tmp, s->id) >= (int)sizeof(to) ||
	    rename(s->dir, to) != 0) {
		dm_err_set(&e, DM_EIO, "outbox: cannot rename %s: %s", s->dir,
		           strerror(errno));
		ob_commit_fail(c, DM_EIO, &e);
		return;
	}
	s->renamed = true;
	c->queue_dirty = true;
	ob_step(ob, "remove-rename", s->id);
}

/* queue/<id> -> failed/<id> (durable at the batch's fsyncs), then the
 * reason into failed/<id>/retry. */
static bool ob_apply_fail_move(struct outbox *ob, struct ob_slot *s,
                               unsigned attempts, const char *reason,
                               struct ob_commit *c)
{
	char to[DM_PATH_MAX];
	struct dm_err e;

	dm_err_clear(&e);
	if (ob_path(to, ob->failed, s->id, NULL, &e) != DM_OK ||
	    rename(s->dir, to) != 0) {
		if (!e.msg[0])
			dm_err_set(&e, DM_EIO, "outbox: cannot move %s to %s: %s",
			           s->dir, to, strerror(errno));
		ob_commit_fail(c, DM_EIO, &e);
		return false;
	}
	s->renamed = true;
	c->queue_dirty = c->failed_dirty = true;
	ob_step(ob, "fail-move", s->id);
	if (reason && ob_retry_write(to, attempts, 0, reason, NULL) == DM_OK)
		ob_step(ob, "retry-write", s->id);
	return true;
}

/* Keeps only the recipients marked in o->retry; false when none is. */
static bool ob_narrow(struct ob_env *env, const struct outbox_outcome *o)
{
	size_t n = 0;
	for (size_t k = 0; k < env->nrcpt && k < OUTBOX_MAX_RCPT; k++)
		if (o->retry[k])
			env->rcpt[n++] = env->rcpt[k];
	if (n == 0)
		return false;
	env->nrcpt = n;
	return true;
}

/* Applies one outcome to a locked message (see struct outbox_outcome). */
static void ob_apply(struct outbox *ob, struct ob_slot *s,
                     struct outbox_outcome *o, struct outbox_stats *stats,
                     struct ob_commit *c)
{
	char detail[OUTBOX_DETAIL_MAX], expired[OB_REASON_MAX + 160];
	enum verdict_kind kind = o->verdict.message;
	time_t now = ob_now(ob);

	o->attempts = s->env->attempts + 1;
	ob_one_line(detail, sizeof(detail), o->detail);
	/* Kept for some recipients only: the shorter list is written durably
	 * below (until then they may all get the message again: the duplicate
	 * window of docs/outbox.md, never a loss). */
	bool narrowed = kind != VERDICT_PERMANENT && o->verdict.nretry > 0 &&
	                ob_narrow(s->env, o);
	if (kind == VERDICT_SENT) {
		ob_commit_log(c, "sent %s%s%s", s->id, detail[0] ? " " : "", detail);
		if (!narrowed) {
			/* The server has it: SENT even if the removal fails (then
			 * it is a local error, and a duplicate later). */
			ob_apply_remove(ob, s, c);
			o->state = OUTBOX_STATE_SENT;
			stats->sent++;
			return;
		}
	}
	ob_reason(o, o->reason, sizeof(o->reason));
	if (kind != VERDICT_PERMANENT && now - s->env->created >= ob->opt.max_age) {
		/* "expired after N hours" as users read it; seconds only below
		 * an hour (short MaxAge values in tests and on the bench). */
		long age = (long)(now - s->env->created);
		char span[48];
		if (age >= 3600)
			snprintf(span, sizeof(span), "%ld hour%s", age / 3600,
			         age / 3600 == 1 ? "" : "s");
		else
			snprintf(span, sizeof(span), "%ld s", age);
		snprintf(expired, sizeof(expired),
		         "expired after %s (%u attempts, Outbox/MaxAge %ld s); last error: %s",
		         span, o->attempts, ob->opt.max_age, o->reason);
		ob_one_line(o->reason, sizeof(o->reason), expired);
		o->expired = true;
		kind = VERDICT_PERMANENT;
	}
	if (narrowed) {
		struct dm_err e;
		dm_err_clear(&e);
		enum dm_status st = ob_env_write(s->dir, s->env, &e);
		if (st != DM_OK) {
			ob_commit_fail(c, st, &e);
			return;
		}
		ob_step(ob, "env-write", s->id);
	}
	if (kind == VERDICT_PERMANENT) {
		if (!ob_apply_fail_move(ob, s, o->attempts, o->reason, c))
			return;
		o->state = OUTBOX_STATE_FAILED;
		stats->failed++;
		ob_commit_log(c, "failed %s: %s", s->id, o->reason);
		return;
	}
	long delay = outbox_backoff(ob->opt.retry_min, ob->opt.retry_max,
	                            o->attempts, ob_jitter(ob));
	o->next_try = now + delay;
	o->next_try_in = delay;
	o->state = OUTBOX_STATE_DEFERRED;
	/* Advisory: if it is lost, the next try comes sooner. */
	if (ob_retry_write(s->dir, o->attempts, o->next_try, o->reason, NULL) == DM_OK)
		ob_step(ob, "retry-write", s->id);
	stats->deferred++;
	ob_commit_log(c, "deferred %s: %s; next try in %lds", s->id, o->reason, delay);
}

/* Moves a message that will not be delivered (damaged env, or marked
 * failed by an older version) to failed/ as it is. */
static void ob_apply_move(struct outbox *ob, struct ob_slot *s,
                          struct outbox_stats *stats, struct ob_commit *c)
{
	if (!ob_apply_fail_move(ob, s, 0, NULL, c))
		return;
	if (s->kind == OB_SLOT_DAMAGED) {
		stats->failed++;
		ob_commit_log(c, "failed %s: damaged envelope, not delivered: %s",
		              s->id, s->damage);
	}
}

/* Files of a removed message: unlinked after the commit.  A crash leaves
 * tmp/<id>.del for the next open to clean; tmp/ is not fsynced. */
static void ob_clean_removed(struct outbox *ob, const char *id, bool retry)
{
	static const char *const files[] = { "msg", "env", "retry" };
	char dir[DM_PATH_MAX], path[DM_PATH_MAX + 16];

	if (snprintf(dir, sizeof(dir), "%s/%s.del", ob->tmp, id) >= (int)sizeof(dir))
		return;
	for (size_t k = 0; k < (retry ? 3u : 2u); k++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[k]);
		(void)unlink(path);
	}
	if (rmdir(dir) != 0 && errno != ENOENT)
		(void)ob_rmtree(dir, NULL);   /* something else in it */
	ob_step(ob, "remove-clean", id);
}

/* The commit point of a batch: one fsync of each directory that changed. */
static void ob_commit_sync(struct outbox *ob, struct ob_slot *slots, size_t n,
                           const struct outbox_outcome *out, struct ob_commit *c)
{
	struct dm_err e;
	enum dm_status st;

	dm_err_clear(&e);
	if (c->queue_dirty && (st = paths_fsync_dir(ob->queue, &e)) != DM_OK)
		ob_commit_fail(c, st, &e);
	if (c->failed_dirty && (st = paths_fsync_dir(ob->failed, &e)) != DM_OK)
		ob_commit_fail(c, st, &e);
	for (size_t i = 0; i < n; i++) {
		if (!slots[i].renamed)
			continue;
		if (out[i].state == OUTBOX_STATE_SENT)
			ob_step(ob, "remove-commit", slots[i].id);
		else if (out[i].state == OUTBOX_STATE_FAILED)
			ob_step(ob, "fail-commit", slots[i].id);
	}
}

/* ---- drains ------------------------------------------------------------------------------ */

struct outbox_drain {
	struct outbox *ob;
	unsigned flags;
	bool one;                    /* outbox_deliver_one: one named id */
	unsigned workers;
	pthread_mutex_t mu;
	struct ob_ids ids;           /* the queue when the drain was opened */
	size_t next;                 /* first id of the shared rest */
	size_t pos[OB_WORKERS_MAX];  /* each worker's own share: [pos, end) */
	size_t end[OB_WORKERS_MAX];
	bool started[OB_WORKERS_MAX];
	struct ob_pending *again;    /* given back, first out first */
	size_t again_head, again_n, again_cap;
	struct outbox_stats stats;
	/* outbox_deliver_one */
	enum dm_status one_st;       /* why the id could not be taken */
	struct dm_err one_err;
	struct outbox_outcome one_out;
	bool one_done;
};

enum dm_status outbox_drain_open(struct outbox *ob, unsigned flags,
                                 unsigned workers, struct outbox_drain **out,
                                 struct dm_err *err)
{
	struct outbox_drain *dr;
	enum dm_status st;

	*out = NULL;
	if (workers < 1 || workers > OB_WORKERS_MAX)
		return dm_err_set(err, DM_EINVAL, "outbox: %u workers (1 to %d)",
		                  workers, OB_WORKERS_MAX);
	dr = calloc(1, sizeof(*dr));
	if (!dr)
		return dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
	if ((st = ob_scan(ob->queue, &dr->ids, err)) != DM_OK) {
		free(dr);
		return st;
	}
	dr->ob = ob;
	dr->flags = flags;
	dr->workers = workers;
	pthread_mutex_init(&dr->mu, NULL);
	/* Each worker's first share, so that every one gets work when there
	 * is enough: ceil(n / workers), at most a batch. */
	size_t share = (dr->ids.n + workers - 1) / workers;
	if (share > OUTBOX_BATCH_MAX)
		share = OUTBOX_BATCH_MAX;
	for (unsigned w = 0; w < workers; w++) {
		size_t a = w * share, b = a + share;
		dr->pos[w] = a < dr->ids.n ? a : dr->ids.n;
		dr->end[w] = b < dr->ids.n ? b : dr->ids.n;
	}
	dr->next = dr->end[workers - 1];
	*out = dr;
	return DM_OK;
}

size_t outbox_drain_size(const struct outbox_drain *dr)
{
	return dr->ids.n;
}

void outbox_drain_close(struct outbox_drain *dr, struct outbox_stats *stats)
{
	if (!dr)
		return;
	if (stats) {
		stats->sent += dr->stats.sent;
		stats->deferred += dr->stats.deferred;
		stats->failed += dr->stats.failed;
		stats->busy += dr->stats.busy;
		stats->requeued += dr->stats.requeued;
		stats->canceled += dr->stats.canceled;
	}
	pthread_mutex_destroy(&dr->mu);
	free(dr->again);
	free(dr->ids.id);
	free(dr);
}

/* Copies ids[*pos, end) into out (up to max); returns how many. */
static size_t ob_take_range(struct outbox_drain *dr, size_t *pos, size_t end,
                            struct ob_pending *out, size_t have, size_t max)
{
	while (have < max && *pos < end) {
		memcpy(out[have].id, dr->ids.id[(*pos)++], OUTBOX_ID_MAX);
		out[have++].given_back = 0;
	}
	return have;
}

/* The next batch for worker w: given-back ids first, then its own share,
 * then the shared rest, then the share of a worker that never started. */
static size_t ob_drain_take(struct outbox_drain *dr, unsigned w, size_t max,
                            struct ob_pending *out, bool *last)
{
	size_t n = 0;

	pthread_mutex_lock(&dr->mu);
	dr->started[w] = true;
	while (n < max && dr->again_n > 0) {
		out[n++] = dr->again[dr->again_head++];
		dr->again_n--;
	}
	if (dr->again_n == 0)
		dr->again_head = 0;
	if (n == 0)
		n = ob_take_range(dr, &dr->pos[w], dr->end[w], out, n, max);
	if (n == 0)
		n = ob_take_range(dr, &dr->next, dr->ids.n, out, n, max);
	for (unsigned v = 0; n == 0 && v < dr->workers; v++)
		if (!dr->started[v])
			n = ob_take_range(dr, &dr->pos[v], dr->end[v], out, n, max);
	/* Nothing left that this worker could take (another worker's own
	 * share stays with it). */
	bool left = dr->again_n > 0 || dr->next < dr->ids.n ||
	            dr->pos[w] < dr->end[w];
	for (unsigned v = 0; v < dr->workers; v++)
		left = left || (!dr->started[v] && dr->pos[v] < dr->end[v]);
	*last = !left;
	pthread_mutex_unlock(&dr->mu);
	return n;
}

/* Gives messages back to the run (outcome.requeue). */
static enum dm_status ob_drain_give_back(struct outbox_drain *dr,
                                         const struct ob_pending *p, size_t n,
                                         struct dm_err *err)
{
	enum dm_status st = DM_OK;

	if (n == 0)
		return DM_OK;
	pthread_mutex_lock(&dr->mu);
	if (dr->again_head > 0) {
		memmove(dr->again, dr->again + dr->again_head,
		        dr->again_n * sizeof(*dr->again));
		dr->again_head = 0;
	}
	if (dr->again_n + n > dr->again_cap) {
		size_t cap = (dr->again_n + n) * 2;
		void *q = realloc(dr->again, cap * sizeof(*dr->again));
		if (!q)
			st = dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
		else {
			dr->again = q;
			dr->again_cap = cap;
		}
	}
	if (st == DM_OK) {
		memcpy(dr->again + dr->again_n, p, n * sizeof(*p));
		dr->again_n += n;
	}
	pthread_mutex_unlock(&dr->mu);
	return st;
}

/* One worker's buffers for a batch. */
struct ob_worker {
	struct outbox_drain *dr;
	const struct outbox_deliverer *d;
	size_t max;
	int lock_fd;                 /* its own spool/lock descriptor */
	struct ob_pending *pend;
	struct ob_slot *slots;
	struct outbox_item *items;
	struct mail_source *msgs;
	struct outbox_outcome *out;
	struct ob_pending *back;
	struct outbox_stats stats;
};

/* Locks the taken ids into slots: the ones to send first (0..*nsend), the
 * ones to move after them (*nsend..*nslots). */
static enum dm_status ob_batch_lock(struct ob_worker *wk, size_t ntaken,
                                    size_t *nsend, size_t *nslots,
                                    struct dm_err *err)
{
	struct outbox_drain *dr = wk->dr;
	bool due_only = !(dr->flags & OUTBOX_DRAIN_ALL) && !dr->one;
	size_t ns = 0, nm = 0;   /* sends fill slots from the front, moves
	                            from the back */
	enum dm_status st = DM_OK;

	for (size_t i = 0; i < ntaken && st == DM_OK; i++) {
		struct ob_slot s;
		struct dm_err e;
		dm_err_clear(&e);
		enum dm_status t = ob_slot_take(dr->ob, &s, wk->pend[i].id, due_only, &e);
		if (t == DM_OK && dr->one && s.kind == OB_SLOT_DAMAGED) {
			/* Named by the caller: refused, left where it is. */
			dm_err_set(&dr->one_err, DM_EINVAL, "%s", s.damage);
			dr->one_st = DM_EINVAL;
			ob_slot_release(&s);
			continue;
		}
		if (t == DM_OK) {
			s.given_back = wk->pend[i].given_back;
			if (s.kind == OB_SLOT_SEND)
				wk->slots[ns++] = s;
			else
				wk->slots[wk->max - ++nm] = s;
			continue;
		}
		if (t == DM_EBUSY)
			wk->stats.busy++;
		if (dr->one && (t == DM_EBUSY || t == DM_ENOTFOUND)) {
			dr->one_st = t;
			continue;
		}
		if (t != DM_EBUSY && t != DM_ENOTFOUND) {
			st = t;
			if (err)
				*err = e;
		}
	}
	memmove(wk->slots + ns, wk->slots + wk->max - nm, nm * sizeof(*wk->slots));
	*nsend = ns;
	*nslots = ns + nm;
	return st;
}

/* Applies the outcomes of a batch, commits it, cleans, logs. */
static void ob_batch_apply(struct ob_worker *wk, size_t nsend, size_t nslots,
                           struct ob_commit *c, size_t *nback)
{
	struct outbox *ob = wk->dr->ob;

	*nback = 0;
	while (flock(wk->lock_fd, LOCK_SH) != 0)
		if (errno != EINTR) {
			struct dm_err e;
			dm_err_clear(&e);
			dm_err_set(&e, DM_EIO, "outbox: cannot lock the spool: %s",
			           strerror(errno));
			ob_commit_fail(c, DM_EIO, &e);
			return;
		}
	for (size_t i = 0; i < nsend; i++) {
		struct outbox_outcome *o = &wk->out[i];
		struct ob_slot *s = &wk->slots[i];
		if (o->requeue && s->given_back < OB_GIVE_BACK_MAX) {
			o->state = OUTBOX_STATE_PENDING;   /* not an attempt: untouched */
			memcpy(wk->back[*nback].id, s->id, OUTBOX_ID_MAX);
			wk->back[(*nback)++].given_back = s->given_back + 1;
			wk->stats.requeued++;
			continue;
		}
		if (o->status == DM_ECANCELED && o->verdict.message != VERDICT_SENT) {
			/* We stopped before its final reply: not an attempt. */
			o->state = OUTBOX_STATE_DEFERRED;
			o->canceled = true;
			o->attempts = s->env->attempts;
			o->next_try = ob_now(ob);
			o->next_try_in = 0;
			ob_reason(o, o->reason, sizeof(o->reason));
			wk->stats.canceled++;
			ob_commit_log(c, "cancelled %s: stays queued (not counted as "
			              "an attempt)", s->id);
			continue;
		}
		ob_apply(ob, s, o, &wk->stats, c);
	}
	for (size_t i = nsend; i < nslots; i++)
		ob_apply_move(ob, &wk->slots[i], &wk->stats, c);
	ob_commit_sync(ob, wk->slots, nsend, wk->out, c);
	for (size_t i = 0; i < nsend; i++)
		if (wk->out[i].state == OUTBOX_STATE_SENT && wk->slots[i].renamed)
			ob_clean_removed(ob, wk->slots[i].id,
			                 wk->slots[i].env->retry_file);
	flock(wk->lock_fd, LOCK_UN);
}

/* One batch: lock, deliver, apply, commit, log, give back, done. */
static enum dm_status ob_batch_run(struct ob_worker *wk, size_t ntaken,
                                   bool last, struct dm_err *err)
{
	struct outbox_drain *dr = wk->dr;
	struct outbox *ob = dr->ob;
	size_t nsend = 0, nslots = 0, nback = 0;
	struct ob_commit c;

	memset(&c, 0, sizeof(c));
	enum dm_status st = ob_batch_lock(wk, ntaken, &nsend, &nslots, err);
	for (size_t i = 0; i < nsend; i++) {
		ob_item_fill(ob, &wk->items[i], wk->slots[i].id, wk->slots[i].env);
		wk->msgs[i].read = ob_src_read;
		wk->msgs[i].ctx = &wk->slots[i].src;
		memset(&wk->out[i], 0, sizeof(wk->out[i]));
		wk->out[i].status = DM_EIO;   /* "not attempted" unless it says */
		wk->out[i].verdict.message = VERDICT_PERMANENT;
		wk->out[i].verdict.failure = VERDICT_PERMANENT;
	}
	struct outbox_batch b = { nsend, wk->items, wk->msgs, wk->out, last };
	if (nsend > 0)
		wk->d->deliver(wk->d->ctx, &b);
	for (size_t i = 0; i < nsend; i++) {
		struct outbox_outcome *o = &wk->out[i];
		if (o->status != DM_OK && !o->err.msg[0] && !o->err.smtp_code)
			dm_err_set(&o->err, o->status, "%s", o->status == DM_EIO
			           ? "not attempted by the delivery callback"
			           : dm_status_str(o->status));
		ob_step(ob, "deliver-return", wk->slots[i].id);
	}
	if (nslots > 0) {
		c.lines = calloc(2 * nslots, sizeof(*c.lines));
		if (!c.lines)
			ob_commit_fail(&c, DM_ENOMEM, NULL);
		else
			ob_batch_apply(wk, nsend, nslots, &c, &nback);
	}
	for (size_t i = 0; i < nslots; i++) {
		close(wk->slots[i].fd);   /* unlocks */
		wk->slots[i].fd = -1;
	}
	if (c.nlines > 0)
		(void)log_write_lines(ob->root, ob->opt.log_max_size,
		                      (const char *const *)c.lines, c.nlines, NULL);
	for (size_t i = 0; i < c.nlines; i++)
		free(c.lines[i]);
	free(c.lines);
	if (nback > 0) {
		enum dm_status g = ob_drain_give_back(dr, wk->back, nback, err);
		if (g != DM_OK && st == DM_OK)
			st = g;
	}
	if (dr->one && nsend > 0 && wk->out[0].state != OUTBOX_STATE_PENDING) {
		dr->one_out = wk->out[0];
		dr->one_done = true;
	}
	if (nsend > 0 && wk->d->done)
		wk->d->done(wk->d->ctx, &b);
	for (size_t i = 0; i < nslots; i++)
		ob_slot_release(&wk->slots[i]);
	if (c.st != DM_OK && st == DM_OK) {
		st = c.st;
		if (err && !err->msg[0])
			*err = c.err;
	}
	return st;
}

static void ob_worker_free(struct ob_worker *wk)
{
	if (wk->lock_fd >= 0)
		close(wk->lock_fd);
	free(wk->pend);
	free(wk->slots);
	free(wk->items);
	free(wk->msgs);
	free(wk->out);
	free(wk->back);
}

enum dm_status outbox_drain_work(struct outbox_drain *dr, unsigned worker,
                                 const struct outbox_deliverer *d,
                                 struct dm_err *err)
{
	struct ob_worker wk = { .dr = dr, .d = d, .lock_fd = -1 };
	enum dm_status st = DM_OK;

	if (worker >= dr->workers || !d || !d->deliver)
		return dm_err_set(err, DM_EINVAL, "outbox: bad drain worker");
	wk.max = d->batch == 0 || d->batch > OUTBOX_BATCH_MAX ? OUTBOX_BATCH_MAX
	                                                     : d->batch;
	wk.lock_fd = open(dr->ob->lockpath, O_RDWR | O_CLOEXEC);
	wk.pend = calloc(wk.max, sizeof(*wk.pend));
	wk.slots = calloc(wk.max, sizeof(*wk.slots));
	wk.items = calloc(wk.max, sizeof(*wk.items));
	wk.msgs = calloc(wk.max, sizeof(*wk.msgs));
	wk.out = calloc(wk.max, sizeof(*wk.out));
	wk.back = calloc(wk.max, sizeof(*wk.back));
	if (wk.lock_fd < 0)
		st = dm_err_set(err, DM_EIO, "outbox: cannot open %s: %s",
		                dr->ob->lockpath, strerror(errno));
	else if (!wk.pend || !wk.slots || !wk.items || !wk.msgs || !wk.out || !wk.back)
		st = dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
	while (st == DM_OK && !cancel_fired(d->cancel)) {
		bool last = false;
		size_t n = ob_drain_take(dr, worker, wk.max, wk.pend, &last);
		if (n == 0)
			break;
		st = ob_batch_run(&wk, n, last, err);
	}
	pthread_mutex_lock(&dr->mu);
	dr->stats.sent += wk.stats.sent;
	dr->stats.deferred += wk.stats.deferred;
	dr->stats.failed += wk.stats.failed;
	dr->stats.busy += wk.stats.busy;
	dr->stats.requeued += wk.stats.requeued;
	dr->stats.canceled += wk.stats.canceled;
	pthread_mutex_unlock(&dr->mu);
	ob_worker_free(&wk);
	return st;
}

/* ---- delivery entry points ------------------------------------------------------------ */

struct ob_single {
	outbox_deliver_fn fn;
	void *ctx;
};

/* The simple form: one call per message, the verdict from its status. */
static void ob_single_batch(void *ctx, const struct outbox_batch *b)
{
	struct ob_single *one = ctx;

	for (size_t i = 0; i < b->n; i++) {
		struct outbox_outcome *o = &b->out[i];
		o->status = one->fn(one->ctx, &b->items[i], &b->msgs[i], o->detail,
		                    sizeof(o->detail), &o->err);
		struct verdict_input in = {
			.status = o->status, .phase = VERDICT_MESSAGE,
			.code = o->err.smtp_code, .enhanced = o->err.enhanced,
		};
		verdict_decide(&in, &o->verdict, NULL);
	}
}

enum dm_status outbox_deliver_due(struct outbox *ob,
                                  const struct outbox_deliverer *d,
                                  struct outbox_stats *stats,
                                  struct dm_err *err)
{
	struct outbox_drain *dr = NULL;
	enum dm_status st;

	if (!d || !d->deliver)
		return dm_err_set(err, DM_EINVAL, "outbox: no delivery callback");
	if ((st = outbox_drain_open(ob, 0, 1, &dr, err)) != DM_OK)
		return st;
	st = outbox_drain_work(dr, 0, d, err);
	outbox_drain_close(dr, stats);
	return st;
}

enum dm_status outbox_deliver_one(struct outbox *ob, const char *id,
                                  const struct outbox_deliverer *d,
                                  struct outbox_stats *stats,
                                  struct dm_err *err)
{
	struct outbox_drain *dr;
	enum dm_status st;

	if (!d || !d->deliver)
		return dm_err_set(err, DM_EINVAL, "outbox: no delivery callback");
	if ((st = ob_check_id(id, err)) != DM_OK)
		return st;
	dr = calloc(1, sizeof(*dr));
	if (!dr || !(dr->ids.id = calloc(1, sizeof(*dr->ids.id)))) {
		free(dr);
		return dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
	}
	snprintf(dr->ids.id[0], OUTBOX_ID_MAX, "%s", id);
	dr->ids.n = dr->ids.cap = 1;
	dr->ob = ob;
	dr->one = true;
	dr->workers = 1;
	dr->end[0] = dr->next = 1;   /* worker 0's own share: the id */
	pthread_mutex_init(&dr->mu, NULL);
	dm_err_clear(&dr->one_err);
	st = outbox_drain_work(dr, 0, d, err);
	if (st == DM_OK && dr->one_done) {
		st = dr->one_out.status;
		if (st != DM_OK && err && !err->msg[0])
			*err = dr->one_out.err;
	} else if (st == DM_OK) {
		st = dr->one_st == DM_EBUSY ? dm_err_set(err, DM_EBUSY,
		         "outbox: message %s is being delivered by another process", id)
		   : dr->one_st == DM_EINVAL ? dm_err_set(err, DM_EINVAL, "%s",
		         dr->one_err.msg)
		   : dm_err_set(err, DM_ENOTFOUND, "outbox: no queued message %s", id);
	}
	outbox_drain_close(dr, stats);
	return st;
}

enum dm_status outbox_deliver(struct outbox *ob, const char *id,
                              outbox_deliver_fn fn, void *ctx,
                              struct outbox_stats *stats, struct dm_err *err)
{
	struct ob_single one = { fn, ctx };
	struct outbox_deliverer d = { .deliver = ob_single_batch, .ctx = &one };

	if (!fn)
		return dm_err_set(err, DM_EINVAL, "outbox: no delivery callback");
	if (!id)
		return outbox_deliver_due(ob, &d, stats, err);
	return outbox_deliver_one(ob, id, &d, stats, err);
}

/* ---- listing and maintenance ------------------------------------------------ */

enum dm_status outbox_list(struct outbox *ob, enum outbox_which which,
                           outbox_list_fn fn, void *ctx, struct dm_err *err)
{
	const char *base = ob_dir(ob, which);
	char dir[DM_PATH_MAX];
	struct ob_ids ids;
	enum dm_status st = ob_scan(base, &ids, err);

	for (size_t i = 0; st == DM_OK && i < ids.n; i++) {
		struct ob_env *env = NULL;
		struct outbox_item it;
		enum dm_status r;

		if ((r = ob_path(dir, base, ids.id[i], NULL, err)) != DM_OK) {
			st = r;
			break;
		}
		struct dm_err e;
		dm_err_clear(&e);
		r = ob_state_read(dir, &env, &e);
		if (r == DM_ENOTFOUND)
			continue;           /* delivered or moved meanwhile */
		if (r == DM_EINVAL) {
			/* One bad file must not hide the rest: list it as damaged. */
			static const char *const none[1] = { NULL };
			memset(&it, 0, sizeof(it));
			it.id = ids.id[i];
			it.from = "";
			it.rcpt = none;
			it.last_error = e.msg;
			it.failed = which == OUTBOX_FAILED;
			it.damaged = true;
			int rc = fn(ctx, &it);
			if (rc != 0)
				st = (enum dm_status)rc;
			continue;
		}
		if (r != DM_OK) {
			if (err)
				*err = e;
			st = r;
			break;
		}
		if (which == OUTBOX_QUEUE && env->failed) {
			ob_env_free(env);   /* being moved to failed/ */
			continue;
		}
		ob_item_fill(ob, &it, ids.id[i], env);
		it.failed = which == OUTBOX_FAILED;
		int rc = fn(ctx, &it);
		ob_env_free(env);
		if (rc != 0)
			st = (enum dm_status)rc;
	}
	free(ids.id);
	return st;
}

static enum dm_status ob_retry_one(struct outbox *ob, const char *id,
                                   struct dm_err *err)
{
	struct ob_slot s;
	enum dm_status st;

	if ((st = ob_slot_take(ob, &s, id, false, err)) != DM_OK)
		return st;
	if (s.kind == OB_SLOT_DAMAGED)
		st = dm_err_set(err, DM_EINVAL, "%s", s.damage);
	else if (s.kind == OB_SLOT_MARKED)
		st = DM_ENOTFOUND;       /* on its way to failed/ */
	else if ((st = ob_retry_write(s.dir, s.env->attempts, ob_now(ob),
	                              s.env->error, err)) == DM_OK)
		ob_step(ob, "retry-write", id);
	ob_slot_release(&s);
	return st;
}

enum dm_status outbox_retry_now(struct outbox *ob, const char *id,
                                unsigned *count, struct dm_err *err)
{
	struct ob_ids ids;
	enum dm_status st;
	unsigned n = 0;

	if (count)
		*count = 0;
	if (id) {
		if ((st = ob_check_id(id, err)) != DM_OK)
			return st;
		st = ob_retry_one(ob, id, err);
		if (st == DM_ENOTFOUND)
			return dm_err_set(err, st, "outbox: no queued message %s", id);
		if (st == DM_EBUSY)
			return dm_err_set(err, st,
			    "outbox: message %s is being delivered by another process", id);
		if (st == DM_OK && count)
			*count = 1;
		return st;
	}
	if ((st = ob_scan(ob->queue, &ids, err)) != DM_OK)
		return st;
	for (size_t i = 0; i < ids.n; i++) {
		struct dm_err one;
		dm_err_clear(&one);
		enum dm_status r = ob_retry_one(ob, ids.id[i], &one);
		if (r == DM_OK)
			n++;
		else if (r == DM_EBUSY || r == DM_ENOTFOUND || r == DM_EINVAL)
			continue;   /* being delivered, gone, or damaged: the next
			             * delivery run moves a damaged entry to failed */
		else {
			st = dm_err_set(err, r, "%s", one.msg);
			break;
		}
	}
	free(ids.id);
	if (count)
		*count = n;
	return st;
}

enum dm_status outbox_delete(struct outbox *ob, const char *id,
                             struct dm_err *err)
{
	static const enum outbox_which order[] = { OUTBOX_QUEUE, OUTBOX_FAILED };
	enum dm_status st;

	if ((st = ob_check_id(id, err)) != DM_OK)
		return st;
	for (size_t i = 0; i < 2; i++) {
		const char *dir = ob_dir(ob, order[i]);
		int fd;
		st = ob_lock(dir, id, &fd, err);
		if (st == DM_ENOTFOUND)
			continue;
		if (st == DM_EBUSY)
			return dm_err_set(err, st,
			    "outbox: message %s is being delivered by another process", id);
		if (st != DM_OK)
			return st;
		st = ob_remove(ob, dir, id, err);
		close(fd);
		if (st == DM_OK)
			log_write(ob->root, ob->opt.log_max_size, NULL,
			          "deleted %s from the %s", id,
			          order[i] == OUTBOX_QUEUE ? "outbox queue" : "failed outbox");
		return st;
	}
	return dm_err_set(err, DM_ENOTFOUND, "outbox: no message %s (queue or failed)", id);
}

enum dm_status outbox_count(struct outbox *ob, enum outbox_which which,
                            size_t *n, struct dm_err *err)
{
	struct ob_ids ids;
	enum dm_status st = ob_scan(ob_dir(ob, which), &ids, err);

	*n = st == DM_OK ? ids.n : 0;
	free(ids.id);
	return st;
}

enum dm_status outbox_next_due(struct outbox *ob, time_t *when,
                               struct dm_err *err)
{
	char dir[DM_PATH_MAX];
	struct ob_ids ids;
	bool any = false;
	enum dm_status st = ob_scan(ob->queue, &ids, err);

	for (size_t i = 0; st == DM_OK && i < ids.n; i++) {
		struct ob_env *env = NULL;
		if (ob_path(dir, ob->queue, ids.id[i], NULL, NULL) != DM_OK ||
		    ob_state_read(dir, &env, NULL) != DM_OK)
			continue;
		if (!any || env->next_try < *when)
			*when = env->next_try;
		any = true;
		ob_env_free(env);
	}
	free(ids.id);
	if (st == DM_OK && !any)
		return dm_err_set(err, DM_ENOTFOUND, "outbox: the queue is empty");
	return st;
}

/* ---- failed messages: lookup, dialogue, re-queue ---------------------------- */

#define OB_DIALOGUE_FORMAT "DEVMAIL-DIALOGUE"
#define OB_DIALOGUE_VERSION 1
#define OB_DIALOGUE_FILE "dialogue"
#define OB_DIALOGUE_MAX (OUTBOX_DIALOGUE_LINES * (OUTBOX_DIALOGUE_LINE_MAX + 8) + 64)

static const char *ob_which_name(enum outbox_which which)
{
	return which == OUTBOX_FAILED ? "failed outbox" : "outbox queue";
}

/* Whether dir/<id> exists as a directory. */
static bool ob_entry_exists(const char *dir, const char *id)
{
	char path[DM_PATH_MAX];
	struct stat sb;

	return ob_path(path, dir, id, NULL, NULL) == DM_OK &&
	       stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

enum dm_status outbox_resolve(struct outbox *ob, unsigned where,
                              const char *prefix, char id[OUTBOX_ID_MAX],
                              enum outbox_which *found, struct dm_err *err)
{
	static const enum outbox_which order[] = { OUTBOX_QUEUE, OUTBOX_FAILED };
	static const unsigned bit[] = { OUTBOX_IN_QUEUE, OUTBOX_IN_FAILED };
	char first[3][OUTBOX_ID_MAX];
	enum outbox_which first_where = OUTBOX_QUEUE;
	size_t matches = 0, plen;
	enum dm_status st;

	id[0] = '\0';
	if ((st = ob_check_id(prefix, err)) != DM_OK)
		return st;
	plen = strlen(prefix);
	/* A whole id wins, even when it is also the prefix of a longer one. */
	for (size_t i = 0; i < 2; i++) {
		if (!(where & bit[i]) || !ob_entry_exists(ob_dir(ob, order[i]), prefix))
			continue;
		snprintf(id, OUTBOX_ID_MAX, "%s", prefix);
		if (found)
			*found = order[i];
		return DM_OK;
	}
	for (size_t i = 0; i < 2; i++) {
		struct ob_ids ids;
		if (!(where & bit[i]))
			continue;
		if ((st = ob_scan(ob_dir(ob, order[i]), &ids, err)) != DM_OK)
			return st;
		for (size_t k = 0; k < ids.n; k++) {
			if (strncmp(ids.id[k], prefix, plen) != 0)
				continue;
			if (matches < 3)
				snprintf(first[matches], sizeof(first[matches]), "%s",
				         ids.id[k]);
			if (matches == 0)
				first_where = order[i];
			matches++;
		}
		free(ids.id);
	}
	if (matches == 0)
		return dm_err_set(err, DM_ENOTFOUND, "outbox: no message %s%s",
		    where == OUTBOX_IN_FAILED ? "in the failed outbox matches " :
		    where == OUTBOX_IN_QUEUE ? "in the queue matches " : "matches ",
		    prefix);
	if (matches > 1)
		return dm_err_set(err, DM_EINVAL, "outbox: '%s' matches %zu messages "
		                  "(%s, %s%s%s%s): give more of the id", prefix, matches,
		                  first[0], first[1], matches > 2 ? ", " : "",
		                  matches > 2 ? first[2] : "", matches > 3 ? ", ..." : "");
	snprintf(id, OUTBOX_ID_MAX, "%s", first[0]);
	if (found)
		*found = first_where;
	return DM_OK;
}

enum dm_status outbox_get(struct outbox *ob, enum outbox_which which,
                          const char *id, outbox_list_fn fn, void *ctx,
                          struct dm_err *err)
{
	char dir[DM_PATH_MAX];
	struct ob_env *env = NULL;
	struct outbox_item it;
	struct dm_err e;
	enum dm_status st;
	int rc;

	if ((st = ob_check_id(id, err)) != DM_OK ||
	    (st = ob_path(dir, ob_dir(ob, which), id, NULL, err)) != DM_OK)
		return st;
	dm_err_clear(&e);
	st = ob_state_read(dir, &env, &e);   /* the reason lives in retry */
	if (st == DM_ENOTFOUND)
		return dm_err_set(err, st, "outbox: no message %s in the %s", id,
		                  ob_which_name(which));
	if (st == DM_EINVAL) {
		static const char *const none[1] = { NULL };
		memset(&it, 0, sizeof(it));
		it.id = id;
		it.from = "";
		it.rcpt = none;
		it.last_error = e.msg;
		it.failed = which == OUTBOX_FAILED;
		it.damaged = true;
		rc = fn(ctx, &it);
		return (enum dm_status)rc;
	}
	if (st != DM_OK) {
		if (err)
			*err = e;
		return st;
	}
	ob_item_fill(ob, &it, id, env);
	it.failed = which == OUTBOX_FAILED;
	rc = fn(ctx, &it);
	ob_env_free(env);
	return (enum dm_status)rc;
}

enum dm_status outbox_dialogue_save(struct outbox *ob, enum outbox_which which,
                                    const char *id, const char *const *lines,
                                    size_t n, struct dm_err *err)
{
	const char *dir = ob_dir(ob, which);
	char path[DM_PATH_MAX], one[OUTBOX_DIALOGUE_LINE_MAX];
	char *buf = NULL;
	size_t len = 0, from = 0;
	enum dm_status st;
	FILE *f;
	int fd;

	if ((st = ob_check_id(id, err)) != DM_OK ||
	    (st = ob_path(path, dir, id, OB_DIALOGUE_FILE, err)) != DM_OK)
		return st;
	st = ob_lock(dir, id, &fd, err);
	if (st == DM_ENOTFOUND)
		return dm_err_set(err, st, "outbox: no message %s in the %s", id,
		                  ob_which_name(which));
	if (st == DM_EBUSY)
		return dm_err_set(err, st, "outbox: message %s is being delivered "
		                  "or removed by another process", id);
	if (st != DM_OK)
		return st;
	if (!(f = open_memstream(&buf, &len))) {
		close(fd);
		return dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
	}
	if (n > OUTBOX_DIALOGUE_LINES)
		from = n - OUTBOX_DIALOGUE_LINES;
	fprintf(f, "%s %d\n", OB_DIALOGUE_FORMAT, OB_DIALOGUE_VERSION);
	for (size_t i = from; i < n; i++) {
		ob_one_line(one, sizeof(one), lines[i]);
		fprintf(f, "line %s\n", one);
	}
	fputs("end\n", f);
	if (fclose(f) != 0) {
		free(buf);
		close(fd);
		return dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
	}
	st = paths_write_atomic(path, buf, len, 0600, err);
	free(buf);
	close(fd);
	return st;
}

enum dm_status outbox_dialogue_read(struct outbox *ob, enum outbox_which which,
                                    const char *id, outbox_line_fn fn,
                                    void *ctx, struct dm_err *err)
{
	const char *dir = ob_dir(ob, which);
	char path[DM_PATH_MAX];
	char *buf;
	size_t len = 0;
	enum dm_status st;
	bool head = false, end = false;
	int fd;

	if ((st = ob_check_id(id, err)) != DM_OK ||
	    (st = ob_path(path, dir, id, OB_DIALOGUE_FILE, err)) != DM_OK)
		return st;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno != ENOENT)
			return dm_err_set(err, DM_EIO, "outbox: cannot open %s: %s",
			                  path, strerror(errno));
		if (!ob_entry_exists(dir, id))
			return dm_err_set(err, DM_ENOTFOUND, "outbox: no message %s in "
			                  "the %s", id, ob_which_name(which));
		return DM_OK;          /* no dialogue stored */
	}
	if (!(buf = malloc(OB_DIALOGUE_MAX + 1))) {
		close(fd);
		return dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
	}
	for (;;) {
		ssize_t r = read(fd, buf + len, OB_DIALOGUE_MAX - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			free(buf);
			return dm_err_set(err, DM_EIO, "outbox: cannot read %s: %s",
			                  path, strerror(e));
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len == OB_DIALOGUE_MAX) {
			close(fd);
			free(buf);
			return dm_err_set(err, DM_EINVAL, "outbox: %s is too large", path);
		}
	}
	close(fd);
	buf[len] = '\0';
	/* Check the whole file first, so that a damaged one yields no lines. */
	for (int pass = 0; pass < 2; pass++) {
		char *p = buf;
		head = end = false;
		while (*p && !end) {
			char *nl = strchr(p, '\n');
			size_t l = nl ? (size_t)(nl - p) : strlen(p);
			if (!head) {
				char want[32];
				int k = snprintf(want, sizeof(want), "%s %d",
				                 OB_DIALOGUE_FORMAT, OB_DIALOGUE_VERSION);
				if ((size_t)k != l || strncmp(p, want, l) != 0)
					break;
				head = true;
			} else if (l == 3 && strncmp(p, "end", 3) == 0) {
				end = true;
			} else if (l >= 5 && strncmp(p, "line ", 5) == 0) {
				if (pass == 1) {
					char one[OUTBOX_DIALOGUE_LINE_MAX];
					size_t m = l - 5 < sizeof(one) - 1 ? l - 5 : sizeof(one) - 1;
					memcpy(one, p + 5, m);
					one[m] = '\0';
					fn(ctx, one);
				}
			}
			/* other keys: a later minor revision; ignored */
			if (!nl)
				break;
			p = nl + 1;
		}
		if (!head || !end) {
			free(buf);
			return dm_err_set(err, DM_EINVAL, "outbox: %s is malformed", path);
		}
	}
	free(buf);
	return DM_OK;
}

enum dm_status outbox_requeue(struct outbox *ob, const char *id,
                              struct dm_err *err)
{
	char from[DM_PATH_MAX], to[DM_PATH_MAX], dlg[DM_PATH_MAX];
	char rfile[DM_PATH_MAX];
	struct ob_env *env = NULL;
	struct dm_err e;
	enum dm_status st;
	int fd;

	if ((st = ob_check_id(id, err)) != DM_OK ||
	    (st = ob_path(from, ob->failed, id, NULL, err)) != DM_OK ||
	    (st = ob_path(to, ob->queue, id, NULL, err)) != DM_OK ||
	    (st = ob_path(dlg, ob->failed, id, OB_DIALOGUE_FILE, err)) != DM_OK)
		return st;
	st = ob_lock(ob->failed, id, &fd, err);
	if (st == DM_ENOTFOUND)
		return dm_err_set(err, st, "outbox: no failed message %s", id);
	if (st == DM_EBUSY)
		return dm_err_set(err, st, "outbox: message %s is being removed by "
		                  "another process", id);
	if (st != DM_OK)
		return st;
	dm_err_clear(&e);
	st = ob_env_read(from, &env, &e);
	if (st != DM_OK) {
		close(fd);
		if (st == DM_EINVAL)
			return dm_err_set(err, st, "outbox: %s cannot be re-queued: %s",
			                  id, e.msg);
		if (st == DM_ENOTFOUND)
			return dm_err_set(err, st, "outbox: no failed message %s", id);
		if (err)
			*err = e;
		return st;
	}
	env->failed = false;
	env->attempts = 0;
	env->created = ob_now(ob);
	env->next_try = env->created;
	env->error = "";
	st = ob_env_write(from, env, err);
	ob_env_free(env);
	if (st != DM_OK) {
		close(fd);
		return st;
	}
	ob_step(ob, "env-write", id);
	/* The retry file holds the failure's attempts and reason, and it is
	 * read over the envelope: it goes, or the fresh attempts would not be
	 * fresh.  Removed before the move, so a crash in between leaves a
	 * failed entry that reads as never tried, which a re-run re-queues. */
	if (snprintf(rfile, sizeof(rfile), "%s/retry", from) >= (int)sizeof(rfile)) {
		close(fd);
		return dm_err_set(err, DM_EINVAL, "spool path too long: %s", from);
	}
	const char *gone = NULL;
	if (unlink(rfile) != 0 && errno != ENOENT)
		gone = rfile;
	else if (unlink(dlg) != 0 && errno != ENOENT)
		gone = dlg;
	if (gone != NULL) {
		st = dm_err_set(err, DM_EIO, "outbox: cannot remove %s: %s", gone,
		                strerror(errno));
		close(fd);
		return st;
	}
	if (rename(from, to) != 0) {
		st = dm_err_set(err, DM_EIO, "outbox: cannot move %s to %s: %s",
		                from, to, strerror(errno));
		close(fd);
		return st;
	}
	if ((st = paths_fsync_dir(ob->queue, err)) == DM_OK)
		st = paths_fsync_dir(ob->failed, err);
	close(fd);
	if (st != DM_OK)
		return st;
	ob_step(ob, "requeue-move", id);
	log_write(ob->root, ob->opt.log_max_size, NULL,
	          "requeued %s from the failed outbox", id);
	return DM_OK;
}
