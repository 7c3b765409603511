/*
 * verdict.c - sent, temporary or permanent: the retry policy's decision
 * (contract and rules in verdict.h).
 *
 * RFC 5321 4.2.1 (reply classes), 3.3 and 4.2.5 (a 4xx RCPT reply is for
 * that recipient only), 3.8 (421: the server closes the session), RFC 3463
 * (enhanced status codes; X.5.3 is what servers that limit messages per
 * session answer at MAIL, e.g. OpenSMTPD's "452 4.5.3").
 */
#include "mail/verdict.h"

#include <string.h>

enum verdict_kind verdict_failure(enum dm_status status, int code)
{
	if (status == DM_OK)
		return VERDICT_SENT;
	if (code >= 400 && code < 500)
		return VERDICT_TEMPORARY;
	if (code >= 500 && code < 600)
		return VERDICT_PERMANENT;
	switch (status) {
	case DM_ENET:
	case DM_ETIMEOUT:
	case DM_ETEMPFAIL:
	case DM_EPROTO:     /* garbage or a dropped reply: the next try may work */
	case DM_EIO:        /* our disk, not the message */
	case DM_ENOMEM:
	case DM_EBUSY:
	case DM_ECANCELED:  /* we stopped (shutdown): nothing was judged */
		return VERDICT_TEMPORARY;
	default:            /* TLS verification, AUTH, configuration, policy,
	                       input, SIZE/8BITMIME/SMTPUTF8 refusals */
		return VERDICT_PERMANENT;
	}
}

enum verdict_kind verdict_rcpt(int code)
{
	switch (code / 100) {
	case 2: return VERDICT_SENT;
	case 5: return VERDICT_PERMANENT;
	default: return VERDICT_TEMPORARY;   /* 4xx, or not answered */
	}
}

const char *verdict_kind_str(enum verdict_kind k)
{
	switch (k) {
	case VERDICT_SENT:      return "sent";
	case VERDICT_TEMPORARY: return "temporary";
	case VERDICT_PERMANENT: break;
	}
	return "permanent";
}

/* Rule 3: the server ended the session's allowance. */
static bool verdict_session_end(const struct verdict_input *in)
{
	if (in->code == 421)
		return true;
	return in->code == 452 && in->phase == VERDICT_MAIL && in->enhanced &&
	       strcmp(in->enhanced, "4.5.3") == 0;
}

/* Every recipient answered with a refusal (4xx or 5xx). */
static bool verdict_all_refused(const struct verdict_input *in)
{
	if (!in->rcpt_code || in->nrcpt == 0)
		return false;
	for (size_t k = 0; k < in->nrcpt; k++)
		if (in->rcpt_code[k] < 400 || in->rcpt_code[k] >= 600)
			return false;
	return true;
}

/* Marks the recipients whose own verdict is `want` (or, with `not`, is
 * not `want`); returns how many. */
static size_t verdict_mark(const struct verdict_input *in, enum verdict_kind want,
                           bool not, unsigned char *retry)
{
	size_t n = 0;
	for (size_t k = 0; k < in->nrcpt; k++) {
		bool hit = (verdict_rcpt(in->rcpt_code[k]) == want) != not;
		if (retry)
			retry[k] = hit;
		n += hit;
	}
	return n;
}

void verdict_decide(const struct verdict_input *in, struct verdict *out,
                    unsigned char *retry)
{
	bool known = in->rcpt_code && in->nrcpt > 0;

	memset(out, 0, sizeof(*out));
	if (retry && in->nrcpt)
		memset(retry, 0, in->nrcpt);
	if (in->status == DM_OK) {
		out->message = out->failure = VERDICT_SENT;
		if (known)   /* rule 4: the 4xx ones stay queued */
			out->nretry = verdict_mark(in, VERDICT_TEMPORARY, false, retry);
		return;
	}
	out->failure = verdict_failure(in->status, in->code);
	out->session = in->phase == VERDICT_SESSION || in->status == DM_EAUTH ||
	               in->status == DM_ECANCELED;
	out->session_end = verdict_session_end(in);
	if (out->session || out->session_end) {
		out->message = VERDICT_TEMPORARY;   /* rules 2 and 3 */
		return;
	}
	if (verdict_all_refused(in)) {
		/* Rule 4: the recipients decide, whatever the last RCPT reply
		 * (the engine's deciding reply) was. */
		bool any_temp = verdict_mark(in, VERDICT_TEMPORARY, false, NULL) > 0;
		out->message = any_temp ? VERDICT_TEMPORARY : VERDICT_PERMANENT;
	} else {
		out->message = out->failure;
	}
	if (out->message != VERDICT_TEMPORARY || !known)
		return;
	/* Kept for a retry: drop the recipients refused for good. */
	size_t keep = verdict_mark(in, VERDICT_PERMANENT, true, retry);
	if (keep > 0 && keep < in->nrcpt) {
		out->nretry = keep;
		return;
	}
	if (retry)
		memset(retry, 0, in->nrcpt);   /* all of them (no subset), or none */
	if (keep == 0)
		out->message = VERDICT_PERMANENT;
}
