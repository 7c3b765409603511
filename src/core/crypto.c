/*
 * crypto.c - AEAD, random bytes and X.509 through GnuTLS (see crypto.h).
 *
 * Standards: NIST SP 800-38D (GCM), RFC 5280 (X.509 v3 profile: 4.1.2.2
 * serial, 4.1.2.5 validity, 4.2.1.3 key usage, 4.2.1.6 subjectAltName,
 * 4.2.1.9 basic constraints, 4.2.1.12 extended key usage), SEC 2 / FIPS
 * 186-4 (P-256), RFC 5915 / 5208 (key PEM).
 */
#include "core/crypto.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "core/text.h"

#define CRYPTO_SERIAL_LEN 16
#define CRYPTO_NOT_BEFORE_SLACK (24L * 60 * 60)   /* one day, in seconds */

enum dm_status crypto_random_key(void *buf, size_t n, struct dm_err *err)
{
	if (gnutls_rnd(GNUTLS_RND_KEY, buf, n) != 0)
		return dm_err_set(err, DM_ECRYPTO,
		                  "the system random generator failed");
	return DM_OK;
}

enum dm_status crypto_random_nonce(void *buf, size_t n, struct dm_err *err)
{
	if (gnutls_rnd(GNUTLS_RND_NONCE, buf, n) != 0)
		return dm_err_set(err, DM_ECRYPTO,
		                  "the system random generator failed");
	return DM_OK;
}

/* ---- AEAD ------------------------------------------------------------- */

struct crypto_aead {
	gnutls_aead_cipher_hd_t h;
};

enum dm_status crypto_aead_new(const unsigned char *key,
                               struct crypto_aead **out, struct dm_err *err)
{
	*out = NULL;
	struct crypto_aead *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return dm_err_set(err, DM_ENOMEM, "AES-256-GCM: out of memory");
	/* GnuTLS takes a non-const datum but only reads the key. */
	gnutls_datum_t kd = { (unsigned char *)(uintptr_t)key, CRYPTO_AEAD_KEY_LEN };
	int rc = gnutls_aead_cipher_init(&a->h, GNUTLS_CIPHER_AES_256_GCM, &kd);
	if (rc < 0) {
		free(a);
		return dm_err_set(err, DM_ECRYPTO, "AES-256-GCM unavailable: %s",
		                  gnutls_strerror(rc));
	}
	*out = a;
	return DM_OK;
}

enum dm_status crypto_aead_seal(struct crypto_aead *a,
                                const unsigned char *nonce,
                                const void *ad, size_t ad_len,
                                const void *plain, size_t len,
                                unsigned char *out, struct dm_err *err)
{
	size_t ct_len = len + CRYPTO_AEAD_TAG_LEN;
	/* GnuTLS rejects a NULL plaintext pointer even for zero bytes. */
	int rc = gnutls_aead_cipher_encrypt(a->h, nonce, CRYPTO_AEAD_NONCE_LEN,
	                                    ad, ad_len, CRYPTO_AEAD_TAG_LEN,
	                                    len ? plain : (const void *)"", len,
	                                    out, &ct_len);
	if (rc < 0 || ct_len != len + CRYPTO_AEAD_TAG_LEN)
		return dm_err_set(err, DM_ECRYPTO, "sealing failed: %s",
		                  rc < 0 ? gnutls_strerror(rc) : "unexpected length");
	return DM_OK;
}

enum dm_status crypto_aead_open(struct crypto_aead *a,
                                const unsigned char *nonce,
                                const void *ad, size_t ad_len,
                                const unsigned char *in, size_t in_len,
                                unsigned char *plain, struct dm_err *err)
{
	if (in_len < CRYPTO_AEAD_TAG_LEN)
		return dm_err_set(err, DM_EINVAL,
		                  "sealed data of %zu bytes is shorter than its tag",
		                  in_len);
	size_t want = in_len - CRYPTO_AEAD_TAG_LEN, plain_len = want;
	int rc = gnutls_aead_cipher_decrypt(a->h, nonce, CRYPTO_AEAD_NONCE_LEN,
	                                    ad, ad_len, CRYPTO_AEAD_TAG_LEN,
	                                    in, in_len, plain, &plain_len);
	if (rc < 0 || plain_len != want) {
		if (want > 0)
			explicit_bzero(plain, want);
		return dm_err_set(err, DM_ECRYPTO,
		                  "the data do not authenticate (altered, or sealed "
		                  "under another key)");
	}
	return DM_OK;
}

void crypto_aead_free(struct crypto_aead *a)
{
	if (a == NULL)
		return;
	gnutls_aead_cipher_deinit(a->h);
	free(a);
}

/* ---- X.509 ------------------------------------------------------------- */

/* Copies a GnuTLS datum into a malloc'd NUL-terminated buffer, then wipes
 * and frees the datum (it may hold a private key). */
static char *crypto_take_datum(gnutls_datum_t *d, size_t *len)
{
	char *p = malloc((size_t)d->size + 1);
	if (p != NULL) {
		memcpy(p, d->data, d->size);
		p[d->size] = '\0';
		*len = d->size;
	}
	explicit_bzero(d->data, d->size);
	gnutls_free(d->data);
	d->data = NULL;
	d->size = 0;
	return p;
}

/* Adds the subject and the names; returns a GnuTLS code, *bad_ip set to
 * the offending text when an IP SAN does not parse. */
static int crypto_cert_names(gnutls_x509_crt_t crt,
                             const struct crypto_cert_spec *spec,
                             const char **bad_ip)
{
	const char *cn = spec->common_name != NULL && spec->common_name[0] != '\0'
		? spec->common_name : "devmail";
	int rc = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME,
	                                       0, cn, (unsigned)strlen(cn));
	for (size_t i = 0; rc >= 0 && i < spec->n_dns; i++)
		rc = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME,
		                                          spec->dns[i],
		                                          (unsigned)strlen(spec->dns[i]),
		                                          GNUTLS_FSAN_APPEND);
	for (size_t i = 0; rc >= 0 && i < spec->n_ips; i++) {
		unsigned char a[16];
		unsigned alen = 0;
		if (inet_pton(AF_INET, spec->ips[i], a) == 1)
			alen = 4;
		else if (inet_pton(AF_INET6, spec->ips[i], a) == 1)
			alen = 16;
		if (alen == 0) {
			*bad_ip = spec->ips[i];
			return GNUTLS_E_INVALID_REQUEST;
		}
		rc = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS,
		                                          a, alen, GNUTLS_FSAN_APPEND);
	}
	return rc;
}

/* Everything but the names and the signature: version, serial, validity,
 * key, extensions. */
static int crypto_cert_body(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key)
{
	unsigned char serial[CRYPTO_SERIAL_LEN];
	unsigned char kid[64];
	size_t kid_len = sizeof(kid);
	int rc = gnutls_x509_crt_set_version(crt, 3);
	if (rc < 0)
		return rc;
	/* RFC 5280 4.1.2.2: positive, at most 20 octets; a leading 0x40 bit
	 * keeps it positive and its DER length fixed. */
	if (gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial)) != 0)
		return GNUTLS_E_RANDOM_FAILED;
	serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40);
	rc = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
	if (rc >= 0)
		rc = gnutls_x509_crt_set_activation_time(crt,
			time(NULL) - CRYPTO_NOT_BEFORE_SLACK);
	/* (time_t)-1 asks GnuTLS for "no well-defined expiration", encoded as
	 * 99991231235959Z.  (Passing GNUTLS_X509_NO_WELL_DEFINED_EXPIRATION
	 * instead encodes a real date in 2106.) */
	if (rc >= 0)
		rc = gnutls_x509_crt_set_expiration_time(crt, (time_t)-1);
	if (rc >= 0)
		rc = gnutls_x509_crt_set_key(crt, key);
	if (rc >= 0)
		rc = gnutls_x509_crt_set_basic_constraints(crt, 0, -1);
	if (rc >= 0)
		rc = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE);
	if (rc >= 0)
		rc = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER,
		                                         0);
	if (rc >= 0)
		rc = gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA1, kid,
		                                &kid_len);
	if (rc >= 0)
		rc = gnutls_x509_crt_set_subject_key_id(crt, kid, kid_len);
	if (rc >= 0)
		rc = gnutls_x509_crt_set_authority_key_id(crt, kid, kid_len);
	return rc;
}

enum dm_status crypto_cert_selfsigned(const struct crypto_cert_spec *spec,
                                      char **cert_pem, size_t *cert_len,
                                      char **key_pem, size_t *key_len,
                                      struct dm_err *err)
{
	gnutls_x509_privkey_t key = NULL;
	gnutls_x509_crt_t crt = NULL;
	gnutls_privkey_t signer = NULL;
	gnutls_datum_t d = { NULL, 0 };
	const char *bad_ip = NULL;
	const char *step = "key generation";
	enum dm_status st = DM_OK;
	char *cert = NULL, *kpem = NULL;

	*cert_pem = *key_pem = NULL;
	*cert_len = *key_len = 0;
	int rc = gnutls_x509_privkey_init(&key);
	if (rc >= 0)
		rc = gnutls_x509_privkey_generate2(key, GNUTLS_PK_ECDSA,
			GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0, NULL, 0);
	if (rc >= 0) {
		step = "certificate";
		rc = gnutls_x509_crt_init(&crt);
	}
	if (rc >= 0)
		rc = crypto_cert_body(crt, key);
	if (rc >= 0) {
		step = "certificate names";
		rc = crypto_cert_names(crt, spec, &bad_ip);
	}
	if (rc >= 0) {
		step = "signature";
		rc = gnutls_privkey_init(&signer);
	}
	if (rc >= 0)
		rc = gnutls_privkey_import_x509(signer, key, 0);
	if (rc >= 0)
		rc = gnutls_x509_crt_privkey_sign(crt, crt, signer, GNUTLS_DIG_SHA256,
		                                  0);
	if (rc >= 0) {
		step = "export";
		rc = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d);
	}
	if (rc >= 0 && (cert = crypto_take_datum(&d, cert_len)) == NULL)
		st = dm_err_set(err, DM_ENOMEM, "certificate: out of memory");
	if (rc >= 0 && st == DM_OK)
		rc = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL,
		                                       GNUTLS_PKCS_PLAIN, &d);
	if (rc >= 0 && st == DM_OK &&
	    (kpem = crypto_take_datum(&d, key_len)) == NULL)
		st = dm_err_set(err, DM_ENOMEM, "certificate: out of memory");
	if (bad_ip != NULL)
		st = dm_err_set(err, DM_EINVAL,
		                "certificate: '%s' is not an IPv4 or IPv6 address",
		                bad_ip);
	else if (rc < 0)
		st = dm_err_set(err, rc == GNUTLS_E_MEMORY_ERROR ? DM_ENOMEM
		                                                 : DM_ECRYPTO,
		                "certificate: %s failed: %s", step,
		                gnutls_strerror(rc));
	if (signer != NULL)
		gnutls_privkey_deinit(signer);
	if (crt != NULL)
		gnutls_x509_crt_deinit(crt);
	if (key != NULL)
		gnutls_x509_privkey_deinit(key);
	if (st != DM_OK) {
		free(cert);
		if (kpem != NULL) {
			explicit_bzero(kpem, *key_len);
			free(kpem);
		}
		*cert_len = *key_len = 0;
		return st;
	}
	*cert_pem = cert;
	*key_pem = kpem;
	return DM_OK;
}

enum dm_status crypto_cert_fingerprint(const void *pem, size_t len,
                                       char *out, struct dm_err *err)
{
	gnutls_x509_crt_t crt = NULL;
	unsigned char fp[32];
	size_t fp_len = sizeof(fp);
	out[0] = '\0';
	if (len > UINT32_MAX)
		return dm_err_set(err, DM_EINVAL, "certificate text too long");
	gnutls_datum_t d = { (unsigned char *)(uintptr_t)pem, (unsigned)len };
	int rc = gnutls_x509_crt_init(&crt);
	if (rc < 0)
		return dm_err_set(err, DM_ENOMEM, "certificate: out of memory");
	rc = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM);
	if (rc < 0) {
		gnutls_x509_crt_deinit(crt);
		return dm_err_set(err, DM_EINVAL, "no certificate in the text: %s",
		                  gnutls_strerror(rc));
	}
	rc = gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, fp, &fp_len);
	gnutls_x509_crt_deinit(crt);
	if (rc < 0 || fp_len != sizeof(fp))
		return dm_err_set(err, DM_ECRYPTO, "certificate SHA-256: %s",
		                  rc < 0 ? gnutls_strerror(rc) : "unexpected length");
	text_hex(fp, sizeof(fp), out, CRYPTO_FINGERPRINT_LEN, false, ':');
	return DM_OK;
}
