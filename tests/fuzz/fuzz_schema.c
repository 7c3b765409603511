/*
 * fuzz_schema.c - registry value validation (core/schema.h), every key.
 *
 * Input: byte 0 picks the key (index into schema_keys(), modulo the count;
 * an index past the table tests schema_validate_text()), byte 1 the output
 * capacity for a second, truncating call, the rest is the value.
 * Properties:
 *   - a value with CR, LF or another control character, or of
 *     SCHEMA_VALUE_MAX bytes or more, is refused;
 *   - an accepted value is a single line without control characters and
 *     shorter than SCHEMA_VALUE_MAX, and validates again to itself
 *     (the canonical form is a fixed point);
 *   - SCHEMA_SEALED keys always refuse with DM_EPERM;
 *   - error messages are one line; a small output buffer never overflows;
 *   - text_escape() output has no control characters and fits its cap;
 *   - schema_find() of a name returns a key whose name matches it.
 */
#include "fuzz_util.h"

#include <strings.h>

#include "core/schema.h"
#include "core/text.h"

static bool fuzz_has_ctl(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return true;
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size > 2 * SCHEMA_VALUE_MAX)
		return 0;
	size_t nkeys = 0;
	const struct schema_key *keys = schema_keys(&nkeys);
	size_t ki = data[0] % (nkeys + 1);
	size_t smallcap = data[1] % 64;
	char *value = malloc(size - 1);
	if (!value)
		abort();
	memcpy(value, data + 2, size - 2);
	value[size - 2] = '\0';

	static char out[SCHEMA_VALUE_MAX], again[SCHEMA_VALUE_MAX];
	struct dm_err err;
	dm_err_clear(&err);
	const struct schema_key *k = ki < nkeys ? &keys[ki] : NULL;
	enum dm_status st = k ? schema_validate(k, value, out, sizeof(out), &err)
	                      : schema_validate_text("Fuzz/Key", value, out, sizeof(out), &err);
	bool must_refuse = fuzz_has_ctl(value) || strlen(value) >= SCHEMA_VALUE_MAX;
	if (k && k->type == SCHEMA_SEALED)
		FUZZ_CHECK(st == DM_EPERM, "sealed key %s accepted a value (st %d)", k->name, (int)st);
	if (st == DM_OK) {
		FUZZ_CHECK(!must_refuse, "key %s accepted a control character or long value",
		           k ? k->name : "(text)");
		size_t ol = strnlen(out, sizeof(out));
		FUZZ_CHECK(ol < SCHEMA_VALUE_MAX, "output not terminated");
		FUZZ_CHECK(!fuzz_has_ctl(out), "key %s: control character in '%s'",
		           k ? k->name : "(text)", out);
		dm_err_clear(&err);
		enum dm_status st2 = k ? schema_validate(k, out, again, sizeof(again), &err)
		                       : schema_validate_text("Fuzz/Key", out, again, sizeof(again), &err);
		FUZZ_CHECK(st2 == DM_OK, "key %s: canonical '%s' (from '%s') refused: %s",
		           k ? k->name : "(text)", out, value, err.msg);
		FUZZ_CHECK(strcmp(out, again) == 0, "key %s: '%s' -> '%s' -> '%s'",
		           k ? k->name : "(text)", value, out, again);
	} else {
		FUZZ_CHECK(st == DM_EINVAL || st == DM_EPERM, "status %d", (int)st);
		FUZZ_CHECK(err.msg[0] && !fuzz_has_ctl(err.msg), "message '%s'", err.msg);
	}

	/* a small output buffer: no overflow (ASan), terminated */
	char *small = malloc(smallcap ? smallcap : 1);
	if (!small)
		abort();
	if (k)
		st = schema_validate(k, value, small, smallcap, NULL);
	else
		st = schema_validate_text("Fuzz/Key", value, small, smallcap, NULL);
	/* (DM_EPERM for sealed keys leaves out untouched, as documented) */
	if (smallcap > 0 && st != DM_EPERM)
		FUZZ_CHECK(memchr(small, '\0', smallcap) != NULL, "small output not terminated");
	free(small);

	char esc[96];
	size_t ecap = 4 + data[1] % 92;
	const char *e = text_escape(value, esc, ecap);
	FUZZ_CHECK(e == esc && strnlen(esc, ecap) < ecap && !fuzz_has_ctl(esc),
	           "text_escape into %zu", ecap);

	const struct schema_key *f = schema_find(value);
	if (f)
		FUZZ_CHECK(strcasecmp(f->name, value) == 0, "schema_find('%s') gave %s", value, f->name);
	if (schema_name_ok(value))
		FUZZ_CHECK(strlen(value) <= 128 && strchr(value, '/') && !fuzz_has_ctl(value),
		           "schema_name_ok('%s')", value);
	bool b;
	if (schema_parse_bool(value, &b))
		FUZZ_CHECK(strlen(value) <= 5, "bool '%s'", value);
	free(value);
	return 0;
}
