/* test_listener.c - the server role: net/listener, net/server_cert and
 * server-side TLS, against our own client (transport_connect) and against
 * a real one (gnutls-cli, Debian gnutls-bin).
 *
 * Own client <-> own server over implicit TLS and over STARTTLS, on
 * 127.0.0.1 and ::1 (both bound by one listener; a missing ::1 fails the
 * test), the client verifying the server's generated certificate by pin and
 * by CA file (the certificate as its own anchor, IP literal against the IP
 * SANs); the certificate generated once and reused, key mode 0600, several
 * processes racing to generate it; the operator's PEM files; TCP_QUICKACK
 * re-armed by a read that only consumed the TLS 1.3 session ticket; errors.
 * Every server thread is joined, every child process stopped by its PID,
 * every loop bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/crypto.h"
#include "net/listener.h"
#include "net/server_cert.h"
#include "net/transport.h"
#include "testroot.h"
#include "tls_server.h"

#define STEP_MS 10000          /* each server and client step */
#define CHILD_MS 20000         /* a gnutls-cli run, start to exit */

static char root[512];         /* the group's temp dir */
static unsigned seq;           /* numbers the data roots made in it */

static int group_setup(void **state)
{
	(void)state;
	if (testroot_make("net-listener", root, sizeof(root)) == NULL)
		return -1;
	char pki[600];
	snprintf(pki, sizeof(pki), "%s/pki", root);
	if (tls_server_make_pki(pki) != 0) {
		fprintf(stderr, "cannot make the test PKI in %s "
		        "(is DEVMAIL_SOURCE_DIR set?)\n", pki);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	return testroot_remove(root);
}

/* A fresh data root under the group's dir. */
static void new_root(char *out, size_t cap)
{
	snprintf(out, cap, "%s/root%u", root, ++seq);
	assert_int_equal(mkdir(out, 0700), 0);
}

static struct server_cert *ensure_cert(const char *dataroot)
{
	struct server_cert *c = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	if (server_cert_ensure(dataroot, "unit.test", &c, &err) != DM_OK)
		fail_msg("server_cert_ensure: %s", err.msg);
	return c;
}

/* ---- line I/O on a transport ------------------------------------------- */

/* Reads one line up to "\n" (kept), a byte at a time so nothing after it is
 * consumed (a STARTTLS handshake must find its bytes still unread). */
static int line_read(struct transport *t, char *buf, size_t cap,
                     struct dm_err *err)
{
	size_t n = 0;
	while (n + 1 < cap) {
		size_t got = 0;
		if (transport_read(t, buf + n, 1, &got, err) != DM_OK || got == 0)
			return -1;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return n > 0 && buf[n - 1] == '\n' ? 0 : -1;
}

static int line_send(struct transport *t, const char *text, struct dm_err *err)
{
	if (transport_write(t, text, strlen(text), err) != DM_OK ||
	    transport_flush(t, err) != DM_OK)
		return -1;
	return 0;
}

/* Reads until the peer closes, discarding (bounded). */
static int wait_close(struct transport *t)
{
	char buf[256];
	for (int i = 0; i < 10000; i++) {
		size_t got = 0;
		if (transport_read(t, buf, sizeof(buf), &got, NULL) != DM_OK)
			return -1;
		if (got == 0)
			return 0;
	}
	return -1;
}

/* ---- the server thread --------------------------------------------------- */

struct srv;
typedef int (*srv_fn)(struct srv *s, struct transport *t);

#define SRV_CONNS 8

struct srv {
	struct listener *l;
	srv_fn fn;
	int conns;                 /* connections to serve, one after another */
	pthread_t thread;
	bool running;
	int result;                /* 0: every script went as expected */
	char err[2 * DM_ERR_TEXT];
	char line[256];            /* last line the script read */
	int served;
	/* what the server side saw, per connection */
	struct transport_tls_info info[SRV_CONNS];
	unsigned long quickacks[SRV_CONNS];
};

static void *srv_main(void *arg)
{
	struct srv *s = arg;
	s->result = 0;
	for (int i = 0; i < s->conns && i < SRV_CONNS; i++) {
		struct transport *t = NULL;
		struct dm_err err;
		dm_err_clear(&err);
		if (listener_accept(s->l, transport_now_ms() + STEP_MS, &t, &err)
		    != DM_OK) {
			snprintf(s->err, sizeof(s->err), "accept: %s", err.msg);
			s->result = -1;
			break;
		}
		int r = s->fn(s, t);
		s->info[i] = *transport_tls_info(t);
		s->quickacks[i] = transport_stats(t)->quickacks;
		transport_close(t);
		s->served++;
		if (r != 0) {
			if (s->err[0] == '\0')
				snprintf(s->err, sizeof(s->err), "script %d failed", i);
			s->result = -1;
			break;
		}
	}
	return NULL;
}

/* Opens a listener on addrs and starts the thread; stop with srv_stop(). */
static void srv_start(struct srv *s, const char *const *addrs, size_t n,
                      bool implicit, struct server_cert *cert, srv_fn fn,
                      int conns)
{
	memset(s, 0, sizeof(*s));
	struct listener_settings ls = {
		.addrs = addrs, .n_addrs = n, .implicit_tls = implicit,
		.cert = cert, .timeout_ms = STEP_MS,
	};
	struct dm_err err;
	dm_err_clear(&err);
	if (listener_open(&ls, &s->l, &err) != DM_OK)
		fail_msg("listener_open: %s", err.msg);
	s->fn = fn;
	s->conns = conns;
	assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
	s->running = true;
}

/* Joins (every wait in the thread is bounded by STEP_MS) and closes. */
static int srv_stop(struct srv *s)
{
	if (s->running) {
		pthread_join(s->thread, NULL);
		s->running = false;
	}
	listener_close(s->l);
	s->l = NULL;
	if (s->result != 0)
		print_message("server: %s\n", s->err);
	return s->result;
}

static int srv_fail(struct srv *s, const char *what, const struct dm_err *err)
{
	snprintf(s->err, sizeof(s->err), "%.100s: %.511s (last line '%.255s')",
	         what, err->msg, s->line);
	return -1;
}

/* ---- client helpers ----------------------------------------------------- */

static struct transport_settings client_settings(const char *host,
                                                 unsigned port)
{
	struct transport_settings s = {
		.host = host, .port = port, .timeout_ms = STEP_MS, .verify = true,
		.system_trust = false,
	};
	return s;
}

static struct transport *client_connect(const struct transport_settings *s)
{
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	if (transport_connect(s, &t, &err) != DM_OK)
		fail_msg("connect %s:%u: %s", s->host, s->port, err.msg);
	return t;
}

static void expect_line(struct transport *t, const char *want)
{
	char line[256];
	struct dm_err err;
	dm_err_clear(&err);
	if (line_read(t, line, sizeof(line), &err) != 0)
		fail_msg("expected '%s': %s", want, err.msg);
	assert_string_equal(line, want);
}

static void send_line(struct transport *t, const char *text)
{
	struct dm_err err;
	dm_err_clear(&err);
	if (line_send(t, text, &err) != 0)
		fail_msg("send '%s': %s", text, err.msg);
}

/* ---- server scripts ----------------------------------------------------- */

/* Implicit TLS: greeting, one echoed line, then wait for the close. */
static int greet_echo_fn(struct srv *s, struct transport *t)
{
	struct dm_err err;
	dm_err_clear(&err);
	if (!transport_tls_info(t)->active)
		return srv_fail(s, "implicit TLS not active", &err);
	char reply[300];
	if (line_send(t, "220 devmail test over TLS\r\n", &err) != 0)
		return srv_fail(s, "greeting", &err);
	if (line_read(t, s->line, sizeof(s->line), &err) != 0)
		return srv_fail(s, "read", &err);
	snprintf(reply, sizeof(reply), "250 got %s", s->line);
	if (line_send(t, reply, &err) != 0)
		return srv_fail(s, "reply", &err);
	return wait_close(t);
}

/* STARTTLS on the server handle: the same call as the client's. */
static int starttls_fn(struct srv *s, struct transport *t)
{
	struct dm_err err;
	dm_err_clear(&err);
	int fd = transport_fd(t);
	if (line_send(t, "220 devmail test\r\n", &err) != 0 ||
	    line_read(t, s->line, sizeof(s->line), &err) != 0)
		return srv_fail(s, "cleartext", &err);
	if (strcmp(s->line, "STARTTLS\r\n") != 0)
		return srv_fail(s, "expected STARTTLS", &err);
	if (transport_write(t, "220 go ahead\r\n", 14, &err) != DM_OK)
		return srv_fail(s, "220", &err);
	/* start_tls flushes the 220 first, then runs the server handshake. */
	if (transport_start_tls(t, &err) != DM_OK)
		return srv_fail(s, "server start_tls", &err);
	if (transport_fd(t) != fd || !transport_tls_info(t)->active)
		return srv_fail(s, "not upgraded in place", &err);
	if (transport_start_tls(t, &err) != DM_EPROTO)   /* twice */
		return srv_fail(s, "second start_tls", &err);
	dm_err_clear(&err);
	if (line_read(t, s->line, sizeof(s->line), &err) != 0 ||
	    strcmp(s->line, "EHLO again\r\n") != 0)
		return srv_fail(s, "EHLO over TLS", &err);
	if (line_send(t, "250 ok\r\n", &err) != 0)
		return srv_fail(s, "250", &err);
	return wait_close(t);
}

/* ---- own client <-> own server ------------------------------------------ */

static const char *const both_loopbacks[] = { "127.0.0.1:0", "[::1]:0" };

/* Client side of greet_echo_fn over implicit TLS. */
static void implicit_client(struct transport_settings *s,
                            const struct server_cert *cert, bool pinned)
{
	struct transport *t = client_connect(s);
	struct dm_err err;
	dm_err_clear(&err);
	if (transport_start_tls(t, &err) != DM_OK)
		fail_msg("start_tls to %s: %s", s->host, err.msg);
	const struct transport_tls_info *info = transport_tls_info(t);
	assert_true(info->active);
	assert_true(info->verified);
	assert_int_equal(info->pinned, pinned);
	assert_string_equal(info->fingerprint, server_cert_fingerprint(cert));
	assert_non_null(strstr(info->subject, "CN=unit.test"));
	assert_string_equal(info->version, "TLS1.3");
	expect_line(t, "220 devmail test over TLS\r\n");
	send_line(t, "HELLO\r\n");
	expect_line(t, "250 got HELLO\r\n");
	transport_close(t);
}

static void test_implicit_tls_pin_and_cafile_v4_v6(void **state)
{
	(void)state;
	char dr[600], cafile[700];
	new_root(dr, sizeof(dr));
	snprintf(cafile, sizeof(cafile), "%s/%s", dr, SERVER_CERT_FILE);
	struct server_cert *cert = ensure_cert(dr);
	struct srv s;
	srv_start(&s, both_loopbacks, 2, true, cert, greet_echo_fn, 4);
	assert_int_equal(listener_count(s.l), 2);
	const char *hosts[2] = { "127.0.0.1", "::1" };
	for (size_t i = 0; i < 2; i++) {
		unsigned port = listener_port(s.l, i);
		assert_true(port > 0);
		/* by pin: verification of the chain does not matter */
		struct transport_settings cs = client_settings(hosts[i], port);
		cs.fingerprint = server_cert_fingerprint(cert);
		implicit_client(&cs, cert, true);
		/* by CA file: the certificate is its own anchor, and the IP
		 * literal must be among its IP SANs */
		cs = client_settings(hosts[i], port);
		cs.cafile = cafile;
		implicit_client(&cs, cert, false);
	}
	assert_int_equal(srv_stop(&s), 0);
	assert_int_equal(s.served, 4);
	for (int i = 0; i < 4; i++) {
		/* the server side's tls info: version and cipher, no peer */
		assert_true(s.info[i].active);
		assert_string_equal(s.info[i].version, "TLS1.3");
		assert_true(s.info[i].cipher[0] != '\0');
		assert_false(s.info[i].verified);
		assert_string_equal(s.info[i].fingerprint, "");
		assert_true(s.quickacks[i] > 0);
	}
	print_message("server side: %s %s\n", s.info[0].version, s.info[0].cipher);
	server_cert_free(cert);
}

/* Whatever the client does, read until it is gone. */
static int drain_fn(struct srv *s, struct transport *t)
{
	(void)s;
	(void)wait_close(t);
	return 0;
}

/* Without the pin or an anchor the self-signed server is refused, and a
 * wrong pin is refused. */
static void test_implicit_tls_refused_unpinned(void **state)
{
	(void)state;
	char dr[600];
	new_root(dr, sizeof(dr));
	struct server_cert *cert = ensure_cert(dr);
	struct srv s;
	srv_start(&s, both_loopbacks, 1, true, cert, drain_fn, 2);
	unsigned port = listener_port(s.l, 0);
	struct transport_settings cs = client_settings("127.0.0.1", port);
	struct transport *t = client_connect(&cs);
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_start_tls(t, &err), DM_ETLS);
	assert_non_null(strstr(err.msg, "signer not found"));
	transport_close(t);
	cs.fingerprint = "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:"
	                 "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff";
	t = client_connect(&cs);
	dm_err_clear(&err);
	assert_int_equal(transport_start_tls(t, &err), DM_ETLS);
	assert_non_null(strstr(err.msg, "fingerprint mismatch"));
	transport_close(t);
	/* The server's handshakes completed (TLS 1.3: the client checks the
	 * certificate after its own Finished, then alerts). */
	assert_int_equal(srv_stop(&s), 0);
	assert_int_equal(s.served, 2);
	server_cert_free(cert);
}

static void starttls_client(const char *host, unsigned port,
                            const char *cafile)
{
	struct transport_settings cs = client_settings(host, port);
	cs.cafile = cafile;
	struct transport *t = client_connect(&cs);
	expect_line(t, "220 devmail test\r\n");
	send_line(t, "STARTTLS\r\n");
	expect_line(t, "220 go ahead\r\n");
	int fd = transport_fd(t);
	struct dm_err err;
	dm_err_clear(&err);
	if (transport_start_tls(t, &err) != DM_OK)
		fail_msg("client start_tls to %s: %s", host, err.msg);
	assert_int_equal(transport_fd(t), fd);
	assert_true(transport_tls_info(t)->verified);
	send_line(t, "EHLO again\r\n");
	expect_line(t, "250 ok\r\n");
	transport_close(t);
}

static void test_starttls_both_roles_v4_v6(void **state)
{
	(void)state;
	char dr[600], cafile[700];
	new_root(dr, sizeof(dr));
	snprintf(cafile, sizeof(cafile), "%s/%s", dr, SERVER_CERT_FILE);
	struct server_cert *cert = ensure_cert(dr);
	struct srv s;
	srv_start(&s, both_loopbacks, 2, false, cert, starttls_fn, 2);
	/* the listener holds its own reference: ours can go now */
	server_cert_free(cert);
	starttls_client("127.0.0.1", listener_port(s.l, 0), cafile);
	starttls_client("::1", listener_port(s.l, 1), cafile);
	assert_int_equal(srv_stop(&s), 0);
	for (int i = 0; i < 2; i++) {
		assert_true(s.info[i].active);
		assert_true(s.info[i].version[0] != '\0');
	}
}

/* ---- TCP_QUICKACK after a read that only consumed a session ticket ------ */

static int ticket_then_wait_fn(struct srv *s, struct transport *t)
{
	struct dm_err err;
	dm_err_clear(&err);
	/* Sends nothing of its own: the only thing on the wire after the
	 * handshake is GnuTLS's NewSessionTicket. */
	if (line_read(t, s->line, sizeof(s->line), &err) != 0)
		return srv_fail(s, "read DONE", &err);
	return strcmp(s->line, "DONE\r\n") == 0 ? 0 : -1;
}

static void test_quickack_after_ticket_only_read(void **state)
{
	(void)state;
	char dr[600];
	new_root(dr, sizeof(dr));
	struct server_cert *cert = ensure_cert(dr);
	struct srv s;
	srv_start(&s, both_loopbacks, 1, true, cert, ticket_then_wait_fn, 1);
	struct transport_settings cs = client_settings("127.0.0.1",
	                                               listener_port(s.l, 0));
	cs.fingerprint = server_cert_fingerprint(cert);
	struct transport *t = client_connect(&cs);
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_start_tls(t, &err), DM_OK);
	assert_string_equal(transport_tls_info(t)->version, "TLS1.3");
	unsigned long before = transport_stats(t)->quickacks;
	/* Short reads until the ticket has come and gone (bounded). */
	int reads = 0;
	for (; reads < 100 && transport_stats(t)->quickacks == before; reads++) {
		char buf[64];
		size_t got = 0;
		dm_err_clear(&err);
		enum dm_status st = transport_read_until(t, buf, sizeof(buf),
		                                         transport_now_ms() + 100,
		                                         &got, &err);
		if (st != DM_ETIMEOUT)
			fail_msg("read %d: %s, %zu bytes '%.*s' (%s)", reads,
			         dm_status_str(st), got, (int)got, buf, err.msg);
		assert_int_equal(got, 0);
	}
	print_message("quickack re-armed by a ticket-only read: %lu -> %lu after "
	              "%d read(s)\n", before, transport_stats(t)->quickacks, reads);
	assert_true(transport_stats(t)->quickacks > before);
	assert_int_equal(transport_stats(t)->bytes_in, 0);
	send_line(t, "DONE\r\n");
	transport_close(t);
	assert_int_equal(srv_stop(&s), 0);
	server_cert_free(cert);
}

/* ---- the unit's certificate --------------------------------------------- */

/* Permission bits of dir/rel, which must be a regular file or a
 * directory (not a symbolic link). */
static mode_t file_mode(const char *dir, const char *rel)
{
	char p[800];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode));
	return st.st_mode & 07777;
}

static void test_cert_generated_once(void **state)
{
	(void)state;
	char dr[600];
	new_root(dr, sizeof(dr));
	char fp0[CRYPTO_FINGERPRINT_LEN];
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(server_cert_file_fingerprint(dr, fp0, &err), DM_ENOTFOUND);
	struct server_cert *a = ensure_cert(dr);
	assert_true(server_cert_created(a));
	assert_int_equal(strlen(server_cert_fingerprint(a)), 95);
	assert_int_equal(file_mode(dr, SERVER_CERT_DIR), 0700);
	assert_int_equal(file_mode(dr, SERVER_CERT_KEY_FILE), 0600);
	assert_int_equal(file_mode(dr, SERVER_CERT_FILE) & 0600, 0600);
	char fp[CRYPTO_FINGERPRINT_LEN];
	dm_err_clear(&err);
	assert_int_equal(server_cert_file_fingerprint(dr, fp, &err), DM_OK);
	assert_string_equal(fp, server_cert_fingerprint(a));
	/* same format as the pin tools use */
	char pem[700], tfp[96];
	snprintf(pem, sizeof(pem), "%s/%s", dr, SERVER_CERT_FILE);
	assert_int_equal(tls_server_fingerprint(pem, tfp), 0);
	assert_string_equal(tfp, fp);

	struct server_cert *b = ensure_cert(dr);
	assert_false(server_cert_created(b));
	assert_string_equal(server_cert_fingerprint(b), server_cert_fingerprint(a));
	assert_int_equal(file_mode(dr, SERVER_CERT_KEY_FILE), 0600);
	server_cert_free(a);
	server_cert_free(b);
	server_cert_free(NULL);
}

/* Several processes start at once: one generates, all load the same. */
static void test_cert_concurrent_processes(void **state)
{
	(void)state;
	enum { KIDS = 4 };
	char dr[600];
	new_root(dr, sizeof(dr));
	pid_t pids[KIDS];
	int fds[KIDS];
	for (int i = 0; i < KIDS; i++) {
		int p[2];
		assert_int_equal(pipe(p), 0);
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			close(p[0]);
			struct server_cert *c = NULL;
			char line[128] = "error\n";
			if (server_cert_ensure(dr, "unit.test", &c, NULL) == DM_OK)
				snprintf(line, sizeof(line), "%d %s\n",
				         server_cert_created(c) ? 1 : 0,
				         server_cert_fingerprint(c));
			ssize_t w = write(p[1], line, strlen(line));
			_exit(w > 0 ? 0 : 1);
		}
		close(p[1]);
		fds[i] = p[0];
	}
	char first[CRYPTO_FINGERPRINT_LEN] = "";
	int created = 0;
	for (int i = 0; i < KIDS; i++) {
		char line[128] = "";
		struct pollfd pf = { .fd = fds[i], .events = POLLIN };
		ssize_t n = 0;
		if (poll(&pf, 1, STEP_MS) == 1)
			n = read(fds[i], line, sizeof(line) - 1);
		close(fds[i]);
		int status = 0;
		/* bounded: the child either wrote or the poll timed out */
		if (n <= 0)
			kill(pids[i], SIGKILL);
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(n > 0);
		line[n > 0 ? n : 0] = '\0';
		int c = -1;
		char fp[CRYPTO_FINGERPRINT_LEN];
		if (sscanf(line, "%d %95s", &c, fp) != 2)
			fail_msg("child %d said '%s'", i, line);
		created += c;
		if (first[0] == '\0')
			snprintf(first, sizeof(first), "%s", fp);
		assert_string_equal(fp, first);
	}
	assert_int_equal(created, 1);
	assert_int_equal(file_mode(dr, SERVER_CERT_KEY_FILE), 0600);
}

static void test_cert_damaged_and_modes(void **state)
{
	(void)state;
	char dr[600], key[700], cert[700];
	new_root(dr, sizeof(dr));
	snprintf(key, sizeof(key), "%s/%s", dr, SERVER_CERT_KEY_FILE);
	snprintf(cert, sizeof(cert), "%s/%s", dr, SERVER_CERT_FILE);
	struct server_cert *a = ensure_cert(dr);
	char fp[CRYPTO_FINGERPRINT_LEN];
	snprintf(fp, sizeof(fp), "%s", server_cert_fingerprint(a));
	server_cert_free(a);

	/* a key readable by others is refused, as the vault key is */
	assert_int_equal(chmod(key, 0644), 0);
	struct server_cert *c = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(server_cert_ensure(dr, NULL, &c, &err), DM_EPERM);
	assert_null(c);
	assert_non_null(strstr(err.msg, "chmod 600"));
	assert_int_equal(chmod(key, 0600), 0);

	/* a crash between the two writes left the key alone: a new pair */
	assert_int_equal(unlink(cert), 0);
	a = ensure_cert(dr);
	assert_true(server_cert_created(a));
	assert_string_not_equal(server_cert_fingerprint(a), fp);
	server_cert_free(a);

	/* a certificate without its key is the operator's: not replaced */
	assert_int_equal(unlink(key), 0);
	dm_err_clear(&err);
	assert_int_equal(server_cert_ensure(dr, NULL, &c, &err), DM_ECONFIG);
	assert_non_null(strstr(err.msg, "key.pem does not"));

	/* damaged certificate */
	a = NULL;
	assert_int_equal(unlink(cert), 0);
	a = ensure_cert(dr);
	server_cert_free(a);
	assert_int_equal(testroot_write(cert, "not a certificate\n"), 0);
	dm_err_clear(&err);
	assert_int_equal(server_cert_ensure(dr, NULL, &c, &err), DM_ECONFIG);
	assert_non_null(strstr(err.msg, "cert.pem"));
	dm_err_clear(&err);
	assert_int_equal(server_cert_file_fingerprint(dr, fp, &err), DM_ECONFIG);
}

static void test_cert_load_operator_files(void **state)
{
	(void)state;
	char cert[700], key[700], other[700];
	snprintf(cert, sizeof(cert), "%s/pki/server.pem", root);
	snprintf(key, sizeof(key), "%s/pki/server.key", root);
	snprintf(other, sizeof(other), "%s/pki/other.key", root);
	struct server_cert *c = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	if (server_cert_load(cert, key, &c, &err) != DM_OK)
		fail_msg("server_cert_load: %s", err.msg);
	char fp[96];
	assert_int_equal(tls_server_fingerprint(cert, fp), 0);
	assert_string_equal(server_cert_fingerprint(c), fp);
	assert_false(server_cert_created(c));

	/* our own client against it, verified through the test CA */
	struct srv s;
	srv_start(&s, both_loopbacks, 1, true, c, greet_echo_fn, 1);
	server_cert_free(c);
	char ca[700];
	snprintf(ca, sizeof(ca), "%s/pki/ca.pem", root);
	struct transport_settings cs = client_settings("localhost",
	                                               listener_port(s.l, 0));
	cs.cafile = ca;
	struct transport *t = client_connect(&cs);
	dm_err_clear(&err);
	if (transport_start_tls(t, &err) != DM_OK)
		fail_msg("start_tls: %s", err.msg);
	assert_string_equal(transport_tls_info(t)->fingerprint, fp);
	expect_line(t, "220 devmail test over TLS\r\n");
	send_line(t, "HI\r\n");
	expect_line(t, "250 got HI\r\n");
	transport_close(t);
	assert_int_equal(srv_stop(&s), 0);

	dm_err_clear(&err);
	assert_int_equal(server_cert_load(cert, other, &c, &err), DM_ECONFIG);
	assert_null(c);
	print_message("mismatched pair: %s\n", err.msg);
	dm_err_clear(&err);
	assert_int_equal(server_cert_load("/nonexistent/cert.pem", key, &c, &err),
	                 DM_ENOINPUT);
}

/* ---- listener errors ----------------------------------------------------- */

static void test_listener_errors(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"127.0.0.1", "::1:25", "[::1]25", "[::1]", "host.example:25",
		"127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:", ":25",
		"127.0.0.1:123456", "[]:25",
	};
	struct listener *l = NULL;
	struct dm_err err;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct listener_settings ls = { .addrs = &bad[i], .n_addrs = 1 };
		dm_err_clear(&err);
		if (listener_open(&ls, &l, &err) != DM_ECONFIG)
			fail_msg("'%s' accepted (%s)", bad[i], err.msg);
		assert_null(l);
		assert_non_null(strstr(err.msg, bad[i]));
	}
	struct listener_settings none = { .n_addrs = 0 };
	assert_int_equal(listener_open(&none, &l, NULL), DM_ECONFIG);
	struct listener_settings tls_no_cert = { .addrs = both_loopbacks,
	                                         .n_addrs = 1,
	                                         .implicit_tls = true };
	assert_int_equal(listener_open(&tls_no_cert, &l, NULL), DM_ECONFIG);

	/* the port is taken: nothing stays bound */
	struct listener_settings ls = { .addrs = both_loopbacks, .n_addrs = 2 };
	assert_int_equal(listener_open(&ls, &l, NULL), DM_OK);
	char taken[2][64];
	snprintf(taken[0], sizeof(taken[0]), "[::1]:0");
	snprintf(taken[1], sizeof(taken[1]), "127.0.0.1:%u", listener_port(l, 0));
	const char *const addrs2[] = { taken[0], taken[1] };
	struct listener_settings ls2 = { .addrs = addrs2, .n_addrs = 2 };
	struct listener *l2 = NULL;
	dm_err_clear(&err);
	assert_int_equal(listener_open(&ls2, &l2, &err), DM_ENET);
	assert_null(l2);
	assert_non_null(strstr(err.msg, taken[1]));
	assert_non_null(strstr(err.msg, "in use"));
	assert_int_equal(listener_port(l, 5), 0);

	/* accept with nothing coming: the deadline */
	dm_err_clear(&err);
	struct transport *t = NULL;
	long t0 = transport_now_ms();
	assert_int_equal(listener_accept(l, t0 + 50, &t, &err), DM_ETIMEOUT);
	assert_null(t);
	assert_true(transport_now_ms() - t0 >= 45);
	listener_close(l);
	listener_close(NULL);
	assert_int_equal(listener_count(NULL), 0);
}

/* A plain listener without a certificate: STARTTLS on what it accepted is
 * a configuration error, not a client handshake. */
static int starttls_no_cert_fn(struct srv *s, struct transport *t)
{
	struct dm_err err;
	dm_err_clear(&err);
	if (transport_start_tls(t, &err) != DM_ECONFIG)
		return srv_fail(s, "start_tls without a certificate", &err);
	snprintf(s->line, sizeof(s->line), "%.255s", err.msg);
	return 0;
}

static void test_server_without_cert(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, both_loopbacks, 1, false, NULL, starttls_no_cert_fn, 1);
	struct transport_settings cs = client_settings("127.0.0.1",
	                                               listener_port(s.l, 0));
	struct transport *t = client_connect(&cs);
	assert_int_equal(wait_close(t), 0);
	transport_close(t);
	assert_int_equal(srv_stop(&s), 0);
	assert_non_null(strstr(s.line, "no certificate"));
	assert_non_null(strstr(s.line, "127.0.0.1:"));
}

/* A client that speaks no TLS to an implicit-TLS listener: that accept
 * fails naming the peer; the listener goes on accepting. */
static void test_implicit_handshake_failure_keeps_listener(void **state)
{
	(void)state;
	char dr[600];
	new_root(dr, sizeof(dr));
	struct server_cert *cert = ensure_cert(dr);
	struct listener_settings ls = {
		.addrs = both_loopbacks, .n_addrs = 1, .implicit_tls = true,
		.cert = cert, .timeout_ms = STEP_MS,
	};
	struct listener *l = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(listener_open(&ls, &l, &err), DM_OK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)listener_port(l, 0)),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	static const char junk[] = "GET / HTTP/1.0\r\n\r\n";
	assert_int_equal(write(fd, junk, sizeof(junk) - 1), sizeof(junk) - 1);
	struct transport *t = NULL;
	enum dm_status st = listener_accept(l, transport_now_ms() + STEP_MS, &t,
	                                    &err);
	print_message("plain client to implicit TLS: %s\n", err.msg);
	assert_true(st == DM_ETLS || st == DM_ENET);
	assert_null(t);
	assert_non_null(strstr(err.msg, "TLS handshake with 127.0.0.1:"));
	close(fd);

	/* the next client is served */
	struct srv s;
	memset(&s, 0, sizeof(s));
	s.l = l;
	s.fn = greet_echo_fn;
	s.conns = 1;
	assert_int_equal(pthread_create(&s.thread, NULL, srv_main, &s), 0);
	s.running = true;
	struct transport_settings cs = client_settings("127.0.0.1",
	                                               listener_port(l, 0));
	cs.fingerprint = server_cert_fingerprint(cert);
	implicit_client(&cs, cert, true);
	assert_int_equal(srv_stop(&s), 0);
	server_cert_free(cert);
}

/* ---- gnutls-cli as the client ------------------------------------------- */

struct child {
	pid_t pid;
	int in;                    /* its stdin */
	int out;                   /* its stdout + stderr */
};

static void child_start(struct child *c, char *const argv[])
{
	int in[2], out[2];
	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	c->pid = fork();
	assert_true(c->pid >= 0);
	if (c->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(out[1], 2);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	c->in = in[1];
	c->out = out[0];
}

/* Reads the child's output until EOF or the deadline into buf[cap]. */
static size_t child_read_all(struct child *c, char *buf, size_t cap,
                             long deadline)
{
	size_t n = 0;
	for (int i = 0; i < 10000 && n + 1 < cap; i++) {
		long left = deadline - transport_now_ms();
		if (left <= 0)
			break;
		struct pollfd p = { .fd = c->out, .events = POLLIN };
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		ssize_t got = read(c->out, buf + n, cap - 1 - n);
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	buf[n] = '\0';
	return n;
}

/* Stops the child by its PID (SIGTERM, a bounded wait, SIGKILL) and reaps
 * it.  Returns its exit status, or -1 when it had to be killed. */
static int child_stop(struct child *c)
{
	if (c->in >= 0)
		close(c->in);
	c->in = -1;
	int status = 0;
	for (int i = 0; i < 300; i++) {
		pid_t r = waitpid(c->pid, &status, WNOHANG);
		if (r == c->pid) {
			close(c->out);
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		}
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
	}
	kill(c->pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
			close(c->out);
			return -1;
		}
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
	}
	kill(c->pid, SIGKILL);
	waitpid(c->pid, &status, 0);
	close(c->out);
	return -1;
}

/* Greeting, then one line from gnutls-cli's stdin answered; then we close. */
static int cli_echo_fn(struct srv *s, struct transport *t)
{
	struct dm_err err;
	dm_err_clear(&err);
	if (line_send(t, "220 devmail test over TLS\r\n", &err) != 0 ||
	    line_read(t, s->line, sizeof(s->line), &err) != 0)
		return srv_fail(s, "implicit", &err);
	char reply[300];
	snprintf(reply, sizeof(reply), "250 got %s", s->line);
	return line_send(t, reply, &err);   /* closing ends gnutls-cli */
}

/* gnutls-cli --starttls-proto smtp: it may send its EHLO before or after
 * our greeting; it wants a "220 " line, then sends STARTTLS and wants
 * another "220 ". */
static int cli_smtp_fn(struct srv *s, struct transport *t)
{
	struct dm_err err;
	dm_err_clear(&err);
	if (line_send(t, "220 devmail ESMTP test\r\n", &err) != 0 ||
	    line_read(t, s->line, sizeof(s->line), &err) != 0 ||
	    strncmp(s->line, "EHLO ", 5) != 0)
		return srv_fail(s, "EHLO", &err);
	if (line_send(t, "250-devmail\r\n250 STARTTLS\r\n", &err) != 0 ||
	    line_read(t, s->line, sizeof(s->line), &err) != 0 ||
	    strncmp(s->line, "STARTTLS", 8) != 0)
		return srv_fail(s, "STARTTLS", &err);
	if (transport_write(t, "220 2.0.0 Ready to start TLS\r\n", 31, &err)
	    != DM_OK || transport_start_tls(t, &err) != DM_OK)
		return srv_fail(s, "server start_tls", &err);
	if (line_read(t, s->line, sizeof(s->line), &err) != 0)
		return srv_fail(s, "line over TLS", &err);
	char reply[300];
	snprintf(reply, sizeof(reply), "250 got %s", s->line);
	return line_send(t, reply, &err);
}

static void gnutls_cli(bool starttls, const char *host, size_t addr_index)
{
	char dr[600], cafile[700], port[16], cafile_opt[720];
	new_root(dr, sizeof(dr));
	snprintf(cafile, sizeof(cafile), "%s/%s", dr, SERVER_CERT_FILE);
	struct server_cert *cert = ensure_cert(dr);
	struct srv s;
	srv_start(&s, both_loopbacks, 2, !starttls, cert,
	          starttls ? cli_smtp_fn : cli_echo_fn, 1);
	snprintf(port, sizeof(port), "%u", listener_port(s.l, addr_index));
	snprintf(cafile_opt, sizeof(cafile_opt), "--x509cafile=%s", cafile);
	char *argv_tls[] = { "gnutls-cli", cafile_opt, "-p", port,
	                     (char *)host, NULL };
	char *argv_smtp[] = { "gnutls-cli", "--starttls-proto=smtp", cafile_opt,
	                      "-p", port, (char *)host, NULL };
	struct child c;
	child_start(&c, starttls ? argv_smtp : argv_tls);
	static const char hello[] = "HELLO from gnutls-cli\n";
	assert_int_equal(write(c.in, hello, sizeof(hello) - 1), sizeof(hello) - 1);
	static char out[65536];
	child_read_all(&c, out, sizeof(out), transport_now_ms() + CHILD_MS);
	int status = child_stop(&c);
	int srv_result = srv_stop(&s);
	print_message("gnutls-cli %s%s exit %d:\n%s\n", starttls ? "(STARTTLS) " : "",
	              host, status, out);
	assert_int_equal(srv_result, 0);
	assert_string_equal(s.line, "HELLO from gnutls-cli\n");
	assert_non_null(strstr(out, "The certificate is trusted"));
	assert_non_null(strstr(out, "Handshake was completed"));
	assert_non_null(strstr(out, "250 got HELLO from gnutls-cli"));
	if (!starttls)
		assert_non_null(strstr(out, "220 devmail test over TLS"));
	assert_true(s.info[0].active);
	server_cert_free(cert);
}

static void test_gnutls_cli_implicit_v4(void **state)
{
	(void)state;
	gnutls_cli(false, "127.0.0.1", 0);
}

static void test_gnutls_cli_starttls_smtp_v6(void **state)
{
	(void)state;
	gnutls_cli(true, "::1", 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_implicit_tls_pin_and_cafile_v4_v6),
		cmocka_unit_test(test_implicit_tls_refused_unpinned),
		cmocka_unit_test(test_starttls_both_roles_v4_v6),
		cmocka_unit_test(test_quickack_after_ticket_only_read),
		cmocka_unit_test(test_cert_generated_once),
		cmocka_unit_test(test_cert_concurrent_processes),
		cmocka_unit_test(test_cert_damaged_and_modes),
		cmocka_unit_test(test_cert_load_operator_files),
		cmocka_unit_test(test_listener_errors),
		cmocka_unit_test(test_server_without_cert),
		cmocka_unit_test(test_implicit_handshake_failure_keeps_listener),
		cmocka_unit_test(test_gnutls_cli_implicit_v4),
		cmocka_unit_test(test_gnutls_cli_starttls_smtp_v6),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
