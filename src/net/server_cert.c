/*
 * server_cert.c - a server's certificate and key: the operator's files or
 * the unit's own, generated once under tls/ (see server_cert.h).
 *
 * Why flock() and not link() as the vault key does: here two files must
 * agree (a key and the certificate for it).  Publishing them one by one
 * with link() leaves a window in which a second process sees the winner's
 * key but not yet its certificate.  One lock around "look, generate if
 * needed, write both" closes it; the kernel drops the lock of a process
 * that dies.  Each file still goes to disk whole (temp file, fsync,
 * rename), key first, so a crash leaves at worst a key without a
 * certificate, which the next start replaces.
 */
#include "net/server_cert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/crypto.h"
#include "core/netinfo.h"
#include "core/paths.h"
#include "net/transport_ops.h"

#define SERVER_CERT_LOCK_FILE "tls/.lock"
#define SERVER_CERT_LOCK_STEP_MS 10
#define SERVER_CERT_MAX_NAMES (NETINFO_MAX_ADDRS + 2)

struct server_cert {
	atomic_int refs;
	bool created;
	struct transport_tls_creds *creds;
	char fingerprint[CRYPTO_FINGERPRINT_LEN];
};

struct server_cert *server_cert_ref(struct server_cert *c)
{
	atomic_fetch_add(&c->refs, 1);
	return c;
}

struct transport_tls_creds *server_cert_creds(const struct server_cert *c)
{
	return c->creds;
}

const char *server_cert_fingerprint(const struct server_cert *c)
{
	return c != NULL ? c->fingerprint : "";
}

bool server_cert_created(const struct server_cert *c)
{
	return c != NULL && c->created;
}

void server_cert_free(struct server_cert *c)
{
	if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	transport_tls_creds_free(c->creds);
	free(c);
}

static void server_cert_wipe_free(char *p, size_t len)
{
	if (p == NULL)
		return;
	explicit_bzero(p, len);
	free(p);
}

/* Reads a whole PEM file (at most SERVER_CERT_FILE_MAX bytes) into a
 * malloc'd NUL-terminated buffer.  `secret`: the file is a private key of
 * ours, so it is opened without following links and must be a regular file
 * that only its owner may read. */
static enum dm_status server_cert_slurp(const char *path, bool secret,
                                        char **out, size_t *len,
                                        struct dm_err *err)
{
	*out = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | (secret ? O_NOFOLLOW : 0));
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT)
			return dm_err_set(err, DM_ENOINPUT, "%s: no such file", path);
		return dm_err_set(err, DM_EIO, "cannot open %s: %s", path,
		                  strerror(e));
	}
	struct stat st;
	enum dm_status rc = DM_OK;
	if (fstat(fd, &st) != 0)
		rc = dm_err_set(err, DM_EIO, "cannot stat %s: %s", path,
		                strerror(errno));
	else if (!S_ISREG(st.st_mode))
		rc = dm_err_set(err, DM_ECONFIG, "%s is not a regular file", path);
	else if (secret && (st.st_mode & 077) != 0)
		rc = dm_err_set(err, DM_EPERM,
		    "%s has mode %04o: group or others may read the server's "
		    "private key; refusing to use it (fix: chmod 600 %s)",
		    path, (unsigned)(st.st_mode & 07777), path);
	else if (st.st_size > SERVER_CERT_FILE_MAX)
		rc = dm_err_set(err, DM_ECONFIG, "%s is %lld bytes long; at most "
		                "%d are read", path, (long long)st.st_size,
		                SERVER_CERT_FILE_MAX);
	char *buf = rc == DM_OK ? malloc((size_t)st.st_size + 1) : NULL;
	if (rc == DM_OK && buf == NULL)
		rc = dm_err_set(err, DM_ENOMEM, "%s: out of memory", path);
	size_t have = 0;
	while (rc == DM_OK && have < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + have, (size_t)st.st_size - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = dm_err_set(err, DM_EIO, "cannot read %s: %s", path,
			                strerror(errno));
		else if (n == 0)
			rc = dm_err_set(err, DM_EIO, "%s shrank while being read",
			                path);
		else
			have += (size_t)n;
	}
	close(fd);
	if (rc != DM_OK) {
		server_cert_wipe_free(buf, have);
		return rc;
	}
	buf[have] = '\0';
	*out = buf;
	*len = have;
	return DM_OK;
}

/* Builds the handle from PEM texts (the key text is only read). */
static enum dm_status server_cert_make(const char *cert, size_t cert_len,
                                       const char *key, size_t key_len,
                                       const char *what,
                                       struct server_cert **out,
                                       struct dm_err *err)
{
	struct server_cert *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return dm_err_set(err, DM_ENOMEM, "server certificate: out of memory");
	atomic_init(&c->refs, 1);
	struct dm_err why;
	dm_err_clear(&why);
	enum dm_status st = crypto_cert_fingerprint(cert, cert_len,
	                                            c->fingerprint, &why);
	if (st != DM_OK) {
		free(c);
		return dm_err_set(err, st == DM_EINVAL ? DM_ECONFIG : st, "%s: %s",
		                  what, why.msg);
	}
	st = transport_tls_creds_new(cert, cert_len, key, key_len, what,
	                             &c->creds, err);
	if (st != DM_OK) {
		free(c);
		return st;
	}
	*out = c;
	return DM_OK;
}

enum dm_status server_cert_load(const char *cert_file, const char *key_file,
                                struct server_cert **out, struct dm_err *err)
{
	char *cert = NULL, *key = NULL;
	size_t cert_len = 0, key_len = 0;
	*out = NULL;
	enum dm_status st = server_cert_slurp(cert_file, false, &cert, &cert_len,
	                                      err);
	if (st == DM_OK)
		st = server_cert_slurp(key_file, false, &key, &key_len, err);
	if (st == DM_OK)
		st = server_cert_make(cert, cert_len, key, key_len, cert_file, out,
		                      err);
	free(cert);
	server_cert_wipe_free(key, key_len);
	return st;
}

/* Takes tls/.lock (created 0600), waiting at most SERVER_CERT_LOCK_MS.
 * Returns the locked fd (close() releases it). */
static enum dm_status server_cert_lock(const char *root, int *fd_out,
                                       struct dm_err *err)
{
	char path[DM_PATH_MAX];
	enum dm_status st = paths_join(root, SERVER_CERT_LOCK_FILE, path,
	                               sizeof(path), err);
	if (st != DM_OK)
		return st;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return dm_err_set(err, DM_EIO, "cannot open %s: %s", path,
		                  strerror(errno));
	for (int waited = 0; waited <= SERVER_CERT_LOCK_MS;
	     waited += SERVER_CERT_LOCK_STEP_MS) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			*fd_out = fd;
			return DM_OK;
		}
		if (errno != EWOULDBLOCK && errno != EINTR) {
			int e = errno;
			close(fd);
			return dm_err_set(err, DM_EIO, "cannot lock %s: %s", path,
			                  strerror(e));
		}
		struct timespec ts = { 0, SERVER_CERT_LOCK_STEP_MS * 1000000L };
		nanosleep(&ts, NULL);
	}
	close(fd);
	return dm_err_set(err, DM_EBUSY, "%s: another process held the lock "
	                  "for more than %d ms", path, SERVER_CERT_LOCK_MS);
}

/* Adds name to names[] unless it is there already or the list is full. */
static void server_cert_add_name(const char **names, size_t *n,
                                 const char *name)
{
	if (name == NULL || name[0] == '\0' || *n >= SERVER_CERT_MAX_NAMES)
		return;
	for (size_t i = 0; i < *n; i++)
		if (strcmp(names[i], name) == 0)
			return;
	names[(*n)++] = name;
}

/* Generates the pair and writes key.pem (0600), then cert.pem (0644). */
static enum dm_status server_cert_generate(const char *key_path,
                                           const char *cert_path,
                                           const char *host_name,
                                           char **cert, size_t *cert_len,
                                           char **key, size_t *key_len,
                                           struct dm_err *err)
{
	struct netinfo *ni = calloc(1, sizeof(*ni));
	if (ni == NULL)
		return dm_err_set(err, DM_ENOMEM, "server certificate: out of memory");
	/* No addresses (getifaddrs failing) still gives a usable certificate
	 * for the names. */
	(void)netinfo_read(ni, NULL, NULL);
	const char *host = host_name != NULL && host_name[0] != '\0'
		? host_name : ni->hostname;
	const char *dns[2], *ips[SERVER_CERT_MAX_NAMES];
	size_t n_dns = 0, n_ips = 0;
	server_cert_add_name(dns, &n_dns, host);
	server_cert_add_name(dns, &n_dns, "localhost");
	for (size_t i = 0; i < ni->n_addrs; i++)
		if (ni->addrs[i].up)
			server_cert_add_name(ips, &n_ips, ni->addrs[i].addr);
	struct crypto_cert_spec spec = {
		.common_name = host, .dns = dns, .n_dns = n_dns,
		.ips = ips, .n_ips = n_ips,
	};
	enum dm_status st = crypto_cert_selfsigned(&spec, cert, cert_len, key,
	                                           key_len, err);
	free(ni);
	if (st != DM_OK)
		return st;
	st = paths_write_atomic(key_path, *key, *key_len, 0600, err);
	if (st == DM_OK)
		st = paths_write_atomic(cert_path, *cert, *cert_len, 0644, err);
	if (st != DM_OK) {
		free(*cert);
		server_cert_wipe_free(*key, *key_len);
		*cert = *key = NULL;
	}
	return st;
}

enum dm_status server_cert_ensure(const char *root, const char *host_name,
                                  struct server_cert **out,
                                  struct dm_err *err)
{
	char dir[DM_PATH_MAX], cert_path[DM_PATH_MAX], key_path[DM_PATH_MAX];
	char *cert = NULL, *key = NULL;
	size_t cert_len = 0, key_len = 0;
	bool created = false;
	int lock = -1;
	struct stat sb;
	*out = NULL;
	enum dm_status st = paths_join(root, SERVER_CERT_DIR, dir, sizeof(dir), err);
	if (st == DM_OK)
		st = paths_join(root, SERVER_CERT_FILE, cert_path, sizeof(cert_path),
		                err);
	if (st == DM_OK)
		st = paths_join(root, SERVER_CERT_KEY_FILE, key_path,
		                sizeof(key_path), err);
	if (st == DM_OK)
		st = paths_mkdirs(dir, 0700, err);
	if (st == DM_OK)
		st = server_cert_lock(root, &lock, err);
	if (st != DM_OK)
		return st;

	bool have_cert = lstat(cert_path, &sb) == 0;
	bool have_key = lstat(key_path, &sb) == 0;
	if (have_cert && !have_key) {
		st = dm_err_set(err, DM_ECONFIG, "%s exists but %s does not: put "
		                "its key there, or remove it to have a new "
		                "certificate generated", cert_path, key_path);
	} else if (have_cert) {
		st = server_cert_slurp(cert_path, false, &cert, &cert_len, err);
		if (st == DM_OK)
			st = server_cert_slurp(key_path, true, &key, &key_len, err);
	} else {
		/* Nothing yet, or a key whose certificate a crash never
		 * wrote: a fresh pair. */
		st = server_cert_generate(key_path, cert_path, host_name, &cert,
		                          &cert_len, &key, &key_len, err);
		created = st == DM_OK;
	}
	close(lock);   /* releases the lock */
	if (st == DM_OK)
		st = server_cert_make(cert, cert_len, key, key_len, cert_path, out,
		                      err);
	if (st == DM_OK)
		(*out)->created = created;
	free(cert);
	server_cert_wipe_free(key, key_len);
	return st;
}

enum dm_status server_cert_file_fingerprint(const char *root, char *out,
                                            struct dm_err *err)
{
	char path[DM_PATH_MAX];
	char *cert = NULL;
	size_t len = 0;
	out[0] = '\0';
	enum dm_status st = paths_join(root, SERVER_CERT_FILE, path, sizeof(path),
	                               err);
	if (st != DM_OK)
		return st;
	struct dm_err why;
	dm_err_clear(&why);
	st = server_cert_slurp(path, false, &cert, &len, &why);
	if (st == DM_ENOINPUT)
		return dm_err_set(err, DM_ENOTFOUND, "%s: no server certificate "
		                  "generated yet", path);
	if (st != DM_OK)
		return dm_err_set(err, st, "%s", why.msg);
	dm_err_clear(&why);
	st = crypto_cert_fingerprint(cert, len, out, &why);
	free(cert);
	if (st != DM_OK)
		return dm_err_set(err, st == DM_EINVAL ? DM_ECONFIG : st, "%s: %s",
		                  path, why.msg);
	return DM_OK;
}
