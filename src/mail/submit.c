/*
 * submit.c - the registry side of submission for every front end: the
 * outbox policy and the account, enqueue of a built message, the delivery
 * entry points (the sessions themselves are in submit_send.c, raw import
 * in submit_raw.c), exit statuses.  Contracts and the retry policy in
 * submit.h.
 */
#include "mail/submit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "mail/account.h"
#include "mail/submit_int.h"
#include "mail/verdict.h"

#define SUBMIT_SESSIONS_DEFAULT 2   /* Outbox/Sessions */
#define SUBMIT_SESSIONS_MAX 8

/* ---- registry helpers ------------------------------------------------------ */

static long submit_reg_long(struct registry *reg, const char *key)
{
	long v = 0;
	if (registry_get_int(reg, key, &v, NULL) != DM_OK)
		return 0;   /* the outbox / log default */
	return v;
}

static void submit_policy(struct registry *reg, struct outbox_options *o)
{
	memset(o, 0, sizeof(*o));
	o->max_age = submit_reg_long(reg, "Outbox/MaxAge");
	o->retry_min = submit_reg_long(reg, "Outbox/RetryMin");
	o->retry_max = submit_reg_long(reg, "Outbox/RetryMax");
	o->log_max_size = submit_reg_long(reg, "Log/MaxSize");
}

enum dm_status submit_outbox_open(const char *root, struct registry *reg,
                                  struct outbox **out, struct dm_err *err)
{
	struct outbox_options o;
	submit_policy(reg, &o);
	return outbox_open(root, &o, out, err);
}

enum dm_status submit_reg_required(struct registry *reg, const char *key,
                                   const char *what, char *out, size_t cap,
                                   struct dm_err *err)
{
	enum dm_status st = registry_get(reg, key, out, cap, NULL, err);
	if (st)
		return st;
	if (!out[0])
		return dm_err_set(err, DM_ECONFIG,
		    "%s is not set: give %s or set it (REG %s = ...)", key, what, key);
	return DM_OK;
}

enum dm_status submit_account_check(struct registry *reg, const char *root,
                                    struct dm_err *err)
{
	struct account a;
	memset(&a, 0, sizeof(a));
	enum dm_status st = account_load(reg, root, &a, err);
	account_clear(&a);
	return st;
}

/* ---- enqueue a built message ---------------------------------------------- */

static enum dm_status submit_write_message(void *ctx, int fd, struct dm_err *err)
{
	return message_write_fd(ctx, fd, err);
}

enum dm_status submit_enqueue_message(const char *root, struct registry *reg,
                                      const struct message_spec *spec,
                                      unsigned flags,
                                      char id[OUTBOX_ID_MAX],
                                      struct dm_err *err)
{
	struct message_spec s = *spec;
	char from[REG_VALUE_MAX], to[REG_VALUE_MAX], host[REG_VALUE_MAX];
	const char *tos[1];
	struct message *m = NULL;
	struct outbox *ob = NULL;
	const char **rcpt = NULL;
	enum dm_status st;

	id[0] = '\0';
	if (!s.from) {
		if ((st = submit_reg_required(reg, "Email/FromAddress", "-f FROM",
		                              from, sizeof(from), err)))
			return st;
		s.from = from;
	}
	if (s.nto == 0 && s.ncc == 0 && s.nbcc == 0) {
		if ((st = submit_reg_required(reg, "Email/ToAddress", "-t TO", to,
		                              sizeof(to), err)))
			return st;
		tos[0] = to;
		s.to = tos;
		s.nto = 1;
	}
	if (!s.hostname) {
		if (registry_get(reg, "IpConfig/HostName", host, sizeof(host), NULL,
		                 NULL) == DM_OK && host[0])
			s.hostname = host;
	}
	/* Validate the input first: bad input is reported as such even when
	 * the account is not configured yet. */
	if ((st = message_build(&s, &m, err)))
		return st;
	if ((flags & SUBMIT_NEED_ACCOUNT) &&
	    (st = submit_account_check(reg, root, err)))
		goto out;
	size_t n = message_recipient_count(m);
	if (n == 0 || n > SUBMIT_MAX_RCPT) {
		st = dm_err_set(err, DM_EINVAL, "%zu recipients (1 to %d allowed: "
		                "SMTP servers may refuse more in one message, RFC 5321 "
		                "4.5.3.1.8; send it in several parts)", n,
		                SUBMIT_MAX_RCPT);
		goto out;
	}
	rcpt = calloc(n, sizeof(*rcpt));
	if (!rcpt) {
		st = dm_err_set(err, DM_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		rcpt[i] = message_recipient(m, i);
	struct outbox_envelope env = {
		.from = message_sender(m), .rcpt = rcpt, .nrcpt = n,
		.needs_8bit = message_needs_8bitmime(m),
		.needs_smtputf8 = message_needs_smtputf8(m),
	};
	if ((st = submit_outbox_open(root, reg, &ob, err)))
		goto out;
	st = outbox_enqueue_writer(ob, &env, submit_write_message, m, id, err);
out:
	outbox_close(ob);
	free(rcpt);
	message_free(m);
	return st;
}

/* ---- deliver ----------------------------------------------------------------- */

/* Outbox/Sessions, or the hooks' override; one session when the caller
 * shows the dialogue untagged (two interleaved dialogues would not read). */
static unsigned submit_sessions(struct registry *reg, const struct submit_hooks *h)
{
	long v = h && h->sessions ? (long)h->sessions
	                          : submit_reg_long(reg, "Outbox/Sessions");
	if (h && h->transcript && !h->transcript_tagged)
		return 1;
	if (v <= 0)
		v = SUBMIT_SESSIONS_DEFAULT;
	return v > SUBMIT_SESSIONS_MAX ? SUBMIT_SESSIONS_MAX : (unsigned)v;
}

static enum dm_status submit_prepare(const char *root, struct registry *reg,
                                     const struct submit_hooks *h,
                                     struct account *a, struct outbox **ob,
                                     struct submit_run **run,
                                     struct dm_err *err)
{
	struct outbox_options o;
	enum dm_status st;

	memset(a, 0, sizeof(*a));
	*ob = NULL;
	*run = NULL;
	if ((st = account_load(reg, root, a, err)))
		return st;
	submit_policy(reg, &o);
	if (h && h->clock) {
		o.clock = h->clock;
		o.hook_ctx = h->clock_ctx;
	}
	if ((st = outbox_open(root, &o, ob, err)))
		return st;
	return submit_run_new(h, &a->smtp, *ob, run, err);
}

enum dm_status submit_deliver(const char *root, struct registry *reg,
                              const char *id, const struct submit_hooks *hooks,
                              struct submit_report *report,
                              struct dm_err *err)
{
	struct account a;
	struct outbox *ob = NULL;
	struct submit_run *run = NULL;
	struct dm_err e;
	enum dm_status st;

	if (report)
		memset(report, 0, sizeof(*report));
	if ((st = submit_prepare(root, reg, hooks, &a, &ob, &run, err)))
		goto out;
	dm_err_clear(&e);
	st = submit_run_one(run, ob, id, NULL, &e);
	const struct submit_report *first = submit_run_first(run);
	if (!first) {
		/* Not attempted (no such id, locked, local error). */
		if (err)
			*err = e;
		if (st == DM_OK)
			st = dm_err_set(err, DM_EIO, "%s: not attempted", id);
		goto out;
	}
	if (report)
		*report = *first;
	if (err)
		*err = first->err;
	st = first->status;
out:
	submit_run_free(run);
	outbox_close(ob);
	account_clear(&a);
	return st;
}

enum dm_status submit_deliver_due(const char *root, struct registry *reg,
                                  const struct submit_hooks *hooks,
                                  struct outbox_stats *stats,
                                  struct dm_err *err)
{
	struct account a;
	struct outbox *ob = NULL;
	struct submit_run *run = NULL;
	enum dm_status st;

	if (stats)
		memset(stats, 0, sizeof(*stats));
	if ((st = submit_prepare(root, reg, hooks, &a, &ob, &run, err)))
		goto out;
	st = submit_run_drain(run, ob, hooks && hooks->all ? OUTBOX_DRAIN_ALL : 0,
	                      submit_sessions(reg, hooks), stats, err);
out:
	submit_run_free(run);
	outbox_close(ob);
	account_clear(&a);
	return st;
}

/* ---- exit statuses ---------------------------------------------------------- */

int submit_status_exit(enum dm_status st)
{
	switch (st) {
	case DM_OK:        return EX_OK;
	case DM_EINVAL:    return EX_DATAERR;
	case DM_ENOINPUT:  return EX_NOINPUT;
	case DM_ECONFIG:   return EX_CONFIG;
	case DM_EAUTH:     return EX_NOPERM;
	case DM_EPERMFAIL: return EX_UNAVAILABLE;
	case DM_EIO:
	case DM_ENOMEM:    return dm_status_exit(st);   /* ours, not the server's */
	default:
		break;
	}
	if (verdict_failure(st, 0) == VERDICT_TEMPORARY)
		return EX_TEMPFAIL;
	return dm_status_exit(st);
}

int submit_exit(const struct submit_report *r)
{
	/* AUTH and configuration failures that will not pass by themselves
	 * need the operator (77, 78) whether the message stays queued or not;
	 * AUTH refused with 4xx (454) is only temporary. */
	bool needs_fix = verdict_failure(r->status, r->err.smtp_code) ==
	                 VERDICT_PERMANENT;
	switch (r->outcome) {
	case SUBMIT_SENT:
		return EX_OK;
	case SUBMIT_FAILED:
		if (r->status == DM_EAUTH && needs_fix)
			return EX_NOPERM;
		if (r->status == DM_ECONFIG)
			return EX_CONFIG;
		return EX_UNAVAILABLE;
	case SUBMIT_DEFERRED:
		if (r->status == DM_EAUTH && needs_fix)
			return EX_NOPERM;
		if (r->status == DM_ECONFIG)
			return EX_CONFIG;
		return EX_TEMPFAIL;
	}
	return EX_SOFTWARE;
}
