/*
 * test_interop.c - devmail's SMTP client against two real servers written by
 * others, on loopback with real TLS (the test CA from tests/lib/pki.sh) and
 * real AUTH:
 *   aiosmtpd 1.4.3 (tests/interop/aiosmtpd_server.py): STARTTLS required,
 *     implicit TLS, AUTH PLAIN/LOGIN only after TLS, forced 4xx/5xx replies;
 *   npm smtp-server (tests/node/smtp_server.js): PIPELINING, CRAM-MD5,
 *     SMTPUTF8, SIZE.
 * Every delivered message is checked on the server side from the peer's
 * capture file: envelope, AUTH identity, TLS, headers, body, and attachments
 * decoded and compared by SHA-256 with the file that was attached.
 * Negative cases: certificate for another host, self-signed certificate,
 * RequireTLS without STARTTLS, AUTH offered only in clear, wrong password,
 * 4xx/5xx at RCPT and after DATA, SIZE exceeded.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/base64.h"
#include "mail/message.h"
#include "mail/smtp.h"
#include "mail/verdict.h"
#include "peers.h"
#include "testroot.h"

#define USER "alice"
#define PASS "c0rrect horse:battery"   /* ':' inside: the peers split at the first */
#define FROM "device@example.org"
#define RCPT "ops@example.net"

/* The run's temp dir, PKI and peer pool (stopped by PID after each test). */
static struct peer_group grp;

static int test_teardown(void **state)
{
	(void)state;
	peer_group_stop_all(&grp);
	return 0;
}

static void pki_path(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", grp.pki, name);
}

static int group_setup(void **state)
{
	(void)state;
	return peer_group_setup(&grp, "interop");
}

static int group_teardown(void **state)
{
	(void)state;
	return peer_group_teardown(&grp);
}

/* ---- peers ------------------------------------------------------------------ */

/* Starts a peer with its own capture directory; fails the test when it
 * cannot start.  `cert` names a file pair in the PKI ("server", "other",
 * "self") or NULL for no TLS.  extra: NULL-terminated further arguments. */
static struct peer *start_peer(enum peer_kind kind, const char *tls,
                               const char *cert, const char *const *extra)
{
	struct dm_err err;
	dm_err_clear(&err);
	struct peer *p = peer_group_start(&grp, kind, tls, cert, extra, &err);
	if (!p)
		fail_msg("starting the %s peer: %s",
		         kind == PEER_AIOSMTPD ? "aiosmtpd" : "smtp-server", err.msg);
	return p;
}

/* ---- client side -------------------------------------------------------------- */

struct transcript {
	char client[8192];   /* client lines, '\n'-separated */
	size_t len;
};

static void transcript_collect(void *ctx, enum smtp_dir dir, const char *line)
{
	struct transcript *t = ctx;
	if (dir != SMTP_DIR_CLIENT)
		return;
	int n = snprintf(t->client + t->len, sizeof t->client - t->len, "%s\n", line);
	if (n > 0 && t->len + (size_t)n < sizeof t->client)
		t->len += (size_t)n;
}

/* Settings for a peer on 127.0.0.1 verified against the test CA. */
static struct smtp_settings settings_for(const struct peer *p, bool smtps,
                                         struct transcript *tr, char *cafile,
                                         size_t cap)
{
	pki_path(cafile, cap, "ca.pem");
	struct smtp_settings s = {
		.host = "127.0.0.1",
		.port = p->port,
		.smtps = smtps,
		.starttls = !smtps,
		.require_tls = true,
		.verify = true,
		.cafile = cafile,
		.timeout_ms = 15000,
		.helo_name = "interop.test",
		.username = USER,
		.password = PASS,
		.transcript = tr ? transcript_collect : NULL,
		.transcript_ctx = tr,
	};
	return s;
}

/* A message with a text body and, when att_path, one attachment. */
static struct message *build_message(const char *from, const char *to,
                                     const char *subject, const char *body,
                                     const char *att_path, const char *att_name)
{
	const char *tos[1] = { to };
	struct message_attachment att = { .path = att_path, .name = att_name };
	struct message_spec spec = {
		.from = from, .to = tos, .nto = 1, .subject = subject,
		.body = body, .body_len = strlen(body),
		.attachments = att_path ? &att : NULL, .nattachments = att_path ? 1 : 0,
		.hostname = "interop.test",
	};
	struct message *m = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = message_build(&spec, &m, &err);
	if (st != DM_OK)
		fail_msg("message_build: %s", err.msg);
	return m;
}

static struct smtp_envelope envelope_of(struct message *m, const char *const *rcpt,
                                        size_t nrcpt)
{
	struct smtp_envelope e = {
		.from = message_sender(m),
		.rcpt = rcpt,
		.nrcpt = nrcpt,
		.body = message_source(m),
		.size = (size_t)message_size_estimate(m),
		.needs_8bit = message_needs_8bitmime(m),
		.needs_smtputf8 = message_needs_smtputf8(m),
	};
	return e;
}

/* Opens, sends one message to `rcpt`, closes; returns the send status and
 * fills *res.  Open must succeed. */
static enum dm_status send_one(const struct smtp_settings *s, struct message *m,
                               const char *const *rcpt, size_t nrcpt,
                               struct smtp_result *res)
{
	struct smtp_client *c = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = smtp_client_open(s, &c, &err);
	if (st != DM_OK)
		fail_msg("smtp_client_open: %s: %s (server %d %s)", dm_status_str(st),
		         err.msg, err.smtp_code, err.server_text);
	struct smtp_envelope e = envelope_of(m, rcpt, nrcpt);
	dm_err_clear(&err);
	st = smtp_client_send(c, &e, 1, res, 0, &err);
	smtp_client_close(c, NULL);
	return st;
}

/* ---- server-side checks --------------------------------------------------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decodes RFC 2047 encoded-words (UTF-8, Q or B) in an unstructured header
 * value, in place; white space between two adjacent encoded-words is
 * dropped (RFC 2047 section 6.2).  Independent of the builder's encoder. */
static void rfc2047_decode(char *v)
{
	char out[1024];
	size_t o = 0;
	const char *s = v;
	while (*s && o + 4 < sizeof out) {
		if (strncasecmp(s, "=?UTF-8?", 8) == 0 && (s[8] == 'Q' || s[8] == 'q' ||
		                                           s[8] == 'B' || s[8] == 'b') && s[9] == '?') {
			const char *text = s + 10, *end = strstr(text, "?=");
			assert_non_null(end);
			if (s[8] == 'Q' || s[8] == 'q') {
				for (const char *t = text; t < end && o + 1 < sizeof out; t++) {
					if (*t == '_') {
						out[o++] = ' ';
					} else if (*t == '=' && t + 2 < end && hexval(t[1]) >= 0 &&
					           hexval(t[2]) >= 0) {
						out[o++] = (char)(hexval(t[1]) * 16 + hexval(t[2]));
						t += 2;
					} else {
						out[o++] = *t;
					}
				}
			} else {
				size_t got = 0;
				assert_int_equal(base64_decode(text, (size_t)(end - text),
				                               (unsigned char *)out + o,
				                               sizeof out - o - 1, &got, NULL), DM_OK);
				o += got;
			}
			s = end + 2;
			/* skip blanks before a following encoded-word */
			const char *w = s;
			while (*w == ' ' || *w == '\t')
				w++;
			if (strncasecmp(w, "=?UTF-8?", 8) == 0)
				s = w;
			continue;
		}
		out[o++] = *s++;
	}
	out[o] = '\0';
	memcpy(v, out, o + 1);
}

static void assert_header(const struct peer_message *pm, const char *name,
                          const char *want)
{
	char v[1024];
	if (!peer_message_header(pm, name, v, sizeof v))
		fail_msg("header %s missing in the captured message", name);
	rfc2047_decode(v);
	assert_string_equal(v, want);
}

/* Checks capture `seq` of p: envelope, AUTH, TLS, headers, body text and the
 * attachment's SHA-256 against the file attached (when att_path). */
static void check_delivered(const struct peer *p, unsigned seq, struct message *m,
                            const char *rcpt, const char *subject,
                            const char *body_text, const char *att_path,
                            const char *att_name)
{
	struct peer_message pm;
	struct dm_err err;
	dm_err_clear(&err);
	if (peer_message_load(p, seq, &pm, &err) != DM_OK)
		fail_msg("capture %u: %s", seq, err.msg);
	assert_string_equal(pm.mail_from, message_sender(m));
	assert_int_equal(pm.nrcpt, 1);
	assert_string_equal(pm.rcpt[0], rcpt);
	assert_string_equal(pm.auth, USER);
	assert_string_equal(pm.tls, "TLSv1.3");
	assert_header(&pm, "Subject", subject);
	assert_header(&pm, "Message-ID", message_id(m));
	assert_header(&pm, "MIME-Version", "1.0");
	char from[512];
	assert_true(peer_message_header(&pm, "From", from, sizeof from));
	assert_non_null(strstr(from, message_sender(m)));
	char date[128];
	assert_true(peer_message_header(&pm, "Date", date, sizeof date));
	assert_true(strlen(date) > 10);
	assert_false(peer_message_header(&pm, "Bcc", date, sizeof date));
	/* Every line ends in CRLF and the data is what the builder produced. */
	assert_int_equal(pm.data_len, message_size_estimate(m));
	for (size_t i = 0; i < pm.data_len; i++)
		if (pm.data[i] == '\n' && (i == 0 || pm.data[i - 1] != '\r'))
			fail_msg("bare LF at offset %zu of the captured message", i);
	assert_non_null(memmem(pm.body, pm.body_len, body_text, strlen(body_text)));
	if (att_path) {
		unsigned char *att = NULL;
		size_t att_len = 0;
		dm_err_clear(&err);
		if (peer_message_attachment(&pm, att_name, &att, &att_len, &err) != DM_OK)
			fail_msg("attachment %s: %s", att_name, err.msg);
		char got[65], want[65];
		peer_sha256_hex(att, att_len, got);
		dm_err_clear(&err);
		assert_int_equal(peer_sha256_file(att_path, want, &err), DM_OK);
		assert_string_equal(got, want);
		free(att);
	}
	peer_message_free(&pm);
}

static void random_file(char *path, size_t cap, const char *name, size_t len,
                        unsigned seed)
{
	snprintf(path, cap, "%s/%s", grp.dir, name);
	struct dm_err err;
	dm_err_clear(&err);
	assert_int_equal(peer_write_random_file(path, len, seed, &err), DM_OK);
}

/* ---- positive cases --------------------------------------------------------------- */

/* aiosmtpd, STARTTLS required, AUTH only after TLS: a text body and an
 * attachment arrive intact. */
static void test_aiosmtpd_starttls_auth(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, NULL };
	struct peer *p = start_peer(PEER_AIOSMTPD, "starttls-required", "server", extra);
	char att[PATH_MAX + 32], ca[PATH_MAX + 32];
	random_file(att, sizeof att, "report.bin", 300000 + 7, 1);
	struct transcript tr = { .len = 0 };
	struct smtp_settings s = settings_for(p, false, &tr, ca, sizeof ca);
	struct message *m = build_message(FROM, RCPT, "Interop STARTTLS",
	                                  "Hello from devmail.\r\nLine two.\r\n", att, "report.bin");

	struct smtp_client *c = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = smtp_client_open(&s, &c, &err);
	if (st != DM_OK)
		fail_msg("open: %s: %s", dm_status_str(st), err.msg);
	const struct smtp_info *info = smtp_client_info(c);
	assert_int_equal(info->tls_mode, SMTP_TLS_STARTTLS);
	assert_true(info->tls.active);
	assert_true(info->tls.verified);
	assert_true(info->mechanism[0] != '\0');
	const char *rcpt[1] = { RCPT };
	struct smtp_envelope e = envelope_of(m, rcpt, 1);
	struct smtp_result res;
	dm_err_clear(&err);
	st = smtp_client_send(c, &e, 1, &res, 0, &err);
	if (st != DM_OK)
		fail_msg("send: %s: %s (%d %s)", dm_status_str(st), err.msg, err.smtp_code,
		         err.server_text);
	assert_int_equal(res.code, 250);
	assert_int_equal(res.accepted, 1);
	assert_int_equal(smtp_client_close(c, NULL), DM_OK);

	/* STARTTLS came before AUTH, and the password never went out in clear. */
	const char *starttls = strstr(tr.client, "STARTTLS");
	const char *auth = strstr(tr.client, "AUTH ");
	assert_non_null(starttls);
	assert_non_null(auth);
	assert_true(starttls < auth);
	assert_null(strstr(tr.client, PASS));

	assert_int_equal(peer_capture_count(p), 1);
	check_delivered(p, 1, m, RCPT, "Interop STARTTLS", "Hello from devmail.", att,
	                "report.bin");
	message_free(m);
	peer_stop(p);
}

/* aiosmtpd with implicit TLS (port 465 style) and AUTH; two messages over
 * one session. */
static void test_aiosmtpd_implicit_tls_auth(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, NULL };
	struct peer *p = start_peer(PEER_AIOSMTPD, "implicit", "server", extra);
	char att[PATH_MAX + 32], ca[PATH_MAX + 32];
	random_file(att, sizeof att, "photo.jpg", 65536 * 3 + 1, 2);
	struct transcript tr = { .len = 0 };
	struct smtp_settings s = settings_for(p, true, &tr, ca, sizeof ca);
	struct message *m1 = build_message(FROM, RCPT, "Implicit one", "First body.\r\n", att,
	                                   "photo.jpg");
	struct message *m2 = build_message(FROM, RCPT, "Implicit two", "Second body.\r\n", NULL,
	                                   NULL);
	struct smtp_client *c = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = smtp_client_open(&s, &c, &err);
	if (st != DM_OK)
		fail_msg("open: %s: %s", dm_status_str(st), err.msg);
	assert_int_equal(smtp_client_info(c)->tls_mode, SMTP_TLS_SMTPS);
	assert_true(smtp_client_info(c)->tls.verified);
	const char *rcpt[1] = { RCPT };
	struct smtp_envelope e[2] = { envelope_of(m1, rcpt, 1), envelope_of(m2, rcpt, 1) };
	struct smtp_result *res = calloc(2, sizeof *res);
	assert_non_null(res);
	dm_err_clear(&err);
	st = smtp_client_send(c, e, 2, res, SMTP_SEND_QUIT, &err);
	if (st != DM_OK)
		fail_msg("send: %s: %s (%d %s)", dm_status_str(st), err.msg, err.smtp_code,
		         err.server_text);
	assert_int_equal(res[0].status, DM_OK);
	assert_int_equal(res[1].status, DM_OK);
	smtp_client_close(c, NULL);
	assert_null(strstr(tr.client, "STARTTLS"));

	assert_int_equal(peer_capture_count(p), 2);
	check_delivered(p, 1, m1, RCPT, "Implicit one", "First body.", att, "photo.jpg");
	check_delivered(p, 2, m2, RCPT, "Implicit two", "Second body.", NULL, NULL);
	free(res);
	message_free(m1);
	message_free(m2);
	peer_stop(p);
}

/* smtp-server: PIPELINING, CRAM-MD5, SMTPUTF8 and SIZE; three messages in
 * one pipelined batch, one to a UTF-8 address. */
static void test_smtp_server_pipelining_cram_utf8_size(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, "--size", "10485760", NULL };
	struct peer *p = start_peer(PEER_SMTP_SERVER, "starttls", "server", extra);
	char att[PATH_MAX + 32], ca[PATH_MAX + 32];
	random_file(att, sizeof att, "log.tar", 100000, 3);
	struct transcript tr = { .len = 0 };
	struct smtp_settings s = settings_for(p, false, &tr, ca, sizeof ca);
	s.mechanism = "CRAM-MD5";
	const char *utf8_rcpt = "j\xc3\xbcrgen@b\xc3\xbc" "cher.example";
	struct message *m[3] = {
		build_message(FROM, RCPT, "Pipelined 1", "Body one.\r\n", NULL, NULL),
		build_message(FROM, utf8_rcpt, "Gr\xc3\xbc\xc3\x9f" "e aus dem Ger\xc3\xa4t",
		              "UTF-8 recipient: j\xc3\xbcrgen.\r\n", NULL, NULL),
		build_message(FROM, RCPT, "Pipelined 3", "Body three.\r\n", att, "log.tar"),
	};
	assert_false(message_needs_smtputf8(m[0]));
	assert_true(message_needs_smtputf8(m[1]));

	struct smtp_client *c = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = smtp_client_open(&s, &c, &err);
	if (st != DM_OK)
		fail_msg("open: %s: %s (%d %s)", dm_status_str(st), err.msg, err.smtp_code,
		         err.server_text);
	const struct smtp_info *info = smtp_client_info(c);
	assert_true(info->pipelining);
	assert_true(info->smtputf8);
	assert_int_equal(info->size_max, 10485760);
	assert_string_equal(info->mechanism, "CRAM-MD5");
	assert_true(info->tls.verified);

	const char *r1[1] = { RCPT }, *r2[1] = { utf8_rcpt };
	struct smtp_envelope e[3] = { envelope_of(m[0], r1, 1), envelope_of(m[1], r2, 1),
	                              envelope_of(m[2], r1, 1) };
	struct smtp_result *res = calloc(3, sizeof *res);
	assert_non_null(res);
	dm_err_clear(&err);
	st = smtp_client_send(c, e, 3, res, SMTP_SEND_QUIT, &err);
	if (st != DM_OK)
		fail_msg("send: %s: %s (%d %s)", dm_status_str(st), err.msg, err.smtp_code,
		         err.server_text);
	for (int i = 0; i < 3; i++)
		assert_int_equal(res[i].status, DM_OK);
	smtp_client_close(c, NULL);
	/* The envelope announced SIZE= and SMTPUTF8 where needed. */
	assert_non_null(strstr(tr.client, "SIZE="));
	assert_non_null(strstr(tr.client, " SMTPUTF8"));
	assert_null(strstr(tr.client, PASS));

	assert_int_equal(peer_capture_count(p), 3);
	check_delivered(p, 1, m[0], RCPT, "Pipelined 1", "Body one.", NULL, NULL);
	check_delivered(p, 2, m[1], utf8_rcpt, "Gr\xc3\xbc\xc3\x9f" "e aus dem Ger\xc3\xa4t",
	                "", NULL, NULL);
	check_delivered(p, 3, m[2], RCPT, "Pipelined 3", "Body three.", att, "log.tar");
	struct peer_message pm;
	assert_int_equal(peer_message_load(p, 2, &pm, NULL), DM_OK);
	assert_true(pm.smtputf8);
	peer_message_free(&pm);
	assert_int_equal(peer_message_load(p, 1, &pm, NULL), DM_OK);
	assert_false(pm.smtputf8);
	peer_message_free(&pm);
	free(res);
	for (int i = 0; i < 3; i++)
		message_free(m[i]);
	peer_stop(p);
}

/* A message over the server's SIZE limit is refused permanently and never
 * reaches the server. */
static void test_smtp_server_size_exceeded(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, "--size", "20000", NULL };
	struct peer *p = start_peer(PEER_SMTP_SERVER, "starttls", "server", extra);
	char att[PATH_MAX + 32], ca[PATH_MAX + 32];
	random_file(att, sizeof att, "big.bin", 40000, 4);
	struct smtp_settings s = settings_for(p, false, NULL, ca, sizeof ca);
	struct message *m = build_message(FROM, RCPT, "Too big", "x\r\n", att, "big.bin");
	const char *rcpt[1] = { RCPT };
	struct smtp_result res;
	enum dm_status st = send_one(&s, m, rcpt, 1, &res);
	assert_int_equal(st, DM_EPERMFAIL);
	assert_int_equal(res.status, DM_EPERMFAIL);
	assert_false(verdict_failure(res.status, res.code) == VERDICT_TEMPORARY);
	assert_int_equal(peer_capture_count(p), 0);
	message_free(m);
	peer_stop(p);
}

/* ---- TLS and AUTH refusals ------------------------------------------------------- */

/* Opens against p and expects failure `want`; returns the transcript. */
static void expect_open_fails(const struct smtp_settings *s, enum dm_status want,
                              struct dm_err *err)
{
	struct smtp_client *c = NULL;
	dm_err_clear(err);
	enum dm_status st = smtp_client_open(s, &c, err);
	if (st == DM_OK) {
		smtp_client_close(c, NULL);
		fail_msg("smtp_client_open succeeded, expected %s", dm_status_str(want));
	}
	if (st != want)
		fail_msg("smtp_client_open: got %s (%s), expected %s", dm_status_str(st), err->msg,
		         dm_status_str(want));
	assert_null(c);
	assert_true(err->msg[0] != '\0');
}

/* Opening fails with `want` before anything is sent: the client never said
 * AUTH or MAIL and the peer captured nothing.  Stops the peer. */
static void expect_refused_before_mail(struct peer *p, const struct smtp_settings *s,
                                       const struct transcript *tr, enum dm_status want)
{
	struct dm_err err;
	expect_open_fails(s, want, &err);
	assert_null(strstr(tr->client, "AUTH"));
	assert_null(strstr(tr->client, "MAIL"));
	assert_int_equal(peer_capture_count(p), 0);
	peer_stop(p);
}

static void tls_refused(const char *cert, bool implicit)
{
	const char *extra[] = { "--user", USER ":" PASS, NULL };
	struct peer *p = start_peer(PEER_AIOSMTPD, implicit ? "implicit" : "starttls-required", cert, extra);
	char ca[PATH_MAX + 32];
	struct transcript tr = { .len = 0 };
	struct smtp_settings s = settings_for(p, implicit, &tr, ca, sizeof ca);
	expect_refused_before_mail(p, &s, &tr, DM_ETLS);
}

/* The server's certificate is valid, from the trusted CA, but for
 * wrong.example, not 127.0.0.1. */
static void test_tls_wrong_host(void **state)
{
	(void)state;
	tls_refused("other", false);
	tls_refused("other", true);
}

/* A self-signed certificate for the right name is not trusted. */
static void test_tls_self_signed(void **state)
{
	(void)state;
	tls_refused("self", false);
	tls_refused("self", true);
}

/* RequireTLS on, the server offers no STARTTLS: nothing is sent. */
static void test_require_tls_without_starttls(void **state)
{
	(void)state;
	const char *extra[] = { "--no-auth", NULL };
	struct peer *p = start_peer(PEER_AIOSMTPD, "none", NULL, extra);
	char ca[PATH_MAX + 32];
	struct transcript tr = { .len = 0 };
	struct smtp_settings s = settings_for(p, false, &tr, ca, sizeof ca);
	s.username = NULL;
	s.password = NULL;
	expect_refused_before_mail(p, &s, &tr, DM_ETLS);
}

/* The server offers AUTH only on a clear connection (no STARTTLS): devmail
 * refuses to send credentials, even with RequireTLS off. */
static void test_auth_offered_only_in_clear(void **state)
{
	(void)state;
	const char *extra[] = { "--user", USER ":" PASS, "--auth-in-clear", NULL };
	struct peer *p = start_peer(PEER_AIOSMTPD, "none", NULL, extra);
	char ca[PATH_MAX + 32];
	struct transcript tr = { .len = 0 };
	struct smtp_settings s = settings_for(p, false, &tr, ca, sizeof ca);
	s.require_tls = false;
	expect_refused_before_mail(p, &s, &tr, DM_EAUTH);
}

/* A wrong password is refused by the server (535), permanently. */
static void test_wrong_password(void **state)
{
	(void)state;
	for (int k = 0; k < 2; k++) {
			const char *extra[] = { "--user", USER ":" PASS, NULL };
		struct peer *p = start_peer(k ? PEER_SMTP_SERVER : PEER_AIOSMTPD,
		           k ? "starttls" : "starttls-required", "server", extra);
		char ca[PATH_MAX + 32];
		struct smtp_settings s = settings_for(p, false, NULL, ca, sizeof ca);
		s.password = "not the password";
		struct dm_err err;
		expect_open_fails(&s, DM_EAUTH, &err);
		assert_int_equal(err.smtp_code, 535);
		assert_false(verdict_failure(DM_EAUTH, err.smtp_code) == VERDICT_TEMPORARY);
		assert_int_equal(peer_capture_count(p), 0);
		peer_stop(p);
	}
}

/* ---- refusals at RCPT and after DATA ------------------------------------------------ */

static void replies_case(enum peer_kind kind)
{
	const char *extra[] = {
		"--user", USER ":" PASS,
		"--rcpt-reply", "busy@example.net=450 4.2.1 Mailbox busy",
		"--rcpt-reply", "nobody@example.net=550 5.1.1 No such user",
		"--data-reply", "temp@example.org=451 4.3.0 Try again later",
		"--data-reply", "spam@example.org=554 5.6.0 Message rejected",
		NULL,
	};
	struct peer *p = start_peer(kind, kind == PEER_AIOSMTPD ? "starttls-required" : "starttls", "server",
	           extra);
	char ca[PATH_MAX + 32];
	struct smtp_settings s = settings_for(p, false, NULL, ca, sizeof ca);

	struct message *m_ok = build_message(FROM, RCPT, "ok", "fine\r\n", NULL, NULL);
	struct message *m_busy = build_message(FROM, "busy@example.net", "busy", "b\r\n", NULL, NULL);
	struct message *m_nobody = build_message(FROM, "nobody@example.net", "nobody", "n\r\n", NULL,
	                                         NULL);
	struct message *m_temp = build_message("temp@example.org", RCPT, "temp", "t\r\n", NULL, NULL);
	struct message *m_spam = build_message("spam@example.org", RCPT, "spam", "s\r\n", NULL, NULL);
	struct message *m_mixed = build_message(FROM, RCPT, "mixed", "Half of them.\r\n", NULL, NULL);
	struct message *m_last = build_message(FROM, RCPT, "after", "Still works.\r\n", NULL, NULL);

	const char *r_ok[1] = { RCPT }, *r_busy[1] = { "busy@example.net" };
	const char *r_nobody[1] = { "nobody@example.net" };
	const char *r_mixed[2] = { "nobody@example.net", RCPT };
	struct smtp_envelope e[7] = {
		envelope_of(m_ok, r_ok, 1),     envelope_of(m_busy, r_busy, 1),
		envelope_of(m_nobody, r_nobody, 1), envelope_of(m_temp, r_ok, 1),
		envelope_of(m_spam, r_ok, 1),   envelope_of(m_mixed, r_mixed, 2),
		envelope_of(m_last, r_ok, 1),
	};
	struct smtp_result *res = calloc(7, sizeof *res);
	assert_non_null(res);
	struct smtp_client *c = NULL;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = smtp_client_open(&s, &c, &err);
	if (st != DM_OK)
		fail_msg("open: %s: %s", dm_status_str(st), err.msg);
	dm_err_clear(&err);
	st = smtp_client_send(c, e, 7, res, SMTP_SEND_QUIT, &err);
	smtp_client_close(c, NULL);
	/* The first failure is the 4xx at RCPT. */
	assert_int_equal(st, DM_ETEMPFAIL);

	assert_int_equal(res[0].status, DM_OK);

	assert_int_equal(res[1].status, DM_ETEMPFAIL);
	assert_int_equal(res[1].code, 450);
	assert_string_equal(res[1].enhanced, "4.2.1");
	assert_int_equal(res[1].rcpt[0].code, 450);
	assert_true(verdict_failure(res[1].status, res[1].code) == VERDICT_TEMPORARY);
	assert_int_equal(res[1].phase, SMTP_PHASE_RCPT);

	assert_int_equal(res[2].status, DM_EPERMFAIL);
	assert_int_equal(res[2].code, 550);
	assert_string_equal(res[2].enhanced, "5.1.1");
	assert_false(verdict_failure(res[2].status, res[2].code) == VERDICT_TEMPORARY);
	assert_int_equal(res[2].phase, SMTP_PHASE_RCPT);

	assert_int_equal(res[3].status, DM_ETEMPFAIL);
	assert_int_equal(res[3].code, 451);
	assert_string_equal(res[3].enhanced, "4.3.0");
	assert_true(verdict_failure(res[3].status, res[3].code) == VERDICT_TEMPORARY);
	assert_int_equal(res[3].phase, SMTP_PHASE_DATA);

	assert_int_equal(res[4].status, DM_EPERMFAIL);
	assert_int_equal(res[4].code, 554);
	assert_string_equal(res[4].enhanced, "5.6.0");
	assert_false(verdict_failure(res[4].status, res[4].code) == VERDICT_TEMPORARY);
	assert_int_equal(res[4].phase, SMTP_PHASE_DATA);

	/* One recipient refused, the other accepted: the message is delivered
	 * to the one. */
	assert_int_equal(res[5].status, DM_OK);
	assert_int_equal(res[5].nrcpt, 2);
	assert_int_equal(res[5].accepted, 1);
	assert_int_equal(res[5].rcpt[0].code, 550);
	assert_int_equal(res[5].rcpt[1].code, 250);

	assert_int_equal(res[6].status, DM_OK);

	/* The server holds exactly the three accepted messages, in order. */
	assert_int_equal(peer_capture_count(p), 3);
	check_delivered(p, 1, m_ok, RCPT, "ok", "fine", NULL, NULL);
	check_delivered(p, 2, m_mixed, RCPT, "mixed", "Half of them.", NULL, NULL);
	check_delivered(p, 3, m_last, RCPT, "after", "Still works.", NULL, NULL);

	free(res);
	message_free(m_ok);
	message_free(m_busy);
	message_free(m_nobody);
	message_free(m_temp);
	message_free(m_spam);
	message_free(m_mixed);
	message_free(m_last);
	peer_stop(p);
}

static void test_replies_aiosmtpd(void **state)
{
	(void)state;
	replies_case(PEER_AIOSMTPD);
}

static void test_replies_smtp_server(void **state)
{
	(void)state;
	replies_case(PEER_SMTP_SERVER);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_aiosmtpd_starttls_auth, test_teardown),
		cmocka_unit_test_teardown(test_aiosmtpd_implicit_tls_auth, test_teardown),
		cmocka_unit_test_teardown(test_smtp_server_pipelining_cram_utf8_size, test_teardown),
		cmocka_unit_test_teardown(test_smtp_server_size_exceeded, test_teardown),
		cmocka_unit_test_teardown(test_tls_wrong_host, test_teardown),
		cmocka_unit_test_teardown(test_tls_self_signed, test_teardown),
		cmocka_unit_test_teardown(test_require_tls_without_starttls, test_teardown),
		cmocka_unit_test_teardown(test_auth_offered_only_in_clear, test_teardown),
		cmocka_unit_test_teardown(test_wrong_password, test_teardown),
		cmocka_unit_test_teardown(test_replies_aiosmtpd, test_teardown),
		cmocka_unit_test_teardown(test_replies_smtp_server, test_teardown),
	};
	return cmocka_run_group_tests_name("interop", tests, group_setup, group_teardown);
}
