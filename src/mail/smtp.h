/*
 * smtp.h - SMTP submission client (RFC 5321) with STARTTLS (RFC 3207),
 * implicit TLS (RFC 8314), AUTH (RFC 4954), PIPELINING (RFC 2920), SIZE
 * (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), CHUNKING (RFC
 * 3030, BDAT; not BINARYMIME) and enhanced status codes (RFC 3463).
 *
 * One opaque handle per connection.  smtp_client_open() connects, reads the
 * greeting, says EHLO, upgrades to TLS, authenticates; smtp_client_send()
 * delivers a batch of messages over that connection (pipelined when the
 * server offers PIPELINING, each message as BDAT chunks when it offers
 * CHUNKING); smtp_client_close() says QUIT and frees.
 *
 * Policy (see smtp.c): AUTH is never sent in clear unless
 * allow_plaintext_auth; credentials set but AUTH not offered is an error;
 * RequireTLS fails before any MAIL when TLS cannot be had; bytes after the
 * 220 reply to STARTTLS abort the session.
 */
#ifndef DEVMAIL_MAIL_SMTP_H
#define DEVMAIL_MAIL_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"
#include "mail/source.h"
#include "net/transport.h"

/* Transcript directions. */
enum smtp_dir {
	SMTP_DIR_CLIENT,   /* a command line we sent (AUTH payloads redacted) */
	SMTP_DIR_SERVER,   /* one reply line received */
	SMTP_DIR_INFO,     /* an engine note: state transition, TLS, policy */
};

/* Called once per line, without CRLF.  `line` is only valid during the call.
 * Control characters other than tab (ESC sequences from a server, a bare
 * CR) are shown as '?': the line is safe to print on a terminal. */
typedef void (*smtp_transcript_fn)(void *ctx, enum smtp_dir dir,
                                   const char *line);

/* All strings are caller-owned and need only live during the call that
 * takes the settings (smtp_client_open*): the engine keeps copies of what
 * it needs later, never of the password or token (its SASL copies are
 * wiped when AUTH ends). */
struct smtp_settings {
	const char *host;            /* server name or address (required) */
	unsigned port;               /* 0: 465 when smtps, else 25 */
	bool smtps;                  /* implicit TLS from the first byte (RFC 8314) */
	bool starttls;               /* upgrade with STARTTLS when offered */
	bool require_tls;            /* never send MAIL over a clear connection */
	bool verify;                 /* verify chain + host name */
	const char *cafile;          /* extra trust anchors or NULL */
	const char *fingerprint;     /* SHA-256 pin or NULL */
	int timeout_ms;              /* per reply; <= 0: 60 s.  A deadline for
	                              * the whole reply from when we start
	                              * waiting for it (bytes trickling in do
	                              * not extend it); also connect and TLS
	                              * handshake.  The reply to the final dot
	                              * of DATA waits max(timeout_ms, 10 min)
	                              * (RFC 5321 4.5.3.2.6: the server may be
	                              * filtering the content, and giving up
	                              * early means a retry and a duplicate). */
	const char *helo_name;       /* EHLO argument; NULL/"": "localhost" */
	const char *username;        /* AUTH identity, NULL/"": no AUTH */
	const char *password;        /* secret, NULL/"" when none */
	const char *oauth_token;     /* OAuth 2 bearer token for XOAUTH2 or NULL */
	const char *mechanism;       /* NULL, "" or "auto", or a SASL name */
	bool allow_plaintext_auth;   /* operator override: AUTH without TLS */
	bool pipeline_auth;          /* hold a one-round-trip AUTH for the first
	                              * command group (see below); default off */
	bool no_chunking;            /* send with DATA even when the server
	                              * offers CHUNKING (tests, benchmarks);
	                              * default off: BDAT when offered */
	size_t bdat_chunk;           /* BDAT chunk size in bytes; 0: 128 KiB,
	                              * at most 16 MiB.  A message that fits
	                              * goes as one "BDAT n LAST". */
	smtp_transcript_fn transcript; /* or NULL */
	void *transcript_ctx;
	struct cancel *cancel;       /* NULL: none.  Passed to the transport
	                              * (net/cancel.h): once fired every wait
	                              * of the session returns DM_ECANCELED
	                              * and the messages whose final reply was
	                              * not received get that status (they stay
	                              * queued).  Borrowed: it must outlive the
	                              * session. */
};

/* One message of a batch.  Addresses are bare addr-specs (no <>); CR, LF,
 * '<', '>' and other controls are refused with DM_EINVAL before anything
 * is sent for that message. */
struct smtp_envelope {
	const char *from;            /* "" allowed: null reverse-path <> */
	const char *const *rcpt;     /* nrcpt addresses */
	size_t nrcpt;                /* 1..SMTP_MAX_RCPT */
	struct mail_source body;     /* CRLF message, not dot-stuffed (bare LF
	                              * and CR become CRLF, a missing final
	                              * line end is added, with DATA and BDAT
	                              * alike) */
	size_t size;                 /* size estimate for SIZE=, 0: unknown */
	bool needs_8bit;             /* body has 8-bit data: BODY=8BITMIME */
	bool needs_smtputf8;         /* UTF-8 addresses/headers: SMTPUTF8 */
};

#define SMTP_MAX_RCPT 100
#define SMTP_TEXT_MAX 512

struct smtp_rcpt_result {
	int code;                    /* RCPT reply code, 0: not attempted */
	char enhanced[16];
	char text[256];
};

/* Where a message's attempt stopped: what its deciding reply answered
 * (mail/verdict.h turns this into the retry verdict). */
enum smtp_phase {
	SMTP_PHASE_NONE,             /* no command of this message was answered:
	                                the session failed before it or ended
	                                before its turn */
	SMTP_PHASE_AUTH,             /* the AUTH pipelined ahead of its MAIL was
	                                refused (a session failure) */
	SMTP_PHASE_LOCAL,            /* refused before anything was sent for it */
	SMTP_PHASE_MAIL,             /* the reply to MAIL FROM */
	SMTP_PHASE_RCPT,             /* the replies to RCPT TO */
	SMTP_PHASE_DATA,             /* DATA, the content, the final dot (also
	                                when accepted) */
};

struct smtp_result {
	enum dm_status status;       /* DM_OK: accepted by the server */
	enum smtp_phase phase;       /* where it stopped (accepted: DATA) */
	int code;                    /* the deciding reply code, 0: none; for
	                                a message the session never reached,
	                                the reply that ended the session (421) */
	char enhanced[16];           /* its enhanced status code or "" */
	char text[SMTP_TEXT_MAX];    /* its text (first line) or "" */
	char diag[DM_ERR_TEXT];      /* our diagnosis when status != DM_OK */
	size_t nrcpt;
	size_t accepted;             /* recipients the server accepted */
	struct smtp_rcpt_result rcpt[SMTP_MAX_RCPT];
};

enum smtp_tls_mode {
	SMTP_TLS_NONE,
	SMTP_TLS_STARTTLS,
	SMTP_TLS_SMTPS,
};

/* What was negotiated; valid until smtp_client_close(). */
struct smtp_info {
	char host[256];
	unsigned port;
	enum smtp_tls_mode tls_mode;
	struct transport_tls_info tls; /* tls.active false on a clear link */
	char mechanism[32];          /* SASL mechanism used, "" when no AUTH */
	bool esmtp;                  /* EHLO accepted (false: HELO) */
	bool pipelining, eightbitmime, smtputf8, enhancedstatuscodes;
	bool chunking;               /* CHUNKING offered (BDAT is used unless
	                              * settings.no_chunking) */
	bool starttls_offered;
	unsigned long size_max;      /* SIZE limit, 0: none announced */
	char auth_offered[256];      /* AUTH mechanisms, space separated */
};

struct smtp_client;

/* Connects (transport_connect, or TLS at once when smtps), then greeting,
 * EHLO/HELO, STARTTLS, AUTH.  On success *out is a ready session.
 * Errors: DM_ECONFIG (bad settings, e.g. RequireTLS with TLS disabled),
 * DM_ENET, DM_ETIMEOUT, DM_ETLS (handshake, verification, RequireTLS and no
 * TLS offered), DM_EPROTO (garbage reply, STARTTLS response injection),
 * DM_EAUTH (refused, impossible, or would be sent in clear),
 * DM_ETEMPFAIL/DM_EPERMFAIL (greeting or EHLO refused), DM_ENOMEM.
 * err carries our diagnosis and the server's code/enhanced/text. */
enum dm_status smtp_client_open(const struct smtp_settings *s,
                                struct smtp_client **out, struct dm_err *err);

/* pipeline_auth (RFC 4954 section 4, RFC 2920): when the server offers
 * PIPELINING and the mechanism chosen completes in one round trip with an
 * initial response (PLAIN, XOAUTH2), smtp_client_open() does not wait for
 * the AUTH reply: it returns DM_OK after EHLO with the AUTH command held
 * (the encoded initial response, wiped once sent), and the first
 * smtp_client_send() sends it in one flight with the first message's
 * MAIL/RCPT/DATA (saves a round trip).  Then an AUTH refusal is reported
 * there: the session fails with DM_EAUTH, every message of the batch gets
 * DM_EAUTH (the current one with the server's code, e.g. 535), no body is
 * sent, and the connection is dropped.  smtp_client_close() without a send
 * sends the held AUTH with QUIT and returns DM_EAUTH when it is refused,
 * so open + close still checks the credentials.  Callers that treat open
 * failures and message failures differently (a wrong password must not
 * fail the message) must treat a DM_EAUTH result as a session failure
 * before turning this on.  With CHUNKING the first message's BDAT waits
 * for the AUTH, MAIL and RCPT replies: message data pipelined behind a
 * refused AUTH would be complete on the wire (no final dot to withhold),
 * and a server that takes mail without AUTH would deliver a message
 * reported as failed, to be sent again. */

/* Same on an already connected transport (tests, socketpair).  Takes
 * ownership of t, also on failure.  s->host/port only name the peer. */
enum dm_status smtp_client_open_transport(const struct smtp_settings *s,
                                          struct transport *t,
                                          struct smtp_client **out,
                                          struct dm_err *err);

/* Send QUIT together with the last message's final dot or BDAT LAST chunk
 * (PIPELINING) or right after it; smtp_client_close() then only reads the
 * reply. */
#define SMTP_SEND_QUIT 0x1

/* Delivers env[0..n) in order over the session, filling results[0..n).
 * A rejected recipient does not sink the others; a failed message does not
 * sink the next (RSET after a failed open transaction).  Returns DM_OK when
 * every message was accepted, else the status of the first failure (its
 * detail in err).  When the session itself fails (drop, timeout, 421), the
 * messages not yet accepted carry that status and the client accepts only
 * smtp_client_close().  Whether a failure is worth a retry is decided by
 * mail/verdict.h from results[i] (status, phase, code, enhanced, rcpt).
 * Errors: as results[i].status plus DM_EINVAL (bad
 * envelope), DM_EPERMFAIL (SIZE exceeded, 8BITMIME/SMTPUTF8 needed and not
 * offered, server 5xx), DM_ETEMPFAIL (4xx), DM_ENET, DM_ETIMEOUT, DM_EPROTO,
 * DM_ENOMEM (the BDAT chunk buffer), and the source's own errors.
 *
 * CHUNKING (RFC 3030), unless settings.no_chunking: each message goes as
 * BDAT chunks of bdat_chunk bytes, the last one "BDAT n LAST" (a message
 * that fits is one "BDAT n LAST"), not dot-stuffed.  With PIPELINING the
 * first chunks ride with MAIL and RCPT, and RSET plus the next message's
 * MAIL group (or QUIT) ride with the BDAT LAST: a batch of small messages
 * goes in one flight.  A reply to BDAT decides the message as the reply
 * to the final dot does with DATA.  A source that fails to read with BDAT
 * fails that message only (no chunk is ever sent short; RSET discards the
 * chunks sent), where DATA has to drop the connection. */
enum dm_status smtp_client_send(struct smtp_client *c,
                                const struct smtp_envelope *env, size_t n,
                                struct smtp_result *results, unsigned flags,
                                struct dm_err *err);

/* True while the session can take more messages (it did not fail and
 * QUIT was not sent). */
bool smtp_client_usable(const struct smtp_client *c);

/* Negotiated details.  Never NULL for a live client. */
const struct smtp_info *smtp_client_info(const struct smtp_client *c);

/* Sends QUIT (unless already sent), reads its reply (best effort), closes
 * the transport and frees.  NULL ok.  Returns DM_OK or the QUIT failure,
 * which callers may ignore: messages already accepted stay accepted; with
 * a held AUTH (pipeline_auth, no send) it is sent first: DM_EAUTH when
 * refused. */
enum dm_status smtp_client_close(struct smtp_client *c, struct dm_err *err);

/* "STARTTLS", "SMTPS" or "none". */
const char *smtp_tls_mode_str(enum smtp_tls_mode m);

#endif
