/* test_codec.c - vectors for mail/codec: quoted-printable (RFC 2045 6.7),
 * streaming base64 (RFC 2045 6.8), RFC 2047 encoded-words, header folding
 * (RFC 5322 2.2.3), RFC 2231 values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "mail/codec.h"

/* ---- helpers: independent decoders used to check round trips ------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes QP (soft breaks removed, =XX decoded, CRLF kept). */
static size_t qp_decode(const char *in, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (in[i] == '=') {
			if (i + 2 < n + 1 && in[i + 1] == '\r' && in[i + 2] == '\n') {
				i += 2;
				continue;
			}
			assert_true(i + 2 < n);
			int h = hexval(in[i + 1]), l = hexval(in[i + 2]);
			assert_true(h >= 0 && l >= 0);
			out[o++] = (char)(h * 16 + l);
			i += 2;
		} else {
			out[o++] = in[i];
		}
	}
	return o;
}

/* Checks CRLF only, and every line at most maxlen characters. */
static void check_lines(const char *s, size_t n, size_t maxlen)
{
	size_t col = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r') {
			assert_true(i + 1 < n && s[i + 1] == '\n');
			i++;
			col = 0;
			continue;
		}
		assert_true(s[i] != '\n');
		col++;
		if (col > maxlen)
			fail_msg("line longer than %zu at offset %zu", maxlen, i);
	}
}

/* Decodes one encoded-word "=?UTF-8?X?...?=" into out; returns length. */
static size_t ew_decode(const char *w, size_t n, char *out)
{
	assert_true(n >= 12);
	assert_memory_equal(w, "=?UTF-8?", 8);
	assert_memory_equal(w + n - 2, "?=", 2);
	const char *p = w + 10;
	size_t plen = n - 12;
	if (w[8] == 'B') {
		size_t got;
		assert_int_equal(base64_decode(p, plen, (unsigned char *)out, 256,
		                               &got, NULL), DM_OK);
		return got;
	}
	assert_int_equal(w[8], 'Q');
	size_t o = 0;
	for (size_t i = 0; i < plen; i++) {
		if (p[i] == '_')
			out[o++] = ' ';
		else if (p[i] == '=') {
			out[o++] = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
			i += 2;
		} else
			out[o++] = p[i];
	}
	return o;
}

/* Unfolds a header line and decodes its value (RFC 2047 section 6.2:
 * whitespace between adjacent encoded-words is dropped). */
static void header_decode(const char *hdr, char *out)
{
	char unf[8192];
	size_t u = 0;
	const char *colon = strchr(hdr, ':');
	assert_non_null(colon);
	for (const char *p = colon + 1; *p; p++) {
		if (p[0] == '\r' && p[1] == '\n') {
			p++;
			continue;
		}
		unf[u++] = *p;
	}
	unf[u] = '\0';
	const char *p = unf;
	if (*p == ' ')
		p++;
	size_t o = 0;
	bool prev_ew = false;
	while (*p) {
		const char *ws = p;
		while (*p == ' ' || *p == '\t')
			p++;
		const char *w = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		size_t wl = (size_t)(p - w);
		bool ew = wl >= 12 && strncmp(w, "=?UTF-8?", 8) == 0 &&
		          strncmp(p - 2, "?=", 2) == 0;
		if (!(ew && prev_ew)) {
			memcpy(out + o, ws, (size_t)(w - ws));
			o += (size_t)(w - ws);
		}
		if (ew) {
			o += ew_decode(w, wl, out + o);
		} else {
			memcpy(out + o, w, wl);
			o += wl;
		}
		prev_ew = ew;
	}
	out[o] = '\0';
}

/* ---- UTF-8 ------------------------------------------------------------------ */

static void test_utf8(void **state)
{
	(void)state;
	static const struct { const char *s; bool ok; } cases[] = {
		{ "plain", true },
		{ "caf\xc3\xa9", true },
		{ "\xe2\x82\xac", true },
		{ "\xf0\x9f\x98\x80", true },
		{ "\xc0\xaf", false },          /* overlong '/' */
		{ "\xe0\x80\xaf", false },      /* overlong */
		{ "\xed\xa0\x80", false },      /* surrogate */
		{ "\xf4\x90\x80\x80", false },  /* > U+10FFFF */
		{ "\xc3", false },              /* truncated */
		{ "\x80", false },              /* lone continuation */
		{ "\xff", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (codec_utf8_valid(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
			fail_msg("utf8 case %zu", i);
	assert_true(codec_is_ascii("abc", 3));
	assert_false(codec_is_ascii("caf\xc3\xa9", 5));
}

/* ---- quoted-printable ------------------------------------------------------- */

#define A10 "aaaaaaaaaa"

static const struct { const char *in; const char *out; } qp_cases[] = {
	{ "", "" },
	{ "hello", "hello" },
	{ "a=b", "a=3Db" },
	{ "caf\xc3\xa9", "caf=C3=A9" },
	{ "line1\r\nline2\r\n", "line1\r\nline2\r\n" },
	{ "line1\nline2\n", "line1\r\nline2\r\n" },          /* LF -> CRLF */
	{ "trailing space \r\nnext", "trailing space=20\r\nnext" },
	{ "tab\t\nx", "tab=09\r\nx" },
	{ "two  \nx", "two =20\r\nx" },
	{ "end ", "end=20" },
	{ "  x", "  x" },
	{ "a b\tc", "a b\tc" },
	{ "a\rb", "a=0Db" },                                 /* bare CR */
	{ "a\r", "a=0D" },
	{ "~!\x7f\x1b", "~!=7F=1B" },
	/* 80 characters: soft break after 75 so that the line with '=' is 76 */
	{ A10 A10 A10 A10 A10 A10 A10 A10,
	  A10 A10 A10 A10 A10 A10 A10 "aaaaa=\r\naaaaa" },
	/* an escape is never split by a soft break */
	{ A10 A10 A10 A10 A10 A10 A10 "aaaa\xc3\xa9",
	  A10 A10 A10 A10 A10 A10 A10 "aaaa=\r\n=C3=A9" },
	/* exactly 75 characters: no soft break */
	{ A10 A10 A10 A10 A10 A10 A10 "aaaaa\r\n",
	  A10 A10 A10 A10 A10 A10 A10 "aaaaa\r\n" },
};

static void test_qp_vectors(void **state)
{
	(void)state;
	char out[1024];
	size_t n;
	for (size_t i = 0; i < sizeof(qp_cases) / sizeof(qp_cases[0]); i++) {
		assert_int_equal(codec_qp_encode(qp_cases[i].in, strlen(qp_cases[i].in),
		                                 out, sizeof(out), &n, NULL), DM_OK);
		if (strcmp(out, qp_cases[i].out) != 0)
			fail_msg("qp case %zu: got '%s' want '%s'", i, out,
			         qp_cases[i].out);
		assert_int_equal(n, strlen(qp_cases[i].out));
	}
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(codec_qp_encode("hello", 5, out, 3, &n, &err), DM_ENOMEM);
}

/* Every chunking of the input gives the same output, which decodes back to
 * the input with line ends normalised to CRLF. */
static void test_qp_stream(void **state)
{
	(void)state;
	enum { N = 3000 };
	static char in[N], norm[2 * N], whole[CODEC_QP_BOUND(N)],
	            part[CODEC_QP_BOUND(N)], dec[2 * N];
	size_t nn = 0, wl, pl;
	unsigned seed = 12345;

	for (size_t i = 0; i < N; i++) {
		seed = seed * 1103515245u + 12345u;
		unsigned r = (seed >> 16) % 20;
		char c = r < 10 ? (char)('a' + r) : r < 13 ? ' ' : r == 13 ? '\t' :
		         r == 14 ? '\n' : r == 15 ? '=' : r == 16 ? '\r' :
		         (char)(0x80 + (seed >> 8) % 100);
		in[i] = c;
	}
	/* expected decoding: LF and CRLF -> CRLF, bare CR kept */
	for (size_t i = 0; i < N; i++) {
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			norm[nn++] = '\r';
		norm[nn++] = in[i];
	}
	assert_int_equal(codec_qp_encode(in, N, whole, sizeof(whole), &wl, NULL),
	                 DM_OK);
	check_lines(whole, wl, 76);
	/* no whitespace right before a line end */
	for (size_t i = 1; i < wl; i++)
		if (whole[i] == '\r')
			assert_true(whole[i - 1] != ' ' && whole[i - 1] != '\t');
	assert_true(whole[wl - 1] != ' ' && whole[wl - 1] != '\t');
	size_t dl = qp_decode(whole, wl, dec);
	assert_int_equal(dl, nn);
	assert_memory_equal(dec, norm, nn);

	static const size_t chunks[] = { 1, 2, 3, 7, 64, 1000 };
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		struct codec_qp q;
		codec_qp_init(&q);
		pl = 0;
		for (size_t i = 0; i < N; i += chunks[c]) {
			size_t k = N - i < chunks[c] ? N - i : chunks[c];
			pl += codec_qp_update(&q, in + i, k, part + pl);
		}
		pl += codec_qp_final(&q, part + pl);
		assert_int_equal(pl, wl);
		assert_memory_equal(part, whole, wl);
	}
}

/* ---- streaming base64 ------------------------------------------------------- */

static void test_b64_stream(void **state)
{
	(void)state;
	static const size_t sizes[] = { 0, 1, 2, 3, 56, 57, 58, 114, 115, 1000, 4099 };
	static const size_t chunks[] = { 1, 2, 3, 5, 57, 4096 };
	static unsigned char in[4099];
	static char ref[8192], flat[8192], out[16384];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 7 + (i >> 3));
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		size_t n = sizes[s];
		/* reference: flat base64 cut into 76-char lines, each + CRLF */
		size_t fl = base64_encode(in, n, flat), rl = 0;
		for (size_t i = 0; i < fl; i += 76) {
			size_t k = fl - i < 76 ? fl - i : 76;
			memcpy(ref + rl, flat + i, k);
			rl += k;
			ref[rl++] = '\r';
			ref[rl++] = '\n';
		}
		assert_int_equal(codec_b64_size(n), rl);
		for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
			struct codec_b64 b;
			size_t ol = 0;
			codec_b64_init(&b);
			for (size_t i = 0; i < n; i += chunks[c]) {
				size_t k = n - i < chunks[c] ? n - i : chunks[c];
				size_t w = codec_b64_update(&b, in + i, k, out + ol);
				assert_true(w + 1 <= CODEC_B64_BOUND(k));
				ol += w;
			}
			size_t w = codec_b64_final(&b, out + ol);
			assert_true(w + 1 <= CODEC_B64_FINAL_MAX);
			ol += w;
			if (ol != rl || memcmp(out, ref, rl) != 0)
				fail_msg("b64 size %zu chunk %zu mismatch", n, chunks[c]);
			check_lines(out, ol, 76);
		}
	}
}

/* ---- RFC 2047 -------------------------------------------------------------- */

static const struct { const char *in; const char *out; } ew_cases[] = {
	{ "caf\xc3\xa9", "=?UTF-8?Q?caf=C3=A9?=" },
	{ "a b_c=?", "=?UTF-8?Q?a_b=5Fc=3D=3F?=" },
	{ "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "=?UTF-8?B?5pel5pys6Kqe?=" },
	{ "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
	  "=?UTF-8?B?0J/RgNC40LLQtdGC?=" },
};

static void test_encoded_words(void **state)
{
	(void)state;
	char out[2048], dec[2048];
	size_t n;

	for (size_t i = 0; i < sizeof(ew_cases) / sizeof(ew_cases[0]); i++) {
		assert_int_equal(codec_encode_words(ew_cases[i].in, strlen(ew_cases[i].in),
		                                    75, out, sizeof(out), &n, NULL), DM_OK);
		if (strcmp(out, ew_cases[i].out) != 0)
			fail_msg("ew case %zu: got '%s' want '%s'", i, out,
			         ew_cases[i].out);
	}

	/* long texts: words <= 75 (first <= first_max), split on characters */
	static const char *const longs[] = {
		"\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc"
		"\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc"
		"\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc",
		"Temperatur \xc3\xbc" "berschritten in Halle 3, Sensor 12: Wert "
		"liegt \xc3\xbc" "ber dem Grenzwert seit mehr als f\xc3\xbc" "nf Minuten",
		"\xe6\xb8\xa9\xe5\xba\xa6\xe3\x81\x8c\xe4\xb8\x8a\xe9\x99\x90\xe3\x82"
		"\x92\xe8\xb6\x85\xe3\x81\x88\xe3\x81\xbe\xe3\x81\x97\xe3\x81\x9f\xe3"
		"\x80\x82\xe3\x82\xbb\xe3\x83\xb3\xe3\x82\xb5\xe3\x83\xbc\xe7\x95\xaa"
		"\xe5\x8f\xb7\xef\xbc\x91\xef\xbc\x92\xe3\x82\x92\xe7\xa2\xba\xe8\xaa"
		"\x8d\xe3\x81\x97\xe3\x81\xa6\xe3\x81\x8f\xe3\x81\xa0\xe3\x81\x95\xe3"
		"\x81\x84\xf0\x9f\x94\xa5\xf0\x9f\x94\xa5",
	};
	for (size_t i = 0; i < sizeof(longs) / sizeof(longs[0]); i++) {
		size_t first_max = 40;
		assert_int_equal(codec_encode_words(longs[i], strlen(longs[i]),
		                                    first_max, out, sizeof(out), &n,
		                                    NULL), DM_OK);
		size_t dl = 0, words = 0;
		char *save = NULL;
		for (char *w = strtok_r(out, " ", &save); w;
		     w = strtok_r(NULL, " ", &save)) {
			size_t wl = strlen(w);
			assert_true(wl <= (words == 0 ? first_max : 75));
			size_t k = ew_decode(w, wl, dec + dl);
			/* each word holds whole characters */
			assert_true(codec_utf8_valid(dec + dl, k));
			dl += k;
			words++;
		}
		assert_true(words > 1);
		assert_int_equal(dl, strlen(longs[i]));
		assert_memory_equal(dec, longs[i], dl);
	}

	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(codec_encode_words("\xc3(", 2, 75, out, sizeof(out), &n,
	                                    &err), DM_EINVAL);
	assert_non_null(strstr(err.msg, "UTF-8"));
	dm_err_clear(&err);
	assert_int_equal(codec_encode_words("caf\xc3\xa9", 5, 75, out, 10, &n, &err),
	                 DM_ENOMEM);
}

static void test_decode_word(void **state)
{
	(void)state;
	static const struct { const char *in; enum dm_status st; const char *out; } cases[] = {
		{ "=?UTF-8?Q?caf=C3=A9_au_lait?=", DM_OK, "caf\xc3\xa9 au lait" },
		{ "=?utf-8?q?caf=c3=a9?=", DM_OK, "caf\xc3\xa9" },
		{ "=?UTF-8?B?5pel5pys6Kqe?=", DM_OK, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e" },
		{ "=?UTF-8*de?Q?Gr=C3=BC=C3=9Fe?=", DM_OK, "Gr\xc3\xbc\xc3\x9f" "e" },
		{ "=?US-ASCII?Q?plain?=", DM_OK, "plain" },
		{ "=?ISO-8859-1?Q?caf=E9?=", DM_EINVAL, NULL },
		{ "=?UTF-8?X?abc?=", DM_EINVAL, NULL },
		{ "=?UTF-8?Q?a=0Db?=", DM_EINVAL, NULL },      /* CR */
		{ "=?UTF-8?Q?=C3?=", DM_EINVAL, NULL },        /* truncated UTF-8 */
		{ "=?UTF-8?Q?=G1?=", DM_EINVAL, NULL },
		{ "=?UTF-8?B?####?=", DM_EINVAL, NULL },
		{ "plain", DM_EINVAL, NULL },
		{ "=?UTF-8?Q?", DM_EINVAL, NULL },
	};
	char out[128];
	size_t n;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum dm_status st = codec_decode_word(cases[i].in, strlen(cases[i].in),
		                                      out, sizeof(out), &n, NULL);
		if (st != cases[i].st)
			fail_msg("decode case %zu: status %d", i, st);
		if (st == DM_OK) {
			assert_string_equal(out, cases[i].out);
			assert_int_equal(n, strlen(cases[i].out));
		}
	}
	/* an unknown charset is quoted escaped */
	struct dm_err err;
	dm_err_clear(&err);
	const char *cw = "=?X\r\nInjected?Q?a?=";
	assert_int_equal(codec_decode_word(cw, strlen(cw), out, sizeof(out), &n, &err),
	                 DM_EINVAL);
	assert_null(strpbrk(err.msg, "\r\n"));
	assert_non_null(strstr(err.msg, "charset 'X\\r\\nInjected'"));
	/* round trip through the encoder */
	const char *t = "Pr\xc3\xbc" "fbericht f\xc3\xbcr M\xc3\xa4rz";
	char enc[256];
	assert_int_equal(codec_encode_words(t, strlen(t), 75, enc, sizeof(enc), &n,
	                                    NULL), DM_OK);
	assert_int_equal(codec_decode_word(enc, n, out, sizeof(out), &n, NULL), DM_OK);
	assert_string_equal(out, t);
}

/* ---- header folding ---------------------------------------------------------- */

static void test_fold(void **state)
{
	(void)state;
	char out[4096], val[2048];
	size_t n;
	struct dm_err err;

	assert_int_equal(codec_header_fold("Subject", "hi", out, sizeof(out), &n,
	                                   NULL), DM_OK);
	assert_string_equal(out, "Subject: hi\r\n");
	assert_int_equal(n, 13);
	assert_int_equal(codec_header_fold("X-Empty", "", out, sizeof(out), &n,
	                                   NULL), DM_OK);
	assert_string_equal(out, "X-Empty:\r\n");

	/* 40 words of 9 characters: folded before a space, lines <= 78 */
	val[0] = '\0';
	for (int i = 0; i < 40; i++)
		strcat(val, i ? " word-" : "word-"), sprintf(val + strlen(val), "%03d", i);
	assert_int_equal(codec_header_fold("To", val, out, sizeof(out), &n, NULL),
	                 DM_OK);
	check_lines(out, n, 78);
	assert_non_null(strstr(out, "\r\n word-"));
	char unf[4096];
	size_t u = 0;
	for (size_t i = 0; i < n - 2; i++) {
		if (out[i] == '\r' && out[i + 1] == '\n') {
			i++;
			continue;
		}
		unf[u++] = out[i];
	}
	unf[u] = '\0';
	assert_string_equal(unf + 4, val);

	/* a 990-character word cannot be folded but still fits in 998 */
	memset(val, 'x', 990);
	val[990] = '\0';
	assert_int_equal(codec_header_fold("X-Long", val, out, sizeof(out), &n,
	                                   NULL), DM_OK);
	check_lines(out, n, 998);
	/* a 1000-character word cannot */
	memset(val, 'x', 1000);
	val[1000] = '\0';
	dm_err_clear(&err);
	assert_int_equal(codec_header_fold("X-Long", val, out, sizeof(out), &n,
	                                   &err), DM_EINVAL);
	assert_non_null(strstr(err.msg, "998"));

	static const struct { const char *v; const char *frag; } bad[] = {
		{ "a\r\nBcc: x@y", "CR" },
		{ "a\nb", "LF" },
		{ "a\x01" "b", "control character 0x01" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		dm_err_clear(&err);
		assert_int_equal(codec_header_fold("Subject", bad[i].v, out,
		                                   sizeof(out), &n, &err), DM_EINVAL);
		assert_non_null(strstr(err.msg, bad[i].frag));
		assert_non_null(strstr(err.msg, "Subject"));
		dm_err_clear(&err);
		assert_int_equal(codec_header_text("Subject", bad[i].v, out,
		                                   sizeof(out), &n, &err), DM_EINVAL);
		assert_non_null(strstr(err.msg, bad[i].frag));
	}
	dm_err_clear(&err);
	assert_int_equal(codec_header_fold("Bad Name", "x", out, sizeof(out), &n,
	                                   &err), DM_EINVAL);
	assert_int_equal(codec_header_fold("Bad:Name", "x", out, sizeof(out), &n,
	                                   NULL), DM_EINVAL);
	/* a refused name is quoted escaped: no CR/LF reaches the message */
	static const struct { const char *name; const char *frag; } bad_names[] = {
		{ "Bad\rName", "'Bad\\rName'" },
		{ "X-A\r\nInjected: x", "'X-A\\r\\nInjected: x'" },
		{ "X\x01\x7f", "'X\\x01\\x7f'" },
	};
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		dm_err_clear(&err);
		assert_int_equal(codec_header_fold(bad_names[i].name, "x", out,
		                                   sizeof(out), &n, &err), DM_EINVAL);
		assert_null(strpbrk(err.msg, "\r\n"));
		assert_non_null(strstr(err.msg, bad_names[i].frag));
		dm_err_clear(&err);
		assert_int_equal(codec_header_text(bad_names[i].name, "x", out,
		                                   sizeof(out), &n, &err), DM_EINVAL);
		assert_null(strpbrk(err.msg, "\r\n"));
		assert_non_null(strstr(err.msg, bad_names[i].frag));
	}
	assert_int_equal(codec_header_fold("Subject", "hello world", out, 10, &n,
	                                   NULL), DM_ENOMEM);
}

static const struct { const char *in; const char *out; } text_cases[] = {
	{ "Alarm", "Subject: Alarm\r\n" },
	{ "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln, alles gut",
	  "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus =?UTF-8?Q?K=C3=B6ln=2C?= alles gut\r\n" },
	{ "\xc3\xbc \xc3\xb6 x", "Subject: =?UTF-8?B?w7wgw7Y=?= x\r\n" },
	{ "looks =?like?= a word", "Subject: looks =?UTF-8?Q?=3D=3Flike=3F=3D?= a word\r\n" },
};

static void test_header_text(void **state)
{
	(void)state;
	char out[8192], dec[8192];
	size_t n;

	for (size_t i = 0; i < sizeof(text_cases) / sizeof(text_cases[0]); i++) {
		assert_int_equal(codec_header_text("Subject", text_cases[i].in, out,
		                                   sizeof(out), &n, NULL), DM_OK);
		if (strcmp(out, text_cases[i].out) != 0)
			fail_msg("text case %zu: got '%s'", i, out);
		header_decode(out, dec);
		assert_string_equal(dec, text_cases[i].in);
	}
	/* long mixed subject: lines with encoded-words <= 76, others <= 78,
	 * and the unfolded, decoded value is the original */
	const char *subj = "Warnung: Temperatur \xc3\xbc" "berschritten in Halle 3 "
		"\xe2\x80\x94 Sensor 12 meldet 85 \xc2\xb0" "C seit 5 Minuten, "
		"bitte pr\xc3\xbc" "fen \xe6\xb8\xa9\xe5\xba\xa6\xe8\xad\xa6\xe5\xa0"
		"\xb1\xe6\xb8\xa9\xe5\xba\xa6\xe8\xad\xa6\xe5\xa0\xb1\xe6\xb8\xa9\xe5"
		"\xba\xa6\xe8\xad\xa6\xe5\xa0\xb1\xe6\xb8\xa9\xe5\xba\xa6\xe8\xad\xa6"
		"\xe5\xa0\xb1 Ende";
	assert_int_equal(codec_header_text("Subject", subj, out, sizeof(out), &n,
	                                   NULL), DM_OK);
	check_lines(out, n, 78);
	for (char *l = out; *l;) {
		char *e = strstr(l, "\r\n");
		if (memmem(l, (size_t)(e - l), "=?UTF-8?", 8))
			assert_true(e - l <= 76);
		l = e + 2;
	}
	header_decode(out, dec);
	assert_string_equal(dec, subj);

	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(codec_header_text("Subject", "bad \xc3", out, sizeof(out),
	                                   &n, &err), DM_EINVAL);
	assert_non_null(strstr(err.msg, "UTF-8"));
}

static void test_rfc2231(void **state)
{
	(void)state;
	char out[256];
	assert_int_equal(codec_rfc2231_encode("Pr\xc3\xbc" "fbericht 1.pdf", out,
	                                      sizeof(out), NULL), DM_OK);
	assert_string_equal(out, "UTF-8''Pr%C3%BCfbericht%201.pdf");
	assert_int_equal(codec_rfc2231_encode("a*b'c%d\"e", out, sizeof(out), NULL),
	                 DM_OK);
	assert_string_equal(out, "UTF-8''a%2Ab%27c%25d%22e");
	assert_int_equal(codec_rfc2231_encode("\xc3\xbc\xc3\xbc", out, 10, NULL),
	                 DM_ENOMEM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_qp_vectors),
		cmocka_unit_test(test_qp_stream),
		cmocka_unit_test(test_b64_stream),
		cmocka_unit_test(test_encoded_words),
		cmocka_unit_test(test_decode_word),
		cmocka_unit_test(test_fold),
		cmocka_unit_test(test_header_text),
		cmocka_unit_test(test_rfc2231),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
