/*
 * base64.h - RFC 4648 base64 for buffers (vault, SASL, MIME).
 */
#ifndef DEVMAIL_CORE_BASE64_H
#define DEVMAIL_CORE_BASE64_H

#include <stddef.h>
#include "core/err.h"

/* Length of the encoding of n bytes, without the terminating NUL. */
size_t base64_encoded_len(size_t n);

/* Encodes in[n] into out (room for base64_encoded_len(n) + 1), no line
 * breaks, NUL-terminated.  Returns the length written (without NUL). */
size_t base64_encode(const void *in, size_t n, char *out);

/* Decodes in[len] (padding required, whitespace CR/LF/space/tab ignored)
 * into out[cap]; *outlen set.  Errors: DM_EINVAL (bad character, bad
 * padding, truncated), DM_ENOMEM (cap too small). */
enum dm_status base64_decode(const char *in, size_t len, unsigned char *out,
                             size_t cap, size_t *outlen, struct dm_err *err);

#endif
