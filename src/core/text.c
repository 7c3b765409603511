/* text.c - hex encoding, UTF-8 validation (RFC 3629), atext/dot-atom (RFC
 * 5322 3.2.3), one-line copies and escaped quotes of untrusted text,
 * shared by the mail code, the registry schema, the log and the durable
 * writes. */
#include "core/text.h"

#include <stdio.h>
#include <string.h>

size_t text_hex(const void *in, size_t n, char *out, size_t cap, bool upper,
                char sep)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	const unsigned char *b = in;
	size_t o = 0;

	if (cap == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		size_t need = (i > 0 && sep != '\0' ? 1 : 0) + 2;
		if (o + need + 1 > cap)
			break;
		if (i > 0 && sep != '\0')
			out[o++] = sep;
		out[o++] = digits[b[i] >> 4];
		out[o++] = digits[b[i] & 15];
	}
	out[o] = '\0';
	return o;
}

size_t text_utf8_seq(const void *s, size_t len)
{
	const unsigned char *b = s;
	unsigned char c, lo = 0x80, hi = 0xBF;
	size_t n;

	if (len == 0)
		return 0;
	c = b[0];
	if (c < 0x80)
		return 1;
	/* RFC 3629 section 4: the second byte's range depends on the first. */
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0;          /* no overlong 3-byte forms */
		else if (c == 0xED)
			hi = 0x9F;          /* no surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90;          /* no overlong 4-byte forms */
		else if (c == 0xF4)
			hi = 0x8F;          /* nothing past U+10FFFF */
	} else {
		return 0;
	}
	if (len < n || b[1] < lo || b[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (b[i] < 0x80 || b[i] > 0xBF)
			return 0;
	return n;
}

bool text_utf8_valid(const char *s, size_t len)
{
	for (size_t i = 0, n; i < len; i += n)
		if ((n = text_utf8_seq(s + i, len - i)) == 0)
			return false;
	return true;
}

bool text_is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

size_t text_one_line(const char *in, size_t len, char *out, size_t cap,
                     char repl)
{
	size_t i = 0;

	if (cap == 0)
		return 0;
	for (; i < len && i + 1 < cap; i++)
		out[i] = text_is_ctl((unsigned char)in[i]) ? repl : in[i];
	out[i] = '\0';
	return i;
}

const char *text_escape(const char *in, char *out, size_t cap)
{
	size_t o = 0;

	if (cap < 8) {
		if (cap > 0)
			out[0] = '\0';
		return out;
	}
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		char esc[8];
		if (*p == '\n')
			snprintf(esc, sizeof(esc), "\\n");
		else if (*p == '\r')
			snprintf(esc, sizeof(esc), "\\r");
		else if (*p == '\t')
			snprintf(esc, sizeof(esc), "\\t");
		else if (*p == '\\' || *p == '\'')
			snprintf(esc, sizeof(esc), "\\%c", *p);
		else if (text_is_ctl(*p))
			snprintf(esc, sizeof(esc), "\\x%02x", *p);
		else
			snprintf(esc, sizeof(esc), "%c", *p);
		size_t el = strlen(esc);
		if (o + el + 4 > cap) {         /* keep room for "..." and NUL */
			memcpy(out + o, "...", 4);
			return out;
		}
		memcpy(out + o, esc, el);
		o += el;
	}
	out[o] = '\0';
	return out;
}

bool text_atext(unsigned char c)
{
	if (c >= 0x80)
		return true;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

bool text_dot_atom(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!text_atext((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

const char *text_mailbox_shape(const char *s, size_t len, size_t *lt,
                               size_t *gt)
{
	bool inq = false, seen_at = false;

	*lt = *gt = len;
	for (size_t i = 0; i < len; i++) {
		if (inq && s[i] == '\\') {
			i++;
			continue;
		}
		if (s[i] == '"') {
			inq = !inq;
			continue;
		}
		if (inq)
			continue;
		if (s[i] == '(' || s[i] == ')')
			return "comments '(...)' are not supported; put a name in "
			    "double quotes before <address>";
		if (s[i] == '<') {
			if (*lt != len)
				return "has more than one '<'";
			*lt = i;
		} else if (s[i] == '>') {
			if (*lt == len)
				return "has unbalanced angle brackets: '>' without '<'";
			if (*gt != len)
				return "has more than one '>'";
			*gt = i;
		} else if (s[i] == ',' || s[i] == ';') {
			if (*lt == len || *gt != len)
				return "has a ',' or ';' outside quotes: one address "
				    "expected (lists are separated by ',')";
		} else if (s[i] == '@') {
			seen_at = true;
		} else if (s[i] == ':' && *lt == len && !seen_at) {
			return "has ':' outside quotes (group syntax 'name: a@b;' is "
			    "not supported)";
		}
	}
	if (inq)
		return "has unbalanced quotes";
	if (*lt != len && *gt == len)
		return "has unbalanced angle brackets: '<' without '>'";
	return NULL;
}
