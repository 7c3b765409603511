/*
 * fuzz_address.c - mailbox and address-list parsing (mail/address.h) and
 * the format/parse round trip.
 *
 * Input: the whole input is the text (cut at the first NUL), parsed both as
 * one mailbox and as a list.
 * Properties, for every mailbox accepted:
 *   - spec is 3..ADDRESS_SPEC_MAX octets with an '@', name at most
 *     ADDRESS_NAME_MAX; neither holds CR, LF or other control characters
 *     except tab in a name; utf8 is set exactly when spec is not ASCII;
 *   - address_format() succeeds into ADDRESS_HEADER_MAX and gives one line;
 *   - parsing the formatted text gives the same spec, name and utf8, and
 *     formatting that gives the same text again (round trip);
 *   - address_same() is reflexive;
 *   - a list joined from the formatted entries with ", " parses back to
 *     the same entries.
 */
#include "fuzz_util.h"

#include "mail/address.h"
#include "mail/codec.h"

static void fuzz_address_check(const struct address *a, const char *input)
{
	size_t sl = strnlen(a->spec, sizeof(a->spec));
	size_t nl = strnlen(a->name, sizeof(a->name));
	FUZZ_CHECK(sl < sizeof(a->spec) && sl >= 3 && sl <= ADDRESS_SPEC_MAX,
	           "spec length %zu from '%s'", sl, input);
	FUZZ_CHECK(nl < sizeof(a->name) && nl <= ADDRESS_NAME_MAX, "name length %zu", nl);
	FUZZ_CHECK(strrchr(a->spec, '@') != NULL, "no '@' in spec '%s'", a->spec);
	for (size_t i = 0; i < sl; i++) {
		unsigned char c = (unsigned char)a->spec[i];
		FUZZ_CHECK(c >= 0x20 && c != 0x7f, "control 0x%02x in spec from '%s'", c, input);
	}
	for (size_t i = 0; i < nl; i++) {
		unsigned char c = (unsigned char)a->name[i];
		FUZZ_CHECK((c >= 0x20 || c == '\t') && c != 0x7f,
		           "control 0x%02x in name from '%s'", c, input);
	}
	FUZZ_CHECK(a->utf8 == !codec_is_ascii(a->spec, sl), "utf8 flag for '%s'", a->spec);
	FUZZ_CHECK(address_needs_smtputf8(a) == a->utf8, "needs_smtputf8");
	FUZZ_CHECK(codec_utf8_valid(a->name, nl), "name not UTF-8 from '%s'", input);
	FUZZ_CHECK(address_same(a, a), "address_same not reflexive for '%s'", a->spec);
}

/* Formats a, checks it, parses it back; returns the formatted length. */
static size_t fuzz_address_roundtrip(const struct address *a, const char *input,
                                     char *f, size_t cap)
{
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = address_format(a, f, cap, &err);
	FUZZ_CHECK(st == DM_OK, "format of spec '%s' name '%s' from '%s': %s",
	           a->spec, a->name, input, err.msg);
	size_t fl = strlen(f);
	FUZZ_CHECK(fl < cap, "formatted length");
	FUZZ_CHECK(strpbrk(f, "\r\n") == NULL, "CR/LF in formatted '%s'", f);

	struct address b;
	dm_err_clear(&err);
	st = address_parse(f, &b, &err);
	FUZZ_CHECK(st == DM_OK, "formatted '%s' (from '%s') does not parse: %s",
	           f, input, err.msg);
	FUZZ_CHECK(strcmp(a->spec, b.spec) == 0, "spec '%s' -> '%s' -> '%s'",
	           a->spec, f, b.spec);
	FUZZ_CHECK(strcmp(a->name, b.name) == 0, "name '%s' -> '%s' -> '%s' (input '%s')",
	           a->name, f, b.name, input);
	FUZZ_CHECK(a->utf8 == b.utf8, "utf8 flag changed through '%s'", f);

	char g[ADDRESS_HEADER_MAX];
	st = address_format(&b, g, sizeof(g), NULL);
	FUZZ_CHECK(st == DM_OK && strcmp(f, g) == 0, "format not stable: '%s' vs '%s'", f, g);
	return fl;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	struct address a;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = address_parse(text, &a, &err);
	if (st == DM_OK) {
		char f[ADDRESS_HEADER_MAX];
		fuzz_address_check(&a, text);
		fuzz_address_roundtrip(&a, text, f, sizeof(f));
	} else {
		FUZZ_CHECK(st == DM_EINVAL && err.msg[0], "status %d", (int)st);
		FUZZ_CHECK(strpbrk(err.msg, "\r\n") == NULL, "CR/LF in message '%s'", err.msg);
	}

	struct address *list = NULL;
	size_t count = 99;
	dm_err_clear(&err);
	st = address_list_parse(text, &list, &count, &err);
	if (st == DM_OK) {
		FUZZ_CHECK(count <= ADDRESS_LIST_MAX, "count %zu", count);
		FUZZ_CHECK((count == 0) == (list == NULL), "count %zu list %p", count, (void *)list);
		/* joined header form */
		size_t cap = count * (ADDRESS_HEADER_MAX + 2) + 1;
		char *joined = malloc(cap);
		if (!joined) {
			address_list_free(list);
			free(text);
			return 0;
		}
		size_t jl = 0;
		joined[0] = '\0';
		for (size_t i = 0; i < count; i++) {
			fuzz_address_check(&list[i], text);
			if (i > 0) {
				memcpy(joined + jl, ", ", 2);
				jl += 2;
			}
			jl += fuzz_address_roundtrip(&list[i], text, joined + jl, cap - jl);
		}
		struct address *back = NULL;
		size_t nback = 0;
		dm_err_clear(&err);
		st = address_list_parse(joined, &back, &nback, &err);
		FUZZ_CHECK(st == DM_OK, "joined list '%s' does not parse: %s", joined, err.msg);
		FUZZ_CHECK(nback == count, "%zu entries became %zu through '%s'", count, nback, joined);
		for (size_t i = 0; i < count; i++)
			FUZZ_CHECK(strcmp(list[i].spec, back[i].spec) == 0 &&
			           strcmp(list[i].name, back[i].name) == 0,
			           "entry %zu changed through '%s'", i, joined);
		address_list_free(back);
		free(joined);
		address_list_free(list);
	} else {
		FUZZ_CHECK((st == DM_EINVAL || st == DM_ENOMEM) && err.msg[0], "status %d", (int)st);
		FUZZ_CHECK(list == NULL && count == 0, "outputs set on error");
	}
	free(text);
	return 0;
}
