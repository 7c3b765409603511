/* test_sasl.c - the SASL client (mail/sasl.c): each mechanism's initial
 * response and steps against known answers (RFC 4616 PLAIN, LOGIN,
 * RFC 2195 CRAM-MD5 section 2 example), SCRAM-SHA-256 end to end against
 * GNU SASL's server (and a forged server signature refused), XOAUTH2, bad
 * challenges, and the mechanism choice.
 *
 * The responses come from sasl_step_b64(), which wipes GNU SASL's raw
 * output before freeing it; the wipe itself is not observable from here,
 * so these tests pin the behaviour it must keep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <gsasl.h>

#include "core/base64.h"
#include "mail/sasl.h"
#include "mail/smtp_reply.h"

/* base64 of n bytes, into a static buffer (tests only). */
static const char *b64(const char *raw, size_t n)
{
	static char out[1024];
	assert_true(base64_encoded_len(n) < sizeof(out));
	base64_encode(raw, n, out);
	return out;
}

/* Decodes a response into out[cap] (NUL-terminated), returns its length. */
static size_t unb64(const char *in, char *out, size_t cap)
{
	size_t n = 0;
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(base64_decode(in, strlen(in), (unsigned char *)out, cap - 1,
	                               &n, &e), DM_OK);
	out[n] = '\0';
	return n;
}

static const struct sasl_creds creds = { "user", "secret", NULL };

static void test_plain_initial(void **state)
{
	(void)state;
	struct sasl_client *s = NULL;
	char *ir = NULL;
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(sasl_client_start("PLAIN", &creds, NULL, &s, &ir, &e), DM_OK);
	assert_non_null(s);
	assert_non_null(ir);
	/* RFC 4616 2: [authzid] NUL authcid NUL passwd */
	assert_string_equal(ir, b64("\0user\0secret", 12));
	sasl_free_response(ir);
	sasl_client_free(s);
}

static void test_login_steps(void **state)
{
	(void)state;
	struct sasl_client *s = NULL;
	char *ir = NULL, *r = NULL;
	struct dm_err e;
	dm_err_clear(&e);
	/* names are case-insensitive (GNU SASL's are not) */
	assert_int_equal(sasl_client_start("login", &creds, NULL, &s, &ir, &e), DM_OK);
	assert_null(ir);   /* LOGIN waits for the server's challenge */
	assert_int_equal(sasl_client_step(s, "VXNlcm5hbWU6", &r, &e), DM_OK);
	assert_string_equal(r, b64("user", 4));
	sasl_free_response(r);
	assert_int_equal(sasl_client_step(s, "UGFzc3dvcmQ6", &r, &e), DM_OK);
	assert_string_equal(r, b64("secret", 6));
	sasl_free_response(r);
	sasl_client_free(s);
}

static void test_cram_md5_rfc2195(void **state)
{
	(void)state;
	const struct sasl_creds tim = { "tim", "tanstaaftanstaaf", NULL };
	struct sasl_client *s = NULL;
	char *ir = NULL, *r = NULL;
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(sasl_client_start("CRAM-MD5", &tim, NULL, &s, &ir, &e), DM_OK);
	assert_null(ir);
	const char *chal = "<1896.697170952@postoffice.reston.mci.net>";
	assert_int_equal(sasl_client_step(s, b64(chal, strlen(chal)), &r, &e), DM_OK);
	char got[256];
	unb64(r, got, sizeof(got));
	assert_string_equal(got, "tim b913a602c7eda7a495b4e6e7334d3890");
	sasl_free_response(r);
	sasl_client_free(s);
}

static void test_bad_challenge(void **state)
{
	(void)state;
	struct sasl_client *s = NULL;
	char *ir = NULL, *r = NULL;
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(sasl_client_start("LOGIN", &creds, NULL, &s, &ir, &e), DM_OK);
	assert_int_equal(sasl_client_step(s, "not*base64!", &r, &e), DM_EAUTH);
	assert_null(r);
	assert_non_null(strstr(e.msg, "bad challenge"));
	sasl_client_free(s);
}

/* ---- SCRAM-SHA-256 against GNU SASL's server ---------------------------- */

static int srv_cb(Gsasl *ctx, Gsasl_session *sctx, Gsasl_property prop)
{
	(void)ctx;
	if (prop != GSASL_PASSWORD)
		return GSASL_NO_CALLBACK;
	const char *authid = gsasl_property_fast(sctx, GSASL_AUTHID);
	if (!authid || strcmp(authid, "user") != 0)
		return GSASL_AUTHENTICATION_ERROR;
	gsasl_property_set(sctx, GSASL_PASSWORD, "secret");
	return GSASL_OK;
}

/* Runs client-first -> server-first -> client-final -> server-final.  With
 * `forge`, the server-final handed to the client carries a wrong
 * signature.  Returns the client's status on the server-final. */
static enum dm_status scram_run(bool forge)
{
	Gsasl *ctx = NULL;
	Gsasl_session *srv = NULL;
	assert_int_equal(gsasl_init(&ctx), GSASL_OK);
	gsasl_callback_set(ctx, srv_cb);
	assert_int_equal(gsasl_server_start(ctx, "SCRAM-SHA-256", &srv), GSASL_OK);

	struct sasl_client *c = NULL;
	char *ir = NULL, *r = NULL, *sout = NULL;
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(sasl_client_start("SCRAM-SHA-256", &creds, NULL, &c, &ir, &e),
	                 DM_OK);
	assert_non_null(ir);
	char raw[512];
	unb64(ir, raw, sizeof(raw));
	/* RFC 5802 7: gs2-header "n,," then n=user,r=nonce */
	assert_memory_equal(raw, "n,,n=user,r=", 12);
	assert_true(strlen(raw) > 12);

	assert_int_equal(gsasl_step64(srv, ir, &sout), GSASL_NEEDS_MORE);
	sasl_free_response(ir);
	assert_int_equal(sasl_client_step(c, sout, &r, &e), DM_OK);
	gsasl_free(sout);
	unb64(r, raw, sizeof(raw));
	assert_non_null(strstr(raw, ",p="));   /* client-final carries a proof */
	assert_null(strstr(raw, "secret"));

	assert_int_equal(gsasl_step64(srv, r, &sout), GSASL_OK);
	sasl_free_response(r);
	unb64(sout, raw, sizeof(raw));
	assert_memory_equal(raw, "v=", 2);
	gsasl_free(sout);
	const char *final = raw;
	char forged[128] = "v=";
	if (forge) {
		char zero[32] = { 0 };
		base64_encode(zero, sizeof(zero), forged + 2);
		final = forged;
	}
	enum dm_status st = sasl_client_step(c, b64(final, strlen(final)), &r, &e);
	if (st == DM_OK) {
		assert_string_equal(r, "");   /* nothing more to say */
		sasl_free_response(r);
	} else {
		assert_null(r);
		assert_non_null(strstr(e.msg, "signature"));
	}
	sasl_client_free(c);
	gsasl_finish(srv);
	gsasl_done(ctx);
	return st;
}

static void test_scram_sha256_ok(void **state)
{
	(void)state;
	assert_int_equal(scram_run(false), DM_OK);
}

static void test_scram_sha256_forged_signature(void **state)
{
	(void)state;
	assert_int_equal(scram_run(true), DM_EAUTH);
}

static void test_scram_plus_needs_cb(void **state)
{
	(void)state;
	struct sasl_client *s = NULL;
	char *ir = NULL;
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(sasl_client_start("SCRAM-SHA-256-PLUS", &creds, NULL, &s, &ir,
	                                   &e), DM_EAUTH);
	assert_null(s);
	assert_null(ir);
	assert_non_null(strstr(e.msg, "channel binding"));
}

/* ---- XOAUTH2, refusals ----------------------------------------------------- */

static void test_xoauth2(void **state)
{
	(void)state;
	const struct sasl_creds tok = { "me@example.com", NULL, "ya29.tok" };
	struct sasl_client *s = NULL;
	char *ir = NULL, *r = NULL;
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(sasl_client_start("XOAUTH2", &tok, NULL, &s, &ir, &e), DM_OK);
	const char want[] = "user=me@example.com\001auth=Bearer ya29.tok\001\001";
	assert_string_equal(ir, b64(want, sizeof(want) - 1));
	sasl_free_response(ir);
	/* the error challenge is answered once with an empty line */
	assert_int_equal(sasl_client_step(s, "eyJzdGF0dXMiOiI0MDEifQ==", &r, &e), DM_OK);
	assert_string_equal(r, "");
	sasl_free_response(r);
	assert_int_equal(sasl_client_step(s, "eyJzdGF0dXMiOiI0MDEifQ==", &r, &e),
	                 DM_EAUTH);
	sasl_client_free(s);
}

static void test_start_refusals(void **state)
{
	(void)state;
	struct sasl_client *s = NULL;
	char *ir = NULL;
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(sasl_client_start("OAUTHBEARER", &creds, NULL, &s, &ir, &e),
	                 DM_EAUTH);
	const struct sasl_creds nopass = { "user", NULL, NULL };
	dm_err_clear(&e);
	assert_int_equal(sasl_client_start("PLAIN", &nopass, NULL, &s, &ir, &e), DM_EAUTH);
	assert_non_null(strstr(e.msg, "password"));
	const struct sasl_creds nouser = { "", "secret", NULL };
	dm_err_clear(&e);
	assert_int_equal(sasl_client_start("PLAIN", &nouser, NULL, &s, &ir, &e), DM_EAUTH);
	assert_null(s);
	assert_null(ir);
}

/* ---- choice ---------------------------------------------------------------- */

static void test_choose(void **state)
{
	(void)state;
	static const struct sasl_creds pw = { "u", "p", NULL };
	static const struct sasl_creds tok = { "u", NULL, "t" };
	static const struct sasl_creds both = { "u", "p", "t" };
	static const struct {
		const char *offered;
		const struct sasl_creds *cr;
		bool cb, verified;
		const char *want;
	} v[] = {
		{ "PLAIN LOGIN CRAM-MD5", &pw, false, true, "PLAIN" },
		{ "PLAIN LOGIN CRAM-MD5", &pw, false, false, "CRAM-MD5" },
		{ "LOGIN PLAIN", &pw, false, false, "PLAIN" },
		{ "LOGIN", &pw, false, true, "LOGIN" },
		{ "PLAIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS", &pw, false, true, "SCRAM-SHA-256" },
		{ "PLAIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS", &pw, true, true, "SCRAM-SHA-256-PLUS" },
		{ "SCRAM-SHA-256-PLUS", &pw, false, true, NULL },
		{ "PLAINX XPLAIN", &pw, false, true, NULL },   /* whole words only */
		{ "", &pw, false, true, NULL },
		{ "PLAIN XOAUTH2", &tok, false, true, "XOAUTH2" },
		{ "PLAIN", &tok, false, true, NULL },
		{ "PLAIN XOAUTH2", &both, false, true, "XOAUTH2" },
		{ "PLAIN", &both, false, true, "PLAIN" },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct smtp_caps caps;
		memset(&caps, 0, sizeof(caps));
		snprintf(caps.auth_mechs, sizeof(caps.auth_mechs), "%s", v[i].offered);
		const char *got = sasl_choose(&caps, v[i].cr, v[i].cb, v[i].verified);
		if (v[i].want == NULL)
			assert_null(got);
		else
			assert_string_equal(got ? got : "(null)", v[i].want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_initial),
		cmocka_unit_test(test_login_steps),
		cmocka_unit_test(test_cram_md5_rfc2195),
		cmocka_unit_test(test_bad_challenge),
		cmocka_unit_test(test_scram_sha256_ok),
		cmocka_unit_test(test_scram_sha256_forged_signature),
		cmocka_unit_test(test_scram_plus_needs_cb),
		cmocka_unit_test(test_xoauth2),
		cmocka_unit_test(test_start_refusals),
		cmocka_unit_test(test_choose),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
