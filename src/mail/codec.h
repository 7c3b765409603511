/*
 * codec.h - MIME transfer encodings and header encoding.
 *
 * RFC 2045 section 6.7 (quoted-printable), section 6.8 (base64 lines of at
 * most 76 characters), RFC 2047 (encoded-words), RFC 5322 section 2.1.1 and
 * 2.2.3 (line length 78 SHOULD / 998 MUST, folding), RFC 3629 (UTF-8).
 *
 * The streaming encoders keep a small state and can be fed input split at
 * any byte; output goes to a caller buffer sized with the *_BOUND macros.
 */
#ifndef DEVMAIL_MAIL_CODEC_H
#define DEVMAIL_MAIL_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"

#define CODEC_LINE_SOFT 78      /* RFC 5322 2.1.1 SHOULD */
#define CODEC_LINE_HARD 998     /* RFC 5322 2.1.1 MUST, without CRLF */
#define CODEC_WORD_MAX 75       /* RFC 2047 section 2 */

/* ---- UTF-8 ------------------------------------------------------------ */

/* True when s[len] is well-formed UTF-8 (no overlongs, surrogates, or
 * code points above U+10FFFF); text_utf8_valid() in core/text.h. */
bool codec_utf8_valid(const char *s, size_t len);

/* True when s[len] is all 7-bit ASCII. */
bool codec_is_ascii(const char *s, size_t len);

/* ---- streaming base64, CRLF after every 76 characters ----------------- */

struct codec_b64 {
	unsigned char carry[3]; /* input bytes not yet forming a quantum */
	unsigned ncarry;
	unsigned col;           /* characters on the current output line */
};

/* Output room for codec_b64_update() on n input bytes (includes the NUL
 * that the underlying base64_encode() writes). */
#define CODEC_B64_BOUND(n) \
	((((n) + 3) / 3) * 4 + ((((n) + 3) / 3) * 4 / 76 + 2) * 2 + 1)
/* Output room for codec_b64_final(). */
#define CODEC_B64_FINAL_MAX 8

void codec_b64_init(struct codec_b64 *s);
/* Encodes in[n]; writes complete lines and partial-line quanta to out.
 * Returns the number of bytes written (no NUL counted). */
size_t codec_b64_update(struct codec_b64 *s, const void *in, size_t n,
                        char *out);
/* Writes the last (padded) quantum and ends a non-empty last line with
 * CRLF.  Returns the count written.  An empty input yields nothing. */
size_t codec_b64_final(struct codec_b64 *s, char *out);
/* Exact size of the complete encoding of n bytes, CRLFs included. */
unsigned long long codec_b64_size(unsigned long long n);

/* ---- streaming quoted-printable (RFC 2045 6.7) ------------------------ */

/* Input is text: CRLF and bare LF both end a line and come out as CRLF;
 * a bare CR is encoded as =0D.  Space/tab before a line end or at the end
 * of input is encoded (=20/=09); '=' and bytes outside 33..126 are =XX;
 * lines are at most 76 characters, soft breaks ("=" CRLF) as needed.
 * The output does not end with CRLF unless the input did. */
struct codec_qp {
	unsigned col;           /* characters on the current output line */
	int held_ws;            /* a space/tab waiting to see what follows, or -1 */
	bool held_cr;           /* a CR waiting to see whether LF follows */
};

#define CODEC_QP_BOUND(n) (6 * (n) + 16)
#define CODEC_QP_FINAL_MAX 16

void codec_qp_init(struct codec_qp *q);
size_t codec_qp_update(struct codec_qp *q, const void *in, size_t n,
                       char *out);
size_t codec_qp_final(struct codec_qp *q, char *out);

/* One-shot convenience: encodes in[n] into out[cap], NUL-terminated,
 * *outlen set.  Errors: DM_ENOMEM when cap is too small. */
enum dm_status codec_qp_encode(const void *in, size_t n, char *out,
                               size_t cap, size_t *outlen,
                               struct dm_err *err);

/* ---- RFC 2047 encoded-words -------------------------------------------- */

/* Encodes UTF-8 text[len] as encoded-words "=?UTF-8?Q?...?=" or
 * "=?UTF-8?B?...?=" (Q when few bytes need escaping, else B), separated by
 * single spaces, each word at most CODEC_WORD_MAX characters and the first
 * at most first_max (clamped to 20..75).  Words split only on UTF-8
 * character boundaries; Q uses the restricted set of RFC 2047 5(3), so the
 * result is valid in a phrase (display name) as well as in unstructured
 * text.  Output NUL-terminated in out[cap], *outlen set.
 * Errors: DM_EINVAL (invalid UTF-8), DM_ENOMEM (cap too small). */
enum dm_status codec_encode_words(const char *text, size_t len,
                                  size_t first_max, char *out, size_t cap,
                                  size_t *outlen, struct dm_err *err);

/* Decodes one encoded-word w[n] ("=?UTF-8?B?...?=" or Q; charset UTF-8 or
 * US-ASCII, any case, RFC 2231 language suffix allowed) into out[cap],
 * NUL-terminated, *outlen set.  Errors: DM_EINVAL when w is not such a
 * word, or the text is not valid UTF-8 or holds control characters;
 * DM_ENOMEM when cap is too small. */
enum dm_status codec_decode_word(const char *w, size_t n, char *out,
                                 size_t cap, size_t *outlen,
                                 struct dm_err *err);

/* ---- header fields ------------------------------------------------------ */

/* Writes "Name: value" CRLF into out[cap], folding at whitespace so lines
 * stay within 78 characters where the value allows, never beyond 998
 * (a word that cannot fit is DM_EINVAL).  The value is used as is (it must
 * already be encoded); CR, LF and other control characters except tab are
 * refused with DM_EINVAL naming the header.  NUL-terminated; *outlen set.
 * Errors: DM_EINVAL, DM_ENOMEM (cap too small). */
enum dm_status codec_header_fold(const char *name, const char *value,
                                 char *out, size_t cap, size_t *outlen,
                                 struct dm_err *err);

/* Like codec_header_fold() for unstructured UTF-8 text (Subject, extra
 * headers): runs of words with non-ASCII (or that look like encoded-words)
 * become RFC 2047 encoded-words, ASCII words stay readable.
 * Errors: DM_EINVAL (CR/LF/control characters, invalid UTF-8), DM_ENOMEM. */
enum dm_status codec_header_text(const char *name, const char *value,
                                 char *out, size_t cap, size_t *outlen,
                                 struct dm_err *err);

/* RFC 2231 extended value "UTF-8''" followed by percent-encoded value
 * (attribute-char kept) into out[cap], NUL-terminated.
 * Errors: DM_ENOMEM when cap is too small. */
enum dm_status codec_rfc2231_encode(const char *value, char *out, size_t cap,
                                    struct dm_err *err);

#endif
