/*
 * rand.h - random bytes from the kernel (getrandom(2)), for names and ids
 * that must not be guessed or collide: temp files, Message-IDs, MIME
 * boundaries, outbox ids, retry jitter.  Keys and nonces use
 * crypto_random_key() / crypto_random_nonce() (core/crypto.h).
 */
#ifndef DEVMAIL_CORE_RAND_H
#define DEVMAIL_CORE_RAND_H

#include <stddef.h>

/* Fills buf[n] completely: retries after EINTR and short reads (requests
 * past 256 bytes may return fewer).  Returns 0, or the errno value of the
 * failure (EIO if the kernel returned nothing) with buf[] unspecified; a
 * syscall-level helper, so each caller words its own error message. */
int rand_bytes(void *buf, size_t n);

#endif
