/*
 * test_account.c - the mail account library against a real registry.db and
 * vault.key in a temporary root: round trip, the password sealed in the
 * SQLite file's bytes, all-or-nothing saves, the missing-MailHost message,
 * the AllowPlaintextAuth host match.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/registry.h"
#include "core/vault.h"
#include "mail/account.h"
#include "testroot.h"

#define PW "Tr0ub4dor&3-unique-pw"

static int fx_setup(void **state)
{
	return testroot_reg_setup(state, "account");
}

/* Reads the raw bytes of root/name (the database and its WAL) into a heap
 * buffer; *len receives the size (0 for a missing file). */
static char *slurp(const char *root, const char *name, size_t *len)
{
	char path[512];

	*len = 0;
	snprintf(path, sizeof(path), "%s/%s", root, name);
	char *buf = testroot_slurp(path, len);
	if (!buf) {
		assert_int_equal(errno, ENOENT);
		buf = calloc(1, 1);
		assert_non_null(buf);
	}
	return buf;
}

static bool contains(const char *hay, size_t hlen, const char *needle)
{
	return memmem(hay, hlen, needle, strlen(needle)) != NULL;
}

static void get(struct registry *reg, const char *key, char *buf, size_t cap,
                bool *is_set)
{
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(registry_get(reg, key, buf, cap, is_set, &e), DM_OK);
}

static void save_full(struct testroot_reg *f)
{
	struct account_update u = {
		.mailhost = "smtp.example.com",
		.port = "587",
		.smtps = "off",
		.starttls = "on",
		.require_tls = "yes",
		.from = "Boiler Room <jnior@example.com>",
		.to = "ops@example.com, oncall@example.com",
		.username = "jnior",
		.mechanism = "scram-sha-256",
		.password = PW,
		.password_len = strlen(PW),
	};
	struct dm_err e;
	dm_err_clear(&e);
	enum dm_status st = account_save(f->reg, f->root, &u, &e);
	if (st)
		fprintf(stderr, "save: %s\n", e.msg);
	assert_int_equal(st, DM_OK);
}

/* ---- tests --------------------------------------------------------------- */

static void test_round_trip(void **state)
{
	struct testroot_reg *f = *state;
	struct account a;
	struct dm_err e;

	save_full(f);
	assert_int_equal(registry_set(f->reg, "Email/Timeout", "15", NULL, NULL), DM_OK);
	assert_int_equal(registry_set(f->reg, "IpConfig/HostName", "boiler-1", NULL, NULL), DM_OK);
	assert_int_equal(registry_set(f->reg, "Email/VerifyCertificate", "false", NULL, NULL), DM_OK);
	assert_int_equal(registry_set(f->reg, "Email/CAFile", "/etc/ssl/plant.pem", NULL, NULL), DM_OK);

	/* A second handle, as another process would read it. */
	struct registry *reg2;
	assert_int_equal(registry_open(f->root, &reg2, NULL), DM_OK);
	dm_err_clear(&e);
	enum dm_status st = account_load(reg2, f->root, &a, &e);
	if (st)
		fprintf(stderr, "load: %s\n", e.msg);
	assert_int_equal(st, DM_OK);
	assert_string_equal(a.smtp.host, "smtp.example.com");
	assert_int_equal(a.smtp.port, 587);
	assert_false(a.smtp.smtps);
	assert_true(a.smtp.starttls);
	assert_true(a.smtp.require_tls);
	assert_false(a.smtp.verify);
	assert_int_equal(a.smtp.timeout_ms, 15000);
	assert_string_equal(a.smtp.helo_name, "boiler-1");
	assert_string_equal(a.smtp.cafile, "/etc/ssl/plant.pem");
	assert_null(a.smtp.fingerprint);
	assert_string_equal(a.smtp.username, "jnior");
	assert_string_equal(a.smtp.mechanism, "SCRAM-SHA-256");
	assert_true(a.password_set);
	assert_non_null(a.password);
	assert_string_equal(a.password, PW);
	assert_ptr_equal(a.smtp.password, a.password);
	assert_null(a.oauth_token);
	assert_false(a.smtp.allow_plaintext_auth);
	assert_string_equal(a.from, "Boiler Room <jnior@example.com>");
	assert_true(strstr(a.to, "ops@example.com") != NULL);
	assert_true(strstr(a.to, "oncall@example.com") != NULL);
	account_clear(&a);
	assert_null(a.password);
	assert_false(a.password_set);
	assert_null(a.smtp.host);
	registry_close(reg2);

	/* "" deletes a key (default again); NULL leaves it. */
	struct account_update u2 = { .port = "", .username = "" };
	assert_int_equal(account_save(f->reg, f->root, &u2, NULL), DM_OK);
	assert_int_equal(account_load(f->reg, f->root, &a, NULL), DM_OK);
	assert_int_equal(a.smtp.port, 25);
	assert_null(a.smtp.username);
	assert_string_equal(a.smtp.host, "smtp.example.com");
	assert_string_equal(a.password, PW);
	account_clear(&a);

	/* clear_password removes the sealed key. */
	struct account_update u3 = { .clear_password = true };
	assert_int_equal(account_save(f->reg, f->root, &u3, NULL), DM_OK);
	assert_int_equal(account_load(f->reg, f->root, &a, NULL), DM_OK);
	assert_null(a.password);
	assert_false(a.password_set);
	assert_null(a.smtp.password);
	account_clear(&a);
}

static void test_defaults(void **state)
{
	struct testroot_reg *f = *state;
	struct account a;
	struct account_update u = { .mailhost = "192.0.2.25" };

	assert_int_equal(account_save(f->reg, f->root, &u, NULL), DM_OK);
	assert_int_equal(account_load(f->reg, f->root, &a, NULL), DM_OK);
	assert_string_equal(a.smtp.host, "192.0.2.25");
	assert_int_equal(a.smtp.port, 25);
	assert_false(a.smtp.smtps);
	assert_true(a.smtp.starttls);
	assert_false(a.smtp.require_tls);
	assert_true(a.smtp.verify);
	assert_int_equal(a.smtp.timeout_ms, 60000);
	assert_null(a.smtp.username);
	assert_null(a.smtp.password);
	assert_false(a.password_set);
	/* IpConfig/HostName unset: the system host name. */
	assert_non_null(a.smtp.helo_name);
	assert_true(a.smtp.helo_name[0] != '\0');
	account_clear(&a);
}

static void test_password_sealed_in_file(void **state)
{
	struct testroot_reg *f = *state;
	char value[REG_VALUE_MAX];
	bool is_set = false;
	size_t len;
	char *db, *wal;

	save_full(f);
	get(f->reg, "Email/Password", value, sizeof(value), &is_set);
	assert_true(is_set);
	assert_true(vault_is_sealed(value));
	assert_null(strstr(value, PW));

	/* The bytes on disk, main file and write-ahead log, after a close
	 * (checkpoint) and also while open. */
	wal = slurp(f->root, "registry.db-wal", &len);
	assert_false(contains(wal, len, PW));
	free(wal);
	registry_close(f->reg);
	f->reg = NULL;
	db = slurp(f->root, "registry.db", &len);
	assert_true(len > 0);
	assert_false(contains(db, len, PW));
	/* The test can fail: the sealed form itself is in the file. */
	assert_true(contains(db, len, VAULT_PREFIX) ||
	            contains(db, len, "Email/Password"));
	free(db);
	assert_int_equal(registry_open(f->root, &f->reg, NULL), DM_OK);
}

static void test_bad_field_writes_nothing(void **state)
{
	struct testroot_reg *f = *state;
	char value[REG_VALUE_MAX];
	bool is_set = true;
	struct dm_err e;

	save_full(f);
	get(f->reg, "Email/Password", value, sizeof(value), &is_set);
	char sealed_before[REG_VALUE_MAX];
	memcpy(sealed_before, value, sizeof(value));

	/* Good host and password, bad port: nothing at all changes. */
	struct account_update u = {
		.mailhost = "other.example.net",
		.port = "70000",
		.username = "someone",
		.password = "new-password-xyz",
		.password_len = strlen("new-password-xyz"),
	};
	dm_err_clear(&e);
	assert_int_equal(account_save(f->reg, f->root, &u, &e), DM_EINVAL);
	assert_non_null(strstr(e.msg, "Email/Port"));
	assert_non_null(strstr(e.msg, "70000"));
	assert_null(strstr(e.msg, "new-password-xyz"));
	get(f->reg, "Email/MailHost", value, sizeof(value), NULL);
	assert_string_equal(value, "smtp.example.com");
	get(f->reg, "Email/Port", value, sizeof(value), NULL);
	assert_string_equal(value, "587");
	get(f->reg, "Email/Username", value, sizeof(value), NULL);
	assert_string_equal(value, "jnior");
	get(f->reg, "Email/Password", value, sizeof(value), NULL);
	assert_string_equal(value, sealed_before);

	/* A bad address last in line: the same. */
	struct account_update u2 = { .mailhost = "x.example.org", .to = "a@b.c, not an address" };
	dm_err_clear(&e);
	assert_int_equal(account_save(f->reg, f->root, &u2, &e), DM_EINVAL);
	assert_non_null(strstr(e.msg, "Email/ToAddress"));
	get(f->reg, "Email/MailHost", value, sizeof(value), NULL);
	assert_string_equal(value, "smtp.example.com");

	/* A password with a line break: refused, not quoted, nothing written. */
	struct account_update u3 = { .mailhost = "y.example.org",
	                             .password = "ab\ncd", .password_len = 5 };
	dm_err_clear(&e);
	assert_int_equal(account_save(f->reg, f->root, &u3, &e), DM_EINVAL);
	assert_non_null(strstr(e.msg, "Email/Password"));
	assert_null(strstr(e.msg, "ab\ncd"));
	get(f->reg, "Email/MailHost", value, sizeof(value), NULL);
	assert_string_equal(value, "smtp.example.com");

	/* An empty password is refused (clear_password deletes). */
	struct account_update u4 = { .password = "", .password_len = 0 };
	assert_int_equal(account_save(f->reg, f->root, &u4, NULL), DM_EINVAL);
	get(f->reg, "Email/Password", value, sizeof(value), NULL);
	assert_string_equal(value, sealed_before);
}

static void test_oauth_token(void **state)
{
	struct testroot_reg *f = *state;
	struct account a;
	struct dm_err e;
	static const char tok[] = "ya29.a0-token-for-xoauth2";
	char raw[REG_VALUE_MAX];

	save_full(f);
	struct account_update u = { .oauth_token = tok, .oauth_token_len = strlen(tok) };
	dm_err_clear(&e);
	assert_int_equal(account_save(f->reg, f->root, &u, &e), DM_OK);
	assert_int_equal(registry_get(f->reg, "Email/OAuthToken", raw, sizeof(raw), NULL, NULL), DM_OK);
	assert_true(vault_is_sealed(raw));
	assert_null(strstr(raw, tok));
	assert_int_equal(account_load(f->reg, f->root, &a, NULL), DM_OK);
	assert_non_null(a.oauth_token);
	assert_string_equal(a.oauth_token, tok);
	assert_ptr_equal(a.smtp.oauth_token, a.oauth_token);
	assert_string_equal(a.password, PW);      /* untouched */
	account_clear(&a);
	assert_null(a.oauth_token);

	/* Setting and clearing at once is refused, and changes nothing. */
	struct account_update bad = { .oauth_token = "x", .oauth_token_len = 1,
	                              .clear_oauth_token = true };
	dm_err_clear(&e);
	assert_int_equal(account_save(f->reg, f->root, &bad, &e), DM_EINVAL);
	assert_non_null(strstr(e.msg, "Email/OAuthToken"));
	struct account_update lf = { .oauth_token = "a\nb", .oauth_token_len = 3 };
	assert_int_equal(account_save(f->reg, f->root, &lf, NULL), DM_EINVAL);

	struct account_update clr = { .clear_oauth_token = true, .clear_password = true };
	assert_int_equal(account_save(f->reg, f->root, &clr, NULL), DM_OK);
	assert_int_equal(account_load(f->reg, f->root, &a, NULL), DM_OK);
	assert_null(a.oauth_token);
	assert_null(a.password);
	assert_false(a.password_set);
	account_clear(&a);
}

static void test_load_without_mailhost(void **state)
{
	struct testroot_reg *f = *state;
	struct account a;
	struct dm_err e;
	struct account_update u = { .port = "465", .smtps = "on" };

	assert_int_equal(account_save(f->reg, f->root, &u, NULL), DM_OK);
	dm_err_clear(&e);
	assert_int_equal(account_load(f->reg, f->root, &a, &e), DM_ECONFIG);
	assert_non_null(strstr(e.msg, "Email/MailHost"));
	assert_non_null(strstr(e.msg, "IPCONFIG -E"));
	assert_non_null(strstr(e.msg, "REG"));
	account_clear(&a);
	assert_null(a.password);
}

static void test_allow_plaintext_auth(void **state)
{
	struct testroot_reg *f = *state;
	struct account a;
	struct account_update u = { .mailhost = "Relay.Plant.Local" };

	assert_int_equal(account_save(f->reg, f->root, &u, NULL), DM_OK);

	/* Unset: off. */
	assert_int_equal(account_load(f->reg, f->root, &a, NULL), DM_OK);
	assert_false(a.smtp.allow_plaintext_auth);
	account_clear(&a);

	/* Another host: off. */
	assert_int_equal(registry_set(f->reg, "Email/AllowPlaintextAuth",
	                              "relay2.plant.local", NULL, NULL), DM_OK);
	assert_int_equal(account_load(f->reg, f->root, &a, NULL), DM_OK);
	assert_false(a.smtp.allow_plaintext_auth);
	account_clear(&a);

	/* The same host in another case: on. */
	assert_int_equal(registry_set(f->reg, "Email/AllowPlaintextAuth",
	                              "relay.plant.local", NULL, NULL), DM_OK);
	assert_int_equal(account_load(f->reg, f->root, &a, NULL), DM_OK);
	assert_true(a.smtp.allow_plaintext_auth);
	account_clear(&a);

	/* MailHost moves away: off again. */
	struct account_update u2 = { .mailhost = "smtp.example.com" };
	assert_int_equal(account_save(f->reg, f->root, &u2, NULL), DM_OK);
	assert_int_equal(account_load(f->reg, f->root, &a, NULL), DM_OK);
	assert_false(a.smtp.allow_plaintext_auth);
	account_clear(&a);
}

static void test_tampered_password(void **state)
{
	struct testroot_reg *f = *state;
	struct account a;
	struct dm_err e;

	save_full(f);
	/* Another device key: the stored password no longer unseals. */
	char path[512];
	snprintf(path, sizeof(path), "%s/vault.key", f->root);
	assert_int_equal(remove(path), 0);
	assert_int_equal(vault_key_ensure(f->root, NULL), DM_OK);
	dm_err_clear(&e);
	enum dm_status st = account_load(f->reg, f->root, &a, &e);
	assert_int_equal(st, DM_ECRYPTO);
	assert_true(e.msg[0] != '\0');
	assert_null(a.password);
	account_clear(&a);
}

/* ---- the view ----------------------------------------------------------- */

/* True when the struct's bytes hold `needle` anywhere. */
static bool view_holds(const struct account_view *v, const char *needle)
{
	return memmem(v, sizeof(*v), needle, strlen(needle)) != NULL;
}

static struct account_view *view_new(void)
{
	struct account_view *v = malloc(sizeof(*v));
	assert_non_null(v);
	memset(v, 0xa5, sizeof(*v));   /* account_view() must fill it all */
	return v;
}

static void test_view_defaults(void **state)
{
	struct testroot_reg *f = *state;
	struct account_view *v = view_new();
	struct dm_err e;

	dm_err_clear(&e);
	assert_int_equal(account_view(f->reg, v, &e), DM_OK);
	assert_string_equal(v->host, "");
	assert_int_equal(v->port, 25);
	assert_false(v->smtps);
	assert_true(v->starttls);
	assert_false(v->require_tls);
	assert_string_equal(v->from, "");
	assert_string_equal(v->to, "");
	assert_string_equal(v->username, "");
	assert_string_equal(v->mechanism, "auto");
	assert_false(v->password_set);
	assert_false(v->oauth_token_set);
	assert_true(v->verify);
	assert_string_equal(v->cafile, "");
	assert_string_equal(v->fingerprint, "");
	assert_int_equal(v->timeout_s, 60);
	assert_string_equal(v->allow_plaintext_auth, "");
	assert_true(v->helo[0] != '\0');           /* the system host name */
	assert_string_equal(account_view_security(v), "STARTTLS (when offered)");
	/* No vault key was needed, and none was made. */
	char path[512];
	snprintf(path, sizeof(path), "%s/vault.key", f->root);
	assert_int_equal(access(path, F_OK), -1);
	free(v);
}

static void test_view_after_save(void **state)
{
	struct testroot_reg *f = *state;
	struct account_view *v = view_new();
	static const char token[] = "ya29.view-token-4410";
	static const char fp[] =
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

	save_full(f);
	struct account_update u = { .oauth_token = token,
	                            .oauth_token_len = strlen(token) };
	assert_int_equal(account_save(f->reg, f->root, &u, NULL), DM_OK);
	assert_int_equal(registry_set(f->reg, "Email/Timeout", "15", NULL, NULL), DM_OK);
	assert_int_equal(registry_set(f->reg, "Email/VerifyCertificate", "off", NULL, NULL), DM_OK);
	assert_int_equal(registry_set(f->reg, "Email/CAFile", "/etc/ssl/plant.pem", NULL, NULL), DM_OK);
	assert_int_equal(registry_set(f->reg, "Email/Fingerprint", fp, NULL, NULL), DM_OK);
	assert_int_equal(registry_set(f->reg, "Email/AllowPlaintextAuth", "relay.plant", NULL, NULL), DM_OK);
	assert_int_equal(registry_set(f->reg, "IpConfig/HostName", "boiler-1", NULL, NULL), DM_OK);

	assert_int_equal(account_view(f->reg, v, NULL), DM_OK);
	assert_string_equal(v->host, "smtp.example.com");
	assert_int_equal(v->port, 587);
	assert_false(v->smtps);
	assert_true(v->starttls);
	assert_true(v->require_tls);
	assert_string_equal(v->from, "Boiler Room <jnior@example.com>");
	assert_string_equal(v->to, "ops@example.com, oncall@example.com");
	assert_string_equal(v->username, "jnior");
	assert_string_equal(v->mechanism, "SCRAM-SHA-256");
	assert_true(v->password_set);
	assert_true(v->oauth_token_set);
	assert_false(v->verify);
	assert_string_equal(v->cafile, "/etc/ssl/plant.pem");
	assert_string_equal(v->fingerprint, fp);
	assert_int_equal(v->timeout_s, 15);
	assert_string_equal(v->allow_plaintext_auth, "relay.plant");
	assert_string_equal(v->helo, "boiler-1");
	/* Neither secret, nor even its sealed form, is in the view. */
	assert_false(view_holds(v, PW));
	assert_false(view_holds(v, token));
	assert_false(view_holds(v, VAULT_PREFIX));

	struct account_update smtps = { .smtps = "on" };
	assert_int_equal(account_save(f->reg, f->root, &smtps, NULL), DM_OK);
	assert_int_equal(account_view(f->reg, v, NULL), DM_OK);
	assert_string_equal(account_view_security(v), "SMTPS (TLS from the first byte)");
	struct account_update none = { .smtps = "off", .starttls = "off",
	                               .clear_password = true };
	assert_int_equal(account_save(f->reg, f->root, &none, NULL), DM_OK);
	assert_int_equal(account_view(f->reg, v, NULL), DM_OK);
	assert_string_equal(account_view_security(v), "none");
	assert_false(v->password_set);
	assert_true(v->oauth_token_set);
	free(v);
}

/* The view never unseals: it works with the vault key gone or unreadable,
 * where account_load() cannot. */
static void test_view_without_vault_key(void **state)
{
	struct testroot_reg *f = *state;
	struct account_view *v = view_new();
	struct account a;
	char path[512];

	save_full(f);
	snprintf(path, sizeof(path), "%s/vault.key", f->root);

	/* Missing. */
	assert_int_equal(unlink(path), 0);
	assert_int_not_equal(account_load(f->reg, f->root, &a, NULL), DM_OK);
	account_clear(&a);
	assert_int_equal(account_view(f->reg, v, NULL), DM_OK);
	assert_true(v->password_set);
	assert_string_equal(v->host, "smtp.example.com");
	assert_false(view_holds(v, PW));
	assert_int_equal(access(path, F_OK), -1);   /* not re-created */

	/* Unreadable (a directory where the key file should be: even root
	 * cannot read it as a file). */
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_not_equal(account_load(f->reg, f->root, &a, NULL), DM_OK);
	account_clear(&a);
	assert_int_equal(account_view(f->reg, v, NULL), DM_OK);
	assert_true(v->password_set);
	assert_int_equal(v->port, 587);
	assert_int_equal(rmdir(path), 0);
	free(v);
}

static void test_view_bad_arguments(void **state)
{
	struct testroot_reg *f = *state;
	struct account_view *v = view_new();
	struct dm_err e;

	dm_err_clear(&e);
	assert_int_equal(account_view(NULL, v, &e), DM_EINVAL);
	assert_true(e.msg[0] != '\0');
	assert_int_equal(v->port, 0);                 /* zeroed on error */
	assert_int_equal(account_view(f->reg, NULL, NULL), DM_EINVAL);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_defaults, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_password_sealed_in_file, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_bad_field_writes_nothing, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_load_without_mailhost, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_allow_plaintext_auth, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_tampered_password, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_oauth_token, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_view_defaults, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_view_after_save, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_view_without_vault_key, fx_setup, testroot_reg_teardown),
		cmocka_unit_test_setup_teardown(test_view_bad_arguments, fx_setup, testroot_reg_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
