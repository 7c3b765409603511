/*
 * proto_runner.c - runs one scripted fake-server SMTP case (docs/proto-cases.md).
 *
 * The server side runs in a thread on a 127.0.0.1 listener and plays the
 * script: it sends replies, checks every client line exactly (and which
 * read each line arrived in, to assert PIPELINING flights), switches to TLS
 * (GnuTLS, test PKI from tests/lib/pki.sh), runs a GNU SASL server for
 * SCRAM, injects faults ("trickle MS TEXT": one byte every MS ms, for
 * per-reply deadlines).  The main thread is the client: smtp_client_open,
 * smtp_client_send, smtp_client_close; then the expectations are checked.
 * Every wait is bounded; the server thread is always joined.
 * Expectations beyond docs/proto-cases.md: "verified yes/no" (the TLS
 * certificate was verified or pinned) and "reply N CODE [ENH] TEXT"
 * (message N's deciding reply as the result holds it).
 * BDAT (RFC 3030): a client line "BDAT n [LAST]" announces n raw bytes,
 * which the D:, D+ and D# lines that follow must account for exactly.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gsasl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "mail/smtp.h"
#include "mail/verdict.h"

#define MAXLINES 512
#define IO_TIMEOUT_MS 10000

enum op_kind { OP_S, OP_SRAW, OP_SSLOW, OP_C, OP_CPLUS, OP_DELAY, OP_CLOSE,
               OP_STARTTLS, OP_TLS, OP_SASL, OP_WAITCLOSE, OP_TRICKLE,
               OP_DLINE, OP_DRAW, OP_DSKIP };

struct op { enum op_kind kind; char *arg; int line; };

struct msg {
	char *from;
	char *rcpt[16];
	size_t nrcpt;
	char *body;
	size_t bodylen, bodycap, size;
	bool b8, utf8;
	bool fail;    /* bodyfail: the source fails at the end of its bytes */
	size_t pos;   /* source read position */
};

struct expect { char *what; int line; };

static struct op ops[MAXLINES];
static size_t nops;
static struct msg msgs[8];
static size_t nmsgs;
static struct expect expects[64];
static size_t nexpects;
static struct smtp_settings cs;
static unsigned send_flags;
static char servercert[32] = "server";
static char pkidir[256];
static bool need_tls;
static bool noconnect;          /* the client must not even connect */
static int done_pipe[2] = { -1, -1 };
static const char *case_path;

static char server_err[1024];
static int listen_fd = -1;

static char *transcript;
static size_t tlen, tcap;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", case_path);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* Every string the case parser allocates, freed at exit (LeakSanitizer). */
static char *allocs[4096];
static size_t nallocs;

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d || nallocs >= sizeof(allocs) / sizeof(allocs[0]))
		die("out of memory");
	allocs[nallocs++] = d;
	return d;
}

static void free_all(void)
{
	for (size_t i = 0; i < nallocs; i++)
		free(allocs[i]);
	for (size_t i = 0; i < nmsgs; i++)
		free(msgs[i].body);
	free(transcript);
}

/* \r \n \t \\ \xHH */
static size_t unescape(const char *in, char *out)
{
	size_t o = 0;
	for (const char *p = in; *p; p++) {
		if (*p != '\\' || !p[1]) {
			out[o++] = *p;
			continue;
		}
		p++;
		switch (*p) {
		case 'r': out[o++] = '\r'; break;
		case 'n': out[o++] = '\n'; break;
		case 't': out[o++] = '\t'; break;
		case 'x': {
			unsigned v = 0;
			sscanf(p + 1, "%2x", &v);
			out[o++] = (char)v;
			p += 2;
			break;
		}
		default: out[o++] = *p; break;
		}
	}
	out[o] = '\0';
	return o;
}

static bool onoff(const char *v)
{
	return !strcasecmp(v, "on") || !strcasecmp(v, "yes") || !strcmp(v, "1");
}

static void body_add(struct msg *m, const char *s, size_t n)
{
	if (m->bodylen + n + 1 > m->bodycap) {
		m->bodycap = (m->bodylen + n + 1) * 2;
		m->body = realloc(m->body, m->bodycap);
		if (!m->body)
			die("out of memory");
	}
	memcpy(m->body + m->bodylen, s, n);
	m->bodylen += n;
}

static void parse_case(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die("cannot open: %s", strerror(errno));
	char buf[8192];
	int lineno = 0;
	cs.host = "127.0.0.1";
	cs.starttls = true;
	cs.verify = true;
	cs.timeout_ms = 5000;
	cs.helo_name = "client.test";
	while (fgets(buf, sizeof(buf), f) && lineno < 100000) {
		lineno++;
		size_t n = strlen(buf);
		while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			buf[--n] = '\0';
		if (n == 0 || buf[0] == '#')
			continue;
		char *sp = strchr(buf, ' ');
		char *arg = sp ? sp + 1 : buf + n;
		if (sp)
			*sp = '\0';
		const char *kw = buf;
		struct op *o = nops < MAXLINES ? &ops[nops] : NULL;
		if (!o)
			die("too many script lines");
		o->line = lineno;
		o->arg = xstrdup(arg);
		if (!strcmp(kw, "S:")) o->kind = OP_S, nops++;
		else if (!strcmp(kw, "S+")) o->kind = OP_SRAW, nops++;
		else if (!strcmp(kw, "S~")) o->kind = OP_SSLOW, nops++;
		else if (!strcmp(kw, "C:")) o->kind = OP_C, nops++;
		else if (!strcmp(kw, "C+")) o->kind = OP_CPLUS, nops++;
		else if (!strcmp(kw, "delay")) o->kind = OP_DELAY, nops++;
		else if (!strcmp(kw, "close")) o->kind = OP_CLOSE, nops++;
		else if (!strcmp(kw, "waitclose")) o->kind = OP_WAITCLOSE, nops++;
		else if (!strcmp(kw, "starttls")) o->kind = OP_STARTTLS, nops++, need_tls = true;
		else if (!strcmp(kw, "tls")) o->kind = OP_TLS, nops++, need_tls = true;
		else if (!strcmp(kw, "sasl")) o->kind = OP_SASL, nops++;
		else if (!strcmp(kw, "trickle")) o->kind = OP_TRICKLE, nops++;
		else if (!strcmp(kw, "D:")) o->kind = OP_DLINE, nops++;
		else if (!strcmp(kw, "D+")) o->kind = OP_DRAW, nops++;
		else if (!strcmp(kw, "D#")) o->kind = OP_DSKIP, nops++;
		else {
			if (!strcmp(kw, "set")) {
				char *v = strchr(arg, ' ');
				const char *val = v ? (*v = '\0', v + 1) : "";
				char *dv = xstrdup(val);
				if (!strcmp(arg, "username")) cs.username = dv;
				else if (!strcmp(arg, "password")) cs.password = dv;
				else if (!strcmp(arg, "token")) cs.oauth_token = dv;
				else if (!strcmp(arg, "mechanism")) cs.mechanism = dv;
				else if (!strcmp(arg, "helo")) cs.helo_name = dv;
				else if (!strcmp(arg, "timeout")) cs.timeout_ms = atoi(dv);
				else if (!strcmp(arg, "smtps")) cs.smtps = onoff(dv);
				else if (!strcmp(arg, "starttls")) cs.starttls = onoff(dv);
				else if (!strcmp(arg, "require_tls")) cs.require_tls = onoff(dv);
				else if (!strcmp(arg, "verify")) cs.verify = onoff(dv);
				else if (!strcmp(arg, "allow_plaintext_auth")) cs.allow_plaintext_auth = onoff(dv);
				else if (!strcmp(arg, "pipeline_auth")) cs.pipeline_auth = onoff(dv);
				else if (!strcmp(arg, "chunking")) cs.no_chunking = !onoff(dv);
				else if (!strcmp(arg, "bdat_chunk")) cs.bdat_chunk = strtoul(dv, NULL, 10);
				else if (!strcmp(arg, "servercert")) snprintf(servercert, sizeof(servercert), "%s", dv);
				else if (!strcmp(arg, "fingerprint")) cs.fingerprint = dv;
				else die("line %d: unknown setting '%s'", lineno, arg);
			} else if (!strcmp(kw, "message")) {
				if (nmsgs >= 8)
					die("too many messages");
				struct msg *m = &msgs[nmsgs++];
				char *save = NULL;
				char *tok = strtok_r(arg, " ", &save);
				m->from = xstrdup(tok ? tok : "");
				if (!strcmp(m->from, "<>"))
					m->from[0] = '\0';
				while ((tok = strtok_r(NULL, " ", &save))) {
					if (!strcmp(tok, "8bit")) m->b8 = true;
					else if (!strcmp(tok, "utf8")) m->utf8 = true;
					else if (!strncmp(tok, "size=", 5)) m->size = strtoul(tok + 5, NULL, 10);
					else die("line %d: bad message option '%s'", lineno, tok);
				}
			} else if (!strcmp(kw, "rcpt")) {
				if (!nmsgs || msgs[nmsgs - 1].nrcpt >= 16)
					die("line %d: rcpt without message", lineno);
				char tmp[1024];
				unescape(arg, tmp);
				msgs[nmsgs - 1].rcpt[msgs[nmsgs - 1].nrcpt++] = xstrdup(tmp);
			} else if (!strcmp(kw, "body")) {
				if (!nmsgs)
					die("line %d: body without message", lineno);
				char tmp[8192];
				size_t l = unescape(arg, tmp);
				body_add(&msgs[nmsgs - 1], tmp, l);
				body_add(&msgs[nmsgs - 1], "\r\n", 2);
			} else if (!strcmp(kw, "bodyrep")) {
				/* bodyrep COUNT TEXT: TEXT CRLF, COUNT times */
				char *sp2 = strchr(arg, ' ');
				long count = atol(arg);
				if (!nmsgs || !sp2 || count < 1 || count > 1000000)
					die("line %d: bodyrep COUNT TEXT after a message", lineno);
				char tmp[8192];
				size_t l = unescape(sp2 + 1, tmp);
				for (long k = 0; k < count; k++) {
					body_add(&msgs[nmsgs - 1], tmp, l);
					body_add(&msgs[nmsgs - 1], "\r\n", 2);
				}
			} else if (!strcmp(kw, "bodyraw")) {
				if (!nmsgs)
					die("line %d: bodyraw without message", lineno);
				char tmp[8192];
				size_t l = unescape(arg, tmp);
				body_add(&msgs[nmsgs - 1], tmp, l);
			} else if (!strcmp(kw, "bodyfail")) {
				if (!nmsgs)
					die("line %d: bodyfail without message", lineno);
				msgs[nmsgs - 1].fail = true;
			} else if (!strcmp(kw, "noconnect")) {
				noconnect = true;
			} else if (!strcmp(kw, "flags")) {
				if (strstr(arg, "quit"))
					send_flags |= SMTP_SEND_QUIT;
			} else if (!strcmp(kw, "expect")) {
				if (nexpects >= 64)
					die("too many expectations");
				expects[nexpects].what = xstrdup(arg);
				expects[nexpects++].line = lineno;
			} else {
				die("line %d: unknown keyword '%s'", lineno, kw);
			}
		}
	}
	fclose(f);
	if (cs.smtps)
		need_tls = true;
}

/* ---- server side --------------------------------------------------------- */

struct srv {
	int fd;
	gnutls_session_t tls;
	gnutls_certificate_credentials_t cred;
	char in[65536];
	unsigned chunk[65536];
	size_t ilen, ipos;
	unsigned nchunks;
	unsigned last_chunk;   /* chunk of the last byte consumed, 0: none */
	char out[65536];
	size_t olen;
	unsigned long chunk_left; /* BDAT bytes announced, not yet accounted */
	unsigned long chunk_size; /* ... of the BDAT command they belong to */
};

static void server_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void server_fail(const char *fmt, ...)
{
	if (server_err[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(server_err, sizeof(server_err), fmt, ap);
	va_end(ap);
}

static bool srv_send_now(struct srv *s, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w;
		if (s->tls)
			w = gnutls_record_send(s->tls, buf, len);
		else
			w = send(s->fd, buf, len, MSG_NOSIGNAL);
		if (w <= 0) {
			if (!s->tls && w < 0 && errno == EINTR)
				continue;
			if (s->tls && (w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED))
				continue;
			return false;   /* the client may have gone: not our error */
		}
		buf += w;
		len -= (size_t)w;
	}
	return true;
}

static void srv_flush(struct srv *s)
{
	if (s->olen)
		srv_send_now(s, s->out, s->olen);
	s->olen = 0;
}

/* One read from the client: returns bytes (>0), 0 on EOF, -1 on timeout or
 * error. */
static long srv_read_chunk(struct srv *s, int timeout_ms)
{
	if (s->ipos > 0) {
		memmove(s->in, s->in + s->ipos, s->ilen - s->ipos);
		memmove(s->chunk, s->chunk + s->ipos, (s->ilen - s->ipos) * sizeof(unsigned));
		s->ilen -= s->ipos;
		s->ipos = 0;
	}
	if (s->ilen >= sizeof(s->in))
		return -1;
	if (!(s->tls && gnutls_record_check_pending(s->tls) > 0)) {
		struct pollfd p = { .fd = s->fd, .events = POLLIN };
		int r = poll(&p, 1, timeout_ms);
		if (r <= 0)
			return -1;
	}
	ssize_t got;
	if (s->tls) {
		do
			got = gnutls_record_recv(s->tls, s->in + s->ilen, sizeof(s->in) - s->ilen);
		while (got == GNUTLS_E_AGAIN || got == GNUTLS_E_INTERRUPTED);
		if (got < 0 && gnutls_error_is_fatal((int)got))
			got = 0;   /* alert or premature end: the client went away */
	} else {
		got = recv(s->fd, s->in + s->ilen, sizeof(s->in) - s->ilen, 0);
	}
	if (got < 0)
		return -1;
	s->nchunks++;
	for (ssize_t i = 0; i < got; i++)
		s->chunk[s->ilen + (size_t)i] = s->nchunks;
	s->ilen += (size_t)got;
	return got;
}

/* Reads one client line (CRLF required).  *chunk_start is the read id of
 * its first byte.  Returns false on EOF/timeout. */
static bool srv_line(struct srv *s, char *line, size_t cap, unsigned *chunk_start,
                     bool *eof)
{
	*eof = false;
	for (int guard = 0; guard < 10000; guard++) {
		char *nl = memchr(s->in + s->ipos, '\n', s->ilen - s->ipos);
		if (nl) {
			size_t n = (size_t)(nl - (s->in + s->ipos)) + 1;
			*chunk_start = s->chunk[s->ipos];
			s->last_chunk = s->chunk[s->ipos + n - 1];
			size_t k = n < cap ? n : cap - 1;
			memcpy(line, s->in + s->ipos, k);
			line[k] = '\0';
			s->ipos += n;
			return true;
		}
		long r = srv_read_chunk(s, IO_TIMEOUT_MS);
		if (r == 0)
			*eof = true;
		if (r <= 0)
			return false;
	}
	return false;
}

static void printable(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	for (; *in && o + 5 < cap; in++) {
		if (*in == '\r') { out[o++] = '\\'; out[o++] = 'r'; }
		else if (*in == '\n') { out[o++] = '\\'; out[o++] = 'n'; }
		else out[o++] = *in;
	}
	out[o] = '\0';
}

/* The bytes a BDAT announced must all be described before the next
 * client line (or the end of the script). */
static bool srv_chunk_done(struct srv *s, int line)
{
	if (s->chunk_left == 0)
		return true;
	server_fail("line %d: the BDAT before announced %lu bytes; the case "
	            "describes only %lu of them (D: / D+ / D# lines)", line,
	            s->chunk_size, s->chunk_size - s->chunk_left);
	return false;
}

static bool srv_expect(struct srv *s, const struct op *o, bool same_flight)
{
	srv_flush(s);
	if (!srv_chunk_done(s, o->line))
		return false;
	char want[4096], got[4096], pg[4096], pw[4096];
	size_t wl = unescape(o->arg, want);
	memcpy(want + wl, "\r\n", 3);
	unsigned prev = s->last_chunk, start = 0;
	bool eof;
	if (!srv_line(s, got, sizeof(got), &start, &eof)) {
		printable(want, pw, sizeof(pw));
		server_fail("line %d: expected client line '%s', got %s", o->line, pw,
		            eof ? "EOF" : "nothing (timeout)");
		return false;
	}
	if (strcmp(got, want) != 0) {
		printable(want, pw, sizeof(pw));
		printable(got, pg, sizeof(pg));
		server_fail("line %d: expected client line '%s', got '%s'", o->line, pw, pg);
		return false;
	}
	if (same_flight && start != prev) {
		server_fail("line %d: '%s' was expected in the same flight (read) as "
		            "the previous line, but arrived in a later one", o->line, o->arg);
		return false;
	}
	if (!same_flight && prev != 0 && start == prev) {
		server_fail("line %d: '%s' arrived in the same flight (read) as the "
		            "previous line; expected a new flight", o->line, o->arg);
		return false;
	}
	/* "BDAT n [LAST]" (RFC 3030 2): n raw bytes follow. */
	if (!strncmp(want, "BDAT ", 5)) {
		s->chunk_size = s->chunk_left = strtoul(want + 5, NULL, 10);
	}
	return true;
}

/* Chunk data after a BDAT: D: (a line, CRLF added) and D+ (raw bytes)
 * compare `want` and must start in the same read as the client bytes
 * before them; D# only counts bytes (chunks too big to write out, which
 * may span reads). */
static bool srv_chunk_data(struct srv *s, const struct op *o)
{
	char want[8192 + 2], pw[4096], pg[4096];
	size_t wl = 0;
	unsigned long n;
	bool compare = o->kind != OP_DSKIP;
	if (compare) {
		wl = unescape(o->arg, want);
		if (o->kind == OP_DLINE) {
			memcpy(want + wl, "\r\n", 3);
			wl += 2;
		}
		n = wl;
	} else {
		n = strtoul(o->arg, NULL, 10);
	}
	if (n > s->chunk_left) {
		server_fail("line %d: %lu bytes of chunk data, but the BDAT "
		            "announced only %lu more", o->line, n, s->chunk_left);
		return false;
	}
	unsigned prev = s->last_chunk;
	bool first = true;
	for (unsigned long done = 0; done < n; ) {
		if (s->ipos == s->ilen) {
			long r = srv_read_chunk(s, IO_TIMEOUT_MS);
			if (r <= 0) {
				server_fail("line %d: chunk data: got %s after %lu of %lu "
				            "bytes", o->line, r == 0 ? "EOF" : "nothing",
				            done, n);
				return false;
			}
			continue;
		}
		if (first && compare && s->chunk[s->ipos] != prev) {
			server_fail("line %d: chunk data arrived in a later flight "
			            "(read) than its BDAT", o->line);
			return false;
		}
		first = false;
		size_t take = s->ilen - s->ipos;
		if (take > n - done)
			take = n - done;
		if (compare && memcmp(s->in + s->ipos, want + done, take) != 0) {
			char got[8192 + 2];
			size_t gl = take < sizeof(got) - 1 ? take : sizeof(got) - 1;
			memcpy(got, s->in + s->ipos, gl);
			got[gl] = '\0';
			want[wl] = '\0';
			printable(want, pw, sizeof(pw));
			printable(got, pg, sizeof(pg));
			server_fail("line %d: expected chunk data '%s', got '%s'",
			            o->line, pw, pg);
			return false;
		}
		s->ipos += take;
		done += take;
		s->last_chunk = s->chunk[s->ipos - 1];
	}
	s->chunk_left -= n;
	return true;
}

static bool srv_start_tls(struct srv *s)
{
	srv_flush(s);
	if (s->ipos < s->ilen) {
		server_fail("client sent bytes before the TLS handshake");
		return false;
	}
	char cert[512], key[512];
	snprintf(cert, sizeof(cert), "%s/%s.pem", pkidir, servercert);
	snprintf(key, sizeof(key), "%s/%s.key", pkidir, servercert);
	if (gnutls_certificate_allocate_credentials(&s->cred) < 0 ||
	    gnutls_certificate_set_x509_key_file(s->cred, cert, key, GNUTLS_X509_FMT_PEM) < 0 ||
	    gnutls_init(&s->tls, GNUTLS_SERVER) < 0 ||
	    gnutls_set_default_priority(s->tls) < 0 ||
	    gnutls_credentials_set(s->tls, GNUTLS_CRD_CERTIFICATE, s->cred) < 0) {
		server_fail("GnuTLS server setup failed");
		return false;
	}
	gnutls_transport_set_int(s->tls, s->fd);
	gnutls_handshake_set_timeout(s->tls, IO_TIMEOUT_MS);
	int r;
	do
		r = gnutls_handshake(s->tls);
	while (r < 0 && !gnutls_error_is_fatal(r));
	if (r < 0) {
		/* Expected when the client refuses the certificate. */
		gnutls_deinit(s->tls);
		s->tls = NULL;
		return false;
	}
	return true;
}

struct sasl_srv_ctx { const char *user, *pass; };

static int srv_sasl_cb(Gsasl *ctx, Gsasl_session *sctx, Gsasl_property prop)
{
	struct sasl_srv_ctx *sc = gsasl_callback_hook_get(ctx);
	if (prop == GSASL_PASSWORD) {
		const char *authid = gsasl_property_fast(sctx, GSASL_AUTHID);
		if (authid && !strcmp(authid, sc->user)) {
			gsasl_property_set(sctx, GSASL_PASSWORD, sc->pass);
			return GSASL_OK;
		}
		return GSASL_AUTHENTICATION_ERROR;
	}
	return GSASL_NO_CALLBACK;
}

/* sasl MECH user pass: reads "AUTH MECH [ir]" and runs GNU SASL's server. */
static bool srv_sasl(struct srv *s, const struct op *o)
{
	char mech[64], user[128], pass[128];
	if (sscanf(o->arg, "%63s %127s %127s", mech, user, pass) != 3) {
		server_fail("line %d: sasl MECH USER PASS", o->line);
		return false;
	}
	srv_flush(s);
	char line[4096];
	unsigned start;
	bool eof;
	if (!srv_line(s, line, sizeof(line), &start, &eof)) {
		server_fail("line %d: expected AUTH %s, got %s", o->line, mech, eof ? "EOF" : "nothing");
		return false;
	}
	line[strcspn(line, "\r\n")] = '\0';
	char prefix[80];
	snprintf(prefix, sizeof(prefix), "AUTH %s", mech);
	size_t pl = strlen(prefix);
	if (strncmp(line, prefix, pl) || (line[pl] && line[pl] != ' ')) {
		server_fail("line %d: expected '%s ...', got '%s'", o->line, prefix, line);
		return false;
	}
	char input[4096];
	snprintf(input, sizeof(input), "%s", line[pl] ? line + pl + 1 : "");
	Gsasl *ctx;
	Gsasl_session *sctx;
	struct sasl_srv_ctx sc = { user, pass };
	if (gsasl_init(&ctx) != GSASL_OK) {
		server_fail("gsasl_init");
		return false;
	}
	gsasl_callback_hook_set(ctx, &sc);
	gsasl_callback_set(ctx, srv_sasl_cb);
	if (gsasl_server_start(ctx, mech, &sctx) != GSASL_OK) {
		gsasl_done(ctx);
		server_fail("gsasl_server_start %s", mech);
		return false;
	}
	if (s->tls) {
		gnutls_datum_t cb;
		char b64[256];
		if (gnutls_session_channel_binding(s->tls, GNUTLS_CB_TLS_EXPORTER, &cb) == 0) {
			gnutls_datum_t enc;
			if (gnutls_base64_encode2(&cb, &enc) == 0) {
				snprintf(b64, sizeof(b64), "%.*s", (int)enc.size, enc.data);
				gsasl_property_set(sctx, GSASL_CB_TLS_EXPORTER, b64);
				gnutls_free(enc.data);
			}
			gnutls_free(cb.data);
		}
		if (gnutls_session_channel_binding(s->tls, GNUTLS_CB_TLS_UNIQUE, &cb) == 0) {
			gnutls_datum_t enc;
			if (gnutls_base64_encode2(&cb, &enc) == 0) {
				snprintf(b64, sizeof(b64), "%.*s", (int)enc.size, enc.data);
				gsasl_property_set(sctx, GSASL_CB_TLS_UNIQUE, b64);
				gnutls_free(enc.data);
			}
			gnutls_free(cb.data);
		}
	}
	bool ok = true;
	for (int step = 0; step < 10; step++) {
		char *out = NULL;
		int rc = gsasl_step64(sctx, strcmp(input, "=") ? input : "", &out);
		if (rc == GSASL_NEEDS_MORE || (rc == GSASL_OK && out && out[0])) {
			char reply[4200];
			snprintf(reply, sizeof(reply), "334 %s\r\n", out ? out : "");
			free(out);
			srv_send_now(s, reply, strlen(reply));
			if (!srv_line(s, line, sizeof(line), &start, &eof)) {
				server_fail("line %d: SASL: client went away", o->line);
				ok = false;
				break;
			}
			line[strcspn(line, "\r\n")] = '\0';
			if (!strcmp(line, "*")) {
				srv_send_now(s, "501 5.7.0 Cancelled\r\n", 21);
				break;
			}
			if (rc == GSASL_OK) {
				srv_send_now(s, "235 2.7.0 Authentication successful\r\n", 37);
				break;
			}
			snprintf(input, sizeof(input), "%s", line);
			continue;
		}
		free(out);
		if (rc == GSASL_OK)
			srv_send_now(s, "235 2.7.0 Authentication successful\r\n", 37);
		else
			srv_send_now(s, "535 5.7.8 Authentication credentials invalid\r\n", 46);
		break;
	}
	gsasl_finish(sctx);
	gsasl_done(ctx);
	return ok;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void *server_main(void *arg)
{
	(void)arg;
	struct srv *s = calloc(1, sizeof(*s));
	if (!s) {
		server_fail("out of memory");
		return NULL;
	}
	struct pollfd p[2] = { { .fd = listen_fd, .events = POLLIN },
	                       { .fd = done_pipe[0], .events = POLLIN } };
	if (poll(p, 2, IO_TIMEOUT_MS) <= 0 || !(p[0].revents & POLLIN)) {
		if (!noconnect)
			server_fail("no client connected");
		free(s);
		return NULL;
	}
	if (noconnect) {
		server_fail("the client connected though it should not have");
		free(s);
		return NULL;
	}
	s->fd = accept(listen_fd, NULL, NULL);
	if (s->fd < 0) {
		server_fail("accept: %s", strerror(errno));
		free(s);
		return NULL;
	}
	bool closed = false, ok = true;
	for (size_t i = 0; i < nops && ok && !closed; i++) {
		const struct op *o = &ops[i];
		char tmp[8192];
		size_t l;
		switch (o->kind) {
		case OP_S:
			l = unescape(o->arg, tmp);
			if (s->olen + l + 2 < sizeof(s->out)) {
				memcpy(s->out + s->olen, tmp, l);
				memcpy(s->out + s->olen + l, "\r\n", 2);
				s->olen += l + 2;
			}
			break;
		case OP_SRAW:
			l = unescape(o->arg, tmp);
			if (s->olen + l < sizeof(s->out)) {
				memcpy(s->out + s->olen, tmp, l);
				s->olen += l;
			}
			break;
		case OP_SSLOW:
			srv_flush(s);
			l = unescape(o->arg, tmp);
			memcpy(tmp + l, "\r\n", 2);
			for (size_t k = 0; k < l + 2; k++) {
				srv_send_now(s, tmp + k, 1);
				sleep_ms(2);
			}
			break;
		case OP_TRICKLE: {
			/* trickle MS text: text CRLF one byte per write, MS ms
			 * apart; stops once the client has gone. */
			char *sp = strchr(o->arg, ' ');
			int ms = atoi(o->arg);
			if (!sp || ms <= 0 || ms > 1000) {
				server_fail("line %d: trickle MS TEXT (MS 1-1000)", o->line);
				ok = false;
				break;
			}
			srv_flush(s);
			l = unescape(sp + 1, tmp);
			memcpy(tmp + l, "\r\n", 2);
			for (size_t k = 0; k < l + 2; k++) {
				if (!srv_send_now(s, tmp + k, 1))
					break;
				sleep_ms(ms);
			}
			break;
		}
		case OP_C:
		case OP_CPLUS:
			ok = srv_expect(s, o, o->kind == OP_CPLUS);
			break;
		case OP_DLINE:
		case OP_DRAW:
		case OP_DSKIP:
			ok = srv_chunk_data(s, o);
			break;
		case OP_DELAY:
			srv_flush(s);
			sleep_ms(atoi(o->arg));
			break;
		case OP_CLOSE:
			srv_flush(s);
			closed = true;
			break;
		case OP_STARTTLS:
		case OP_TLS:
			ok = srv_start_tls(s);
			break;
		case OP_SASL:
			ok = srv_sasl(s, o);
			break;
		case OP_WAITCLOSE:
			break;
		}
	}
	srv_flush(s);
	if (ok && !closed)
		ok = srv_chunk_done(s, nops ? ops[nops - 1].line : 0);
	if (ok && !closed) {
		/* The script is over: the client must say nothing more and close. */
		for (int guard = 0; guard < 100; guard++) {
			long r = srv_read_chunk(s, IO_TIMEOUT_MS);
			if (r == 0)
				break;
			if (r < 0) {
				if (s->ipos == s->ilen)
					server_fail("client did not close the connection");
				break;
			}
		}
		if (s->ipos < s->ilen) {
			char pg[512], raw[256];
			size_t k = s->ilen - s->ipos < 255 ? s->ilen - s->ipos : 255;
			memcpy(raw, s->in + s->ipos, k);
			raw[k] = '\0';
			printable(raw, pg, sizeof(pg));
			server_fail("unexpected client bytes after the script: '%s'", pg);
		}
	}
	if (s->tls) {
		gnutls_bye(s->tls, GNUTLS_SHUT_WR);
		gnutls_deinit(s->tls);
	}
	if (s->cred)
		gnutls_certificate_free_credentials(s->cred);
	close(s->fd);
	free(s);
	return NULL;
}

/* ---- client side --------------------------------------------------------- */

static void on_transcript(void *ctx, enum smtp_dir dir, const char *line)
{
	(void)ctx;
	const char *tag = dir == SMTP_DIR_CLIENT ? "C: " : dir == SMTP_DIR_SERVER ? "S: " : "I: ";
	size_t n = strlen(tag) + strlen(line) + 1;
	if (tlen + n + 1 > tcap) {
		tcap = (tlen + n + 1) * 2;
		transcript = realloc(transcript, tcap);
		if (!transcript)
			die("out of memory");
	}
	tlen += (size_t)sprintf(transcript + tlen, "%s%s\n", tag, line);
	if (getenv("PROTO_VERBOSE"))
		fprintf(stderr, "%s%s\n", tag, line);
}

static enum dm_status msg_read(void *ctx, char *buf, size_t cap, size_t *got,
                               struct dm_err *err)
{
	struct msg *m = ctx;
	if (m->fail && m->pos == m->bodylen) {
		*got = 0;
		return dm_err_set(err, DM_EIO, "test source: read error");
	}
	size_t n = m->bodylen - m->pos;
	if (n > cap)
		n = cap;
	if (n > 7)
		n = 7 + (m->pos % 5);   /* odd chunks: stuffing across boundaries */
	if (n > m->bodylen - m->pos)
		n = m->bodylen - m->pos;
	memcpy(buf, m->body + m->pos, n);
	m->pos += n;
	*got = n;
	return DM_OK;
}

static const char *const status_names[] = {
	"OK", "EINVAL", "EUSAGE", "ENOTFOUND", "ENOINPUT", "ECONFIG", "EPERM",
	"EIO", "ENOMEM", "ECRYPTO", "ENET", "ETIMEOUT", "ETLS", "EPROTO", "EAUTH",
	"ETEMPFAIL", "EPERMFAIL", "EBUSY",
};

static const char *sname(enum dm_status st)
{
	return (size_t)st < sizeof(status_names) / sizeof(status_names[0])
	       ? status_names[st] : "?";
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: proto_runner CASE\n");
		return 2;
	}
	case_path = argv[1];
	parse_case(case_path);
	char tmpl[] = "/tmp/devmail-proto-XXXXXX";
	if (need_tls) {
		if (!mkdtemp(tmpl))
			die("mkdtemp: %s", strerror(errno));
		snprintf(pkidir, sizeof(pkidir), "%s", tmpl);
		const char *src = getenv("DEVMAIL_SOURCE_DIR");
		char cmd[1024];
		snprintf(cmd, sizeof(cmd), "bash '%s/tests/lib/pki.sh' '%s'",
		         src ? src : ".", pkidir);
		if (system(cmd) != 0)
			die("pki.sh failed");
		static char cafile[300];
		snprintf(cafile, sizeof(cafile), "%s/ca.pem", pkidir);
		cs.cafile = cafile;
	}
	gnutls_global_init();
	listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof(sa);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(listen_fd, 1) < 0 ||
	    getsockname(listen_fd, (struct sockaddr *)&sa, &sl) < 0)
		die("listen: %s", strerror(errno));
	cs.port = ntohs(sa.sin_port);
	cs.transcript = on_transcript;
	if (pipe(done_pipe) != 0)
		die("pipe: %s", strerror(errno));
	pthread_t th;
	if (pthread_create(&th, NULL, server_main, NULL) != 0)
		die("pthread_create");

	/* the client */
	struct smtp_client *c = NULL;
	struct dm_err oerr, serr, cerr;
	dm_err_clear(&oerr);
	dm_err_clear(&serr);
	dm_err_clear(&cerr);
	enum dm_status ost = smtp_client_open(&cs, &c, &oerr);
	enum dm_status sst = DM_OK, cst = DM_OK;
	struct smtp_envelope env[8];
	static struct smtp_result res[8];
	struct smtp_info info;
	memset(&info, 0, sizeof(info));
	if (ost == DM_OK) {
		for (size_t i = 0; i < nmsgs; i++) {
			env[i] = (struct smtp_envelope){
				.from = msgs[i].from,
				.rcpt = (const char *const *)msgs[i].rcpt,
				.nrcpt = msgs[i].nrcpt,
				.body = { msg_read, &msgs[i] },
				.size = msgs[i].size,
				.needs_8bit = msgs[i].b8,
				.needs_smtputf8 = msgs[i].utf8,
			};
		}
		if (nmsgs)
			sst = smtp_client_send(c, env, nmsgs, res, send_flags, &serr);
		info = *smtp_client_info(c);
		cst = smtp_client_close(c, &cerr);
	} else {
		/* The client gave up: no more bytes will come. */
	}
	if (write(done_pipe[1], "x", 1) != 1)
		fprintf(stderr, "warning: cannot signal the server thread\n");
	pthread_join(th, NULL);
	close(listen_fd);
	close(done_pipe[0]);
	close(done_pipe[1]);
	if (need_tls) {
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pkidir);
		if (system(cmd) != 0)
			fprintf(stderr, "warning: could not remove %s\n", pkidir);
	}
	gnutls_global_deinit();

	fprintf(stderr, "open: %s (%s)\n", sname(ost), oerr.msg);
	if (nmsgs && ost == DM_OK)
		fprintf(stderr, "send: %s (%s)\n", sname(sst), serr.msg);
	int failures = 0;
	if (server_err[0]) {
		fprintf(stderr, "FAIL server: %s\n", server_err);
		failures++;
	}
	struct dm_err *lasterr = ost != DM_OK ? &oerr : &serr;
	for (size_t i = 0; i < nexpects; i++) {
		char *w = expects[i].what;
		char key[64] = "", a[512] = "", b[512] = "", cc[512] = "";
		sscanf(w, "%63s", key);
		const char *rest = w + strlen(key);
		while (*rest == ' ')
			rest++;
		bool ok = true;
		char got[1024] = "";
		if (!strcmp(key, "open")) {
			snprintf(got, sizeof(got), "%s", sname(ost));
			ok = !strcmp(rest, got);
		} else if (!strcmp(key, "send")) {
			snprintf(got, sizeof(got), "%s", sname(sst));
			ok = !strcmp(rest, got);
		} else if (!strcmp(key, "close")) {
			snprintf(got, sizeof(got), "%s", sname(cst));
			ok = !strcmp(rest, got);
		} else if (!strcmp(key, "msg")) {
			/* msg N STATUS [CODE] */
			int nmsg = 0, code = -1;
			sscanf(rest, "%d %511s %d", &nmsg, a, &code);
			if (nmsg < 1 || (size_t)nmsg > nmsgs)
				die("expect msg: bad index");
			struct smtp_result *r = &res[nmsg - 1];
			snprintf(got, sizeof(got), "%s %d (%s)", sname(r->status), r->code, r->diag);
			ok = !strcmp(a, sname(r->status)) && (code < 0 || code == r->code);
		} else if (!strcmp(key, "phase")) {
			/* phase N NAME: where message N stopped (smtp_result.phase) */
			static const char *const names[] = { "none", "auth", "local",
			                                     "mail", "rcpt", "data" };
			int nmsg = 0;
			sscanf(rest, "%d %511s", &nmsg, a);
			if (nmsg < 1 || (size_t)nmsg > nmsgs)
				die("expect phase: bad index");
			unsigned ph = (unsigned)res[nmsg - 1].phase;
			snprintf(got, sizeof(got), "%s", ph < 6 ? names[ph] : "?");
			ok = !strcmp(a, got);
		} else if (!strcmp(key, "rcpt")) {
			int nmsg = 0, k = 0, code = 0;
			sscanf(rest, "%d %d %d", &nmsg, &k, &code);
			if (nmsg < 1 || (size_t)nmsg > nmsgs || k < 1)
				die("expect rcpt: bad index");
			snprintf(got, sizeof(got), "%d", res[nmsg - 1].rcpt[k - 1].code);
			ok = res[nmsg - 1].rcpt[k - 1].code == code;
		} else if (!strcmp(key, "tls")) {
			snprintf(got, sizeof(got), "%s", info.tls.active ? "on" : "off");
			ok = !strcmp(rest, got);
		} else if (!strcmp(key, "mode")) {
			snprintf(got, sizeof(got), "%s", smtp_tls_mode_str(info.tls_mode));
			ok = !strcmp(rest, got);
		} else if (!strcmp(key, "auth")) {
			snprintf(got, sizeof(got), "%s", info.mechanism[0] ? info.mechanism : "none");
			ok = !strcmp(rest, got);
		} else if (!strcmp(key, "error-contains")) {
			snprintf(got, sizeof(got), "%s", lasterr->msg);
			ok = strstr(lasterr->msg, rest) != NULL;
		} else if (!strcmp(key, "server-code")) {
			snprintf(got, sizeof(got), "%d %s", lasterr->smtp_code, lasterr->enhanced);
			ok = !strcmp(rest, got) ||
			     (atoi(rest) == lasterr->smtp_code && !strchr(rest, ' '));
		} else if (!strcmp(key, "temporary")) {
			enum dm_status st = ost != DM_OK ? ost : sst;
			bool t = verdict_failure(st, lasterr->smtp_code) == VERDICT_TEMPORARY;
			snprintf(got, sizeof(got), "%s", t ? "yes" : "no");
			ok = !strcmp(rest, got);
		} else if (!strcmp(key, "verified")) {
			snprintf(got, sizeof(got), "%s", info.tls.verified ? "yes" : "no");
			ok = !strcmp(rest, got);
		} else if (!strcmp(key, "reply")) {
			/* reply N CODE [ENH] TEXT: message N's deciding reply */
			char *end = NULL;
			long nmsg = strtol(rest, &end, 10);
			if (nmsg < 1 || (size_t)nmsg > nmsgs || !end || *end != ' ')
				die("expect reply: bad index");
			const struct smtp_result *r = &res[nmsg - 1];
			snprintf(got, sizeof(got), "%d%s%s %.500s", r->code,
			         r->enhanced[0] ? " " : "", r->enhanced, r->text);
			ok = !strcmp(end + 1, got);
		} else if (!strcmp(key, "transcript-has")) {
			char un[512];
			snprintf(a, sizeof(a), "%.500s", rest);
			unescape(a, un);
			snprintf(cc, sizeof(cc), "%.500s\n", un);
			snprintf(b, sizeof(b), "\n%.500s", cc);
			snprintf(got, sizeof(got), "(see transcript)");
			ok = transcript && (strncmp(transcript, cc, strlen(cc)) == 0 ||
			                    strstr(transcript, b));
		} else if (!strcmp(key, "transcript-lacks")) {
			snprintf(a, sizeof(a), "%.500s", rest);
			unescape(a, b);
			snprintf(got, sizeof(got), "(found in transcript)");
			ok = !transcript || !strstr(transcript, b);
		} else {
			die("line %d: unknown expectation '%s'", expects[i].line, key);
		}
		if (!ok) {
			fprintf(stderr, "FAIL line %d: expect %s -- got: %s\n",
			        expects[i].line, w, got);
			failures++;
		}
	}
	if (failures) {
		fprintf(stderr, "--- client transcript ---\n%s", transcript ? transcript : "");
		free_all();
		return 1;
	}
	fprintf(stderr, "PASS (%zu expectations)\n", nexpects);
	free_all();
	return 0;
}
