/* test_base64.c - RFC 4648 base64: section 10 vectors, binary round trips,
 * and each way the decoder must refuse input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/base64.h"

struct b64_vector {
	const char *plain;
	const char *encoded;
};

/* RFC 4648 section 10, "Test Vectors" (BASE64 lines). */
static const struct b64_vector rfc4648_vectors[] = {
	{ "", "" },
	{ "f", "Zg==" },
	{ "fo", "Zm8=" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" },
	{ "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

static void test_rfc4648_encode(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rfc4648_vectors) / sizeof(rfc4648_vectors[0]); i++) {
		const struct b64_vector *v = &rfc4648_vectors[i];
		char out[32];
		memset(out, 'X', sizeof(out));
		size_t n = base64_encode(v->plain, strlen(v->plain), out);
		assert_int_equal(n, strlen(v->encoded));
		assert_int_equal(base64_encoded_len(strlen(v->plain)), n);
		assert_string_equal(out, v->encoded);
	}
}

static void test_rfc4648_decode(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rfc4648_vectors) / sizeof(rfc4648_vectors[0]); i++) {
		const struct b64_vector *v = &rfc4648_vectors[i];
		unsigned char out[32];
		size_t n = 99;
		struct dm_err err;
		dm_err_clear(&err);
		assert_int_equal(base64_decode(v->encoded, strlen(v->encoded), out,
		                               sizeof(out), &n, &err), DM_OK);
		assert_int_equal(n, strlen(v->plain));
		assert_memory_equal(out, v->plain, n);
		assert_string_equal(err.msg, "");
	}
}

/* Every byte value at every position of a quantum survives a round trip. */
static void test_binary_round_trip(void **state)
{
	(void)state;
	unsigned char in[256 + 2], back[sizeof(in)];
	char enc[(sizeof(in) + 2) / 3 * 4 + 1];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(255 - i % 256);
	for (size_t len = 0; len <= sizeof(in); len++) {
		size_t n = base64_encode(in, len, enc);
		assert_int_equal(n, base64_encoded_len(len));
		assert_int_equal(n % 4, 0);
		size_t m = 0;
		assert_int_equal(base64_decode(enc, n, back, len, &m, NULL), DM_OK);
		assert_int_equal(m, len);
		assert_memory_equal(back, in, len);
	}
}

static void test_whitespace_skipped(void **state)
{
	(void)state;
	static const char folded[] = "Zm9v\r\nYmFy\r\n Zm8 =\t";
	unsigned char out[16];
	size_t n = 0;
	assert_int_equal(base64_decode(folded, strlen(folded), out, sizeof(out),
	                               &n, NULL), DM_OK);
	assert_int_equal(n, 8);
	assert_memory_equal(out, "foobarfo", 8);
}

struct b64_bad {
	const char *input;
	size_t len;             /* 0: strlen(input) */
	enum dm_status status;
	const char *msg_part;   /* substring the diagnosis must contain */
};

static const struct b64_bad bad_inputs[] = {
	/* characters outside the alphabet (RFC 4648 section 3.3) */
	{ "Zm9v!mFy", 0, DM_EINVAL, "invalid character 0x21" },
	{ "Zm9v-mFy", 0, DM_EINVAL, "invalid character 0x2d" },   /* base64url */
	{ "Zm9v_mFy", 0, DM_EINVAL, "invalid character 0x5f" },
	{ "Zm9\x80", 0, DM_EINVAL, "invalid character 0x80" },
	{ "Zm\0v", 4, DM_EINVAL, "invalid character 0x00" },
	/* padding in the wrong place or of the wrong amount */
	{ "=Zm9", 0, DM_EINVAL, "misplaced padding" },
	{ "Z===", 0, DM_EINVAL, "misplaced padding" },
	{ "Zm=v", 0, DM_EINVAL, "misplaced padding" },
	{ "Zg==Zm9v", 0, DM_EINVAL, "data after padding" },
	{ "Zm8=Zg==", 0, DM_EINVAL, "data after padding" },
	{ "Zg===", 0, DM_EINVAL, "data after padding" },
	{ "Zh==", 0, DM_EINVAL, "non-zero bits" },     /* canonical is Zg== */
	{ "Zm9=", 0, DM_EINVAL, "non-zero bits" },     /* canonical is Zm8= */
	/* truncated input: padding required */
	{ "Zg", 0, DM_EINVAL, "truncated" },
	{ "Zm8", 0, DM_EINVAL, "truncated" },
	{ "Zm9vY", 0, DM_EINVAL, "truncated" },
	{ "Zg=", 0, DM_EINVAL, "truncated" },
};

static void test_bad_input(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_inputs) / sizeof(bad_inputs[0]); i++) {
		const struct b64_bad *b = &bad_inputs[i];
		size_t len = b->len ? b->len : strlen(b->input);
		unsigned char out[32];
		size_t n = 77;
		struct dm_err err;
		dm_err_clear(&err);
		enum dm_status st = base64_decode(b->input, len, out, sizeof(out), &n, &err);
		if (st != b->status || strstr(err.msg, b->msg_part) == NULL)
			fail_msg("input #%zu: status %d msg '%s', want %d '%s'",
			         i, st, err.msg, b->status, b->msg_part);
		assert_int_equal(n, 0);
	}
}

static void test_cap_too_small(void **state)
{
	(void)state;
	static const char enc[] = "Zm9vYmFy";   /* "foobar" */
	unsigned char out[8];
	size_t n = 5;
	struct dm_err err;

	for (size_t cap = 0; cap < 6; cap++) {
		dm_err_clear(&err);
		assert_int_equal(base64_decode(enc, strlen(enc), out, cap, &n, &err),
		                 DM_ENOMEM);
		assert_non_null(strstr(err.msg, "exceeds"));
		assert_int_equal(n, 0);
	}
	assert_int_equal(base64_decode(enc, strlen(enc), out, 6, &n, NULL), DM_OK);
	assert_int_equal(n, 6);
	assert_memory_equal(out, "foobar", 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_encode),
		cmocka_unit_test(test_rfc4648_decode),
		cmocka_unit_test(test_binary_round_trip),
		cmocka_unit_test(test_whitespace_skipped),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_cap_too_small),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
