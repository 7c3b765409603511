/*
 * vault.h - sealed secrets (the mail account password).
 *
 * AES-256-GCM under a 256-bit device key kept in root/vault.key (mode 0600,
 * created on first use from the system RNG).  A key file that group or
 * others can read is refused.  Sealed form, as stored in the registry:
 *   "dmv1:" base64(nonce[12] | ciphertext | tag[16])
 * The version tag and nothing else is authenticated as associated data.
 */
#ifndef DEVMAIL_CORE_VAULT_H
#define DEVMAIL_CORE_VAULT_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"

#define VAULT_PREFIX "dmv1:"

/* Seals plain[len] into a newly allocated NUL-terminated string *out (caller
 * frees with free()).  Creates the key file when missing.
 * Errors: DM_EPERM (key file readable by others), DM_EIO, DM_ECRYPTO. */
enum dm_status vault_seal(const char *root, const void *plain, size_t len,
                          char **out, struct dm_err *err);

/* Unseals into a newly allocated buffer *out of *out_len bytes plus a
 * terminating NUL; the caller wipes it with vault_wipe() and frees it.
 * Errors: DM_EINVAL (not a sealed value), DM_ECRYPTO (tampered value or
 * wrong key), DM_EPERM, DM_EIO, DM_ENOTFOUND (no key file). */
enum dm_status vault_unseal(const char *root, const char *sealed,
                            char **out, size_t *out_len, struct dm_err *err);

/* True when `s` has the sealed form (prefix and decodable base64 of a
 * plausible length); says nothing about whether it decrypts. */
bool vault_is_sealed(const char *s);

/* Overwrites len bytes in a way the compiler may not elide. */
void vault_wipe(void *p, size_t len);

#endif
