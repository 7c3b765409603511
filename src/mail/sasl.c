/*
 * sasl.c - SASL client mechanisms for SMTP AUTH over GNU SASL.
 *
 * RFCs: 4422 (SASL), 4954 (SMTP AUTH), 4616 (PLAIN), 2195 (CRAM-MD5),
 * 5802 (SCRAM), 7677 (SCRAM-SHA-256), 5929 / 9266 (tls-unique /
 * tls-exporter channel binding).  XOAUTH2 follows the Google/Microsoft
 * format: base64("user=" u "\x01auth=Bearer " token "\x01\x01").
 */
#include "mail/sasl.h"

#include <ctype.h>
#include <gsasl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base64.h"
#include "mail/smtp_reply.h"

struct sasl_client {
	Gsasl *ctx;                /* NULL for XOAUTH2 */
	Gsasl_session *sctx;
	bool xoauth2;
	int xoauth2_steps;
};

/* Preference orders (see sasl.h): inside verified TLS, and otherwise. */
static const char *const sasl_order[] = {
	"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN", "CRAM-MD5",
};
static const char *const sasl_order_clear[] = {
	"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN",
};

bool sasl_supported(const char *mech)
{
	if (strcasecmp(mech, "XOAUTH2") == 0)
		return true;
	for (size_t i = 0; i < sizeof(sasl_order) / sizeof(sasl_order[0]); i++)
		if (strcasecmp(mech, sasl_order[i]) == 0)
			return true;
	return false;
}

const char *sasl_choose(const struct smtp_caps *caps,
                        const struct sasl_creds *cr, bool have_cb,
                        bool verified_tls)
{
	bool token = cr->oauth_token && cr->oauth_token[0];
	bool pass = cr->password && cr->password[0];
	if (token && smtp_caps_has_mech(caps, "XOAUTH2"))
		return "XOAUTH2";
	if (!pass)
		return NULL;
	const char *const *order = verified_tls ? sasl_order : sasl_order_clear;
	for (size_t i = 0; i < sizeof(sasl_order) / sizeof(sasl_order[0]); i++) {
		if (i == 0 && !have_cb)
			continue;   /* both orders start with SCRAM-SHA-256-PLUS */
		if (smtp_caps_has_mech(caps, order[i]))
			return order[i];
	}
	return NULL;
}

bool sasl_one_round_trip(const char *mech)
{
	/* SCRAM needs a second round trip (server-first, client-final);
	 * LOGIN and CRAM-MD5 start with a server challenge. */
	return strcasecmp(mech, "PLAIN") == 0 || strcasecmp(mech, "XOAUTH2") == 0;
}

static void sasl_wipe_str(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
}

static void sasl_wipe_prop(Gsasl_session *sctx, Gsasl_property p)
{
	/* GNU SASL keeps strdup'ed copies; wipe them before it frees them. */
	const char *v = gsasl_property_fast(sctx, p);
	if (v)
		explicit_bzero((char *)v, strlen(v));
}

void sasl_client_free(struct sasl_client *s)
{
	if (!s)
		return;
	if (s->sctx) {
		sasl_wipe_prop(s->sctx, GSASL_PASSWORD);
		sasl_wipe_prop(s->sctx, GSASL_SCRAM_SALTED_PASSWORD);
		sasl_wipe_prop(s->sctx, GSASL_SCRAM_SERVERKEY);
		sasl_wipe_prop(s->sctx, GSASL_SCRAM_STOREDKEY);
		gsasl_finish(s->sctx);
	}
	if (s->ctx)
		gsasl_done(s->ctx);
	free(s);
}

/* One GNU SASL step with the base64 coding done here, not by
 * gsasl_step64(): that one frees the raw output (for PLAIN "\0user\0pass",
 * for LOGIN the bare password) without wiping it.  Here the decoded input
 * and the raw output are wiped before they are freed.  `b64in` NULL or ""
 * is an empty input.  Returns the GNU SASL code; *b64out (malloc'ed, may be
 * "") is set on GSASL_OK / GSASL_NEEDS_MORE only.  GSASL_BASE64_ERROR for
 * a challenge that is not base64, GSASL_MALLOC_ERROR when out of memory. */
static int sasl_step_b64(Gsasl_session *sctx, const char *b64in, char **b64out)
{
	*b64out = NULL;
	size_t inlen = b64in ? strlen(b64in) : 0;
	size_t cap = inlen / 4 * 3 + 3;
	unsigned char *in = malloc(cap);
	if (!in)
		return GSASL_MALLOC_ERROR;
	size_t n = 0;
	struct dm_err e;
	dm_err_clear(&e);
	if (inlen > 0 && base64_decode(b64in, inlen, in, cap, &n, &e) != DM_OK) {
		free(in);
		return GSASL_BASE64_ERROR;
	}
	char *raw = NULL;
	size_t rawlen = 0;
	int rc = gsasl_step(sctx, (const char *)in, n, &raw, &rawlen);
	explicit_bzero(in, cap);
	free(in);
	if (rc == GSASL_OK || rc == GSASL_NEEDS_MORE) {
		char *o = malloc(base64_encoded_len(rawlen) + 1);
		if (o)
			base64_encode(raw ? raw : "", rawlen, o);
		else
			rc = GSASL_MALLOC_ERROR;
		*b64out = o;
	}
	if (raw) {
		explicit_bzero(raw, rawlen);
		gsasl_free(raw);
	}
	return rc;
}

static enum dm_status sasl_xoauth2_initial(const struct sasl_creds *cr,
                                           char **initial, struct dm_err *err)
{
	size_t ul = strlen(cr->username), tl = strlen(cr->oauth_token);
	size_t n = 5 + ul + 1 + 12 + tl + 2;
	char *raw = malloc(n + 1);
	char *b64 = raw ? malloc(base64_encoded_len(n) + 1) : NULL;
	if (!b64) {
		free(raw);
		return dm_err_set(err, DM_ENOMEM, "out of memory building XOAUTH2");
	}
	memcpy(raw, "user=", 5);
	memcpy(raw + 5, cr->username, ul);
	memcpy(raw + 5 + ul, "\x01" "auth=Bearer ", 13);
	memcpy(raw + 5 + ul + 13, cr->oauth_token, tl);
	memcpy(raw + 5 + ul + 13 + tl, "\x01\x01", 2);
	base64_encode(raw, n, b64);
	explicit_bzero(raw, n);
	free(raw);
	*initial = b64;
	return DM_OK;
}

static enum dm_status sasl_set_cb(struct sasl_client *s, struct transport *t,
                                  struct dm_err *err)
{
	static const struct { const char *type; Gsasl_property prop; } cbs[] = {
		{ "tls-exporter", GSASL_CB_TLS_EXPORTER },
		{ "tls-unique", GSASL_CB_TLS_UNIQUE },
	};
	for (size_t i = 0; t && i < sizeof(cbs) / sizeof(cbs[0]); i++) {
		unsigned char cb[128];
		size_t len = 0;
		if (transport_channel_binding(t, cbs[i].type, cb, sizeof(cb), &len,
		                              NULL) != DM_OK || len == 0)
			continue;
		char b64[200];
		base64_encode(cb, len, b64);
		gsasl_property_set(s->sctx, cbs[i].prop, b64);
		return DM_OK;
	}
	return dm_err_set(err, DM_EAUTH,
	                  "SCRAM-SHA-256-PLUS needs TLS channel binding, which this "
	                  "connection does not provide");
}

enum dm_status sasl_client_start(const char *mech, const struct sasl_creds *cr,
                                 struct transport *t, struct sasl_client **out,
                                 char **initial, struct dm_err *err)
{
	*out = NULL;
	*initial = NULL;
	if (!sasl_supported(mech))
		return dm_err_set(err, DM_EAUTH, "SASL mechanism '%s' is not supported "
		                  "(PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256[-PLUS], XOAUTH2)",
		                  mech);
	if (!cr->username || !cr->username[0])
		return dm_err_set(err, DM_EAUTH, "AUTH %s needs a user name", mech);
	struct sasl_client *s = calloc(1, sizeof(*s));
	if (!s)
		return dm_err_set(err, DM_ENOMEM, "out of memory starting SASL");
	if (strcasecmp(mech, "XOAUTH2") == 0) {
		if (!cr->oauth_token || !cr->oauth_token[0]) {
			free(s);
			return dm_err_set(err, DM_EAUTH, "AUTH XOAUTH2 needs an OAuth token");
		}
		s->xoauth2 = true;
		enum dm_status st = sasl_xoauth2_initial(cr, initial, err);
		if (st != DM_OK) {
			free(s);
			return st;
		}
		*out = s;
		return DM_OK;
	}
	if (!cr->password || !cr->password[0]) {
		free(s);
		return dm_err_set(err, DM_EAUTH, "AUTH %s needs a password", mech);
	}
	int rc = gsasl_init(&s->ctx);
	if (rc != GSASL_OK) {
		free(s);
		return dm_err_set(err, DM_ECRYPTO, "GNU SASL init: %s", gsasl_strerror(rc));
	}
	/* GNU SASL matches mechanism names case-sensitively; ours are not
	 * (sasl_supported(), Email/AuthMechanism). */
	char upper[32];
	size_t ml = strlen(mech);
	for (size_t i = 0; i <= ml && i < sizeof(upper); i++)
		upper[i] = (char)toupper((unsigned char)mech[i]);
	upper[sizeof(upper) - 1] = '\0';
	rc = gsasl_client_start(s->ctx, upper, &s->sctx);
	if (rc != GSASL_OK) {
		sasl_client_free(s);
		return dm_err_set(err, DM_EAUTH, "GNU SASL cannot start %s: %s", mech,
		                  gsasl_strerror(rc));
	}
	gsasl_property_set(s->sctx, GSASL_AUTHID, cr->username);
	gsasl_property_set(s->sctx, GSASL_PASSWORD, cr->password);
	if (strcasecmp(mech, "SCRAM-SHA-256-PLUS") == 0) {
		enum dm_status st = sasl_set_cb(s, t, err);
		if (st != DM_OK) {
			sasl_client_free(s);
			return st;
		}
	}
	/* RFC 4954 4: client-first mechanisms send an initial response;
	 * LOGIN and CRAM-MD5 wait for the server's challenge. */
	if (strcasecmp(mech, "PLAIN") == 0 || strncasecmp(mech, "SCRAM-", 6) == 0) {
		char *o = NULL;
		rc = sasl_step_b64(s->sctx, "", &o);
		if (rc == GSASL_MALLOC_ERROR) {
			sasl_client_free(s);
			return dm_err_set(err, DM_ENOMEM, "out of memory in SASL %s", mech);
		}
		if (rc != GSASL_OK && rc != GSASL_NEEDS_MORE) {
			sasl_client_free(s);
			return dm_err_set(err, DM_EAUTH, "SASL %s: %s", mech,
			                  gsasl_strerror(rc));
		}
		*initial = o;
	}
	*out = s;
	return DM_OK;
}

enum dm_status sasl_client_step(struct sasl_client *s, const char *challenge,
                                char **out, struct dm_err *err)
{
	*out = NULL;
	if (s->xoauth2) {
		/* The 334 carries a JSON error; RFC-less convention: answer with an
		 * empty line, the server then fails the exchange with 535. */
		if (++s->xoauth2_steps > 1)
			return dm_err_set(err, DM_EAUTH, "XOAUTH2: unexpected challenge");
		*out = strdup("");
		return *out ? DM_OK : dm_err_set(err, DM_ENOMEM, "out of memory");
	}
	char *o = NULL;
	int rc = sasl_step_b64(s->sctx, challenge, &o);
	if (rc == GSASL_MALLOC_ERROR)
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	if (rc != GSASL_OK && rc != GSASL_NEEDS_MORE)
		return dm_err_set(err, DM_EAUTH, "SASL exchange failed: %s "
		                  "(bad challenge or server signature mismatch)",
		                  gsasl_strerror(rc));
	*out = o;
	return DM_OK;
}

void sasl_free_response(char *r)
{
	sasl_wipe_str(r);
	free(r);
}
