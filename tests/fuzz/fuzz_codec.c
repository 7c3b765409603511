/*
 * fuzz_codec.c - MIME codecs (mail/codec.h) against reference decoders.
 *
 * Input: byte 0 picks the mode, byte 1 seeds the chunk sizes / first_max,
 * the rest is the payload ("name" NUL "value" for the header modes).
 *   0 base64 stream: the output is CRLF lines of at most 76 characters,
 *     ends in CRLF, its size is codec_b64_size(n), every update fits
 *     CODEC_B64_BOUND, and base64_decode() gives the input back, for any
 *     way of splitting the input;
 *   1 quoted-printable stream: lines of at most 76 characters, CRLF only,
 *     only printable ASCII, no space/tab before a line end; a reference
 *     decoder gives the input back with bare LF turned into CRLF; the
 *     one-shot codec_qp_encode() gives the same bytes as the stream;
 *   2 RFC 2047 encode: words of at most 75 characters (the first at most
 *     first_max clamped to 20..75), each decodes with codec_decode_word(),
 *     their concatenation is the input; invalid UTF-8 is DM_EINVAL;
 *   3 header folding: CRLF only, ends in CRLF, lines of at most 998
 *     octets, lines over 78 only when they hold a single unbreakable word,
 *     unfolding gives "name: value" with the outer blanks trimmed;
 *   4 header text (RFC 2047 in unstructured headers): as 3, and decoding
 *     the encoded-words of the unfolded value gives the value back;
 *   5 RFC 2231: only attribute-chars and %XX after "UTF-8''", decodes back;
 *   6 codec_utf8_valid / codec_is_ascii against a reference validator;
 *   7 codec_decode_word on arbitrary input: output is valid UTF-8 without
 *     control characters other than tab, within cap.
 */
#include "fuzz_util.h"
#include "fuzz_text.h"

#include "core/base64.h"
#include "mail/codec.h"

/* Next chunk size from a small xorshift seeded by the input. */
static size_t fuzz_chunk(unsigned *seed)
{
	*seed ^= *seed << 13;
	*seed ^= *seed >> 17;
	*seed ^= *seed << 5;
	unsigned r = *seed % 16;
	return r < 12 ? r + 1 : (size_t)1 << (r - 6); /* 1..12, 64..512 */
}

static int fuzz_hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Reference UTF-8 validation (RFC 3629 section 4 table). */
static bool fuzz_utf8_ok(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		size_t k;
		unsigned lo = 0x80, hi = 0xBF;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xC2 && c <= 0xDF) {
			k = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			k = 2;
			if (c == 0xE0)
				lo = 0xA0;
			if (c == 0xED)
				hi = 0x9F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			k = 3;
			if (c == 0xF0)
				lo = 0x90;
			if (c == 0xF4)
				hi = 0x8F;
		} else {
			return false;
		}
		if (i + k >= n)
			return false;   /* truncated sequence */
		for (size_t j = 1; j <= k; j++) {
			unsigned d = s[i + j];
			if (j == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF))
				return false;
		}
		i += k + 1;
	}
	return true;
}

static void fuzz_b64(const uint8_t *in, size_t n, unsigned seed)
{
	size_t cap = CODEC_B64_BOUND(n) + CODEC_B64_FINAL_MAX + n * 2;
	char *out = malloc(cap);
	char *tmp = malloc(CODEC_B64_BOUND(512) + 16);
	unsigned char *back = malloc(n + 4);
	if (!out || !tmp || !back)
		abort();
	struct codec_b64 s;
	codec_b64_init(&s);
	size_t o = 0, i = 0;
	while (i < n) {
		size_t k = fuzz_chunk(&seed);
		if (k > n - i)
			k = n - i;
		memset(tmp, 0x55, CODEC_B64_BOUND(k));
		size_t t = codec_b64_update(&s, in + i, k, tmp);
		FUZZ_CHECK(t + 1 <= CODEC_B64_BOUND(k), "update wrote %zu for %zu", t, k);
		memcpy(out + o, tmp, t);
		o += t;
		i += k;
	}
	size_t t = codec_b64_final(&s, tmp);
	FUZZ_CHECK(t + 1 <= CODEC_B64_FINAL_MAX, "final wrote %zu", t);
	memcpy(out + o, tmp, t);
	o += t;
	FUZZ_CHECK(o == codec_b64_size(n), "%zu bytes for n=%zu, size says %llu", o, n,
	           codec_b64_size(n));
	const char *why = fuzz_lines_check(out, o, 76, true);
	FUZZ_CHECK(why == NULL, "base64 stream: %s", why);
	size_t bl = 0;
	enum dm_status st = base64_decode(out, o, back, n + 4, &bl, NULL);
	FUZZ_CHECK(st == DM_OK && bl == n && (n == 0 || memcmp(back, in, n) == 0),
	           "base64 stream does not decode back (st %d, %zu of %zu)", (int)st, bl, n);
	free(out);
	free(tmp);
	free(back);
}

/* Reference QP decoder (RFC 2045 6.7): soft breaks removed, =XX decoded,
 * CRLF kept.  Returns false on a malformed escape. */
static bool fuzz_qp_decode(const char *s, size_t n, unsigned char *out, size_t *outlen)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '=') {
			out[o++] = (unsigned char)s[i];
			continue;
		}
		if (i + 2 < n && s[i + 1] == '\r' && s[i + 2] == '\n') {
			i += 2;
			continue;
		}
		if (i + 2 >= n)
			return false;
		int h = fuzz_hex((unsigned char)s[i + 1]), l = fuzz_hex((unsigned char)s[i + 2]);
		if (h < 0 || l < 0)
			return false;
		out[o++] = (unsigned char)(h * 16 + l);
		i += 2;
	}
	*outlen = o;
	return true;
}

static void fuzz_qp(const uint8_t *in, size_t n, unsigned seed)
{
	size_t cap = CODEC_QP_BOUND(n) + CODEC_QP_FINAL_MAX;
	char *out = malloc(cap);
	char *one = malloc(cap);
	char *tmp = malloc(CODEC_QP_BOUND(512));
	unsigned char *back = malloc(cap);
	unsigned char *want = malloc(2 * n + 1);
	if (!out || !one || !tmp || !back || !want)
		abort();
	struct codec_qp q;
	codec_qp_init(&q);
	size_t o = 0, i = 0;
	while (i < n) {
		size_t k = fuzz_chunk(&seed);
		if (k > n - i)
			k = n - i;
		size_t t = codec_qp_update(&q, in + i, k, tmp);
		FUZZ_CHECK(t <= CODEC_QP_BOUND(k), "update wrote %zu for %zu", t, k);
		memcpy(out + o, tmp, t);
		o += t;
		i += k;
	}
	size_t t = codec_qp_final(&q, tmp);
	FUZZ_CHECK(t <= CODEC_QP_FINAL_MAX, "final wrote %zu", t);
	memcpy(out + o, tmp, t);
	o += t;

	const char *why = fuzz_lines_check(out, o, 76, false);
	FUZZ_CHECK(why == NULL, "quoted-printable: %s", why);
	for (size_t j = 0; j < o; j++) {
		unsigned char c = (unsigned char)out[j];
		FUZZ_CHECK(c == '\r' || c == '\n' || c == ' ' || c == '\t' || (c >= 33 && c <= 126),
		           "byte 0x%02x in QP output", c);
		if ((c == ' ' || c == '\t') && (j + 1 == o || out[j + 1] == '\r'))
			FUZZ_CHECK(0, "whitespace before a line end at %zu", j);
	}
	size_t wl = 0;
	for (size_t j = 0; j < n; j++) {
		if (in[j] == '\n' && (j == 0 || in[j - 1] != '\r'))
			want[wl++] = '\r';
		want[wl++] = in[j];
	}
	size_t bl = 0;
	FUZZ_CHECK(fuzz_qp_decode(out, o, back, &bl), "QP output has a bad escape");
	FUZZ_CHECK(bl == wl && (wl == 0 || memcmp(back, want, wl) == 0),
	           "QP does not decode back (%zu vs %zu bytes)", bl, wl);

	size_t ol = 0;
	enum dm_status st = codec_qp_encode(in, n, one, cap, &ol, NULL);
	FUZZ_CHECK(st == DM_OK && ol == o && memcmp(one, out, o) == 0 && one[ol] == '\0',
	           "one-shot QP differs from the stream");
	/* a too small buffer is DM_ENOMEM, never an overflow */
	if (o > 0) {
		char *small = malloc(o);
		if (!small)
			abort();
		st = codec_qp_encode(in, n, small, o, &ol, NULL);
		FUZZ_CHECK(st == DM_ENOMEM, "QP into %zu bytes: %d", o, (int)st);
		free(small);
	}
	free(out);
	free(one);
	free(tmp);
	free(back);
	free(want);
}

static bool fuzz_has_ctl(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return true;
	}
	return false;
}

static void fuzz_words(const uint8_t *in, size_t n, unsigned first_max)
{
	size_t cap = n * 12 + 64;
	char *out = malloc(cap), *back = malloc(n + 80);
	if (!out || !back)
		abort();
	size_t ol = 0;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = codec_encode_words((const char *)in, n, first_max, out, cap, &ol, &err);
	if (!fuzz_utf8_ok(in, n)) {
		FUZZ_CHECK(st == DM_EINVAL, "invalid UTF-8 encoded (st %d)", (int)st);
		goto done;
	}
	FUZZ_CHECK(st == DM_OK, "encode_words: %s", err.msg);
	FUZZ_CHECK(strlen(out) == ol && strpbrk(out, "\r\n\t") == NULL, "output form");
	size_t fm = first_max < 20 ? 20 : first_max > 75 ? 75 : first_max;
	size_t bl = 0, pos = 0, nw = 0;
	while (pos < ol) {
		size_t wlen = strcspn(out + pos, " ");
		FUZZ_CHECK(wlen <= (nw == 0 ? fm : 75), "word %zu has %zu chars (first_max %zu)",
		           nw, wlen, fm);
		size_t dl = 0;
		char dec[80];
		st = codec_decode_word(out + pos, wlen, dec, sizeof(dec), &dl, &err);
		if (fuzz_has_ctl((const char *)in, n)) {
			/* control characters are refused by the decoder on purpose */
		} else {
			FUZZ_CHECK(st == DM_OK, "word '%.*s' does not decode: %s", (int)wlen,
			           out + pos, err.msg);
			memcpy(back + bl, dec, dl);
			bl += dl;
		}
		pos += wlen;
		if (pos < ol) {
			FUZZ_CHECK(out[pos] == ' ' && out[pos + 1] != ' ', "separator");
			pos++;
		}
		nw++;
	}
	if (!fuzz_has_ctl((const char *)in, n))
		FUZZ_CHECK(bl == n && (n == 0 || memcmp(back, in, n) == 0),
		           "encoded-words do not decode back");
	/* a too small buffer: DM_ENOMEM */
	if (ol > 0) {
		st = codec_encode_words((const char *)in, n, first_max, out, ol, &ol, NULL);
		FUZZ_CHECK(st == DM_ENOMEM, "encode into too small a buffer: %d", (int)st);
	}
done:
	free(out);
	free(back);
}

/* Checks a folded header; writes the unfolded text into u (malloc'd). */
static char *fuzz_header_check(const char *name, const char *out, size_t ol)
{
	const char *why = fuzz_lines_check(out, ol, 998, true);
	FUZZ_CHECK(why == NULL, "header %s: %s", name, why);
	FUZZ_CHECK(strlen(out) == ol, "outlen");
	size_t nl = strlen(name);
	FUZZ_CHECK(ol >= nl + 3 && memcmp(out, name, nl) == 0 && out[nl] == ':', "prefix");
	/* long lines: only one word, nothing to break at */
	size_t ls = 0;
	for (size_t i = 0; i + 1 < ol; i++) {
		if (out[i] != '\r')
			continue;
		size_t len = i - ls;
		if (len > 78) {
			const char *l = out + ls;
			size_t k = 0;
			if (ls == 0)
				k = nl + 1;
			while (k < len && (l[k] == ' ' || l[k] == '\t'))
				k++;
			for (; k < len; k++)
				FUZZ_CHECK(l[k] != ' ' && l[k] != '\t',
				           "line of %zu octets could have been folded", len);
		}
		if (ls > 0)
			FUZZ_CHECK(out[ls] == ' ' || out[ls] == '\t', "continuation without WSP");
		ls = i + 2;
	}
	char *u = malloc(ol + 1);
	if (!u)
		abort();
	size_t ul = 0;
	for (size_t i = 0; i < ol; i++) {
		if (out[i] == '\r' && i + 2 < ol)
			i++;   /* CRLF followed by WSP: unfold */
		else if (out[i] == '\r')
			break; /* final CRLF */
		else
			u[ul++] = out[i];
	}
	u[ul] = '\0';
	return u;
}

static const char *fuzz_trim(const char *v, size_t *len)
{
	size_t n = strlen(v);
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	while (n > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	*len = n;
	return v;
}

static bool fuzz_name_ok(const char *name)
{
	if (!*name || strlen(name) > 76)
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 33 || *p > 126 || *p == ':')
			return false;
	return true;
}

static void fuzz_fold(const char *name, const char *value, bool text)
{
	size_t vl = strlen(value);
	size_t cap = vl * 8 + 256;
	char *out = malloc(cap);
	if (!out)
		abort();
	size_t ol = 0;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = text ? codec_header_text(name, value, out, cap, &ol, &err)
	                         : codec_header_fold(name, value, out, cap, &ol, &err);
	bool bad = !fuzz_name_ok(name) || fuzz_has_ctl(value, vl) ||
	           (text && !fuzz_utf8_ok((const unsigned char *)value, vl));
	if (bad)
		FUZZ_CHECK(st == DM_EINVAL, "bad name/value accepted (st %d)", (int)st);
	if (st != DM_OK) {
		FUZZ_CHECK(st == DM_EINVAL && err.msg[0], "status %d (%s)", (int)st, err.msg);
		FUZZ_CHECK(bad || strstr(err.msg, "cannot be folded"), "refused: %s", err.msg);
		free(out);
		return;
	}
	char *u = fuzz_header_check(name, out, ol);
	size_t tl;
	const char *t = fuzz_trim(value, &tl);
	size_t nl = strlen(name);
	const char *uv = u + nl + 1;
	if (tl == 0) {
		FUZZ_CHECK(*uv == '\0', "empty value gave '%s'", u);
	} else if (!text) {
		FUZZ_CHECK(uv[0] == ' ' && strlen(uv + 1) == tl && memcmp(uv + 1, t, tl) == 0,
		           "unfolded '%s' is not the value", u);
	} else {
		FUZZ_CHECK(uv[0] == ' ', "no space after colon");
		char *dec = malloc(strlen(uv) + 1);
		if (!dec)
			abort();
		size_t dl = fuzz_text_decode(uv + 1, strlen(uv + 1), dec);
		FUZZ_CHECK(dl != (size_t)-1, "a word holds '=?' but is not an encoded-word: '%s'", u);
		FUZZ_CHECK(dl == tl && memcmp(dec, t, tl) == 0,
		           "header text does not decode back: '%s' vs '%.*s'", dec, (int)tl, t);
		free(dec);
	}
	free(u);
	free(out);
}

static void fuzz_2231(const char *value)
{
	size_t vl = strlen(value);
	size_t cap = vl * 3 + 8;
	char *out = malloc(cap);
	unsigned char *back = malloc(vl + 1);
	if (!out || !back)
		abort();
	enum dm_status st = codec_rfc2231_encode(value, out, cap, NULL);
	FUZZ_CHECK(st == DM_OK, "rfc2231 st %d", (int)st);
	FUZZ_CHECK(strncmp(out, "UTF-8''", 7) == 0, "prefix");
	size_t bl = 0;
	for (const char *p = out + 7; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '%') {
			int h = fuzz_hex((unsigned char)p[1]);
			int l = h < 0 ? -1 : fuzz_hex((unsigned char)p[2]);
			FUZZ_CHECK(h >= 0 && l >= 0, "bad %% escape");
			back[bl++] = (unsigned char)(h * 16 + l);
			p += 2;
			continue;
		}
		FUZZ_CHECK(c > 32 && c < 127 && !strchr("*'%()<>@,;:\\\"/[]?=", c),
		           "char 0x%02x not an attribute-char", c);
		back[bl++] = c;
	}
	FUZZ_CHECK(bl == vl && memcmp(back, value, vl) == 0, "rfc2231 does not decode back");
	st = codec_rfc2231_encode(value, out, strlen(out), NULL);
	FUZZ_CHECK(st == DM_ENOMEM, "rfc2231 into too small a buffer: %d", (int)st);
	free(out);
	free(back);
}

static void fuzz_decode_word(const char *w, size_t n, unsigned capsel)
{
	size_t cap = capsel % 96;
	char *out = malloc(cap ? cap : 1);
	if (!out)
		abort();
	size_t ol = 0;
	enum dm_status st = codec_decode_word(w, n, out, cap, &ol, NULL);
	if (st == DM_OK) {
		FUZZ_CHECK(ol < cap && out[ol] == '\0', "outlen %zu cap %zu", ol, cap);
		FUZZ_CHECK(fuzz_utf8_ok((const unsigned char *)out, ol), "decoded not UTF-8");
		FUZZ_CHECK(!fuzz_has_ctl(out, ol), "decoded control character");
	} else {
		FUZZ_CHECK(st == DM_EINVAL || st == DM_ENOMEM, "status %d", (int)st);
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	unsigned mode = data[0] % 8, seed = data[1] | 0x100u;
	const uint8_t *in = data + 2;
	size_t n = size - 2;
	if (n > 64 * 1024)
		return 0;
	switch (mode) {
	case 0:
		fuzz_b64(in, n, seed);
		break;
	case 1:
		fuzz_qp(in, n, seed);
		break;
	case 2:
		fuzz_words(in, n, data[1]);
		break;
	case 3:
	case 4: {
		char *f[2];
		fuzz_fields(in, n, f, NULL, 2);
		fuzz_fold(f[0], f[1], mode == 4);
		fuzz_fields_free(f, 2);
		break;
	}
	case 5: {
		char *f[1];
		fuzz_fields(in, n, f, NULL, 1);
		fuzz_2231(f[0]);
		fuzz_fields_free(f, 1);
		break;
	}
	case 6:
		FUZZ_CHECK(codec_utf8_valid((const char *)in, n) == fuzz_utf8_ok(in, n),
		           "codec_utf8_valid disagrees with the reference");
		{
			bool ascii = true;
			for (size_t i = 0; i < n; i++)
				ascii = ascii && in[i] < 0x80;
			FUZZ_CHECK(codec_is_ascii((const char *)in, n) == ascii, "is_ascii");
		}
		break;
	case 7:
		fuzz_decode_word((const char *)in, n, data[1]);
		break;
	}
	return 0;
}
