/* cmd_outbox.c - OUTBOX: list the mail queue and the failed messages, show
 * one failed message with its dialogue, retry one or all of them now, put a
 * failed one back in the queue, delete one.  Ids may be given by a unique
 * prefix (outbox_resolve).  The work is done by the outbox (mail/outbox.h)
 * and the submission glue (mail/submit.h); this file only parses options
 * and prints. */
#include "shell/shell.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "mail/outbox.h"
#include "mail/submit.h"

enum {
	OUTBOX_OPT_RETRY,
	OUTBOX_OPT_REQUEUE,
	OUTBOX_OPT_ALL,
	OUTBOX_OPT_DELETE,
	OUTBOX_OPT_FAILED,
	OUTBOX_OPT_VERBOSE,
};

static const struct shell_opt outbox_opts[] = {
	[OUTBOX_OPT_RETRY]   = { 'r', "retry", "ID" },
	[OUTBOX_OPT_REQUEUE] = { 'R', "requeue", "ID" },   /* -R is not -r */
	[OUTBOX_OPT_ALL]     = { 'a', "all", NULL },
	[OUTBOX_OPT_DELETE]  = { 'd', "delete", "ID" },
	[OUTBOX_OPT_FAILED]  = { 'f', "failed", NULL },
	[OUTBOX_OPT_VERBOSE] = { 'v', "verbose", NULL },
	{ 0, NULL, NULL },
};

/* "45s", "3m12s", "2h05m", "3d04h": short and exact enough for a table. */
static void outbox_cmd_duration(long s, char *out, size_t cap)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(out, cap, "%lds", s);
	else if (s < 3600)
		snprintf(out, cap, "%ldm%02lds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(out, cap, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
	else
		snprintf(out, cap, "%ldd%02ldh", s / 86400, (s % 86400) / 3600);
}

/* The first recipient, and how many more there are. */
static void outbox_cmd_rcpt(const struct outbox_item *it, char *out, size_t cap)
{
	if (it->nrcpt == 0)
		snprintf(out, cap, "-");
	else if (it->nrcpt == 1)
		snprintf(out, cap, "%s", it->rcpt[0]);
	else
		snprintf(out, cap, "%s +%zu", it->rcpt[0], it->nrcpt - 1);
}

struct outbox_cmd_list {
	struct shell *sh;
	time_t now;
	bool failed;
	size_t count;
};

static int outbox_cmd_list_row(void *ctx, const struct outbox_item *it)
{
	struct outbox_cmd_list *l = ctx;
	char age[32], next[40], rcpt[OUTBOX_ADDR_MAX + 16];

	if (l->count++ == 0) {
		if (l->failed)
			shell_out(l->sh, "%-40s %-8s %-6s %s\n", "ID", "AGE", "TRIES",
			        "TO");
		else
			shell_out(l->sh, "%-40s %-8s %-6s %-10s %s\n", "ID", "AGE",
			        "TRIES", "NEXT TRY", "TO");
	}
	if (it->damaged) {
		shell_out(l->sh, "%-40s damaged\n    reason: %s\n", it->id,
		        it->last_error);
		return 0;
	}
	outbox_cmd_duration(it->age, age, sizeof(age));
	outbox_cmd_rcpt(it, rcpt, sizeof(rcpt));
	if (l->failed) {
		shell_out(l->sh, "%-40s %-8s %-6u %s\n", it->id, age, it->attempts,
		        rcpt);
		shell_out(l->sh, "    reason: %s\n",
		        it->last_error[0] ? it->last_error : "(none recorded)");
		return 0;
	}
	if (it->next_try <= l->now) {
		snprintf(next, sizeof(next), "now");
	} else {
		char d[32];
		outbox_cmd_duration((long)(it->next_try - l->now), d, sizeof(d));
		snprintf(next, sizeof(next), "in %s", d);
	}
	shell_out(l->sh, "%-40s %-8s %-6u %-10s %s\n", it->id, age, it->attempts,
	        next, rcpt);
	if (it->last_error[0])
		shell_out(l->sh, "    last error: %s\n", it->last_error);
	return 0;
}

static int outbox_cmd_count_cb(void *ctx, const struct outbox_item *it)
{
	(void)it;
	(*(size_t *)ctx)++;
	return 0;
}

static int outbox_cmd_unknown(struct shell *sh, const char *id)
{
	return shell_error(sh, EX_DATAERR,
	    "%s: no such message in the outbox (OUTBOX lists the queue, "
	    "OUTBOX -f the failed messages)", id);
}

/* The library's message without its "outbox: " prefix (the command's name
 * is printed before it). */
static const char *outbox_cmd_msg(const struct dm_err *e, enum dm_status st)
{
	const char *m = e->msg[0] ? e->msg : dm_status_str(st);
	return strncmp(m, "outbox: ", 8) == 0 ? m + 8 : m;
}

/* Turns `arg` (a whole id or a unique prefix of one) into the id of a
 * message in `where` (OUTBOX_IN_* bits); *found says where it is.
 * Returns 0, or an exit code after printing why (nothing is changed): 65
 * for no match, a match only on the other side (a failed message given to
 * -r, a queued one to -R or -f ID) and an ambiguous prefix (the library
 * names the candidates). */
static int outbox_cmd_resolve(struct shell *sh, struct outbox *ob,
                              unsigned where, const char *arg,
                              char id[OUTBOX_ID_MAX], enum outbox_which *found)
{
	unsigned other = (OUTBOX_IN_QUEUE | OUTBOX_IN_FAILED) & ~where;
	char oid[OUTBOX_ID_MAX];
	struct dm_err e;
	enum dm_status st;

	dm_err_clear(&e);
	st = outbox_resolve(ob, where, arg, id, found, &e);
	if (st == DM_OK)
		return 0;
	if (st != DM_ENOTFOUND)
		return shell_error(sh, dm_status_exit(st), "%s",
		                   outbox_cmd_msg(&e, st));
	if (other && outbox_resolve(ob, other, arg, oid, NULL, NULL) == DM_OK) {
		if (where == OUTBOX_IN_QUEUE)
			return shell_error(sh, EX_DATAERR,
			    "%s failed permanently and is not retried (OUTBOX -f %s "
			    "shows why; OUTBOX -R %s puts it back in the queue once "
			    "the cause is fixed)", oid, oid, oid);
		return shell_error(sh, EX_DATAERR,
		    "%s is queued, not failed (OUTBOX lists the queue; OUTBOX -r %s "
		    "delivers it now)", oid, oid);
	}
	return outbox_cmd_unknown(sh, arg);
}

static int outbox_cmd_show(struct shell *sh, struct outbox *ob, bool failed)
{
	struct outbox_cmd_list l = {
		.sh = sh, .now = time(NULL), .failed = failed,
	};
	size_t other = 0;
	struct dm_err e;
	enum dm_status st;

	dm_err_clear(&e);
	st = outbox_list(ob, failed ? OUTBOX_FAILED : OUTBOX_QUEUE,
	                 outbox_cmd_list_row, &l, &e);
	if (st)
		return shell_fail(sh, st, &e);
	/* The other list's size, for the summary line (best effort). */
	outbox_list(ob, failed ? OUTBOX_QUEUE : OUTBOX_FAILED,
	            outbox_cmd_count_cb, &other, NULL);
	if (failed) {
		if (l.count == 0)
			shell_out(sh, "no failed messages");
		else
			shell_out(sh, "%zu failed message%s (OUTBOX -f ID shows one, "
			        "-R ID re-queues it, -d ID deletes it)",
			        l.count, l.count == 1 ? "" : "s");
		shell_out(sh, "; %zu queued\n", other);
	} else {
		if (l.count == 0)
			shell_out(sh, "the outbox is empty");
		else
			shell_out(sh, "%zu message%s queued (OUTBOX -r ID or -a "
			        "delivers now)", l.count, l.count == 1 ? "" : "s");
		if (other)
			shell_out(sh, "; %zu failed (OUTBOX -f)", other);
		shell_out(sh, "\n");
	}
	return EX_OK;
}

static int outbox_cmd_delete(struct shell *sh, struct outbox *ob,
                             const char *arg)
{
	char id[OUTBOX_ID_MAX];
	enum outbox_which where;
	struct dm_err e;
	enum dm_status st;
	int rc;

	if ((rc = outbox_cmd_resolve(sh, ob, OUTBOX_IN_QUEUE | OUTBOX_IN_FAILED,
	                             arg, id, &where)))
		return rc;
	dm_err_clear(&e);
	if ((st = outbox_delete(ob, id, &e))) {
		if (st == DM_ENOTFOUND)
			return outbox_cmd_unknown(sh, id);
		if (st == DM_EBUSY)
			return shell_error(sh, EX_TEMPFAIL,
			    "%s is being delivered right now; try again when it is done",
			    id);
		return shell_fail(sh, st, &e);
	}
	shell_out(sh, "deleted %s from the %s\n", id,
	        where == OUTBOX_QUEUE ? "queue" : "failed messages");
	return EX_OK;
}

/* ---- one failed message (-f ID, -R ID) ----------------------------------- */

struct outbox_cmd_one {
	struct shell *sh;
	bool shown;
	size_t lines;
	char rcpt[OUTBOX_ADDR_MAX + 16];   /* -R: the first recipient, "+n" */
};

static int outbox_cmd_detail(void *ctx, const struct outbox_item *it)
{
	struct outbox_cmd_one *o = ctx;
	char age[32], when[40];
	struct tm tm;

	o->shown = true;
	shell_out(o->sh, "id:        %s\n", it->id);
	if (it->damaged) {
		shell_out(o->sh, "damaged:   %s\n", it->last_error);
		return 0;
	}
	shell_out(o->sh, "from:      %s\n", it->from[0] ? it->from : "<>");
	shell_out(o->sh, "to:        ");
	for (size_t i = 0; i < it->nrcpt; i++)
		shell_out(o->sh, "%s%s", i ? ", " : "", it->rcpt[i]);
	shell_out(o->sh, "\n");
	outbox_cmd_duration(it->age, age, sizeof(age));
	if (localtime_r(&it->created, &tm) &&
	    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %z", &tm))
		shell_out(o->sh, "age:       %s (handed over %s)\n", age, when);
	else
		shell_out(o->sh, "age:       %s\n", age);
	shell_out(o->sh, "size:      %llu bytes\n", (unsigned long long)it->size);
	shell_out(o->sh, "attempts:  %u\n", it->attempts);
	shell_out(o->sh, "reason:    %s\n",
	        it->last_error[0] ? it->last_error : "(none recorded)");
	return 0;
}

static void outbox_cmd_dialogue_line(void *ctx, const char *line)
{
	struct outbox_cmd_one *o = ctx;
	if (o->lines++ == 0)
		shell_out(o->sh, "dialogue (last lines of the SMTP session, AUTH "
		        "redacted):\n");
	shell_out(o->sh, "    %s\n", line);
}

static int outbox_cmd_show_one(struct shell *sh, struct outbox *ob,
                               const char *arg)
{
	struct outbox_cmd_one o = { .sh = sh };
	char id[OUTBOX_ID_MAX];
	struct dm_err e;
	enum dm_status st;
	int rc;

	if ((rc = outbox_cmd_resolve(sh, ob, OUTBOX_IN_FAILED, arg, id, NULL)))
		return rc;
	dm_err_clear(&e);
	st = outbox_get(ob, OUTBOX_FAILED, id, outbox_cmd_detail, &o, &e);
	if (st == DM_ENOTFOUND)
		return outbox_cmd_unknown(sh, arg);   /* deleted meanwhile */
	if (st)
		return shell_fail(sh, st, &e);
	dm_err_clear(&e);
	st = outbox_dialogue_read(ob, OUTBOX_FAILED, id, outbox_cmd_dialogue_line,
	                          &o, &e);
	if (st == DM_OK && o.lines == 0)
		shell_out(sh, "dialogue:  no dialogue kept\n");
	else if (st != DM_OK && st != DM_ENOTFOUND)
		shell_out(sh, "dialogue:  cannot be read (%s)\n",
		        outbox_cmd_msg(&e, st));
	shell_out(sh, "OUTBOX -R %s puts it back in the queue; OUTBOX -d %s "
	        "deletes it\n", id, id);
	return EX_OK;
}

static int outbox_cmd_rcpt_cb(void *ctx, const struct outbox_item *it)
{
	struct outbox_cmd_one *o = ctx;
	if (!it->damaged)
		outbox_cmd_rcpt(it, o->rcpt, sizeof(o->rcpt));
	return 0;
}

static int outbox_cmd_requeue(struct shell *sh, struct outbox *ob,
                              const char *arg)
{
	struct outbox_cmd_one o = { .sh = sh };
	char id[OUTBOX_ID_MAX];
	struct dm_err e;
	enum dm_status st;
	int rc;

	if ((rc = outbox_cmd_resolve(sh, ob, OUTBOX_IN_FAILED, arg, id, NULL)))
		return rc;
	/* For the message only (best effort): who it goes to. */
	outbox_get(ob, OUTBOX_FAILED, id, outbox_cmd_rcpt_cb, &o, NULL);
	dm_err_clear(&e);
	if ((st = outbox_requeue(ob, id, &e))) {
		if (st == DM_ENOTFOUND)
			return outbox_cmd_unknown(sh, arg);
		if (st == DM_EBUSY)
			return shell_error(sh, EX_TEMPFAIL,
			    "%s is being changed by another process right now; try "
			    "again when it is done", id);
		return shell_error(sh, dm_status_exit(st), "%s",
		                   outbox_cmd_msg(&e, st));
	}
	shell_out(sh, "Re-queued %s%s%s with fresh attempts (0), due now: "
	        "devmaild delivers it, OUTBOX -r %s sends it at once\n", id,
	        o.rcpt[0] ? " to " : "", o.rcpt, id);
	return EX_OK;
}

/* ---- delivery (-r, -a) ----------------------------------------------------- */

struct outbox_cmd_run {
	struct shell *sh;
	size_t reports;
	int exit_code;     /* of the first message not delivered, else 0 */
};

static void outbox_cmd_transcript(void *ctx, enum smtp_dir dir,
                                  const char *line)
{
	struct outbox_cmd_run *r = ctx;
	shell_out(r->sh, "%s %s\n",
	        dir == SMTP_DIR_CLIENT ? ">>" : dir == SMTP_DIR_SERVER ? "<<" : "--",
	        line);
	shell_flush(r->sh);
}

static void outbox_cmd_report(void *ctx, const struct submit_report *rep)
{
	struct outbox_cmd_run *r = ctx;
	r->reports++;
	if (rep->outcome == SUBMIT_SENT)
		shell_out(r->sh, "%s: %s\n", rep->id, rep->line);
	else
		shell_out(r->sh, "%s\n", rep->line);
	shell_flush(r->sh);
	if (rep->exit_code && !r->exit_code)
		r->exit_code = rep->exit_code;
}

static int outbox_cmd_fail_submit(struct shell *sh, enum dm_status st,
                                  const struct dm_err *e)
{
	return shell_error(sh, submit_status_exit(st), "%s",
	                   e->msg[0] ? e->msg : dm_status_str(st));
}

static int outbox_cmd_retry(struct shell *sh, struct registry *reg,
                            struct outbox *ob, const char *arg, bool verbose)
{
	struct outbox_cmd_run run = { .sh = sh };
	struct submit_hooks h = {
		.report = outbox_cmd_report, .report_ctx = &run,
		.transcript = verbose ? outbox_cmd_transcript : NULL,
		.transcript_ctx = &run,
	};
	struct submit_report rep;
	char id[OUTBOX_ID_MAX];
	struct dm_err e;
	enum dm_status st;
	int rc;

	if ((rc = outbox_cmd_resolve(sh, ob, OUTBOX_IN_QUEUE, arg, id, NULL)))
		return rc;
	dm_err_clear(&e);
	st = submit_deliver(shell_root(sh), reg, id, &h, &rep, &e);
	if (run.reports == 0) {
		/* Nothing was attempted: the spool is unchanged. */
		if (st == DM_ENOTFOUND)
			return outbox_cmd_unknown(sh, id);
		if (st == DM_EBUSY)
			return shell_error(sh, EX_TEMPFAIL,
			    "%s is being delivered by another process right now", id);
		return outbox_cmd_fail_submit(sh, st, &e);
	}
	return run.exit_code;
}

static int outbox_cmd_retry_all(struct shell *sh, struct registry *reg,
                                struct outbox *ob, bool verbose)
{
	struct outbox_cmd_run run = { .sh = sh };
	/* every queued message, whatever its retry schedule says */
	struct submit_hooks h = {
		.report = outbox_cmd_report, .report_ctx = &run,
		.transcript = verbose ? outbox_cmd_transcript : NULL,
		.transcript_ctx = &run, .all = true,
	};
	struct outbox_stats stats;
	size_t queued = 0;
	struct dm_err e;
	enum dm_status st;

	dm_err_clear(&e);
	if ((st = outbox_count(ob, OUTBOX_QUEUE, &queued, &e)))
		return shell_fail(sh, st, &e);
	if (queued == 0) {
		shell_out(sh, "the outbox is empty: nothing to deliver\n");
		return EX_OK;
	}
	dm_err_clear(&e);
	st = submit_deliver_due(shell_root(sh), reg, &h, &stats, &e);
	if (st != DM_OK && run.reports == 0)
		return outbox_cmd_fail_submit(sh, st, &e);
	shell_out(sh, "%u sent, %u deferred, %u failed", stats.sent,
	        stats.deferred, stats.failed);
	if (stats.busy)
		shell_out(sh, ", %u skipped (being delivered by another process)",
		        stats.busy);
	shell_out(sh, "\n");
	if (st != DM_OK)
		return outbox_cmd_fail_submit(sh, st, &e);
	return run.exit_code;
}

static int outbox_cmd_run(struct shell *sh, int argc, char **argv)
{
	struct shell_opts o;
	struct registry *reg;
	struct outbox *ob = NULL;
	struct dm_err e;
	enum dm_status st;
	int rc, actions;

	if ((rc = shell_opts_parse(sh, outbox_opts, argc, argv, &o)))
		return rc;
	actions = o.seen[OUTBOX_OPT_RETRY] + o.seen[OUTBOX_OPT_REQUEUE] +
	          o.seen[OUTBOX_OPT_ALL] + o.seen[OUTBOX_OPT_DELETE] +
	          o.seen[OUTBOX_OPT_FAILED];
	/* The one operand: OUTBOX -f ID. */
	if (o.argc > (o.seen[OUTBOX_OPT_FAILED] ? 1 : 0) || actions > 1)
		return shell_usage(sh);
	if (o.seen[OUTBOX_OPT_VERBOSE] && !o.seen[OUTBOX_OPT_RETRY] &&
	    !o.seen[OUTBOX_OPT_ALL])
		return shell_error(sh, EX_USAGE, "-v goes with -r ID or -a");
	dm_err_clear(&e);
	if ((st = shell_registry(sh, &reg, &e)))
		return shell_fail(sh, st, &e);
	dm_err_clear(&e);
	if ((st = submit_outbox_open(shell_root(sh), reg, &ob, &e)))
		return shell_fail(sh, st, &e);

	bool verbose = o.seen[OUTBOX_OPT_VERBOSE];
	if (o.seen[OUTBOX_OPT_DELETE])
		rc = outbox_cmd_delete(sh, ob, o.value[OUTBOX_OPT_DELETE]);
	else if (o.seen[OUTBOX_OPT_RETRY])
		rc = outbox_cmd_retry(sh, reg, ob, o.value[OUTBOX_OPT_RETRY], verbose);
	else if (o.seen[OUTBOX_OPT_REQUEUE])
		rc = outbox_cmd_requeue(sh, ob, o.value[OUTBOX_OPT_REQUEUE]);
	else if (o.seen[OUTBOX_OPT_FAILED] && o.argc == 1)
		rc = outbox_cmd_show_one(sh, ob, o.argv[0]);
	else if (o.seen[OUTBOX_OPT_ALL])
		rc = outbox_cmd_retry_all(sh, reg, ob, verbose);
	else
		rc = outbox_cmd_show(sh, ob, o.seen[OUTBOX_OPT_FAILED]);
	outbox_close(ob);
	return rc;
}

const struct shell_command shell_cmd_outbox = {
	.name = "OUTBOX",
	.usage = "OUTBOX [-f [ID] | -r ID | -R ID | -a | -d ID] [-v]",
	.options =
		"-f         list the failed messages with the reason each one failed\n"
		"-f ID      show failed message ID: envelope, age, attempts, reason\n"
		"           and the last lines of its SMTP dialogue\n"
		"-r ID      deliver the queued message ID now and print the result\n"
		"-R ID      put failed message ID back in the queue, attempts 0\n"
		"           (capital R; small -r is retry)\n"
		"-a         deliver every queued message now, one result line each\n"
		"-d ID      delete message ID (queued or failed)\n"
		"-v         with -r or -a: show the SMTP dialogue (AUTH redacted)\n"
		"ID may be a unique prefix of the id",
	.summary = "list, retry, re-queue and delete queued mail",
	.description =
		"Without options OUTBOX lists the messages waiting in the outbox: "
		"the id, how long ago each was handed over, the delivery attempts so "
		"far, when the next attempt is due, the first recipient and the last "
		"error. A message stays queued after a temporary failure (server "
		"unreachable, 4xx reply) and the mail service devmaild retries it "
		"by itself after Outbox/RetryMin seconds, each wait doubling up to "
		"Outbox/RetryMax, until Outbox/MaxAge; then, or after a permanent "
		"refusal (5xx), it moves to the failed messages, which OUTBOX -f "
		"lists with the reason. Where devmaild does not run, OUTBOX -a (or "
		"devmail-sendmail -q from cron) makes the retries."
		"\n\n"
		"OUTBOX -f ID shows one failed message: sender, recipients, age, "
		"attempts, the reason it failed and the last lines of the SMTP "
		"dialogue kept with it (no dialogue kept when the delivery that "
		"failed did not store one). OUTBOX -R ID puts it back in the queue "
		"with fresh attempts, due at once, once the cause is fixed; its age "
		"counts from then for Outbox/MaxAge."
		"\n\n"
		"OUTBOX -r ID and OUTBOX -a deliver now, whatever the retry "
		"schedule says (-a over Outbox/Sessions connections at once, one "
		"with -v), and print one line per message: "
		"where it went and how (TLS, certificate, AUTH) or why it was not "
		"sent. OUTBOX -d ID removes a message for good. An ID may be "
		"shortened to any prefix that names one message (-r looks in the "
		"queue, -R and -f in the failed messages, -d in both); a prefix "
		"that names several is refused with the candidates and nothing "
		"changes. Every change is written to the system log (LOG shows it)."
		"\n\n"
		"Exit status: 0 when everything asked for was done; for -r and -a "
		"the status of the first message not delivered (75 queued for "
		"retry, 69 refused, 77 authentication failed, 78 configuration "
		"missing); 65 for an unknown id, an ambiguous prefix, a failed "
		"message given to -r, a queued one given to -R or -f, or a damaged "
		"entry given to -R; 75 when the message is being delivered or "
		"changed by another process. Option letters ignore case except -r "
		"and -R.",
	.run = outbox_cmd_run,
};
