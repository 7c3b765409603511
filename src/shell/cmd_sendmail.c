/* cmd_sendmail.c - SENDMAIL: build a message, queue it, send it now.
 * The work lives in mail/submit.c (shared with devmail-sendmail, OUTBOX,
 * the daemon and the web page); this file parses options, reads the body
 * from the shell's input when asked, and shows the transcript, progress and
 * result. */
#include "shell/shell.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "core/paths.h"
#include "mail/submit.h"

#define SENDMAIL_LIST_MAX 32                   /* -t/-c/-b/-a occurrences */
#define SENDMAIL_STDIN_MAX (64L * 1024 * 1024) /* body read from stdin */
#define SENDMAIL_PROGRESS_MIN (1024L * 1024)   /* show a bar above this */

struct sendmail_args {
	const char *to[SENDMAIL_LIST_MAX];   size_t nto;
	const char *cc[SENDMAIL_LIST_MAX];   size_t ncc;
	const char *bcc[SENDMAIL_LIST_MAX];  size_t nbcc;
	const char *att[SENDMAIL_LIST_MAX];  size_t natt;
	const char *from, *subject, *text, *file;
	bool queue_only, verbose;
};

/* One option: short letter, long name, whether it takes a value.  -f FROM
 * and -F FILE differ only in case and -a/-t/-c/-b repeat, so the shared
 * parser (which ignores case and refuses repeats) cannot be used. */
struct sendmail_opt {
	char letter;
	const char *long_name;
	bool value;
};

static const struct sendmail_opt sendmail_opts[] = {
	{ 't', "to", true }, { 'c', "cc", true }, { 'b', "bcc", true },
	{ 'f', "from", true }, { 's', "subject", true }, { 'm', "message", true },
	{ 'F', "file", true }, { 'a', "attach", true }, { 'q', "queue", false },
	{ 'v', "verbose", false }, { 0, NULL, false },
};

/* Letters ignore case as everywhere on the console, except f/F: -f is
 * FROM and -F is FILE (the spelling the usage line gives). */
static bool sendmail_letter_is(char spec, char typed)
{
	if (spec == 'f' || spec == 'F')
		return spec == typed;
	return (spec | 0x20) == (typed | 0x20);
}

static int sendmail_list_add(struct shell *sh, const char **list, size_t *n,
                             const char *v, const char *shown)
{
	if (*n >= SENDMAIL_LIST_MAX)
		return shell_error(sh, EX_USAGE, "option %s given more than %d times",
		                   shown, SENDMAIL_LIST_MAX);
	list[(*n)++] = v;
	return 0;
}

static int sendmail_single(struct shell *sh, const char **slot, const char *v,
                           const char *shown)
{
	if (*slot)
		return shell_error(sh, EX_USAGE, "option %s given twice", shown);
	*slot = v;
	return 0;
}

static int sendmail_take(struct shell *sh, struct sendmail_args *a, char letter,
                         const char *v, const char *shown)
{
	switch (letter) {
	case 't': return sendmail_list_add(sh, a->to, &a->nto, v, shown);
	case 'c': return sendmail_list_add(sh, a->cc, &a->ncc, v, shown);
	case 'b': return sendmail_list_add(sh, a->bcc, &a->nbcc, v, shown);
	case 'a': return sendmail_list_add(sh, a->att, &a->natt, v, shown);
	case 'f': return sendmail_single(sh, &a->from, v, shown);
	case 's': return sendmail_single(sh, &a->subject, v, shown);
	case 'm': return sendmail_single(sh, &a->text, v, shown);
	case 'F': return sendmail_single(sh, &a->file, v, shown);
	case 'q': a->queue_only = true; return 0;
	case 'v': a->verbose = true; return 0;
	}
	return shell_error(sh, EX_USAGE, "unknown option %s", shown);
}

static int sendmail_parse(struct shell *sh, int argc, char **argv,
                          struct sendmail_args *a)
{
	int rc;
	memset(a, 0, sizeof(*a));
	for (int i = 1; i < argc; i++) {
		const char *w = argv[i];
		const struct sendmail_opt *o = NULL;
		const char *value = NULL;
		if (w[0] != '-' || w[1] == '\0' || strcmp(w, "--") == 0)
			return shell_error(sh, EX_USAGE,
			    "unexpected argument '%s' (recipients go after -t)", w);
		if (w[1] == '-') {
			const char *eq = strchr(w + 2, '=');
			size_t len = eq ? (size_t)(eq - (w + 2)) : strlen(w + 2);
			for (o = sendmail_opts; o->letter; o++)
				if (strlen(o->long_name) == len &&
				    strncmp(o->long_name, w + 2, len) == 0)
					break;
			if (!o->letter)
				return shell_error(sh, EX_USAGE, "unknown option %s", w);
			value = eq ? eq + 1 : NULL;
			if (!o->value && value)
				return shell_error(sh, EX_USAGE, "option --%s takes no value",
				                   o->long_name);
		} else {
			/* Flags group (-qv); a value may be attached (-tX) or next. */
			for (const char *p = w + 1; *p; p++) {
				char shown[3] = { '-', *p, '\0' };
				for (o = sendmail_opts; o->letter && !sendmail_letter_is(o->letter, *p); o++)
					;
				if (!o->letter)
					return shell_error(sh, EX_USAGE, "unknown option %s", shown);
				if (!o->value) {
					if ((rc = sendmail_take(sh, a, *p, NULL, shown)))
						return rc;
					continue;
				}
				if (p[1]) {
					value = p + 1;
				} else if (i + 1 < argc) {
					value = argv[++i];
				} else {
					return shell_error(sh, EX_USAGE, "option %s needs a value",
					                   shown);
				}
				if ((rc = sendmail_take(sh, a, *p, value, shown)))
					return rc;
				break;
			}
			continue;
		}
		char shown[64];
		snprintf(shown, sizeof(shown), "--%s", o->long_name);
		if (o->value && !value) {
			if (i + 1 >= argc)
				return shell_error(sh, EX_USAGE, "option %s needs a value",
				                   shown);
			value = argv[++i];
		}
		if ((rc = sendmail_take(sh, a, o->letter, value, shown)))
			return rc;
	}
	if (a->text && a->file)
		return shell_error(sh, EX_USAGE, "-m and -F cannot be used together");
	return 0;
}

/* Copies the shell's input (standard input in the one-shot form) into an
 * unlinked temporary file (memory does not grow with the body) and returns
 * its fd, or -1 with an exit code in *rc. */
static int sendmail_input_body(struct shell *sh, int *rc)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	char buf[65536];
	long total = 0;

	snprintf(path, sizeof(path), "%s/devmail-body-XXXXXX",
	         dir && *dir ? dir : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0) {
		*rc = shell_error(sh, EX_CANTCREAT, "%s: %s", path, strerror(errno));
		return -1;
	}
	unlink(path);
	for (;;) {
		ssize_t n = shell_read_data(sh, buf, sizeof(buf));
		if (n < 0) {
			*rc = shell_error(sh, EX_IOERR, "reading the body from stdin: %s",
			                  strerror(errno));
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		total += n;
		if (total > SENDMAIL_STDIN_MAX) {
			*rc = shell_error(sh, EX_DATAERR,
			    "the body on stdin is larger than %ld bytes (attach it with "
			    "-a instead)", SENDMAIL_STDIN_MAX);
			close(fd);
			return -1;
		}
		int e = paths_write_all(fd, buf, (size_t)n);
		if (e != 0) {
			*rc = shell_error(sh, EX_IOERR, "%s: %s", path, strerror(e));
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* ---- live output --------------------------------------------------------- */

struct sendmail_view {
	struct shell *sh;
	bool bar;            /* the error stream is a terminal */
	bool bar_shown;
	int last_pct;
};

static void sendmail_transcript(void *ctx, enum smtp_dir dir, const char *line)
{
	struct sendmail_view *v = ctx;
	const char *tag = dir == SMTP_DIR_CLIENT ? "C: "
	                : dir == SMTP_DIR_SERVER ? "S: " : "* ";
	if (v->bar_shown) {
		shell_err(v->sh, "\n");
		v->bar_shown = false;
	}
	shell_err(v->sh, "%s%s\n", tag, line);
	shell_flush(v->sh);
}

static void sendmail_progress(void *ctx, const char *id, uint64_t sent,
                              uint64_t total)
{
	struct sendmail_view *v = ctx;
	(void)id;
	if (!v->bar || total < (uint64_t)SENDMAIL_PROGRESS_MIN)
		return;
	int pct = sent >= total ? 100 : (int)(sent * 100 / total);
	if (pct == v->last_pct && sent < total)
		return;
	v->last_pct = pct;
	char bar[31];
	int fill = pct * 30 / 100;
	for (int i = 0; i < 30; i++)
		bar[i] = i < fill ? '#' : ' ';
	bar[30] = '\0';
	shell_err(v->sh, "\r[%s] %3d%% %.1f/%.1f MiB", bar, pct,
	          (double)sent / 1048576.0, (double)total / 1048576.0);
	v->bar_shown = true;
	if (sent >= total) {
		shell_err(v->sh, "\n");
		v->bar_shown = false;
	}
	shell_flush(v->sh);
}

/* ---- the command ------------------------------------------------------- */

static int sendmail_run(struct shell *sh, int argc, char **argv)
{
	struct sendmail_args a;
	struct message_attachment att[SENDMAIL_LIST_MAX];
	struct registry *reg;
	struct dm_err e;
	char id[OUTBOX_ID_MAX];
	char body_path[64];
	int body_fd = -1, rc;
	enum dm_status st;

	if ((rc = sendmail_parse(sh, argc, argv, &a)))
		return rc;
	dm_err_clear(&e);
	if ((st = shell_registry(sh, &reg, &e)))
		return shell_fail(sh, st, &e);

	for (size_t i = 0; i < a.natt; i++)
		att[i] = (struct message_attachment){ .path = a.att[i] };
	struct message_spec spec = {
		.from = a.from,
		.to = a.to, .nto = a.nto,
		.cc = a.cc, .ncc = a.ncc,
		.bcc = a.bcc, .nbcc = a.nbcc,
		.subject = a.subject,
		.attachments = a.natt ? att : NULL, .nattachments = a.natt,
	};
	if (a.text) {
		spec.body = a.text;
		spec.body_len = strlen(a.text);
	} else if (a.file) {
		spec.body_path = a.file;
	} else if (!shell_input_free(sh)) {
		return shell_error(sh, EX_USAGE, "give the body with -m TEXT or -F FILE: "
		                   "in the console, standard input carries the commands");
	} else if (!shell_interactive(sh)) {
		/* A pipe or a file: the body.  A person at a terminal is not
		 * asked to type one (the message goes out with an empty body). */
		if ((body_fd = sendmail_input_body(sh, &rc)) < 0)
			return rc;
		snprintf(body_path, sizeof(body_path), "/proc/self/fd/%d", body_fd);
		spec.body_path = body_path;
	}

	dm_err_clear(&e);
	st = submit_enqueue_message(shell_root(sh), reg, &spec, SUBMIT_NEED_ACCOUNT,
	                            id, &e);
	if (body_fd >= 0)
		close(body_fd);
	if (st)
		return shell_error(sh, submit_status_exit(st), "%s",
		                   e.msg[0] ? e.msg : dm_status_str(st));
	if (a.queue_only) {
		shell_out(sh, "Queued %s\n", id);
		return EX_OK;
	}

	struct sendmail_view view = {
		.sh = sh,
		.bar = shell_width(sh, SHELL_ERR) > 0,
		.last_pct = -1,
	};
	struct submit_hooks hooks = {
		.transcript = a.verbose ? sendmail_transcript : NULL,
		.transcript_ctx = &view,
		.progress = sendmail_progress,
		.progress_ctx = &view,
	};
	struct submit_report rep;
	dm_err_clear(&e);
	st = submit_deliver(shell_root(sh), reg, id, &hooks, &rep, &e);
	if (rep.id[0] == '\0') {
		/* No attempt was made (configuration, lock): the message waits in
		 * the outbox for OUTBOX -r / -a or devmail-sendmail -q. */
		return shell_error(sh, submit_status_exit(st),
		    "Queued %s; not sent now: %s", id,
		    e.msg[0] ? e.msg : dm_status_str(st));
	}
	if (rep.outcome == SUBMIT_SENT) {
		shell_out(sh, "%s\n", rep.line);
		return EX_OK;
	}
	return shell_error(sh, rep.exit_code, "%s", rep.line);
}

const struct shell_command shell_cmd_sendmail = {
	.name = "SENDMAIL",
	.usage = "SENDMAIL [-t TO[,TO...]] [-c CC] [-b BCC] [-f FROM] "
	         "[-s SUBJECT] [-m TEXT | -F FILE] [-a FILE]... [-q] [-v]",
	.options =
		"-t TO       recipients (comma-separated; repeatable); default Email/ToAddress\n"
		"-c CC       carbon-copy recipients (repeatable)\n"
		"-b BCC      blind-copy recipients: delivered, never shown in the header\n"
		"-f FROM     sender; default Email/FromAddress\n"
		"-s SUBJECT  subject line (UTF-8)\n"
		"-m TEXT     message text\n"
		"-F FILE     message text from FILE (capital F; small -f is FROM;\n"
		"            without -m or -F: stdin when it is not a terminal, up to 64 MiB)\n"
		"-a FILE     attach FILE (repeatable)\n"
		"-q          only queue the message; devmaild sends it (OUTBOX -r ID or\n"
		"            OUTBOX -a at once)\n"
		"-v          show the SMTP conversation (passwords redacted) on the\n"
		"            error stream, C: lines sent, S: lines received",
	.summary = "send an email with the configured account",
	.description =
		"SENDMAIL builds a message, puts it in the outbox (on disk before "
		"anything is sent) and sends it at once over the account set with "
		"IPCONFIG, waiting for the result. The result line names the server, "
		"the TLS mode, version and cipher, whether the certificate was "
		"verified, the AUTH mechanism and the server's final reply, e.g. "
		"Sent to ops@example.com via smtp.example.com:587 (STARTTLS, TLS1.3, "
		"AES-256-GCM, certificate verified, AUTH PLAIN): 250 2.0.0 Ok. "
		"A plaintext server shows (no TLS, AUTH none)."
		"\n\n"
		"When the server cannot be reached or answers 4xx, the message stays "
		"queued: Queued ID for retry: REASON; next try in Ns. The mail "
		"service devmaild retries it by itself at that time (Outbox/RetryMin "
		"doubling to Outbox/RetryMax), and OUTBOX lists it with its next "
		"try; OUTBOX -r ID sends it now, OUTBOX -a every queued message "
		"(where devmaild does not run, devmail-sendmail -q from cron drains "
		"the queue). A message still queued after Outbox/MaxAge moves to "
		"the failed outbox at its next attempt. "
		"A refused authentication also "
		"keeps the message queued, so that it goes out once the password is "
		"corrected with IPCONFIG. A permanent refusal (5xx) moves it to the "
		"failed outbox (OUTBOX -f ID shows why, OUTBOX -R ID re-queues it). "
		"With -q SENDMAIL prints Queued ID and exits 0 without sending "
		"(devmaild, when it runs, sends it at once). Bad input (an address, CR or LF in the subject, a "
		"missing attachment) changes nothing: no message is queued. Large "
		"messages show a progress bar when the error stream is a terminal."
		"\n\n"
		"Exit status: 0 sent (or queued with -q); 75 queued for retry; 69 "
		"refused permanently; 77 authentication failed (message kept "
		"queued); 78 configuration missing (the message names the key, e.g. "
		"Email/MailHost); 65 bad input; 66 missing attachment or body file; "
		"64 bad usage. Option letters ignore case except -f (FROM) and -F "
		"(FILE).",
	.run = sendmail_run,
};
