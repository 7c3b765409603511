/*
 * schema.h - the one table that declares every known registry key.
 *
 * Each key has a type, default, range and help text.  The table feeds
 * registry validation (registry.c), HELP topics (shell/cmd_help.c), the README
 * key table (checked by a test) and the web page.  Key names are
 * `Section/Name`, matched case-insensitively, kept in the canonical case
 * given here.
 */
#ifndef DEVMAIL_CORE_SCHEMA_H
#define DEVMAIL_CORE_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"

/* Values are single lines shorter than this (so `char v[SCHEMA_VALUE_MAX]`
 * always holds one); registry.h's REG_VALUE_MAX is the same number. */
#define SCHEMA_VALUE_MAX 4096

enum schema_type {
	SCHEMA_TEXT,      /* any single-line text */
	SCHEMA_INT,       /* integer in [min, max] */
	SCHEMA_BOOL,      /* true/false, on/off, yes/no, 1/0 (stored "true"/"false") */
	SCHEMA_HOST,      /* DNS name, IPv4 or IPv6 address (brackets optional) */
	SCHEMA_HOSTNAME,  /* DNS name only (letters, digits, '-', '.'), not an
	                   * address: EHLO name, Message-ID right side */
	SCHEMA_ADDRESS,   /* one RFC 5322 addr-spec, optionally with display name */
	SCHEMA_ADDRLIST,  /* comma-separated addresses */
	SCHEMA_ENUM,      /* one of `choices` ("|"-separated), case-insensitive */
	SCHEMA_SEALED,    /* vault-sealed secret; never set in clear */
	SCHEMA_PATH,      /* absolute file path */
	SCHEMA_SHA256,    /* 64 hex digits, colons allowed (stored lowercase, no colons) */
};

struct schema_key {
	const char *name;        /* canonical "Section/Name" */
	enum schema_type type;
	const char *def;         /* default as text, NULL when none */
	long min, max;           /* SCHEMA_INT range */
	const char *choices;     /* SCHEMA_ENUM: "auto|PLAIN|LOGIN" */
	const char *summary;     /* one line, for lists and the README table */
	const char *description; /* HELP DESCRIPTION paragraph */
	const char *see_also;    /* "IPCONFIG, Email/Port" or NULL */
	const char *unit;        /* SCHEMA_INT unit ("seconds", "bytes") or NULL */
	const char *def_display; /* shown when def is NULL ("system host name") */
	bool def_hostname;       /* default is the system host name, read at
	                          * read time (IpConfig/HostName) */
};

/* All keys, in display order; *n receives the count. Static storage. */
const struct schema_key *schema_keys(size_t *n);

/* Case-insensitive lookup; NULL when the key is not in the schema. */
const struct schema_key *schema_find(const char *name);

/* Type name for messages and HELP ("integer 1-65535", "bool", ...),
 * written into buf[cap]; returns buf. */
const char *schema_type_str(const struct schema_key *k, char *buf, size_t cap);

/* Validates `value` for key `k` and writes its canonical stored form into
 * out[cap] (bool -> "true"/"false", enum -> canonical choice, ...).  Spaces
 * around the value are dropped for every type; CR, LF and other control
 * characters are refused everywhere, as are values of SCHEMA_VALUE_MAX
 * bytes or more.
 * On failure returns DM_EINVAL with a message naming the key, the value
 * and the rule.  SCHEMA_SEALED always fails with DM_EPERM telling the user
 * to use IPCONFIG or the web page. */
enum dm_status schema_validate(const struct schema_key *k, const char *value,
                               char *out, size_t cap, struct dm_err *err);

/* Validates a value for a key that is not in the schema (stored as text):
 * single line, no control characters, shorter than SCHEMA_VALUE_MAX.
 * `name` is used in the message only.  Errors: DM_EINVAL. */
enum dm_status schema_validate_text(const char *name, const char *value,
                                    char *out, size_t cap, struct dm_err *err);

/* The default as it reads now, into buf[cap]: `def`, the system host name for
 * def_hostname keys, else "".  Returns buf. */
const char *schema_default_value(const struct schema_key *k, char *buf,
                                 size_t cap);

/* The default for display (HELP, README): `def`, else `def_display`, else
 * "none".  Static storage. */
const char *schema_default_display(const struct schema_key *k);

/* Parses a boolean in any accepted spelling (true/false, on/off, yes/no,
 * 1/0, case-insensitive).  Returns false when `s` is not one of them. */
bool schema_parse_bool(const char *s, bool *out);

/* True when `name` has the shape Section/Name (letters, digits, '_', '-',
 * '.'; two or more '/' separated parts, no empty part, <= 128 chars). */
bool schema_name_ok(const char *name);

#endif
