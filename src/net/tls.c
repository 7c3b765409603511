/*
 * net/tls.c - the TLS implementation of the transport table (GnuTLS), in
 * the client and the server role, and the server's loaded credentials.
 *
 * One of the two files in src/ that name GnuTLS (the other, core/crypto.c,
 * does AEAD, random bytes and X.509 outside sessions).
 *
 * RFCs: 8446 (TLS 1.3), 5246 (TLS 1.2), 6066 section 3 (SNI: host names
 * only, never IP literals), 6125 (host name checks; IP literals match IP
 * SANs), 3207 (STARTTLS), 8314 (implicit TLS), 5929 (tls-unique),
 * 9266 (tls-exporter).
 *
 * Verification policy (struct transport_settings):
 *   - verify && no pin: the chain must lead to a trust anchor (the system
 *     store when system_trust, plus cafile) and the leaf must match host;
 *     otherwise DM_ETLS with the reason.
 *
 * Trust anchors, and why the system store is loaded late: loading it
 * (~144 certificates on Debian 12) cost 10-13 ms and ~3.7 MiB per
 * handshake.  The handshake itself needs no anchors (a TLS client checks
 * the chain after it), so the session's credentials hold only the cafile;
 * the chain is checked against the cafile first, and only when no signer
 * is found there (or there is no cafile) against the system store, which is
 * loaded once per process (pthread_once) into a trust list that is kept
 * for later connections (the outbox delivers many batches).  The outcome is
 * the same as checking against the union: every cafile certificate is an
 * anchor of its own, so a chain that leads to either set verifies.
 *   - pin given: the SHA-256 of the leaf's DER must equal the pin, or the
 *     handshake fails with DM_ETLS whatever `verify` says.  When it matches,
 *     the certificate is accepted even if its chain is not trusted or its
 *     names do not match: the operator has named this exact certificate
 *     (the usual way to trust a self-signed server).  verified = pinned = true.
 *   - !verify && no pin: any certificate is accepted; tls_info.verified is
 *     false and verify_error says what the checks found.
 *
 * Server role: the handshake uses the listener's credentials
 * (net/server_cert.c), asks for no client certificate, and verifies
 * nothing; tls_info gets the version and the cipher.  Session tickets
 * (RFC 8446 4.6.1, RFC 5077) are on, so a browser or a mail client
 * reconnecting resumes without a full handshake: one random master key per
 * loaded certificate, held in memory only, from which GnuTLS derives keys
 * it rotates on its own.
 *
 * I/O: the socket stays non-blocking; every GNUTLS_E_AGAIN waits in poll()
 * (transport_poll_until, with the handle's cancel) in the direction GnuTLS
 * asks for, bounded by the handle's timeout (the handshake by one overall
 * deadline of timeout_ms).  GnuTLS's own handshake timeout is off: with it
 * set, GnuTLS polls the socket itself (_gnutls_io_check_recv) and no cancel
 * could reach that wait.  GnuTLS reads and writes the socket through our
 * pull/push functions, so that TCP_QUICKACK is re-armed after every recv()
 * that got bytes, also when gnutls_record_recv() then returns
 * GNUTLS_E_AGAIN because all it read was a TLS 1.3 NewSessionTicket (or
 * KeyUpdate) record: the next reply must not wait ~40 ms behind our
 * delayed ACK (DESIGN.md, performance rules).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "core/text.h"
#include "net/cancel.h"
#include "net/transport.h"
#include "net/transport_ops.h"

/* TLS 1.2 and 1.3 only (RFC 8996 deprecates 1.0 and 1.1). */
#define TRANSPORT_TLS_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define TRANSPORT_TLS_BYE_MS 1000

struct transport_tls {
	gnutls_session_t session;
	gnutls_certificate_credentials_t cred;   /* client: owned */
};

struct transport_tls_creds {
	gnutls_certificate_credentials_t cred;
	gnutls_datum_t ticket_key;   /* session ticket master key (secret) */
};

/* The priority, parsed once per process and shared by every session
 * (gnutls_priority_set_direct() parsed the string again for each; the
 * daemon's sessions and a server's connections each paid for it). */
static pthread_once_t transport_tls_prio_once = PTHREAD_ONCE_INIT;
static gnutls_priority_t transport_tls_prio;
static int transport_tls_prio_rc;
static const char *transport_tls_prio_where;

static void transport_tls_prio_load(void)
{
	transport_tls_prio_rc = gnutls_priority_init(&transport_tls_prio,
	                                             TRANSPORT_TLS_PRIORITY,
	                                             &transport_tls_prio_where);
}

/* The system store, loaded on first need and kept for the process. */
static pthread_once_t transport_tls_system_once = PTHREAD_ONCE_INIT;
static gnutls_x509_trust_list_t transport_tls_system_list;
static int transport_tls_system_count;   /* certificates loaded, or < 0 */

static void transport_tls_system_load(void)
{
	gnutls_x509_trust_list_t list;
	if (gnutls_x509_trust_list_init(&list, 0) < 0) {
		transport_tls_system_count = GNUTLS_E_MEMORY_ERROR;
		return;
	}
	int n = gnutls_x509_trust_list_add_system_trust(list, 0, 0);
	if (n <= 0) {
		gnutls_x509_trust_list_deinit(list, 1);
		transport_tls_system_count = n < 0 ? n : GNUTLS_E_NO_CERTIFICATE_FOUND;
		return;
	}
	transport_tls_system_list = list;
	transport_tls_system_count = n;
}

/* The system trust list, or NULL when it cannot be loaded (then chains
 * that only it could verify fail with "signer not found"). */
static gnutls_x509_trust_list_t transport_tls_system_trust(void)
{
	(void)pthread_once(&transport_tls_system_once, transport_tls_system_load);
	return transport_tls_system_count > 0 ? transport_tls_system_list : NULL;
}

/* Verifies the peer's chain against the system trust list; *status as
 * gnutls_certificate_verify_peers2() sets it.  < 0: GnuTLS error. */
static int transport_tls_verify_system(const gnutls_datum_t *certs,
                                       unsigned ncerts, unsigned *status)
{
	gnutls_x509_trust_list_t list = transport_tls_system_trust();
	if (list == NULL)
		return GNUTLS_E_NO_CERTIFICATE_FOUND;
	gnutls_x509_crt_t chain[16];
	unsigned n = 0;
	int rc = 0;
	for (; n < ncerts && n < sizeof(chain) / sizeof(chain[0]); n++) {
		if ((rc = gnutls_x509_crt_init(&chain[n])) < 0)
			break;
		rc = gnutls_x509_crt_import(chain[n], &certs[n], GNUTLS_X509_FMT_DER);
		if (rc < 0) {
			gnutls_x509_crt_deinit(chain[n]);
			break;
		}
	}
	if (rc >= 0)
		rc = gnutls_x509_trust_list_verify_crt2(list, chain, n, NULL, 0, 0,
		                                        status, NULL);
	for (unsigned i = 0; i < n; i++)
		gnutls_x509_crt_deinit(chain[i]);
	return rc;
}

/* Waits, until `deadline` (transport_now_ms() scale), for the direction
 * GnuTLS last blocked on, or the handle's cancel.  1 ready, 0 timeout,
 * TRANSPORT_POLL_CANCELED, -1 error. */
static int transport_tls_wait_until(struct transport *t, long deadline)
{
	struct transport_tls *tls = t->tls;
	short ev = gnutls_record_get_direction(tls->session) ? POLLOUT : POLLIN;
	return transport_poll_until(t->fd, ev, deadline, t->cancel);
}

/* ---- socket I/O for GnuTLS ---------------------------------------------- */

/* recv(); every read that got bytes re-arms TCP_QUICKACK, whatever GnuTLS
 * then makes of them (application data, a session ticket, a handshake
 * message). */
static ssize_t transport_tls_pull(gnutls_transport_ptr_t p, void *buf,
                                  size_t len)
{
	struct transport *t = p;
	struct transport_tls *tls = t->tls;
	ssize_t n = recv(t->fd, buf, len, 0);
	if (n > 0)
		transport_quickack(t);
	else if (n < 0)
		gnutls_transport_set_errno(tls->session, errno);
	return n;
}

static ssize_t transport_tls_push(gnutls_transport_ptr_t p, const void *buf,
                                  size_t len)
{
	struct transport *t = p;
	struct transport_tls *tls = t->tls;
	ssize_t n = send(t->fd, buf, len, MSG_NOSIGNAL);
	if (n < 0)
		gnutls_transport_set_errno(tls->session, errno);
	return n;
}

/* A whole flight (several records) in one sendmsg(), as GnuTLS's own
 * writev would do it, but without SIGPIPE. */
static ssize_t transport_tls_vec_push(gnutls_transport_ptr_t p,
                                      const giovec_t *iov, int iovcnt)
{
	struct transport *t = p;
	struct transport_tls *tls = t->tls;
	struct msghdr m = { .msg_iov = (struct iovec *)(uintptr_t)iov,
	                    .msg_iovlen = (size_t)iovcnt };
	ssize_t n = sendmsg(t->fd, &m, MSG_NOSIGNAL);
	if (n < 0)
		gnutls_transport_set_errno(tls->session, errno);
	return n;
}

/* Only called when a GnuTLS timeout is set, which this file never does;
 * given anyway (GnuTLS refuses a replaced pull function without one), and
 * it waits the way every other wait does. */
static int transport_tls_pull_timeout(gnutls_transport_ptr_t p,
                                      unsigned int ms)
{
	struct transport *t = p;
	long deadline = transport_now_ms() +
		(ms == GNUTLS_INDEFINITE_TIMEOUT ? t->timeout_ms : (long)ms);
	int r = transport_poll_until(t->fd, POLLIN, deadline, t->cancel);
	if (r == TRANSPORT_POLL_CANCELED) {
		errno = ECANCELED;
		return -1;
	}
	return r;
}

static void transport_tls_free(struct transport *t)
{
	struct transport_tls *tls = t->tls;
	if (tls == NULL)
		return;
	if (tls->session != NULL)
		gnutls_deinit(tls->session);
	if (tls->cred != NULL)   /* client only: a server's are shared */
		gnutls_certificate_free_credentials(tls->cred);
	free(tls);
	t->tls = NULL;
}

/* Maps a GnuTLS error during I/O to our status. */
static enum dm_status transport_tls_io_error(struct transport *t, int rc,
                                             const char *what,
                                             struct dm_err *err)
{
	char peer[300];
	transport_peer_name(t, peer, sizeof(peer));
	if (rc == GNUTLS_E_PUSH_ERROR || rc == GNUTLS_E_PULL_ERROR)
		return dm_err_set(err, DM_ENET, "%s %s: %s", what, peer,
		                  gnutls_strerror(rc));
	return dm_err_set(err, DM_ETLS, "%s %s: TLS error: %s", what, peer,
	                  gnutls_strerror(rc));
}

/* ---- the TLS table ----------------------------------------------------- */

static enum dm_status transport_tls_read(struct transport *t, void *buf,
                                         size_t cap, long deadline_ms,
                                         size_t *got, struct dm_err *err)
{
	struct transport_tls *tls = t->tls;
	for (int tries = 0; tries < 1000; tries++) {
		ssize_t r = gnutls_record_recv(tls->session, buf, cap);
		if (r >= 0) {
			*got = (size_t)r;
			return DM_OK;
		}
		if (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_WARNING_ALERT_RECEIVED ||
		    r == GNUTLS_E_REHANDSHAKE)
			continue;  /* renegotiation is refused by GnuTLS with an alert */
		if (r == GNUTLS_E_PREMATURE_TERMINATION) {
			/* The peer closed without close_notify; SMTP has its own
			 * end markers, so report it as an ordinary close. */
			*got = 0;
			return DM_OK;
		}
		if (r != GNUTLS_E_AGAIN)
			return transport_tls_io_error(t, (int)r, "read from", err);
		/* GNUTLS_E_AGAIN also follows a post-handshake record (a TLS 1.3
		 * session ticket) that yielded no data; whatever GnuTLS already
		 * holds is taken before waiting on the socket. */
		if (gnutls_record_check_pending(tls->session) > 0)
			continue;
		int w = transport_tls_wait_until(t, deadline_ms);
		if (w == 0 || w == TRANSPORT_POLL_CANCELED) {
			char peer[300];
			transport_peer_name(t, peer, sizeof(peer));
			if (w == 0)
				return dm_err_set(err, DM_ETIMEOUT,
				                  "read from %s: timed out", peer);
			return dm_err_set(err, DM_ECANCELED, "read from %s: canceled",
			                  peer);
		}
		if (w < 0)
			return transport_tls_io_error(t, GNUTLS_E_PULL_ERROR,
			                              "read from", err);
	}
	return transport_tls_io_error(t, GNUTLS_E_PULL_ERROR, "read from", err);
}

static enum dm_status transport_tls_send(struct transport *t, const void *buf,
                                         size_t len, struct dm_err *err)
{
	struct transport_tls *tls = t->tls;
	const unsigned char *p = buf;
	for (int tries = 0; len > 0 && tries < 10000; tries++) {
		/* After GNUTLS_E_AGAIN the same arguments are passed again. */
		ssize_t r = gnutls_record_send(tls->session, p, len);
		if (r > 0) {
			t->stats.writes++;
			p += r;
			len -= (size_t)r;
			continue;
		}
		if (r == GNUTLS_E_INTERRUPTED)
			continue;
		if (r != GNUTLS_E_AGAIN)
			return transport_tls_io_error(t, (int)r, "write to", err);
		int w = transport_tls_wait_until(t, transport_now_ms() + t->timeout_ms);
		if (w == 0 || w == TRANSPORT_POLL_CANCELED) {
			char peer[300];
			transport_peer_name(t, peer, sizeof(peer));
			if (w == 0)
				return dm_err_set(err, DM_ETIMEOUT,
				                  "write to %s: no progress within %d ms",
				                  peer, t->timeout_ms);
			return dm_err_set(err, DM_ECANCELED, "write to %s: canceled",
			                  peer);
		}
		if (w < 0)
			return transport_tls_io_error(t, GNUTLS_E_PUSH_ERROR,
			                              "write to", err);
	}
	if (len > 0)
		return transport_tls_io_error(t, GNUTLS_E_PUSH_ERROR, "write to", err);
	return DM_OK;
}

static void transport_tls_close(struct transport *t)
{
	struct transport_tls *tls = t->tls;
	if (tls == NULL)
		return;
	/* close_notify, bounded: a peer that stopped reading must not hold us,
	 * and a cancelled handle does not wait at all. */
	long deadline = transport_now_ms() +
		(t->timeout_ms < TRANSPORT_TLS_BYE_MS ? t->timeout_ms
		                                      : TRANSPORT_TLS_BYE_MS);
	for (int tries = 0; tries < 100; tries++) {
		int r = gnutls_bye(tls->session, GNUTLS_SHUT_WR);
		if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED)
			break;
		if (transport_tls_wait_until(t, deadline) <= 0)
			break;
	}
	transport_tls_free(t);
}

static enum dm_status transport_tls_start_tls(struct transport *t,
                                              struct dm_err *err)
{
	(void)t;
	return dm_err_set(err, DM_EPROTO, "start TLS: TLS is already active");
}

static const struct transport_ops transport_tls_ops = {
	.name = "tls",
	.start_tls = transport_tls_start_tls,
	.read = transport_tls_read,
	.send = transport_tls_send,
	.close = transport_tls_close,
};

/* ---- verification helpers --------------------------------------------- */

static bool transport_tls_is_ip(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, buf) == 1 ||
	       inet_pton(AF_INET6, host, buf) == 1;
}

/* Parses a SHA-256 pin: 64 hex digits, colons (and spaces) allowed. */
static bool transport_tls_parse_pin(const char *text, unsigned char out[32])
{
	size_t n = 0;
	int hi = -1;
	for (const char *p = text; *p != '\0'; p++) {
		int v;
		if (*p == ':' || *p == ' ')
			continue;
		if (*p >= '0' && *p <= '9')
			v = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			v = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F')
			v = *p - 'A' + 10;
		else
			return false;
		if (hi < 0) {
			hi = v;
			continue;
		}
		if (n == 32)
			return false;
		out[n++] = (unsigned char)(hi << 4 | v);
		hi = -1;
	}
	return n == 32 && hi < 0;
}

/* Why a chain failed, from the verification status bits. */
static const char *transport_tls_status_reason(unsigned status)
{
	if (status & GNUTLS_CERT_SIGNER_NOT_FOUND)
		return "signer not found";
	if (status & GNUTLS_CERT_EXPIRED)
		return "certificate expired";
	if (status & GNUTLS_CERT_NOT_ACTIVATED)
		return "certificate not yet valid";
	if (status & GNUTLS_CERT_REVOKED)
		return "certificate revoked";
	if (status & GNUTLS_CERT_SIGNER_NOT_CA)
		return "signer is not a CA";
	if (status & GNUTLS_CERT_INSECURE_ALGORITHM)
		return "insecure signature algorithm";
	if (status & GNUTLS_CERT_SIGNATURE_FAILURE)
		return "bad signature";
	if (status & GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE)
		return "signer constraints violated";
	if (status & GNUTLS_CERT_PURPOSE_MISMATCH)
		return "certificate not for TLS servers";
	return "verification failed";
}

/* The names a certificate is for: DNS and IP SANs, else the CN. */
static void transport_tls_cert_names(gnutls_x509_crt_t crt, char *out,
                                     size_t cap)
{
	size_t o = 0;
	out[0] = '\0';
	for (unsigned i = 0; i < 64; i++) {
		unsigned char san[256];
		size_t sz = sizeof(san) - 1;
		unsigned critical;
		int type = gnutls_x509_crt_get_subject_alt_name(crt, i, san, &sz,
		                                                 &critical);
		if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			break;
		char name[INET6_ADDRSTRLEN + 1];
		const char *show = NULL;
		if (type == GNUTLS_SAN_DNSNAME) {
			san[sz] = '\0';
			show = (const char *)san;
		} else if (type == GNUTLS_SAN_IPADDRESS && (sz == 4 || sz == 16)) {
			if (inet_ntop(sz == 4 ? AF_INET : AF_INET6, san, name,
			              sizeof(name)) != NULL)
				show = name;
		}
		if (show == NULL)
			continue;
		int w = snprintf(out + o, cap - o, "%s%s", o > 0 ? ", " : "", show);
		if (w < 0 || (size_t)w >= cap - o)
			break;
		o += (size_t)w;
	}
	if (o == 0) {
		size_t sz = cap;
		if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0,
		                                  0, out, &sz) < 0)
			snprintf(out, cap, "(no names)");
	}
}

/* Fills subject and fingerprint, runs the checks, applies the policy. */
static enum dm_status transport_tls_verify(struct transport *t,
                                           const unsigned char *pin,
                                           struct dm_err *err)
{
	struct transport_tls *tls = t->tls;
	struct transport_tls_info *info = &t->info;
	unsigned ncerts = 0;
	const gnutls_datum_t *certs =
		gnutls_certificate_get_peers(tls->session, &ncerts);
	if (certs == NULL || ncerts == 0) {
		snprintf(info->verify_error, sizeof(info->verify_error),
		         "server sent no certificate");
		return dm_err_set(err, DM_ETLS, "%s", info->verify_error);
	}
	gnutls_x509_crt_t leaf;
	if (gnutls_x509_crt_init(&leaf) < 0)
		return dm_err_set(err, DM_ENOMEM, "TLS: out of memory");
	int rc = gnutls_x509_crt_import(leaf, &certs[0], GNUTLS_X509_FMT_DER);
	if (rc < 0) {
		gnutls_x509_crt_deinit(leaf);
		snprintf(info->verify_error, sizeof(info->verify_error),
		         "cannot parse server certificate: %s", gnutls_strerror(rc));
		return dm_err_set(err, DM_ETLS, "%s", info->verify_error);
	}
	gnutls_datum_t dn = { NULL, 0 };
	if (gnutls_x509_crt_get_dn3(leaf, &dn, 0) >= 0) {
		snprintf(info->subject, sizeof(info->subject), "%.*s",
		         (int)dn.size, (const char *)dn.data);
		gnutls_free(dn.data);
	}
	unsigned char fp[32];
	size_t fpsz = sizeof(fp);
	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, certs[0].data, certs[0].size,
	                     fp) < 0) {
		gnutls_x509_crt_deinit(leaf);
		return dm_err_set(err, DM_ECRYPTO, "TLS: SHA-256 unavailable");
	}
	text_hex(fp, fpsz, info->fingerprint, sizeof(info->fingerprint), false, ':');

	/* Chain, then host name, so that each failure has its own reason. */
	char reason[240] = "";
	unsigned status = 0;
	rc = gnutls_certificate_verify_peers2(tls->session, &status);
	/* The cafile (the session's only anchors) found no signer: try the
	 * system store (see the top of this file). */
	if (t->system_trust &&
	    (rc < 0 || (status & GNUTLS_CERT_SIGNER_NOT_FOUND) != 0)) {
		unsigned sys_status = 0;
		int sys_rc = transport_tls_verify_system(certs, ncerts, &sys_status);
		if (sys_rc >= 0) {
			rc = sys_rc;
			status = sys_status;
		}
	}
	if (rc < 0)
		snprintf(reason, sizeof(reason),
		         "certificate for %.100s not trusted: %.100s", t->host,
		         gnutls_strerror(rc));
	else if (status != 0)
		snprintf(reason, sizeof(reason),
		         "certificate for %.100s not trusted: %.100s", t->host,
		         transport_tls_status_reason(status));
	else if (!gnutls_x509_crt_check_hostname2(leaf, t->host, 0)) {
		char names[160];
		transport_tls_cert_names(leaf, names, sizeof(names));
		snprintf(reason, sizeof(reason),
		         "host name mismatch: certificate is for %.100s, not %.60s", names,
		         t->host);
	}
	gnutls_x509_crt_deinit(leaf);

	if (pin != NULL) {
		if (memcmp(pin, fp, sizeof(fp)) != 0) {
			char want[96];
			text_hex(pin, 32, want, sizeof(want), false, ':');
			snprintf(info->verify_error, sizeof(info->verify_error),
			         "certificate fingerprint mismatch: server has %s",
			         info->fingerprint);
			return dm_err_set(err, DM_ETLS,
			                  "certificate fingerprint mismatch for %s: "
			                  "server has %s, pinned %s", t->host,
			                  info->fingerprint, want);
		}
		info->pinned = true;
		info->verified = true;
		return DM_OK;
	}
	if (!t->verify) {
		snprintf(info->verify_error, sizeof(info->verify_error),
		         "verification off%s%s", reason[0] ? ": " : "", reason);
		info->verified = false;
		return DM_OK;
	}
	if (reason[0] != '\0') {
		snprintf(info->verify_error, sizeof(info->verify_error), "%s", reason);
		return dm_err_set(err, DM_ETLS, "%s", reason);
	}
	info->verified = true;
	return DM_OK;
}

/* ---- handshake --------------------------------------------------------- */

/* Client credentials: only the cafile (the system store is not loaded
 * here: see transport_tls_verify()). */
static enum dm_status transport_tls_client_cred(struct transport *t,
                                                struct transport_tls *tls,
                                                struct dm_err *err)
{
	if (gnutls_certificate_allocate_credentials(&tls->cred) < 0)
		return dm_err_set(err, DM_ENOMEM, "TLS: out of memory");
	if (t->cafile != NULL) {
		int n = gnutls_certificate_set_x509_trust_file(tls->cred, t->cafile,
		                                               GNUTLS_X509_FMT_PEM);
		if (n < 0)
			return dm_err_set(err, DM_ECONFIG,
			                  "Email/CAFile: cannot load '%s': %s",
			                  t->cafile, gnutls_strerror(n));
		if (n == 0)
			return dm_err_set(err, DM_ECONFIG,
			                  "Email/CAFile: '%s' holds no certificate",
			                  t->cafile);
	}
	return DM_OK;
}

static enum dm_status transport_tls_setup(struct transport *t,
                                          struct dm_err *err)
{
	bool server = t->role == TRANSPORT_SERVER;
	struct transport_tls_creds *creds = NULL;
	if (server) {
		creds = t->cert != NULL ? server_cert_creds(t->cert) : NULL;
		if (creds == NULL) {
			char peer[300];
			transport_peer_name(t, peer, sizeof(peer));
			return dm_err_set(err, DM_ECONFIG, "TLS with %s: this server "
			                  "has no certificate", peer);
		}
	}
	struct transport_tls *tls = calloc(1, sizeof(*tls));
	if (tls == NULL)
		return dm_err_set(err, DM_ENOMEM, "TLS: out of memory");
	t->tls = tls;
	if (!server) {
		enum dm_status st = transport_tls_client_cred(t, tls, err);
		if (st != DM_OK)
			return st;
	}
	int rc = gnutls_init(&tls->session,
	                     (server ? GNUTLS_SERVER : GNUTLS_CLIENT) |
	                     GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
	if (rc < 0)
		return dm_err_set(err, DM_ECRYPTO, "TLS: init: %s",
		                  gnutls_strerror(rc));
	(void)pthread_once(&transport_tls_prio_once, transport_tls_prio_load);
	rc = transport_tls_prio_rc;
	if (rc >= 0)
		rc = gnutls_priority_set(tls->session, transport_tls_prio);
	if (rc < 0)
		return dm_err_set(err, DM_ECRYPTO, "TLS: priority '%s': %s",
		                  transport_tls_prio_where != NULL
		                  ? transport_tls_prio_where : "",
		                  gnutls_strerror(rc));
	rc = gnutls_credentials_set(tls->session, GNUTLS_CRD_CERTIFICATE,
	                            server ? creds->cred : tls->cred);
	if (rc < 0)
		return dm_err_set(err, DM_ECRYPTO, "TLS: credentials: %s",
		                  gnutls_strerror(rc));
	if (server) {
		gnutls_certificate_server_set_request(tls->session,
		                                      GNUTLS_CERT_IGNORE);
		rc = gnutls_session_ticket_enable_server(tls->session,
		                                         &creds->ticket_key);
		if (rc < 0)
			return dm_err_set(err, DM_ECRYPTO, "TLS: session tickets: %s",
			                  gnutls_strerror(rc));
	} else if (t->host[0] != '\0' && !transport_tls_is_ip(t->host)) {
		/* RFC 6066 section 3: literal IPv4 and IPv6 addresses are not
		 * permitted in "HostName". */
		rc = gnutls_server_name_set(tls->session, GNUTLS_NAME_DNS, t->host,
		                            strlen(t->host));
		if (rc < 0)
			return dm_err_set(err, DM_ETLS, "TLS: server name '%s': %s",
			                  t->host, gnutls_strerror(rc));
	}
	gnutls_transport_set_ptr(tls->session, t);
	gnutls_transport_set_pull_function(tls->session, transport_tls_pull);
	gnutls_transport_set_pull_timeout_function(tls->session,
	                                           transport_tls_pull_timeout);
	gnutls_transport_set_push_function(tls->session, transport_tls_push);
	gnutls_transport_set_vec_push_function(tls->session,
	                                       transport_tls_vec_push);
	/* Our loop bounds the handshake (see the top of this file). */
	gnutls_handshake_set_timeout(tls->session, 0);
	return DM_OK;
}

void transport_tls_prepare(struct transport *t)
{
	if (transport_tls_setup(t, NULL) != DM_OK)
		transport_tls_free(t);   /* the handshake sets up and reports */
}

void transport_tls_discard(struct transport *t)
{
	transport_tls_free(t);
}

/* Version and cipher into tls_info. */
static void transport_tls_note_params(struct transport *t)
{
	struct transport_tls *tls = t->tls;
	const char *v = gnutls_protocol_get_name(
		gnutls_protocol_get_version(tls->session));
	const char *c = gnutls_cipher_get_name(gnutls_cipher_get(tls->session));
	snprintf(t->info.version, sizeof(t->info.version), "%s", v ? v : "?");
	snprintf(t->info.cipher, sizeof(t->info.cipher), "%s", c ? c : "?");
}

enum dm_status transport_tls_handshake(struct transport *t, struct dm_err *err)
{
	unsigned char pin[32];
	bool client = t->role == TRANSPORT_CLIENT;
	bool have_pin = client && t->fingerprint != NULL &&
	                t->fingerprint[0] != '\0';
	if (have_pin && !transport_tls_parse_pin(t->fingerprint, pin))
		return dm_err_set(err, DM_ECONFIG,
		                  "Email/Fingerprint: '%s' is not a SHA-256 "
		                  "fingerprint (64 hex digits, colons allowed)",
		                  t->fingerprint);
	memset(&t->info, 0, sizeof(t->info));
	/* A client's session may be set up already (transport_prepare_tls). */
	enum dm_status st = t->tls != NULL ? DM_OK : transport_tls_setup(t, err);
	if (st != DM_OK) {
		transport_tls_free(t);
		return st;
	}
	struct transport_tls *tls = t->tls;
	char peer[300];
	transport_peer_name(t, peer, sizeof(peer));
	long deadline = transport_now_ms() + t->timeout_ms;
	int rc = GNUTLS_E_AGAIN;
	for (int tries = 0; tries < 10000; tries++) {
		rc = gnutls_handshake(tls->session);
		if (rc == GNUTLS_E_SUCCESS)
			break;
		if (rc == GNUTLS_E_INTERRUPTED ||
		    (rc != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(rc)))
			continue;
		if (rc != GNUTLS_E_AGAIN)
			break;
		/* TCP_QUICKACK is re-armed by the pull function after each
		 * handshake read, so the peer's next flight is not held. */
		int w = transport_tls_wait_until(t, deadline);
		if (w == 0) {
			transport_tls_free(t);
			return dm_err_set(err, DM_ETIMEOUT,
			                  "TLS handshake with %s: no answer within %d ms",
			                  peer, t->timeout_ms);
		}
		if (w == TRANSPORT_POLL_CANCELED) {
			transport_tls_free(t);
			return dm_err_set(err, DM_ECANCELED,
			                  "TLS handshake with %s: canceled", peer);
		}
		if (w < 0) {
			transport_tls_free(t);
			return dm_err_set(err, DM_ENET, "TLS handshake with %s: %s",
			                  peer, strerror(errno));
		}
	}
	if (rc != GNUTLS_E_SUCCESS) {
		enum dm_status code = DM_ETLS;
		if (rc == GNUTLS_E_PUSH_ERROR || rc == GNUTLS_E_PULL_ERROR)
			code = DM_ENET;
		else if (rc == GNUTLS_E_TIMEDOUT)
			code = DM_ETIMEOUT;
		const char *extra = "";
		if (rc == GNUTLS_E_FATAL_ALERT_RECEIVED)
			extra = gnutls_alert_get_name(gnutls_alert_get(tls->session));
		transport_tls_free(t);
		return dm_err_set(err, code, "TLS handshake with %s failed: %s%s%s",
		                  peer, gnutls_strerror(rc), extra[0] ? ": " : "",
		                  extra);
	}
	if (client) {
		st = transport_tls_verify(t, have_pin ? pin : NULL, err);
		if (st != DM_OK) {
			/* Tell the server why, then drop the session (the caller
			 * closes). */
			gnutls_alert_send(tls->session, GNUTLS_AL_FATAL,
			                  GNUTLS_A_BAD_CERTIFICATE);
			transport_tls_free(t);
			return st;
		}
	}
	transport_tls_note_params(t);
	t->info.active = true;
	t->ops = &transport_tls_ops;
	return DM_OK;
}

/* ---- server credentials ------------------------------------------------ */

enum dm_status transport_tls_creds_new(const char *cert, size_t cert_len,
                                       const char *key, size_t key_len,
                                       const char *what,
                                       struct transport_tls_creds **out,
                                       struct dm_err *err)
{
	*out = NULL;
	if (cert_len > UINT32_MAX || key_len > UINT32_MAX)
		return dm_err_set(err, DM_ECONFIG, "%s: file too large", what);
	struct transport_tls_creds *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return dm_err_set(err, DM_ENOMEM, "TLS: out of memory");
	int rc = gnutls_certificate_allocate_credentials(&c->cred);
	if (rc < 0) {
		free(c);
		return dm_err_set(err, DM_ENOMEM, "TLS: out of memory");
	}
	/* GnuTLS takes non-const data but only reads it. */
	gnutls_datum_t cd = { (unsigned char *)(uintptr_t)cert, (unsigned)cert_len };
	gnutls_datum_t kd = { (unsigned char *)(uintptr_t)key, (unsigned)key_len };
	rc = gnutls_certificate_set_x509_key_mem2(c->cred, &cd, &kd,
	                                          GNUTLS_X509_FMT_PEM, NULL, 0);
	if (rc < 0) {
		gnutls_certificate_free_credentials(c->cred);
		free(c);
		return dm_err_set(err, rc == GNUTLS_E_MEMORY_ERROR ? DM_ENOMEM
		                                                   : DM_ECONFIG,
		                  "%s: cannot load the certificate and key: %s", what,
		                  gnutls_strerror(rc));
	}
	rc = gnutls_session_ticket_key_generate(&c->ticket_key);
	if (rc < 0) {
		gnutls_certificate_free_credentials(c->cred);
		free(c);
		return dm_err_set(err, DM_ECRYPTO, "TLS: session ticket key: %s",
		                  gnutls_strerror(rc));
	}
	*out = c;
	return DM_OK;
}

void transport_tls_creds_free(struct transport_tls_creds *c)
{
	if (c == NULL)
		return;
	gnutls_certificate_free_credentials(c->cred);
	if (c->ticket_key.data != NULL) {
		gnutls_memset(c->ticket_key.data, 0, c->ticket_key.size);
		gnutls_free(c->ticket_key.data);
	}
	free(c);
}

enum dm_status transport_tls_channel_binding(struct transport *t,
                                             const char *type,
                                             unsigned char *out, size_t cap,
                                             size_t *len, struct dm_err *err)
{
	struct transport_tls *tls = t->tls;
	gnutls_channel_binding_t cbt;
	bool tls13 = gnutls_protocol_get_version(tls->session) == GNUTLS_TLS1_3;
	if (type != NULL && strcmp(type, "tls-unique") == 0) {
		/* RFC 9266 section 1: tls-unique is undefined for TLS 1.3. */
		if (tls13)
			return dm_err_set(err, DM_ENOTFOUND,
			                  "channel binding tls-unique: not defined for TLS 1.3");
		cbt = GNUTLS_CB_TLS_UNIQUE;
	} else if (type != NULL && strcmp(type, "tls-exporter") == 0) {
		cbt = GNUTLS_CB_TLS_EXPORTER;
	} else {
		return dm_err_set(err, DM_ENOTFOUND,
		                  "channel binding '%s': unknown type",
		                  type != NULL ? type : "(null)");
	}
	gnutls_datum_t cb = { NULL, 0 };
	int rc = gnutls_session_channel_binding(tls->session, cbt, &cb);
	if (rc < 0)
		return dm_err_set(err, DM_ENOTFOUND, "channel binding %s: %s", type,
		                  gnutls_strerror(rc));
	if (cb.size > cap) {
		gnutls_free(cb.data);
		return dm_err_set(err, DM_ENOMEM,
		                  "channel binding %s: %u bytes do not fit in %zu",
		                  type, cb.size, cap);
	}
	memcpy(out, cb.data, cb.size);
	*len = cb.size;
	gnutls_free(cb.data);
	return DM_OK;
}
