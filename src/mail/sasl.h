/*
 * sasl.h - client side of SASL (RFC 4422) for SMTP AUTH (RFC 4954), over
 * GNU SASL: PLAIN (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195), SCRAM-SHA-256
 * (RFC 7677, RFC 5802) and SCRAM-SHA-256-PLUS (channel binding from the
 * transport), plus XOAUTH2 built here (Google/Microsoft bearer format).
 *
 * All challenges and responses cross this API in base64, as on the wire.
 * Secrets: the session holds copies of the password/token only until
 * sasl_client_free(), which wipes them (ours and GNU SASL's).
 */
#ifndef DEVMAIL_MAIL_SASL_H
#define DEVMAIL_MAIL_SASL_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"
#include "net/transport.h"

struct sasl_client;

struct sasl_creds {
	const char *username;
	const char *password;      /* NULL when none */
	const char *oauth_token;   /* NULL when none */
};

struct smtp_caps;

/* The best mechanism offered in caps->auth_mechs (smtp_caps_parse(); looked
 * up with smtp_caps_has_mech()) that the credentials can drive.  `verified_tls`: the connection is TLS with a
 * verified (or pinned) server certificate; then
 *   SCRAM-SHA-256-PLUS > SCRAM-SHA-256 > PLAIN > LOGIN > CRAM-MD5
 * (inside verified TLS PLAIN reveals nothing to an eavesdropper and needs
 * one round trip with its initial response, RFC 4954 4; CRAM-MD5 is
 * obsolete, needs a challenge round trip, and makes the server keep the
 * password in clear).  Otherwise (clear text allowed by the operator, or
 * TLS without verification)
 *   SCRAM-SHA-256-PLUS > SCRAM-SHA-256 > CRAM-MD5 > PLAIN > LOGIN
 * so that the password itself is not sent where it can be read.
 * SCRAM-SHA-256-PLUS only when channel binding is available (have_cb).
 * With a token and no password XOAUTH2 only; with both, XOAUTH2 first.
 * NULL when none fits. */
const char *sasl_choose(const struct smtp_caps *caps,
                        const struct sasl_creds *cr, bool have_cb,
                        bool verified_tls);

/* True when `mech` completes in one round trip with an initial response
 * and negotiates no security layer (PLAIN, XOAUTH2 on success): RFC 4954
 * section 4 then lets AUTH be followed by other commands in a pipelined
 * group. */
bool sasl_one_round_trip(const char *mech);

/* True when we implement `mech` (case-insensitive). */
bool sasl_supported(const char *mech);

/* Starts a client exchange for `mech`.  `t` supplies channel binding for
 * *-PLUS (may be NULL otherwise).  *initial gets the base64 initial
 * response to send with AUTH (RFC 4954 4), or NULL when the mechanism
 * starts with a server challenge; caller frees it (it may hold a secret:
 * wipe first).  Errors: DM_EAUTH (unsupported, missing credential, no
 * channel binding), DM_ECRYPTO (library), DM_ENOMEM. */
enum dm_status sasl_client_start(const char *mech, const struct sasl_creds *cr,
                                 struct transport *t, struct sasl_client **out,
                                 char **initial, struct dm_err *err);

/* Answers one base64 challenge (the 334 text) with a base64 response in
 * *out (caller wipes and frees; may be "").  Errors: DM_EAUTH (bad
 * challenge, server signature mismatch), DM_ENOMEM. */
enum dm_status sasl_client_step(struct sasl_client *s, const char *challenge,
                                char **out, struct dm_err *err);

/* Wipes and frees an initial or step response.  NULL ok. */
void sasl_free_response(char *r);

/* Wipes secrets and frees.  NULL ok. */
void sasl_client_free(struct sasl_client *s);

#endif
