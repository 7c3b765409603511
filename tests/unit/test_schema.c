/* test_schema.c - the key table and per-type validation, table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/schema.h"
#include "core/text.h"
#include "mail/address.h"
#include "mail/sasl.h"

struct vcase {
	const char *key;
	const char *value;
	const char *want;   /* canonical form; NULL: must be refused */
};

static const char hex64[] =
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char hexcolon[] =
	"01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:"
	"01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF";

static const struct vcase valid_cases[] = {
	{ "Email/Port", "587", "587" },
	{ "Email/Port", " 465 ", "465" },
	{ "Email/Port", "0025", "25" },
	{ "Email/Port", "1", "1" },
	{ "Email/Port", "65535", "65535" },
	{ "Email/SMTPS", "ON", "true" },
	{ "Email/SMTPS", "off", "false" },
	{ "Email/StartTLS", "Yes", "true" },
	{ "Email/StartTLS", "no", "false" },
	{ "Email/RequireTLS", "1", "true" },
	{ "Email/RequireTLS", "0", "false" },
	{ "Email/VerifyCertificate", "FALSE", "false" },
	{ "Email/MailHost", "smtp.example.com", "smtp.example.com" },
	{ "Email/MailHost", "localhost", "localhost" },
	{ "Email/MailHost", "mail.example.com.", "mail.example.com." },
	{ "Email/MailHost", "192.0.2.25", "192.0.2.25" },
	{ "Email/MailHost", "2001:db8::1", "2001:db8::1" },
	{ "Email/MailHost", "[::1]", "::1" },
	{ "Email/MailHost", "a-b.x1.example", "a-b.x1.example" },
	{ "Email/AllowPlaintextAuth", "relay.plant.local", "relay.plant.local" },
	{ "Email/FromAddress", "jnior@example.com", "jnior@example.com" },
	{ "Email/FromAddress", "Boiler Room <jnior@example.com>",
	  "Boiler Room <jnior@example.com>" },
	{ "Email/FromAddress", "\"Doe, John\" <j.doe+io@x.org>",
	  "\"Doe, John\" <j.doe+io@x.org>" },
	{ "Email/FromAddress", "a@[192.0.2.1]", "a@[192.0.2.1]" },
	{ "Email/FromAddress", "a@[IPv6:2001:db8::1]", "a@[IPv6:2001:db8::1]" },
	{ "Email/ToAddress", "a@b.com", "a@b.com" },
	{ "Email/ToAddress", "a@b.com,c@d.org", "a@b.com, c@d.org" },
	{ "Email/ToAddress", "\"Doe, John\" <j@x.org> ,  k@y.org",
	  "\"Doe, John\" <j@x.org>, k@y.org" },
	{ "Email/Username", "jnior", "jnior" },
	{ "Email/Username", "Jos\xc3\xa9 M\xc3\xbcller", "Jos\xc3\xa9 M\xc3\xbcller" },
	{ "Email/AuthMechanism", "plain", "PLAIN" },
	{ "Email/AuthMechanism", "scram-sha-256", "SCRAM-SHA-256" },
	{ "Email/AuthMechanism", "AUTO", "auto" },
	{ "Email/AuthMechanism", "xoauth2", "XOAUTH2" },
	{ "Email/AuthMechanism", "scram-sha-256-plus", "SCRAM-SHA-256-PLUS" },
	{ "Email/CAFile", "/etc/ssl/plant-ca.pem", "/etc/ssl/plant-ca.pem" },
	{ "Email/Fingerprint", hex64, hex64 },
	{ "Email/Fingerprint", hexcolon,
	  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" },
	{ "Email/Timeout", "3600", "3600" },
	{ "Events/OnBoot/Email", "true", "true" },
	{ "IpConfig/HostName", "boiler-room-1", "boiler-room-1" },
	{ "IpConfig/HostName", "Boiler-Room.plant.example", "Boiler-Room.plant.example" },
	{ "IpConfig/HostName", " io7.example. ", "io7.example" },   /* FQDN dot dropped */
	{ "IpConfig/HostName", "3com", "3com" },
	{ "Log/MaxSize", "4096", "4096" },
	{ "Outbox/MaxAge", "31536000", "31536000" },
	{ "Outbox/RetryMin", "86400", "86400" },
	{ "Outbox/RetryMax", "604800", "604800" },
};

static const struct vcase invalid_cases[] = {
	/* int */
	{ "Email/Port", "70000", NULL }, { "Email/Port", "0", NULL },
	{ "Email/Port", "-1", NULL }, { "Email/Port", "abc", NULL },
	{ "Email/Port", "25x", NULL }, { "Email/Port", "", NULL },
	{ "Email/Port", "2 5", NULL }, { "Email/Port", "0x19", NULL },
	{ "Email/Port", "+", NULL }, { "Email/Port", "99999999999999999999999", NULL },
	{ "Email/Port", "25\n", NULL }, { "Email/Timeout", "3601", NULL },
	{ "Log/MaxSize", "4095", NULL }, { "Outbox/MaxAge", "59", NULL },
	{ "Outbox/RetryMin", "86401", NULL }, { "Outbox/RetryMax", "604801", NULL },
	/* bool */
	{ "Email/SMTPS", "maybe", NULL }, { "Email/SMTPS", "", NULL },
	{ "Email/StartTLS", "truee", NULL }, { "Email/StartTLS", "2", NULL },
	{ "Email/RequireTLS", "t", NULL }, { "Events/OnBoot/Email", "true\r", NULL },
	/* host */
	{ "Email/MailHost", "", NULL }, { "Email/MailHost", "-a.com", NULL },
	{ "Email/MailHost", "a-.com", NULL }, { "Email/MailHost", "a..b", NULL },
	{ "Email/MailHost", "a_b.com", NULL }, { "Email/MailHost", "256.1.1.1", NULL },
	{ "Email/MailHost", "[::1", NULL }, { "Email/MailHost", "[192.0.2.1]", NULL },
	{ "Email/MailHost", "[zz::1]", NULL }, { "Email/MailHost", "host name", NULL },
	{ "Email/MailHost", "exa$mple.com", NULL }, { "Email/MailHost", ".", NULL },
	{ "Email/MailHost", "mail.example.com\nRCPT TO:<x@y>", NULL },
	{ "Email/AllowPlaintextAuth", "a@b", NULL },
	/* address */
	{ "Email/FromAddress", "", NULL }, { "Email/FromAddress", "foo", NULL },
	{ "Email/FromAddress", "@x.com", NULL }, { "Email/FromAddress", "a@", NULL },
	{ "Email/FromAddress", "a@@b.com", NULL }, { "Email/FromAddress", "a b@c.com", NULL },
	{ "Email/FromAddress", ".a@b.com", NULL }, { "Email/FromAddress", "a.@b.com", NULL },
	{ "Email/FromAddress", "a..b@c.com", NULL }, { "Email/FromAddress", "Name <a@b.com", NULL },
	{ "Email/FromAddress", "Name a@b.com>", NULL }, { "Email/FromAddress", "<>", NULL },
	{ "Email/FromAddress", "a@-b.com", NULL }, { "Email/FromAddress", "\"Bad <a@b.com>", NULL },
	{ "Email/FromAddress", "a@b.com\r\nBcc: x@y.com", NULL },
	{ "Email/FromAddress", "a@b.com, c@d.com", NULL },
	/* address list */
	{ "Email/ToAddress", "a@b.com,", NULL }, { "Email/ToAddress", ",a@b.com", NULL },
	{ "Email/ToAddress", "a@b.com,,c@d.com", NULL }, { "Email/ToAddress", "a@b.com, bad", NULL },
	{ "Email/ToAddress", "", NULL }, { "Email/ToAddress", "a@b.com\nc@d.com", NULL },
	/* enum */
	{ "Email/AuthMechanism", "DIGEST-MD5", NULL }, { "Email/AuthMechanism", "", NULL },
	{ "Email/AuthMechanism", "plainx", NULL }, { "Email/AuthMechanism", "auto|PLAIN", NULL },
	{ "Email/AuthMechanism", "PLA", NULL },
	{ "Email/AuthMechanism", "OAUTHBEARER", NULL },   /* sasl.c lacks it */
	/* path */
	{ "Email/CAFile", "relative/ca.pem", NULL }, { "Email/CAFile", "", NULL },
	{ "Email/CAFile", "~/ca.pem", NULL }, { "Email/CAFile", "/etc/ca\x01.pem", NULL },
	/* sha256 */
	{ "Email/Fingerprint", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", NULL },
	{ "Email/Fingerprint", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0", NULL },
	{ "Email/Fingerprint", "g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", NULL },
	{ "Email/Fingerprint", ":0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", NULL },
	{ "Email/Fingerprint", "012:3456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", NULL },
	{ "Email/Fingerprint", "", NULL },
	/* text */
	{ "Email/Username", "a\nb", NULL }, { "Email/Username", "a\rb", NULL },
	{ "Email/Username", "a\tb", NULL }, { "Email/Username", "a\x01" "b", NULL },
	{ "Email/Username", "a\x7f" "b", NULL }, { "IpConfig/HostName", "x\r\n", NULL },
	/* host name: EHLO name and Message-ID right side */
	{ "IpConfig/HostName", "Boiler Room", NULL }, { "IpConfig/HostName", "", NULL },
	{ "IpConfig/HostName", "boiler_room", NULL }, { "IpConfig/HostName", "-io", NULL },
	{ "IpConfig/HostName", "io-", NULL }, { "IpConfig/HostName", "a..b", NULL },
	{ "IpConfig/HostName", "192.0.2.7", NULL }, { "IpConfig/HostName", "2001:db8::7", NULL },
	{ "IpConfig/HostName", "[192.0.2.7]", NULL }, { "IpConfig/HostName", "io@plant", NULL },
	{ "IpConfig/HostName", "b\xc3\xb6iler", NULL }, { "IpConfig/HostName", "io>x", NULL },
	{ "IpConfig/HostName", "io.123", NULL },
};

/* The message names the key, the (escaped) value and the rule. */
static void check_message(const struct schema_key *k, const char *value,
                          const struct dm_err *err)
{
	char esc[96], rule[160], quoted[128];

	text_escape(value, esc, sizeof(esc));
	snprintf(quoted, sizeof(quoted), "'%s'", esc);
	schema_type_str(k, rule, sizeof(rule));
	if (!strstr(err->msg, k->name) || !strstr(err->msg, quoted) ||
	    !strstr(err->msg, rule))
		fail_msg("message '%s' lacks key %s, value %s or rule %s",
		         err->msg, k->name, quoted, rule);
	assert_null(strchr(err->msg, '\n'));
	assert_null(strchr(err->msg, '\r'));
}

static void test_valid_values_canonicalised(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
		const struct vcase *c = &valid_cases[i];
		const struct schema_key *k = schema_find(c->key);
		char out[SCHEMA_VALUE_MAX];
		struct dm_err err;

		dm_err_clear(&err);
		assert_non_null(k);
		if (schema_validate(k, c->value, out, sizeof(out), &err) != DM_OK)
			fail_msg("case %zu %s='%s' refused: %s", i, c->key, c->value, err.msg);
		assert_string_equal(out, c->want);
	}
}

static void test_invalid_values_refused(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(invalid_cases) / sizeof(invalid_cases[0]); i++) {
		const struct vcase *c = &invalid_cases[i];
		const struct schema_key *k = schema_find(c->key);
		char out[SCHEMA_VALUE_MAX];
		struct dm_err err;

		dm_err_clear(&err);
		assert_non_null(k);
		if (schema_validate(k, c->value, out, sizeof(out), &err) != DM_EINVAL)
			fail_msg("case %zu %s='%s' accepted as '%s'", i, c->key, c->value, out);
		check_message(k, c->value, &err);
	}
}

static void test_every_type_refuses_control_and_overlong(void **state)
{
	static char big[SCHEMA_VALUE_MAX + 1];
	size_t n;
	const struct schema_key *keys = schema_keys(&n);

	(void)state;
	memset(big, 'a', SCHEMA_VALUE_MAX);
	for (size_t i = 0; i < n; i++) {
		char out[SCHEMA_VALUE_MAX];
		struct dm_err err;
		enum dm_status want = keys[i].type == SCHEMA_SEALED ? DM_EPERM : DM_EINVAL;

		dm_err_clear(&err);
		assert_int_equal(schema_validate(&keys[i], "x\ny", out, sizeof(out), &err), want);
		dm_err_clear(&err);
		assert_int_equal(schema_validate(&keys[i], big, out, sizeof(out), &err), want);
		assert_non_null(strstr(err.msg, keys[i].name));
	}
	/* Just under the cap is fine for text. */
	char out[SCHEMA_VALUE_MAX];
	big[SCHEMA_VALUE_MAX - 1] = '\0';
	assert_int_equal(schema_validate(schema_find("Email/Username"), big, out,
	                                 sizeof(out), NULL), DM_OK);
	assert_int_equal(strlen(out), SCHEMA_VALUE_MAX - 1);
}

static void test_port_message_exact(void **state)
{
	char out[64];
	struct dm_err err;

	(void)state;
	dm_err_clear(&err);
	assert_int_equal(schema_validate(schema_find("email/port"), "70000", out,
	                                 sizeof(out), &err), DM_EINVAL);
	assert_string_equal(err.msg, "Email/Port: '70000' is out of range (integer 1-65535)");
	dm_err_clear(&err);
	assert_int_equal(schema_validate(schema_find("Email/Username"), "a\r\nb", out,
	                                 sizeof(out), &err), DM_EINVAL);
	assert_non_null(strstr(err.msg, "'a\\r\\nb'"));
}

static void test_sealed_refused_in_clear(void **state)
{
	const char *sealed[] = { "Email/Password", "Email/OAuthToken" };
	char out[64];

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct dm_err err;
		dm_err_clear(&err);
		assert_int_equal(schema_validate(schema_find(sealed[i]), "hunter2", out,
		                                 sizeof(out), &err), DM_EPERM);
		assert_non_null(strstr(err.msg, sealed[i]));
		assert_non_null(strstr(err.msg, "IPCONFIG"));
		assert_null(strstr(err.msg, "hunter2"));
	}
}

static void test_table_consistent(void **state)
{
	size_t n;
	const struct schema_key *keys = schema_keys(&n);

	(void)state;
	assert_true(n >= 22);
	for (size_t i = 0; i < n; i++) {
		const struct schema_key *k = &keys[i];
		char out[SCHEMA_VALUE_MAX];
		assert_true(schema_name_ok(k->name));
		assert_ptr_equal(schema_find(k->name), k);
		assert_non_null(k->summary);
		assert_null(strchr(k->summary, '|'));
		assert_true(k->description && strlen(k->description) > 40);
		for (size_t j = 0; j < i; j++)
			assert_true(strcasecmp(keys[j].name, k->name) != 0);
		if (k->def) {   /* every default passes its own rule unchanged */
			assert_int_equal(schema_validate(k, k->def, out, sizeof(out), NULL), DM_OK);
			assert_string_equal(out, k->def);
		}
	}
}

static void test_find_and_names(void **state)
{
	(void)state;
	assert_string_equal(schema_find("EMAIL/PORT")->name, "Email/Port");
	assert_string_equal(schema_find("events/onboot/email")->name, "Events/OnBoot/Email");
	assert_null(schema_find("Email/Nope"));
	assert_null(schema_find("Email"));
	assert_true(schema_name_ok("MyApp/Some_Key-1.x"));
	assert_true(schema_name_ok("A/B/C"));
	assert_false(schema_name_ok("Email"));
	assert_false(schema_name_ok("/Email/Port"));
	assert_false(schema_name_ok("Email/Port/"));
	assert_false(schema_name_ok("Email//Port"));
	assert_false(schema_name_ok("Email/Po rt"));
	assert_false(schema_name_ok("Email/Port="));
	assert_false(schema_name_ok(""));
	char longname[200];
	memset(longname, 'a', sizeof(longname));
	longname[1] = '/';
	longname[129] = '\0';
	assert_false(schema_name_ok(longname));
	longname[128] = '\0';
	assert_true(schema_name_ok(longname));
}

static void test_defaults_and_types(void **state)
{
	char buf[256];

	(void)state;
	assert_string_equal(schema_type_str(schema_find("Email/Port"), buf, sizeof(buf)),
	                    "integer 1-65535");
	assert_string_equal(schema_type_str(schema_find("Email/AuthMechanism"), buf, sizeof(buf)),
	                    "one of auto, PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, "
	                    "SCRAM-SHA-256-PLUS, XOAUTH2");
	assert_string_equal(schema_default_display(schema_find("Email/MailHost")), "none");
	assert_string_equal(schema_default_display(schema_find("IpConfig/HostName")),
	                    "system host name");
	assert_string_equal(schema_type_str(schema_find("IpConfig/HostName"), buf,
	                                    sizeof(buf)), "host name");
	char host[256] = "";
	gethostname(host, sizeof(host));
	assert_string_equal(schema_default_value(schema_find("IpConfig/HostName"), buf,
	                                         sizeof(buf)), host);
	assert_string_equal(schema_default_value(schema_find("Email/Port"), buf, sizeof(buf)), "25");
	assert_string_equal(schema_default_value(schema_find("Email/MailHost"), buf, sizeof(buf)), "");
	bool b = false;
	assert_true(schema_parse_bool("YES", &b) && b);
	assert_true(schema_parse_bool("off", &b) && !b);
	assert_false(schema_parse_bool("", &b));
}

/* Every Email/AuthMechanism choice but auto is a mechanism the SASL layer
 * can run, and every mechanism the SASL layer runs can be chosen: REG must
 * neither accept a name smtp.c refuses nor refuse one it accepts. */
static void test_auth_mechanisms_match_sasl(void **state)
{
	static const char *const sasl_mechs[] = {
		"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
		"XOAUTH2",
	};
	const struct schema_key *k = schema_find("Email/AuthMechanism");
	char out[64];

	(void)state;
	for (const char *c = k->choices; *c; ) {
		size_t cl = strcspn(c, "|");
		char one[64];
		snprintf(one, sizeof(one), "%.*s", (int)cl, c);
		if (strcmp(one, "auto") != 0)
			assert_true(sasl_supported(one));
		c += cl + (c[cl] == '|');
	}
	for (size_t i = 0; i < sizeof(sasl_mechs) / sizeof(sasl_mechs[0]); i++) {
		assert_true(sasl_supported(sasl_mechs[i]));
		assert_int_equal(schema_validate(k, sasl_mechs[i], out, sizeof(out),
		                                 NULL), DM_OK);
		assert_string_equal(out, sasl_mechs[i]);
	}
	assert_false(sasl_supported("OAUTHBEARER"));
}

/* One table through REG's check (core/schema.c) and the mail code's parser
 * (mail/address.c): both must accept or both refuse, so that REG never
 * stores an address that fails at send time, nor refuses one that works.
 * `ok` is what both should say. */
static const struct {
	const char *addr;
	bool ok;
} agree_rows[] = {
	{ "jnior@example.com", true },
	{ "Boiler Room <jnior@example.com>", true },
	{ "<jnior@example.com>", true },
	{ "\"Doe, John\" <j.doe+io@x.org>", true },
	{ "\"john doe\"@example.com", true },                 /* quoted local */
	{ "\"a\\\"b\"@example.com", true },                    /* escaped quote */
	{ "\"a@b\"@example.com", true },
	{ "\"\"@example.com", false },                         /* empty quoted */
	{ "\"a\"b@example.com", false },
	{ "j\xc3\xb6rg@example.com", true },                   /* RFC 6531 */
	{ "info@b\xc3\xbc" "cher.example", true },
	{ "J\xc3\xb6rg M\xc3\xbcller <j\xc3\xb6rg@b\xc3\xbc" "cher.example>", true },
	{ "=?UTF-8?B?SsO2cmc=?= <j@example.com>", true },
	{ "a@[192.0.2.1]", true },
	{ "a@[IPv6:2001:db8::1]", true },
	{ "a@[999.0.2.1]", false },
	{ "a@[192.0.2.1", false },
	{ "Dr. Who <who@example.com>", true },
	{ "Name (x) <a@b.c>", false },                         /* comment */
	{ "a@b.c (Boiler)", false },
	{ "\"Name (x)\" <a@b.c>", true },                      /* quoted: no comment */
	{ "group: a@b.c;", false },
	{ "<@relay:a@b.c>", false },
	{ "a@b.c, d@e.f", false },
	{ "Boiler, Room <a@b.c>", false },
	{ "Name <a@b.c> trailing", false },
	{ "<a@b.c", false },
	{ "a@b.c>", false },
	{ "<>", false },
	{ "foo", false },
	{ "@x.com", false },
	{ "a@", false },
	{ "a@@b.com", false },
	{ "a b@c.com", false },
	{ ".a@b.com", false },
	{ "a.@b.com", false },
	{ "a..b@c.com", false },
	{ "a@-b.com", false },
	{ "a@b-.com", false },
	{ "a@b..com", false },
	{ "a@b.com.", false },
	{ "a@b_c.com", false },
	{ "a[b]@c.com", false },
	{ "Na[me] <a@b.com>", false },
	{ "\"Bad <a@b.com>", false },
	{ "a@b.com\r\nBcc: x@y.com", false },
	{ "\xc3\x28@example.com", false },                     /* bad UTF-8 */
	{ "a@b.c\xed\xa0\x80", false },                        /* surrogate */
	/* lengths: local 64, addr-spec 254, name 256 */
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x.com", true },
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x.com", false },
	{ "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa b\"@x.com", true },   /* 64 with quotes */
	{ "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa b\"@x.com", false },
};

static void agree_check(const char *key, const char *addr, bool want)
{
	char out[SCHEMA_VALUE_MAX];
	struct dm_err e1, e2;
	struct address a;

	dm_err_clear(&e1);
	dm_err_clear(&e2);
	bool reg_ok = schema_validate(schema_find(key), addr, out, sizeof(out),
	                              &e1) == DM_OK;
	bool mail_ok = address_parse(addr, &a, &e2) == DM_OK;
	if (reg_ok != want || mail_ok != want)
		fail_msg("%s '%s': REG %s (%s), address_parse %s (%s), want %s", key,
		         addr, reg_ok ? "accepts" : "refuses", e1.msg,
		         mail_ok ? "accepts" : "refuses", e2.msg,
		         want ? "accept" : "refuse");
}

/* Email/ToAddress against address_list_parse(): the same verdict. */
static void agree_list_check(const char *text)
{
	char out[SCHEMA_VALUE_MAX];
	struct dm_err e1, e2;
	struct address *list = NULL;
	size_t n = 0;

	dm_err_clear(&e1);
	dm_err_clear(&e2);
	bool reg_ok = schema_validate(schema_find("Email/ToAddress"), text, out,
	                              sizeof(out), &e1) == DM_OK;
	bool mail_ok = address_list_parse(text, &list, &n, &e2) == DM_OK && n > 0;
	address_list_free(list);
	if (reg_ok != mail_ok)
		fail_msg("Email/ToAddress '%s': REG %s (%s), address_list_parse %s (%s)",
		         text, reg_ok ? "accepts" : "refuses", e1.msg,
		         mail_ok ? "accepts" : "refuses", e2.msg);
}

static void test_addresses_agree_with_mail(void **state)
{
	char name[400], addr[600], spec[300];

	(void)state;
	for (size_t i = 0; i < sizeof(agree_rows) / sizeof(agree_rows[0]); i++) {
		agree_check("Email/FromAddress", agree_rows[i].addr, agree_rows[i].ok);
		agree_list_check(agree_rows[i].addr);
	}
	/* generated lengths: addr-spec 254/255 octets, display name 256/257 */
	memset(spec, 'a', 60);
	snprintf(spec + 60, sizeof(spec) - 60, "@");
	for (size_t n = strlen(spec); n + 64 < 254; n = strlen(spec))
		strcat(spec, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.");
	size_t n = strlen(spec);
	memset(spec + n, 'c', 254 - n);
	spec[254] = '\0';
	agree_check("Email/FromAddress", spec, true);
	spec[253] = 'c';
	strcpy(spec + 254, "c");
	agree_check("Email/FromAddress", spec, false);
	memset(name, 'N', 256);
	name[256] = '\0';
	snprintf(addr, sizeof(addr), "%s <a@b.com>", name);
	agree_check("Email/FromAddress", addr, true);
	snprintf(addr, sizeof(addr), "\"%sN\" <a@b.com>", name);
	agree_check("Email/FromAddress", addr, false);

	/* the same words for the same refusal */
	char out[SCHEMA_VALUE_MAX];
	struct dm_err e1, e2;
	struct address a;
	static const char rule[] = "comments '(...)' are not supported; put a "
	                           "name in double quotes before <address>";
	dm_err_clear(&e1);
	dm_err_clear(&e2);
	assert_int_equal(schema_validate(schema_find("Email/FromAddress"),
	                 "Name (x) <a@b.c>", out, sizeof(out), &e1), DM_EINVAL);
	assert_int_equal(address_parse("Name (x) <a@b.c>", &a, &e2), DM_EINVAL);
	assert_non_null(strstr(e1.msg, rule));
	assert_non_null(strstr(e2.msg, rule));
	/* lists split where address_list_parse() splits them */
	assert_int_equal(schema_validate(schema_find("Email/ToAddress"),
	                 "a@b.com; \"x, y\" <c@d.org>;e@f.org", out, sizeof(out),
	                 NULL), DM_OK);
	assert_string_equal(out, "a@b.com, \"x, y\" <c@d.org>, e@f.org");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_values_canonicalised),
		cmocka_unit_test(test_invalid_values_refused),
		cmocka_unit_test(test_every_type_refuses_control_and_overlong),
		cmocka_unit_test(test_port_message_exact),
		cmocka_unit_test(test_sealed_refused_in_clear),
		cmocka_unit_test(test_table_consistent),
		cmocka_unit_test(test_find_and_names),
		cmocka_unit_test(test_defaults_and_types),
		cmocka_unit_test(test_auth_mechanisms_match_sasl),
		cmocka_unit_test(test_addresses_agree_with_mail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
