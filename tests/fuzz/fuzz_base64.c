/*
 * fuzz_base64.c - base64_decode() / base64_encode() (core/base64.h).
 *
 * Input: byte 0 picks the output capacity (as a fraction of what the
 * input could decode to), the rest is decoded.
 * Properties:
 *   - *outlen <= cap, and on DM_ENOMEM the same input decodes with a large
 *     enough buffer;
 *   - accepted input is canonical: re-encoding the bytes gives the input
 *     with its whitespace removed;
 *   - the rest encoded with base64_encode() has base64_encoded_len() bytes
 *     and decodes back to it.
 */
#include "fuzz_util.h"

#include "core/base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *in = (const char *)data + 1;
	size_t n = size - 1;
	size_t full = n / 4 * 3 + 3;
	size_t cap = data[0] == 255 ? full : full * data[0] / 255;
	unsigned char *out = malloc(cap ? cap : 1);
	unsigned char *big = malloc(full);
	if (!out || !big)
		abort();
	size_t ol = 12345, bl = 0;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = base64_decode(in, n, out, cap, &ol, &err);
	enum dm_status stb = base64_decode(in, n, big, full, &bl, NULL);
	FUZZ_CHECK(stb == DM_OK || stb == DM_EINVAL, "status %d with room", (int)stb);
	if (st == DM_OK) {
		FUZZ_CHECK(ol <= cap, "outlen %zu > cap %zu", ol, cap);
		FUZZ_CHECK(stb == DM_OK && bl == ol && memcmp(big, out, ol) == 0,
		           "result depends on cap");
		char *enc = malloc(base64_encoded_len(ol) + 1);
		char *stripped = malloc(n + 1);
		if (!enc || !stripped)
			abort();
		size_t el = base64_encode(out, ol, enc);
		size_t sl = 0;
		for (size_t i = 0; i < n; i++)
			if (!strchr("\r\n \t", in[i]) || in[i] == '\0')
				stripped[sl++] = in[i];
		FUZZ_CHECK(el == sl && memcmp(enc, stripped, sl) == 0,
		           "accepted a non-canonical encoding (%zu vs %zu chars)", el, sl);
		free(enc);
		free(stripped);
	} else {
		FUZZ_CHECK(st == DM_EINVAL || st == DM_ENOMEM, "status %d", (int)st);
		FUZZ_CHECK(err.msg[0] != '\0', "error without a message");
		if (st == DM_ENOMEM)
			FUZZ_CHECK(stb == DM_OK || stb == DM_EINVAL, "ENOMEM with room");
		else
			FUZZ_CHECK(stb == DM_EINVAL, "EINVAL depends on cap");
	}

	/* encode the input bytes and decode them back */
	size_t elen = base64_encoded_len(n);
	char *enc = malloc(elen + 1);
	unsigned char *back = malloc(n + 3);
	if (!enc || !back)
		abort();
	size_t w = base64_encode(in, n, enc);
	FUZZ_CHECK(w == elen && enc[w] == '\0', "encoded %zu, expected %zu", w, elen);
	FUZZ_CHECK(base64_decode(enc, w, back, n, &bl, NULL) == DM_OK && bl == n &&
	           (n == 0 || memcmp(back, in, n) == 0), "encode/decode round trip");
	free(enc);
	free(back);
	free(out);
	free(big);
	return 0;
}
