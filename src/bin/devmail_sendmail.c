/* bin/devmail_sendmail.c - `devmail-sendmail`: the sendmail-compatible entry, so
 * cron, mailx and scripts can hand mail to devmail.
 *
 *   devmail-sendmail [--root DIR] [-t] [-i] [-f FROM] [-F NAME] [-v]
 *                    [-odq] [ignored flags] [--] [RCPT...]
 *   devmail-sendmail [--root DIR] -q      deliver the queue now
 *
 * The message comes on stdin (LF or CRLF line ends).  Without -i (-oi) a
 * line holding a lone "." ends it, as with sendmail.  -t takes recipients
 * from To, Cc and Bcc (added to those given as arguments, as Postfix does)
 * and removes the Bcc field.  Date and Message-ID are added when missing;
 * From too (NAME from -F, the address from -f or Email/FromAddress).  The
 * message is queued through mail/submit.c (on disk before anything is
 * sent).  When a devmaild serves the data root (it holds ROOT/devmaild.pid)
 * the message is its to deliver and we exit 0 at once; otherwise it is
 * delivered now unless -odq.  Exit statuses as SENDMAIL: 0 sent (or queued
 * for devmaild, or with -odq), 75 queued for retry, 69 refused, 77
 * authentication failed, 78 configuration missing, 65 bad input, 64 bad
 * usage, 74 local I/O.
 * Silent on success (sendmail's behaviour, for cron); -v shows the SMTP
 * dialogue and the result line on stdout.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "core/paths.h"
#include "core/pidfile.h"
#include "core/registry.h"
#include "mail/address.h"
#include "mail/submit.h"

#define SM_NAME "devmail-sendmail"
#define SM_RCPT_MAX 256                 /* recipients given as arguments */
#define SM_CHUNK (64 * 1024)
#define SM_PRE_MAX (SUBMIT_HEADER_MAX + SM_CHUNK) /* header look-ahead cap */

struct sm_args {
	const char *root;
	const char *from;        /* -f / -r */
	const char *fullname;    /* -F */
	bool from_headers;       /* -t */
	bool ignore_dots;        /* -i, -oi */
	bool verbose;            /* -v */
	bool queue_only;         /* -odq */
	bool run_queue;          /* -q */
	const char *rcpt[SM_RCPT_MAX];
	size_t nrcpt;
};

/* ---- stdin as a mail_source, with sendmail's lone-dot rule --------------- */

struct sm_in {
	int fd;
	bool dots;               /* a lone "." line ends the message */
	bool eof;                /* end of the message reached */
	bool bol;                /* next byte starts a line */
	char hold[2];            /* "." or ".\r" held at a line start */
	size_t nhold;
	char *buf;               /* raw read buffer */
	size_t len, off;
	char *pre;               /* look-ahead (and injected From) served first */
	size_t pre_len, pre_off;
};

/* Fills out[cap] (cap >= 3) with message bytes; *got == 0 at the end. */
static enum dm_status sm_filter(struct sm_in *in, char *out, size_t cap,
                                size_t *got, struct dm_err *err)
{
	size_t n = 0;

	while (n < cap && !in->eof) {
		if (in->off == in->len) {
			if (n > 0 && in->nhold == 0)
				break;       /* hand over what we have before blocking */
			ssize_t r = read(in->fd, in->buf, SM_CHUNK);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return dm_err_set(err, DM_EIO, "reading the message from "
				                  "standard input: %s", strerror(errno));
			if (r == 0) {
				/* A held "." at the very end is a lone-dot line too. */
				in->nhold = 0;
				in->eof = true;
				break;
			}
			in->len = (size_t)r;
			in->off = 0;
		}
		char c = in->buf[in->off++];
		if (!in->dots) {
			out[n++] = c;
			continue;
		}
		if (in->nhold == 0) {
			if (in->bol && c == '.') {
				in->hold[in->nhold++] = c;
				in->bol = false;
				continue;
			}
			out[n++] = c;
			in->bol = c == '\n';
			continue;
		}
		if (c == '\n') {         /* ".\n" or ".\r\n": the end */
			in->nhold = 0;
			in->eof = true;
			break;
		}
		if (c == '\r' && in->nhold == 1) {
			in->hold[in->nhold++] = c;
			continue;
		}
		/* Not a lone dot: give the held bytes back, then c. */
		if (cap - n < in->nhold + 1) {
			in->off--;           /* look at c again next time */
			break;
		}
		for (size_t i = 0; i < in->nhold; i++)
			out[n++] = in->hold[i];
		in->nhold = 0;
		out[n++] = c;
		in->bol = c == '\n';
	}
	*got = n;
	return DM_OK;
}

static enum dm_status sm_read(void *ctx, char *buf, size_t cap, size_t *got,
                              struct dm_err *err)
{
	struct sm_in *in = ctx;

	if (in->pre_off < in->pre_len) {
		size_t k = in->pre_len - in->pre_off;
		if (k > cap)
			k = cap;
		memcpy(buf, in->pre + in->pre_off, k);
		in->pre_off += k;
		*got = k;
		return DM_OK;
	}
	if (cap < 3) {
		*got = 0;
		return dm_err_set(err, DM_EINVAL, "read buffer too small");
	}
	return sm_filter(in, buf, cap, got, err);
}

/* Reads ahead until the header block is complete (a blank line), the input
 * ends or SM_PRE_MAX bytes are held, so that we can tell whether the
 * message has a From field. */
static enum dm_status sm_read_ahead(struct sm_in *in, struct dm_err *err)
{
	size_t cap = SM_PRE_MAX + 8;

	if (!(in->pre = malloc(cap)))
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	while (!in->eof && in->pre_len < SM_PRE_MAX) {
		size_t got = 0;
		size_t room = SM_PRE_MAX - in->pre_len;
		enum dm_status st = sm_filter(in, in->pre + in->pre_len,
		                              room < SM_CHUNK ? room + 3 : SM_CHUNK,
		                              &got, err);
		if (st)
			return st;
		in->pre_len += got;
		in->pre[in->pre_len] = '\0';
		/* blank line: "\n\n" or "\n\r\n", or the message starts with one */
		if (memmem(in->pre, in->pre_len, "\n\n", 2) ||
		    memmem(in->pre, in->pre_len, "\n\r\n", 3) ||
		    in->pre[0] == '\n' || (in->pre_len >= 2 && in->pre[0] == '\r' &&
		                           in->pre[1] == '\n'))
			break;
	}
	return DM_OK;
}

/* Whether the header block held in `pre` has a From field. */
static bool sm_has_from(const char *p, size_t len)
{
	const char *end = p + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (l > 0 && p[l - 1] == '\r')
			l--;
		if (l == 0)
			return false;        /* end of the header */
		if (l >= 5 && strncasecmp(p, "From:", 5) == 0)
			return true;
		if (!nl)
			break;
		p = nl + 1;
	}
	return false;
}

/* Puts "From: NAME <addr>\r\n" in front of the look-ahead. */
static enum dm_status sm_add_from(struct sm_in *in, const char *name,
                                  const char *addr, struct dm_err *err)
{
	struct address a;
	char hf[ADDRESS_HEADER_MAX];
	enum dm_status st;

	if ((st = address_parse(addr, &a, err)))
		return st;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return dm_err_set(err, DM_EINVAL, "-F: the full name contains "
			                  "a control character (CR, LF, ...)");
	if (strlen(name) > ADDRESS_NAME_MAX)
		return dm_err_set(err, DM_EINVAL, "-F: the full name is longer "
		                  "than %d bytes", ADDRESS_NAME_MAX);
	snprintf(a.name, sizeof(a.name), "%s", name);
	if ((st = address_format(&a, hf, sizeof(hf), err)))
		return st;
	size_t hl = strlen(hf) + 8;
	char *np = malloc(in->pre_len + hl + 1);
	if (!np)
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	int k = snprintf(np, hl + 1, "From: %s\r\n", hf);
	memcpy(np + k, in->pre, in->pre_len);
	free(in->pre);
	in->pre = np;
	in->pre_len += (size_t)k;
	return DM_OK;
}

/* ---- command line --------------------------------------------------------- */

static int sm_usage(FILE *f, int code)
{
	fprintf(f,
	    "usage: " SM_NAME " [--root DIR] [-t] [-i] [-f FROM] [-F NAME] [-v] "
	    "[-odq] [--] [RCPT...] < message\n"
	    "       " SM_NAME " [--root DIR] -q\n"
	    "  -t         also take recipients from To, Cc, Bcc (Bcc is removed)\n"
	    "  -i, -oi    a line with a lone '.' does not end the message\n"
	    "  -f FROM    envelope sender (also -r FROM)\n"
	    "  -F NAME    full name for the From field added when there is none\n"
	    "  -v         show the SMTP dialogue and the result\n"
	    "  -odq       only queue the message (devmaild, OUTBOX -a or -q sends it)\n"
	    "  -q         deliver every queued message now (retry schedule ignored)\n"
	    "  --root DIR data root (else $DEVMAIL_ROOT, else the default)\n"
	    "  ignored for compatibility: -oX, -odi, -odb, -bm, -em, -U, -m, -n,\n"
	    "  -B TYPE, -N DSN, -R RET, -V ENVID, -L TAG, -h N, -O OPT=VAL\n"
	    "When a devmaild serves the data root, the message is queued for it\n"
	    "and the exit status is 0 at once.\n"
	    "exit: 0 sent (or queued for devmaild), 75 queued for retry, 69 refused,\n"
	    "      77 authentication failed, 78 configuration missing, 65 bad input,\n"
	    "      64 usage\n");
	return code;
}

/* "devmail-sendmail: ARG: WHY", then the usage; returns 64. */
static int sm_fail_usage(const char *arg, const char *why)
{
	fprintf(stderr, SM_NAME ": %s: %s\n", arg, why);
	return sm_usage(stderr, EX_USAGE);
}

/* The value of an option: attached ("-ffoo") or the next word. */
static const char *sm_value(int argc, char **argv, int *i, size_t at)
{
	if (argv[*i][at])
		return argv[*i] + at;
	if (*i + 1 >= argc)
		return NULL;
	return argv[++*i];
}

static int sm_parse(int argc, char **argv, struct sm_args *a)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *s = argv[i];
		const char *v;

		if (strcmp(s, "--") == 0) {
			i++;
			break;
		}
		if (s[0] != '-' || s[1] == '\0')
			break;
		if (strcmp(s, "--root") == 0) {
			if (i + 1 >= argc)
				return sm_fail_usage(s, "needs a directory");
			a->root = argv[++i];
			continue;
		}
		if (strncmp(s, "--root=", 7) == 0) {
			a->root = s + 7;
			continue;
		}
		if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0)
			return -1;
		if (s[1] == '-')
			return sm_fail_usage(s, "unknown option");
		switch (s[1]) {
		case 't': case 'i': case 'v': case 'U': case 'm': case 'n':
		case 'q':
			/* flags, possibly grouped (-ti) */
			for (const char *p = s + 1; *p; p++) {
				if (*p == 't')
					a->from_headers = true;
				else if (*p == 'i')
					a->ignore_dots = true;
				else if (*p == 'v')
					a->verbose = true;
				else if (*p == 'q')
					a->run_queue = true;
				else if (*p != 'U' && *p != 'm' && *p != 'n')
					return sm_fail_usage(s, "unknown option");
			}
			break;
		case 'f': case 'r':
			if (!(v = sm_value(argc, argv, &i, 2)))
				return sm_fail_usage(s, "needs an address");
			if (a->from)
				return sm_fail_usage(s, "the sender is given twice");
			a->from = v;
			break;
		case 'F':
			if (!(v = sm_value(argc, argv, &i, 2)))
				return sm_fail_usage(s, "needs a name");
			a->fullname = v;
			break;
		case 'o':
			/* -oi: ignore dots; -odq: queue only; -odi/-odb and other
			 * sendmail options (-oem, -oee, -om, ...) mean nothing here. */
			if (strcmp(s, "-oi") == 0)
				a->ignore_dots = true;
			else if (strcmp(s, "-odq") == 0)
				a->queue_only = true;
			else if (s[2] == '\0')
				return sm_fail_usage(s, "needs a letter (e.g. -oi)");
			break;
		case 'b':
			if (strcmp(s, "-bm") != 0)
				return sm_fail_usage(s, "only -bm (read a message from "
				                     "standard input) is supported");
			break;
		case 'e':
			break;      /* -em, -ep, -eq: error reporting mode */
		case 'B': case 'N': case 'R': case 'V': case 'L': case 'h':
		case 'O': case 'X':
			if (!sm_value(argc, argv, &i, 2))
				return sm_fail_usage(s, "needs a value");
			break;
		default:
			return sm_fail_usage(s, "unknown option");
		}
	}
	for (; i < argc; i++) {
		if (a->nrcpt >= SM_RCPT_MAX) {
			fprintf(stderr, SM_NAME ": more than %d recipient arguments\n",
			        SM_RCPT_MAX);
			return EX_USAGE;
		}
		a->rcpt[a->nrcpt++] = argv[i];
	}
	if (a->run_queue && (a->nrcpt || a->from_headers || a->queue_only))
		return sm_fail_usage("-q", "delivers the queue and takes no "
		                     "message, recipient, -t or -odq");
	return 0;
}

/* ---- delivery ----------------------------------------------------------------- */

struct sm_run {
	bool verbose;
	size_t reports;
	int exit_code;
};

static void sm_transcript(void *ctx, enum smtp_dir dir, const char *line)
{
	(void)ctx;
	printf("%s %s\n", dir == SMTP_DIR_CLIENT ? ">>>" :
	       dir == SMTP_DIR_SERVER ? "<<<" : "---", line);
	fflush(stdout);
}

static void sm_report(void *ctx, const struct submit_report *r)
{
	struct sm_run *run = ctx;
	run->reports++;
	if (r->outcome == SUBMIT_SENT) {
		if (run->verbose)
			printf("%s\n", r->line);
	} else {
		fprintf(stderr, SM_NAME ": %s\n", r->line);
	}
	fflush(stdout);
	if (r->exit_code && !run->exit_code)
		run->exit_code = r->exit_code;
}

static int sm_err(enum dm_status st, const struct dm_err *e, const char *what)
{
	fprintf(stderr, SM_NAME ": %s%s\n", what,
	        e->msg[0] ? e->msg : dm_status_str(st));
	return submit_status_exit(st);
}

static int sm_run_queue(const char *root, struct registry *reg, bool verbose)
{
	struct sm_run run = { .verbose = verbose };
	/* As sendmail -q: every queued message is tried now, whatever its
	 * retry schedule says. */
	struct submit_hooks h = {
		.report = sm_report, .report_ctx = &run,
		.transcript = verbose ? sm_transcript : NULL, .all = true,
	};
	struct dm_err e;
	enum dm_status st;

	dm_err_clear(&e);
	st = submit_deliver_due(root, reg, &h, NULL, &e);
	if (st && run.reports == 0)
		return sm_err(st, &e, "");
	return run.exit_code;
}

static int sm_submit(const char *root, struct registry *reg,
                     const struct sm_args *a)
{
	struct sm_in in = { .fd = STDIN_FILENO, .dots = !a->ignore_dots,
	                    .bol = true };
	struct submit_raw raw;
	char id[OUTBOX_ID_MAX];
	struct dm_err e;
	enum dm_status st;
	int rc;

	dm_err_clear(&e);
	if (!(in.buf = malloc(SM_CHUNK))) {
		st = dm_err_set(&e, DM_ENOMEM, "out of memory");
		goto fail;
	}
	if ((st = sm_read_ahead(&in, &e)))
		goto fail;
	if (a->fullname && !sm_has_from(in.pre, in.pre_len)) {
		char regfrom[REG_VALUE_MAX] = "";
		const char *addr = a->from;
		if (!addr || !addr[0]) {
			bool set = false;
			if ((st = registry_get(reg, "Email/FromAddress", regfrom,
			                       sizeof(regfrom), &set, &e)))
				goto fail;
			if (!set || !regfrom[0]) {
				st = dm_err_set(&e, DM_ECONFIG, "Email/FromAddress is not "
				                "set and no -f FROM was given: no sender "
				                "for the From field (IPCONFIG --from sets it)");
				goto fail;
			}
			addr = regfrom;
		}
		if ((st = sm_add_from(&in, a->fullname, addr, &e)))
			goto fail;
	}

	memset(&raw, 0, sizeof(raw));
	raw.src.read = sm_read;
	raw.src.ctx = &in;
	raw.from = a->from;
	raw.rcpt = a->rcpt;
	raw.nrcpt = a->nrcpt;
	raw.rcpt_from_headers = a->from_headers;
	if ((st = submit_enqueue_raw(root, reg, &raw, SUBMIT_NEED_ACCOUNT, id, &e)))
		goto fail;
	free(in.pre);
	free(in.buf);
	in.pre = in.buf = NULL;
	/* sendmail's contract: once the message is durably queued and a queue
	 * runner serves it, the queue owns it, and the caller (cron, mailx)
	 * is done.  With a devmaild on this root, inotify wakes it at once;
	 * without one, deliver it now, and 75 says it is not sent yet. */
	pid_t daemon = a->queue_only ? 0 : pidfile_daemon_pid(root);
	if (a->queue_only || daemon > 0) {
		if (a->verbose && daemon > 0)
			printf("Queued %s; devmaild (pid %ld) delivers it\n", id,
			       (long)daemon);
		else if (a->verbose)
			printf("Queued %s\n", id);
		return EX_OK;
	}

	struct sm_run run = { .verbose = a->verbose };
	struct submit_hooks h = {
		.report = sm_report, .report_ctx = &run,
		.transcript = a->verbose ? sm_transcript : NULL,
	};
	struct submit_report rep;
	dm_err_clear(&e);
	st = submit_deliver(root, reg, id, &h, &rep, &e);
	if (run.reports == 0) {
		/* Queued but not attempted (e.g. the password cannot be
		 * unsealed, or a daemon is delivering it right now). */
		fprintf(stderr, SM_NAME ": queued %s but not sent now: %s\n", id,
		        e.msg[0] ? e.msg : dm_status_str(st));
		rc = submit_status_exit(st);
		return rc == EX_OK ? EX_TEMPFAIL : rc;
	}
	return run.exit_code;
fail:
	free(in.pre);
	free(in.buf);
	return sm_err(st, &e, "not queued: ");
}

int main(int argc, char **argv)
{
	struct sm_args a;
	char root[DM_PATH_MAX];
	struct registry *reg = NULL;
	struct dm_err e;
	enum dm_status st;
	int rc;

	memset(&a, 0, sizeof(a));
	rc = sm_parse(argc, argv, &a);
	if (rc < 0)
		return sm_usage(stdout, EX_OK);
	if (rc)
		return rc;
	dm_err_clear(&e);
	if ((st = paths_root(a.root, root, sizeof(root), &e)) ||
	    (st = paths_ensure(root, &e)) ||
	    (st = registry_open(root, &reg, &e))) {
		fprintf(stderr, SM_NAME ": %s\n", e.msg[0] ? e.msg : dm_status_str(st));
		registry_close(reg);
		return st == DM_EIO ? EX_IOERR : EX_CONFIG;
	}
	if (a.run_queue)
		rc = sm_run_queue(root, reg, a.verbose);
	else
		rc = sm_submit(root, reg, &a);
	registry_close(reg);
	return rc;
}
