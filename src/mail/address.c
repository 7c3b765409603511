/*
 * address.c - mailbox and address-list parsing and formatting.
 *
 * The grammar (what is one mailbox, where a list splits) is core/text's
 * text_mailbox_parse() and text_list_next(), shared with the registry's
 * address rule; this file adds what only mail needs: the control-character
 * refusals in its own words, the canonical addr-spec, the display name
 * decoded (RFC 2047) and measured decoded, and the header form.
 *
 * RFCs: 5322 section 3.4 (mailbox, name-addr, addr-spec) and 3.2.3 (atext,
 * dot-atom), 3.2.4 (quoted-string); 5321 section 4.5.3.1 (length limits)
 * and 4.1.3 (address literals); 1035/1123 (host name labels); 6531/6532
 * (UTF-8 in local parts, domains and display names); 2047 (display names
 * as encoded-words).  What is accepted and what is refused is listed in
 * address.h.
 */
#include "mail/address.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/text.h"
#include "mail/codec.h"

/* Copy of the input safe to put in a message: control characters become
 * '?', cut to fit. */
static void address_echo(const char *text, char *out, size_t cap)
{
	size_t len = strlen(text);

	if (cap < 4) {
		if (cap > 0)
			out[0] = '\0';
		return;
	}
	size_t n = text_one_line(text, len, out, cap - 3, '?');
	if (n < len)
		memcpy(out + n, "...", 4);
}

#define ADDRESS_FAIL(err, input, ...)                                        \
	do {                                                                 \
		char echo_[160], why_[300];                                  \
		address_echo((input), echo_, sizeof(echo_));                 \
		snprintf(why_, sizeof(why_), __VA_ARGS__);                   \
		return dm_err_set((err), DM_EINVAL, "address '%s': %s",      \
		                  echo_, why_);                              \
	} while (0)


/* Builds the display name s[len] (already checked by the grammar: atoms,
 * '.' allowed, and quoted strings) into a->name: quotes and escapes
 * undone, blank runs as one space, RFC 2047 encoded-words decoded. */
static enum dm_status address_name(const char *input, const char *s,
                                   size_t len, struct address *a,
                                   struct dm_err *err)
{
	size_t n = 0;
	bool space_before = false, prev_ew = false;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == ' ' || c == '\t') {
			space_before = n > 0;
			continue;
		}
		if (c == '"') {
			if (space_before) {
				if (n >= ADDRESS_NAME_MAX)
					goto toolong;
				a->name[n++] = ' ';
			}
			for (i++; i < len && s[i] != '"'; i++) {
				if (s[i] == '\\' && i + 1 < len)
					i++;
				if (n >= ADDRESS_NAME_MAX)
					goto toolong;
				a->name[n++] = s[i];
			}
			space_before = prev_ew = false;
			continue;
		}
		/* an atom (with '.' as in obs-phrase) */
		size_t j = i;
		while (j < len && s[j] != ' ' && s[j] != '\t' && s[j] != '"')
			j++;
		/* RFC 2047 encoded-word: decoded; the space between two adjacent
		 * encoded-words is not part of the text (RFC 2047 section 6.2) */
		char dec[CODEC_WORD_MAX + 1];
		size_t dl;
		bool ew = j - i >= 8 && s[i] == '=' && s[i + 1] == '?' &&
		          codec_decode_word(s + i, j - i, dec, sizeof(dec), &dl,
		                            NULL) == DM_OK;
		if (space_before && !(ew && prev_ew)) {
			if (n >= ADDRESS_NAME_MAX)
				goto toolong;
			a->name[n++] = ' ';
		}
		const char *src = ew ? dec : s + i;
		size_t sl = ew ? dl : j - i;
		if (n + sl > ADDRESS_NAME_MAX)
			goto toolong;
		memcpy(a->name + n, src, sl);
		n += sl;
		prev_ew = ew;
		space_before = false;
		i = j - 1;
	}
	a->name[n] = '\0';
	return DM_OK;
toolong:
	ADDRESS_FAIL(err, input, "has a display name longer than %d octets",
	             ADDRESS_NAME_MAX);
}

enum dm_status address_parse(const char *text, struct address *out,
                             struct dm_err *err)
{
	struct address a;
	struct text_mailbox m;
	const char *s = text ? text : "";
	size_t len = strlen(s);
	char why[300];
	enum dm_status st;

	memset(&a, 0, sizeof(a));
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r')
			ADDRESS_FAIL(err, s, "contains a CR (line breaks are not "
			             "allowed in addresses)");
		if (c == '\n')
			ADDRESS_FAIL(err, s, "contains a LF (line breaks are not "
			             "allowed in addresses)");
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			ADDRESS_FAIL(err, s, "contains control character 0x%02X", c);
	}
	/* The grammar the registry checks Email/FromAddress with, too. */
	if (!text_mailbox_parse(s, len, &m, why, sizeof(why)))
		ADDRESS_FAIL(err, s, "%s", why);
	/* Fits: the grammar caps the canonical addr-spec at 254 octets. */
	size_t loc = text_local_canon(s + m.local_off, m.local_len, a.spec,
	                              sizeof(a.spec));
	a.spec[loc] = '@';
	memcpy(a.spec + loc + 1, s + m.domain_off, m.domain_len);
	a.spec[loc + 1 + m.domain_len] = '\0';
	a.utf8 = !codec_is_ascii(a.spec, strlen(a.spec));
	if (m.name_len &&
	    (st = address_name(s, s + m.name_off, m.name_len, &a, err)) != DM_OK)
		return st;
	*out = a;
	return DM_OK;
}

enum dm_status address_list_parse(const char *text, struct address **out,
                                  size_t *count, struct dm_err *err)
{
	const char *s = text ? text : "";
	size_t len = strlen(s), pos = 0, a, b, n = 0, cap = 0;
	struct address *list = NULL;

	*out = NULL;
	*count = 0;
	/* Split where the registry splits Email/ToAddress (core/text). */
	while (text_list_next(s, len, &pos, &a, &b)) {
		if (a == b)
			continue;
		if (n == ADDRESS_LIST_MAX) {
			free(list);
			return dm_err_set(err, DM_ENOMEM, "address list has more than "
			                  "%d entries", ADDRESS_LIST_MAX);
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 4;
			struct address *nl = realloc(list, ncap * sizeof(*nl));
			if (!nl) {
				free(list);
				return dm_err_set(err, DM_ENOMEM, "address list: out of "
				                  "memory");
			}
			list = nl;
			cap = ncap;
		}
		char *one = strndup(s + a, b - a);
		if (!one) {
			free(list);
			return dm_err_set(err, DM_ENOMEM, "address list: out of memory");
		}
		enum dm_status st = address_parse(one, &list[n], err);
		free(one);
		if (st != DM_OK) {
			free(list);
			return st;
		}
		n++;
	}
	*out = list;
	*count = n;
	return DM_OK;
}

void address_list_free(struct address *list)
{
	free(list);
}

enum dm_status address_format(const struct address *a, char *out, size_t cap,
                              struct dm_err *err)
{
	size_t nlen = strlen(a->name), o = 0;
	bool plain = nlen > 0, ascii = codec_is_ascii(a->name, nlen);
	int r;

	/* Unquoted, a phrase loses its leading, trailing and repeated spaces
	 * when parsed again (RFC 5322 3.2.2 folding white space), so only
	 * atoms separated by single spaces stay plain; anything else is
	 * quoted, where spaces are kept (3.2.4). */
	for (size_t i = 0; i < nlen && plain; i++) {
		if (a->name[i] == ' ') {
			if (i == 0 || i + 1 == nlen || a->name[i + 1] == ' ')
				plain = false;
		} else if (!text_atext((unsigned char)a->name[i])) {
			plain = false;
		}
	}
	if (strstr(a->name, "=?"))
		plain = false;
	if (nlen == 0) {
		r = snprintf(out, cap, "%s", a->spec);
	} else if (!ascii) {
		size_t wl;
		enum dm_status st = codec_encode_words(a->name, nlen, CODEC_WORD_MAX,
		                                       out, cap, &wl, err);
		if (st != DM_OK)
			return st;
		r = snprintf(out + wl, cap - wl, " <%s>", a->spec);
		r = r < 0 ? r : r + (int)wl;
	} else if (plain) {
		r = snprintf(out, cap, "%s <%s>", a->name, a->spec);
	} else {
		if (cap < 1)
			return dm_err_set(err, DM_ENOMEM, "address too long to format");
		out[o++] = '"';
		for (size_t i = 0; i < nlen; i++) {
			if (o + 2 >= cap)
				return dm_err_set(err, DM_ENOMEM, "address too long to "
				                  "format");
			if (a->name[i] == '"' || a->name[i] == '\\')
				out[o++] = '\\';
			out[o++] = a->name[i];
		}
		r = snprintf(out + o, cap - o, "\" <%s>", a->spec);
		r = r < 0 ? r : r + (int)o;
	}
	if (r < 0 || (size_t)r >= cap)
		return dm_err_set(err, DM_ENOMEM, "address too long to format");
	return DM_OK;
}

bool address_needs_smtputf8(const struct address *a)
{
	return a->utf8;
}

bool address_same(const struct address *a, const struct address *b)
{
	const char *ra = strrchr(a->spec, '@'), *rb = strrchr(b->spec, '@');

	if (!ra || !rb || ra - a->spec != rb - b->spec)
		return strcmp(a->spec, b->spec) == 0;
	return strncmp(a->spec, b->spec, (size_t)(ra - a->spec)) == 0 &&
	       strcasecmp(ra, rb) == 0;
}
