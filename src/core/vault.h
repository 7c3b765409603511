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

/* Largest secret vault_seal() accepts, in bytes. */
#define VAULT_PLAIN_MAX 65536

/* Seals plain[len] into a newly allocated NUL-terminated string *out (caller
 * frees with free(); *out is NULL on failure).  Creates the key file when
 * missing.  `plain` stays the caller's to wipe.
 * Errors: DM_EPERM (key file readable by group or others; the message names
 * the file, its mode and the fix), DM_EINVAL (key file of the wrong size or
 * not a regular file, len > VAULT_PLAIN_MAX), DM_EIO, DM_ENOMEM, DM_ECRYPTO. */
enum dm_status vault_seal(const char *root, const void *plain, size_t len,
                          char **out, struct dm_err *err);

/* Unseals into a newly allocated buffer *out of *out_len bytes plus a
 * terminating NUL; the caller wipes it with vault_wipe() and frees it.  On
 * failure *out is NULL and no plaintext byte is left anywhere.
 * Never creates the key file.
 * Errors: DM_EINVAL (not a sealed value: wrong prefix, bad base64,
 * truncated; or a damaged key file), DM_ECRYPTO (tampered value or wrong
 * key), DM_EPERM, DM_EIO, DM_ENOMEM, DM_ENOTFOUND (no key file). */
enum dm_status vault_unseal(const char *root, const char *sealed,
                            char **out, size_t *out_len, struct dm_err *err);

/* True when `s` has the sealed form (prefix and decodable base64 of a
 * plausible length); says nothing about whether it decrypts. */
bool vault_is_sealed(const char *s);

/* Overwrites len bytes in a way the compiler may not elide (NULL allowed). */
void vault_wipe(void *p, size_t len);

/* Length (without NUL) of the sealed form of a plain_len-byte secret, so
 * callers can check it fits a registry value (REG_VALUE_MAX). */
size_t vault_sealed_len(size_t plain_len);

/* Creates root/vault.key when missing (the daemon calls it at boot so the
 * first seal does not pay for it) and checks its mode and size.
 * Errors: as vault_seal(). */
enum dm_status vault_key_ensure(const char *root, struct dm_err *err);

#endif
