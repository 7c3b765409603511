/*
 * codec.c - quoted-printable, streaming base64, RFC 2047 encoded-words,
 * header folding, RFC 2231 parameter values.
 *
 * RFCs: 2045 (6.7 quoted-printable, 6.8 base64), 2047 (encoded-words),
 * 2231 (parameter value encoding), 3629 (UTF-8), 5322 (2.1.1 line length,
 * 2.2.3 folding).
 */
#include "mail/codec.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base64.h"
#include "core/text.h"

/* tok[] = lead and c in upper-case hex ("=3D", "%20"); returns 3, the
 * length without the NUL. */
static size_t codec_hex_tok(char lead, unsigned char c, char tok[4])
{
	tok[0] = lead;
	text_hex(&c, 1, tok + 1, 3, true, '\0');
	return 3;
}

/* ---- UTF-8 ---------------------------------------------------------------- */

bool codec_utf8_valid(const char *s, size_t len)
{
	return text_utf8_valid(s, len);
}

bool codec_is_ascii(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return false;
	return true;
}

/* ---- streaming base64 ------------------------------------------------------ */

void codec_b64_init(struct codec_b64 *s)
{
	memset(s, 0, sizeof(*s));
}

/* Emits k complete quanta from in (3k bytes) honouring the 76-column
 * lines; returns bytes written. */
static size_t codec_b64_quanta(struct codec_b64 *s, const unsigned char *in,
                               size_t k, char *out)
{
	size_t o = 0;

	while (k > 0) {
		size_t room = (76 - s->col) / 4;       /* quanta left on the line */
		size_t take = k < room ? k : room;
		o += base64_encode(in, take * 3, out + o);
		in += take * 3;
		k -= take;
		s->col += (unsigned)(take * 4);
		if (s->col == 76) {
			out[o++] = '\r';
			out[o++] = '\n';
			s->col = 0;
		}
	}
	return o;
}

size_t codec_b64_update(struct codec_b64 *s, const void *in, size_t n,
                        char *out)
{
	const unsigned char *p = in;
	size_t o = 0;

	if (s->ncarry > 0) {
		while (s->ncarry < 3 && n > 0) {
			s->carry[s->ncarry++] = *p++;
			n--;
		}
		if (s->ncarry < 3)
			return 0;
		o += codec_b64_quanta(s, s->carry, 1, out);
		s->ncarry = 0;
	}
	o += codec_b64_quanta(s, p, n / 3, out + o);
	p += n / 3 * 3;
	for (size_t i = 0; i < n % 3; i++)
		s->carry[s->ncarry++] = p[i];
	out[o] = '\0';
	return o;
}

size_t codec_b64_final(struct codec_b64 *s, char *out)
{
	size_t o = 0;

	if (s->ncarry > 0) {
		o += base64_encode(s->carry, s->ncarry, out);
		s->col += 4;
		s->ncarry = 0;
	}
	if (s->col > 0) {
		out[o++] = '\r';
		out[o++] = '\n';
		s->col = 0;
	}
	out[o] = '\0';
	return o;
}

unsigned long long codec_b64_size(unsigned long long n)
{
	unsigned long long chars = (n + 2) / 3 * 4;
	return chars + (chars + 75) / 76 * 2;
}

/* ---- quoted-printable ------------------------------------------------------ */

void codec_qp_init(struct codec_qp *q)
{
	q->col = 0;
	q->held_ws = -1;
	q->held_cr = false;
}

/* Appends a token of tlen characters, preceded by a soft line break when
 * the line would otherwise exceed 76 characters including the '='. */
static size_t codec_qp_put(struct codec_qp *q, const char *tok, size_t tlen,
                           char *out)
{
	size_t o = 0;

	if (q->col + tlen > 75) {
		out[o++] = '=';
		out[o++] = '\r';
		out[o++] = '\n';
		q->col = 0;
	}
	memcpy(out + o, tok, tlen);
	o += tlen;
	q->col += (unsigned)tlen;
	return o;
}

static size_t codec_qp_escape(struct codec_qp *q, unsigned char c, char *out)
{
	char tok[4];
	return codec_qp_put(q, tok, codec_hex_tok('=', c, tok), out);
}

/* Flushes a held space/tab: encoded when `at_eol`, literal otherwise. */
static size_t codec_qp_flush_ws(struct codec_qp *q, bool at_eol, char *out)
{
	size_t o = 0;

	if (q->held_ws >= 0) {
		char c = (char)q->held_ws;
		q->held_ws = -1;
		if (at_eol)
			o = codec_qp_escape(q, (unsigned char)c, out);
		else
			o = codec_qp_put(q, &c, 1, out);
	}
	return o;
}

static size_t codec_qp_eol(struct codec_qp *q, char *out)
{
	size_t o = codec_qp_flush_ws(q, true, out);
	out[o++] = '\r';
	out[o++] = '\n';
	q->col = 0;
	return o;
}

size_t codec_qp_update(struct codec_qp *q, const void *in, size_t n,
                       char *out)
{
	const unsigned char *p = in;
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];

		if (q->held_cr) {
			q->held_cr = false;
			if (c == '\n') {
				o += codec_qp_eol(q, out + o);
				continue;
			}
			/* bare CR: data, not a line end */
			o += codec_qp_flush_ws(q, false, out + o);
			o += codec_qp_escape(q, '\r', out + o);
		}
		if (c == '\r') {
			q->held_cr = true;
		} else if (c == '\n') {
			o += codec_qp_eol(q, out + o);
		} else if (c == ' ' || c == '\t') {
			o += codec_qp_flush_ws(q, false, out + o);
			q->held_ws = c;
		} else {
			o += codec_qp_flush_ws(q, false, out + o);
			if (c >= 33 && c <= 126 && c != '=') {
				char ch = (char)c;
				o += codec_qp_put(q, &ch, 1, out + o);
			} else {
				o += codec_qp_escape(q, c, out + o);
			}
		}
	}
	return o;
}

size_t codec_qp_final(struct codec_qp *q, char *out)
{
	size_t o = 0;

	if (q->held_cr) {
		q->held_cr = false;
		o += codec_qp_flush_ws(q, false, out + o);
		o += codec_qp_escape(q, '\r', out + o);
	}
	o += codec_qp_flush_ws(q, true, out + o);
	return o;
}

enum dm_status codec_qp_encode(const void *in, size_t n, char *out,
                               size_t cap, size_t *outlen,
                               struct dm_err *err)
{
	struct codec_qp q;
	const unsigned char *p = in;
	char tmp[CODEC_QP_BOUND(64)];
	size_t o = 0, i = 0;

	codec_qp_init(&q);
	for (;;) {
		size_t k = n - i < 64 ? n - i : 64;
		size_t t = k > 0 ? codec_qp_update(&q, p + i, k, tmp)
		                 : codec_qp_final(&q, tmp);
		if (o + t + 1 > cap)
			return dm_err_set(err, DM_ENOMEM,
			                  "quoted-printable output exceeds %zu bytes", cap);
		memcpy(out + o, tmp, t);
		o += t;
		if (k == 0)
			break;
		i += k;
	}
	out[o] = '\0';
	if (outlen)
		*outlen = o;
	return DM_OK;
}

/* ---- RFC 2047 encoded-words ------------------------------------------------ */

/* RFC 2047 5(3): characters allowed unencoded in a Q word in a phrase. */
static bool codec_q_plain(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '!' || c == '*' || c == '+' ||
	       c == '-' || c == '/';
}

/* Encoded length of one UTF-8 character in Q. */
static size_t codec_q_len(const unsigned char *s, size_t n)
{
	if (n == 1 && (codec_q_plain(s[0]) || s[0] == ' '))
		return 1;
	return 3 * n;
}

struct codec_out {
	char *buf;
	size_t cap;
	size_t len;
	bool overflow;
};

static void codec_out_put(struct codec_out *w, const char *s, size_t n)
{
	if (w->overflow || w->len + n + 1 > w->cap) {
		w->overflow = true;
		return;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void codec_out_str(struct codec_out *w, const char *s)
{
	codec_out_put(w, s, strlen(s));
}

/* Writes text as encoded-words into w. */
static enum dm_status codec_words(struct codec_out *w, const unsigned char *s,
                                  size_t len, size_t first_max,
                                  struct dm_err *err)
{
	size_t escaped = 0;
	bool use_b;
	size_t i = 0;
	size_t limit;
	bool first = true;

	if (!codec_utf8_valid((const char *)s, len))
		return dm_err_set(err, DM_EINVAL, "text is not valid UTF-8");
	size_t chars = 0;
	for (size_t k = 0; k < len; k += text_utf8_seq(s + k, len - k)) {
		chars++;
		if (!codec_q_plain(s[k]) && s[k] != ' ')
			escaped++;
	}
	/* Q keeps mostly-Latin text readable; B is shorter once at least half
	 * of the characters need escaping (CJK, Cyrillic, ...). */
	use_b = escaped * 2 > chars;
	if (first_max < 20)
		first_max = 20;
	if (first_max > CODEC_WORD_MAX)
		first_max = CODEC_WORD_MAX;
	limit = first_max;

	while (i < len) {
		/* payload room: limit minus "=?UTF-8?X?" and "?=" */
		size_t room = limit - 12;
		size_t start = i, used = 0;

		if (use_b) {
			size_t maxbytes = room / 4 * 3;
			while (i < len) {
				size_t n = text_utf8_seq(s + i, len - i);
				if (i - start + n > maxbytes)
					break;
				i += n;
			}
		} else {
			while (i < len) {
				size_t n = text_utf8_seq(s + i, len - i);
				size_t t = codec_q_len(s + i, n);
				if (used + t > room)
					break;
				used += t;
				i += n;
			}
		}
		if (!first)
			codec_out_put(w, " ", 1);
		codec_out_str(w, use_b ? "=?UTF-8?B?" : "=?UTF-8?Q?");
		if (use_b) {
			char tmp[80];
			size_t t = base64_encode(s + start, i - start, tmp);
			codec_out_put(w, tmp, t);
		} else {
			for (size_t k = start; k < i; k++) {
				unsigned char c = s[k];
				if (c == ' ') {
					codec_out_put(w, "_", 1);
				} else if (codec_q_plain(c)) {
					codec_out_put(w, (const char *)&s[k], 1);
				} else {
					char tok[4];
					codec_out_put(w, tok, codec_hex_tok('=', c, tok));
				}
			}
		}
		codec_out_put(w, "?=", 2);
		first = false;
		limit = CODEC_WORD_MAX;
	}
	return DM_OK;
}

enum dm_status codec_encode_words(const char *text, size_t len,
                                  size_t first_max, char *out, size_t cap,
                                  size_t *outlen, struct dm_err *err)
{
	struct codec_out w = { out, cap, 0, false };
	enum dm_status st;

	if (cap > 0)
		out[0] = '\0';
	st = codec_words(&w, (const unsigned char *)text, len, first_max, err);
	if (st != DM_OK)
		return st;
	if (w.overflow)
		return dm_err_set(err, DM_ENOMEM,
		                  "encoded-words exceed %zu bytes", cap);
	if (outlen)
		*outlen = w.len;
	return DM_OK;
}

static int codec_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

enum dm_status codec_decode_word(const char *w, size_t n, char *out,
                                 size_t cap, size_t *outlen,
                                 struct dm_err *err)
{
	const char *q1, *q2, *text;
	size_t tlen, o = 0;
	char cs[32];

	if (cap > 0)
		out[0] = '\0';
	if (n < 8 || n > CODEC_WORD_MAX || w[0] != '=' || w[1] != '?' ||
	    w[n - 2] != '?' || w[n - 1] != '=')
		return dm_err_set(err, DM_EINVAL, "not an encoded-word");
	q1 = memchr(w + 2, '?', n - 4);
	if (!q1 || q1 + 3 > w + n - 2 || q1[2] != '?')
		return dm_err_set(err, DM_EINVAL, "not an encoded-word");
	q2 = q1 + 2;
	size_t cslen = (size_t)(q1 - (w + 2));
	if (cslen == 0 || cslen >= sizeof(cs))
		return dm_err_set(err, DM_EINVAL, "encoded-word: bad charset");
	memcpy(cs, w + 2, cslen);
	cs[cslen] = '\0';
	char *star = strchr(cs, '*');        /* RFC 2231 section 5 language */
	if (star)
		*star = '\0';
	if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
		char esc[sizeof(cs) * 4 + 8];
		return dm_err_set(err, DM_EINVAL, "encoded-word: charset '%s' is "
		                  "not supported", text_escape(cs, esc, sizeof(esc)));
	}
	text = q2 + 1;
	tlen = (size_t)((w + n - 2) - text);
	if (q1[1] == 'B' || q1[1] == 'b') {
		if (cap < tlen / 4 * 3 + 1)
			return dm_err_set(err, DM_ENOMEM, "encoded-word too long");
		enum dm_status st = base64_decode(text, tlen, (unsigned char *)out,
		                                  cap - 1, &o, err);
		if (st != DM_OK)
			return st;
	} else if (q1[1] == 'Q' || q1[1] == 'q') {
		for (size_t i = 0; i < tlen; i++) {
			unsigned char c = (unsigned char)text[i];
			if (o + 2 > cap)
				return dm_err_set(err, DM_ENOMEM, "encoded-word too long");
			if (c == '_') {
				out[o++] = ' ';
			} else if (c == '=') {
				int h = i + 2 < tlen ? codec_hexval((unsigned char)text[i + 1]) : -1;
				int l = i + 2 < tlen ? codec_hexval((unsigned char)text[i + 2]) : -1;
				if (h < 0 || l < 0)
					return dm_err_set(err, DM_EINVAL, "encoded-word: bad "
					                  "'=XX' escape");
				out[o++] = (char)(h * 16 + l);
				i += 2;
			} else if (c > 32 && c < 127 && c != '?') {
				out[o++] = (char)c;
			} else {
				return dm_err_set(err, DM_EINVAL, "encoded-word: character "
				                  "not allowed in Q encoding");
			}
		}
	} else {
		return dm_err_set(err, DM_EINVAL, "encoded-word: encoding must be "
		                  "B or Q");
	}
	out[o] = '\0';
	if (!codec_utf8_valid(out, o))
		return dm_err_set(err, DM_EINVAL, "encoded-word: text is not valid "
		                  "UTF-8");
	for (size_t i = 0; i < o; i++) {
		unsigned char c = (unsigned char)out[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return dm_err_set(err, DM_EINVAL, "encoded-word: text holds "
			                  "control character 0x%02X", c);
	}
	if (outlen)
		*outlen = o;
	return DM_OK;
}

/* ---- header folding --------------------------------------------------------- */

static enum dm_status codec_check_value(const char *name, const char *value,
                                        struct dm_err *err)
{
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if (*p == '\r' || *p == '\n')
			return dm_err_set(err, DM_EINVAL,
			                  "header %s: value contains a %s (line breaks are "
			                  "not allowed in header values)",
			                  name, *p == '\r' ? "CR" : "LF");
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return dm_err_set(err, DM_EINVAL,
			                  "header %s: value contains control character "
			                  "0x%02X", name, *p);
	}
	return DM_OK;
}

static enum dm_status codec_check_name(const char *name, struct dm_err *err)
{
	char esc[80];

	/* RFC 5322 3.6.8: ftext is printable ASCII except ':' */
	if (!name || !*name)
		return dm_err_set(err, DM_EINVAL, "header name is empty");
	/* the name is escaped before it is quoted: a CR/LF in it must not
	 * reach the log or the console as a line of its own */
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 33 || *p > 126 || *p == ':')
			return dm_err_set(err, DM_EINVAL,
			                  "header name '%s' contains a character not "
			                  "allowed in a field name (printable ASCII "
			                  "except ':' and space)",
			                  text_escape(name, esc, sizeof(esc)));
	if (strlen(name) > 76)
		return dm_err_set(err, DM_EINVAL,
		                  "header name '%.64s...' is longer than 76 characters",
		                  name);
	return DM_OK;
}

/* Folds "name: value" into w; value checked by the caller. */
static enum dm_status codec_fold(struct codec_out *w, const char *name,
                                 const char *value, struct dm_err *err)
{
	size_t col;
	const char *p = value;

	codec_out_str(w, name);
	codec_out_put(w, ":", 1);
	col = strlen(name) + 1;
	/* value starts with a space unless it is empty */
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0') {
		codec_out_put(w, "\r\n", 2);
		return DM_OK;
	}
	bool first = true;
	while (*p) {
		/* segment: whitespace run (a single space before the first word)
		 * followed by a word */
		const char *ws = p, *word, *end;
		while (*p == ' ' || *p == '\t')
			p++;
		word = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		end = p;
		if (word == end)          /* trailing whitespace: drop */
			break;
		size_t wslen = first ? 1 : (size_t)(word - ws);
		size_t wlen = (size_t)(end - word);
		if (!first && col + wslen + wlen > CODEC_LINE_SOFT) {
			codec_out_put(w, "\r\n", 2);
			col = 0;
		}
		if (col + wslen + wlen > CODEC_LINE_HARD)
			return dm_err_set(err, DM_EINVAL,
			                  "header %s: a word of %zu characters cannot be "
			                  "folded within %d characters per line",
			                  name, wlen, CODEC_LINE_HARD);
		if (first)
			codec_out_put(w, " ", 1);
		else
			codec_out_put(w, ws, wslen);
		codec_out_put(w, word, wlen);
		col += wslen + wlen;
		first = false;
	}
	codec_out_put(w, "\r\n", 2);
	return DM_OK;
}

enum dm_status codec_header_fold(const char *name, const char *value,
                                 char *out, size_t cap, size_t *outlen,
                                 struct dm_err *err)
{
	struct codec_out w = { out, cap, 0, false };
	enum dm_status st;

	if (cap > 0)
		out[0] = '\0';
	if ((st = codec_check_name(name, err)) != DM_OK)
		return st;
	if ((st = codec_check_value(name, value ? value : "", err)) != DM_OK)
		return st;
	if ((st = codec_fold(&w, name, value ? value : "", err)) != DM_OK)
		return st;
	if (w.overflow)
		return dm_err_set(err, DM_ENOMEM, "header %s exceeds %zu bytes",
		                  name, cap);
	if (outlen)
		*outlen = w.len;
	return DM_OK;
}

/* A word must be encoded: non-ASCII, or it could be read as an
 * encoded-word (RFC 2047 section 5(1)). */
static bool codec_word_needs(const char *s, size_t n)
{
	if (!codec_is_ascii(s, n))
		return true;
	for (size_t i = 0; i + 1 < n; i++)
		if (s[i] == '=' && s[i + 1] == '?')
			return true;
	return false;
}

enum dm_status codec_header_text(const char *name, const char *value,
                                 char *out, size_t cap, size_t *outlen,
                                 struct dm_err *err)
{
	enum dm_status st;
	const char *v = value ? value : "";
	size_t vlen = strlen(v);
	struct codec_out enc;
	size_t enccap;
	char *encbuf;

	if (cap > 0)
		out[0] = '\0';
	if ((st = codec_check_name(name, err)) != DM_OK)
		return st;
	if ((st = codec_check_value(name, v, err)) != DM_OK)
		return st;
	if (!codec_utf8_valid(v, vlen))
		return dm_err_set(err, DM_EINVAL, "header %s: value is not valid "
		                  "UTF-8", name);
	/* Encoded text grows at most 3x per byte plus word overhead. */
	enccap = vlen * 4 + (vlen / 20 + 2) * 16 + 1;
	encbuf = malloc(enccap);
	if (!encbuf)
		return dm_err_set(err, DM_ENOMEM, "header %s: out of memory", name);
	enc = (struct codec_out){ encbuf, enccap, 0, false };
	encbuf[0] = '\0';

	size_t i = 0;
	size_t prefix = strlen(name) + 2;
	while (i < vlen) {
		/* copy whitespace as is */
		size_t ws = i;
		while (i < vlen && (v[i] == ' ' || v[i] == '\t'))
			i++;
		if (i >= vlen) {
			codec_out_put(&enc, v + ws, i - ws);
			break;
		}
		size_t w0 = i;
		while (i < vlen && v[i] != ' ' && v[i] != '\t')
			i++;
		if (!codec_word_needs(v + w0, i - w0)) {
			codec_out_put(&enc, v + ws, i - ws);
			continue;
		}
		/* a run of words that need encoding, with the spaces between
		 * them (whitespace between encoded-words is not displayed) */
		size_t run_end = i;
		size_t j = i;
		while (j < vlen) {
			size_t k = j;
			while (k < vlen && (v[k] == ' ' || v[k] == '\t'))
				k++;
			size_t e = k;
			while (e < vlen && v[e] != ' ' && v[e] != '\t')
				e++;
			if (e == k || !codec_word_needs(v + k, e - k))
				break;
			run_end = e;
			j = e;
		}
		codec_out_put(&enc, v + ws, w0 - ws);
		size_t first_max = CODEC_WORD_MAX;
		if (enc.len == 0)
			first_max = 76 - prefix;
		if ((st = codec_words(&enc, (const unsigned char *)v + w0,
		                      run_end - w0, first_max, err)) != DM_OK) {
			free(encbuf);
			return st;
		}
		i = run_end;
	}
	if (enc.overflow) {
		free(encbuf);
		return dm_err_set(err, DM_ENOMEM, "header %s exceeds %zu bytes",
		                  name, cap);
	}

	struct codec_out w = { out, cap, 0, false };
	st = codec_fold(&w, name, encbuf, err);
	free(encbuf);
	if (st != DM_OK)
		return st;
	if (w.overflow)
		return dm_err_set(err, DM_ENOMEM, "header %s exceeds %zu bytes",
		                  name, cap);
	if (outlen)
		*outlen = w.len;
	return DM_OK;
}

/* ---- RFC 2231 ---------------------------------------------------------------- */

/* RFC 2231 section 7 attribute-char: token chars except '*', '\'', '%'. */
static bool codec_attr_char(unsigned char c)
{
	if (c <= 32 || c >= 127)
		return false;
	return !strchr("*'%()<>@,;:\\\"/[]?=", c);
}

enum dm_status codec_rfc2231_encode(const char *value, char *out, size_t cap,
                                    struct dm_err *err)
{
	struct codec_out w = { out, cap, 0, false };

	if (cap > 0)
		out[0] = '\0';
	codec_out_str(&w, "UTF-8''");
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if (codec_attr_char(*p)) {
			codec_out_put(&w, (const char *)p, 1);
		} else {
			char tok[4];
			codec_out_put(&w, tok, codec_hex_tok('%', *p, tok));
		}
	}
	if (w.overflow)
		return dm_err_set(err, DM_ENOMEM,
		                  "RFC 2231 value exceeds %zu bytes", cap);
	return DM_OK;
}
