/* text.c - hex encoding, UTF-8 validation (RFC 3629), atext/dot-atom (RFC
 * 5322 3.2.3), one-line copies and escaped quotes of untrusted text,
 * shared by the mail code, the registry schema, the log and the durable
 * writes. */
#include "core/text.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

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

/* ---- the address grammar (see text.h) ------------------------------------ */

static bool text_blank(char c)
{
	return c == ' ' || c == '\t';
}

__attribute__((format(printf, 3, 4)))
static bool text_why(char *why, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (cap > 0) {
		va_start(ap, fmt);
		vsnprintf(why, cap, fmt, ap);
		va_end(ap);
	}
	return false;
}

/* "has 'x' in WHERE", or "has a control character in WHERE". */
static bool text_why_char(char *why, size_t cap, unsigned char c,
                          const char *where, const char *rule)
{
	if (text_is_ctl(c))
		return text_why(why, cap, "has a control character in %s", where);
	return text_why(why, cap, "has '%c' in %s%s", c, where, rule);
}

/* The content of a quoted local part "..." (escapes undone), one octet at a
 * time: *i starts at 1, the octet goes to *c; false at the closing quote. */
static bool text_quoted_next(const char *s, size_t len, size_t *i, char *c)
{
	if (*i + 1 >= len)
		return false;
	if (s[*i] == '\\')
		(*i)++;
	*c = s[(*i)++];
	return true;
}

size_t text_local_canon(const char *s, size_t len, char *out, size_t cap)
{
	size_t n = 0, specials = 0, i = 1;
	bool dot_atom = true;
	char c, prev = '.';

	if (len == 0 || s[0] != '"') {
		if (out && len < cap) {
			memcpy(out, s, len);
			out[len] = '\0';
		}
		return len;
	}
	/* A dot-atom inside the quotes needs none (RFC 5321 4.1.2). */
	while (text_quoted_next(s, len, &i, &c)) {
		if (c == '.')
			dot_atom = dot_atom && prev != '.';
		else if (!text_atext((unsigned char)c))
			dot_atom = false;
		specials += c == '"' || c == '\\';
		prev = c;
		n++;
	}
	dot_atom = dot_atom && n > 0 && prev != '.';
	size_t canon = dot_atom ? n : n + specials + 2;
	if (!out || canon >= cap)
		return canon;
	size_t o = 0;
	if (!dot_atom)
		out[o++] = '"';
	for (i = 1; text_quoted_next(s, len, &i, &c);) {
		if (!dot_atom && (c == '"' || c == '\\'))
			out[o++] = '\\';
		out[o++] = c;
	}
	if (!dot_atom)
		out[o++] = '"';
	out[o] = '\0';
	return canon;
}

/* Local part s[len]: a dot-atom, or one whole quoted string. */
static bool text_local_check(const char *s, size_t len, size_t *canon,
                             char *why, size_t cap)
{
	if (len == 0)
		return text_why(why, cap, "has an empty local part (before '@')");
	if (s[0] == '"') {
		size_t i = 1, content = 0;
		bool closed = false;
		for (; i < len; i++) {
			if (s[i] == '\\') {
				if (i + 1 >= len)
					break;
				i++;
			} else if (s[i] == '"') {
				closed = true;
				i++;
				break;
			}
			if (s[i] == '\t')
				return text_why(why, cap, "has a TAB in the quoted local "
				    "part (RFC 5321 4.1.2 allows only printable "
				    "characters and spaces)");
			if (text_is_ctl((unsigned char)s[i]))
				return text_why(why, cap, "has a control character in "
				    "the quoted local part");
			content++;
		}
		if (!closed)
			return text_why(why, cap, "has unbalanced quotes in the local "
			    "part");
		if (i != len)
			return text_why(why, cap, "has text after the quoted local part "
			    "(a quoted local part must be quoted whole)");
		if (content == 0)
			return text_why(why, cap, "has an empty local part (before '@')");
	} else {
		for (size_t i = 0; i < len; i++) {
			unsigned char c = (unsigned char)s[i];
			if (text_blank((char)c))
				return text_why(why, cap, "has a space in the local part "
				    "(quote it: \"a b\"@example.com)");
			if (c == '"')
				return text_why(why, cap, "has unbalanced quotes in the "
				    "local part (a quoted local part must be quoted "
				    "whole)");
			if (c != '.' && !text_atext(c))
				return text_why_char(why, cap, c, "the local part",
				                     ", which is not allowed unquoted");
		}
		if (!text_dot_atom(s, len))
			return text_why(why, cap, "has a misplaced '.' in the local part "
			    "(at the start, at the end, or two in a row)");
	}
	*canon = text_local_canon(s, len, NULL, 0);
	if (*canon > TEXT_ADDR_LOCAL_MAX)
		return text_why(why, cap, "has a local part of %zu octets, longer "
		    "than %d", *canon, TEXT_ADDR_LOCAL_MAX);
	return true;
}

/* Domain s[len]: labels, or an address literal (RFC 5321 4.1.3). */
static bool text_domain_check(const char *s, size_t len, char *why, size_t cap)
{
	if (len == 0)
		return text_why(why, cap, "has an empty domain (after '@')");
	if (s[0] == '[') {
		char lit[64], shown[64];
		unsigned char bin[16];
		if (s[len - 1] != ']')
			return text_why(why, cap, "has an unbalanced '[' in the domain "
			    "literal");
		if (len - 2 >= sizeof(lit))
			return text_why(why, cap, "has a domain literal that is too long");
		memcpy(lit, s + 1, len - 2);
		lit[len - 2] = '\0';
		text_one_line(lit, len - 2, shown, sizeof(shown), '?');
		if (strncasecmp(lit, "IPv6:", 5) == 0) {
			if (inet_pton(AF_INET6, lit + 5, bin) != 1)
				return text_why(why, cap, "has '[%s]', which is not a valid "
				    "IPv6 address literal", shown);
		} else if (inet_pton(AF_INET, lit, bin) != 1) {
			return text_why(why, cap, "has '[%s]', which is not a valid "
			    "address literal ([192.0.2.1] or [IPv6:2001:db8::1])", shown);
		}
		return true;
	}
	if (len > TEXT_ADDR_DOMAIN_MAX)
		return text_why(why, cap, "has a domain of %zu octets, longer than %d",
		    len, TEXT_ADDR_DOMAIN_MAX);
	for (size_t i = 0, start = 0; i <= len; i++) {
		if (i < len && s[i] != '.') {
			unsigned char c = (unsigned char)s[i];
			if (text_blank((char)c))
				return text_why(why, cap, "has a space in the domain");
			if (!(c >= 0x80 || c == '-' || (c >= 'a' && c <= 'z') ||
			      (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
				return text_why_char(why, cap, c, "the domain",
				                     " (labels are letters, digits and '-')");
			continue;
		}
		size_t l = i - start;
		if (l == 0)
			return text_why(why, cap, "has an empty label in the domain (a "
			    "'.' at the start, at the end, or two in a row)");
		if (l > TEXT_ADDR_LABEL_MAX)
			return text_why(why, cap, "has a domain label of %zu octets, "
			    "longer than %d", l, TEXT_ADDR_LABEL_MAX);
		if (s[start] == '-' || s[i - 1] == '-')
			return text_why(why, cap, "has a domain label '%.*s' starting or "
			    "ending with '-'", (int)l, s + start);
		start = i + 1;
	}
	return true;
}

/* addr-spec s[b..e) (blanks around it ignored). */
static bool text_addr_spec(const char *s, size_t b, size_t e,
                           struct text_mailbox *m, char *why, size_t cap)
{
	size_t at, canon = 0;
	bool inq = false;

	while (b < e && text_blank(s[b]))
		b++;
	while (e > b && text_blank(s[e - 1]))
		e--;
	if (b == e)
		return text_why(why, cap, "has no address");
	at = e;
	for (size_t i = b; i < e; i++) {
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
		return text_why(why, cap, "has unbalanced quotes");
	if (at == e)
		return text_why(why, cap, "has no '@' (expected local@domain)");
	if (!text_local_check(s + b, at - b, &canon, why, cap) ||
	    !text_domain_check(s + at + 1, e - at - 1, why, cap))
		return false;
	if (canon + 1 + (e - at - 1) > TEXT_ADDR_SPEC_MAX)
		return text_why(why, cap, "has an address of %zu octets, longer than "
		    "%d", canon + 1 + (e - at - 1), TEXT_ADDR_SPEC_MAX);
	m->local_off = b;
	m->local_len = at - b;
	m->local_canon = canon;
	m->domain_off = at + 1;
	m->domain_len = e - at - 1;
	return true;
}

/* Display name s[0..len): atoms ('.' allowed) and quoted strings. */
static bool text_name_check(const char *s, size_t len, struct text_mailbox *m,
                            char *why, size_t cap)
{
	size_t n = 0, first = len, last = 0;
	bool space_before = false;

	for (size_t i = 0; i < len; i++) {
		if (text_blank(s[i])) {
			space_before = n > 0;
			continue;
		}
		if (first == len)
			first = i;
		n += space_before;
		space_before = false;
		if (s[i] == '"') {
			bool closed = false;
			for (i++; i < len; i++, n++) {
				if (s[i] == '\\' && i + 1 < len) {
					i++;
				} else if (s[i] == '"') {
					closed = true;
					break;
				}
				if (s[i] != '\t' && text_is_ctl((unsigned char)s[i]))
					return text_why(why, cap, "has a control character "
					    "in the display name");
			}
			if (!closed)
				return text_why(why, cap, "has unbalanced quotes in the "
				    "display name");
			last = i + 1;
			continue;
		}
		for (; i < len && !text_blank(s[i]) && s[i] != '"'; i++, n++)
			if (s[i] != '.' && !text_atext((unsigned char)s[i]))
				return text_why_char(why, cap, (unsigned char)s[i],
				                     "the display name",
				                     "; put the name in double quotes");
		last = i;
		i--;
	}
	if (first < len) {
		m->name_off = first;
		m->name_len = last - first;
	}
	m->name_text = n;
	return true;
}

bool text_mailbox_parse(const char *s, size_t len, struct text_mailbox *m,
                        char *why, size_t cap)
{
	size_t lt, gt;
	const char *shape;

	memset(m, 0, sizeof(*m));
	if (cap > 0)
		why[0] = '\0';
	if (!text_utf8_valid(s, len))
		return text_why(why, cap, "is not valid UTF-8");
	if ((shape = text_mailbox_shape(s, len, &lt, &gt)))
		return text_why(why, cap, "%s", shape);
	if (lt == len)
		return text_addr_spec(s, 0, len, m, why, cap);
	for (size_t i = gt + 1; i < len; i++)
		if (!text_blank(s[i]))
			return text_why(why, cap, "has text after '>'");
	if (gt == lt + 1)
		return text_why(why, cap, "has an empty address '<>'");
	if (s[lt + 1] == '@')
		return text_why(why, cap, "has a source route '<@host:...>', which is "
		    "not supported");
	return text_name_check(s, lt, m, why, cap) &&
	       text_addr_spec(s, lt + 1, gt, m, why, cap);
}

bool text_list_next(const char *s, size_t len, size_t *pos, size_t *b,
                    size_t *e)
{
	size_t i = *pos;
	bool inq = false;
	int angle = 0;

	if (i > len)
		return false;
	for (; i < len; i++) {
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
		else if (!inq && angle == 0 && (s[i] == ',' || s[i] == ';'))
			break;
	}
	*b = *pos;
	*e = i;
	while (*b < *e && text_blank(s[*b]))
		(*b)++;
	while (*e > *b && text_blank(s[*e - 1]))
		(*e)--;
	*pos = i + 1;
	return true;
}
