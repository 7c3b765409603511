/*
 * account.c - the mail account as one unit (see account.h).
 *
 * Saving: every given field is validated by the schema first (so the
 * message names the key, the value and the rule before anything happens),
 * the password is sealed by the vault, and all keys go to the registry in
 * one registry_set_batch() transaction: all of them or none.
 *
 * Loading: the Email keys (defaults applied by the registry) become a
 * struct smtp_settings whose strings point into the struct account; the
 * password and OAuth token are unsealed into heap buffers that
 * account_clear() wipes and frees.
 *
 * Viewing: the same keys as plain values for display; the sealed ones are
 * only tested for being set, never unsealed (account_view() has no data
 * root, so it cannot reach the vault key).
 */
#include "mail/account.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/schema.h"
#include "core/vault.h"

/* Registry key names, in the order account_save() writes them. */
#define ACCOUNT_KEY_MAILHOST  "Email/MailHost"
#define ACCOUNT_KEY_PORT      "Email/Port"
#define ACCOUNT_KEY_SMTPS     "Email/SMTPS"
#define ACCOUNT_KEY_STARTTLS  "Email/StartTLS"
#define ACCOUNT_KEY_REQTLS    "Email/RequireTLS"
#define ACCOUNT_KEY_FROM      "Email/FromAddress"
#define ACCOUNT_KEY_TO        "Email/ToAddress"
#define ACCOUNT_KEY_USERNAME  "Email/Username"
#define ACCOUNT_KEY_MECH      "Email/AuthMechanism"
#define ACCOUNT_KEY_PASSWORD  "Email/Password"
#define ACCOUNT_KEY_OAUTH     "Email/OAuthToken"

#define ACCOUNT_MAX_PAIRS 12

/* ---- saving -------------------------------------------------------------- */

/* Validates one given field and queues it.  "" queues a delete (NULL value
 * in the batch: the key reads as its default again). */
static enum dm_status account_queue(struct registry_pair *pairs, size_t *n,
                                    const char *key, const char *value,
                                    struct dm_err *err)
{
	char canon[REG_VALUE_MAX];
	const struct schema_key *k;
	enum dm_status st;

	if (!value)
		return DM_OK;
	if (*n >= ACCOUNT_MAX_PAIRS)
		return dm_err_set(err, DM_ENOMEM, "too many account fields");
	k = schema_find(key);
	if (!k)
		return dm_err_set(err, DM_EINVAL, "%s: not declared in the schema", key);
	if (value[0] != '\0' &&
	    (st = schema_validate(k, value, canon, sizeof(canon), err)))
		return st;
	pairs[*n].key = k->name;
	pairs[*n].value = value[0] ? value : NULL;
	(*n)++;
	return DM_OK;
}

/* A secret the SASL layer can carry: not empty, no NUL, CR or LF (they
 * would end or corrupt the AUTH exchange).  The value is never quoted. */
static enum dm_status account_check_secret(const char *key, const char *what,
                                           const char *p, size_t len,
                                           struct dm_err *err)
{
	if (len == 0)
		return dm_err_set(err, DM_EINVAL, "%s: an empty %s cannot be "
		                  "stored (clear it instead)", key, what);
	if (len > VAULT_PLAIN_MAX ||
	    vault_sealed_len(len) >= REG_VALUE_MAX)
		return dm_err_set(err, DM_EINVAL, "%s: the %s is too long "
		                  "(%zu bytes; its sealed form must stay under %d "
		                  "bytes)", key, what, len, REG_VALUE_MAX);
	for (size_t i = 0; i < len; i++)
		if (p[i] == '\0' || p[i] == '\r' || p[i] == '\n')
			return dm_err_set(err, DM_EINVAL, "%s: the %s contains a "
			                  "NUL, CR or LF character, which cannot be sent "
			                  "in AUTH", key, what);
	return DM_OK;
}

/* Queues a sealed key: the secret sealed on entry (the registry never sees
 * the clear text; *sealed receives the heap copy the caller wipes), or a
 * delete with `clear`, or nothing when neither is given. */
static enum dm_status account_queue_secret(struct registry_pair *pairs,
                                           size_t *n, const char *root,
                                           const char *key, const char *what,
                                           const char *secret, size_t len,
                                           bool clear, char **sealed,
                                           struct dm_err *err)
{
	enum dm_status st;

	if (clear && secret)
		return dm_err_set(err, DM_EINVAL, "%s: a new %s and clearing it "
		                  "together", key, what);
	if (secret) {
		if ((st = account_check_secret(key, what, secret, len, err)))
			return st;
		if ((st = vault_seal(root, secret, len, sealed, err)))
			return st;
		pairs[*n].key = key;
		pairs[*n].value = *sealed;
		(*n)++;
	} else if (clear) {
		pairs[*n].key = key;
		pairs[*n].value = NULL;
		(*n)++;
	}
	return DM_OK;
}

static void account_free_sealed(char *sealed)
{
	if (sealed) {
		vault_wipe(sealed, strlen(sealed));
		free(sealed);
	}
}

enum dm_status account_save(struct registry *reg, const char *root,
                            const struct account_update *u,
                            struct dm_err *err)
{
	struct registry_pair pairs[ACCOUNT_MAX_PAIRS];
	char *sealed = NULL, *sealed_token = NULL;
	size_t n = 0;
	enum dm_status st;

	if (!reg || !root || !u)
		return dm_err_set(err, DM_EINVAL, "account_save: missing argument");
	if ((st = account_queue(pairs, &n, ACCOUNT_KEY_MAILHOST, u->mailhost, err)) ||
	    (st = account_queue(pairs, &n, ACCOUNT_KEY_PORT, u->port, err)) ||
	    (st = account_queue(pairs, &n, ACCOUNT_KEY_SMTPS, u->smtps, err)) ||
	    (st = account_queue(pairs, &n, ACCOUNT_KEY_STARTTLS, u->starttls, err)) ||
	    (st = account_queue(pairs, &n, ACCOUNT_KEY_REQTLS, u->require_tls, err)) ||
	    (st = account_queue(pairs, &n, ACCOUNT_KEY_FROM, u->from, err)) ||
	    (st = account_queue(pairs, &n, ACCOUNT_KEY_TO, u->to, err)) ||
	    (st = account_queue(pairs, &n, ACCOUNT_KEY_USERNAME, u->username, err)) ||
	    (st = account_queue(pairs, &n, ACCOUNT_KEY_MECH, u->mechanism, err)))
		return st;

	st = account_queue_secret(pairs, &n, root, ACCOUNT_KEY_PASSWORD,
	                          "password", u->password, u->password_len,
	                          u->clear_password, &sealed, err);
	if (st == DM_OK)
		st = account_queue_secret(pairs, &n, root, ACCOUNT_KEY_OAUTH,
		                          "OAuth token", u->oauth_token,
		                          u->oauth_token_len, u->clear_oauth_token,
		                          &sealed_token, err);
	if (st == DM_OK && n > 0)
		st = registry_set_batch(reg, pairs, n, true, err);
	account_free_sealed(sealed);
	account_free_sealed(sealed_token);
	return st;
}

/* ---- loading ------------------------------------------------------------- */

static enum dm_status account_get(struct registry *reg, const char *key,
                                  char *buf, size_t cap, bool *is_set,
                                  struct dm_err *err)
{
	return registry_get(reg, key, buf, cap, is_set, err);
}

/* Host names compare without case and without IPv6 brackets. */
static bool account_same_host(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la >= 2 && a[0] == '[' && a[la - 1] == ']') {
		a++;
		la -= 2;
	}
	if (lb >= 2 && b[0] == '[' && b[lb - 1] == ']') {
		b++;
		lb -= 2;
	}
	return la == lb && la > 0 && strncasecmp(a, b, la) == 0;
}

/* Unseals a sealed key into *out (heap, NUL-terminated) when it is set. */
static enum dm_status account_unseal(struct registry *reg, const char *root,
                                     const char *key, char **out,
                                     struct dm_err *err)
{
	char sealed[REG_VALUE_MAX];
	bool is_set = false;
	size_t len = 0;
	enum dm_status st;

	*out = NULL;
	if ((st = account_get(reg, key, sealed, sizeof(sealed), &is_set, err)))
		return st;
	if (!is_set || !sealed[0])
		return DM_OK;
	st = vault_unseal(root, sealed, out, &len, err);
	vault_wipe(sealed, sizeof(sealed));
	if (st) {
		*out = NULL;
		return dm_err_set(err, st, "%s: cannot be unsealed (set it again "
		                  "with IPCONFIG -E)", key);
	}
	return DM_OK;
}

/* account_load() inside its read snapshot. */
static enum dm_status account_load_keys(struct registry *reg, const char *root,
                                        struct account *a, struct dm_err *err)
{
	char buf[REG_VALUE_MAX];
	bool is_set = false, b;
	long v;
	enum dm_status st;

	if ((st = account_get(reg, ACCOUNT_KEY_MAILHOST, a->host, sizeof(a->host),
	                      &is_set, err)))
		return st;
	if (!is_set || !a->host[0])
		return dm_err_set(err, DM_ECONFIG, "%s is not set: set the mail "
		                  "server with IPCONFIG -E (or REG %s = "
		                  "smtp.example.com)", ACCOUNT_KEY_MAILHOST,
		                  ACCOUNT_KEY_MAILHOST);

	if ((st = registry_get_int(reg, ACCOUNT_KEY_PORT, &v, err)))
		return st;
	a->smtp.port = (unsigned)v;
	if ((st = registry_get_bool(reg, ACCOUNT_KEY_SMTPS, &b, err)))
		return st;
	a->smtp.smtps = b;
	if ((st = registry_get_bool(reg, ACCOUNT_KEY_STARTTLS, &b, err)))
		return st;
	a->smtp.starttls = b;
	if ((st = registry_get_bool(reg, ACCOUNT_KEY_REQTLS, &b, err)))
		return st;
	a->smtp.require_tls = b;
	if ((st = registry_get_bool(reg, "Email/VerifyCertificate", &b, err)))
		return st;
	a->smtp.verify = b;
	if ((st = registry_get_int(reg, "Email/Timeout", &v, err)))
		return st;
	a->smtp.timeout_ms = (int)(v * 1000);

	if ((st = account_get(reg, "Email/CAFile", a->cafile, sizeof(a->cafile),
	                      NULL, err)) ||
	    (st = account_get(reg, "Email/Fingerprint", a->fingerprint,
	                      sizeof(a->fingerprint), NULL, err)) ||
	    (st = account_get(reg, ACCOUNT_KEY_USERNAME, a->username,
	                      sizeof(a->username), NULL, err)) ||
	    (st = account_get(reg, ACCOUNT_KEY_MECH, a->mechanism,
	                      sizeof(a->mechanism), NULL, err)) ||
	    (st = account_get(reg, ACCOUNT_KEY_FROM, a->from, sizeof(a->from),
	                      NULL, err)) ||
	    (st = account_get(reg, ACCOUNT_KEY_TO, a->to, sizeof(a->to),
	                      NULL, err)) ||
	    (st = account_get(reg, "IpConfig/HostName", a->helo, sizeof(a->helo),
	                      NULL, err)))
		return st;

	/* The override holds for the one host it names, nothing else. */
	if ((st = account_get(reg, "Email/AllowPlaintextAuth", buf, sizeof(buf),
	                      &is_set, err)))
		return st;
	a->smtp.allow_plaintext_auth = is_set && account_same_host(buf, a->host);

	if ((st = account_unseal(reg, root, ACCOUNT_KEY_PASSWORD, &a->password,
	                         err)))
		return st;
	a->password_set = a->password != NULL;
	if ((st = account_unseal(reg, root, ACCOUNT_KEY_OAUTH, &a->oauth_token,
	                         err)))
		return st;

	a->smtp.host = a->host;
	a->smtp.cafile = a->cafile[0] ? a->cafile : NULL;
	a->smtp.fingerprint = a->fingerprint[0] ? a->fingerprint : NULL;
	a->smtp.helo_name = a->helo[0] ? a->helo : NULL;
	a->smtp.username = a->username[0] ? a->username : NULL;
	a->smtp.password = a->password;
	a->smtp.oauth_token = a->oauth_token;
	a->smtp.mechanism = a->mechanism[0] ? a->mechanism : NULL;
	return DM_OK;
}

enum dm_status account_load(struct registry *reg, const char *root,
                            struct account *a, struct dm_err *err)
{
	enum dm_status st;

	memset(a, 0, sizeof(*a));
	if (!reg || !root)
		return dm_err_set(err, DM_EINVAL, "account_load: missing argument");
	/* One snapshot for the ~20 keys: the account is read as one unit,
	 * and the registry's read lock is taken once. */
	if ((st = registry_read_begin(reg, err)))
		return st;
	st = account_load_keys(reg, root, a, err);
	registry_read_end(reg);
	return st;
}

void account_clear(struct account *a)
{
	if (!a)
		return;
	if (a->password) {
		vault_wipe(a->password, strlen(a->password));
		free(a->password);
	}
	if (a->oauth_token) {
		vault_wipe(a->oauth_token, strlen(a->oauth_token));
		free(a->oauth_token);
	}
	vault_wipe(a, sizeof(*a));
	memset(a, 0, sizeof(*a));
}

/* ---- viewing ------------------------------------------------------------- */

/* Whether a sealed key holds a value; the sealed text is wiped. */
static enum dm_status account_view_sealed(struct registry *reg, const char *key,
                                          bool *set, struct dm_err *err)
{
	char sealed[REG_VALUE_MAX];
	bool is_set = false;
	enum dm_status st;

	st = account_get(reg, key, sealed, sizeof(sealed), &is_set, err);
	*set = st == DM_OK && is_set && sealed[0] != '\0';
	vault_wipe(sealed, sizeof(sealed));
	return st;
}

enum dm_status account_view(struct registry *reg, struct account_view *v,
                            struct dm_err *err)
{
	long port = 0, timeout = 0;
	enum dm_status st;

	if (!v)
		return dm_err_set(err, DM_EINVAL, "account_view: missing argument");
	memset(v, 0, sizeof(*v));
	if (!reg)
		return dm_err_set(err, DM_EINVAL, "account_view: missing argument");
	if ((st = account_get(reg, ACCOUNT_KEY_MAILHOST, v->host, sizeof(v->host),
	                      NULL, err)) ||
	    (st = registry_get_int(reg, ACCOUNT_KEY_PORT, &port, err)) ||
	    (st = registry_get_bool(reg, ACCOUNT_KEY_SMTPS, &v->smtps, err)) ||
	    (st = registry_get_bool(reg, ACCOUNT_KEY_STARTTLS, &v->starttls, err)) ||
	    (st = registry_get_bool(reg, ACCOUNT_KEY_REQTLS, &v->require_tls, err)) ||
	    (st = account_get(reg, ACCOUNT_KEY_FROM, v->from, sizeof(v->from),
	                      NULL, err)) ||
	    (st = account_get(reg, ACCOUNT_KEY_TO, v->to, sizeof(v->to), NULL,
	                      err)) ||
	    (st = account_get(reg, ACCOUNT_KEY_USERNAME, v->username,
	                      sizeof(v->username), NULL, err)) ||
	    (st = account_get(reg, ACCOUNT_KEY_MECH, v->mechanism,
	                      sizeof(v->mechanism), NULL, err)) ||
	    (st = account_view_sealed(reg, ACCOUNT_KEY_PASSWORD, &v->password_set,
	                              err)) ||
	    (st = account_view_sealed(reg, ACCOUNT_KEY_OAUTH, &v->oauth_token_set,
	                              err)) ||
	    (st = registry_get_bool(reg, "Email/VerifyCertificate", &v->verify,
	                            err)) ||
	    (st = account_get(reg, "Email/CAFile", v->cafile, sizeof(v->cafile),
	                      NULL, err)) ||
	    (st = account_get(reg, "Email/Fingerprint", v->fingerprint,
	                      sizeof(v->fingerprint), NULL, err)) ||
	    (st = registry_get_int(reg, "Email/Timeout", &timeout, err)) ||
	    (st = account_get(reg, "Email/AllowPlaintextAuth",
	                      v->allow_plaintext_auth,
	                      sizeof(v->allow_plaintext_auth), NULL, err)) ||
	    (st = account_get(reg, "IpConfig/HostName", v->helo, sizeof(v->helo),
	                      NULL, err))) {
		memset(v, 0, sizeof(*v));
		return st;
	}
	v->port = (unsigned)port;
	v->timeout_s = (unsigned)timeout;
	return DM_OK;
}

const char *account_view_security(const struct account_view *v)
{
	if (v->smtps)
		return "SMTPS (TLS from the first byte)";
	return v->starttls ? "STARTTLS (when offered)" : "none";
}
