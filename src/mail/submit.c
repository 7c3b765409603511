/*
 * submit.c - enqueue (built or raw message) and deliver (one SMTP session
 * per batch) for every front end.  Contracts and the retry policy in
 * submit.h.
 *
 * RFC 5322 section 3.6 (Date and Message-ID are SHOULD/MUST for an
 * originator; a submission agent adds them when missing: RFC 6409 section
 * 8.2 and 8.3), section 2.2 (header fields, folding), RFC 5321 section
 * 4.1.1.4 (CRLF line ends).
 */
#include "mail/submit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/paths.h"
#include "mail/account.h"
#include "mail/address.h"
#include "mail/verdict.h"

/* ---- registry helpers ------------------------------------------------------ */

static long submit_reg_long(struct registry *reg, const char *key)
{
	long v = 0;
	if (registry_get_int(reg, key, &v, NULL) != DM_OK)
		return 0;   /* the outbox / log default */
	return v;
}

static void submit_policy(struct registry *reg, struct outbox_options *o)
{
	memset(o, 0, sizeof(*o));
	o->max_age = submit_reg_long(reg, "Outbox/MaxAge");
	o->retry_min = submit_reg_long(reg, "Outbox/RetryMin");
	o->retry_max = submit_reg_long(reg, "Outbox/RetryMax");
	o->log_max_size = submit_reg_long(reg, "Log/MaxSize");
}

enum dm_status submit_outbox_open(const char *root, struct registry *reg,
                                  struct outbox **out, struct dm_err *err)
{
	struct outbox_options o;
	submit_policy(reg, &o);
	return outbox_open(root, &o, out, err);
}

/* A registry default that must be set: DM_ECONFIG naming the key. */
static enum dm_status submit_reg_required(struct registry *reg, const char *key,
                                          const char *what, char *out,
                                          size_t cap, struct dm_err *err)
{
	enum dm_status st = registry_get(reg, key, out, cap, NULL, err);
	if (st)
		return st;
	if (!out[0])
		return dm_err_set(err, DM_ECONFIG,
		    "%s is not set: give %s or set it (REG %s = ...)", key, what, key);
	return DM_OK;
}

static enum dm_status submit_account_check(struct registry *reg,
                                           const char *root,
                                           struct dm_err *err)
{
	struct account a;
	memset(&a, 0, sizeof(a));
	enum dm_status st = account_load(reg, root, &a, err);
	account_clear(&a);
	return st;
}

/* ---- enqueue a built message ---------------------------------------------- */

static enum dm_status submit_write_message(void *ctx, int fd, struct dm_err *err)
{
	return message_write_fd(ctx, fd, err);
}

enum dm_status submit_enqueue_message(const char *root, struct registry *reg,
                                      const struct message_spec *spec,
                                      unsigned flags,
                                      char id[OUTBOX_ID_MAX],
                                      struct dm_err *err)
{
	struct message_spec s = *spec;
	char from[REG_VALUE_MAX], to[REG_VALUE_MAX], host[REG_VALUE_MAX];
	const char *tos[1];
	struct message *m = NULL;
	struct outbox *ob = NULL;
	const char **rcpt = NULL;
	enum dm_status st;

	id[0] = '\0';
	if (!s.from) {
		if ((st = submit_reg_required(reg, "Email/FromAddress", "-f FROM",
		                              from, sizeof(from), err)))
			return st;
		s.from = from;
	}
	if (s.nto == 0 && s.ncc == 0 && s.nbcc == 0) {
		if ((st = submit_reg_required(reg, "Email/ToAddress", "-t TO", to,
		                              sizeof(to), err)))
			return st;
		tos[0] = to;
		s.to = tos;
		s.nto = 1;
	}
	if (!s.hostname) {
		if (registry_get(reg, "IpConfig/HostName", host, sizeof(host), NULL,
		                 NULL) == DM_OK && host[0])
			s.hostname = host;
	}
	/* Validate the input first: bad input is reported as such even when
	 * the account is not configured yet. */
	if ((st = message_build(&s, &m, err)))
		return st;
	if ((flags & SUBMIT_NEED_ACCOUNT) &&
	    (st = submit_account_check(reg, root, err)))
		goto out;
	size_t n = message_recipient_count(m);
	if (n == 0 || n > SUBMIT_MAX_RCPT) {
		st = dm_err_set(err, DM_EINVAL, "%zu recipients (1 to %d allowed: "
		                "SMTP servers may refuse more in one message, RFC 5321 "
		                "4.5.3.1.8; send it in several parts)", n,
		                SUBMIT_MAX_RCPT);
		goto out;
	}
	rcpt = calloc(n, sizeof(*rcpt));
	if (!rcpt) {
		st = dm_err_set(err, DM_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		rcpt[i] = message_recipient(m, i);
	struct outbox_envelope env = {
		.from = message_sender(m), .rcpt = rcpt, .nrcpt = n,
		.needs_8bit = message_needs_8bitmime(m),
		.needs_smtputf8 = message_needs_smtputf8(m),
	};
	if ((st = submit_outbox_open(root, reg, &ob, err)))
		goto out;
	st = outbox_enqueue_writer(ob, &env, submit_write_message, m, id, err);
out:
	outbox_close(ob);
	free(rcpt);
	message_free(m);
	return st;
}

/* ---- enqueue a raw message -------------------------------------------------- */

/* Line-end normaliser.  In the header block (up to the first empty line)
 * LF and CRLF end a line and a CR not followed by LF is refused: turned
 * into a line break it would start a new header field the user never
 * wrote ("Subject: hi\rBcc: x" would add a Bcc recipient).  In the body
 * bare LF and bare CR become CRLF. */
struct submit_crlf {
	bool prev_cr;
	bool in_body;      /* the empty line after the header was seen */
	bool mid_line;     /* the current line has a character */
	char last[2];      /* the last two bytes emitted */
	uint64_t total;    /* bytes emitted */
};

#define SUBMIT_CRLF_NUL ((size_t)-1)     /* a NUL byte */
#define SUBMIT_CRLF_BARE_CR ((size_t)-2) /* a bare CR in the header block */

static void submit_crlf_eol(struct submit_crlf *c)
{
	if (!c->mid_line)
		c->in_body = true;    /* an empty line: the header ends */
	c->mid_line = false;
}

/* Converts in[0..n) into out (room for 2n bytes); returns bytes written,
 * SUBMIT_CRLF_NUL or SUBMIT_CRLF_BARE_CR. */
static size_t submit_crlf_run(struct submit_crlf *c, const char *in, size_t n,
                              char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = in[i];
		if (ch == '\0')
			return SUBMIT_CRLF_NUL;
		if (c->prev_cr) {
			c->prev_cr = false;
			if (ch != '\n' && !c->in_body)
				return SUBMIT_CRLF_BARE_CR;
			out[o++] = '\r';
			out[o++] = '\n';
			submit_crlf_eol(c);
			if (ch == '\n')
				continue;
		}
		if (ch == '\r') {
			c->prev_cr = true;
		} else if (ch == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
			submit_crlf_eol(c);
		} else {
			out[o++] = ch;
			c->mid_line = true;
		}
	}
	if (o >= 2) {
		c->last[0] = out[o - 2];
		c->last[1] = out[o - 1];
	} else if (o == 1) {
		c->last[0] = c->last[1];
		c->last[1] = out[0];
	}
	c->total += o;
	return o;
}

/* Flushes a pending CR and makes the message end in CRLF.  Returns the
 * bytes written (0 or 2), or SUBMIT_CRLF_BARE_CR for a CR ending the
 * header block. */
static size_t submit_crlf_end(struct submit_crlf *c, char out[2])
{
	if (c->prev_cr && !c->in_body)
		return SUBMIT_CRLF_BARE_CR;
	if (c->prev_cr || c->total == 0 || c->last[0] != '\r' || c->last[1] != '\n') {
		c->prev_cr = false;
		out[0] = '\r';
		out[1] = '\n';
		c->last[0] = '\r';
		c->last[1] = '\n';
		c->total += 2;
		return 2;
	}
	return 0;
}

/* The error for a SUBMIT_CRLF_* result. */
static enum dm_status submit_crlf_error(size_t o, struct dm_err *err)
{
	if (o == SUBMIT_CRLF_BARE_CR)
		return dm_err_set(err, DM_EINVAL,
		    "the message header contains a CR not followed by LF (it "
		    "would start a header field of its own); end header lines "
		    "with LF or CRLF");
	return dm_err_set(err, DM_EINVAL, "the message contains a NUL byte");
}

#define SUBMIT_CHUNK 65536

struct submit_rawctx {
	const struct submit_raw *raw;
	struct submit_crlf crlf;
	uint64_t max_size;
	char *head;           /* normalised bytes read so far (header + maybe more) */
	size_t head_len;      /* bytes in head */
	size_t head_end;      /* header block ends here (after its CRLF), body
	                         starts at body_off */
	size_t body_off;
	bool need_blank;      /* the body began without a blank line */
	bool eof;
	char prefix[1024];    /* fields we add */
	size_t prefix_len;
	/* header fields to drop (Bcc): byte ranges into head */
	size_t drop[64][2];
	size_t ndrop;
	char *buf;            /* SUBMIT_CHUNK in, 2x out */
	/* What the writer spooled, scanned as it goes: an 8-bit body needs
	 * BODY=8BITMIME (RFC 6152 sec. 3), a UTF-8 header SMTPUTF8 (RFC 6531
	 * sec. 3.4).  Copied into *env when the writer is done (the outbox
	 * reads the flags after the message, see outbox.h). */
	struct outbox_scan scan;
	struct outbox_envelope *env;
};

static bool submit_is_ftext(char c)
{
	return c > 32 && c < 127 && c != ':';
}

/* Reads from the source and normalises into head until the header block
 * is complete (or EOF).  Errors: the source's, DM_EINVAL. */
static enum dm_status submit_raw_read_head(struct submit_rawctx *r,
                                           struct dm_err *err)
{
	size_t cap = 0;
	size_t scan = 0;     /* start of the current unfinished line */
	bool first = true;

	for (;;) {
		/* Look at complete lines from scan on. */
		for (;;) {
			char *nl = r->head_len > scan
			    ? memmem(r->head + scan, r->head_len - scan, "\r\n", 2)
			    : NULL;
			if (!nl)
				break;
			size_t len = (size_t)(nl - (r->head + scan));
			const char *line = r->head + scan;
			if (len == 0) {
				r->head_end = scan;       /* blank line: header ends */
				r->body_off = scan + 2;
				return DM_OK;
			}
			bool cont = line[0] == ' ' || line[0] == '\t';
			size_t k = 0;
			while (k < len && submit_is_ftext(line[k]))
				k++;
			bool field = k > 0 && k < len && line[k] == ':';
			if ((cont && first) || (!cont && !field)) {
				/* Not a header line: the body starts here (postfix does
				 * the same); a blank line is inserted before it. */
				r->head_end = scan;
				r->body_off = scan;
				r->need_blank = true;
				return DM_OK;
			}
			first = false;
			scan += len + 2;
		}
		if (r->eof) {
			/* Header only, no body (possibly an unterminated last line). */
			r->head_end = r->head_len;
			r->body_off = r->head_len;
			return DM_OK;
		}
		if (r->head_len + 2 * SUBMIT_CHUNK + 2 > cap) {
			if (cap >= SUBMIT_HEADER_MAX + 4 * SUBMIT_CHUNK)
				return dm_err_set(err, DM_EINVAL,
				    "message header longer than %d bytes (no blank line "
				    "between header and body?)", SUBMIT_HEADER_MAX);
			size_t ncap = cap ? cap * 2 : 4 * SUBMIT_CHUNK;
			char *nh = realloc(r->head, ncap);
			if (!nh)
				return dm_err_set(err, DM_ENOMEM, "out of memory");
			r->head = nh;
			cap = ncap;
		}
		size_t got = 0;
		enum dm_status st = r->raw->src.read(r->raw->src.ctx, r->buf,
		                                     SUBMIT_CHUNK, &got, err);
		if (st)
			return st;
		size_t o;
		if (got == 0) {
			r->eof = true;
			o = submit_crlf_end(&r->crlf, r->head + r->head_len);
		} else {
			o = submit_crlf_run(&r->crlf, r->buf, got, r->head + r->head_len);
		}
		if (o == SUBMIT_CRLF_NUL || o == SUBMIT_CRLF_BARE_CR)
			return submit_crlf_error(o, err);
		r->head_len += o;
	}
}

/* The unfolded value of the header field starting at head[off] (ending
 * before *next), into out[cap] (truncated).  Returns the name length. */
static size_t submit_field(const char *head, size_t off, size_t end,
                           size_t *next, char *out, size_t cap)
{
	size_t p = off, namelen = 0;
	while (p < end && head[p] != ':')
		p++;
	namelen = p - off;
	p++;
	size_t o = 0;
	while (p < end) {
		if (head[p] == '\r' && p + 1 < end && head[p + 1] == '\n') {
			if (p + 2 < end && (head[p + 2] == ' ' || head[p + 2] == '\t')) {
				p += 2;      /* folding: CRLF WSP -> WSP */
				continue;
			}
			p += 2;
			break;
		}
		if (o + 1 < cap)
			out[o++] = head[p];
		p++;
	}
	if (p > end)
		p = end;
	out[o] = '\0';
	*next = p;
	/* trim */
	char *s = out;
	while (*s == ' ' || *s == '\t')
		s++;
	memmove(out, s, strlen(s) + 1);
	size_t l = strlen(out);
	while (l && (out[l - 1] == ' ' || out[l - 1] == '\t'))
		out[--l] = '\0';
	return namelen;
}

static bool submit_name_is(const char *head, size_t off, size_t namelen,
                           const char *name)
{
	return strlen(name) == namelen && strncasecmp(head + off, name, namelen) == 0;
}

/* Recipient list under construction (deduplicated addr-specs). */
struct submit_rcpts {
	char (*spec)[ADDRESS_SPEC_MAX + 1];
	size_t n;
};

static enum dm_status submit_rcpt_add(struct submit_rcpts *r,
                                      const struct address *a,
                                      struct dm_err *err)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->spec[i], a->spec) == 0)
			return DM_OK;
	if (r->n >= SUBMIT_MAX_RCPT)
		return dm_err_set(err, DM_EINVAL, "more than %d recipients (SMTP "
		                  "servers may refuse more in one message, RFC 5321 "
		                  "4.5.3.1.8; send it in several parts)",
		                  SUBMIT_MAX_RCPT);
	memcpy(r->spec[r->n++], a->spec, sizeof(a->spec));
	return DM_OK;
}

static enum dm_status submit_rcpt_list(struct submit_rcpts *r, const char *text,
                                       struct dm_err *err)
{
	struct address *list = NULL;
	size_t n = 0;
	enum dm_status st = address_list_parse(text, &list, &n, err);
	for (size_t i = 0; st == DM_OK && i < n; i++)
		st = submit_rcpt_add(r, &list[i], err);
	address_list_free(list);
	return st;
}

/* Writes p[n] into the spool file and scans it for the envelope flags. */
static enum dm_status submit_raw_put(struct submit_rawctx *r, int fd,
                                     const char *p, size_t n,
                                     struct dm_err *err)
{
	outbox_scan_bytes(&r->scan, p, n);
	int e = paths_write_all(fd, p, n);
	if (e != 0)
		return dm_err_set(err, DM_EIO, "writing the spool: %s", strerror(e));
	return DM_OK;
}

static enum dm_status submit_raw_writer(void *ctx, int fd, struct dm_err *err)
{
	struct submit_rawctx *r = ctx;
	enum dm_status st;
	uint64_t total;

	if ((st = submit_raw_put(r, fd, r->prefix, r->prefix_len, err)))
		return st;
	/* The header minus the dropped fields. */
	size_t pos = 0;
	for (size_t i = 0; i <= r->ndrop; i++) {
		size_t stop = i < r->ndrop ? r->drop[i][0] : r->head_end;
		if ((st = submit_raw_put(r, fd, r->head + pos, stop - pos, err)))
			return st;
		if (i < r->ndrop)
			pos = r->drop[i][1];
	}
	if (r->need_blank || r->body_off > r->head_end) {
		if ((st = submit_raw_put(r, fd, "\r\n", 2, err)))
			return st;
	}
	if ((st = submit_raw_put(r, fd, r->head + r->body_off,
	                           r->head_len - r->body_off, err)))
		return st;
	total = r->prefix_len + r->head_len + (r->need_blank ? 2 : 0);
	for (size_t i = 0; i < r->ndrop; i++)
		total -= r->drop[i][1] - r->drop[i][0];
	while (!r->eof) {
		size_t got = 0, o;
		if ((st = r->raw->src.read(r->raw->src.ctx, r->buf, SUBMIT_CHUNK, &got,
		                           err)))
			return st;
		char *outb = r->buf + SUBMIT_CHUNK;
		if (got == 0) {
			r->eof = true;
			o = submit_crlf_end(&r->crlf, outb);
		} else {
			o = submit_crlf_run(&r->crlf, r->buf, got, outb);
		}
		if (o == SUBMIT_CRLF_NUL || o == SUBMIT_CRLF_BARE_CR)
			return submit_crlf_error(o, err);
		total += o;
		if (total > r->max_size)
			return dm_err_set(err, DM_EINVAL,
			    "message larger than %llu bytes",
			    (unsigned long long)r->max_size);
		if ((st = submit_raw_put(r, fd, outb, o, err)))
			return st;
	}
	if (total > r->max_size)
		return dm_err_set(err, DM_EINVAL, "message larger than %llu bytes",
		                  (unsigned long long)r->max_size);
	if (r->env) {
		r->env->needs_8bit = r->env->needs_8bit || r->scan.eight_bit;
		r->env->needs_smtputf8 = r->env->needs_smtputf8 || r->scan.utf8_header;
	}
	return DM_OK;
}

enum dm_status submit_enqueue_raw(const char *root, struct registry *reg,
                                  const struct submit_raw *raw, unsigned flags,
                                  char id[OUTBOX_ID_MAX], struct dm_err *err)
{
	struct submit_rawctx r;
	struct submit_rcpts rc = { 0 };
	char *val = NULL;
	char from[ADDRESS_SPEC_MAX + 1] = "";
	char header_from[REG_VALUE_MAX] = "";
	char host[REG_VALUE_MAX] = "";
	bool has_date = false, has_msgid = false, has_from = false;
	const char **rcpt = NULL;
	struct outbox *ob = NULL;
	enum dm_status st;

	id[0] = '\0';
	memset(&r, 0, sizeof(r));
	r.raw = raw;
	r.max_size = raw->max_size ? raw->max_size : (uint64_t)SUBMIT_RAW_MAX;
	r.buf = malloc(3 * SUBMIT_CHUNK + 2);
	val = malloc(SUBMIT_HEADER_MAX + 1);
	rc.spec = calloc(OUTBOX_MAX_RCPT, sizeof(*rc.spec));
	if (!r.buf || !val || !rc.spec) {
		st = dm_err_set(err, DM_ENOMEM, "out of memory");
		goto out;
	}
	if ((st = submit_raw_read_head(&r, err)))
		goto out;

	/* Explicit envelope recipients. */
	for (size_t i = 0; i < raw->nrcpt; i++) {
		struct address a;
		if ((st = address_parse(raw->rcpt[i], &a, err)) ||
		    (st = submit_rcpt_add(&rc, &a, err)))
			goto out;
	}
	/* Scan the header fields. */
	for (size_t off = 0, next; off < r.head_end; off = next) {
		size_t nl = submit_field(r.head, off, r.head_end, &next, val,
		                         SUBMIT_HEADER_MAX + 1);
		if (submit_name_is(r.head, off, nl, "Date"))
			has_date = true;
		else if (submit_name_is(r.head, off, nl, "Message-ID"))
			has_msgid = true;
		else if (submit_name_is(r.head, off, nl, "From")) {
			if (!has_from)
				snprintf(header_from, sizeof(header_from), "%s", val);
			has_from = true;
		}
		if (!raw->rcpt_from_headers)
			continue;
		bool bcc = submit_name_is(r.head, off, nl, "Bcc");
		if (bcc || submit_name_is(r.head, off, nl, "To") ||
		    submit_name_is(r.head, off, nl, "Cc")) {
			if (val[0] && (st = submit_rcpt_list(&rc, val, err)))
				goto out;
		}
		if (bcc) {
			if (r.ndrop >= sizeof(r.drop) / sizeof(r.drop[0])) {
				st = dm_err_set(err, DM_EINVAL, "too many Bcc fields");
				goto out;
			}
			r.drop[r.ndrop][0] = off;
			r.drop[r.ndrop][1] = next;
			r.ndrop++;
		}
	}
	if (rc.n == 0) {
		st = dm_err_set(err, DM_EINVAL, "no recipient%s",
		                raw->rcpt_from_headers ? " (none given and none in "
		                "To, Cc or Bcc)" : " given");
		goto out;
	}
	/* Envelope sender: given, else the From field, else the registry. */
	if (raw->from) {
		struct address a;
		if (raw->from[0] && (st = address_parse(raw->from, &a, err)))
			goto out;
		if (raw->from[0])
			memcpy(from, a.spec, sizeof(a.spec));
	} else if (has_from) {
		struct address *list = NULL;
		size_t n = 0;
		if ((st = address_list_parse(header_from, &list, &n, err)))
			goto out;
		if (n == 0) {
			address_list_free(list);
			st = dm_err_set(err, DM_EINVAL, "the From field is empty");
			goto out;
		}
		memcpy(from, list[0].spec, sizeof(list[0].spec));
		address_list_free(list);
	}
	if (!has_from || (!raw->from && !from[0])) {
		char regfrom[REG_VALUE_MAX];
		if (raw->from && raw->from[0]) {
			snprintf(regfrom, sizeof(regfrom), "%s", raw->from);
		} else if ((st = submit_reg_required(reg, "Email/FromAddress",
		                                     "a sender", regfrom,
		                                     sizeof(regfrom), err))) {
			goto out;
		}
		struct address a;
		if ((st = address_parse(regfrom, &a, err)))
			goto out;
		if (!from[0] && !raw->from)
			memcpy(from, a.spec, sizeof(a.spec));
		if (!has_from) {
			char hf[ADDRESS_HEADER_MAX];
			if ((st = address_format(&a, hf, sizeof(hf), err)))
				goto out;
			int n = snprintf(r.prefix + r.prefix_len,
			                 sizeof(r.prefix) - r.prefix_len, "From: %s\r\n", hf);
			if (n < 0 || (size_t)n >= sizeof(r.prefix) - r.prefix_len) {
				st = dm_err_set(err, DM_EINVAL, "From address too long");
				goto out;
			}
			r.prefix_len += (size_t)n;
		}
	}
	if (!has_date) {
		char d[64];
		message_date(time(NULL), d, sizeof(d));
		r.prefix_len += (size_t)snprintf(r.prefix + r.prefix_len,
		    sizeof(r.prefix) - r.prefix_len, "Date: %s\r\n", d);
	}
	if (!has_msgid) {
		char mid[320];
		const char *h = raw->hostname;
		if (!h) {
			if (registry_get(reg, "IpConfig/HostName", host, sizeof(host),
			                 NULL, NULL) != DM_OK || !host[0])
				gethostname(host, sizeof(host) - 1);
			h = host;
		}
		/* An unusable host name falls back inside message_new_id(). */
		if ((st = message_new_id(h, mid, sizeof(mid), err)))
			goto out;
		size_t room = sizeof(r.prefix) - r.prefix_len;
		int n = snprintf(r.prefix + r.prefix_len, room, "Message-ID: %s\r\n", mid);
		if (n > 0 && (size_t)n < room)
			r.prefix_len += (size_t)n;
	}
	if ((flags & SUBMIT_NEED_ACCOUNT) &&
	    (st = submit_account_check(reg, root, err)))
		goto out;

	rcpt = calloc(rc.n, sizeof(*rcpt));
	if (!rcpt) {
		st = dm_err_set(err, DM_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < rc.n; i++)
		rcpt[i] = rc.spec[i];
	struct outbox_envelope env = { .from = from, .rcpt = rcpt, .nrcpt = rc.n };
	if ((st = submit_outbox_open(root, reg, &ob, err)))
		goto out;
	outbox_scan_init(&r.scan);
	r.env = &env;
	st = outbox_enqueue_writer(ob, &env, submit_raw_writer, &r, id, err);
out:
	outbox_close(ob);
	free(rcpt);
	free(rc.spec);
	free(val);
	free(r.head);
	free(r.buf);
	return st;
}

/* ---- deliver ----------------------------------------------------------------- */

size_t submit_session_str(const struct smtp_info *info, char *out, size_t cap)
{
	int n;
	if (info->tls.active)
		n = snprintf(out, cap, "%s:%u (%s, %s, %s, %s, AUTH %s)", info->host,
		             info->port, smtp_tls_mode_str(info->tls_mode),
		             info->tls.version, info->tls.cipher[0] ? info->tls.cipher
		                                                     : "unknown cipher",
		             info->tls.pinned ? "certificate pinned"
		             : info->tls.verified ? "certificate verified"
		                                  : "certificate NOT verified",
		             info->mechanism[0] ? info->mechanism : "none");
	else
		n = snprintf(out, cap, "%s:%u (no TLS, AUTH %s)", info->host,
		             info->port, info->mechanism[0] ? info->mechanism : "none");
	return n < 0 ? 0 : (size_t)n;
}

/* Appends to out[cap] at *len (truncating). */
static void submit_cat(char *out, size_t cap, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void submit_cat(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
	if (*len >= cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (n > 0)
		*len = *len + (size_t)n >= cap ? cap - 1 : *len + (size_t)n;
}

/* Copies src into dst[cap], truncated, always NUL-terminated. */
static void submit_copy(char *dst, size_t cap, const char *src)
{
	if (cap == 0)
		return;
	size_t n = strlen(src);
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

struct submit_vec {
	struct submit_report *v;
	size_t n, cap;
	bool oom;
};

struct submit_run {
	const struct submit_hooks *h;
	struct account *acct;
	struct submit_vec reports;
	bool attempted;
};

/* Counting source for the progress hook. */
struct submit_count {
	struct mail_source inner;
	const struct submit_hooks *h;
	const char *id;
	uint64_t sent, total;
};

static enum dm_status submit_count_read(void *ctx, char *buf, size_t cap,
                                        size_t *got, struct dm_err *err)
{
	struct submit_count *c = ctx;
	enum dm_status st = c->inner.read(c->inner.ctx, buf, cap, got, err);
	if (st == DM_OK) {
		c->sent += *got;
		c->h->progress(c->h->progress_ctx, c->id, c->sent, c->total);
	}
	return st;
}

/* Makes room for `want` reports; false (and v->oom) when out of memory.
 * Pointers into v->v stay valid only while no reserve grows it. */
static bool submit_vec_reserve(struct submit_vec *v, size_t want)
{
	if (want <= v->cap)
		return true;
	size_t ncap = v->cap ? v->cap : 8;
	while (ncap < want)
		ncap *= 2;
	struct submit_report *nv = realloc(v->v, ncap * sizeof(*nv));
	if (!nv) {
		v->oom = true;
		return false;
	}
	v->v = nv;
	v->cap = ncap;
	return true;
}

/* Appends a zeroed report; the caller reserved room (never reallocates). */
static struct submit_report *submit_vec_add(struct submit_vec *v)
{
	if (v->n >= v->cap)
		return NULL;
	struct submit_report *r = &v->v[v->n++];
	memset(r, 0, sizeof(*r));
	return r;
}

static bool submit_addr_utf8(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* Recipients for a result line: "a@x, b@y" while that stays short, else
 * "a@x +119 more" (as OUTBOX lists them), so that the reason after the
 * list always fits in the line.  `pick` (NULL: all) selects by index. */
#define SUBMIT_RCPT_SHOW 160   /* bytes of addresses shown in full */
static void submit_rcpt_list_str(const char *const *rcpt, size_t n,
                                 const bool *pick, char *out, size_t cap)
{
	size_t len = 0, total = 0, count = 0, first = n;
	out[0] = '\0';
	for (size_t k = 0; k < n; k++) {
		if (pick && !pick[k])
			continue;
		if (first == n)
			first = k;
		total += strlen(rcpt[k]) + 2;
		count++;
	}
	if (count == 0)
		return;
	if (count > 1 && total > SUBMIT_RCPT_SHOW) {
		submit_cat(out, cap, &len, "%s +%zu more", rcpt[first], count - 1);
		return;
	}
	for (size_t k = first; k < n; k++)
		if (!pick || pick[k])
			submit_cat(out, cap, &len, "%s%s", len ? ", " : "", rcpt[k]);
}

static void submit_rcpt_str(const struct outbox_item *it, char *out, size_t cap)
{
	submit_rcpt_list_str(it->rcpt, it->nrcpt, NULL, out, cap);
}

/* The outbox's status for a failure: session failures and anything the
 * SMTP layer calls temporary are retried; the rest is permanent. */
static enum dm_status submit_outbox_status(enum dm_status st, int code,
                                           bool session)
{
	bool temp = session || verdict_failure(st, code) == VERDICT_TEMPORARY;
	if (temp)
		return outbox_status_is_temporary(st) ? st : DM_ETEMPFAIL;
	return outbox_status_is_temporary(st) ? DM_EPERMFAIL : st;
}

/* Appends `label` and the first three recipients refused permanently (5xx)
 * with their replies, then "+N more": the line stays short enough for the
 * reason to show. */
static void submit_cat_refused(char *line, size_t cap, size_t *len,
                               const char *label,
                               const struct smtp_envelope *env,
                               const struct smtp_result *r, size_t nr,
                               size_t nperm)
{
	size_t shown = 0;

	submit_cat(line, cap, len, "%s", label);
	for (size_t k = 0; k < nr; k++)
		if (r->rcpt[k].code / 100 == 5 && shown++ < 3)
			submit_cat(line, cap, len, " %s: %d%s%s %s", env->rcpt[k],
			           r->rcpt[k].code, r->rcpt[k].enhanced[0] ? " " : "",
			           r->rcpt[k].enhanced, r->rcpt[k].text);
	if (nperm > 3)
		submit_cat(line, cap, len, " +%zu more", nperm - 3);
}

static void submit_batch(void *ctx, size_t n, const struct outbox_item *items,
                         const struct mail_source *msgs,
                         struct outbox_outcome *out)
{
	struct submit_run *run = ctx;
	const struct submit_hooks *h = run->h;
	struct smtp_settings s = run->acct->smtp;
	struct smtp_client *c = NULL;
	struct smtp_envelope *env = calloc(n, sizeof(*env));
	struct smtp_result *res = calloc(n, sizeof(*res));
	struct submit_count *cnt = calloc(n, sizeof(*cnt));
	struct submit_report **rep = calloc(n, sizeof(*rep));
	char session[SUBMIT_LINE_MAX] = "";
	struct dm_err e;
	enum dm_status st;

	run->attempted = true;
	if (!env || !res || !cnt || !rep) {
		for (size_t i = 0; i < n; i++) {
			out[i].status = DM_ETEMPFAIL;   /* retry; nothing was sent */
			dm_err_set(&out[i].err, DM_ENOMEM, "out of memory");
		}
		goto out;
	}
	/* Room for the whole batch first: submit_vec_add() must not
	 * reallocate the array while rep[] points into it (more than 8
	 * messages in a run did, and the pointers dangled). */
	if (submit_vec_reserve(&run->reports, run->reports.n + n)) {
		for (size_t i = 0; i < n; i++) {
			rep[i] = submit_vec_add(&run->reports);
			if (rep[i])
				snprintf(rep[i]->id, sizeof(rep[i]->id), "%s",
				         items[i].id);
		}
	}
	s.transcript = h ? h->transcript : NULL;
	s.transcript_ctx = h ? h->transcript_ctx : NULL;
	/* A one-round-trip AUTH (PLAIN, XOAUTH2) rides with the first MAIL
	 * when the server pipelines (RFC 4954 section 4): one flight less.  A
	 * refusal then arrives as DM_EAUTH in the send results and is still a
	 * session failure below. */
	s.pipeline_auth = true;
	dm_err_clear(&e);
	st = smtp_client_open(&s, &c, &e);
	if (st) {
		/* The session failed before any message: keep them all queued
		 * (see submit.h); the report keeps the real status. */
		for (size_t i = 0; i < n; i++) {
			char to[SUBMIT_LINE_MAX];
			out[i].status = submit_outbox_status(st, e.smtp_code, true);
			out[i].err = e;
			if (!rep[i])
				continue;
			rep[i]->status = st;
			rep[i]->err = e;
			submit_rcpt_str(&items[i], to, sizeof(to));
			size_t len = 0;
			submit_cat(rep[i]->line, sizeof(rep[i]->line), &len,
			           "Not sent to %s via %s:%u: %s", to, s.host,
			           s.port ? s.port : (s.smtps ? 465u : 25u),
			           e.msg[0] ? e.msg : dm_status_str(st));
		}
		goto out;
	}
	const struct smtp_info *info = smtp_client_info(c);
	submit_session_str(info, session, sizeof(session));
	for (size_t i = 0; i < n; i++) {
		bool utf8 = submit_addr_utf8(items[i].from);
		for (size_t k = 0; k < items[i].nrcpt; k++)
			utf8 = utf8 || submit_addr_utf8(items[i].rcpt[k]);
		env[i].from = items[i].from;
		env[i].rcpt = items[i].rcpt;
		env[i].nrcpt = items[i].nrcpt;
		env[i].body = msgs[i];
		if (h && h->progress) {
			cnt[i] = (struct submit_count){ .inner = msgs[i], .h = h,
			    .id = items[i].id, .total = items[i].size };
			env[i].body = (struct mail_source){ submit_count_read, &cnt[i] };
		}
		env[i].size = (size_t)items[i].size;
		/* as recorded at enqueue (built: from the MIME builder; raw:
		 * scanned as it was spooled), or UTF-8 addresses (spools from
		 * before the flags were kept) */
		env[i].needs_8bit = items[i].needs_8bit || utf8;
		env[i].needs_smtputf8 = items[i].needs_smtputf8 || utf8;
	}
	dm_err_clear(&e);
	smtp_client_send(c, env, n, res, SMTP_SEND_QUIT, &e);
	for (size_t i = 0; i < n; i++) {
		const struct smtp_result *r = &res[i];
		char line[SUBMIT_LINE_MAX], to[SUBMIT_LINE_MAX];
		bool pick[SMTP_MAX_RCPT];
		size_t len = 0;
		bool ok = r->status == DM_OK;
		size_t nr = env[i].nrcpt < SMTP_MAX_RCPT ? env[i].nrcpt : SMTP_MAX_RCPT;
		for (size_t k = 0; k < nr; k++)
			pick[k] = !ok || r->rcpt[k].code / 100 == 2;
		submit_rcpt_list_str(env[i].rcpt, nr, pick, to, sizeof(to));
		line[0] = '\0';
		submit_cat(line, sizeof(line), &len, "%s to %s via %s: ",
		           ok ? "Sent" : "Not sent", to, session);
		if (r->code)
			submit_cat(line, sizeof(line), &len, "%d%s%s %s", r->code,
			           r->enhanced[0] ? " " : "", r->enhanced, r->text);
		else
			submit_cat(line, sizeof(line), &len, "%s",
			           r->diag[0] ? r->diag : dm_status_str(r->status));
		/* Recipients refused with 4xx are retried (RFC 5321 sec. 3.3,
		 * 4.2.5), 5xx ones are dropped: both are named in the line. */
		size_t ntemp = 0, nperm = 0, first_temp = 0;
		for (size_t k = 0; k < env[i].nrcpt && k < SMTP_MAX_RCPT; k++) {
			int cls = r->rcpt[k].code / 100;
			if (cls == 4 && ntemp++ == 0)
				first_temp = k;
			else if (cls == 5)
				nperm++;
		}
		bool temp = !ok && outbox_status_is_temporary(
		    submit_outbox_status(r->status, r->code, r->status == DM_EAUTH));
		bool retry_some = ntemp > 0 && (ok || (temp && nperm > 0));
		if (ok && r->accepted < env[i].nrcpt && nperm > 0)
			submit_cat_refused(line, sizeof(line), &len, "; rejected",
			                   &env[i], r, nr, nperm);
		if (retry_some) {
			char ret[SUBMIT_LINE_MAX];
			bool tpick[SMTP_MAX_RCPT];
			for (size_t k = 0; k < nr; k++) {
				tpick[k] = r->rcpt[k].code / 100 == 4;
				if (!tpick[k])
					continue;
				out[i].retry[k] = 1;
				out[i].nretry++;
			}
			submit_rcpt_list_str(env[i].rcpt, nr, tpick, ret, sizeof(ret));
			if (ok)
				submit_cat(line, sizeof(line), &len,
				           "; to retry (refused for now) %s: %d%s%s %s", ret,
				           r->rcpt[first_temp].code,
				           r->rcpt[first_temp].enhanced[0] ? " " : "",
				           r->rcpt[first_temp].enhanced,
				           r->rcpt[first_temp].text);
			else if (nperm > 0)
				submit_cat_refused(line, sizeof(line), &len,
				                   "; dropped (refused permanently)",
				                   &env[i], r, nr, nperm);
			/* the outbox records this as the reason for the deferral */
			dm_err_clear(&out[i].err);
			char perm[SUBMIT_LINE_MAX];
			bool ppick[SMTP_MAX_RCPT];
			for (size_t k = 0; k < nr; k++)
				ppick[k] = r->rcpt[k].code / 100 == 5;
			perm[0] = '\0';
			if (!ok)
				submit_rcpt_list_str(env[i].rcpt, nr, ppick, perm,
				                     sizeof(perm));
			dm_err_set(&out[i].err, DM_ETEMPFAIL,
			           "%s %s refused for now; %s%s", ntemp == 1
			           ? "recipient" : "recipients", ret,
			           ok ? "sent to the others" : "dropped, refused "
			           "permanently: ", perm);
			out[i].err.smtp_code = r->rcpt[first_temp].code;
			snprintf(out[i].err.enhanced, sizeof(out[i].err.enhanced), "%s",
			         r->rcpt[first_temp].enhanced);
			snprintf(out[i].err.server_text, sizeof(out[i].err.server_text),
			         "%s", r->rcpt[first_temp].text);
		}
		if (ok) {
			out[i].status = DM_OK;
			submit_copy(out[i].detail, sizeof(out[i].detail), line);
		} else if (retry_some) {
			out[i].status = DM_ETEMPFAIL;
		} else {
			/* DM_EAUTH here is a pipelined AUTH refused: a session
			 * failure like one at open, not a verdict on the message. */
			out[i].status = submit_outbox_status(r->status, r->code,
			                                     r->status == DM_EAUTH);
			dm_err_clear(&out[i].err);
			dm_err_set(&out[i].err, r->status, "%s",
			           r->diag[0] ? r->diag : dm_status_str(r->status));
			out[i].err.smtp_code = r->code;
			snprintf(out[i].err.enhanced, sizeof(out[i].err.enhanced), "%s",
			         r->enhanced);
			snprintf(out[i].err.server_text, sizeof(out[i].err.server_text),
			         "%s", r->text);
		}
		if (rep[i]) {
			rep[i]->status = retry_some ? DM_ETEMPFAIL : r->status;
			rep[i]->partial = retry_some && ok;
			rep[i]->err = out[i].err;
			submit_copy(rep[i]->line, sizeof(rep[i]->line), line);
			submit_copy(rep[i]->detail, sizeof(rep[i]->detail), session);
		}
	}
	smtp_client_close(c, NULL);
out:
	free(env);
	free(res);
	free(cnt);
	free(rep);
}

struct submit_find {
	struct submit_vec *v;
	time_t now;
	enum outbox_which which;
};

static int submit_find_cb(void *ctx, const struct outbox_item *it)
{
	struct submit_find *f = ctx;
	for (size_t i = 0; i < f->v->n; i++) {
		struct submit_report *r = &f->v->v[i];
		if (strcmp(r->id, it->id) != 0 || r->status == DM_OK)
			continue;
		if (f->which == OUTBOX_QUEUE) {
			r->outcome = SUBMIT_DEFERRED;
			r->next_try_in = it->next_try > f->now ? (long)(it->next_try - f->now) : 0;
			if (r->partial) {
				/* keep "Sent to ..." and say what stays queued */
				size_t len = strlen(r->line);
				submit_cat(r->line, sizeof(r->line), &len,
				           "; %s stays queued for them, next try in %lds",
				           r->id, r->next_try_in);
				continue;
			}
			snprintf(r->line, sizeof(r->line),
			         "Queued %s for retry: %s; next try in %lds", r->id,
			         it->last_error[0] ? it->last_error : r->err.msg,
			         r->next_try_in);
		} else {
			size_t len = strlen(r->line);
			submit_cat(r->line, sizeof(r->line), &len,
			           " (%s moved to the failed outbox)", r->id);
		}
	}
	return 0;
}

/* After the run: which messages are still queued (deferred), which moved
 * to failed; lines and exit codes; the report hook. */
static void submit_finish(struct outbox *ob, struct submit_run *run,
                          time_t now)
{
	struct submit_find f = { &run->reports, now, OUTBOX_QUEUE };
	for (size_t i = 0; i < run->reports.n; i++) {
		struct submit_report *r = &run->reports.v[i];
		r->outcome = r->status == DM_OK ? SUBMIT_SENT : SUBMIT_FAILED;
	}
	outbox_list(ob, OUTBOX_QUEUE, submit_find_cb, &f, NULL);
	f.which = OUTBOX_FAILED;
	outbox_list(ob, OUTBOX_FAILED, submit_find_cb, &f, NULL);
	for (size_t i = 0; i < run->reports.n; i++) {
		struct submit_report *r = &run->reports.v[i];
		r->exit_code = submit_exit(r);
		if (run->h && run->h->report)
			run->h->report(run->h->report_ctx, r);
	}
}

static time_t submit_now(const struct submit_hooks *h)
{
	return h && h->clock ? h->clock(h->clock_ctx) : time(NULL);
}

static enum dm_status submit_prepare(const char *root, struct registry *reg,
                                     const struct submit_hooks *h,
                                     struct account *a, struct outbox **ob,
                                     struct dm_err *err)
{
	struct outbox_options o;
	enum dm_status st;

	memset(a, 0, sizeof(*a));
	*ob = NULL;
	if ((st = account_load(reg, root, a, err)))
		return st;
	submit_policy(reg, &o);
	if (h && h->clock) {
		o.clock = h->clock;
		o.hook_ctx = h->clock_ctx;
	}
	return outbox_open(root, &o, ob, err);
}

enum dm_status submit_deliver(const char *root, struct registry *reg,
                              const char *id, const struct submit_hooks *hooks,
                              struct submit_report *report,
                              struct dm_err *err)
{
	struct account a;
	struct outbox *ob = NULL;
	struct submit_run run = { .h = hooks, .acct = &a };
	struct dm_err e;
	enum dm_status st;

	if (report)
		memset(report, 0, sizeof(*report));
	if ((st = submit_prepare(root, reg, hooks, &a, &ob, err)))
		goto out;
	dm_err_clear(&e);
	st = outbox_deliver_one(ob, id, submit_batch, &run, NULL, &e);
	if (!run.attempted || run.reports.n == 0) {
		if (err)
			*err = e;
		if (st == DM_OK)
			st = run.reports.oom ? DM_ENOMEM : DM_EIO;
		goto out;
	}
	submit_finish(ob, &run, submit_now(hooks));
	if (report)
		*report = run.reports.v[0];
	if (err)
		*err = run.reports.v[0].err;
	st = run.reports.v[0].status;
out:
	outbox_close(ob);
	account_clear(&a);
	free(run.reports.v);
	return st;
}

enum dm_status submit_deliver_due(const char *root, struct registry *reg,
                                  const struct submit_hooks *hooks,
                                  struct outbox_stats *stats,
                                  struct dm_err *err)
{
	struct account a;
	struct outbox *ob = NULL;
	struct submit_run run = { .h = hooks, .acct = &a };
	enum dm_status st;

	if (stats)
		memset(stats, 0, sizeof(*stats));
	if ((st = submit_prepare(root, reg, hooks, &a, &ob, err)))
		goto out;
	st = outbox_deliver_due(ob, hooks ? hooks->batch : 0, submit_batch, &run,
	                        stats, err);
	submit_finish(ob, &run, submit_now(hooks));
out:
	outbox_close(ob);
	account_clear(&a);
	free(run.reports.v);
	return st;
}

/* ---- exit statuses ---------------------------------------------------------- */

int submit_status_exit(enum dm_status st)
{
	switch (st) {
	case DM_OK:        return EX_OK;
	case DM_EINVAL:    return EX_DATAERR;
	case DM_ENOINPUT:  return EX_NOINPUT;
	case DM_ECONFIG:   return EX_CONFIG;
	case DM_EAUTH:     return EX_NOPERM;
	case DM_EPERMFAIL: return EX_UNAVAILABLE;
	default:
		break;
	}
	if (outbox_status_is_temporary(st))
		return EX_TEMPFAIL;
	return dm_status_exit(st);
}

int submit_exit(const struct submit_report *r)
{
	switch (r->outcome) {
	case SUBMIT_SENT:
		return EX_OK;
	case SUBMIT_FAILED:
		if (r->status == DM_EAUTH)
			return EX_NOPERM;
		if (r->status == DM_ECONFIG)
			return EX_CONFIG;
		return EX_UNAVAILABLE;
	case SUBMIT_DEFERRED:
		if (r->status == DM_EAUTH)
			return EX_NOPERM;
		if (r->status == DM_ECONFIG)
			return EX_CONFIG;
		return EX_TEMPFAIL;
	}
	return EX_SOFTWARE;
}
