/* test_cancel.c - net/cancel: a blocked connect, read, write/flush, TLS
 * handshake and accept each return DM_ECANCELED soon after cancel_fire(),
 * from another thread or from a signal handler; one handle stops many
 * waits; a fired handle stops every later operation; close still works.
 *
 * Loopback only (tests/lib/netfault: a full-backlog listener for connect, a
 * silent peer for read, write and handshake).  The bound asserted on the
 * latency is generous (CANCEL_BOUND_MS, the machine is shared); the
 * measured value is printed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "net/cancel.h"
#include "net/listener.h"
#include "net/transport.h"
#include "netfault.h"

#define CANCEL_DELAY_MS 200     /* the fire comes this long after the block */
#define CANCEL_BOUND_MS 1000    /* asserted upper bound (the goal is 100) */
#define LONG_TIMEOUT_MS 30000   /* what would be waited without the cancel */

static struct transport_settings settings(const char *host, unsigned port,
                                          struct cancel *c)
{
	struct transport_settings s = {
		.host = host, .port = port, .timeout_ms = LONG_TIMEOUT_MS,
		.verify = false, .system_trust = false, .cancel = c,
	};
	return s;
}

static struct cancel *new_cancel(void)
{
	struct cancel *c = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	if (cancel_new(&c, &err) != DM_OK)
		fail_msg("cancel_new: %s", err.msg);
	return c;
}

/* Checks one cancelled call: status, message, and the time from the fire
 * to the return. */
static void check_cancelled(const char *what, enum dm_status st,
                            const struct dm_err *err, struct fire_later *f,
                            long returned_at)
{
	long fired_at = fire_later_join(f);
	long latency = returned_at - fired_at;
	print_message("cancel of %s: returned %ld ms after the fire (%s)\n", what,
	              latency, err->msg);
	if (st != DM_ECANCELED)
		fail_msg("%s: status %s, not canceled: %s", what, dm_status_str(st),
		         err->msg);
	assert_non_null(strstr(err->msg, "canceled"));
	assert_true(fired_at > 0);
	assert_true(latency >= 0);
	assert_true(latency < CANCEL_BOUND_MS);
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

/* ---- connect ----------------------------------------------------------- */

static void cancel_connect(int family)
{
	struct backlog_full b;
	char why[256];
	if (backlog_full_open(family, &b, why, sizeof(why)) != 0)
		fail_msg("%s", why);
	struct cancel *c = new_cancel();
	struct transport_settings s = settings(b.host, b.port, c);
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	struct fire_later f;
	assert_int_equal(fire_later_start(&f, c, CANCEL_DELAY_MS), 0);
	enum dm_status st = transport_connect(&s, &t, &err);
	long now = transport_now_ms();
	backlog_full_close(&b);
	check_cancelled(family == AF_INET6 ? "connect [::1]" : "connect 127.0.0.1",
	                st, &err, &f, now);
	assert_null(t);
	assert_non_null(strstr(err.msg, "connect to "));
	cancel_free(c);
}

static void test_cancel_connect_v4(void **state)
{
	(void)state;
	cancel_connect(AF_INET);
}

static void test_cancel_connect_v6(void **state)
{
	(void)state;
	if (!have_ipv6_loopback())
		fail_msg("no IPv6 loopback (::1) on this machine");
	cancel_connect(AF_INET6);
}

/* ---- read, write, handshake against a silent peer ----------------------- */

static struct transport *connect_silent(struct silent_peer *p,
                                        struct cancel *c)
{
	char why[256];
	if (silent_peer_open(AF_INET, p, why, sizeof(why)) != 0)
		fail_msg("%s", why);
	struct transport_settings s = settings(p->host, p->port, c);
	struct transport *t = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	if (transport_connect(&s, &t, &err) != DM_OK)
		fail_msg("connect: %s", err.msg);
	return t;
}

static void test_cancel_read(void **state)
{
	(void)state;
	struct silent_peer p;
	struct cancel *c = new_cancel();
	struct transport *t = connect_silent(&p, c);
	struct fire_later f;
	assert_int_equal(fire_later_start(&f, c, CANCEL_DELAY_MS), 0);
	char buf[64];
	size_t got = 7;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = transport_read(t, buf, sizeof(buf), &got, &err);
	check_cancelled("read", st, &err, &f, transport_now_ms());
	assert_int_equal(got, 0);
	assert_non_null(strstr(err.msg, "read from 127.0.0.1:"));
	/* Only close is left; everything else says canceled at once. */
	dm_err_clear(&err);
	assert_int_equal(transport_write(t, "x", 1, &err), DM_ECANCELED);
	assert_int_equal(transport_flush(t, NULL), DM_ECANCELED);
	assert_int_equal(transport_start_tls(t, NULL), DM_ECANCELED);
	long t0 = transport_now_ms();
	transport_close(t);
	assert_true(transport_now_ms() - t0 < CANCEL_BOUND_MS);
	silent_peer_close(&p);
	cancel_free(c);
}

/* The peer never reads: the flights fill its receive buffer and our send
 * buffer, then a flush blocks in poll(POLLOUT) until the cancel. */
static void test_cancel_write(void **state)
{
	(void)state;
	struct silent_peer p;
	struct cancel *c = new_cancel();
	struct transport *t = connect_silent(&p, c);
	static unsigned char block[16384];
	memset(block, 'w', sizeof(block));
	struct fire_later f;
	assert_int_equal(fire_later_start(&f, c, CANCEL_DELAY_MS), 0);
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = DM_OK;
	size_t sent = 0;
	/* Loopback buffers hold a few MiB at most; 4096 blocks are 64 MiB. */
	for (int i = 0; i < 4096 && st == DM_OK; i++) {
		st = transport_write(t, block, sizeof(block), &err);
		if (st == DM_OK)
			st = transport_flush(t, &err);
		if (st == DM_OK)
			sent += sizeof(block);
	}
	long now = transport_now_ms();
	print_message("write: %zu bytes went before the buffers filled\n", sent);
	check_cancelled("write/flush", st, &err, &f, now);
	assert_non_null(strstr(err.msg, "write to 127.0.0.1:"));
	assert_true(sent > 0);
	transport_close(t);
	silent_peer_close(&p);
	cancel_free(c);
}

/* The ClientHello goes out; no ServerHello ever comes. */
static void test_cancel_handshake(void **state)
{
	(void)state;
	struct silent_peer p;
	struct cancel *c = new_cancel();
	struct transport *t = connect_silent(&p, c);
	struct fire_later f;
	assert_int_equal(fire_later_start(&f, c, CANCEL_DELAY_MS), 0);
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = transport_start_tls(t, &err);
	check_cancelled("TLS handshake", st, &err, &f, transport_now_ms());
	assert_non_null(strstr(err.msg, "TLS handshake with 127.0.0.1:"));
	assert_false(transport_tls_info(t)->active);
	transport_close(t);
	silent_peer_close(&p);
	cancel_free(c);
}

/* ---- accept ------------------------------------------------------------ */

static void test_cancel_accept(void **state)
{
	(void)state;
	struct cancel *c = new_cancel();
	static const char *const addrs[] = { "127.0.0.1:0", "[::1]:0" };
	struct listener_settings ls = {
		.addrs = addrs, .n_addrs = 2, .cancel = c,
	};
	struct listener *l = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	if (listener_open(&ls, &l, &err) != DM_OK)
		fail_msg("listener_open: %s", err.msg);
	struct fire_later f;
	assert_int_equal(fire_later_start(&f, c, CANCEL_DELAY_MS), 0);
	struct transport *t = (struct transport *)l;
	enum dm_status st = listener_accept(l, transport_now_ms() + LONG_TIMEOUT_MS,
	                                    &t, &err);
	check_cancelled("accept", st, &err, &f, transport_now_ms());
	assert_null(t);
	char want[64];
	snprintf(want, sizeof(want), "accept on 127.0.0.1:%u: canceled",
	         listener_port(l, 0));
	assert_string_equal(err.msg, want);
	listener_close(l);
	cancel_free(c);
}

/* ---- one handle, many waits -------------------------------------------- */

struct reader {
	struct transport *t;
	pthread_t thread;
	enum dm_status st;
	long returned_at;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	char buf[16];
	size_t got;
	r->st = transport_read(r->t, buf, sizeof(buf), &got, NULL);
	r->returned_at = transport_now_ms();
	return NULL;
}

static void test_cancel_shared(void **state)
{
	(void)state;
	struct cancel *c = new_cancel();
	struct silent_peer p1, p2;
	struct reader r[2] = { { .t = connect_silent(&p1, c) },
	                       { .t = connect_silent(&p2, c) } };
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&r[i].thread, NULL, reader_main,
		                                &r[i]), 0);
	static const char *const addrs[] = { "127.0.0.1:0" };
	struct listener_settings ls = { .addrs = addrs, .n_addrs = 1, .cancel = c };
	struct listener *l = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(listener_open(&ls, &l, &err), DM_OK);
	struct fire_later f;
	assert_int_equal(fire_later_start(&f, c, CANCEL_DELAY_MS), 0);
	struct transport *t = NULL;
	enum dm_status st = listener_accept(l, transport_now_ms() + LONG_TIMEOUT_MS,
	                                    &t, &err);
	long accept_at = transport_now_ms();
	for (int i = 0; i < 2; i++)
		pthread_join(r[i].thread, NULL);
	long fired_at = fire_later_join(&f);
	print_message("shared cancel: accept %ld ms, reads %ld and %ld ms after "
	              "the fire\n", accept_at - fired_at,
	              r[0].returned_at - fired_at, r[1].returned_at - fired_at);
	assert_int_equal(st, DM_ECANCELED);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(r[i].st, DM_ECANCELED);
		assert_true(r[i].returned_at - fired_at < CANCEL_BOUND_MS);
		transport_close(r[i].t);
	}
	assert_true(accept_at - fired_at < CANCEL_BOUND_MS);
	listener_close(l);
	silent_peer_close(&p1);
	silent_peer_close(&p2);
	cancel_free(c);
}

/* ---- a signal handler fires it ------------------------------------------ */

static struct cancel *sig_cancel;

static void on_sigusr1(int sig)
{
	(void)sig;
	cancel_fire(sig_cancel);
}

struct kicker {
	pthread_t target;
	long sent_at;
};

static void *kicker_main(void *arg)
{
	struct kicker *k = arg;
	struct timespec ts = { 0, CANCEL_DELAY_MS * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	k->sent_at = transport_now_ms();
	pthread_kill(k->target, SIGUSR1);
	return NULL;
}

/* SIGTERM-style: the handler only fires the cancel; the poll it interrupts
 * (EINTR) sees it before waiting again. */
static void test_cancel_from_signal_handler(void **state)
{
	(void)state;
	struct silent_peer p;
	sig_cancel = new_cancel();
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigusr1;   /* no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
	struct transport *t = connect_silent(&p, sig_cancel);
	struct kicker k = { .target = pthread_self() };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, kicker_main, &k), 0);
	char buf[8];
	size_t got;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = transport_read(t, buf, sizeof(buf), &got, &err);
	long now = transport_now_ms();
	pthread_join(th, NULL);
	assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
	print_message("cancel from a signal handler: read returned %ld ms after "
	              "the signal (%s)\n", now - k.sent_at, err.msg);
	assert_int_equal(st, DM_ECANCELED);
	assert_true(cancel_fired(sig_cancel));
	assert_true(now - k.sent_at < CANCEL_BOUND_MS);
	transport_close(t);
	silent_peer_close(&p);
	cancel_free(sig_cancel);
	sig_cancel = NULL;
}

/* ---- fired before the call ---------------------------------------------- */

static void test_cancel_before(void **state)
{
	(void)state;
	struct cancel *c = new_cancel();
	assert_false(cancel_fired(c));
	assert_true(cancel_fd(c) >= 0);
	assert_int_equal(cancel_fd(NULL), -1);
	assert_false(cancel_fired(NULL));
	cancel_fire(NULL);
	cancel_fire(c);
	cancel_fire(c);   /* idempotent */
	assert_true(cancel_fired(c));

	/* connect: by name (resolution) and by address */
	struct silent_peer p;
	char why[256];
	assert_int_equal(silent_peer_open(AF_INET, &p, why, sizeof(why)), 0);
	const char *hosts[] = { "localhost", "127.0.0.1" };
	for (size_t i = 0; i < 2; i++) {
		struct transport_settings s = settings(hosts[i], p.port, c);
		struct transport *t = NULL;
		struct dm_err err;
		dm_err_clear(&err);
		assert_int_equal(transport_connect(&s, &t, &err), DM_ECANCELED);
		assert_null(t);
		assert_non_null(strstr(err.msg, "canceled"));
	}

	/* read with bytes ready still says canceled */
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[1], "ready", 5), 5);
	struct transport_settings s = settings("peer", 0, c);
	struct transport *t = NULL;
	assert_int_equal(transport_from_fd(sv[0], &s, &t, NULL), DM_OK);
	char buf[8];
	size_t got = 3;
	assert_int_equal(transport_read(t, buf, sizeof(buf), &got, NULL),
	                 DM_ECANCELED);
	assert_int_equal(got, 0);
	transport_close(t);
	close(sv[1]);

	/* accept */
	static const char *const addrs[] = { "127.0.0.1:0" };
	struct listener_settings ls = { .addrs = addrs, .n_addrs = 1, .cancel = c };
	struct listener *l = NULL;
	assert_int_equal(listener_open(&ls, &l, NULL), DM_OK);
	assert_int_equal(listener_accept(l, transport_now_ms() + LONG_TIMEOUT_MS,
	                                 &t, NULL), DM_ECANCELED);
	listener_close(l);
	silent_peer_close(&p);
	cancel_free(c);
	cancel_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cancel_connect_v4),
		cmocka_unit_test(test_cancel_connect_v6),
		cmocka_unit_test(test_cancel_read),
		cmocka_unit_test(test_cancel_write),
		cmocka_unit_test(test_cancel_handshake),
		cmocka_unit_test(test_cancel_accept),
		cmocka_unit_test(test_cancel_shared),
		cmocka_unit_test(test_cancel_from_signal_handler),
		cmocka_unit_test(test_cancel_before),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
