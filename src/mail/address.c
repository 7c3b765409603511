/*
 * address.c - mailbox and address-list parsing and formatting.
 *
 * RFCs: 5322 section 3.4 (mailbox, name-addr, addr-spec) and 3.2.3 (atext,
 * dot-atom), 3.2.4 (quoted-string); 5321 section 4.5.3.1 (length limits)
 * and 4.1.3 (address literals); 1035/1123 (host name labels); 6531/6532
 * (UTF-8 in local parts, domains and display names); 2047 (display names
 * as encoded-words).  What is accepted and what is refused is listed in
 * address.h.
 */
#include "mail/address.h"

#include <arpa/inet.h>
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


/* Parses the local part s[len] into out (canonical form), *outlen. */
static enum dm_status address_local(const char *input, const char *s,
                                    size_t len, char *out, size_t *outlen,
                                    struct dm_err *err)
{
	char raw[ADDRESS_SPEC_MAX + 1];
	size_t n = 0;

	if (len == 0)
		ADDRESS_FAIL(err, input, "the local part (before '@') is empty");
	if (s[0] == '"') {
		size_t i = 1;
		bool closed = false;
		for (; i < len; i++) {
			if (s[i] == '\\') {
				if (i + 1 >= len)
					ADDRESS_FAIL(err, input, "unbalanced quotes in the "
					             "local part");
				i++;
			} else if (s[i] == '"') {
				closed = true;
				i++;
				break;
			}
			/* RFC 5321 4.1.2: qtextSMTP and quoted-pairSMTP are
			 * printable (%d32-126, UTF-8 per RFC 6531); the TAB that
			 * address_parse() lets through for display names would
			 * go out raw in MAIL FROM / RCPT TO. */
			if (s[i] == '\t')
				ADDRESS_FAIL(err, input, "the quoted local part contains "
				             "a TAB (RFC 5321 4.1.2 allows only printable "
				             "characters and spaces)");
			if (n >= ADDRESS_SPEC_MAX)
				ADDRESS_FAIL(err, input, "the local part is longer than "
				             "%d octets", ADDRESS_LOCAL_MAX);
			raw[n++] = s[i];
		}
		if (!closed)
			ADDRESS_FAIL(err, input, "unbalanced quotes in the local part");
		if (i != len)
			ADDRESS_FAIL(err, input, "text after the quoted local part "
			             "(a quoted local part must be quoted whole)");
		if (n == 0)
			ADDRESS_FAIL(err, input, "the local part (before '@') is empty");
		raw[n] = '\0';
		if (text_dot_atom(raw, n)) {
			memcpy(out, raw, n);
			*outlen = n;
		} else {
			size_t o = 0;
			out[o++] = '"';
			for (size_t k = 0; k < n; k++) {
				if (o + 3 > ADDRESS_SPEC_MAX)
					ADDRESS_FAIL(err, input, "the local part is longer "
					             "than %d octets", ADDRESS_LOCAL_MAX);
				if (raw[k] == '"' || raw[k] == '\\')
					out[o++] = '\\';
				out[o++] = raw[k];
			}
			out[o++] = '"';
			*outlen = o;
		}
	} else {
		for (size_t i = 0; i < len; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c == ' ' || c == '\t')
				ADDRESS_FAIL(err, input, "the local part contains a space "
				             "(quote it: \"a b\"@example.com)");
			if (c == '"')
				ADDRESS_FAIL(err, input, "unbalanced quotes in the local "
				             "part (a quoted local part must be quoted "
				             "whole)");
			if (c != '.' && !text_atext(c))
				ADDRESS_FAIL(err, input, "the local part contains '%c', "
				             "which is not allowed unquoted", c);
		}
		if (!text_dot_atom(s, len))
			ADDRESS_FAIL(err, input, "the local part has a misplaced '.' "
			             "(at the start, at the end, or two in a row)");
		/* checked before the copy: out holds ADDRESS_SPEC_MAX + 1 */
		if (len > ADDRESS_LOCAL_MAX)
			ADDRESS_FAIL(err, input, "the local part is %zu octets, longer "
			             "than %d", len, ADDRESS_LOCAL_MAX);
		memcpy(out, s, len);
		*outlen = len;
	}
	if (*outlen > ADDRESS_LOCAL_MAX)
		ADDRESS_FAIL(err, input, "the local part is %zu octets, longer than "
		             "%d", *outlen, ADDRESS_LOCAL_MAX);
	return DM_OK;
}

static enum dm_status address_domain(const char *input, const char *s,
                                     size_t len, struct dm_err *err)
{
	if (len == 0)
		ADDRESS_FAIL(err, input, "the domain (after '@') is empty");
	if (s[0] == '[') {
		char lit[64];
		if (s[len - 1] != ']')
			ADDRESS_FAIL(err, input, "unbalanced '[' in the domain literal");
		if (len - 2 >= sizeof(lit))
			ADDRESS_FAIL(err, input, "the domain literal is too long");
		memcpy(lit, s + 1, len - 2);
		lit[len - 2] = '\0';
		unsigned char bin[16];
		if (strncasecmp(lit, "IPv6:", 5) == 0) {
			if (inet_pton(AF_INET6, lit + 5, bin) != 1)
				ADDRESS_FAIL(err, input, "'[%s]' is not a valid IPv6 "
				             "address literal", lit);
		} else if (inet_pton(AF_INET, lit, bin) != 1) {
			ADDRESS_FAIL(err, input, "'[%s]' is not a valid address "
			             "literal ([192.0.2.1] or [IPv6:2001:db8::1])", lit);
		}
		return DM_OK;
	}
	if (len > 253)
		ADDRESS_FAIL(err, input, "the domain is %zu octets, longer than 253",
		             len);
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.') {
			unsigned char c = (unsigned char)s[i];
			if (c == ' ' || c == '\t')
				ADDRESS_FAIL(err, input, "the domain contains a space");
			if (!(c >= 0x80 || c == '-' || (c >= 'a' && c <= 'z') ||
			      (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
				ADDRESS_FAIL(err, input, "the domain contains '%c' (labels "
				             "are letters, digits and '-')", c);
			continue;
		}
		size_t l = i - start;
		if (l == 0)
			ADDRESS_FAIL(err, input, "the domain has an empty label (a '.' "
			             "at the start, at the end, or two in a row)");
		if (l > 63)
			ADDRESS_FAIL(err, input, "the domain label '%.*s...' is %zu "
			             "octets, longer than 63", 20, s + start, l);
		if (s[start] == '-' || s[i - 1] == '-')
			ADDRESS_FAIL(err, input, "the domain label '%.*s' starts or "
			             "ends with '-'", (int)l, s + start);
		start = i + 1;
	}
	return DM_OK;
}

/* Parses an addr-spec s[len] into a->spec. */
static enum dm_status address_spec(const char *input, const char *s,
                                   size_t len, struct address *a,
                                   struct dm_err *err)
{
	enum dm_status st;
	size_t at = len;
	bool inq = false;
	size_t loclen = 0;

	/* trim */
	while (len > 0 && (s[0] == ' ' || s[0] == '\t'))
		s++, len--;
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0)
		ADDRESS_FAIL(err, input, "no address given");
	for (size_t i = 0; i < len; i++) {
		if (inq && s[i] == '\\') {
			i++;
			continue;
		}
		if (s[i] == '"')
			inq = !inq;
		else if (!inq && s[i] == '@')
			at = i;
	}
	if (inq)
		ADDRESS_FAIL(err, input, "unbalanced quotes");
	if (at == len)
		ADDRESS_FAIL(err, input, "missing '@' (expected local@domain)");
	if (s[0] == '@')
		ADDRESS_FAIL(err, input, "the local part (before '@') is empty");
	if ((st = address_local(input, s, at, a->spec, &loclen, err)) != DM_OK)
		return st;
	if ((st = address_domain(input, s + at + 1, len - at - 1, err)) != DM_OK)
		return st;
	if (loclen + 1 + (len - at - 1) > ADDRESS_SPEC_MAX)
		ADDRESS_FAIL(err, input, "the address is %zu octets, longer than %d",
		             loclen + 1 + (len - at - 1), ADDRESS_SPEC_MAX);
	a->spec[loclen] = '@';
	memcpy(a->spec + loclen + 1, s + at + 1, len - at - 1);
	a->spec[loclen + 1 + len - at - 1] = '\0';
	a->utf8 = !codec_is_ascii(a->spec, strlen(a->spec));
	return DM_OK;
}

/* Parses a display name (phrase of atoms and quoted strings, '.' allowed
 * as in obs-phrase) s[len] into a->name, whitespace runs collapsed. */
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
			bool closed = false;
			for (i++; i < len; i++) {
				if (s[i] == '\\' && i + 1 < len)
					i++;
				else if (s[i] == '"') {
					closed = true;
					break;
				}
				if (n >= ADDRESS_NAME_MAX)
					goto toolong;
				a->name[n++] = s[i];
			}
			if (!closed)
				ADDRESS_FAIL(err, input, "unbalanced quotes in the display "
				             "name");
			space_before = prev_ew = false;
			continue;
		}
		/* an atom (with '.' as in obs-phrase) */
		size_t j = i;
		while (j < len && s[j] != ' ' && s[j] != '\t' && s[j] != '"') {
			unsigned char d = (unsigned char)s[j];
			if (d != '.' && !text_atext(d))
				ADDRESS_FAIL(err, input, "the display name contains '%c'; "
				             "put the name in double quotes", d);
			j++;
		}
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
	ADDRESS_FAIL(err, input, "the display name is longer than %d octets",
	             ADDRESS_NAME_MAX);
}

enum dm_status address_parse(const char *text, struct address *out,
                             struct dm_err *err)
{
	struct address a;
	const char *s = text ? text : "";
	size_t len = strlen(s);
	size_t lt, gt;
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
	if (!codec_utf8_valid(s, len))
		ADDRESS_FAIL(err, s, "is not valid UTF-8");
	const char *why = text_mailbox_shape(s, len, &lt, &gt);
	if (why)
		ADDRESS_FAIL(err, s, "%s", why);
	if (lt == len) {
		st = address_spec(s, s, len, &a, err);
		if (st != DM_OK)
			return st;
	} else {
		for (size_t i = gt + 1; i < len; i++)
			if (s[i] != ' ' && s[i] != '\t')
				ADDRESS_FAIL(err, s, "unexpected text after '>'");
		if (gt == lt + 1)
			ADDRESS_FAIL(err, s, "empty address '<>'");
		if (s[lt + 1] == '@')
			ADDRESS_FAIL(err, s, "source routes '<@host:...>' are not "
			             "supported");
		if ((st = address_name(s, s, lt, &a, err)) != DM_OK)
			return st;
		if ((st = address_spec(s, s + lt + 1, gt - lt - 1, &a, err)) != DM_OK)
			return st;
	}
	*out = a;
	return DM_OK;
}

enum dm_status address_list_parse(const char *text, struct address **out,
                                  size_t *count, struct dm_err *err)
{
	const char *s = text ? text : "";
	size_t len = strlen(s), start = 0, n = 0, cap = 0;
	struct address *list = NULL;
	bool inq = false;
	int angle = 0;

	*out = NULL;
	*count = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len) {
			if (inq && s[i] == '\\' && i + 1 < len) {
				i++;
				continue;
			}
			if (s[i] == '"')
				inq = !inq;
			else if (!inq && s[i] == '<')
				angle++;
			else if (!inq && s[i] == '>' && angle > 0)
				angle--;
			if (inq || angle > 0 || (s[i] != ',' && s[i] != ';'))
				continue;
		}
		/* one entry: s[start..i) */
		size_t a = start, b = i;
		start = i + 1;
		while (a < b && (s[a] == ' ' || s[a] == '\t'))
			a++;
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
