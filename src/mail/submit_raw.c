/*
 * submit_raw.c - import of a raw RFC 5322 message (devmail-sendmail):
 * header block read into memory, Date / Message-ID / From added when
 * missing, -t recipients taken from To, Cc and Bcc (Bcc fields dropped),
 * line ends normalised to CRLF, the body streamed into the outbox.
 * Contract in submit.h (submit_enqueue_raw).
 *
 * RFC 5322 section 3.6 (Date and Message-ID are SHOULD/MUST for an
 * originator; a submission agent adds them when missing: RFC 6409 section
 * 8.2 and 8.3), section 2.2 (header fields, folding), RFC 5321 section
 * 4.1.1.4 (CRLF line ends).
 */
#include "mail/submit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/paths.h"
#include "mail/address.h"
#include "mail/submit_int.h"

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

/* What the header block says: fields present, recipients found, Bcc
 * fields to drop (into r->drop). */
struct submit_rawhead {
	bool has_date, has_msgid, has_from;
	char header_from[REG_VALUE_MAX];
};

/* Scans the header fields of r->head into h (and recipients into rc with
 * rcpt_from_headers).  val is scratch of SUBMIT_HEADER_MAX + 1 bytes. */
static enum dm_status submit_raw_scan(struct submit_rawctx *r,
                                      struct submit_rcpts *rc,
                                      struct submit_rawhead *h, char *val,
                                      struct dm_err *err)
{
	const struct submit_raw *raw = r->raw;
	enum dm_status st;

	for (size_t off = 0, next; off < r->head_end; off = next) {
		size_t nl = submit_field(r->head, off, r->head_end, &next, val,
		                         SUBMIT_HEADER_MAX + 1);
		if (submit_name_is(r->head, off, nl, "Date"))
			h->has_date = true;
		else if (submit_name_is(r->head, off, nl, "Message-ID"))
			h->has_msgid = true;
		else if (submit_name_is(r->head, off, nl, "From")) {
			if (!h->has_from)
				snprintf(h->header_from, sizeof(h->header_from), "%s", val);
			h->has_from = true;
		}
		if (!raw->rcpt_from_headers)
			continue;
		bool bcc = submit_name_is(r->head, off, nl, "Bcc");
		if (bcc || submit_name_is(r->head, off, nl, "To") ||
		    submit_name_is(r->head, off, nl, "Cc")) {
			if (val[0] && (st = submit_rcpt_list(rc, val, err)))
				return st;
		}
		if (bcc) {
			if (r->ndrop >= sizeof(r->drop) / sizeof(r->drop[0]))
				return dm_err_set(err, DM_EINVAL, "too many Bcc fields");
			r->drop[r->ndrop][0] = off;
			r->drop[r->ndrop][1] = next;
			r->ndrop++;
		}
	}
	if (rc->n == 0)
		return dm_err_set(err, DM_EINVAL, "no recipient%s",
		                  raw->rcpt_from_headers ? " (none given and none in "
		                  "To, Cc or Bcc)" : " given");
	return DM_OK;
}

/* The envelope sender into from[ADDRESS_SPEC_MAX + 1]: given, else the
 * From field, else Email/FromAddress; adds a From field (to r->prefix)
 * when the message has none. */
static enum dm_status submit_raw_sender(struct submit_rawctx *r,
                                        struct registry *reg,
                                        const struct submit_rawhead *h,
                                        char *from, struct dm_err *err)
{
	const struct submit_raw *raw = r->raw;
	struct address a;
	enum dm_status st;

	if (raw->from) {
		if (raw->from[0] && (st = address_parse(raw->from, &a, err)))
			return st;
		if (raw->from[0])
			memcpy(from, a.spec, sizeof(a.spec));
	} else if (h->has_from) {
		struct address *list = NULL;
		size_t n = 0;
		if ((st = address_list_parse(h->header_from, &list, &n, err)))
			return st;
		if (n == 0) {
			address_list_free(list);
			return dm_err_set(err, DM_EINVAL, "the From field is empty");
		}
		memcpy(from, list[0].spec, sizeof(list[0].spec));
		address_list_free(list);
	}
	if (h->has_from && (raw->from || from[0]))
		return DM_OK;
	char regfrom[REG_VALUE_MAX];
	if (raw->from && raw->from[0])
		snprintf(regfrom, sizeof(regfrom), "%s", raw->from);
	else if ((st = submit_reg_required(reg, "Email/FromAddress", "a sender",
	                                   regfrom, sizeof(regfrom), err)))
		return st;
	if ((st = address_parse(regfrom, &a, err)))
		return st;
	if (!from[0] && !raw->from)
		memcpy(from, a.spec, sizeof(a.spec));
	if (h->has_from)
		return DM_OK;
	char hf[ADDRESS_HEADER_MAX];
	if ((st = address_format(&a, hf, sizeof(hf), err)))
		return st;
	int n = snprintf(r->prefix + r->prefix_len, sizeof(r->prefix) - r->prefix_len,
	                 "From: %s\r\n", hf);
	if (n < 0 || (size_t)n >= sizeof(r->prefix) - r->prefix_len)
		return dm_err_set(err, DM_EINVAL, "From address too long");
	r->prefix_len += (size_t)n;
	return DM_OK;
}

/* Date and Message-ID fields (to r->prefix) when the message has none. */
static enum dm_status submit_raw_stamp(struct submit_rawctx *r,
                                       struct registry *reg,
                                       const struct submit_rawhead *h,
                                       struct dm_err *err)
{
	if (!h->has_date) {
		char d[64];
		message_date(time(NULL), d, sizeof(d));
		r->prefix_len += (size_t)snprintf(r->prefix + r->prefix_len,
		    sizeof(r->prefix) - r->prefix_len, "Date: %s\r\n", d);
	}
	if (h->has_msgid)
		return DM_OK;
	char mid[320], host[REG_VALUE_MAX] = "";
	const char *hn = r->raw->hostname;
	if (!hn) {
		if (registry_get(reg, "IpConfig/HostName", host, sizeof(host),
		                 NULL, NULL) != DM_OK || !host[0])
			gethostname(host, sizeof(host) - 1);
		hn = host;
	}
	/* An unusable host name falls back inside message_new_id(). */
	enum dm_status st = message_new_id(hn, mid, sizeof(mid), err);
	if (st)
		return st;
	size_t room = sizeof(r->prefix) - r->prefix_len;
	int n = snprintf(r->prefix + r->prefix_len, room, "Message-ID: %s\r\n", mid);
	if (n > 0 && (size_t)n < room)
		r->prefix_len += (size_t)n;
	return DM_OK;
}

/* Spools the prepared message with its envelope. */
static enum dm_status submit_raw_spool(struct submit_rawctx *r,
                                       const char *root, struct registry *reg,
                                       const char *from,
                                       const struct submit_rcpts *rc,
                                       char id[OUTBOX_ID_MAX],
                                       struct dm_err *err)
{
	const char **rcpt = calloc(rc->n, sizeof(*rcpt));
	struct outbox *ob = NULL;
	enum dm_status st;

	if (!rcpt)
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	for (size_t i = 0; i < rc->n; i++)
		rcpt[i] = rc->spec[i];
	struct outbox_envelope env = { .from = from, .rcpt = rcpt, .nrcpt = rc->n };
	if ((st = submit_outbox_open(root, reg, &ob, err)) == DM_OK) {
		outbox_scan_init(&r->scan);
		r->env = &env;
		st = outbox_enqueue_writer(ob, &env, submit_raw_writer, r, id, err);
	}
	outbox_close(ob);
	free(rcpt);
	return st;
}

enum dm_status submit_enqueue_raw(const char *root, struct registry *reg,
                                  const struct submit_raw *raw, unsigned flags,
                                  char id[OUTBOX_ID_MAX], struct dm_err *err)
{
	struct submit_rawctx r;
	struct submit_rawhead h;
	struct submit_rcpts rc = { 0 };
	char from[ADDRESS_SPEC_MAX + 1] = "";
	enum dm_status st;

	id[0] = '\0';
	memset(&r, 0, sizeof(r));
	memset(&h, 0, sizeof(h));
	r.raw = raw;
	r.max_size = raw->max_size ? raw->max_size : (uint64_t)SUBMIT_RAW_MAX;
	r.buf = malloc(3 * SUBMIT_CHUNK + 2);
	char *val = malloc(SUBMIT_HEADER_MAX + 1);
	rc.spec = calloc(OUTBOX_MAX_RCPT, sizeof(*rc.spec));
	if (!r.buf || !val || !rc.spec) {
		st = dm_err_set(err, DM_ENOMEM, "out of memory");
		goto out;
	}
	if ((st = submit_raw_read_head(&r, err)))
		goto out;
	/* Explicit envelope recipients first, then the header's. */
	for (size_t i = 0; i < raw->nrcpt; i++) {
		struct address a;
		if ((st = address_parse(raw->rcpt[i], &a, err)) ||
		    (st = submit_rcpt_add(&rc, &a, err)))
			goto out;
	}
	if ((st = submit_raw_scan(&r, &rc, &h, val, err)) ||
	    (st = submit_raw_sender(&r, reg, &h, from, err)) ||
	    (st = submit_raw_stamp(&r, reg, &h, err)))
		goto out;
	if ((flags & SUBMIT_NEED_ACCOUNT) &&
	    (st = submit_account_check(reg, root, err)))
		goto out;
	st = submit_raw_spool(&r, root, reg, from, &rc, id, err);
out:
	free(rc.spec);
	free(val);
	free(r.head);
	free(r.buf);
	return st;
}
