/*
 * base64.c - RFC 4648 section 4 base64 (standard alphabet, '=' padding).
 *
 * The decoder is strict about what the RFC leaves to the implementation
 * (section 3.3: reject non-alphabet characters; section 3.5: canonical
 * encoding): it requires padding to a multiple of four characters, accepts
 * '=' only at the end, and refuses non-zero pad bits.  Only CR, LF, space and
 * tab are skipped, so MIME-folded input decodes.
 */
#include "core/base64.h"

#include <stdint.h>

static const char base64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encoded_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

size_t base64_encode(const void *in, size_t n, char *out)
{
	const unsigned char *p = in;
	size_t o = 0;

	while (n >= 3) {
		uint32_t v = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
		out[o++] = base64_alphabet[v >> 18 & 63];
		out[o++] = base64_alphabet[v >> 12 & 63];
		out[o++] = base64_alphabet[v >> 6 & 63];
		out[o++] = base64_alphabet[v & 63];
		p += 3;
		n -= 3;
	}
	if (n > 0) {
		uint32_t v = (uint32_t)p[0] << 16;
		if (n == 2)
			v |= (uint32_t)p[1] << 8;
		out[o++] = base64_alphabet[v >> 18 & 63];
		out[o++] = base64_alphabet[v >> 12 & 63];
		out[o++] = n == 2 ? base64_alphabet[v >> 6 & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

/* Value of an alphabet character, -1 for anything else. */
static int base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

static int base64_is_space(unsigned char c)
{
	return c == '\r' || c == '\n' || c == ' ' || c == '\t';
}

enum dm_status base64_decode(const char *in, size_t len, unsigned char *out,
                             size_t cap, size_t *outlen, struct dm_err *err)
{
	unsigned char quad[4];
	size_t q = 0, o = 0;
	int done = 0;   /* a quantum with padding has been seen */

	*outlen = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (base64_is_space(c))
			continue;
		if (done)
			return dm_err_set(err, DM_EINVAL,
			    "base64: data after padding at offset %zu", i);
		if (c == '=') {
			/* '=' may stand only in the last two places of a quantum. */
			if (q < 2)
				return dm_err_set(err, DM_EINVAL,
				    "base64: misplaced padding at offset %zu", i);
			quad[q++] = 64;
		} else {
			int v = base64_value(c);
			if (v < 0)
				return dm_err_set(err, DM_EINVAL,
				    "base64: invalid character 0x%02x at offset %zu",
				    c, i);
			if (q == 3 && quad[2] == 64)
				return dm_err_set(err, DM_EINVAL,
				    "base64: misplaced padding before offset %zu", i);
			quad[q++] = (unsigned char)v;
		}
		if (q < 4)
			continue;

		size_t nbytes = quad[2] == 64 ? 1 : quad[3] == 64 ? 2 : 3;
		uint32_t v = (uint32_t)quad[0] << 18 | (uint32_t)quad[1] << 12;
		if (nbytes >= 2)
			v |= (uint32_t)quad[2] << 6;
		if (nbytes == 3)
			v |= quad[3];
		/* Non-canonical encodings leave bits set under the padding. */
		if ((nbytes == 1 && (v & 0xffff)) || (nbytes == 2 && (v & 0xff)))
			return dm_err_set(err, DM_EINVAL,
			    "base64: non-zero bits before padding at offset %zu", i);
		if (cap - o < nbytes)
			return dm_err_set(err, DM_ENOMEM,
			    "base64: decoded data exceeds %zu bytes", cap);
		out[o++] = (unsigned char)(v >> 16);
		if (nbytes >= 2)
			out[o++] = (unsigned char)(v >> 8);
		if (nbytes == 3)
			out[o++] = (unsigned char)v;
		if (nbytes < 3)
			done = 1;
		q = 0;
	}
	if (q != 0)
		return dm_err_set(err, DM_EINVAL,
		    "base64: truncated input (%zu characters left over)", q);
	*outlen = o;
	return DM_OK;
}
