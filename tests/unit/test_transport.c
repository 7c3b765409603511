/* test_transport.c - the transport against a real loopback server
 * (tests/lib/tls_server): plain TCP over 127.0.0.1 and ::1, connect and
 * read errors, implicit TLS and STARTTLS with verification, pins, response
 * injection, write coalescing, protocol floor, channel binding, the TLS
 * session prepared ahead of STARTTLS (used, never used, failed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "net/transport.h"
#include "net/transport_ops.h"   /* white box: the output buffer is wiped */
#include "netfault.h"
#include "tls_server.h"

#define TRANSPORT_BLOCK 4096

static char pki[256];

static void pki_path(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", pki, name);
}

static int group_teardown(void **state)
{
	(void)state;
	static const char *files[] = { "ca.pem", "ca.key", "server.pem",
		"server.key", "chain.pem", "other.pem", "other.key", "self.pem",
		"self.key" };
	char p[512];
	if (pki[0] == '\0')
		return 0;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		pki_path(p, sizeof(p), files[i]);
		unlink(p);  /* ENOENT is fine: setup may have stopped halfway */
	}
	int rc = rmdir(pki);
	pki[0] = '\0';  /* cmocka may call us again after a failed setup */
	return rc;
}

static int group_setup(void **state)
{
	(void)state;
	const char *tmp = getenv("TMPDIR");
	snprintf(pki, sizeof(pki), "%s/dm-transport-XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(pki) == NULL)
		return -1;
	if (tls_server_make_pki(pki) != 0) {
		fprintf(stderr, "cannot make the test PKI in %s "
		        "(is DEVMAIL_SOURCE_DIR set?)\n", pki);
		group_teardown(state);
		return -1;
	}
	return 0;
}

/* Starts a server; the cert names are files in the PKI dir (NULL: plain). */
static struct tls_server *server_start(int family, const char *cert,
                                       const char *key, bool implicit,
                                       const char *priority, tls_server_fn fn,
                                       void *arg)
{
	char c[512], k[512], why[512] = "";
	struct tls_server_opts o = {
		.family = family, .implicit_tls = implicit, .priority = priority,
		.fn = fn, .arg = arg, .timeout_ms = 10000,
	};
	if (cert != NULL) {
		pki_path(c, sizeof(c), cert);
		pki_path(k, sizeof(k), key);
		o.cert = c;
		o.key = k;
	}
	struct tls_server *s = NULL;
	if (tls_server_start(&o, &s, why, sizeof(why)) != 0)
		fail_msg("tls_server_start: %s", why);
	return s;
}

static struct transport_settings settings(const char *host, unsigned port)
{
	static char ca[512];
	pki_path(ca, sizeof(ca), "ca.pem");
	struct transport_settings s = {
		.host = host, .port = port, .timeout_ms = 10000, .verify = true,
		.cafile = ca, .fingerprint = NULL, .system_trust = false,
	};
	return s;
}

static void read_exact(struct transport *t, char *buf, size_t n)
{
	size_t have = 0;
	struct dm_err err;
	for (int i = 0; have < n && i < 100000; i++) {
		size_t got = 0;
		dm_err_clear(&err);
		enum dm_status st = transport_read(t, buf + have, n - have, &got, &err);
		if (st != DM_OK)
			fail_msg("transport_read: %s", err.msg);
		if (got == 0)
			fail_msg("peer closed after %zu of %zu bytes", have, n);
		have += got;
	}
	assert_int_equal(have, n);
}

static void round_trip(struct transport *t, const char *text)
{
	struct dm_err err;
	char buf[256];
	size_t n = strlen(text);
	dm_err_clear(&err);
	assert_int_equal(transport_write(t, text, n, &err), DM_OK);
	assert_int_equal(transport_flush(t, &err), DM_OK);
	read_exact(t, buf, n);
	assert_memory_equal(buf, text, n);
}

static bool have_ipv6_loopback(void)
{
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd < 0)
		return false;
	struct sockaddr_in6 a = { .sin6_family = AF_INET6,
	                          .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

/* ---- plain ------------------------------------------------------------- */

static void plain_echo(int family, const char *host)
{
	struct tls_server *srv = server_start(family, NULL, NULL, false, NULL,
	                                      NULL, NULL);
	struct transport_settings s = settings(host, tls_server_port(srv));
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = transport_connect(&s, &t, &err);
	if (st != DM_OK)
		fail_msg("connect: %s", err.msg);
	assert_true(transport_fd(t) >= 0);
	assert_false(transport_tls_info(t)->active);
	round_trip(t, "EHLO devmail.test\r\n");
	round_trip(t, "QUIT\r\n");
	/* Nagle off; quick ACKs re-armed by the last read (Linux leaves
	 * quick-ACK mode on its own once the exchange looks interactive). */
	int v = 0;
	socklen_t vl = sizeof(v);
	assert_int_equal(getsockopt(transport_fd(t), IPPROTO_TCP, TCP_NODELAY,
	                            &v, &vl), 0);
	assert_int_equal(v, 1);
	v = 0;
	vl = sizeof(v);
	assert_int_equal(getsockopt(transport_fd(t), IPPROTO_TCP, TCP_QUICKACK,
	                            &v, &vl), 0);
	assert_int_equal(v, 1);
	const struct transport_stats *stats = transport_stats(t);
	assert_int_equal(stats->bytes_out, 25);
	assert_int_equal(stats->bytes_in, 25);
	assert_int_equal(stats->flushes, 2);
	unsigned char cb[64];
	size_t cblen = 1;
	assert_int_equal(transport_channel_binding(t, "tls-exporter", cb,
	                                           sizeof(cb), &cblen, NULL),
	                 DM_ENOTFOUND);
	assert_int_equal(cblen, 0);
	transport_close(t);
	assert_int_equal(tls_server_stop(srv), 0);
	tls_server_free(srv);
}

static void test_plain_echo_v4(void **state)
{
	(void)state;
	plain_echo(AF_INET, "127.0.0.1");
}

static void test_plain_echo_v6(void **state)
{
	(void)state;
	/* IPv6 is part of what the transport promises: no silent skip. */
	if (!have_ipv6_loopback())
		fail_msg("no IPv6 loopback (::1) on this machine");
	plain_echo(AF_INET6, "::1");
}

/* An AUTH line leaves no copy in the output buffer once it is sent. */
static void test_flush_wipes_buffer(void **state)
{
	(void)state;
	static const char line[] = "AUTH PLAIN AGJlbmNoAHNlY3JldC1wdw==\r\n";
	struct tls_server *srv = server_start(AF_INET, NULL, NULL, false, NULL,
	                                      NULL, NULL);
	struct transport_settings s = settings("127.0.0.1", tls_server_port(srv));
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	if (transport_connect(&s, &t, &err) != DM_OK)
		fail_msg("connect: %s", err.msg);
	round_trip(t, line);
	assert_int_equal(t->olen, 0);
	for (size_t i = 0; i < sizeof(line); i++)
		assert_int_equal(t->obuf[i], 0);
	transport_close(t);
	assert_int_equal(tls_server_stop(srv), 0);
	tls_server_free(srv);
}

static void test_plain_echo_localhost_name(void **state)
{
	(void)state;
	/* "localhost" resolves through getaddrinfo; whichever family it
	 * lists first, a refused address must fall through to the next. */
	plain_echo(AF_INET, "localhost");
}

static void test_connect_refused(void **state)
{
	(void)state;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &sl), 0);
	unsigned port = ntohs(a.sin_port);
	close(fd);  /* nothing listens there now */

	struct transport_settings s = settings("127.0.0.1", port);
	struct transport *t = (struct transport *)&s;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_connect(&s, &t, &err), DM_ENET);
	assert_null(t);
	char want[64];
	snprintf(want, sizeof(want), "127.0.0.1:%u", port);
	assert_non_null(strstr(err.msg, want));
	assert_non_null(strstr(err.msg, "refused"));
}

/* The connect-timeout error path: a listener whose accept queue is full
 * drops our SYN, so the connect gets no answer within timeout_ms.  The
 * message reports the timeout, which transport_connect() must read before
 * it frees the handle (under ASan a read after the free aborts the test). */
static void connect_timeout(int family)
{
	struct backlog_full b;
	char why[256];
	if (backlog_full_open(family, &b, why, sizeof(why)) != 0)
		fail_msg("%s", why);
	struct transport_settings s = settings(b.host, b.port);
	s.timeout_ms = 200;
	struct transport *t = (struct transport *)&s;
	struct dm_err err;
	dm_err_clear(&err);
	long t0 = transport_now_ms();
	enum dm_status st = transport_connect(&s, &t, &err);
	long took = transport_now_ms() - t0;
	backlog_full_close(&b);
	print_message("connect to a full backlog (%s): %ld ms: %s\n", b.host,
	              took, err.msg);
	assert_int_equal(st, DM_ETIMEOUT);
	assert_null(t);
	char want[160];
	snprintf(want, sizeof(want), "cannot connect to %s%s%s:%u (last tried %s): "
	         "no answer within 200 ms", family == AF_INET6 ? "[" : "", b.host,
	         family == AF_INET6 ? "]" : "", b.port, b.host);
	assert_string_equal(err.msg, want);
	assert_true(took >= 190);
}

static void test_connect_timeout_v4(void **state)
{
	(void)state;
	connect_timeout(AF_INET);
}

static void test_connect_timeout_v6(void **state)
{
	(void)state;
	if (!have_ipv6_loopback())
		fail_msg("no IPv6 loopback (::1) on this machine");
	connect_timeout(AF_INET6);
}

static void test_connect_bad_name(void **state)
{
	(void)state;
	struct transport_settings s = settings("no-such-host.invalid", 25);
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_connect(&s, &t, &err), DM_ENET);
	assert_non_null(strstr(err.msg, "no-such-host.invalid:25"));
}

static int wait_close_fn(struct tls_server_conn *c, void *arg)
{
	(void)arg;
	return tls_server_wait_close(c);
}

static void test_read_timeout(void **state)
{
	(void)state;
	struct tls_server *srv = server_start(AF_INET, NULL, NULL, false, NULL,
	                                      wait_close_fn, NULL);
	struct transport_settings s = settings("127.0.0.1", tls_server_port(srv));
	s.timeout_ms = 200;
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_connect(&s, &t, &err), DM_OK);
	char buf[16];
	size_t got = 99;
	assert_int_equal(transport_read(t, buf, sizeof(buf), &got, &err),
	                 DM_ETIMEOUT);
	assert_int_equal(got, 0);
	assert_non_null(strstr(err.msg, "127.0.0.1:"));
	transport_close(t);
	assert_int_equal(tls_server_stop(srv), 0);
	tls_server_free(srv);
}

static void test_handshake_timeout(void **state)
{
	(void)state;
	/* A plain server that never answers the ClientHello. */
	struct tls_server *srv = server_start(AF_INET, NULL, NULL, false, NULL,
	                                      wait_close_fn, NULL);
	struct transport_settings s = settings("localhost", tls_server_port(srv));
	s.host = "127.0.0.1";
	s.timeout_ms = 200;
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_connect(&s, &t, &err), DM_OK);
	assert_int_equal(transport_start_tls(t, &err), DM_ETIMEOUT);
	assert_false(transport_tls_info(t)->active);
	transport_close(t);
	tls_server_stop(srv);
	tls_server_free(srv);
}

static void test_from_fd(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct transport_settings s = settings("peer", 0);
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_from_fd(sv[0], &s, &t, &err), DM_OK);
	assert_int_equal(transport_fd(t), sv[0]);
	assert_int_equal(transport_write(t, "abc", 3, &err), DM_OK);
	char buf[8];
	struct pollfd p = { .fd = sv[1], .events = POLLIN };
	assert_int_equal(poll(&p, 1, 0), 0);  /* buffered, not sent */
	assert_int_equal(transport_flush(t, &err), DM_OK);
	assert_int_equal(read(sv[1], buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "abc", 3);
	assert_int_equal(write(sv[1], "xyz", 3), 3);
	read_exact(t, buf, 3);
	assert_memory_equal(buf, "xyz", 3);
	close(sv[1]);
	size_t got = 9;
	assert_int_equal(transport_read(t, buf, sizeof(buf), &got, &err), DM_OK);
	assert_int_equal(got, 0);  /* peer closed */
	transport_close(t);
	transport_close(NULL);
}

/* transport_read_until(): the deadline, not the handle's timeout, bounds
 * the wait; bytes already there are returned even past the deadline. */
static void test_read_until_deadline(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct transport_settings s = settings("peer", 0);
	s.timeout_ms = 600000;   /* would hang the test if it were used */
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_from_fd(sv[0], &s, &t, &err), DM_OK);
	char buf[8];
	size_t got = 9;
	long past = transport_now_ms() - 1;
	assert_int_equal(transport_read_until(t, buf, sizeof(buf), past, &got, &err),
	                 DM_ETIMEOUT);
	assert_int_equal(got, 0);
	assert_non_null(strstr(err.msg, "timed out"));
	assert_int_equal(write(sv[1], "q", 1), 1);
	dm_err_clear(&err);
	assert_int_equal(transport_read_until(t, buf, sizeof(buf), past, &got, &err),
	                 DM_OK);
	assert_int_equal(got, 1);
	assert_int_equal(buf[0], 'q');
	close(sv[1]);
	transport_close(t);
}

/* ---- implicit TLS ------------------------------------------------------ */

/* Connects to a TLS server with the given cert and client settings tweak;
 * returns the start_tls status, the handle in *out (closed on failure). */
static enum dm_status tls_connect(struct tls_server *srv, const char *host,
                                  struct transport_settings *s,
                                  struct transport **out, struct dm_err *err)
{
	s->host = host;
	s->port = tls_server_port(srv);
	struct transport *t = NULL;
	enum dm_status st = transport_connect(s, &t, err);
	if (st != DM_OK)
		fail_msg("connect: %s", err->msg);
	st = transport_start_tls(t, err);
	if (st != DM_OK) {
		transport_close(t);
		t = NULL;
	}
	*out = t;
	return st;
}

static void implicit_verified(int family, const char *host)
{
	struct tls_server *srv = server_start(family, "server.pem", "server.key",
	                                      true, NULL, NULL, NULL);
	struct transport_settings s = settings(host, 0);
	struct transport *t;
	struct dm_err err;
	dm_err_clear(&err);
	if (tls_connect(srv, host, &s, &t, &err) != DM_OK)
		fail_msg("start_tls: %s", err.msg);
	const struct transport_tls_info *info = transport_tls_info(t);
	assert_true(info->active);
	assert_true(info->verified);
	assert_false(info->pinned);
	assert_string_equal(info->verify_error, "");
	assert_true(strcmp(info->version, "TLS1.3") == 0 ||
	            strcmp(info->version, "TLS1.2") == 0);
	assert_true(info->cipher[0] != '\0');
	assert_non_null(strstr(info->subject, "CN=localhost"));
	char fp[96], path[512];
	pki_path(path, sizeof(path), "server.pem");
	assert_int_equal(tls_server_fingerprint(path, fp), 0);
	assert_string_equal(info->fingerprint, fp);
	round_trip(t, "EHLO over TLS\r\n");
	round_trip(t, "QUIT\r\n");
	char version[16];
	snprintf(version, sizeof(version), "%s", info->version);
	transport_close(t);
	assert_int_equal(tls_server_stop(srv), 0);
	assert_string_equal(tls_server_version(srv), version);
	tls_server_free(srv);
}

static void test_tls_verified_localhost(void **state)
{
	(void)state;
	implicit_verified(AF_INET, "localhost");
}

static void test_tls_verified_ipv4_literal(void **state)
{
	(void)state;
	implicit_verified(AF_INET, "127.0.0.1");
}

static void test_tls_verified_ipv6_literal(void **state)
{
	(void)state;
	/* IPv6 is part of what the transport promises: no silent skip. */
	if (!have_ipv6_loopback())
		fail_msg("no IPv6 loopback (::1) on this machine");
	implicit_verified(AF_INET6, "::1");
}

static void test_tls_host_mismatch(void **state)
{
	(void)state;
	struct tls_server *srv = server_start(AF_INET, "other.pem", "other.key",
	                                      true, NULL, NULL, NULL);
	struct transport_settings s = settings("localhost", 0);
	struct transport *t;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(tls_connect(srv, "localhost", &s, &t, &err), DM_ETLS);
	assert_null(t);
	assert_non_null(strstr(err.msg, "host name mismatch"));
	assert_non_null(strstr(err.msg, "wrong.example"));
	tls_server_stop(srv);
	tls_server_free(srv);
}

static void test_tls_ip_not_in_sans(void **state)
{
	(void)state;
	/* other.pem has no IP SANs: an IP literal must not match its DNS name. */
	struct tls_server *srv = server_start(AF_INET, "other.pem", "other.key",
	                                      true, NULL, NULL, NULL);
	struct transport_settings s = settings("127.0.0.1", 0);
	struct transport *t;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(tls_connect(srv, "127.0.0.1", &s, &t, &err), DM_ETLS);
	assert_non_null(strstr(err.msg, "host name mismatch"));
	tls_server_stop(srv);
	tls_server_free(srv);
}

static void test_tls_self_signed_refused(void **state)
{
	(void)state;
	struct tls_server *srv = server_start(AF_INET, "self.pem", "self.key",
	                                      true, NULL, NULL, NULL);
	struct transport_settings s = settings("localhost", 0);
	struct transport *t;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(tls_connect(srv, "localhost", &s, &t, &err), DM_ETLS);
	assert_non_null(strstr(err.msg, "certificate for localhost not trusted"));
	assert_non_null(strstr(err.msg, "signer not found"));
	tls_server_stop(srv);
	tls_server_free(srv);
}

static void test_tls_no_anchor_refused(void **state)
{
	(void)state;
	/* The CA-signed server with no cafile and no system store. */
	struct tls_server *srv = server_start(AF_INET, "server.pem", "server.key",
	                                      true, NULL, NULL, NULL);
	struct transport_settings s = settings("localhost", 0);
	s.cafile = NULL;
	struct transport *t;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(tls_connect(srv, "localhost", &s, &t, &err), DM_ETLS);
	assert_non_null(strstr(err.msg, "not trusted"));
	tls_server_stop(srv);
	tls_server_free(srv);
}

/* With the system store on as well (smtp.c's setting), the cafile still
 * verifies a chain that leads to it, and twice in a row (the system list
 * is loaded once per process and kept). */
static void test_tls_system_trust_plus_cafile(void **state)
{
	(void)state;
	for (int i = 0; i < 2; i++) {
		struct tls_server *srv = server_start(AF_INET, "server.pem",
		                                      "server.key", true, NULL,
		                                      NULL, NULL);
		struct transport_settings s = settings("localhost", 0);
		s.system_trust = true;
		struct transport *t;
		struct dm_err err;
		dm_err_clear(&err);
		if (tls_connect(srv, "localhost", &s, &t, &err) != DM_OK)
			fail_msg("start_tls: %s", err.msg);
		assert_true(transport_tls_info(t)->verified);
		round_trip(t, "NOOP\r\n");
		transport_close(t);
		assert_int_equal(tls_server_stop(srv), 0);
		tls_server_free(srv);
	}
}

/* The system store on, a cafile that does not lead to the server's
 * signer: the system store is consulted too and does not know it either. */
static void test_tls_system_trust_self_signed_refused(void **state)
{
	(void)state;
	struct tls_server *srv = server_start(AF_INET, "self.pem", "self.key",
	                                      true, NULL, NULL, NULL);
	struct transport_settings s = settings("localhost", 0);
	s.system_trust = true;
	for (int k = 0; k < 2; k++) {
		if (k == 1)
			s.cafile = NULL;   /* the system store alone */
		struct transport *t;
		struct dm_err err;
		dm_err_clear(&err);
		assert_int_equal(tls_connect(srv, "localhost", &s, &t, &err), DM_ETLS);
		assert_non_null(strstr(err.msg, "not trusted"));
		assert_non_null(strstr(err.msg, "signer not found"));
		if (k == 0) {
			tls_server_stop(srv);
			tls_server_free(srv);
			srv = server_start(AF_INET, "self.pem", "self.key", true, NULL,
			                   NULL, NULL);
		}
	}
	tls_server_stop(srv);
	tls_server_free(srv);
}

static void test_tls_verify_off(void **state)
{
	(void)state;
	struct tls_server *srv = server_start(AF_INET, "self.pem", "self.key",
	                                      true, NULL, NULL, NULL);
	struct transport_settings s = settings("localhost", 0);
	s.verify = false;
	struct transport *t;
	struct dm_err err;
	dm_err_clear(&err);
	if (tls_connect(srv, "localhost", &s, &t, &err) != DM_OK)
		fail_msg("start_tls: %s", err.msg);
	const struct transport_tls_info *info = transport_tls_info(t);
	assert_true(info->active);
	assert_false(info->verified);
	assert_false(info->pinned);
	assert_non_null(strstr(info->verify_error, "signer not found"));
	round_trip(t, "NOOP\r\n");
	transport_close(t);
	assert_int_equal(tls_server_stop(srv), 0);
	tls_server_free(srv);
}

/* Uppercases and keeps the colons: pins are accepted in either case. */
static void upper(char *p)
{
	for (; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
}

static void test_tls_pin_match_self_signed(void **state)
{
	(void)state;
	struct tls_server *srv = server_start(AF_INET, "self.pem", "self.key",
	                                      true, NULL, NULL, NULL);
	char fp[96], path[512];
	pki_path(path, sizeof(path), "self.pem");
	assert_int_equal(tls_server_fingerprint(path, fp), 0);
	upper(fp);
	struct transport_settings s = settings("localhost", 0);
	s.fingerprint = fp;
	struct transport *t;
	struct dm_err err;
	dm_err_clear(&err);
	if (tls_connect(srv, "localhost", &s, &t, &err) != DM_OK)
		fail_msg("start_tls: %s", err.msg);
	const struct transport_tls_info *info = transport_tls_info(t);
	assert_true(info->verified);
	assert_true(info->pinned);
	round_trip(t, "NOOP\r\n");
	transport_close(t);
	assert_int_equal(tls_server_stop(srv), 0);
	tls_server_free(srv);
}

static void test_tls_pin_mismatch(void **state)
{
	(void)state;
	/* Trusted chain and right name, but the pin names another cert. */
	struct tls_server *srv = server_start(AF_INET, "server.pem", "server.key",
	                                      true, NULL, NULL, NULL);
	char fp[96], path[512];
	pki_path(path, sizeof(path), "other.pem");
	assert_int_equal(tls_server_fingerprint(path, fp), 0);
	struct transport_settings s = settings("localhost", 0);
	s.fingerprint = fp;
	struct transport *t;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(tls_connect(srv, "localhost", &s, &t, &err), DM_ETLS);
	assert_non_null(strstr(err.msg, "fingerprint mismatch"));
	tls_server_stop(srv);
	tls_server_free(srv);

	/* verify=false does not weaken a pin. */
	srv = server_start(AF_INET, "server.pem", "server.key", true, NULL, NULL,
	                   NULL);
	s = settings("localhost", 0);
	s.fingerprint = fp;
	s.verify = false;
	dm_err_clear(&err);
	assert_int_equal(tls_connect(srv, "localhost", &s, &t, &err), DM_ETLS);
	tls_server_stop(srv);
	tls_server_free(srv);
}

static void test_tls_pin_malformed(void **state)
{
	(void)state;
	struct tls_server *srv = server_start(AF_INET, "server.pem", "server.key",
	                                      true, NULL, NULL, NULL);
	struct transport_settings s = settings("localhost", 0);
	s.fingerprint = "abcd";
	struct transport *t;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(tls_connect(srv, "localhost", &s, &t, &err), DM_ECONFIG);
	assert_non_null(strstr(err.msg, "64 hex"));
	tls_server_stop(srv);
	tls_server_free(srv);
}

static void test_tls11_server_refused(void **state)
{
	(void)state;
	struct tls_server *srv = server_start(AF_INET, "server.pem", "server.key",
	                                      true, "NORMAL:-VERS-ALL:+VERS-TLS1.1",
	                                      NULL, NULL);
	struct transport_settings s = settings("localhost", 0);
	struct transport *t;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(tls_connect(srv, "localhost", &s, &t, &err), DM_ETLS);
	assert_null(t);
	assert_non_null(strstr(err.msg, "TLS handshake with localhost:"));
	print_message("TLS 1.1 server: %s\n", err.msg);
	assert_int_equal(tls_server_stop(srv), -1);
	assert_string_equal(tls_server_version(srv), "");
	tls_server_free(srv);
}

/* ---- STARTTLS ---------------------------------------------------------- */

static int starttls_fn(struct tls_server_conn *c, void *arg)
{
	(void)arg;
	char line[128];
	if (tls_server_writes(c, "220 hi\r\n") != 0 ||
	    tls_server_read_line(c, line, sizeof(line)) <= 0 ||
	    strcmp(line, "STARTTLS\r\n") != 0 ||
	    tls_server_writes(c, "220 go\r\n") != 0 || tls_server_start_tls(c) != 0)
		return -1;
	if (tls_server_read_line(c, line, sizeof(line)) <= 0 ||
	    strcmp(line, "EHLO again\r\n") != 0)
		return -1;
	if (tls_server_writes(c, "250 ok\r\n") != 0)
		return -1;
	return tls_server_wait_close(c);
}

/* STARTTLS as smtp.c does it; `prepare`: the session made right after
 * connect (transport_prepare_tls), before the greeting is read. */
static void starttls_upgrade(bool prepare)
{
	struct tls_server *srv = server_start(AF_INET, "server.pem", "server.key",
	                                      false, NULL, starttls_fn, NULL);
	struct transport_settings s = settings("localhost", tls_server_port(srv));
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_connect(&s, &t, &err), DM_OK);
	if (prepare) {
		transport_prepare_tls(t);
		assert_non_null(t->tls);
		void *made = t->tls;
		transport_prepare_tls(t);            /* a second call: no-op */
		assert_ptr_equal(t->tls, made);
		assert_false(transport_tls_info(t)->active);
	}
	char buf[32];
	read_exact(t, buf, 8);
	assert_memory_equal(buf, "220 hi\r\n", 8);
	assert_int_equal(transport_write(t, "STARTTLS\r\n", 10, &err), DM_OK);
	assert_int_equal(transport_flush(t, &err), DM_OK);
	read_exact(t, buf, 8);
	assert_memory_equal(buf, "220 go\r\n", 8);
	int fd = transport_fd(t);
	if (transport_start_tls(t, &err) != DM_OK)
		fail_msg("start_tls: %s", err.msg);
	assert_int_equal(transport_fd(t), fd);  /* same handle, same socket */
	assert_true(transport_tls_info(t)->active);
	assert_true(transport_tls_info(t)->verified);
	assert_int_equal(transport_write(t, "EHLO again\r\n", 12, &err), DM_OK);
	assert_int_equal(transport_flush(t, &err), DM_OK);
	read_exact(t, buf, 8);
	assert_memory_equal(buf, "250 ok\r\n", 8);
	assert_int_equal(transport_start_tls(t, &err), DM_EPROTO);  /* twice */
	transport_prepare_tls(t);                 /* TLS active: no-op */
	transport_close(t);
	assert_int_equal(tls_server_stop(srv), 0);
	tls_server_free(srv);
}

static void test_starttls_upgrade(void **state)
{
	(void)state;
	starttls_upgrade(false);
}

static void test_starttls_prepared(void **state)
{
	(void)state;
	starttls_upgrade(true);
}

/* A prepared session that is never started (the server offered no
 * STARTTLS) is freed with the handle: ASan's leak check sees to it. */
static void test_prepared_never_started(void **state)
{
	(void)state;
	struct tls_server *srv = server_start(AF_INET, NULL, NULL, false, NULL,
	                                      NULL, NULL);
	struct transport_settings s = settings("localhost", tls_server_port(srv));
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_connect(&s, &t, &err), DM_OK);
	transport_prepare_tls(t);
	assert_non_null(t->tls);
	round_trip(t, "EHLO in clear\r\n");   /* still the plain table */
	assert_false(transport_tls_info(t)->active);
	transport_close(t);
	assert_int_equal(tls_server_stop(srv), 0);
	tls_server_free(srv);
}

/* What cannot be prepared is not: the handshake sets up again and reports
 * the error as it always did. */
static void test_prepare_bad_cafile(void **state)
{
	(void)state;
	struct tls_server *srv = server_start(AF_INET, "server.pem", "server.key",
	                                      false, NULL, starttls_fn, NULL);
	struct transport_settings s = settings("localhost", tls_server_port(srv));
	s.cafile = "/nonexistent/devmail-ca.pem";
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_connect(&s, &t, &err), DM_OK);
	transport_prepare_tls(t);
	assert_null(t->tls);
	char buf[32];
	read_exact(t, buf, 8);
	assert_int_equal(transport_write(t, "STARTTLS\r\n", 10, &err), DM_OK);
	assert_int_equal(transport_flush(t, &err), DM_OK);
	read_exact(t, buf, 8);
	assert_memory_equal(buf, "220 go\r\n", 8);
	assert_int_equal(transport_start_tls(t, &err), DM_ECONFIG);
	assert_non_null(strstr(err.msg, "Email/CAFile: cannot load "
	                                "'/nonexistent/devmail-ca.pem'"));
	transport_close(t);
	tls_server_stop(srv);
	tls_server_free(srv);
}

static int inject_fn(struct tls_server_conn *c, void *arg)
{
	(void)arg;
	/* The reply and the injected response leave in one segment. */
	if (tls_server_writes(c, "220 go\r\n250 injected\r\n") != 0)
		return -1;
	/* The client closes with our bytes unread, so this ends in a reset
	 * (ECONNRESET) rather than an orderly close: either is the end. */
	(void)tls_server_wait_close(c);
	return 0;
}

static void test_starttls_injection(void **state)
{
	(void)state;
	struct tls_server *srv = server_start(AF_INET, "server.pem", "server.key",
	                                      false, NULL, inject_fn, NULL);
	struct transport_settings s = settings("localhost", tls_server_port(srv));
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_connect(&s, &t, &err), DM_OK);
	char buf[8];
	read_exact(t, buf, 8);  /* exactly the reply; the rest stays queued */
	assert_memory_equal(buf, "220 go\r\n", 8);
	struct pollfd p = { .fd = transport_fd(t), .events = POLLIN };
	assert_int_equal(poll(&p, 1, 10000), 1);
	assert_int_equal(transport_start_tls(t, &err), DM_EPROTO);
	assert_string_equal(err.msg, "unexpected data after STARTTLS reply "
	                             "(possible response injection)");
	assert_false(transport_tls_info(t)->active);
	transport_close(t);
	assert_int_equal(tls_server_stop(srv), 0);
	tls_server_free(srv);
}

/* ---- coalescing -------------------------------------------------------- */

struct sink { size_t want; unsigned long sum; };

/* Reads `want` bytes, then answers "OK\r\n"; sum checks the content. */
static int sink_fn(struct tls_server_conn *c, void *arg)
{
	struct sink *k = arg;
	unsigned char buf[4096];
	size_t have = 0;
	for (int i = 0; have < k->want && i < 100000; i++) {
		ssize_t r = tls_server_read(c, buf, sizeof(buf));
		if (r <= 0)
			return -1;
		for (ssize_t j = 0; j < r; j++)
			k->sum = k->sum * 31 + buf[j];
		have += (size_t)r;
	}
	if (have != k->want || tls_server_writes(c, "OK\r\n") != 0)
		return -1;
	return tls_server_wait_close(c);
}

static void coalesce(bool tls)
{
	struct sink k = { .want = 1000 };
	struct tls_server *srv = server_start(AF_INET, "server.pem", "server.key",
	                                      tls, NULL, sink_fn, &k);
	struct transport_settings s = settings("localhost", tls_server_port(srv));
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_connect(&s, &t, &err), DM_OK);
	if (tls)
		assert_int_equal(transport_start_tls(t, &err), DM_OK);
	unsigned long sum = 0;
	for (int i = 0; i < 100; i++) {
		char line[11];
		snprintf(line, sizeof(line), "%08d\r\n", i);
		for (int j = 0; j < 10; j++)
			sum = sum * 31 + (unsigned char)line[j];
		assert_int_equal(transport_write(t, line, 10, &err), DM_OK);
	}
	assert_int_equal(transport_stats(t)->writes, 0);
	assert_int_equal(transport_flush(t, &err), DM_OK);
	assert_int_equal(transport_stats(t)->writes, 1);
	assert_int_equal(transport_stats(t)->flushes, 1);
	assert_int_equal(transport_stats(t)->bytes_out, 1000);
	assert_int_equal(transport_flush(t, &err), DM_OK);  /* empty: no-op */
	assert_int_equal(transport_stats(t)->writes, 1);
	char buf[4];
	read_exact(t, buf, 4);
	assert_memory_equal(buf, "OK\r\n", 4);
	transport_close(t);
	assert_int_equal(tls_server_stop(srv), 0);
	assert_int_equal(k.sum, sum);
	tls_server_free(srv);
}

static void test_coalesce_plain(void **state)
{
	(void)state;
	coalesce(false);
}

static void test_coalesce_tls(void **state)
{
	(void)state;
	coalesce(true);
}

static void test_big_write_tls_records(void **state)
{
	(void)state;
	enum { BIG = 40 * 1024 };
	struct sink k = { .want = BIG };
	struct tls_server *srv = server_start(AF_INET, "server.pem", "server.key",
	                                      true, NULL, sink_fn, &k);
	struct transport_settings s = settings("localhost", tls_server_port(srv));
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_connect(&s, &t, &err), DM_OK);
	assert_int_equal(transport_start_tls(t, &err), DM_OK);
	static unsigned char big[BIG];
	unsigned long sum = 0;
	for (size_t i = 0; i < BIG; i++) {
		big[i] = (unsigned char)('A' + i % 26);
		sum = sum * 31 + big[i];
	}
	assert_int_equal(transport_write(t, big, BIG, &err), DM_OK);
	assert_int_equal(transport_stats(t)->writes, 2);  /* two full records */
	assert_int_equal(transport_flush(t, &err), DM_OK);
	assert_int_equal(transport_stats(t)->writes, 3);
	assert_int_equal(transport_stats(t)->flushes, 3);
	assert_int_equal(transport_stats(t)->bytes_out, BIG);
	char buf[4];
	read_exact(t, buf, 4);
	assert_memory_equal(buf, "OK\r\n", 4);
	transport_close(t);
	assert_int_equal(tls_server_stop(srv), 0);
	assert_int_equal(k.sum, sum);
	tls_server_free(srv);
}

static int hang_up_fn(struct tls_server_conn *c, void *arg)
{
	(void)c;
	(void)arg;
	return 0;  /* the thread closes the connection at once */
}

/* Writing to a peer that has gone must fail with a status, never raise
 * SIGPIPE (which would kill the daemon). */
static void write_after_peer_closed(bool tls)
{
	struct tls_server *srv = server_start(AF_INET, "server.pem", "server.key",
	                                      tls, NULL, hang_up_fn, NULL);
	struct transport_settings s = settings("localhost", tls_server_port(srv));
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(transport_connect(&s, &t, &err), DM_OK);
	if (tls)
		assert_int_equal(transport_start_tls(t, &err), DM_OK);
	assert_int_equal(tls_server_stop(srv), 0);  /* server side closed */
	static unsigned char block[TRANSPORT_BLOCK];
	memset(block, 'x', sizeof(block));
	enum dm_status st = DM_OK;
	for (int i = 0; i < 200 && st == DM_OK; i++) {
		st = transport_write(t, block, sizeof(block), &err);
		if (st == DM_OK)
			st = transport_flush(t, &err);
	}
	assert_true(st == DM_ENET || st == DM_ETLS);
	assert_non_null(strstr(err.msg, "localhost:"));
	transport_close(t);
	tls_server_free(srv);
}

static void test_write_after_close_plain(void **state)
{
	(void)state;
	write_after_peer_closed(false);
}

static void test_write_after_close_tls(void **state)
{
	(void)state;
	write_after_peer_closed(true);
}

static void test_server_stop_without_client(void **state)
{
	(void)state;
	struct tls_server *srv = server_start(AF_INET, NULL, NULL, false, NULL,
	                                      NULL, NULL);
	assert_int_equal(tls_server_stop(srv), -1);
	assert_true(tls_server_error(srv)[0] != '\0');
	tls_server_free(srv);
}

/* ---- channel binding --------------------------------------------------- */

static void channel_binding(const char *priority, const char *version,
                            const char *good, const char *absent)
{
	struct tls_server *srv = server_start(AF_INET, "server.pem", "server.key",
	                                      true, priority, NULL, NULL);
	struct transport_settings s = settings("localhost", 0);
	struct transport *t;
	struct dm_err err;
	dm_err_clear(&err);
	if (tls_connect(srv, "localhost", &s, &t, &err) != DM_OK)
		fail_msg("start_tls: %s", err.msg);
	assert_string_equal(transport_tls_info(t)->version, version);
	unsigned char cb[64], scb[64];
	size_t len = 0;
	assert_int_equal(transport_channel_binding(t, good, cb, sizeof(cb), &len,
	                                           &err), DM_OK);
	assert_true(len > 0);
	if (absent != NULL)
		assert_int_equal(transport_channel_binding(t, absent, scb,
		                                           sizeof(scb), &len, NULL),
		                 DM_ENOTFOUND);
	assert_int_equal(transport_channel_binding(t, "tls-bogus", scb,
	                                           sizeof(scb), &len, NULL),
	                 DM_ENOTFOUND);
	size_t clen = 0;
	assert_int_equal(transport_channel_binding(t, good, cb, sizeof(cb), &clen,
	                                           &err), DM_OK);
	transport_close(t);
	assert_int_equal(tls_server_stop(srv), 0);
	size_t slen = tls_server_channel_binding(srv, good, scb, sizeof(scb));
	assert_int_equal(slen, clen);
	assert_memory_equal(cb, scb, clen);
	tls_server_free(srv);
}

static void test_cb_tls13_exporter(void **state)
{
	(void)state;
	channel_binding("NORMAL:-VERS-ALL:+VERS-TLS1.3", "TLS1.3", "tls-exporter",
	                "tls-unique");
}

static void test_cb_tls12_unique(void **state)
{
	(void)state;
	channel_binding("NORMAL:-VERS-ALL:+VERS-TLS1.2", "TLS1.2", "tls-unique",
	                NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_echo_v4),
		cmocka_unit_test(test_plain_echo_v6),
		cmocka_unit_test(test_plain_echo_localhost_name),
		cmocka_unit_test(test_flush_wipes_buffer),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_connect_timeout_v4),
		cmocka_unit_test(test_connect_timeout_v6),
		cmocka_unit_test(test_connect_bad_name),
		cmocka_unit_test(test_read_timeout),
		cmocka_unit_test(test_handshake_timeout),
		cmocka_unit_test(test_from_fd),
		cmocka_unit_test(test_read_until_deadline),
		cmocka_unit_test(test_tls_verified_localhost),
		cmocka_unit_test(test_tls_verified_ipv4_literal),
		cmocka_unit_test(test_tls_verified_ipv6_literal),
		cmocka_unit_test(test_tls_host_mismatch),
		cmocka_unit_test(test_tls_ip_not_in_sans),
		cmocka_unit_test(test_tls_self_signed_refused),
		cmocka_unit_test(test_tls_no_anchor_refused),
		cmocka_unit_test(test_tls_system_trust_plus_cafile),
		cmocka_unit_test(test_tls_system_trust_self_signed_refused),
		cmocka_unit_test(test_tls_verify_off),
		cmocka_unit_test(test_tls_pin_match_self_signed),
		cmocka_unit_test(test_tls_pin_mismatch),
		cmocka_unit_test(test_tls_pin_malformed),
		cmocka_unit_test(test_tls11_server_refused),
		cmocka_unit_test(test_starttls_upgrade),
		cmocka_unit_test(test_starttls_prepared),
		cmocka_unit_test(test_prepared_never_started),
		cmocka_unit_test(test_prepare_bad_cafile),
		cmocka_unit_test(test_starttls_injection),
		cmocka_unit_test(test_coalesce_plain),
		cmocka_unit_test(test_coalesce_tls),
		cmocka_unit_test(test_big_write_tls_records),
		cmocka_unit_test(test_write_after_close_plain),
		cmocka_unit_test(test_write_after_close_tls),
		cmocka_unit_test(test_server_stop_without_client),
		cmocka_unit_test(test_cb_tls13_exporter),
		cmocka_unit_test(test_cb_tls12_unique),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
