/*
 * fuzz_text.h - decoding helpers shared by the codec and message targets:
 * unfolding a header and decoding the RFC 2047 words of unstructured text.
 */
#ifndef DEVMAIL_FUZZ_TEXT_H
#define DEVMAIL_FUZZ_TEXT_H

#include "fuzz_util.h"
#include "mail/codec.h"

/* Decodes unstructured header text v[n] (already unfolded): encoded-words
 * are decoded, the whitespace between two adjacent encoded-words dropped
 * (RFC 2047 6.2).  Writes into dec (room for n + 1).  Returns the length,
 * or (size_t)-1 when a word holds "=?" but is not a valid encoded-word. */
static inline size_t fuzz_text_decode(const char *v, size_t n, char *dec)
{
	size_t dl = 0, i = 0;
	bool prev_ew = false;
	while (i < n) {
		size_t ws = i;
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		size_t w0 = i;
		while (i < n && v[i] != ' ' && v[i] != '\t')
			i++;
		char d[80];
		size_t wl = 0;
		bool ew = i - w0 >= 8 && v[w0] == '=' && v[w0 + 1] == '?' &&
		          codec_decode_word(v + w0, i - w0, d, sizeof(d), &wl, NULL) == DM_OK;
		if (!(ew && prev_ew)) {
			memcpy(dec + dl, v + ws, w0 - ws);
			dl += w0 - ws;
		}
		if (ew) {
			memcpy(dec + dl, d, wl);
			dl += wl;
		} else {
			if (i - w0 >= 2 && memmem(v + w0, i - w0, "=?", 2))
				return (size_t)-1;
			memcpy(dec + dl, v + w0, i - w0);
			dl += i - w0;
		}
		prev_ew = ew;
	}
	dec[dl] = '\0';
	return dl;
}

/* Removes CRLF before WSP from h[n] into u (room n + 1); a final CRLF is
 * dropped.  Returns the length. */
static inline size_t fuzz_unfold(const char *h, size_t n, char *u)
{
	size_t ul = 0;
	for (size_t i = 0; i < n; i++) {
		if (h[i] == '\r' && i + 1 < n && h[i + 1] == '\n') {
			i++;
			continue;
		}
		u[ul++] = h[i];
	}
	u[ul] = '\0';
	return ul;
}

#endif
