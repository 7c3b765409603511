/*
 * crypto.h - the cryptography devmail does outside TLS sessions: AEAD
 * (AES-256-GCM) for the vault, key-grade random bytes, and the X.509 work
 * of a server that makes its own certificate (ECDSA P-256, self-signed) and
 * shows its SHA-256 fingerprint for pinning.
 *
 * One of the two files of src/ that name GnuTLS (the other is net/tls.c,
 * the TLS sessions themselves); every other module asks here.
 */
#ifndef DEVMAIL_CORE_CRYPTO_H
#define DEVMAIL_CORE_CRYPTO_H

#include <stddef.h>
#include "core/err.h"

#define CRYPTO_AEAD_KEY_LEN 32     /* AES-256 */
#define CRYPTO_AEAD_NONCE_LEN 12   /* 96-bit GCM nonce (SP 800-38D 8.2) */
#define CRYPTO_AEAD_TAG_LEN 16     /* full 128-bit tag */
#define CRYPTO_FINGERPRINT_LEN 96  /* 32 bytes as "ab:cd:...": 95 + NUL */

/* Fills buf[n] from the library's key-grade generator (gnutls_rnd,
 * GNUTLS_RND_KEY): device keys, certificate serials.
 * Errors: DM_ECRYPTO (the generator failed; buf[] unspecified). */
enum dm_status crypto_random_key(void *buf, size_t n, struct dm_err *err);

/* Fills buf[n] from the nonce generator (GNUTLS_RND_NONCE): values that
 * must never repeat but need not stay secret.  Errors: DM_ECRYPTO. */
enum dm_status crypto_random_nonce(void *buf, size_t n, struct dm_err *err);

/* An AES-256-GCM context under one key. */
struct crypto_aead;

/* Makes a context for key[CRYPTO_AEAD_KEY_LEN]; the key is copied into the
 * library's schedule, so the caller wipes its own copy when it likes.
 * Free with crypto_aead_free().  Errors: DM_ECRYPTO (cipher unavailable),
 * DM_ENOMEM. */
enum dm_status crypto_aead_new(const unsigned char *key,
                               struct crypto_aead **out, struct dm_err *err);

/* Encrypts plain[len] (NULL allowed when len is 0) with the associated data
 * ad[ad_len] under nonce[CRYPTO_AEAD_NONCE_LEN] into out[len +
 * CRYPTO_AEAD_TAG_LEN]: ciphertext then tag.  A nonce must never be used
 * twice under one key.  Errors: DM_ECRYPTO. */
enum dm_status crypto_aead_seal(struct crypto_aead *a,
                                const unsigned char *nonce,
                                const void *ad, size_t ad_len,
                                const void *plain, size_t len,
                                unsigned char *out, struct dm_err *err);

/* Checks and decrypts in[in_len] (ciphertext then tag) into
 * plain[in_len - CRYPTO_AEAD_TAG_LEN].  On any failure nothing of plain[]
 * is to be used (it is zeroed).  Errors: DM_EINVAL (in_len shorter than a
 * tag), DM_ECRYPTO (the data, the associated data, the nonce or the key do
 * not match: altered, or sealed under another key). */
enum dm_status crypto_aead_open(struct crypto_aead *a,
                                const unsigned char *nonce,
                                const void *ad, size_t ad_len,
                                const unsigned char *in, size_t in_len,
                                unsigned char *plain, struct dm_err *err);

/* Releases the context (its key schedule is wiped by the library).  NULL ok. */
void crypto_aead_free(struct crypto_aead *a);

/* What a self-signed server certificate is for. */
struct crypto_cert_spec {
	const char *common_name;       /* subject CN; NULL or "": "devmail" */
	const char *const *dns;        /* DNS subjectAltNames */
	size_t n_dns;
	const char *const *ips;        /* IP subjectAltNames, IPv4 or IPv6 text */
	size_t n_ips;
};

/* Generates an ECDSA P-256 key and a self-signed X.509 v3 certificate for
 * it, signed with SHA-256: subject CN, DNS and IP subjectAltNames (RFC 5280
 * 4.2.1.6), basicConstraints CA:FALSE, keyUsage digitalSignature,
 * extendedKeyUsage serverAuth, a random positive 16-octet serial, valid from
 * one day before now (a unit whose clock was set a little late still
 * accepts it) with no well-defined expiration (RFC 5280 4.1.2.5,
 * 99991231235959Z): it is trusted by pin or as its own anchor, and a device
 * must not stop serving on a date.  An IP text that is not an address is
 * DM_EINVAL.  On success *cert_pem and *key_pem are malloc'd NUL-terminated
 * PEM texts (lengths without the NUL); the key is a secret: the caller wipes
 * it (vault_wipe) and frees it.  Errors: DM_EINVAL, DM_ECRYPTO, DM_ENOMEM. */
enum dm_status crypto_cert_selfsigned(const struct crypto_cert_spec *spec,
                                      char **cert_pem, size_t *cert_len,
                                      char **key_pem, size_t *key_len,
                                      struct dm_err *err);

/* SHA-256 of the DER of the first certificate in pem[len], written into
 * out[CRYPTO_FINGERPRINT_LEN] as lowercase hex with colons (the format of
 * transport_tls_info.fingerprint and of Email/Fingerprint).
 * Errors: DM_EINVAL (no certificate in the text), DM_ECRYPTO. */
enum dm_status crypto_cert_fingerprint(const void *pem, size_t len,
                                       char *out, struct dm_err *err);

#endif
