/*
 * peers.c - start, stop and read the captures of real SMTP servers on
 * loopback (see peers.h).
 */
#include "peers.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "core/base64.h"
#include "testroot.h"

static long peers_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void peers_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Waits for pid up to timeout_ms; then SIGKILL.  Returns the wait status, or
 * -1 when it had to be killed. */
static int peers_reap(pid_t pid, long timeout_ms)
{
	int status = 0;
	long deadline = peers_now_ms() + timeout_ms;
	for (int i = 0; i < 100000; i++) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -1;
		if (peers_now_ms() >= deadline)
			break;
		peers_sleep_ms(10);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return -1;
}

/* testroot_make() with a struct dm_err. */
static enum dm_status peer_tempdir(const char *tag, char *out, size_t cap,
                                   struct dm_err *err)
{
	if (!testroot_make(tag, out, cap)) {
		if (errno == ENAMETOOLONG)
			return dm_err_set(err, DM_ENOMEM, "temp dir name too long");
		return dm_err_set(err, DM_EIO, "mkdtemp %s: %s", out, strerror(errno));
	}
	return DM_OK;
}

int peer_group_setup(struct peer_group *g, const char *tag)
{
	struct dm_err err;

	memset(g, 0, sizeof(*g));
	dm_err_clear(&err);
	if (peer_tempdir(tag, g->dir, sizeof(g->dir), &err) != DM_OK) {
		fprintf(stderr, "%s: %s\n", tag, err.msg);
		return -1;
	}
	snprintf(g->pki, sizeof(g->pki), "%s/pki", g->dir);
	if (peer_pki(g->pki, &err) != DM_OK) {
		fprintf(stderr, "%s: %s\n", tag, err.msg);
		return -1;
	}
	return 0;
}

struct peer *peer_group_start(struct peer_group *g, enum peer_kind kind,
                              const char *tls, const char *cert,
                              const char *const *extra, struct dm_err *err)
{
	char certf[PATH_MAX + 32], keyf[PATH_MAX + 32], cap[PATH_MAX + 32];
	const char *args[PEER_ARGS_MAX + 1];
	size_t n = 0;

	if (g->npool >= PEER_GROUP_POOL) {
		dm_err_set(err, DM_ENOMEM, "peer pool full (%d)", PEER_GROUP_POOL);
		return NULL;
	}
	args[n++] = "--tls";
	args[n++] = tls;
	if (cert) {
		snprintf(certf, sizeof certf, "%s/%s.pem", g->pki, cert);
		snprintf(keyf, sizeof keyf, "%s/%s.key", g->pki, cert);
		args[n++] = "--cert";
		args[n++] = certf;
		args[n++] = "--key";
		args[n++] = keyf;
	}
	for (size_t i = 0; extra && extra[i]; i++) {
		if (n >= PEER_ARGS_MAX) {
			dm_err_set(err, DM_ENOMEM, "too many peer arguments");
			return NULL;
		}
		args[n++] = extra[i];
	}
	args[n] = NULL;
	snprintf(cap, sizeof cap, "%s/capture-%u", g->dir, ++g->seq);
	struct peer *p = &g->pool[g->npool];
	if (peer_start(p, kind, args, cap, err) != DM_OK)
		return NULL;
	g->npool++;
	return p;
}

void peer_group_stop_all(struct peer_group *g)
{
	for (size_t i = 0; i < g->npool; i++)
		peer_stop(&g->pool[i]);
	g->npool = 0;
}

int peer_group_teardown(struct peer_group *g)
{
	peer_group_stop_all(g);
	if (testroot_remove(g->dir) != 0) {
		fprintf(stderr, "could not remove %s\n", g->dir);
		return -1;
	}
	return 0;
}

static const char *peers_source_dir(struct dm_err *err)
{
	const char *src = getenv("DEVMAIL_SOURCE_DIR");
	if (!src || !*src) {
		dm_err_set(err, DM_ECONFIG,
		           "DEVMAIL_SOURCE_DIR is not set (run the test through ctest)");
		return NULL;
	}
	return src;
}

enum dm_status peer_pki(const char *dir, struct dm_err *err)
{
	const char *src = peers_source_dir(err);
	if (!src)
		return DM_ECONFIG;
	char script[PATH_MAX];
	snprintf(script, sizeof script, "%s/tests/lib/pki.sh", src);
	pid_t pid = fork();
	if (pid < 0)
		return dm_err_set(err, DM_EIO, "fork: %s", strerror(errno));
	if (pid == 0) {
		execl("/bin/bash", "bash", script, dir, (char *)NULL);
		_exit(127);
	}
	int st = peers_reap(pid, 60000);
	if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return dm_err_set(err, DM_EIO, "%s %s failed (status %d)", script, dir, st);
	return DM_OK;
}

/* Reads one line from fd into line[cap] before the deadline. */
static enum dm_status peers_read_line(int fd, char *line, size_t cap,
                                      long deadline, struct dm_err *err)
{
	size_t n = 0;
	for (int i = 0; i < 4096; i++) {
		long left = deadline - peers_now_ms();
		if (left <= 0)
			break;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		char c;
		ssize_t got = read(fd, &c, 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			line[n] = '\0';
			return dm_err_set(err, DM_EPROTO,
			                  "peer exited before printing READY (output so far: '%s')", line);
		}
		if (c == '\n') {
			line[n] = '\0';
			return DM_OK;
		}
		if (n + 1 < cap)
			line[n++] = c;
	}
	line[n] = '\0';
	return dm_err_set(err, DM_ETIMEOUT, "peer printed no READY line within %d ms",
	                  PEER_START_TIMEOUT_MS);
}

static bool peers_port_accepts(unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return ok;
}

enum dm_status peer_start(struct peer *p, enum peer_kind kind,
                          const char *const *args, const char *capture,
                          struct dm_err *err)
{
	memset(p, 0, sizeof *p);
	p->kind = kind;
	p->out_fd = -1;
	const char *src = peers_source_dir(err);
	if (!src)
		return DM_ECONFIG;
	if (snprintf(p->capture, sizeof p->capture, "%s", capture) >= (int)sizeof p->capture)
		return dm_err_set(err, DM_ENOMEM, "capture path too long");
	if (mkdir(capture, 0700) != 0 && errno != EEXIST)
		return dm_err_set(err, DM_EIO, "mkdir %s: %s", capture, strerror(errno));

	char script[PATH_MAX], check[PATH_MAX];
	const char *interp;
	if (kind == PEER_AIOSMTPD) {
		interp = "/usr/bin/python3";
		snprintf(script, sizeof script, "%s/tests/interop/aiosmtpd_server.py", src);
		snprintf(check, sizeof check, "%s", script);
	} else {
		interp = "node";
		snprintf(script, sizeof script, "%s/tests/node/smtp_server.js", src);
		snprintf(check, sizeof check, "%s/tests/node/node_modules/smtp-server/package.json", src);
	}
	if (access(check, R_OK) != 0)
		return dm_err_set(err, DM_ECONFIG, "%s is missing (run scripts/setup)", check);

	const char *argv[PEER_ARGS_MAX + 8];
	size_t n = 0;
	argv[n++] = interp;
	argv[n++] = script;
	for (size_t i = 0; args && args[i]; i++) {
		if (i >= PEER_ARGS_MAX)
			return dm_err_set(err, DM_ENOMEM, "too many peer arguments");
		argv[n++] = args[i];
	}
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--capture";
	argv[n++] = capture;
	argv[n] = NULL;

	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) != 0)
		return dm_err_set(err, DM_EIO, "pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return dm_err_set(err, DM_EIO, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		/* The C test may have SIGPIPE ignored; the peer gets defaults. */
		signal(SIGPIPE, SIG_DFL);
		execvp(interp, (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	p->pid = pid;
	p->out_fd = pfd[0];

	long deadline = peers_now_ms() + PEER_START_TIMEOUT_MS;
	char line[256];
	enum dm_status st = peers_read_line(p->out_fd, line, sizeof line, deadline, err);
	if (st != DM_OK) {
		peer_stop(p);
		return st;
	}
	unsigned port = 0;
	if (sscanf(line, "READY %u", &port) != 1 || port == 0 || port > 65535) {
		peer_stop(p);
		return dm_err_set(err, DM_EPROTO, "peer printed '%s', expected 'READY <port>'", line);
	}
	p->port = port;
	for (int i = 0; i < 2000; i++) {
		if (peers_port_accepts(port))
			return DM_OK;
		if (peers_now_ms() >= deadline)
			break;
		peers_sleep_ms(10);
	}
	peer_stop(p);
	return dm_err_set(err, DM_ETIMEOUT, "peer port %u does not accept connections", port);
}

int peer_stop(struct peer *p)
{
	int st = -1;
	if (p->pid > 0) {
		kill(p->pid, SIGTERM);
		st = peers_reap(p->pid, PEER_STOP_TIMEOUT_MS);
		p->pid = 0;
	}
	if (p->out_fd >= 0) {
		close(p->out_fd);
		p->out_fd = -1;
	}
	return st;
}

static bool peers_is_capture_name(const char *name)
{
	for (int i = 0; i < 6; i++)
		if (!isdigit((unsigned char)name[i]))
			return false;
	return strcmp(name + 6, ".eml") == 0;
}

size_t peer_capture_count(const struct peer *p)
{
	DIR *d = opendir(p->capture);
	if (!d)
		return 0;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (peers_is_capture_name(e->d_name))
			n++;
	closedir(d);
	return n;
}

static enum dm_status peers_read_file(const char *path, char **out, size_t *len,
                                      struct dm_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return dm_err_set(err, errno == ENOENT ? DM_ENOTFOUND : DM_EIO,
		                  "open %s: %s", path, strerror(errno));
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		close(fd);
		return dm_err_set(err, DM_EIO, "stat %s: %s", path, strerror(errno));
	}
	size_t size = (size_t)sb.st_size;
	char *buf = malloc(size + 1);
	if (!buf) {
		close(fd);
		return dm_err_set(err, DM_ENOMEM, "%zu bytes for %s", size, path);
	}
	size_t got = 0;
	while (got < size) {
		ssize_t r = read(fd, buf + got, size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (got != size) {
		free(buf);
		return dm_err_set(err, DM_EIO, "short read on %s", path);
	}
	buf[size] = '\0';
	*out = buf;
	*len = size;
	return DM_OK;
}

static void peers_copy_field(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
}

size_t peer_connection_count(const struct peer *p)
{
	char path[PATH_MAX + 16];
	char *buf = NULL;
	size_t len = 0, n = 0;
	snprintf(path, sizeof path, "%s/connections", p->capture);
	if (peers_read_file(path, &buf, &len, NULL) != DM_OK)
		return 0;
	for (size_t i = 0; i < len; i++)
		n += buf[i] == '\n';
	free(buf);
	return n;
}

enum dm_status peer_message_load(const struct peer *p, unsigned seq,
                                 struct peer_message *m, struct dm_err *err)
{
	memset(m, 0, sizeof *m);
	char path[PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/%06u.eml", p->capture, seq);
	enum dm_status st = peers_read_file(path, &m->file, &m->file_len, err);
	if (st != DM_OK)
		return st;
	const char *s = m->file, *end = m->file + m->file_len;
	for (int i = 0; i < 64 + PEER_RCPT_MAX; i++) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		if (!nl)
			break;
		size_t n = (size_t)(nl - s);
		if (n == 0) {
			m->data = nl + 1;
			m->data_len = (size_t)(end - m->data);
			break;
		}
		if (n > 11 && strncmp(s, "MAIL FROM:<", 11) == 0 && s[n - 1] == '>') {
			peers_copy_field(m->mail_from, sizeof m->mail_from, s + 11, n - 12);
		} else if (n > 9 && strncmp(s, "RCPT TO:<", 9) == 0 && s[n - 1] == '>') {
			if (m->nrcpt < PEER_RCPT_MAX)
				peers_copy_field(m->rcpt[m->nrcpt++], sizeof m->rcpt[0], s + 9, n - 10);
		} else if (n > 5 && strncmp(s, "AUTH ", 5) == 0) {
			peers_copy_field(m->auth, sizeof m->auth, s + 5, n - 5);
		} else if (n > 4 && strncmp(s, "TLS ", 4) == 0) {
			peers_copy_field(m->tls, sizeof m->tls, s + 4, n - 4);
		} else if (n > 9 && strncmp(s, "SMTPUTF8 ", 9) == 0) {
			m->smtputf8 = s[9] == '1';
		} else if (n > 8 && strncmp(s, "SESSION ", 8) == 0) {
			m->session = (unsigned)strtoul(s + 8, NULL, 10);
		}
		s = nl + 1;
	}
	if (!m->data) {
		peer_message_free(m);
		return dm_err_set(err, DM_EPROTO, "%s: no envelope/data separator", path);
	}
	const char *sep = memmem(m->data, m->data_len, "\r\n\r\n", 4);
	if (sep) {
		m->body = sep + 4;
		m->body_len = (size_t)(m->data + m->data_len - m->body);
	} else {
		m->body = m->data + m->data_len;
		m->body_len = 0;
	}
	return DM_OK;
}

void peer_message_free(struct peer_message *m)
{
	free(m->file);
	memset(m, 0, sizeof *m);
}

/* Copies the unfolded value of header `name` found in hdr[len]. */
static bool peers_find_header(const char *hdr, size_t len, const char *name,
                              char *out, size_t cap)
{
	size_t nl = strlen(name);
	const char *s = hdr, *end = hdr + len;
	while (s < end) {
		const char *eol = memmem(s, (size_t)(end - s), "\r\n", 2);
		if (!eol)
			eol = end;
		if (eol == s)
			return false; /* blank line: end of the header */
		if ((size_t)(eol - s) > nl && s[nl] == ':' && strncasecmp(s, name, nl) == 0) {
			size_t o = 0;
			const char *v = s + nl + 1;
			for (int lines = 0; lines < 1000; lines++) {
				for (; v < eol; v++) {
					if (o == 0 && (*v == ' ' || *v == '\t'))
						continue;
					if (o + 1 >= cap)
						return false;
					out[o++] = *v;
				}
				/* continuation lines start with a blank (RFC 5322 2.2.3) */
				if (eol + 2 < end && (eol[2] == ' ' || eol[2] == '\t')) {
					v = eol + 2;
					const char *e2 = memmem(v, (size_t)(end - v), "\r\n", 2);
					eol = e2 ? e2 : end;
					continue;
				}
				break;
			}
			out[o] = '\0';
			return true;
		}
		s = eol + 2;
	}
	return false;
}

bool peer_message_header(const struct peer_message *m, const char *name,
                         char *out, size_t cap)
{
	return peers_find_header(m->data, m->data_len, name, out, cap);
}

enum dm_status peer_message_attachment(const struct peer_message *m,
                                       const char *filename,
                                       unsigned char **out, size_t *len,
                                       struct dm_err *err)
{
	char pat[2][PATH_MAX];
	snprintf(pat[0], sizeof pat[0], "filename=\"%s\"", filename);
	snprintf(pat[1], sizeof pat[1], "name=\"%s\"", filename);
	const char *hit = NULL;
	for (int i = 0; i < 2 && !hit; i++)
		hit = memmem(m->data, m->data_len, pat[i], strlen(pat[i]));
	if (!hit)
		return dm_err_set(err, DM_ENOTFOUND, "no MIME part named '%s'", filename);
	const char *end = m->data + m->data_len;
	/* The part's header ends at the next blank line. */
	const char *sep = memmem(hit, (size_t)(end - hit), "\r\n\r\n", 4);
	if (!sep)
		return dm_err_set(err, DM_EINVAL, "part '%s' has no body", filename);
	/* The part header starts after the boundary line before `hit`. */
	const char *ph = hit;
	for (size_t i = 0; ph > m->data && i < 64 * 1024; i++, ph--)
		if (ph[-1] == '\n' && ph[0] == '-' && ph[1] == '-')
			break;
	char cte[128];
	if (peers_find_header(ph, (size_t)(sep + 4 - ph), "Content-Transfer-Encoding",
	                      cte, sizeof cte) && strcasecmp(cte, "base64") != 0)
		return dm_err_set(err, DM_EINVAL, "part '%s' is %s, not base64", filename, cte);
	const char *b = sep + 4;
	const char *e = memmem(b, (size_t)(end - b), "\r\n--", 4);
	if (!e)
		e = end;
	size_t cap = ((size_t)(e - b) / 4) * 3 + 3;
	unsigned char *buf = malloc(cap ? cap : 1);
	if (!buf)
		return dm_err_set(err, DM_ENOMEM, "%zu bytes for '%s'", cap, filename);
	enum dm_status st = base64_decode(b, (size_t)(e - b), buf, cap, len, err);
	if (st != DM_OK) {
		free(buf);
		return st;
	}
	*out = buf;
	return DM_OK;
}

static void peers_hex(const unsigned char *d, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[d[i] >> 4];
		out[2 * i + 1] = hx[d[i] & 15];
	}
	out[2 * n] = '\0';
}

void peer_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char d[32];
	gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, d);
	peers_hex(d, sizeof d, out);
}

enum dm_status peer_sha256_file(const char *path, char out[65], struct dm_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return dm_err_set(err, DM_EIO, "open %s: %s", path, strerror(errno));
	gnutls_hash_hd_t h;
	if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0) {
		close(fd);
		return dm_err_set(err, DM_EIO, "gnutls_hash_init failed");
	}
	static char buf[65536];
	enum dm_status st = DM_OK;
	for (;;) {
		ssize_t r = read(fd, buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			st = dm_err_set(err, DM_EIO, "read %s: %s", path, strerror(errno));
			break;
		}
		if (r == 0)
			break;
		gnutls_hash(h, buf, (size_t)r);
	}
	close(fd);
	unsigned char d[32];
	gnutls_hash_deinit(h, d);
	if (st == DM_OK)
		peers_hex(d, sizeof d, out);
	return st;
}

enum dm_status peer_write_random_file(const char *path, size_t len,
                                      unsigned seed, struct dm_err *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return dm_err_set(err, DM_EIO, "create %s: %s", path, strerror(errno));
	uint64_t x = 0x9e3779b97f4a7c15ULL ^ seed;
	static unsigned char buf[65536];
	size_t left = len;
	while (left > 0) {
		size_t n = left < sizeof buf ? left : sizeof buf;
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = (unsigned char)(x >> 24);
		}
		size_t off = 0;
		while (off < n) {
			ssize_t w = write(fd, buf + off, n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				close(fd);
				return dm_err_set(err, DM_EIO, "write %s: %s", path, strerror(errno));
			}
			off += (size_t)w;
		}
		left -= n;
	}
	if (close(fd) != 0)
		return dm_err_set(err, DM_EIO, "close %s: %s", path, strerror(errno));
	return DM_OK;
}
