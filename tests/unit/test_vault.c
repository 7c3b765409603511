/* test_vault.c - sealed secrets: round trips, nonce freshness, tampering at
 * every bit, truncation, wrong key, key file mode/size checks, and several
 * processes racing to create the device key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/base64.h"
#include "core/vault.h"
#include "testroot.h"

#define NONCE_LEN 12
#define TAG_LEN 16

struct vault_fixture {
	char root[256];
	char root2[256];
	char keypath[300];
};

static int setup(void **state)
{
	struct vault_fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	assert_non_null(testroot_make("vault", f->root, sizeof(f->root)));
	assert_non_null(testroot_make("vault", f->root2, sizeof(f->root2)));
	snprintf(f->keypath, sizeof(f->keypath), "%s/vault.key", f->root);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct vault_fixture *f = *state;
	assert_int_equal(testroot_remove(f->root), 0);
	assert_int_equal(testroot_remove(f->root2), 0);
	free(f);
	return 0;
}

/* Seals then unseals and checks the bytes, the length and the NUL. */
static void vault_round_trip(const char *root, const void *plain, size_t len)
{
	struct dm_err err;
	char *sealed = NULL, *back = NULL;
	size_t back_len = 99;

	dm_err_clear(&err);
	assert_int_equal(vault_seal(root, plain, len, &sealed, &err), DM_OK);
	assert_non_null(sealed);
	assert_string_equal(err.msg, "");
	assert_int_equal(strncmp(sealed, VAULT_PREFIX, strlen(VAULT_PREFIX)), 0);
	assert_int_equal(strlen(sealed), vault_sealed_len(len));
	assert_true(vault_is_sealed(sealed));
	assert_int_equal(vault_unseal(root, sealed, &back, &back_len, &err), DM_OK);
	assert_non_null(back);
	assert_int_equal(back_len, len);
	assert_memory_equal(back, plain, len);
	assert_int_equal(back[len], '\0');
	vault_wipe(back, back_len);
	free(back);
	free(sealed);
}

static void test_round_trip(void **state)
{
	struct vault_fixture *f = *state;
	unsigned char kib[1024];
	static const char utf8[] = "p\xc3\xa4ssw\xc3\xb6rd \xe2\x82\xac \xf0\x9f\x98\x80";

	for (size_t i = 0; i < sizeof(kib); i++)
		kib[i] = (unsigned char)(i * 7 + (i >> 8));   /* includes NUL bytes */
	vault_round_trip(f->root, "", 0);
	vault_round_trip(f->root, "hunter2", 7);
	vault_round_trip(f->root, utf8, strlen(utf8));
	vault_round_trip(f->root, kib, sizeof(kib));

	/* The first seal created the key: 32 bytes, mode 0600. */
	struct stat st;
	assert_int_equal(stat(f->keypath, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, 32);
}

/* Decodes the body of a sealed value (test side, independent check). */
static size_t vault_test_decode(const char *sealed, unsigned char *raw, size_t cap)
{
	size_t n = 0;
	const char *body = sealed + strlen(VAULT_PREFIX);
	assert_int_equal(base64_decode(body, strlen(body), raw, cap, &n, NULL), DM_OK);
	return n;
}

static char *vault_test_encode(const unsigned char *raw, size_t n)
{
	char *s = malloc(strlen(VAULT_PREFIX) + base64_encoded_len(n) + 1);
	assert_non_null(s);
	strcpy(s, VAULT_PREFIX);
	base64_encode(raw, n, s + strlen(VAULT_PREFIX));
	return s;
}

static void test_nonce_unique(void **state)
{
	struct vault_fixture *f = *state;
	char *a = NULL, *b = NULL;
	unsigned char ra[64], rb[64];

	assert_int_equal(vault_seal(f->root, "same text", 9, &a, NULL), DM_OK);
	assert_int_equal(vault_seal(f->root, "same text", 9, &b, NULL), DM_OK);
	assert_string_not_equal(a, b);
	assert_int_equal(vault_test_decode(a, ra, sizeof(ra)), NONCE_LEN + 9 + TAG_LEN);
	assert_int_equal(vault_test_decode(b, rb, sizeof(rb)), NONCE_LEN + 9 + TAG_LEN);
	assert_memory_not_equal(ra, rb, NONCE_LEN);
	free(a);
	free(b);
}

static void test_sealed_hides_plaintext(void **state)
{
	struct vault_fixture *f = *state;
	static const char secret[] = "CorrectHorseBatteryStaple-0123456789";
	char *s = NULL;
	unsigned char raw[128];

	assert_int_equal(vault_seal(f->root, secret, strlen(secret), &s, NULL), DM_OK);
	assert_null(strstr(s, secret));
	assert_null(strstr(s, "CorrectHorse"));
	size_t n = vault_test_decode(s, raw, sizeof(raw));
	assert_null(memmem(raw, n, secret, strlen(secret)));
	assert_null(memmem(raw, n, "Correct", 7));
	free(s);
}

/* Flipping any single bit of nonce, ciphertext or tag must be detected, and
 * the failure must leave no output behind. */
static void test_tamper_every_bit(void **state)
{
	struct vault_fixture *f = *state;
	char *s = NULL;
	unsigned char raw[64];
	size_t checked = 0;

	assert_int_equal(vault_seal(f->root, "tamper me", 9, &s, NULL), DM_OK);
	size_t n = vault_test_decode(s, raw, sizeof(raw));
	assert_int_equal(n, NONCE_LEN + 9 + TAG_LEN);
	for (size_t i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit++) {
			raw[i] ^= (unsigned char)(1u << bit);
			char *bad = vault_test_encode(raw, n);
			char *out = (char *)0x1;
			size_t out_len = 1234;
			struct dm_err err;
			dm_err_clear(&err);
			enum dm_status st = vault_unseal(f->root, bad, &out, &out_len, &err);
			if (st != DM_ECRYPTO)
				fail_msg("byte %zu bit %d: status %d (%s)", i, bit, st, err.msg);
			assert_null(out);
			assert_int_equal(out_len, 0);
			assert_non_null(strstr(err.msg, "does not authenticate"));
			free(bad);
			raw[i] ^= (unsigned char)(1u << bit);
			checked++;
		}
	}
	assert_int_equal(checked, n * 8);
	/* Restored value still opens: the flips, not the harness, caused the failures. */
	char *good = vault_test_encode(raw, n), *out = NULL;
	size_t out_len = 0;
	assert_int_equal(vault_unseal(f->root, good, &out, &out_len, NULL), DM_OK);
	assert_memory_equal(out, "tamper me", 9);
	vault_wipe(out, out_len);
	free(out);
	free(good);
	free(s);
}

/* Every proper prefix of a sealed value fails (shape or authentication). */
static void test_truncated(void **state)
{
	struct vault_fixture *f = *state;
	char *s = NULL;

	assert_int_equal(vault_seal(f->root, "truncate me", 11, &s, NULL), DM_OK);
	size_t len = strlen(s);
	for (size_t cut = 0; cut < len; cut++) {
		char *t = strndup(s, cut);
		char *out = (char *)0x1;
		size_t out_len = 1;
		struct dm_err err;
		assert_non_null(t);
		dm_err_clear(&err);
		enum dm_status st = vault_unseal(f->root, t, &out, &out_len, &err);
		if (st != DM_EINVAL && st != DM_ECRYPTO)
			fail_msg("cut at %zu: status %d", cut, st);
		assert_null(out);
		assert_int_equal(out_len, 0);
		assert_true(strlen(err.msg) > 0);
		if (st == DM_EINVAL)
			assert_false(vault_is_sealed(t));
		free(t);
	}
	free(s);
}

static void test_garbage(void **state)
{
	struct vault_fixture *f = *state;
	static const struct { const char *in; const char *msg; } cases[] = {
		{ "", "must start with 'dmv1:'" },
		{ "hunter2", "must start with 'dmv1:'" },
		{ "DMV1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "must start with" },
		{ "dmv2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "must start with" },
		{ "dmv1:", "truncated" },
		{ "dmv1:Zm9vYmFy", "truncated" },
		{ "dmv1:!!!!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "invalid character" },
		{ "dmv1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "truncated input" },
	};
	/* A key exists, so failures are about the value, not the key. */
	assert_int_equal(vault_key_ensure(f->root, NULL), DM_OK);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = (char *)0x1;
		size_t out_len = 1;
		struct dm_err err;
		dm_err_clear(&err);
		enum dm_status st = vault_unseal(f->root, cases[i].in, &out, &out_len, &err);
		if (st != DM_EINVAL || !strstr(err.msg, cases[i].msg))
			fail_msg("'%s': status %d msg '%s'", cases[i].in, st, err.msg);
		assert_null(out);
		assert_false(vault_is_sealed(cases[i].in));
	}
	assert_false(vault_is_sealed(NULL));
}

static void test_wrong_key(void **state)
{
	struct vault_fixture *f = *state;
	char *s = NULL, *out = (char *)0x1;
	size_t out_len = 1;
	struct dm_err err;

	assert_int_equal(vault_seal(f->root, "unit one", 8, &s, NULL), DM_OK);
	assert_int_equal(vault_key_ensure(f->root2, NULL), DM_OK);
	dm_err_clear(&err);
	assert_int_equal(vault_unseal(f->root2, s, &out, &out_len, &err), DM_ECRYPTO);
	assert_null(out);
	assert_int_equal(out_len, 0);
	assert_non_null(strstr(err.msg, "another unit's key"));
	assert_non_null(strstr(err.msg, f->root2));
	free(s);
}

static void test_missing_key_on_unseal(void **state)
{
	struct vault_fixture *f = *state;
	char *s = NULL, *out = (char *)0x1;
	size_t out_len = 1;
	struct dm_err err;
	struct stat st;

	/* A well-formed value sealed elsewhere; this root has no key at all. */
	assert_int_equal(vault_seal(f->root2, "elsewhere", 9, &s, NULL), DM_OK);
	dm_err_clear(&err);
	assert_int_equal(vault_unseal(f->root, s, &out, &out_len, &err), DM_ENOTFOUND);
	assert_null(out);
	assert_non_null(strstr(err.msg, f->keypath));
	/* Unsealing never creates a key. */
	assert_int_equal(stat(f->keypath, &st), -1);
	assert_int_equal(errno, ENOENT);
	free(s);
}

static void test_key_mode(void **state)
{
	struct vault_fixture *f = *state;
	static const mode_t refused[] = { 0644, 0640, 0604, 0660, 0601, 0610 };
	char *s = NULL, *out = NULL;
	size_t out_len = 0;
	struct dm_err err;

	assert_int_equal(vault_seal(f->root, "mode test", 9, &s, NULL), DM_OK);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		char want[16];
		char *s2 = NULL;
		assert_int_equal(chmod(f->keypath, refused[i]), 0);
		snprintf(want, sizeof(want), "mode %04o", (unsigned)refused[i]);

		dm_err_clear(&err);
		assert_int_equal(vault_seal(f->root, "x", 1, &s2, &err), DM_EPERM);
		assert_null(s2);
		assert_non_null(strstr(err.msg, f->keypath));
		assert_non_null(strstr(err.msg, want));
		assert_non_null(strstr(err.msg, "chmod 600"));

		dm_err_clear(&err);
		assert_int_equal(vault_unseal(f->root, s, &out, &out_len, &err), DM_EPERM);
		assert_null(out);
		assert_non_null(strstr(err.msg, want));
		assert_non_null(strstr(err.msg, "chmod 600"));
	}
	/* The fix the message names works, and the key was not replaced. */
	assert_int_equal(chmod(f->keypath, 0600), 0);
	assert_int_equal(vault_unseal(f->root, s, &out, &out_len, NULL), DM_OK);
	assert_memory_equal(out, "mode test", 9);
	vault_wipe(out, out_len);
	free(out);
	/* Owner-only variants are fine too. */
	assert_int_equal(chmod(f->keypath, 0400), 0);
	assert_int_equal(vault_unseal(f->root, s, &out, &out_len, NULL), DM_OK);
	vault_wipe(out, out_len);
	free(out);
	free(s);
}

static void vault_write_file(const char *path, const void *data, size_t n, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void test_key_wrong_size(void **state)
{
	struct vault_fixture *f = *state;
	static const size_t sizes[] = { 0, 1, 31, 33, 64 };
	unsigned char junk[64];
	char *s = NULL;
	struct dm_err err;

	memset(junk, 0xa5, sizeof(junk));
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char want[32];
		vault_write_file(f->keypath, junk, sizes[i], 0600);
		snprintf(want, sizeof(want), "is %zu bytes long", sizes[i]);
		dm_err_clear(&err);
		assert_int_equal(vault_seal(f->root, "x", 1, &s, &err), DM_EINVAL);
		assert_null(s);
		assert_non_null(strstr(err.msg, want));
		assert_non_null(strstr(err.msg, f->keypath));
	}
	/* A key of the right size is used as is (not regenerated). */
	vault_write_file(f->keypath, junk, 32, 0600);
	assert_int_equal(vault_seal(f->root, "x", 1, &s, NULL), DM_OK);
	unsigned char now[40];
	int fd = open(f->keypath, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, now, sizeof(now)), 32);
	close(fd);
	assert_memory_equal(now, junk, 32);
	free(s);
}

/* Several processes seal at the same moment in a root with no key.  All of
 * them must end up using one key: every sealed value opens afterwards. */
static void test_key_creation_race(void **state)
{
	struct vault_fixture *f = *state;
	enum { NPROC = 8 };
	int go[2], res[NPROC][2];
	pid_t pids[NPROC];

	assert_int_equal(pipe(go), 0);
	for (int i = 0; i < NPROC; i++) {
		assert_int_equal(pipe(res[i]), 0);
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			char c, msg[32], *s = NULL;
			close(go[1]);
			/* Wait until the parent releases everyone at once. */
			if (read(go[0], &c, 1) != 0)
				_exit(3);
			int n = snprintf(msg, sizeof(msg), "secret %d", i);
			if (vault_seal(f->root, msg, (size_t)n, &s, NULL) != DM_OK)
				_exit(4);
			size_t len = strlen(s);
			if (write(res[i][1], s, len) != (ssize_t)len)
				_exit(5);
			_exit(0);
		}
		close(res[i][1]);
	}
	close(go[0]);
	close(go[1]);   /* EOF releases the children */
	for (int i = 0; i < NPROC; i++) {
		char buf[256], want[32];
		size_t got = 0;
		ssize_t r;
		while (got < sizeof(buf) - 1 &&
		       (r = read(res[i][0], buf + got, sizeof(buf) - 1 - got)) > 0)
			got += (size_t)r;
		buf[got] = '\0';
		close(res[i][0]);
		int status;
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);

		char *out = NULL;
		size_t out_len = 0;
		struct dm_err err;
		dm_err_clear(&err);
		if (vault_unseal(f->root, buf, &out, &out_len, &err) != DM_OK)
			fail_msg("child %d's value does not open: %s", i, err.msg);
		int n = snprintf(want, sizeof(want), "secret %d", i);
		assert_int_equal(out_len, (size_t)n);
		assert_memory_equal(out, want, out_len);
		vault_wipe(out, out_len);
		free(out);
	}
	/* No temp files left behind. */
	struct stat st;
	assert_int_equal(stat(f->keypath, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s' | grep -v '^vault.key$')\"", f->root);
	assert_int_equal(system(cmd), 0);
}

static void test_wipe_and_limits(void **state)
{
	struct vault_fixture *f = *state;
	unsigned char buf[33];
	char *s = (char *)0x1;
	struct dm_err err;

	memset(buf, 0x5a, sizeof(buf));
	vault_wipe(buf, sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
	vault_wipe(NULL, 10);

	char *big = calloc(1, VAULT_PLAIN_MAX + 1);
	assert_non_null(big);
	dm_err_clear(&err);
	assert_int_equal(vault_seal(f->root, big, VAULT_PLAIN_MAX + 1, &s, &err), DM_EINVAL);
	assert_null(s);
	assert_non_null(strstr(err.msg, "longer than"));
	vault_round_trip(f->root, big, VAULT_PLAIN_MAX);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nonce_unique, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sealed_hides_plaintext, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_every_bit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_key_on_unseal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_wrong_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_creation_race, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wipe_and_limits, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
