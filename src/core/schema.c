/*
 * schema.c - the table of known registry keys and the validation of values.
 *
 * Every rule lives here so that REG, the web page and IPCONFIG refuse the
 * same values with the same words.  Messages take the form
 *   Key: 'value' <what is wrong> (<rule>)
 * e.g. "Email/Port: '70000' is out of range (integer 1-65535)".
 * References: RFC 1035 sec. 2.3.4 and RFC 1123 sec. 2.1 (host names),
 * RFC 3696 sec. 2 (no all-numeric top-level label); addresses follow
 * core/text's grammar (RFC 5322 3.4, RFC 5321 4.5.3.1, see text.h).
 */
#include "core/schema.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/text.h"

#define SCHEMA_NAME_MAX 128

static const struct schema_key schema_table[] = {
	{ .name = "Email/MailHost", .type = SCHEMA_HOST,
	  .summary = "SMTP server name or address",
	  .description = "The name or IP address of the SMTP server that "
	    "accepts mail from this unit, for example smtp.example.com or "
	    "192.0.2.25.  Nothing is sent until it is set.  Usually set with "
	    "IPCONFIG together with Email/Username and Email/Password.",
	  .see_also = "IPCONFIG, Email/Port, Email/Username" },
	{ .name = "Email/Port", .type = SCHEMA_INT, .def = "25",
	  .min = 1, .max = 65535,
	  .summary = "25 SMTP, 587 submission, 465 SMTPS",
	  .description = "The TCP port of the SMTP server.  Use 25 for plain "
	    "SMTP relay, 587 for message submission (authentication required, "
	    "STARTTLS when offered) and 465 for implicit TLS, in which case set "
	    "Email/SMTPS to true as well.",
	  .see_also = "Email/SMTPS, Email/StartTLS" },
	{ .name = "Email/SMTPS", .type = SCHEMA_BOOL, .def = "false",
	  .summary = "TLS from the first byte (port 465)",
	  .description = "When true the unit starts TLS as soon as the "
	    "connection opens, before the server greeting (SMTPS, normally "
	    "port 465).  STARTTLS is then not used.",
	  .see_also = "Email/Port, Email/StartTLS" },
	{ .name = "Email/StartTLS", .type = SCHEMA_BOOL, .def = "true",
	  .summary = "upgrade with STARTTLS when offered",
	  .description = "When true the unit upgrades the connection with "
	    "STARTTLS whenever the server offers it.  Authentication is never "
	    "sent over a connection that is not encrypted.",
	  .see_also = "Email/RequireTLS, Email/SMTPS" },
	{ .name = "Email/RequireTLS", .type = SCHEMA_BOOL, .def = "false",
	  .summary = "refuse to send over an unencrypted connection",
	  .description = "When true a message is only sent over an encrypted "
	    "connection: if the server does not offer STARTTLS (and SMTPS is "
	    "off) the attempt fails with a clear message instead of falling "
	    "back to plain text.",
	  .see_also = "Email/StartTLS, Email/SMTPS" },
	{ .name = "Email/FromAddress", .type = SCHEMA_ADDRESS,
	  .summary = "envelope and header From",
	  .description = "The address this unit sends from, used for the "
	    "envelope sender and the From header, for example "
	    "jnior@example.com or Boiler Room <jnior@example.com>.",
	  .see_also = "Email/ToAddress" },
	{ .name = "Email/ToAddress", .type = SCHEMA_ADDRLIST,
	  .summary = "default recipients (SENDMAIL without -t, boot mail)",
	  .description = "One or more recipients separated by commas.  "
	    "SENDMAIL uses them when no -t option is given, and the boot mail "
	    "always goes to them.",
	  .see_also = "SENDMAIL, Events/OnBoot/Email" },
	{ .name = "Email/Username", .type = SCHEMA_TEXT,
	  .summary = "AUTH identity",
	  .description = "The account name used to authenticate with the "
	    "SMTP server.  Leave unset when the server accepts mail without "
	    "authentication.  Set with IPCONFIG together with the password.",
	  .see_also = "IPCONFIG, Email/Password, Email/AuthMechanism" },
	{ .name = "Email/Password", .type = SCHEMA_SEALED,
	  .summary = "written only through the vault (IPCONFIG)",
	  .description = "The account password, stored encrypted.  It requires "
	    "the active step of encryption and so cannot be typed into the "
	    "registry in clear: set it with IPCONFIG -E or IPCONFIG "
	    "--password-stdin.",
	  .see_also = "IPCONFIG, Email/Username" },
	{ .name = "Email/OAuthToken", .type = SCHEMA_SEALED,
	  .summary = "bearer token for XOAUTH2, sealed",
	  .description = "An OAuth 2.0 bearer token for servers that use "
	    "XOAUTH2 instead of a password.  Stored encrypted like the "
	    "password; set it with IPCONFIG --oauth-token-stdin.",
	  .see_also = "Email/AuthMechanism, IPCONFIG" },
	{ .name = "Email/AuthMechanism", .type = SCHEMA_ENUM, .def = "auto",
	  .choices = "auto|PLAIN|LOGIN|CRAM-MD5|SCRAM-SHA-256|SCRAM-SHA-256-PLUS|XOAUTH2",
	  .summary = "SASL mechanism; auto picks the strongest offered",
	  .description = "The SASL mechanism used to authenticate.  With auto "
	    "the unit picks the strongest mechanism the server offers; name a "
	    "mechanism to force it.  XOAUTH2 uses Email/OAuthToken.",
	  .see_also = "Email/Username, Email/OAuthToken" },
	{ .name = "Email/AllowPlaintextAuth", .type = SCHEMA_HOST,
	  .def_display = "none",
	  .summary = "the one host allowed AUTH over cleartext",
	  .description = "Authentication is never sent over an unencrypted "
	    "connection, except to the one host named here (for example a "
	    "relay on a trusted local network that cannot do TLS).  Unset, no "
	    "host is allowed.",
	  .see_also = "Email/RequireTLS, Email/MailHost" },
	{ .name = "Email/VerifyCertificate", .type = SCHEMA_BOOL, .def = "true",
	  .summary = "check certificate chain and host name",
	  .description = "When true the server certificate must chain to a "
	    "trusted authority and name Email/MailHost.  Turn it off only for "
	    "testing, or pin the certificate with Email/Fingerprint instead.",
	  .see_also = "Email/CAFile, Email/Fingerprint" },
	{ .name = "Email/CAFile", .type = SCHEMA_PATH,
	  .def_display = "system store",
	  .summary = "extra trust anchors (PEM file)",
	  .description = "An absolute path to a PEM file of certificate "
	    "authorities trusted in addition to the system store, for a "
	    "private authority on the plant network.",
	  .see_also = "Email/VerifyCertificate" },
	{ .name = "Email/Fingerprint", .type = SCHEMA_SHA256,
	  .summary = "pin the server certificate (SHA-256)",
	  .description = "The SHA-256 fingerprint of the server certificate, "
	    "64 hex digits with or without colons.  When set, a server "
	    "presenting any other certificate is refused.",
	  .see_also = "Email/VerifyCertificate" },
	{ .name = "Email/Timeout", .type = SCHEMA_INT, .def = "60",
	  .min = 1, .max = 3600, .unit = "seconds",
	  .summary = "per SMTP step",
	  .description = "How long the unit waits for the server at each "
	    "step (connect, greeting, each reply) before giving up on the "
	    "attempt; the message stays in the outbox for a retry.",
	  .see_also = "Outbox/RetryMin" },
	{ .name = "Events/OnBoot/Email", .type = SCHEMA_BOOL, .def = "false",
	  .summary = "Email On Boot",
	  .description = "When true a mail is sent to Email/ToAddress each "
	    "time the unit starts.  This is \"Email On Boot\" on the Events "
	    "page.  The devmail service (devmaild) queues it once per start, "
	    "with the subject \"<host name> booted\" and the host name, "
	    "devmail version, boot time, uptime, addresses, gateway, DNS "
	    "servers and clock state in the body; a server that is down at "
	    "boot gets it later, on the retry schedule.",
	  .see_also = "Email/ToAddress, IpConfig/HostName, Outbox/RetryMin" },
	{ .name = "IpConfig/HostName", .type = SCHEMA_HOSTNAME,
	  .def_display = "system host name", .def_hostname = true,
	  .summary = "EHLO name, subject of system mails",
	  .description = "The name of this unit, announced in EHLO, used on "
	    "the right of Message-IDs and shown in the subject of system "
	    "mails: a DNS name of letters, digits, hyphens and dots such as "
	    "boiler-room.plant.example (not an IP address).  Unset, the system "
	    "host name is used.",
	  .see_also = "IPCONFIG" },
	{ .name = "Log/MaxSize", .type = SCHEMA_INT, .def = "1048576",
	  .min = 4096, .max = 1073741824, .unit = "bytes",
	  .summary = "rotate the system log past this size",
	  .description = "When the system log grows past this size it is "
	    "renamed to system.log.bak and a new one is started.",
	  .see_also = "LOG" },
	{ .name = "Outbox/MaxAge", .type = SCHEMA_INT, .def = "259200",
	  .min = 60, .max = 31536000, .unit = "seconds",
	  .summary = "give up on a message after this long",
	  .description = "A message that could not be delivered for this "
	    "long is given up at its next attempt: it moves to the failed "
	    "outbox (OUTBOX -f) with the reason \"expired after ...; last "
	    "error: ...\", and the failure is written to the system log.  "
	    "The default is three days.",
	  .see_also = "Outbox/RetryMin, Outbox/RetryMax" },
	{ .name = "Outbox/RetryMin", .type = SCHEMA_INT, .def = "60",
	  .min = 1, .max = 86400, .unit = "seconds",
	  .summary = "first retry delay",
	  .description = "The wait before the first retry of a message that "
	    "failed temporarily; each later wait doubles up to "
	    "Outbox/RetryMax.  The devmail service (devmaild) makes the "
	    "retries by itself at those times; the schedule is stored with "
	    "each message, so it survives a restart.",
	  .see_also = "Outbox/RetryMax, Outbox/MaxAge" },
	{ .name = "Outbox/RetryMax", .type = SCHEMA_INT, .def = "3600",
	  .min = 1, .max = 604800, .unit = "seconds",
	  .summary = "longest retry delay",
	  .description = "The longest wait between two retries of a message "
	    "(the devmail service retries by itself; see Outbox/RetryMin).",
	  .see_also = "Outbox/RetryMin, Outbox/MaxAge" },
	{ .name = "Outbox/Sessions", .type = SCHEMA_INT, .def = "2",
	  .min = 1, .max = 8,
	  .summary = "SMTP sessions that deliver the queue in parallel",
	  .description = "How many connections to the mail server deliver "
	    "the queued messages at the same time, as mail servers do: each "
	    "session carries its share of the queue, one message after the "
	    "other.  1 sends everything over one connection.  A server that "
	    "allows fewer messages per connection is given a new connection "
	    "for the rest.",
	  .see_also = "OUTBOX, Outbox/RetryMin" },
};

const struct schema_key *schema_keys(size_t *n)
{
	*n = sizeof(schema_table) / sizeof(schema_table[0]);
	return schema_table;
}

const struct schema_key *schema_find(const char *name)
{
	size_t n;
	const struct schema_key *keys = schema_keys(&n);

	if (!name)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

static bool schema_name_char(int c)
{
	return isalnum(c) || c == '_' || c == '-' || c == '.';
}

bool schema_name_ok(const char *name)
{
	size_t len, parts = 1, partlen = 0;

	if (!name || (len = strlen(name)) == 0 || len > SCHEMA_NAME_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (*p == '/') {
			if (partlen == 0)
				return false;
			parts++;
			partlen = 0;
		} else if (*p < 0x80 && schema_name_char(*p)) {
			partlen++;
		} else {
			return false;
		}
	}
	return partlen > 0 && parts >= 2;
}

const char *schema_type_str(const struct schema_key *k, char *buf, size_t cap)
{
	switch (k->type) {
	case SCHEMA_TEXT:     snprintf(buf, cap, "text"); break;
	case SCHEMA_BOOL:     snprintf(buf, cap, "bool"); break;
	case SCHEMA_HOST:     snprintf(buf, cap, "host"); break;
	case SCHEMA_HOSTNAME: snprintf(buf, cap, "host name"); break;
	case SCHEMA_ADDRESS:  snprintf(buf, cap, "address"); break;
	case SCHEMA_ADDRLIST: snprintf(buf, cap, "address list"); break;
	case SCHEMA_SEALED:   snprintf(buf, cap, "sealed"); break;
	case SCHEMA_PATH:     snprintf(buf, cap, "absolute path"); break;
	case SCHEMA_SHA256:   snprintf(buf, cap, "sha256"); break;
	case SCHEMA_INT:
		if (k->unit)
			snprintf(buf, cap, "integer %ld-%ld (%s)", k->min, k->max, k->unit);
		else
			snprintf(buf, cap, "integer %ld-%ld", k->min, k->max);
		break;
	case SCHEMA_ENUM: {
		int n = snprintf(buf, cap, "one of ");
		for (const char *c = k->choices; *c && n >= 0 && (size_t)n + 3 < cap; c++) {
			if (*c == '|')
				n += snprintf(buf + n, cap - (size_t)n, ", ");
			else
				buf[n++] = *c;
		}
		if (n >= 0 && (size_t)n < cap)
			buf[n] = '\0';
		break;
	}
	}
	return buf;
}

const char *schema_default_value(const struct schema_key *k, char *buf,
                                 size_t cap)
{
	if (cap == 0)
		return buf;
	buf[0] = '\0';
	if (k->def) {
		snprintf(buf, cap, "%s", k->def);
	} else if (k->def_hostname) {
		if (gethostname(buf, cap) != 0)
			buf[0] = '\0';
		buf[cap - 1] = '\0';
	}
	return buf;
}

const char *schema_default_display(const struct schema_key *k)
{
	if (k->def)
		return k->def;
	return k->def_display ? k->def_display : "none";
}

bool schema_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "on", "yes", "1" };
	static const char *const no[] = { "false", "off", "no", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

/* ---- the checks, one per type; each returns NULL or what is wrong ------ */

static bool schema_hex_ok(int c)
{
	return isxdigit(c) != 0;
}

/* One DNS name (RFC 1123 sec. 2.1): labels 1-63 of letters, digits and
 * hyphens, no hyphen at either end, at most 253 characters, one optional
 * trailing dot; the last label is not all digits (RFC 3696 sec. 2), so that
 * "256.1.1.1" is not taken for a name. */
static const char *schema_dns_check(const char *s)
{
	size_t len = strlen(s), label = 0;
	bool digits_only = true;

	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0)
		return "is empty";
	if (len > 253)
		return "is longer than 253 characters";
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)s[i] : '.';
		if (c == '.') {
			if (label == 0)
				return "has an empty label";
			if (s[i - 1] == '-')
				return "has a label ending with '-'";
			if (i == len && digits_only)
				return "has an all-numeric top-level label";
			label = 0;
			digits_only = true;
			continue;
		}
		if (c >= 0x80 || !(isalnum(c) || c == '-'))
			return "has a character not allowed in a host name";
		if (label == 0 && c == '-')
			return "has a label starting with '-'";
		if (!isdigit(c))
			digits_only = false;
		if (++label > 63)
			return "has a label longer than 63 characters";
	}
	return NULL;
}

/* Host: DNS name, IPv4 or IPv6 (brackets optional, dropped when stored). */
static const char *schema_host_check(const char *in, char *out, size_t cap)
{
	char tmp[256];
	unsigned char addr[16];
	size_t len = strlen(in);

	if (len >= sizeof(tmp))
		return "is longer than 253 characters";
	if (in[0] == '[') {
		if (len < 3 || in[len - 1] != ']')
			return "has an unclosed '['";
		memcpy(tmp, in + 1, len - 2);
		tmp[len - 2] = '\0';
		if (inet_pton(AF_INET6, tmp, addr) != 1)
			return "is not an IPv6 address inside brackets";
		snprintf(out, cap, "%s", tmp);
		return NULL;
	}
	if (inet_pton(AF_INET6, in, addr) == 1 || inet_pton(AF_INET, in, addr) == 1) {
		snprintf(out, cap, "%s", in);
		return NULL;
	}
	const char *why = schema_dns_check(in);
	if (!why)
		snprintf(out, cap, "%s", in);
	return why;
}

/* Host name: a DNS name (RFC 1123 sec. 2.1) and nothing else, because it
 * is the EHLO domain (RFC 5321 sec. 4.1.1.1) and the right side of
 * Message-IDs (RFC 5322 sec. 3.6.4); an address literal would need
 * brackets in both.  A trailing dot is dropped when stored. */
static const char *schema_hostname_check(const char *in, char *out, size_t cap)
{
	unsigned char addr[16];
	size_t len = strlen(in);

	if (inet_pton(AF_INET, in, addr) == 1 || inet_pton(AF_INET6, in, addr) == 1 ||
	    in[0] == '[')
		return "is an IP address, not a host name";
	const char *why = schema_dns_check(in);
	if (why)
		return why;
	if (in[len - 1] == '.')
		len--;
	snprintf(out, cap, "%.*s", (int)len, in);
	return NULL;
}

/* ---- addresses ------------------------------------------------------------
 * The grammar is core/text's text_mailbox_parse(), the one mail/address.c
 * parses with, so what REG accepts for Email/FromAddress and
 * Email/ToAddress is what the mail code can send, and the reverse
 * (test_schema runs one table through both).  Registry values never hold a
 * control character, TAB included (schema_line_check()), so the grammar's
 * TAB rules do not arise here.  The display name is measured as written
 * (address_parse() measures RFC 2047 encoded-words decoded). */

#define SCHEMA_ADDR_NAME_MAX 256

/* One mailbox; why[cap] receives the reason when it is refused. */
static const char *schema_address_check(const char *s, char *why, size_t cap)
{
	struct text_mailbox m;

	if (!text_mailbox_parse(s, strlen(s), &m, why, cap))
		return why;
	if (m.name_text > SCHEMA_ADDR_NAME_MAX)
		return "has a display name longer than 256 octets";
	return NULL;
}

/* Addresses separated by ',' or ';' (split by text_list_next(), as
 * address_list_parse() splits them); stored as the trimmed addresses
 * joined by ", ".  An empty entry is refused, so the stored form stays
 * canonical. */
static const char *schema_addrlist_check(const char *s, char *out, size_t cap,
                                         char *why, size_t whycap)
{
	char one[SCHEMA_VALUE_MAX];
	size_t len = strlen(s), pos = 0, b, e, o = 0;

	while (text_list_next(s, len, &pos, &b, &e)) {
		if (b == e)
			return "has an empty entry";
		memcpy(one, s + b, e - b);
		one[e - b] = '\0';
		const char *bad = schema_address_check(one, why, whycap);
		if (bad)
			return bad;
		if (o + (e - b) + 3 > cap)
			return "is too long";
		o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? ", " : "", one);
	}
	return NULL;
}

static const char *schema_int_check(const struct schema_key *k, const char *s,
                                    char *out, size_t cap)
{
	char *end;
	long v;

	if (!(isdigit((unsigned char)s[0]) ||
	      ((s[0] == '-' || s[0] == '+') && isdigit((unsigned char)s[1]))))
		return "is not an integer";
	errno = 0;
	v = strtol(s, &end, 10);
	if (*end != '\0')
		return "is not an integer";
	if (errno == ERANGE || v < k->min || v > k->max)
		return "is out of range";
	snprintf(out, cap, "%ld", v);
	return NULL;
}

static const char *schema_enum_check(const struct schema_key *k, const char *s,
                                     char *out, size_t cap)
{
	size_t sl = strlen(s);

	for (const char *c = k->choices; *c; ) {
		size_t cl = strcspn(c, "|");
		if (cl == sl && strncasecmp(c, s, sl) == 0) {
			snprintf(out, cap, "%.*s", (int)cl, c);
			return NULL;
		}
		c += cl + (c[cl] == '|');
	}
	return "is not one of the choices";
}

static const char *schema_sha256_check(const char *s, char *out, size_t cap)
{
	size_t n = 0, run = 0;

	if (cap < 65)
		return "is too long";
	for (const char *p = s; *p; p++) {
		if (*p == ':') {
			if (run != 2 || p[1] == '\0')
				return "has misplaced ':' (use pairs like ab:cd or no colons)";
			run = 0;
			continue;
		}
		if (!schema_hex_ok((unsigned char)*p))
			return "has a character that is not a hex digit";
		if (n == 64)
			return "is not 64 hex digits";
		out[n++] = (char)tolower((unsigned char)*p);
		run++;
	}
	if (n != 64)
		return "is not 64 hex digits";
	out[n] = '\0';
	return NULL;
}

static void schema_trim_span(const char **b, const char **e)
{
	while (*b < *e && **b == ' ')
		(*b)++;
	while (*e > *b && (*e)[-1] == ' ')
		(*e)--;
}

/* Common checks for every value: length and control characters.  Copies
 * the value without surrounding spaces into out[cap]. */
static const char *schema_line_check(const char *value, char *out, size_t cap)
{
	const char *b = value, *e = value + strlen(value);

	if ((size_t)(e - b) >= SCHEMA_VALUE_MAX)
		return "is too long";
	for (const unsigned char *p = (const unsigned char *)b; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return "contains a control character (CR, LF, tab, ...)";
	schema_trim_span(&b, &e);
	if ((size_t)(e - b) >= cap)
		return "is too long";
	memcpy(out, b, (size_t)(e - b));
	out[e - b] = '\0';
	return NULL;
}

/* NULL, or why v is refused (a static phrase, or why[whycap]). */
static const char *schema_type_check(const struct schema_key *k, const char *v,
                                     char *out, size_t cap, char *why,
                                     size_t whycap)
{
	bool b;

	switch (k->type) {
	case SCHEMA_TEXT:
		snprintf(out, cap, "%s", v);
		return NULL;
	case SCHEMA_INT:
		return schema_int_check(k, v, out, cap);
	case SCHEMA_BOOL:
		if (!schema_parse_bool(v, &b))
			return "is not a boolean (true/false, on/off, yes/no, 1/0)";
		snprintf(out, cap, "%s", b ? "true" : "false");
		return NULL;
	case SCHEMA_HOST:
		return schema_host_check(v, out, cap);
	case SCHEMA_HOSTNAME:
		return schema_hostname_check(v, out, cap);
	case SCHEMA_ADDRESS: {
		const char *bad = schema_address_check(v, why, whycap);
		if (!bad)
			snprintf(out, cap, "%s", v);
		return bad;
	}
	case SCHEMA_ADDRLIST:
		return schema_addrlist_check(v, out, cap, why, whycap);
	case SCHEMA_ENUM:
		return schema_enum_check(k, v, out, cap);
	case SCHEMA_PATH:
		if (v[0] != '/')
			return "is not an absolute path";
		snprintf(out, cap, "%s", v);
		return NULL;
	case SCHEMA_SHA256:
		return schema_sha256_check(v, out, cap);
	case SCHEMA_SEALED:
		return "cannot be set in clear";
	}
	return "has an unknown type";
}

enum dm_status schema_validate(const struct schema_key *k, const char *value,
                               char *out, size_t cap, struct dm_err *err)
{
	char trimmed[SCHEMA_VALUE_MAX], esc[96], rule[160], whybuf[256];
	const char *why;

	if (k->type == SCHEMA_SEALED)
		return dm_err_set(err, DM_EPERM,
		    "%s: cannot be set in clear (sealed); use IPCONFIG or the web "
		    "page, which encrypt it on entry", k->name);
	text_escape(value, esc, sizeof(esc));
	schema_type_str(k, rule, sizeof(rule));
	why = schema_line_check(value, trimmed, sizeof(trimmed));
	if (!why && !(why = schema_type_check(k, trimmed, out, cap, whybuf,
	                                      sizeof(whybuf))))
		return DM_OK;
	if (cap > 0)
		out[0] = '\0';
	return dm_err_set(err, DM_EINVAL, "%s: '%s' %s (%s)", k->name, esc, why, rule);
}

enum dm_status schema_validate_text(const char *name, const char *value,
                                    char *out, size_t cap, struct dm_err *err)
{
	char esc[96];
	const char *why = schema_line_check(value, out, cap);

	if (!why)
		return DM_OK;
	if (cap > 0)
		out[0] = '\0';
	return dm_err_set(err, DM_EINVAL, "%s: '%s' %s (text, single line)", name,
	                  text_escape(value, esc, sizeof(esc)), why);
}
