/*
 * outbox.c - the durable outbox spool and its retry policy.
 *
 * Layout (docs/outbox.md has the full contract):
 *   spool/lock             flock()ed: shared by anyone with entries in tmp/,
 *                          exclusive (non-blocking) by the cleaner at open
 *   spool/tmp/<id>/        an enqueue in progress
 *   spool/tmp/<id>.del/    a removal in progress
 *   spool/queue/<id>/msg   the RFC 5322 bytes, immutable once queued
 *   spool/queue/<id>/env   the envelope and retry state (versioned text),
 *                          replaced atomically (temp, fsync, rename, fsync)
 *   spool/failed/<id>/     same pair, state "failed", with the reason
 *
 * A message directory appears in queue/ and leaves it by rename(2) only, so
 * every crash leaves either the old or the new state.  A deliverer holds an
 * exclusive non-blocking flock() on queue/<id>/msg; a second deliverer that
 * cannot take it skips the message.
 */
#include "mail/outbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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
#define OB_REASON_MAX 1200

struct outbox {
	char root[DM_PATH_MAX];
	char tmp[DM_PATH_MAX];
	char queue[DM_PATH_MAX];
	char failed[DM_PATH_MAX];
	int lock_fd;                 /* spool/lock */
	struct outbox_options opt;
};

/* The envelope file parsed; strings point into buf. */
struct ob_env {
	char *buf;
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

static enum dm_status ob_finish_failed_moves(struct outbox *ob, struct dm_err *err);

enum dm_status outbox_open(const char *root, const struct outbox_options *opt,
                           struct outbox **out, struct dm_err *err)
{
	char spool[DM_PATH_MAX], lockpath[DM_PATH_MAX];
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
	    (st = paths_join(spool, "lock", lockpath, sizeof(lockpath), err)) != DM_OK) {
		free(ob);
		return dm_err_set(err, DM_EINVAL, "outbox: root path too long");
	}
	if ((st = paths_mkdirs(ob->tmp, 0700, err)) != DM_OK ||
	    (st = paths_mkdirs(ob->queue, 0700, err)) != DM_OK ||
	    (st = paths_mkdirs(ob->failed, 0700, err)) != DM_OK) {
		free(ob);
		return st;
	}
	ob->lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (ob->lock_fd < 0) {
		st = dm_err_set(err, DM_EIO, "outbox: cannot open %s: %s",
		                lockpath, strerror(errno));
		free(ob);
		return st;
	}
	st = ob_clean_tmp(ob, err);
	if (st == DM_OK)
		st = ob_finish_failed_moves(ob, err);
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

bool outbox_status_is_temporary(enum dm_status status)
{
	switch (status) {
	case DM_ETEMPFAIL:
	case DM_ENET:
	case DM_ETIMEOUT:
	case DM_EBUSY:
		return true;
	default:
		return false;
	}
}

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
 * (the commit point), fsync dir, then delete the files.  Without `durable`
 * neither directory is fsynced: for a message just delivered, where a
 * power cut that undoes the removal can only make it go out again (see
 * "Duplicates" in docs/outbox.md), never lose it. */
static enum dm_status ob_remove(struct outbox *ob, const char *dir,
                                const char *id, bool durable,
                                struct dm_err *err)
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
	if (durable && (st = paths_fsync_dir(dir, err)) != DM_OK)
		goto out;
	ob_step(ob, "remove-commit", id);
	if ((st = ob_rmtree(to, err)) != DM_OK)
		goto out;
	if (durable)
		st = paths_fsync_dir(ob->tmp, err);
	ob_step(ob, "remove-clean", id);
out:
	flock(ob->lock_fd, LOCK_UN);
	return st;
}

/* Records state failed + reason in the envelope, then renames the message
 * directory into failed/.  A crash in between leaves a queue entry marked
 * failed, which the next open (or delivery) moves on. */
static enum dm_status ob_move_failed(struct outbox *ob, const char *id,
                                     struct ob_env *env, const char *reason,
                                     struct dm_err *err)
{
	char from[DM_PATH_MAX], to[DM_PATH_MAX];
	enum dm_status st;

	if ((st = ob_path(from, ob->queue, id, NULL, err)) != DM_OK ||
	    (st = ob_path(to, ob->failed, id, NULL, err)) != DM_OK)
		return st;
	if (!env->failed || reason) {
		env->failed = true;
		if (reason)
			env->error = reason;
		if ((st = ob_env_write(from, env, err)) != DM_OK)
			return st;
		ob_step(ob, "env-write", id);
	}
	if (rename(from, to) != 0)
		return dm_err_set(err, DM_EIO, "outbox: cannot move %s to %s: %s",
		                  from, to, strerror(errno));
	if ((st = paths_fsync_dir(ob->failed, err)) != DM_OK ||
	    (st = paths_fsync_dir(ob->queue, err)) != DM_OK)
		return st;
	ob_step(ob, "fail-move", id);
	return DM_OK;
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

static enum dm_status ob_finish_failed_moves(struct outbox *ob, struct dm_err *err)
{
	char dir[DM_PATH_MAX];
	struct ob_ids ids;
	enum dm_status st = ob_scan(ob->queue, &ids, err);

	for (size_t i = 0; st == DM_OK && i < ids.n; i++) {
		struct ob_env *env = NULL;
		int fd;
		if (ob_path(dir, ob->queue, ids.id[i], NULL, NULL) != DM_OK ||
		    ob_env_read(dir, &env, NULL) != DM_OK)
			continue;
		if (env->failed && ob_lock(ob->queue, ids.id[i], &fd, NULL) == DM_OK) {
			ob_env_free(env);
			env = NULL;
			if (ob_env_read(dir, &env, NULL) == DM_OK && env->failed)
				st = ob_move_failed(ob, ids.id[i], env, NULL, err);
			close(fd);
		}
		ob_env_free(env);
	}
	free(ids.id);
	return st;
}

/* ---- delivery -------------------------------------------------------------------- */

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

/* One locked message of a batch. */
struct ob_slot {
	char id[OUTBOX_ID_MAX];
	int fd;
	struct ob_env *env;
	struct ob_src src;
};

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

/* Applies one outcome to a locked message.  Local errors are returned. */
static enum dm_status ob_apply(struct outbox *ob, struct ob_slot *s,
                               const struct outbox_outcome *o,
                               struct outbox_stats *stats, struct dm_err *err)
{
	char dir[DM_PATH_MAX], reason[OB_REASON_MAX], expired[OB_REASON_MAX + 128];
	char detail[OUTBOX_DETAIL_MAX];
	enum dm_status st;
	time_t now = ob_now(ob);

	if ((st = ob_path(dir, ob->queue, s->id, NULL, err)) != DM_OK)
		return st;
	bool partial = o->nretry > 0 &&
	    (o->status == DM_OK || outbox_status_is_temporary(o->status));
	if (partial) {
		/* Keep only the recipients to retry; the env rewrite below
		 * (deferred or failed) makes the new list durable.  A crash
		 * before it leaves the old list: the accepted recipients may
		 * get the message again (the duplicate window of
		 * docs/outbox.md), nobody loses it. */
		size_t n = 0;
		for (size_t k = 0; k < s->env->nrcpt && k < OUTBOX_MAX_RCPT; k++)
			if (o->retry[k])
				s->env->rcpt[n++] = s->env->rcpt[k];
		if (n == 0)
			partial = false;      /* nothing to retry: as if no list */
		else
			s->env->nrcpt = n;
	}
	if (o->status == DM_OK && partial) {
		ob_one_line(detail, sizeof(detail), o->detail);
		log_write(ob->root, ob->opt.log_max_size, NULL, "sent %s%s%s", s->id,
		          detail[0] ? " " : "", detail);
	} else if (o->status == DM_OK) {
		/* Delivered: the removal need not reach the disk before we go
		 * on (a lost removal means a duplicate, not a loss). */
		st = ob_remove(ob, ob->queue, s->id, false, err);
		if (st != DM_OK)
			return st;
		stats->sent++;
		ob_one_line(detail, sizeof(detail), o->detail);
		log_write(ob->root, ob->opt.log_max_size, NULL, "sent %s%s%s", s->id,
		          detail[0] ? " " : "", detail);
		return DM_OK;
	}
	ob_reason(o, reason, sizeof(reason));
	if (outbox_status_is_temporary(o->status) || o->status == DM_OK) {
		unsigned attempts = s->env->attempts + 1;
		if (now - s->env->created < ob->opt.max_age) {
			long delay = outbox_backoff(ob->opt.retry_min, ob->opt.retry_max,
			                            attempts, ob_jitter(ob));
			s->env->attempts = attempts;
			s->env->next_try = now + delay;
			s->env->error = reason;
			if ((st = ob_env_write(dir, s->env, err)) != DM_OK)
				return st;
			ob_step(ob, "env-write", s->id);
			stats->deferred++;
			log_write(ob->root, ob->opt.log_max_size, NULL,
			          "deferred %s: %s; next try in %lds", s->id, reason, delay);
			return DM_OK;
		}
		s->env->attempts = attempts;
		snprintf(expired, sizeof(expired),
		         "expired after %ld s in the queue (%u attempts, Outbox/MaxAge %ld s); last error: %s",
		         (long)(now - s->env->created), attempts, ob->opt.max_age, reason);
		ob_one_line(reason, sizeof(reason), expired);
	} else {
		s->env->attempts++;
	}
	st = ob_move_failed(ob, s->id, s->env, reason, err);
	if (st != DM_OK)
		return st;
	stats->failed++;
	log_write(ob->root, ob->opt.log_max_size, NULL, "failed %s: %s", s->id, reason);
	return DM_OK;
}

static void ob_slot_release(struct ob_slot *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	ob_env_free(s->env);
	s->env = NULL;
}

/* Locks id into slot and reads its envelope.  With `due_only`, a message
 * that is not due (any more) is released and DM_ENOTFOUND returned; one
 * marked failed is moved on and DM_ENOTFOUND returned. */
static enum dm_status ob_slot_take(struct outbox *ob, struct ob_slot *s,
                                   const char *id, bool due_only,
                                   struct dm_err *err)
{
	char dir[DM_PATH_MAX];
	enum dm_status st;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	snprintf(s->id, sizeof(s->id), "%s", id);
	if ((st = ob_path(dir, ob->queue, id, NULL, err)) != DM_OK)
		return st;
	if ((st = ob_lock(ob->queue, id, &s->fd, err)) != DM_OK)
		return st;
	st = ob_env_read(dir, &s->env, err);
	if (st == DM_OK && s->env->failed) {
		st = ob_move_failed(ob, id, s->env, NULL, err);
		if (st == DM_OK)
			st = DM_ENOTFOUND;
	} else if (st == DM_OK && due_only && s->env->next_try > ob_now(ob)) {
		st = DM_ENOTFOUND;
	}
	if (st != DM_OK) {
		ob_slot_release(s);
		return st;
	}
	ob_step(ob, "deliver-lock", id);
	s->src.fd = s->fd;
	s->src.id = s->id;
	return DM_OK;
}

/* Moves queue/<id>, whose env cannot be read, to failed/ as it is (the
 * files are kept for the operator; OUTBOX -f lists it as damaged) and logs
 * "failed <id>: <reason>".  Best effort: a message locked by someone else
 * or a local error leaves it where it is for the next run. */
static void ob_move_damaged(struct outbox *ob, const char *id,
                            struct outbox_stats *stats)
{
	char dir[DM_PATH_MAX], from[DM_PATH_MAX], to[DM_PATH_MAX];
	struct ob_env *env = NULL;
	struct dm_err e;
	int fd = -1;

	dm_err_clear(&e);
	if (ob_path(from, ob->queue, id, NULL, NULL) != DM_OK ||
	    ob_path(to, ob->failed, id, NULL, NULL) != DM_OK)
		return;
	snprintf(dir, sizeof(dir), "%s", from);
	if (ob_lock(ob->queue, id, &fd, NULL) != DM_OK)
		return;
	/* re-read under the lock: a writer may have just replaced it */
	if (ob_env_read(dir, &env, &e) != DM_EINVAL) {
		ob_env_free(env);
		close(fd);
		return;
	}
	if (rename(from, to) == 0) {
		(void)paths_fsync_dir(ob->failed, NULL);
		(void)paths_fsync_dir(ob->queue, NULL);
		ob_step(ob, "fail-move", id);
		stats->failed++;
		log_write(ob->root, ob->opt.log_max_size, NULL,
		          "failed %s: damaged envelope, not delivered: %s", id, e.msg);
	}
	close(fd);
}

/* Hands n locked slots to fn and applies the outcomes. */
static enum dm_status ob_run(struct outbox *ob, struct ob_slot *slots, size_t n,
                             outbox_batch_fn fn, void *ctx,
                             struct outbox_stats *stats,
                             struct outbox_outcome *first, struct dm_err *err)
{
	struct outbox_item *items = calloc(n, sizeof(*items));
	struct mail_source *msgs = calloc(n, sizeof(*msgs));
	struct outbox_outcome *out = calloc(n, sizeof(*out));
	enum dm_status st = DM_OK;

	if (!items || !msgs || !out) {
		st = dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		ob_item_fill(ob, &items[i], slots[i].id, slots[i].env);
		msgs[i].read = ob_src_read;
		msgs[i].ctx = &slots[i].src;
		out[i].status = DM_EIO;     /* "not attempted" unless fn says so */
	}
	fn(ctx, n, items, msgs, out);
	for (size_t i = 0; i < n; i++) {
		if (out[i].status != DM_OK && !out[i].err.msg[0] && !out[i].err.smtp_code)
			dm_err_set(&out[i].err, out[i].status, "%s",
			           out[i].status == DM_EIO ? "not attempted by the delivery callback"
			                                   : dm_status_str(out[i].status));
		ob_step(ob, "deliver-return", slots[i].id);
	}
	for (size_t i = 0; i < n; i++) {
		enum dm_status a = ob_apply(ob, &slots[i], &out[i], stats, err);
		if (a != DM_OK && st == DM_OK)
			st = a;
	}
	if (first)
		*first = out[0];
done:
	free(items);
	free(msgs);
	free(out);
	return st;
}

struct ob_single {
	outbox_deliver_fn fn;
	void *ctx;
};

static void ob_single_batch(void *ctx, size_t n, const struct outbox_item *items,
                            const struct mail_source *msgs,
                            struct outbox_outcome *out)
{
	struct ob_single *one = ctx;

	for (size_t i = 0; i < n; i++) {
		out[i].status = one->fn(one->ctx, &items[i], &msgs[i], out[i].detail,
		                        sizeof(out[i].detail), &out[i].err);
	}
}

static enum dm_status ob_deliver_due(struct outbox *ob, size_t max_batch,
                                     outbox_batch_fn fn, void *ctx,
                                     struct outbox_stats *stats,
                                     struct dm_err *err)
{
	struct ob_ids ids;
	struct ob_slot *slots;
	enum dm_status st;
	char dir[DM_PATH_MAX];
	size_t next = 0;

	if (max_batch == 0 || max_batch > OUTBOX_BATCH_MAX)
		max_batch = OUTBOX_BATCH_MAX;
	if ((st = ob_scan(ob->queue, &ids, err)) != DM_OK)
		return st;
	slots = calloc(max_batch, sizeof(*slots));
	if (!slots) {
		free(ids.id);
		return dm_err_set(err, DM_ENOMEM, "outbox: out of memory");
	}
	while (st == DM_OK && next < ids.n) {
		size_t n = 0;
		/* Gather up to max_batch due messages that we can lock. */
		while (n < max_batch && next < ids.n) {
			const char *id = ids.id[next++];
			struct ob_env *env = NULL;
			/* Cheap unlocked look first: most entries are not due. */
			struct dm_err e;
			dm_err_clear(&e);
			if (ob_path(dir, ob->queue, id, NULL, NULL) != DM_OK)
				continue;
			enum dm_status rd = ob_env_read(dir, &env, &e);
			if (rd == DM_EINVAL) {
				/* Never deliverable: move it where an operator sees it
				 * instead of skipping it forever. */
				ob_move_damaged(ob, id, stats);
				continue;
			}
			if (rd != DM_OK)
				continue;
			bool due = env->failed || env->next_try <= ob_now(ob);
			ob_env_free(env);
			if (!due)
				continue;
			enum dm_status t = ob_slot_take(ob, &slots[n], id, true, err);
			if (t == DM_OK)
				n++;
			else if (t == DM_EBUSY)
				stats->busy++;
			else if (t != DM_ENOTFOUND) {
				st = t;
				break;
			}
		}
		if (n > 0) {
			enum dm_status r = ob_run(ob, slots, n, fn, ctx, stats, NULL, err);
			if (r != DM_OK && st == DM_OK)
				st = r;
		}
		for (size_t i = 0; i < n; i++)
			ob_slot_release(&slots[i]);
	}
	free(slots);
	free(ids.id);
	return st;
}

enum dm_status outbox_deliver_due(struct outbox *ob, size_t max_batch,
                                  outbox_batch_fn fn, void *ctx,
                                  struct outbox_stats *stats,
                                  struct dm_err *err)
{
	struct outbox_stats local = { 0 };

	if (!fn)
		return dm_err_set(err, DM_EINVAL, "outbox: no delivery callback");
	return ob_deliver_due(ob, max_batch, fn, ctx, stats ? stats : &local, err);
}

static enum dm_status ob_deliver_id(struct outbox *ob, const char *id,
                                    outbox_batch_fn fn, void *ctx,
                                    struct outbox_stats *stats,
                                    struct dm_err *err);

enum dm_status outbox_deliver(struct outbox *ob, const char *id,
                              outbox_deliver_fn fn, void *ctx,
                              struct outbox_stats *stats, struct dm_err *err)
{
	struct outbox_stats local = { 0 };
	struct ob_single one = { fn, ctx };

	if (!fn)
		return dm_err_set(err, DM_EINVAL, "outbox: no delivery callback");
	if (!stats)
		stats = &local;
	if (!id)
		return ob_deliver_due(ob, 1, ob_single_batch, &one, stats, err);
	return ob_deliver_id(ob, id, ob_single_batch, &one, stats, err);
}

enum dm_status outbox_deliver_one(struct outbox *ob, const char *id,
                                  outbox_batch_fn fn, void *ctx,
                                  struct outbox_stats *stats,
                                  struct dm_err *err)
{
	struct outbox_stats local = { 0 };

	if (!fn)
		return dm_err_set(err, DM_EINVAL, "outbox: no delivery callback");
	return ob_deliver_id(ob, id, fn, ctx, stats ? stats : &local, err);
}

static enum dm_status ob_deliver_id(struct outbox *ob, const char *id,
                                    outbox_batch_fn fn, void *ctx,
                                    struct outbox_stats *stats,
                                    struct dm_err *err)
{
	struct outbox_outcome first = { 0 };
	struct ob_slot slot;
	enum dm_status st;

	if ((st = ob_check_id(id, err)) != DM_OK)
		return st;
	st = ob_slot_take(ob, &slot, id, false, err);
	if (st == DM_EBUSY) {
		stats->busy++;
		return dm_err_set(err, DM_EBUSY,
		    "outbox: message %s is being delivered by another process", id);
	}
	if (st == DM_ENOTFOUND)
		return dm_err_set(err, DM_ENOTFOUND, "outbox: no queued message %s", id);
	if (st != DM_OK)
		return st;
	st = ob_run(ob, &slot, 1, fn, ctx, stats, &first, err);
	ob_slot_release(&slot);
	if (st != DM_OK)
		return st;
	if (first.status != DM_OK && err && !err->msg[0])
		*err = first.err;
	return first.status;
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
		r = ob_env_read(dir, &env, &e);
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
	char dir[DM_PATH_MAX];
	struct ob_slot s;
	enum dm_status st;

	if ((st = ob_path(dir, ob->queue, id, NULL, err)) != DM_OK)
		return st;
	if ((st = ob_slot_take(ob, &s, id, false, err)) != DM_OK)
		return st;
	s.env->next_try = ob_now(ob);
	st = ob_env_write(dir, s.env, err);
	if (st == DM_OK)
		ob_step(ob, "env-write", id);
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
		/* An operator's delete stays durable: a deleted message coming
		 * back after a power cut would be sent against their will. */
		st = ob_remove(ob, dir, id, true, err);
		close(fd);
		if (st == DM_OK)
			log_write(ob->root, ob->opt.log_max_size, NULL,
			          "deleted %s from the %s", id,
			          order[i] == OUTBOX_QUEUE ? "outbox queue" : "failed outbox");
		return st;
	}
	return dm_err_set(err, DM_ENOTFOUND, "outbox: no message %s (queue or failed)", id);
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
		    ob_env_read(dir, &env, NULL) != DM_OK)
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
