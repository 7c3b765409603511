/*
 * schema.h - the one table that declares every known registry key.
 *
 * Each key has a type, default, range and help text.  The table feeds
 * registry validation (registry.c), HELP topics (shell/help.c), the README
 * key table (checked by a test) and the web page.  Key names are
 * `Section/Name`, matched case-insensitively, kept in the canonical case
 * given here.
 */
#ifndef DEVMAIL_CORE_SCHEMA_H
#define DEVMAIL_CORE_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"

enum schema_type {
	SCHEMA_TEXT,      /* any single-line text */
	SCHEMA_INT,       /* integer in [min, max] */
	SCHEMA_BOOL,      /* true/false, on/off, yes/no, 1/0 (stored "true"/"false") */
	SCHEMA_HOST,      /* DNS name, IPv4 or IPv6 address (brackets optional) */
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
};

/* All keys, in display order; *n receives the count. Static storage. */
const struct schema_key *schema_keys(size_t *n);

/* Case-insensitive lookup; NULL when the key is not in the schema. */
const struct schema_key *schema_find(const char *name);

/* Type name for messages and HELP ("integer 1-65535", "bool", ...),
 * written into buf[cap]; returns buf. */
const char *schema_type_str(const struct schema_key *k, char *buf, size_t cap);

/* Validates `value` for key `k` and writes its canonical stored form into
 * out[cap] (bool -> "true"/"false", enum -> canonical choice, ...).
 * On failure returns DM_EINVAL with a message naming the key, the value
 * and the rule.  SCHEMA_SEALED always fails with DM_EPERM telling the user
 * to use IPCONFIG or the web page. */
enum dm_status schema_validate(const struct schema_key *k, const char *value,
                               char *out, size_t cap, struct dm_err *err);

/* True when `name` has the shape Section/Name (letters, digits, '_', '-',
 * '.', one or more '/' separated parts, no empty part, <= 128 chars). */
bool schema_name_ok(const char *name);

#endif
