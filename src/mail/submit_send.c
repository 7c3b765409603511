/*
 * submit_send.c - delivery of the outbox over SMTP sessions: one session
 * per worker, kept open across the outbox's batches; each server reply
 * turned into a verdict (mail/verdict.h) and an outbox outcome; the
 * session's allowance (421, 452 4.5.3 at MAIL) learnt and respected; one
 * report per message, after the outbox has applied its outcome.
 * Contracts in submit.h and submit_int.h.
 *
 * RFC 5321 3.3 and 4.2.5 (a 4xx RCPT reply is for that recipient only),
 * 3.8 (421), 4.5.3.1.8 (100 recipients); RFC 3463 (X.5.3 at MAIL: the
 * server's limit of messages per session, e.g. OpenSMTPD's 452 4.5.3).
 */
#include "mail/submit_int.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mail/dialogue.h"
#include "mail/verdict.h"
#include "net/cancel.h"

#define SUBMIT_CHUNK_MAX 32     /* messages per smtp_client_send() */
#define SUBMIT_WORKERS_MAX 16   /* sessions of one run (a drain's most) */
#define SUBMIT_RCPT_SHOW 160    /* bytes of addresses shown in full */

struct submit_run {
	const struct submit_hooks *h;
	struct outbox *ob;          /* where failed messages' dialogues go */
	struct cancel *cancel;      /* h->cancel, or NULL */
	struct smtp_settings smtp;
	pthread_mutex_t mu;         /* limit, failed/fail_* */
	pthread_mutex_t out_mu;     /* the hooks, reports/first */
	/* Learnt: messages one session may carry (the count before the first
	 * 452 4.5.3 at MAIL), 0: no limit seen. */
	unsigned limit;
	/* A session could not be opened, or its AUTH was refused: the rest of
	 * the run does not try again (a wrong password is not hammered on). */
	bool failed;
	enum dm_status fail_st;
	struct dm_err fail_err;
	size_t reports;
	bool have_first;
	struct submit_report first;
};

/* What a report needs besides the outcome. */
struct submit_msg {
	enum dm_status status;      /* the real cause */
	bool partial;               /* sent to some, kept for others */
	char line[SUBMIT_LINE_MAX];
	char detail[SUBMIT_LINE_MAX];
};

/* Counting source for the progress hook. */
struct submit_count {
	struct mail_source inner;
	struct submit_run *run;
	const char *id;
	uint64_t sent, total;
};

/* One worker: one SMTP session at a time, reused across batches. */
struct submit_worker {
	struct submit_run *run;
	struct outbox_drain *dr;
	unsigned index;
	struct smtp_settings s;
	struct smtp_client *c;      /* the open session, or NULL */
	unsigned in_session;        /* messages sent over c */
	unsigned accepted;          /* of those, accepted */
	char session[SUBMIT_LINE_MAX];
	struct smtp_envelope *env;  /* per batch: OUTBOX_BATCH_MAX each */
	struct submit_count *cnt;
	struct submit_msg *msg;
	struct smtp_result *res;    /* SUBMIT_CHUNK_MAX */
	struct dialogue *dlg;       /* this worker's sessions' lines (NULL: out
	                               of memory, no dialogue kept) */
	enum dm_status st;          /* outbox_drain_work()'s */
	struct dm_err err;
};

/* ---- text ---------------------------------------------------------------------- */

/* Appends to out[cap] at *len (truncating). */
static void submit_cat(char *out, size_t cap, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void submit_cat(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
	if (*len >= cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (n > 0)
		*len = *len + (size_t)n >= cap ? cap - 1 : *len + (size_t)n;
}

/* Copies src into dst[cap], truncated, always NUL-terminated. */
static void submit_copy(char *dst, size_t cap, const char *src)
{
	if (cap == 0)
		return;
	size_t n = strlen(src);
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

size_t submit_session_str(const struct smtp_info *info, char *out, size_t cap)
{
	int n;
	if (info->tls.active)
		n = snprintf(out, cap, "%s:%u (%s, %s, %s, %s, AUTH %s)", info->host,
		             info->port, smtp_tls_mode_str(info->tls_mode),
		             info->tls.version, info->tls.cipher[0] ? info->tls.cipher
		                                                     : "unknown cipher",
		             info->tls.pinned ? "certificate pinned"
		             : info->tls.verified ? "certificate verified"
		                                  : "certificate NOT verified",
		             info->mechanism[0] ? info->mechanism : "none");
	else
		n = snprintf(out, cap, "%s:%u (no TLS, AUTH %s)", info->host,
		             info->port, info->mechanism[0] ? info->mechanism : "none");
	return n < 0 ? 0 : (size_t)n;
}

/* Recipients for a result line: "a@x, b@y" while that stays short, else
 * "a@x +119 more" (as OUTBOX lists them), so that the reason after the
 * list always fits in the line.  `pick` (NULL: all) selects by index. */
static void submit_rcpt_list_str(const char *const *rcpt, size_t n,
                                 const bool *pick, char *out, size_t cap)
{
	size_t len = 0, total = 0, count = 0, first = n;
	out[0] = '\0';
	for (size_t k = 0; k < n; k++) {
		if (pick && !pick[k])
			continue;
		if (first == n)
			first = k;
		total += strlen(rcpt[k]) + 2;
		count++;
	}
	if (count == 0)
		return;
	if (count > 1 && total > SUBMIT_RCPT_SHOW) {
		submit_cat(out, cap, &len, "%s +%zu more", rcpt[first], count - 1);
		return;
	}
	for (size_t k = first; k < n; k++)
		if (!pick || pick[k])
			submit_cat(out, cap, &len, "%s%s", len ? ", " : "", rcpt[k]);
}

/* The recipients whose RCPT reply has this verdict into out[cap]. */
static void submit_rcpt_kind_str(const struct smtp_envelope *env,
                                 const struct smtp_result *r, size_t nr,
                                 enum verdict_kind kind, char *out, size_t cap)
{
	bool pick[SMTP_MAX_RCPT];
	for (size_t k = 0; k < nr; k++)
		pick[k] = r->rcpt[k].code && verdict_rcpt(r->rcpt[k].code) == kind;
	submit_rcpt_list_str(env->rcpt, nr, pick, out, cap);
}

/* Appends `label` and the first three recipients refused permanently (5xx)
 * with their replies, then "+N more": the line stays short enough for the
 * reason to show. */
static void submit_cat_refused(char *line, size_t cap, size_t *len,
                               const char *label,
                               const struct smtp_envelope *env,
                               const struct smtp_result *r, size_t nr)
{
	size_t nperm = 0;

	submit_cat(line, cap, len, "%s", label);
	for (size_t k = 0; k < nr; k++) {
		if (verdict_rcpt(r->rcpt[k].code) != VERDICT_PERMANENT)
			continue;
		if (nperm++ < 3)
			submit_cat(line, cap, len, " %s: %d%s%s %s", env->rcpt[k],
			           r->rcpt[k].code, r->rcpt[k].enhanced[0] ? " " : "",
			           r->rcpt[k].enhanced, r->rcpt[k].text);
	}
	if (nperm > 3)
		submit_cat(line, cap, len, " +%zu more", nperm - 3);
}

/* ---- the hooks, one thread at a time ---------------------------------------------- */

/* Every line of the worker's session: into its dialogue recorder, and to
 * the caller's hook ("[k] " first with transcript_tagged). */
static void submit_transcript(void *ctx, enum smtp_dir dir, const char *line)
{
	struct submit_worker *w = ctx;
	struct submit_run *run = w->run;

	if (w->dlg)
		dialogue_line(w->dlg, dir, line);
	if (!run->h || !run->h->transcript)
		return;
	pthread_mutex_lock(&run->out_mu);
	if (run->h->transcript_tagged) {
		char tagged[SUBMIT_LINE_MAX + 16];
		snprintf(tagged, sizeof(tagged), "[%u] %s", w->index, line);
		run->h->transcript(run->h->transcript_ctx, dir, tagged);
	} else {
		run->h->transcript(run->h->transcript_ctx, dir, line);
	}
	pthread_mutex_unlock(&run->out_mu);
}

static enum dm_status submit_count_read(void *ctx, char *buf, size_t cap,
                                        size_t *got, struct dm_err *err)
{
	struct submit_count *c = ctx;
	enum dm_status st = c->inner.read(c->inner.ctx, buf, cap, got, err);
	if (st == DM_OK) {
		c->sent += *got;
		pthread_mutex_lock(&c->run->out_mu);
		c->run->h->progress(c->run->h->progress_ctx, c->id, c->sent, c->total);
		pthread_mutex_unlock(&c->run->out_mu);
	}
	return st;
}

/* ---- envelopes ---------------------------------------------------------------------- */

static bool submit_addr_utf8(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* The SMTP envelope of each message of the batch. */
static void submit_envelopes(struct submit_worker *w, const struct outbox_batch *b)
{
	const struct submit_hooks *h = w->run->h;

	for (size_t i = 0; i < b->n; i++) {
		const struct outbox_item *it = &b->items[i];
		struct smtp_envelope *e = &w->env[i];
		bool utf8 = submit_addr_utf8(it->from);
		for (size_t k = 0; k < it->nrcpt; k++)
			utf8 = utf8 || submit_addr_utf8(it->rcpt[k]);
		memset(e, 0, sizeof(*e));
		e->from = it->from;
		e->rcpt = it->rcpt;
		e->nrcpt = it->nrcpt;
		e->body = b->msgs[i];
		if (h && h->progress) {
			w->cnt[i] = (struct submit_count){ .inner = b->msgs[i],
			    .run = w->run, .id = it->id, .total = it->size };
			e->body = (struct mail_source){ submit_count_read, &w->cnt[i] };
		}
		e->size = (size_t)it->size;
		/* as recorded at enqueue (built: from the MIME builder; raw:
		 * scanned as it was spooled), or UTF-8 addresses (spools from
		 * before the flags were kept) */
		e->needs_8bit = it->needs_8bit || utf8;
		e->needs_smtputf8 = it->needs_smtputf8 || utf8;
		memset(&w->msg[i], 0, sizeof(w->msg[i]));
	}
}

/* ---- the session --------------------------------------------------------------------- */

static unsigned submit_port(const struct smtp_settings *s)
{
	return s->port ? s->port : (s->smtps ? 465u : 25u);
}

/* Messages from..n get the session's failure: kept queued (verdict rule
 * 2), the report with the real status (DM_EAUTH, DM_ENET, ...). */
static void submit_session_fail(struct submit_worker *w,
                                const struct outbox_batch *b, size_t from,
                                enum dm_status st, const struct dm_err *e)
{
	struct verdict_input in = { .status = st, .phase = VERDICT_SESSION,
	                            .code = e->smtp_code, .enhanced = e->enhanced };
	for (size_t i = from; i < b->n; i++) {
		struct outbox_outcome *o = &b->out[i];
		struct submit_msg *m = &w->msg[i];
		char to[SUBMIT_LINE_MAX];
		size_t len = 0;
		o->status = st;
		o->err = *e;
		verdict_decide(&in, &o->verdict, NULL);
		m->status = st;
		submit_rcpt_list_str(b->items[i].rcpt, b->items[i].nrcpt, NULL, to,
		                     sizeof(to));
		submit_cat(m->line, sizeof(m->line), &len, "Not sent to %s via %s:%u: %s",
		           to, w->s.host, submit_port(&w->s),
		           e->msg[0] ? e->msg : dm_status_str(st));
	}
}

/* Remembers a failure of the session itself for the rest of the run. */
static void submit_run_fail(struct submit_run *run, enum dm_status st,
                            const struct dm_err *e)
{
	pthread_mutex_lock(&run->mu);
	if (!run->failed) {
		run->failed = true;
		run->fail_st = st;
		run->fail_err = *e;
	}
	pthread_mutex_unlock(&run->mu);
}

/* Opens the worker's session for messages from..n; false (after marking
 * them) when it cannot be had. */
static bool submit_session_open(struct submit_worker *w,
                                const struct outbox_batch *b, size_t from)
{
	struct submit_run *run = w->run;
	struct dm_err e;
	enum dm_status st = DM_OK;

	pthread_mutex_lock(&run->mu);
	if (run->failed) {
		st = run->fail_st;
		e = run->fail_err;
	}
	pthread_mutex_unlock(&run->mu);
	if (st == DM_OK) {
		dm_err_clear(&e);
		st = smtp_client_open(&w->s, &w->c, &e);
		if (st != DM_OK)
			submit_run_fail(run, st, &e);
	}
	if (st != DM_OK) {
		w->c = NULL;
		submit_session_fail(w, b, from, st, &e);
		return false;
	}
	w->in_session = w->accepted = 0;
	submit_session_str(smtp_client_info(w->c), w->session, sizeof(w->session));
	return true;
}

static void submit_session_close(struct submit_worker *w)
{
	smtp_client_close(w->c, NULL);   /* QUIT, unless already said */
	w->c = NULL;
	w->in_session = w->accepted = 0;
	w->session[0] = '\0';
}

/* ---- outcomes ------------------------------------------------------------------------ */

static enum verdict_phase submit_phase(enum smtp_phase p)
{
	switch (p) {
	case SMTP_PHASE_NONE:
	case SMTP_PHASE_AUTH: return VERDICT_SESSION;
	case SMTP_PHASE_MAIL: return VERDICT_MAIL;
	default:              return VERDICT_MESSAGE;
	}
}

/* The verdict on one SMTP result, retry marks into o->retry. */
static void submit_decide(const struct smtp_envelope *env,
                          const struct smtp_result *r, struct outbox_outcome *o)
{
	int codes[SMTP_MAX_RCPT];
	size_t nr = env->nrcpt < SMTP_MAX_RCPT ? env->nrcpt : SMTP_MAX_RCPT;
	for (size_t k = 0; k < nr; k++)
		codes[k] = r->rcpt[k].code;
	/* The RCPT replies count once the message got that far. */
	bool rcpts = r->phase == SMTP_PHASE_RCPT || r->phase == SMTP_PHASE_DATA;
	struct verdict_input in = {
		.status = r->status, .phase = submit_phase(r->phase),
		.code = r->code, .enhanced = r->enhanced,
		.rcpt_code = rcpts ? codes : NULL, .nrcpt = nr,
	};
	o->status = r->status;
	verdict_decide(&in, &o->verdict, o->retry);
}

/* The reason the outbox records (o->err): for recipients kept for a retry
 * while the others were served or refused for good, says so; else our
 * diagnosis and the server's reply. */
static void submit_reason(struct outbox_outcome *o, const struct smtp_envelope *env,
                          const struct smtp_result *r, bool subset)
{
	size_t nr = env->nrcpt < SMTP_MAX_RCPT ? env->nrcpt : SMTP_MAX_RCPT;
	bool ok = r->status == DM_OK;

	dm_err_clear(&o->err);
	if (subset) {
		char ret[SUBMIT_LINE_MAX], perm[SUBMIT_LINE_MAX] = "";
		size_t first = 0, ntemp = 0;
		for (size_t k = 0; k < nr; k++)
			if (o->retry[k] && ntemp++ == 0)
				first = k;
		submit_rcpt_kind_str(env, r, nr, VERDICT_TEMPORARY, ret, sizeof(ret));
		if (!ok)
			submit_rcpt_kind_str(env, r, nr, VERDICT_PERMANENT, perm, sizeof(perm));
		dm_err_set(&o->err, DM_ETEMPFAIL, "%s %s refused for now; %s%s",
		           ntemp == 1 ? "recipient" : "recipients", ret,
		           ok ? "sent to the others" : "dropped, refused permanently: ",
		           perm);
		o->err.smtp_code = r->rcpt[first].code;
		snprintf(o->err.enhanced, sizeof(o->err.enhanced), "%s",
		         r->rcpt[first].enhanced);
		snprintf(o->err.server_text, sizeof(o->err.server_text), "%s",
		         r->rcpt[first].text);
		return;
	}
	if (ok)
		return;
	dm_err_set(&o->err, r->status, "%s",
	           r->diag[0] ? r->diag : dm_status_str(r->status));
	o->err.smtp_code = r->code;
	snprintf(o->err.enhanced, sizeof(o->err.enhanced), "%s", r->enhanced);
	snprintf(o->err.server_text, sizeof(o->err.server_text), "%s", r->text);
}

/* "Sent to ... via <session>: 250 ..." or "Not sent to ...: <why>", with
 * the recipients refused for good and those kept for a retry. */
static void submit_line(struct submit_worker *w, struct submit_msg *m,
                        const struct smtp_envelope *env,
                        const struct smtp_result *r,
                        const struct outbox_outcome *o)
{
	size_t nr = env->nrcpt < SMTP_MAX_RCPT ? env->nrcpt : SMTP_MAX_RCPT;
	bool ok = r->status == DM_OK, pick[SMTP_MAX_RCPT];
	char to[SUBMIT_LINE_MAX];
	size_t len = 0, first_temp = nr, nperm = 0;

	for (size_t k = 0; k < nr; k++) {
		pick[k] = !ok || verdict_rcpt(r->rcpt[k].code) == VERDICT_SENT;
		nperm += verdict_rcpt(r->rcpt[k].code) == VERDICT_PERMANENT;
		if (first_temp == nr && o->retry[k] &&
		    verdict_rcpt(r->rcpt[k].code) == VERDICT_TEMPORARY)
			first_temp = k;
	}
	submit_rcpt_list_str(env->rcpt, nr, pick, to, sizeof(to));
	submit_cat(m->line, sizeof(m->line), &len, "%s to %s via %s: ",
	           ok ? "Sent" : "Not sent", to, w->session);
	if (r->code)
		submit_cat(m->line, sizeof(m->line), &len, "%d%s%s %s", r->code,
		           r->enhanced[0] ? " " : "", r->enhanced, r->text);
	else
		submit_cat(m->line, sizeof(m->line), &len, "%s",
		           r->diag[0] ? r->diag : dm_status_str(r->status));
	if (ok && nperm > 0)
		submit_cat_refused(m->line, sizeof(m->line), &len, "; rejected", env, r, nr);
	if (o->verdict.nretry == 0)
		return;
	if (ok && first_temp < nr) {
		char ret[SUBMIT_LINE_MAX];
		submit_rcpt_kind_str(env, r, nr, VERDICT_TEMPORARY, ret, sizeof(ret));
		submit_cat(m->line, sizeof(m->line), &len,
		           "; to retry (refused for now) %s: %d%s%s %s", ret,
		           r->rcpt[first_temp].code,
		           r->rcpt[first_temp].enhanced[0] ? " " : "",
		           r->rcpt[first_temp].enhanced, r->rcpt[first_temp].text);
	} else if (!ok && nperm > 0) {
		submit_cat_refused(m->line, sizeof(m->line), &len,
		                   "; dropped (refused permanently)", env, r, nr);
	}
}

/* Message i of the batch from its SMTP result. */
static void submit_outcome(struct submit_worker *w, const struct outbox_batch *b,
                           size_t i, const struct smtp_result *r)
{
	struct outbox_outcome *o = &b->out[i];
	struct submit_msg *m = &w->msg[i];
	const struct smtp_envelope *env = &w->env[i];

	submit_decide(env, r, o);
	bool ok = r->status == DM_OK;
	/* Recipients kept apart: sent to the others, or all refused (some
	 * for now, some for good). */
	bool subset = o->verdict.nretry > 0 && (ok || r->accepted == 0);
	submit_reason(o, env, r, subset);
	submit_line(w, m, env, r, o);
	m->status = subset ? DM_ETEMPFAIL : r->status;
	m->partial = subset && ok;
	submit_copy(m->detail, sizeof(m->detail), w->session);
	if (ok)
		submit_copy(o->detail, sizeof(o->detail), m->line);
}

/* ---- a batch ------------------------------------------------------------------------- */

static unsigned submit_limit(struct submit_run *run)
{
	pthread_mutex_lock(&run->mu);
	unsigned limit = run->limit;
	pthread_mutex_unlock(&run->mu);
	return limit;
}

/* What the server's answers to a chunk teach: the session's allowance
 * (452 4.5.3 at MAIL after N messages: at most N per session from now
 * on), which refused messages go back to the run (the session had served
 * some, so another will serve them), a refused AUTH (the run stops
 * trying).  Returns true when the session must end. */
static bool submit_learn(struct submit_worker *w, const struct outbox_batch *b,
                         size_t i, size_t k)
{
	struct submit_run *run = w->run;
	bool ended = false;

	for (size_t j = 0; j < k; j++) {
		const struct smtp_result *r = &w->res[j];
		if (r->status == DM_OK)
			w->accepted++;
		bool at_limit = r->phase == SMTP_PHASE_MAIL && r->code == 452 &&
		                !strcmp(r->enhanced, "4.5.3");
		unsigned before = w->in_session + (unsigned)j;
		if (at_limit && !ended && before > 0) {
			pthread_mutex_lock(&run->mu);
			if (run->limit == 0 || before < run->limit)
				run->limit = before;
			pthread_mutex_unlock(&run->mu);
			submit_transcript(w, SMTP_DIR_INFO, "the server ended "
			                  "this session's allowance (452 4.5.3): "
			                  "the rest goes over a new session");
		}
		if (b->out[i + j].verdict.session_end)
			ended = true;
		if (r->status == DM_EAUTH) {
			struct dm_err e;
			dm_err_clear(&e);
			dm_err_set(&e, DM_EAUTH, "%s", r->diag);
			e.smtp_code = r->code;
			snprintf(e.enhanced, sizeof(e.enhanced), "%s", r->enhanced);
			snprintf(e.server_text, sizeof(e.server_text), "%s", r->text);
			submit_run_fail(run, DM_EAUTH, &e);
		}
	}
	/* Not attempts: back to the run for a new session, when this one got
	 * something through (a server refusing everything is not retried in
	 * a loop). */
	for (size_t j = 0; j < k; j++)
		if (b->out[i + j].verdict.session_end && w->accepted > 0)
			b->out[i + j].requeue = true;
	w->in_session += (unsigned)k;
	return ended;
}

/* Messages from..n are not sent: the run was cancelled. */
static void submit_cancelled(struct submit_worker *w,
                             const struct outbox_batch *b, size_t from)
{
	struct dm_err e;
	dm_err_clear(&e);
	dm_err_set(&e, DM_ECANCELED, "delivery cancelled");
	submit_session_fail(w, b, from, DM_ECANCELED, &e);
}

/* Sends messages i..n of the batch over the worker's session(s). */
static void submit_batch(void *ctx, const struct outbox_batch *b)
{
	struct submit_worker *w = ctx;
	/* With a `more` hook the run may look at the queue again: the session
	 * stays open after the last batch (QUIT when the run ends). */
	bool keep = w->run->h && w->run->h->more;

	submit_envelopes(w, b);
	for (size_t i = 0; i < b->n;) {
		if (cancel_fired(w->run->cancel)) {
			/* No new session, no new chunk once cancelled. */
			submit_cancelled(w, b, i);
			return;
		}
		unsigned limit = submit_limit(w->run);
		if (w->c && limit && w->in_session >= limit)
			submit_session_close(w);
		if (!w->c && !submit_session_open(w, b, i))
			return;
		size_t k = b->n - i < SUBMIT_CHUNK_MAX ? b->n - i : SUBMIT_CHUNK_MAX;
		if (limit && k > limit - w->in_session)
			k = limit - w->in_session;
		/* QUIT rides with the last dot of the session (RFC 2920). */
		bool quit = (limit && w->in_session + k >= limit) ||
		            (b->last && !keep && i + k == b->n);
		struct dm_err e;
		dm_err_clear(&e);
		smtp_client_send(w->c, &w->env[i], k, w->res, quit ? SMTP_SEND_QUIT : 0,
		                 &e);
		for (size_t j = 0; j < k; j++)
			submit_outcome(w, b, i + j, &w->res[j]);
		if (submit_learn(w, b, i, k) || !smtp_client_usable(w->c))
			submit_session_close(w);
		i += k;
	}
}

/* Keeps the last lines of a failed message's dialogue beside it
 * (spool/failed/<id>/dialogue).  Best effort: without it OUTBOX -f still
 * shows the reason. */
static void submit_keep_dialogue(struct submit_worker *w, const char *id,
                                 const struct dm_err *why)
{
	const char *lines[DIALOGUE_SNAP_LINES];

	if (!w->dlg || !w->run->ob)
		return;
	size_t n = dialogue_for_failure(w->dlg, why->msg, lines,
	                                DIALOGUE_SNAP_LINES);
	if (n > 0)
		(void)outbox_dialogue_save(w->run->ob, OUTBOX_FAILED, id, lines, n,
		                           NULL);
}

/* After the outbox applied the batch: the final line and one report each. */
static void submit_done(void *ctx, const struct outbox_batch *b)
{
	struct submit_worker *w = ctx;
	struct submit_run *run = w->run;

	for (size_t i = 0; i < b->n; i++) {
		const struct outbox_outcome *o = &b->out[i];
		const struct submit_msg *m = &w->msg[i];
		struct submit_report rep;
		size_t len;

		if (o->state == OUTBOX_STATE_PENDING)
			continue;   /* given back: reported when it is done */
		memset(&rep, 0, sizeof(rep));
		snprintf(rep.id, sizeof(rep.id), "%s", b->items[i].id);
		rep.status = m->status;
		rep.err = o->err;
		rep.partial = m->partial;
		submit_copy(rep.line, sizeof(rep.line), m->line);
		submit_copy(rep.detail, sizeof(rep.detail), m->detail);
		len = strlen(rep.line);
		switch (o->state) {
		case OUTBOX_STATE_SENT:
			rep.outcome = SUBMIT_SENT;
			break;
		case OUTBOX_STATE_DEFERRED:
			rep.outcome = SUBMIT_DEFERRED;
			rep.next_try_in = o->next_try_in;
			if (o->canceled) {
				len = 0;
				submit_cat(rep.line, sizeof(rep.line), &len,
				           "Not sent %s: the delivery was cancelled before "
				           "the server's final reply; it stays queued (not "
				           "counted as an attempt)", rep.id);
			} else if (rep.partial)   /* keep "Sent to ..."; say what stays */
				submit_cat(rep.line, sizeof(rep.line), &len,
				           "; %s stays queued for them, next try in %lds",
				           rep.id, rep.next_try_in);
			else {
				len = 0;
				submit_cat(rep.line, sizeof(rep.line), &len,
				           "Queued %s for retry: %s; next try in %lds",
				           rep.id, o->reason, rep.next_try_in);
			}
			break;
		default:
			rep.outcome = SUBMIT_FAILED;
			submit_cat(rep.line, sizeof(rep.line), &len,
			           " (%s moved to the failed outbox)", rep.id);
			submit_keep_dialogue(w, rep.id, &o->err);
			break;
		}
		rep.exit_code = submit_exit(&rep);
		pthread_mutex_lock(&run->out_mu);
		if (!run->have_first) {
			run->first = rep;
			run->have_first = true;
		}
		run->reports++;
		if (run->h && run->h->report)
			run->h->report(run->h->report_ctx, &rep);
		pthread_mutex_unlock(&run->out_mu);
	}
	if (w->dlg)
		dialogue_reset(w->dlg);   /* the batch's failures have theirs */
}

/* ---- workers ------------------------------------------------------------------------- */

static enum dm_status submit_worker_init(struct submit_worker *w,
                                         struct submit_run *run,
                                         struct outbox_drain *dr, unsigned index,
                                         struct dm_err *err)
{
	memset(w, 0, sizeof(*w));
	w->run = run;
	w->dr = dr;
	w->index = index;
	w->s = run->smtp;
	w->s.transcript = submit_transcript;
	w->s.transcript_ctx = w;
	w->dlg = dialogue_new();   /* NULL: no dialogue kept, not an error */
	w->env = calloc(OUTBOX_BATCH_MAX, sizeof(*w->env));
	w->cnt = calloc(OUTBOX_BATCH_MAX, sizeof(*w->cnt));
	w->msg = calloc(OUTBOX_BATCH_MAX, sizeof(*w->msg));
	w->res = calloc(SUBMIT_CHUNK_MAX, sizeof(*w->res));
	if (!w->env || !w->cnt || !w->msg || !w->res)
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	return DM_OK;
}

static void submit_worker_free(struct submit_worker *w)
{
	submit_session_close(w);
	free(w->env);
	free(w->cnt);
	free(w->msg);
	free(w->res);
	dialogue_free(w->dlg);
	w->dlg = NULL;
}

static void submit_worker_deliverer(struct submit_worker *w,
                                    struct outbox_deliverer *d)
{
	d->deliver = submit_batch;
	d->done = submit_done;
	d->ctx = w;
	d->batch = w->run->h ? w->run->h->batch : 0;
	d->cancel = w->run->cancel;
}

static void *submit_worker_main(void *arg)
{
	struct submit_worker *w = arg;
	struct outbox_deliverer d;

	submit_worker_deliverer(w, &d);
	dm_err_clear(&w->err);
	w->st = outbox_drain_work(w->dr, w->index, &d, &w->err);
	if (!w->run->h || !w->run->h->more || cancel_fired(w->run->cancel))
		submit_session_close(w);   /* else kept for the next drain */
	return NULL;
}

/* One drain of the queue with up to `nw` of the run's workers (the first
 * ones: their sessions may still be open from the drain before). */
static enum dm_status submit_drain_once(struct submit_worker *w, unsigned nw,
                                        struct outbox_drain *dr,
                                        struct dm_err *err)
{
	enum dm_status st = DM_OK;
	size_t n = outbox_drain_size(dr);
	pthread_t t[SUBMIT_WORKERS_MAX];
	bool started[SUBMIT_WORKERS_MAX] = { false };

	if (n == 0)
		return DM_OK;
	if (nw > n)
		nw = (unsigned)n;
	for (unsigned k = 0; k < nw; k++)
		w[k].dr = dr;
	/* Worker 0 runs here; the others in threads.  One whose thread
	 * cannot start runs here afterwards (its share is not lost). */
	for (unsigned k = 1; k < nw; k++)
		started[k] = pthread_create(&t[k], NULL, submit_worker_main, &w[k]) == 0;
	for (unsigned k = 0; k < nw; k++)
		if (k == 0 || !started[k])
			submit_worker_main(&w[k]);
	for (unsigned k = 1; k < nw; k++)
		if (started[k])
			pthread_join(t[k], NULL);
	for (unsigned k = 0; k < nw; k++) {
		if (st == DM_OK && w[k].st != DM_OK) {
			st = w[k].st;
			if (err)
				*err = w[k].err;
		}
		w[k].dr = NULL;
	}
	return st;
}

static bool submit_run_failed(struct submit_run *run)
{
	pthread_mutex_lock(&run->mu);
	bool failed = run->failed;
	pthread_mutex_unlock(&run->mu);
	return failed;
}

enum dm_status submit_run_drain(struct submit_run *run, struct outbox *ob,
                                unsigned flags, unsigned sessions,
                                struct outbox_stats *stats, struct dm_err *err)
{
	const struct submit_hooks *h = run->h;
	unsigned nw = sessions == 0 ? 1 : sessions;
	enum dm_status st = DM_OK;

	if (nw > SUBMIT_WORKERS_MAX)
		nw = SUBMIT_WORKERS_MAX;
	struct submit_worker *w = calloc(nw, sizeof(*w));
	if (!w)
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	for (unsigned k = 0; k < nw && st == DM_OK; k++)
		st = submit_worker_init(&w[k], run, NULL, k, err);
	/* Drains of the queue, one after the other, while the caller's `more`
	 * says so (a daemon: new messages arrived): the sessions stay open
	 * across them, so a burst goes over the same connections. */
	while (st == DM_OK && !cancel_fired(run->cancel)) {
		struct outbox_drain *dr = NULL;
		if ((st = outbox_drain_open(ob, flags, nw, &dr, err)) != DM_OK)
			break;
		st = submit_drain_once(w, nw, dr, err);
		outbox_drain_close(dr, stats);
		if (st != DM_OK || !h || !h->more || (flags & OUTBOX_DRAIN_ALL) ||
		    cancel_fired(run->cancel) || submit_run_failed(run) ||
		    !h->more(h->more_ctx))
			break;
	}
	for (unsigned k = 0; k < nw; k++)
		submit_worker_free(&w[k]);   /* QUIT for a session still open */
	free(w);
	return st;
}

enum dm_status submit_run_one(struct submit_run *run, struct outbox *ob,
                              const char *id, struct outbox_stats *stats,
                              struct dm_err *err)
{
	struct submit_worker w;
	struct outbox_deliverer d;
	enum dm_status st = submit_worker_init(&w, run, NULL, 0, err);

	if (st == DM_OK) {
		submit_worker_deliverer(&w, &d);
		st = outbox_deliver_one(ob, id, &d, stats, err);
	}
	submit_worker_free(&w);
	return st;
}

enum dm_status submit_run_new(const struct submit_hooks *h,
                              const struct smtp_settings *smtp,
                              struct outbox *ob, struct submit_run **out,
                              struct dm_err *err)
{
	struct submit_run *run = calloc(1, sizeof(*run));

	*out = NULL;
	if (!run)
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	run->h = h;
	run->ob = ob;
	run->cancel = h ? h->cancel : NULL;
	run->smtp = *smtp;
	run->smtp.cancel = run->cancel;
	/* Each worker records its own session's lines (submit_transcript). */
	run->smtp.transcript = NULL;
	run->smtp.transcript_ctx = NULL;
	/* A one-round-trip AUTH (PLAIN, XOAUTH2) rides with the first MAIL
	 * when the server pipelines (RFC 4954 section 4): one flight less.  A
	 * refusal then arrives as DM_EAUTH in the send results and is still a
	 * session failure (verdict rule 2). */
	run->smtp.pipeline_auth = true;
	pthread_mutex_init(&run->mu, NULL);
	pthread_mutex_init(&run->out_mu, NULL);
	*out = run;
	return DM_OK;
}

void submit_run_free(struct submit_run *run)
{
	if (!run)
		return;
	pthread_mutex_destroy(&run->mu);
	pthread_mutex_destroy(&run->out_mu);
	free(run);
}

size_t submit_run_reports(const struct submit_run *run)
{
	return run->reports;
}

const struct submit_report *submit_run_first(const struct submit_run *run)
{
	return run->have_first ? &run->first : NULL;
}
