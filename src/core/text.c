/* text.c - hex encoding shared by the mail code and the durable writes. */
#include "core/text.h"

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
