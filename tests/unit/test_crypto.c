/* test_crypto.c - core/crypto: AES-256-GCM against the published vectors,
 * tampering, random bytes, and the self-signed server certificate (checked
 * with GnuTLS directly: names, key type, validity, key/cert pair,
 * fingerprint). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "core/crypto.h"
#include "core/text.h"

static void unhex(const char *hex, unsigned char *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (unsigned char)v;
	}
}

/* McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13
 * and 14 (AES-256, zero key and IV): the tag of the empty message, and one
 * zero block. */
static void test_aead_vectors(void **state)
{
	(void)state;
	unsigned char key[CRYPTO_AEAD_KEY_LEN] = { 0 };
	unsigned char nonce[CRYPTO_AEAD_NONCE_LEN] = { 0 };
	unsigned char zero[16] = { 0 }, out[32], want[32], back[16];
	struct crypto_aead *a = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(crypto_aead_new(key, &a, &err), DM_OK);

	assert_int_equal(crypto_aead_seal(a, nonce, NULL, 0, NULL, 0, out, &err),
	                 DM_OK);
	unhex("530f8afbc74536b9a963b4f1c4cb738b", want, 16);
	assert_memory_equal(out, want, 16);
	assert_int_equal(crypto_aead_open(a, nonce, NULL, 0, out, 16, back, &err),
	                 DM_OK);

	assert_int_equal(crypto_aead_seal(a, nonce, NULL, 0, zero, 16, out, &err),
	                 DM_OK);
	unhex("cea7403d4d606b6e074ec5d3baf39d18"
	      "d0d1c8a799996bf0265b98b5d48ab919", want, 32);
	assert_memory_equal(out, want, 32);
	memset(back, 0xaa, sizeof(back));
	assert_int_equal(crypto_aead_open(a, nonce, NULL, 0, out, 32, back, &err),
	                 DM_OK);
	assert_memory_equal(back, zero, 16);
	crypto_aead_free(a);
	crypto_aead_free(NULL);
}

/* Any change to the data, the tag, the associated data, the nonce or the
 * key fails, and leaves nothing of the plaintext behind. */
static void test_aead_tamper(void **state)
{
	(void)state;
	unsigned char key[CRYPTO_AEAD_KEY_LEN], key2[CRYPTO_AEAD_KEY_LEN];
	unsigned char nonce[CRYPTO_AEAD_NONCE_LEN];
	static const char msg[] = "the account password";
	enum { N = sizeof(msg) - 1 };
	unsigned char sealed[N + CRYPTO_AEAD_TAG_LEN], plain[N];
	struct crypto_aead *a = NULL, *b = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(crypto_random_key(key, sizeof(key), &err), DM_OK);
	memcpy(key2, key, sizeof(key));
	key2[0] ^= 1;
	assert_int_equal(crypto_random_nonce(nonce, sizeof(nonce), &err), DM_OK);
	assert_int_equal(crypto_aead_new(key, &a, &err), DM_OK);
	assert_int_equal(crypto_aead_new(key2, &b, &err), DM_OK);
	assert_int_equal(crypto_aead_seal(a, nonce, "dmv1:", 5, msg, N, sealed,
	                                  &err), DM_OK);
	assert_int_equal(crypto_aead_open(a, nonce, "dmv1:", 5, sealed,
	                                  sizeof(sealed), plain, &err), DM_OK);
	assert_memory_equal(plain, msg, N);

	for (size_t i = 0; i < sizeof(sealed); i++) {
		sealed[i] ^= 0x80;
		memset(plain, 'x', sizeof(plain));
		dm_err_clear(&err);
		assert_int_equal(crypto_aead_open(a, nonce, "dmv1:", 5, sealed,
		                                  sizeof(sealed), plain, &err),
		                 DM_ECRYPTO);
		assert_non_null(strstr(err.msg, "do not authenticate"));
		for (size_t j = 0; j < sizeof(plain); j++)
			assert_int_equal(plain[j], 0);
		sealed[i] ^= 0x80;
	}
	assert_int_equal(crypto_aead_open(a, nonce, "dmv2:", 5, sealed,
	                                  sizeof(sealed), plain, NULL), DM_ECRYPTO);
	nonce[11] ^= 1;
	assert_int_equal(crypto_aead_open(a, nonce, "dmv1:", 5, sealed,
	                                  sizeof(sealed), plain, NULL), DM_ECRYPTO);
	nonce[11] ^= 1;
	assert_int_equal(crypto_aead_open(b, nonce, "dmv1:", 5, sealed,
	                                  sizeof(sealed), plain, NULL), DM_ECRYPTO);
	assert_int_equal(crypto_aead_open(a, nonce, "dmv1:", 5, sealed,
	                                  CRYPTO_AEAD_TAG_LEN - 1, plain, NULL),
	                 DM_EINVAL);
	crypto_aead_free(a);
	crypto_aead_free(b);
}

static void test_random_differs(void **state)
{
	(void)state;
	unsigned char a[32], b[32], c[12], d[12];
	assert_int_equal(crypto_random_key(a, sizeof(a), NULL), DM_OK);
	assert_int_equal(crypto_random_key(b, sizeof(b), NULL), DM_OK);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(crypto_random_nonce(c, sizeof(c), NULL), DM_OK);
	assert_int_equal(crypto_random_nonce(d, sizeof(d), NULL), DM_OK);
	assert_memory_not_equal(c, d, sizeof(c));
}

static gnutls_x509_crt_t import_cert(const char *pem, size_t len)
{
	gnutls_x509_crt_t crt;
	gnutls_datum_t d = { (unsigned char *)(uintptr_t)pem, (unsigned)len };
	assert_int_equal(gnutls_x509_crt_init(&crt), 0);
	assert_int_equal(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), 0);
	return crt;
}

static void test_selfsigned_cert(void **state)
{
	(void)state;
	static const char *const dns[] = { "unit7.example", "localhost" };
	static const char *const ips[] = { "127.0.0.1", "::1", "192.0.2.7" };
	struct crypto_cert_spec spec = {
		.common_name = "unit7.example", .dns = dns, .n_dns = 2,
		.ips = ips, .n_ips = 3,
	};
	char *cert = NULL, *key = NULL;
	size_t cert_len = 0, key_len = 0;
	struct dm_err err;
	dm_err_clear(&err);
	time_t before = time(NULL);
	if (crypto_cert_selfsigned(&spec, &cert, &cert_len, &key, &key_len, &err)
	    != DM_OK)
		fail_msg("crypto_cert_selfsigned: %s", err.msg);
	assert_int_equal(strlen(cert), cert_len);
	assert_int_equal(strlen(key), key_len);
	assert_non_null(strstr(cert, "-----BEGIN CERTIFICATE-----"));
	assert_non_null(strstr(key, "PRIVATE KEY-----"));

	gnutls_x509_crt_t crt = import_cert(cert, cert_len);
	/* ECDSA on P-256 */
	unsigned bits = 0;
	assert_int_equal(gnutls_x509_crt_get_pk_algorithm(crt, &bits),
	                 GNUTLS_PK_ECDSA);
	gnutls_ecc_curve_t curve;
	assert_int_equal(gnutls_x509_crt_get_pk_ecc_raw(crt, &curve, NULL, NULL),
	                 0);
	assert_int_equal(curve, GNUTLS_ECC_CURVE_SECP256R1);
	assert_int_equal(gnutls_x509_crt_get_signature_algorithm(crt),
	                 GNUTLS_SIGN_ECDSA_SHA256);
	/* names: CN, DNS and IP SANs */
	char dn[256];
	size_t dn_len = sizeof(dn);
	assert_int_equal(gnutls_x509_crt_get_dn_by_oid(crt,
	                 GNUTLS_OID_X520_COMMON_NAME, 0, 0, dn, &dn_len), 0);
	assert_string_equal(dn, "unit7.example");
	assert_true(gnutls_x509_crt_check_hostname2(crt, "unit7.example", 0));
	assert_true(gnutls_x509_crt_check_hostname2(crt, "localhost", 0));
	assert_true(gnutls_x509_crt_check_hostname2(crt, "127.0.0.1", 0));
	assert_true(gnutls_x509_crt_check_hostname2(crt, "::1", 0));
	assert_true(gnutls_x509_crt_check_hostname2(crt, "192.0.2.7", 0));
	assert_false(gnutls_x509_crt_check_hostname2(crt, "192.0.2.8", 0));
	assert_false(gnutls_x509_crt_check_hostname2(crt, "other.example", 0));
	/* not a CA, a TLS server key, validity */
	unsigned ca = 9;
	assert_int_equal(gnutls_x509_crt_get_basic_constraints(crt, NULL, &ca,
	                                                        NULL), 0);
	assert_int_equal(ca, 0);
	unsigned usage = 0;
	assert_true(gnutls_x509_crt_get_key_usage(crt, &usage, NULL) >= 0);
	assert_true(usage & GNUTLS_KEY_DIGITAL_SIGNATURE);
	char oid[64];
	size_t oid_len = sizeof(oid);
	assert_int_equal(gnutls_x509_crt_get_key_purpose_oid(crt, 0, oid,
	                                                     &oid_len, NULL), 0);
	assert_string_equal(oid, GNUTLS_KP_TLS_WWW_SERVER);
	assert_true(gnutls_x509_crt_get_activation_time(crt) < before);
	/* 9999-12-31T23:59:59Z */
	assert_true(gnutls_x509_crt_get_expiration_time(crt) ==
	            (time_t)253402300799LL);
	/* RFC 5280 4.1.2.5: encoded as GeneralizedTime 99991231235959Z */
	gnutls_datum_t der = { NULL, 0 };
	assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der),
	                 0);
	static const char never[] = "99991231235959Z";
	assert_non_null(memmem(der.data, der.size, never, sizeof(never) - 1));
	gnutls_free(der.data);
	/* self-signed: verifies with itself as the only anchor */
	unsigned status = 99;
	assert_int_equal(gnutls_x509_crt_verify(crt, &crt, 1, 0, &status), 0);
	assert_int_equal(status, 0);
	/* the key belongs to the certificate */
	gnutls_certificate_credentials_t cred;
	assert_int_equal(gnutls_certificate_allocate_credentials(&cred), 0);
	gnutls_datum_t cd = { (unsigned char *)cert, (unsigned)cert_len };
	gnutls_datum_t kd = { (unsigned char *)key, (unsigned)key_len };
	assert_true(gnutls_certificate_set_x509_key_mem2(cred, &cd, &kd,
	            GNUTLS_X509_FMT_PEM, NULL, 0) >= 0);
	gnutls_certificate_free_credentials(cred);
	/* the fingerprint is the SHA-256 of the DER, "ab:cd:..." */
	unsigned char fp[32];
	size_t fp_len = sizeof(fp);
	assert_int_equal(gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256,
	                                                 fp, &fp_len), 0);
	char want[CRYPTO_FINGERPRINT_LEN], got[CRYPTO_FINGERPRINT_LEN];
	text_hex(fp, sizeof(fp), want, sizeof(want), false, ':');
	assert_int_equal(crypto_cert_fingerprint(cert, cert_len, got, &err), DM_OK);
	assert_string_equal(got, want);
	assert_int_equal(strlen(got), 95);
	gnutls_x509_crt_deinit(crt);

	/* a second certificate is another key and another serial */
	char *cert2 = NULL, *key2 = NULL;
	size_t cert2_len, key2_len;
	assert_int_equal(crypto_cert_selfsigned(&spec, &cert2, &cert2_len, &key2,
	                                        &key2_len, &err), DM_OK);
	char got2[CRYPTO_FINGERPRINT_LEN];
	assert_int_equal(crypto_cert_fingerprint(cert2, cert2_len, got2, &err),
	                 DM_OK);
	assert_string_not_equal(got, got2);
	assert_string_not_equal(key, key2);
	free(cert);
	free(cert2);
	explicit_bzero(key, key_len);
	explicit_bzero(key2, key2_len);
	free(key);
	free(key2);
}

static void test_selfsigned_bad_ip(void **state)
{
	(void)state;
	static const char *const ips[] = { "127.0.0.1", "not-an-ip" };
	struct crypto_cert_spec spec = { .ips = ips, .n_ips = 2 };
	char *cert = (char *)0x1, *key = (char *)0x1;
	size_t cl = 1, kl = 1;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(crypto_cert_selfsigned(&spec, &cert, &cl, &key, &kl, &err),
	                 DM_EINVAL);
	assert_null(cert);
	assert_null(key);
	assert_int_equal(cl, 0);
	assert_int_equal(kl, 0);
	assert_non_null(strstr(err.msg, "'not-an-ip'"));

	/* no names at all: CN "devmail" */
	struct crypto_cert_spec bare = { 0 };
	assert_int_equal(crypto_cert_selfsigned(&bare, &cert, &cl, &key, &kl, &err),
	                 DM_OK);
	gnutls_x509_crt_t crt = import_cert(cert, cl);
	char dn[64];
	size_t dn_len = sizeof(dn);
	assert_int_equal(gnutls_x509_crt_get_dn_by_oid(crt,
	                 GNUTLS_OID_X520_COMMON_NAME, 0, 0, dn, &dn_len), 0);
	assert_string_equal(dn, "devmail");
	gnutls_x509_crt_deinit(crt);
	free(cert);
	explicit_bzero(key, kl);
	free(key);
}

static void test_fingerprint_refuses_junk(void **state)
{
	(void)state;
	char out[CRYPTO_FINGERPRINT_LEN] = "x";
	struct dm_err err;
	dm_err_clear(&err);
	static const char junk[] = "-----BEGIN CERTIFICATE-----\nAAAA\n"
	                           "-----END CERTIFICATE-----\n";
	assert_int_equal(crypto_cert_fingerprint(junk, sizeof(junk) - 1, out,
	                                         &err), DM_EINVAL);
	assert_string_equal(out, "");
	assert_non_null(strstr(err.msg, "no certificate"));
	assert_int_equal(crypto_cert_fingerprint("", 0, out, NULL), DM_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_aead_vectors),
		cmocka_unit_test(test_aead_tamper),
		cmocka_unit_test(test_random_differs),
		cmocka_unit_test(test_selfsigned_cert),
		cmocka_unit_test(test_selfsigned_bad_ip),
		cmocka_unit_test(test_fingerprint_refuses_junk),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
