/*
 * text.h - small byte-to-text helpers shared by every layer: hex encoding.
 *
 * No allocation, no I/O; every output buffer is caller-owned with a cap.
 */
#ifndef DEVMAIL_CORE_TEXT_H
#define DEVMAIL_CORE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Writes in[n] as hex digits (lower case, or upper case when `upper`) into
 * out[cap], NUL-terminated, with `sep` between bytes unless sep is '\0'
 * ("ab:cd" for a fingerprint, "abcd" for a random name).  Only whole bytes
 * are written: a byte that does not fit with its separator and the NUL is
 * left out, so out[cap] >= 2n+1 (3n with a separator) holds all of it.
 * Returns the length written (without the NUL); nothing when cap is 0. */
size_t text_hex(const void *in, size_t n, char *out, size_t cap, bool upper,
                char sep);

#endif
