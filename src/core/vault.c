/*
 * vault.c - sealed secrets: AES-256-GCM (core/crypto's AEAD) under a 256-bit
 * device key stored in root/vault.key.
 *
 * Sealed form: "dmv1:" base64(nonce[12] | ciphertext | tag[16]).  The
 * prefix is the format version and is passed as associated data, so a value
 * cannot be relabelled as another version without failing authentication.
 * A fresh random 96-bit nonce per seal (NIST SP 800-38D section 8.2.2) keeps
 * two seals of the same secret distinct; the number of seals per device is
 * tiny, far from the random-nonce limit.
 *
 * The key file is published atomically: written to a private temp file
 * (O_EXCL, 0600), fsynced, then link()ed to vault.key.  link() fails with
 * EEXIST when another process won the race, and that process's complete key
 * is then read instead, so every process agrees on one key and nobody can
 * read a half-written file.
 */
#include "core/vault.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base64.h"
#include "core/crypto.h"
#include "core/paths.h"

#define VAULT_KEY_LEN CRYPTO_AEAD_KEY_LEN
#define VAULT_NONCE_LEN CRYPTO_AEAD_NONCE_LEN
#define VAULT_TAG_LEN CRYPTO_AEAD_TAG_LEN
#define VAULT_KEY_FILE "vault.key"

void vault_wipe(void *p, size_t len)
{
	if (p && len)
		explicit_bzero(p, len);
}

size_t vault_sealed_len(size_t plain_len)
{
	return strlen(VAULT_PREFIX) +
	       base64_encoded_len(VAULT_NONCE_LEN + plain_len + VAULT_TAG_LEN);
}

/* Reads exactly VAULT_KEY_LEN bytes from an open key file after checking its
 * type, mode and size.  `path` is for messages only. */
static enum dm_status vault_key_read_fd(int fd, const char *path,
                                        unsigned char key[VAULT_KEY_LEN],
                                        struct dm_err *err)
{
	struct stat st;
	size_t got = 0;

	if (fstat(fd, &st) != 0)
		return dm_err_set(err, DM_EIO, "cannot stat %s: %s", path,
		                  strerror(errno));
	if (!S_ISREG(st.st_mode))
		return dm_err_set(err, DM_EINVAL, "%s is not a regular file", path);
	if (st.st_mode & 077)
		return dm_err_set(err, DM_EPERM,
		    "%s has mode %04o: group or others may read the device key; "
		    "refusing to use it (fix: chmod 600 %s)",
		    path, (unsigned)(st.st_mode & 07777), path);
	if (st.st_size != VAULT_KEY_LEN)
		return dm_err_set(err, DM_EINVAL,
		    "%s is %lld bytes long, a device key is %d bytes; "
		    "the file is damaged (secrets sealed under it cannot be recovered)",
		    path, (long long)st.st_size, VAULT_KEY_LEN);
	while (got < VAULT_KEY_LEN) {
		ssize_t r = read(fd, key + got, VAULT_KEY_LEN - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return dm_err_set(err, DM_EIO, "cannot read %s: %s", path,
			                  strerror(errno));
		if (r == 0)
			return dm_err_set(err, DM_EINVAL,
			    "%s shrank while being read", path);
		got += (size_t)r;
	}
	return DM_OK;
}

static enum dm_status vault_key_open_read(const char *path,
                                          unsigned char key[VAULT_KEY_LEN],
                                          struct dm_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return dm_err_set(err, DM_ENOTFOUND,
			    "no device key %s: nothing has been sealed on this unit "
			    "(set the password again)", path);
		return dm_err_set(err, DM_EIO, "cannot open %s: %s", path,
		                  strerror(errno));
	}
	enum dm_status st = vault_key_read_fd(fd, path, key, err);
	close(fd);
	if (st)
		vault_wipe(key, VAULT_KEY_LEN);
	return st;
}

/* Creates the key file from the RNG; see the top comment for the race.
 * On DM_OK `key` holds the key now in the file (ours or the winner's). */
static enum dm_status vault_key_create(const char *root, const char *path,
                                       unsigned char key[VAULT_KEY_LEN],
                                       struct dm_err *err)
{
	char tmp[DM_PATH_MAX];
	enum dm_status st;
	int fd, n;

	st = paths_mkdirs(root, 0700, err);
	if (st)
		return st;
	if (crypto_random_key(key, VAULT_KEY_LEN, NULL) != DM_OK)
		return dm_err_set(err, DM_ECRYPTO,
		    "the system random generator failed; no key created");
	n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		vault_wipe(key, VAULT_KEY_LEN);
		return dm_err_set(err, DM_EINVAL, "path too long: %s", path);
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == EEXIST) {
		/* Left by a crashed process that had our pid; it was never linked. */
		unlink(tmp);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	}
	if (fd < 0) {
		int e = errno;
		vault_wipe(key, VAULT_KEY_LEN);
		return dm_err_set(err, DM_EIO, "cannot create %s: %s", tmp, strerror(e));
	}
	int we = paths_write_all(fd, key, VAULT_KEY_LEN);
	if (we != 0) {
		close(fd);
		unlink(tmp);
		vault_wipe(key, VAULT_KEY_LEN);
		return dm_err_set(err, DM_EIO, "cannot write %s: %s", tmp,
		                  strerror(we));
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		int e = errno;
		unlink(tmp);
		vault_wipe(key, VAULT_KEY_LEN);
		return dm_err_set(err, DM_EIO, "cannot sync %s: %s", tmp, strerror(e));
	}
	if (link(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		vault_wipe(key, VAULT_KEY_LEN);
		if (e != EEXIST)
			return dm_err_set(err, DM_EIO, "cannot create %s: %s", path,
			                  strerror(e));
		/* Lost the race: use the key the winner published. */
		return vault_key_open_read(path, key, err);
	}
	unlink(tmp);
	return paths_fsync_dir(root, err);
}

/* Loads the device key into key[]; creates it first when `create`. */
static enum dm_status vault_key_load(const char *root, int create,
                                     unsigned char key[VAULT_KEY_LEN],
                                     struct dm_err *err)
{
	char path[DM_PATH_MAX];
	struct dm_err probe;
	enum dm_status st;

	st = paths_join(root, VAULT_KEY_FILE, path, sizeof(path), err);
	if (st)
		return st;
	dm_err_clear(&probe);
	st = vault_key_open_read(path, key, &probe);
	if (st == DM_ENOTFOUND && create)
		return vault_key_create(root, path, key, err);
	if (st)
		return dm_err_set(err, st, "%s", probe.msg);
	return DM_OK;
}

enum dm_status vault_key_ensure(const char *root, struct dm_err *err)
{
	unsigned char key[VAULT_KEY_LEN];
	enum dm_status st = vault_key_load(root, 1, key, err);
	vault_wipe(key, sizeof(key));
	return st;
}

enum dm_status vault_seal(const char *root, const void *plain, size_t len,
                          char **out, struct dm_err *err)
{
	const size_t prefix_len = strlen(VAULT_PREFIX);
	unsigned char key[VAULT_KEY_LEN];
	struct crypto_aead *h = NULL;
	unsigned char *raw = NULL;
	char *text = NULL;
	enum dm_status st;

	*out = NULL;
	if (len > VAULT_PLAIN_MAX)
		return dm_err_set(err, DM_EINVAL,
		    "secret of %zu bytes is longer than the vault allows (%d)",
		    len, VAULT_PLAIN_MAX);
	st = vault_key_load(root, 1, key, err);
	if (st)
		return st;

	size_t raw_len = VAULT_NONCE_LEN + len + VAULT_TAG_LEN;
	raw = malloc(raw_len);
	text = malloc(prefix_len + base64_encoded_len(raw_len) + 1);
	if (!raw || !text) {
		st = dm_err_set(err, DM_ENOMEM, "vault: out of memory sealing %zu bytes", len);
		goto done;
	}
	if ((st = crypto_random_nonce(raw, VAULT_NONCE_LEN, err)) != DM_OK)
		goto done;
	if ((st = crypto_aead_new(key, &h, err)) != DM_OK)
		goto done;
	st = crypto_aead_seal(h, raw, VAULT_PREFIX, prefix_len, plain, len,
	                      raw + VAULT_NONCE_LEN, err);
	if (st != DM_OK)
		goto done;
	memcpy(text, VAULT_PREFIX, prefix_len);
	base64_encode(raw, raw_len, text + prefix_len);
	*out = text;
	text = NULL;
	st = DM_OK;
done:
	crypto_aead_free(h);
	vault_wipe(key, sizeof(key));
	free(raw);
	free(text);
	return st;
}

/* Decodes the base64 body of a sealed value into a new buffer.
 * DM_EINVAL when `s` does not have the sealed shape. */
static enum dm_status vault_decode(const char *s, unsigned char **raw,
                                   size_t *raw_len, struct dm_err *err)
{
	const size_t prefix_len = strlen(VAULT_PREFIX);
	enum dm_status st;

	*raw = NULL;
	*raw_len = 0;
	if (!s || strncmp(s, VAULT_PREFIX, prefix_len) != 0)
		return dm_err_set(err, DM_EINVAL,
		    "not a sealed value (it must start with '%s')", VAULT_PREFIX);
	const char *body = s + prefix_len;
	size_t blen = strlen(body);
	if (blen > base64_encoded_len(VAULT_NONCE_LEN + VAULT_PLAIN_MAX + VAULT_TAG_LEN))
		return dm_err_set(err, DM_EINVAL, "sealed value too long (%zu characters)",
		                  blen);
	size_t cap = blen / 4 * 3 + 3;
	unsigned char *buf = malloc(cap);
	if (!buf)
		return dm_err_set(err, DM_ENOMEM, "vault: out of memory");
	struct dm_err why;
	dm_err_clear(&why);
	st = base64_decode(body, blen, buf, cap, raw_len, &why);
	if (st) {
		free(buf);
		return dm_err_set(err, DM_EINVAL, "sealed value is damaged: %s", why.msg);
	}
	if (*raw_len < VAULT_NONCE_LEN + VAULT_TAG_LEN) {
		free(buf);
		return dm_err_set(err, DM_EINVAL,
		    "sealed value is truncated (%zu bytes, at least %d needed)",
		    *raw_len, VAULT_NONCE_LEN + VAULT_TAG_LEN);
	}
	*raw = buf;
	return DM_OK;
}

bool vault_is_sealed(const char *s)
{
	unsigned char *raw;
	size_t raw_len;

	if (vault_decode(s, &raw, &raw_len, NULL) != DM_OK)
		return false;
	free(raw);
	return true;
}

enum dm_status vault_unseal(const char *root, const char *sealed,
                            char **out, size_t *out_len, struct dm_err *err)
{
	unsigned char key[VAULT_KEY_LEN];
	struct crypto_aead *h = NULL;
	unsigned char *raw = NULL;
	char *plain = NULL;
	size_t raw_len, plain_cap;
	enum dm_status st;

	*out = NULL;
	*out_len = 0;
	st = vault_decode(sealed, &raw, &raw_len, err);
	if (st)
		return st;
	st = vault_key_load(root, 0, key, err);
	if (st) {
		free(raw);
		return st;
	}
	plain_cap = raw_len - VAULT_NONCE_LEN - VAULT_TAG_LEN;
	plain = malloc(plain_cap + 1);
	if (!plain) {
		st = dm_err_set(err, DM_ENOMEM, "vault: out of memory");
		goto done;
	}
	if ((st = crypto_aead_new(key, &h, err)) != DM_OK)
		goto done;
	/* The vault words the failure for its user: crypto's own message
	 * knows nothing of devices and passwords. */
	if (crypto_aead_open(h, raw, VAULT_PREFIX, strlen(VAULT_PREFIX),
	                     raw + VAULT_NONCE_LEN, raw_len - VAULT_NONCE_LEN,
	                     (unsigned char *)plain, NULL) != DM_OK) {
		st = dm_err_set(err, DM_ECRYPTO,
		    "sealed value does not authenticate under %s/%s: it was altered "
		    "or sealed with another unit's key (set the password again)",
		    root, VAULT_KEY_FILE);
		goto done;
	}
	plain[plain_cap] = '\0';
	*out = plain;
	*out_len = plain_cap;
	plain = NULL;
	st = DM_OK;
done:
	crypto_aead_free(h);
	vault_wipe(key, sizeof(key));
	if (plain) {
		vault_wipe(plain, plain_cap + 1);
		free(plain);
	}
	free(raw);
	return st;
}
