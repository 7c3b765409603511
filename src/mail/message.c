/*
 * message.c - the streaming MIME message builder.
 *
 * RFCs: 5322 (3.3 date-time, 3.6 header fields, 2.1.1 line length),
 * 2045 (MIME headers, 6.7 quoted-printable, 6.8 base64), 2046 (5.1
 * multipart, boundary delimiters), 2047 (encoded-words), 2183
 * (Content-Disposition), 2231 (filename*), 6531/6532 (UTF-8 addresses),
 * 1870 (SIZE).
 *
 * The message is a list of segments: rendered text (headers, part headers,
 * boundary lines) held in memory, and "encoded sources" (the text body in
 * 7bit or quoted-printable, attachments in base64) that are read in
 * MESSAGE_IN_CHUNK pieces and encoded into a fixed staging buffer only
 * when the reader pulls.  Files are stat'ed at build time; the byte count
 * is the SIZE estimate, and a file that changes size meanwhile makes the
 * read fail rather than send something other than what was declared.
 */
#include "mail/message.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/paths.h"
#include "core/rand.h"
#include "core/text.h"
#include "mail/address.h"
#include "mail/codec.h"
#include "mail/mimetype.h"

/* Room for a value quoted in an error message, escaped with
 * text_escape() (control characters become \r, \n, \x01 ...). */
#define MESSAGE_ECHO_MAX 100
#define MESSAGE_PATH_ECHO 256

enum message_seg_kind {
	MESSAGE_SEG_MEM,     /* rendered bytes in mem */
	MESSAGE_SEG_TEXT,    /* text body (buffer or file), 7bit or QP */
	MESSAGE_SEG_B64,     /* attachment file, base64 */
};

struct message_seg {
	enum message_seg_kind kind;
	char *mem;            /* MEM: owned bytes */
	size_t memlen;
	char *path;           /* TEXT (file) / B64: owned path; NULL: body buffer */
	uint64_t fsize;       /* input size at build time */
	bool qp;              /* TEXT: quoted-printable, else 7bit */
};

struct message {
	struct message_seg *segs;
	size_t nseg, segcap;
	char *body;           /* copy of spec->body, or NULL */
	size_t body_len;
	struct address from;
	struct address *rcpt;
	size_t nrcpt, rcptcap;
	char msgid[300];
	bool smtputf8;
	uint64_t size;
	size_t heap;          /* bytes allocated besides the struct itself */

	/* reader state */
	size_t cur;           /* current segment */
	uint64_t pos;         /* MEM: offset; TEXT buffer: offset; files: bytes read */
	bool seg_open;
	int fd;
	struct codec_qp qp;
	struct codec_b64 b64;
	unsigned char prev;   /* 7bit: last input byte (LF -> CRLF) */
	bool at_bol;          /* output of the segment ends at a line start */
	size_t olen, opos;
	char ibuf[MESSAGE_IN_CHUNK];
	char obuf[MESSAGE_OUT_BUF];
};

/* ---- small helpers ---------------------------------------------------------- */

struct message_sb {
	char *buf;
	size_t len, cap;
	bool oom;
};

static void message_sb_put(struct message_sb *sb, const char *s, size_t n)
{
	if (sb->oom)
		return;
	if (sb->len + n + 1 > sb->cap) {
		size_t ncap = sb->cap ? sb->cap : 1024;
		while (ncap < sb->len + n + 1)
			ncap *= 2;
		char *nb = realloc(sb->buf, ncap);
		if (!nb) {
			sb->oom = true;
			return;
		}
		sb->buf = nb;
		sb->cap = ncap;
	}
	memcpy(sb->buf + sb->len, s, n);
	sb->len += n;
	sb->buf[sb->len] = '\0';
}

static void message_sb_str(struct message_sb *sb, const char *s)
{
	message_sb_put(sb, s, strlen(s));
}

/* Appends a folded header "name: value" (value already encoded). */
static enum dm_status message_sb_header(struct message_sb *sb, const char *name,
                                        const char *value, bool text,
                                        struct dm_err *err)
{
	size_t vlen = strlen(value);
	size_t cap = (text ? 8 : 2) * vlen + strlen(name) + 256;
	char *tmp = malloc(cap);
	size_t n;
	enum dm_status st;

	if (!tmp)
		return dm_err_set(err, DM_ENOMEM, "header %s: out of memory", name);
	st = text ? codec_header_text(name, value, tmp, cap, &n, err)
	          : codec_header_fold(name, value, tmp, cap, &n, err);
	if (st == DM_OK)
		message_sb_put(sb, tmp, n);
	free(tmp);
	return st;
}

static enum dm_status message_add_seg(struct message *m,
                                      const struct message_seg *seg,
                                      struct dm_err *err)
{
	if (m->nseg == m->segcap) {
		size_t ncap = m->segcap ? m->segcap * 2 : 8;
		struct message_seg *ns = realloc(m->segs, ncap * sizeof(*ns));
		if (!ns)
			return dm_err_set(err, DM_ENOMEM, "message: out of memory");
		m->heap += (ncap - m->segcap) * sizeof(*ns);
		m->segs = ns;
		m->segcap = ncap;
	}
	m->segs[m->nseg++] = *seg;
	if (seg->mem)
		m->heap += seg->memlen + 1;
	if (seg->path)
		m->heap += strlen(seg->path) + 1;
	return DM_OK;
}

/* Moves the builder's text into a MEM segment (sb is emptied). */
static enum dm_status message_flush_sb(struct message *m, struct message_sb *sb,
                                       struct dm_err *err)
{
	struct message_seg seg = { .kind = MESSAGE_SEG_MEM };
	enum dm_status st;

	if (sb->oom)
		return dm_err_set(err, DM_ENOMEM, "message: out of memory");
	if (sb->len == 0)
		return DM_OK;
	seg.mem = sb->buf;
	seg.memlen = sb->len;
	st = message_add_seg(m, &seg, err);
	if (st != DM_OK)
		return st;
	m->size += sb->len;
	*sb = (struct message_sb){ 0 };
	return DM_OK;
}

static enum dm_status message_random(unsigned char *b, size_t n,
                                     struct dm_err *err)
{
	int e = rand_bytes(b, n);
	if (e != 0)
		return dm_err_set(err, DM_EIO, "getrandom: %s", strerror(e));
	return DM_OK;
}

/* Opens a file the message will read: must exist, be readable and be a
 * regular file.  Returns the fd and its size. */
static enum dm_status message_open(const char *what, const char *path, int *fd,
                                   uint64_t *size, bool at_build,
                                   struct dm_err *err)
{
	struct stat st;
	enum dm_status code = at_build ? DM_ENOINPUT : DM_EIO;
	char esc[MESSAGE_PATH_ECHO];   /* a path may hold a LF too */

	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		int e = errno;
		return dm_err_set(err, code, "%s '%s': cannot open: %s", what,
		                  text_escape(path, esc, sizeof(esc)), strerror(e));
	}
	if (fstat(*fd, &st) != 0) {
		int e = errno;
		close(*fd);
		*fd = -1;
		return dm_err_set(err, code, "%s '%s': cannot stat: %s", what,
		                  text_escape(path, esc, sizeof(esc)), strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(*fd);
		*fd = -1;
		return dm_err_set(err, code, "%s '%s': not a regular file", what,
		                  text_escape(path, esc, sizeof(esc)));
	}
	*size = (uint64_t)st.st_size;
	return DM_OK;
}

/* read() with EINTR retry. */
static enum dm_status message_read_fd(int fd, const char *path, void *buf,
                                      size_t cap, size_t *got,
                                      struct dm_err *err)
{
	for (;;) {
		ssize_t r = read(fd, buf, cap);
		if (r >= 0) {
			*got = (size_t)r;
			return DM_OK;
		}
		if (errno != EINTR) {
			int e = errno;
			char esc[MESSAGE_PATH_ECHO];
			return dm_err_set(err, DM_EIO, "read '%s': %s",
			                  text_escape(path, esc, sizeof(esc)),
			                  strerror(e));
		}
	}
}

/* ---- text body analysis ---------------------------------------------------- */

struct message_scan {
	bool ascii, nul, bare_cr, boundary_mark;
	size_t line, maxline;
	uint64_t n, bare_lf;
	unsigned char prev, last;
	/* UTF-8 validation across chunks */
	unsigned need;           /* continuation bytes still expected */
	unsigned char lo, hi;    /* range of the next continuation byte */
	bool bad_utf8;
};

static void message_scan_init(struct message_scan *s)
{
	memset(s, 0, sizeof(*s));
	s->ascii = true;
}

static void message_scan_update(struct message_scan *s, const unsigned char *p,
                                size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		/* UTF-8 (RFC 3629 section 4) */
		if (s->need > 0) {
			if (c < s->lo || c > s->hi)
				s->bad_utf8 = true;
			s->need--;
			s->lo = 0x80;
			s->hi = 0xBF;
		} else if (c >= 0x80) {
			s->lo = 0x80;
			s->hi = 0xBF;
			if (c >= 0xC2 && c <= 0xDF)
				s->need = 1;
			else if (c >= 0xE0 && c <= 0xEF) {
				s->need = 2;
				if (c == 0xE0)
					s->lo = 0xA0;
				else if (c == 0xED)
					s->hi = 0x9F;
			} else if (c >= 0xF0 && c <= 0xF4) {
				s->need = 3;
				if (c == 0xF0)
					s->lo = 0x90;
				else if (c == 0xF4)
					s->hi = 0x8F;
			} else
				s->bad_utf8 = true;
		}
		if (c >= 0x80)
			s->ascii = false;
		if (c == 0)
			s->nul = true;
		if (s->prev == '\r' && c != '\n')
			s->bare_cr = true;
		if (s->prev == '=' && c == '_')
			s->boundary_mark = true;
		if (c == '\n') {
			if (s->prev != '\r')
				s->bare_lf++;
			s->line = 0;
		} else if (c != '\r') {
			if (++s->line > s->maxline)
				s->maxline = s->line;
		}
		s->prev = c;
	}
	s->n += n;
}

static void message_scan_final(struct message_scan *s)
{
	if (s->prev == '\r')
		s->bare_cr = true;
	if (s->need > 0)
		s->bad_utf8 = true;
}

/* Analyses the text body, chooses 7bit or QP and computes its exact
 * encoded size (scratch: m->ibuf/m->obuf). */
static enum dm_status message_scan_body(struct message *m,
                                        struct message_seg *seg,
                                        bool multipart, struct dm_err *err)
{
	struct message_scan s;
	struct codec_qp qp;
	uint64_t qplen = 0;
	int fd = -1;
	uint64_t off = 0;
	enum dm_status st = DM_OK;
	bool qp_bol = true;

	message_scan_init(&s);
	codec_qp_init(&qp);
	if (seg->path) {
		st = message_open("body file", seg->path, &fd, &seg->fsize, true, err);
		if (st != DM_OK)
			return st;
	} else {
		seg->fsize = m->body_len;
	}
	for (;;) {
		const unsigned char *p;
		size_t got = 0;
		if (fd >= 0) {
			st = message_read_fd(fd, seg->path, m->ibuf, sizeof(m->ibuf),
			                     &got, err);
			if (st != DM_OK)
				break;
			p = (const unsigned char *)m->ibuf;
		} else {
			got = m->body_len - off < MESSAGE_IN_CHUNK ?
			      m->body_len - off : MESSAGE_IN_CHUNK;
			if (got == 0)
				break;   /* no pointer arithmetic on an absent body */
			p = (const unsigned char *)m->body + off;
		}
		if (got == 0)
			break;
		off += got;
		message_scan_update(&s, p, got);
		size_t o = codec_qp_update(&qp, p, got, m->obuf);
		if (o > 0)
			qp_bol = m->obuf[o - 1] == '\n';
		qplen += o;
	}
	if (fd >= 0)
		close(fd);
	if (st != DM_OK)
		return st;
	char esc[MESSAGE_PATH_ECHO];
	if (fd >= 0 && off != seg->fsize)
		return dm_err_set(err, DM_EIO, "body file '%s' changed size while "
		                  "being read", text_escape(seg->path, esc,
		                  sizeof(esc)));
	message_scan_final(&s);
	if (s.bad_utf8)
		return dm_err_set(err, DM_EINVAL, "%s%s%s is not valid UTF-8 text",
		                  seg->path ? "body file '" : "message body",
		                  seg->path ? text_escape(seg->path, esc,
		                  sizeof(esc)) : "", seg->path ? "'" : "");
	size_t o = codec_qp_final(&qp, m->obuf);
	if (o > 0)
		qp_bol = m->obuf[o - 1] == '\n';
	qplen += o + (qp_bol ? 0 : 2);

	seg->qp = !s.ascii || s.nul || s.bare_cr || s.maxline > CODEC_LINE_HARD ||
	          (multipart && s.boundary_mark);
	if (seg->qp) {
		m->size += qplen;
	} else {
		m->size += s.n + s.bare_lf;
		if (s.n > 0 && s.prev != '\n')
			m->size += 2;
	}
	return DM_OK;
}

/* ---- validation --------------------------------------------------------------- */

static enum dm_status message_add_rcpts(struct message *m,
                                        const char *const *lists, size_t n,
                                        const char *field, struct message_sb *hdr,
                                        bool write, struct dm_err *err)
{
	struct message_sb val = { 0 };
	enum dm_status st = DM_OK;
	char one[ADDRESS_HEADER_MAX];

	for (size_t i = 0; i < n && st == DM_OK; i++) {
		struct address *list;
		size_t cnt;
		if (!lists[i])
			continue;
		st = address_list_parse(lists[i], &list, &cnt, err);
		if (st != DM_OK) {
			dm_err_set(err, st, "%s: invalid address list", field);
			break;
		}
		for (size_t k = 0; k < cnt && st == DM_OK; k++) {
			if (write) {
				st = address_format(&list[k], one, sizeof(one), err);
				if (st != DM_OK)
					break;
				if (val.len > 0)
					message_sb_str(&val, ", ");
				message_sb_str(&val, one);
			}
			bool dup = false;
			for (size_t j = 0; j < m->nrcpt && !dup; j++)
				dup = address_same(&m->rcpt[j], &list[k]);
			if (dup)
				continue;
			if (m->nrcpt == m->rcptcap) {
				size_t ncap = m->rcptcap ? m->rcptcap * 2 : 8;
				struct address *nr = realloc(m->rcpt, ncap * sizeof(*nr));
				if (!nr) {
					st = dm_err_set(err, DM_ENOMEM, "message: out of memory");
					break;
				}
				m->heap += (ncap - m->rcptcap) * sizeof(*nr);
				m->rcpt = nr;
				m->rcptcap = ncap;
			}
			m->rcpt[m->nrcpt++] = list[k];
			if (list[k].utf8)
				m->smtputf8 = true;
		}
		address_list_free(list);
	}
	if (st == DM_OK && val.oom)
		st = dm_err_set(err, DM_ENOMEM, "message: out of memory");
	if (st == DM_OK && write && val.len > 0)
		st = message_sb_header(hdr, field, val.buf, false, err);
	free(val.buf);
	return st;
}

static const char *const message_reserved[] = {
	"From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"Content-Disposition", "Return-Path", "Received",
};

static enum dm_status message_check_name(const char *what, const char *name,
                                         struct dm_err *err)
{
	size_t len = strlen(name);
	char esc[64];

	if (len == 0)
		return dm_err_set(err, DM_EINVAL, "%s: empty name", what);
	if (len > MESSAGE_FILENAME_MAX)
		return dm_err_set(err, DM_EINVAL, "%s '%s': name is %zu "
		                  "octets, longer than %d", what,
		                  text_escape(name, esc, sizeof(esc)), len,
		                  MESSAGE_FILENAME_MAX);
	if (!codec_utf8_valid(name, len))
		return dm_err_set(err, DM_EINVAL, "%s: name is not valid UTF-8", what);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c < 0x20 || c == 0x7f)
			return dm_err_set(err, DM_EINVAL, "%s: name contains %s", what,
			                  c == '\r' ? "a CR" : c == '\n' ? "a LF" :
			                  "a control character");
	}
	return DM_OK;
}

static enum dm_status message_check_ctype(const char *ct, struct dm_err *err)
{
	/* RFC 2045 5.1: type "/" subtype, both tokens */
	const char *slash = strchr(ct, '/');
	size_t len = strlen(ct);
	char esc[MESSAGE_ECHO_MAX];

	/* the value is escaped before it is quoted: a CR/LF in it must not
	 * reach the log or the console as a line of its own */
	if (len > 127)
		return dm_err_set(err, DM_EINVAL, "content type '%s' is longer "
		                  "than 127 characters",
		                  text_escape(ct, esc, sizeof(esc)));
	if (!slash || slash == ct || slash[1] == '\0' || strchr(slash + 1, '/'))
		return dm_err_set(err, DM_EINVAL, "content type '%s' is not "
		                  "type/subtype", text_escape(ct, esc, sizeof(esc)));
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)ct[i];
		if (ct + i == slash)
			continue;
		if (c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?=", c))
			return dm_err_set(err, DM_EINVAL, "content type '%s' "
			                  "contains a character not allowed in a token",
			                  text_escape(ct, esc, sizeof(esc)));
	}
	return DM_OK;
}

static void message_quoted(struct message_sb *sb, const char *s)
{
	message_sb_put(sb, "\"", 1);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			message_sb_put(sb, "\\", 1);
		message_sb_put(sb, s, 1);
	}
	message_sb_put(sb, "\"", 1);
}

/* ASCII fallback of a file name: each non-ASCII character becomes '_'. */
static void message_fallback_name(const char *name, char *out)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (*p < 0x80)
			out[o++] = (char)*p;
		else if ((*p & 0xC0) != 0x80)
			out[o++] = '_';
	}
	out[o] = '\0';
}

void message_date(time_t t, char *out, size_t cap)
{
	static const char *const wd[] = { "Sun", "Mon", "Tue", "Wed", "Thu",
	                                  "Fri", "Sat" };
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May",
	                                   "Jun", "Jul", "Aug", "Sep", "Oct",
	                                   "Nov", "Dec" };
	struct tm tm;
	long off;

	localtime_r(&t, &tm);
	off = tm.tm_gmtoff / 60;
	snprintf(out, cap, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld",
	         wd[tm.tm_wday], tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900,
	         tm.tm_hour, tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+',
	         labs(off) / 60, labs(off) % 60);
}

/* True when `host` can stand right of the '@' in a msg-id. */
static bool message_id_host_ok(const char *host)
{
	struct address probe;
	char buf[300];

	if (!host[0] || strlen(host) > 200 || host[0] == '[' ||
	    !codec_is_ascii(host, strlen(host)))
		return false;
	snprintf(buf, sizeof(buf), "x@%s", host);
	return address_parse(buf, &probe, NULL) == DM_OK;
}

enum dm_status message_new_id(const char *hostname, char *out, size_t cap,
                              struct dm_err *err)
{
	char host[256];
	unsigned char rnd[16];
	char hex[33];
	enum dm_status st;

	if (hostname && message_id_host_ok(hostname)) {
		snprintf(host, sizeof(host), "%s", hostname);
	} else {
		if (gethostname(host, sizeof(host)) != 0)
			host[0] = '\0';
		host[sizeof(host) - 1] = '\0';
		if (!message_id_host_ok(host))
			snprintf(host, sizeof(host), "localhost");
	}
	if ((st = message_random(rnd, sizeof(rnd), err)) != DM_OK)
		return st;
	text_hex(rnd, sizeof(rnd), hex, sizeof(hex), false, '\0');
	int n = snprintf(out, cap, "<%s.devmail@%s>", hex, host);
	if (n < 0 || (size_t)n >= cap)
		return dm_err_set(err, DM_ENOMEM, "Message-ID buffer too small");
	return DM_OK;
}

static enum dm_status message_make_id(struct message *m,
                                      const struct message_spec *spec,
                                      struct dm_err *err)
{
	char esc[MESSAGE_ECHO_MAX];

	if (spec->message_id) {
		const char *id = spec->message_id;
		size_t len = strlen(id);
		if (len >= 2 && id[0] == '<' && id[len - 1] == '>') {
			id++;
			len -= 2;
		}
		const char *at = memchr(id, '@', len);
		if (len == 0 || len > 250 || !at || at == id || at == id + len - 1)
			return dm_err_set(err, DM_EINVAL, "Message-ID '%s': expected "
			                  "<left@right>", text_escape(spec->message_id,
			                  esc, sizeof(esc)));
		for (size_t i = 0; i < len; i++) {
			unsigned char c = (unsigned char)id[i];
			if (c <= 32 || c >= 127 || c == '<' || c == '>' || c == '"' ||
			    c == '\\' || c == '(' || c == ')' || c == ',')
				return dm_err_set(err, DM_EINVAL, "Message-ID '%s': "
				                  "contains a character not allowed in a "
				                  "msg-id", text_escape(spec->message_id,
				                  esc, sizeof(esc)));
		}
		snprintf(m->msgid, sizeof(m->msgid), "<%.*s>", (int)len, id);
		return DM_OK;
	}
	if (spec->hostname && !message_id_host_ok(spec->hostname))
		return dm_err_set(err, DM_EINVAL, "host name '%s' is not a "
		                  "valid domain for a Message-ID",
		                  text_escape(spec->hostname, esc, sizeof(esc)));
	return message_new_id(spec->hostname, m->msgid, sizeof(m->msgid), err);
}

/* ---- building: one step per part of the message ------------------------------ */

/* What can be refused before anything is rendered: the sender, a body
 * given twice, too many extra headers. */
static enum dm_status message_check_spec(struct message *m,
                                         const struct message_spec *spec,
                                         struct dm_err *err)
{
	enum dm_status st;

	if (!spec->from || !*spec->from)
		return dm_err_set(err, DM_EINVAL, "From: no sender address");
	if ((st = address_parse(spec->from, &m->from, err)) != DM_OK)
		return dm_err_set(err, st, "From: invalid address");
	if (m->from.utf8)
		m->smtputf8 = true;
	if (spec->body && spec->body_path)
		return dm_err_set(err, DM_EINVAL, "body: give a buffer or a file, "
		                  "not both");
	if (spec->nheaders > MESSAGE_HEADERS_MAX)
		return dm_err_set(err, DM_EINVAL, "%zu extra headers, more than %d",
		                  spec->nheaders, MESSAGE_HEADERS_MAX);
	return DM_OK;
}

/* Date (given or now), Message-ID (given or made), From. */
static enum dm_status message_head_origin(struct message *m,
                                          const struct message_spec *spec,
                                          struct message_sb *sb,
                                          struct dm_err *err)
{
	char buf[ADDRESS_HEADER_MAX];
	enum dm_status st;

	if (spec->date) {
		if (!codec_is_ascii(spec->date, strlen(spec->date)))
			return dm_err_set(err, DM_EINVAL, "Date: not ASCII");
		if ((st = message_sb_header(sb, "Date", spec->date, false, err)))
			return st;
	} else {
		char date[64];
		message_date(time(NULL), date, sizeof(date));
		if ((st = message_sb_header(sb, "Date", date, false, err)))
			return st;
	}
	if ((st = message_make_id(m, spec, err)) != DM_OK)
		return st;
	if ((st = message_sb_header(sb, "Message-ID", m->msgid, false, err)))
		return st;
	if ((st = address_format(&m->from, buf, sizeof(buf), err)) != DM_OK)
		return st;
	return message_sb_header(sb, "From", buf, false, err);
}

/* To and Cc are written; Bcc is envelope only (RFC 5322 3.6.3 allows
 * omitting it).  With neither To nor Cc, "To: undisclosed-recipients:;". */
static enum dm_status message_head_rcpts(struct message *m,
                                         const struct message_spec *spec,
                                         struct message_sb *sb,
                                         struct dm_err *err)
{
	enum dm_status st;
	size_t before = sb->len;

	if ((st = message_add_rcpts(m, spec->to, spec->nto, "To", sb, true, err)))
		return st;
	bool have_to = sb->len > before;
	before = sb->len;
	if ((st = message_add_rcpts(m, spec->cc, spec->ncc, "Cc", sb, true, err)))
		return st;
	bool have_cc = sb->len > before;
	if ((st = message_add_rcpts(m, spec->bcc, spec->nbcc, "Bcc", sb, false,
	                            err)))
		return st;
	if (m->nrcpt == 0)
		return dm_err_set(err, DM_EINVAL, "no recipient (To, Cc and Bcc are "
		                  "all empty)");
	if (!have_to && !have_cc)
		message_sb_str(sb, "To: undisclosed-recipients:;\r\n");
	return DM_OK;
}

/* Subject, MIME-Version and the caller's extra headers, which cannot
 * replace one the builder sets (message_reserved[]). */
static enum dm_status message_head_rest(const struct message_spec *spec,
                                        struct message_sb *sb,
                                        struct dm_err *err)
{
	enum dm_status st;

	if (spec->subject &&
	    (st = message_sb_header(sb, "Subject", spec->subject, true, err)))
		return st;
	message_sb_str(sb, "MIME-Version: 1.0\r\n");
	for (size_t i = 0; i < spec->nheaders; i++) {
		const struct message_header *h = &spec->headers[i];
		if (!h->name || !h->value)
			return dm_err_set(err, DM_EINVAL, "extra header %zu: name or "
			                  "value missing", i + 1);
		for (size_t k = 0; k < sizeof(message_reserved) /
		                       sizeof(message_reserved[0]); k++)
			if (strcasecmp(h->name, message_reserved[k]) == 0)
				return dm_err_set(err, DM_EINVAL, "extra header %s: set "
				                  "by the message builder, cannot be given",
				                  h->name);
		if ((st = message_sb_header(sb, h->name, h->value, true, err)))
			return st;
	}
	return DM_OK;
}

/* Every attachment names a file: checked before any part is rendered. */
static enum dm_status message_check_attachments(const struct message_spec *spec,
                                                struct dm_err *err)
{
	for (size_t i = 0; i < spec->nattachments; i++) {
		const struct message_attachment *a = &spec->attachments[i];
		if (!a->path || !*a->path)
			return dm_err_set(err, DM_EINVAL, "attachment %zu: no file given",
			                  i + 1);
	}
	return DM_OK;
}

/* A fresh boundary ("=_devmail_" and 24 hex digits: "=_" cannot occur in
 * base64 or quoted-printable) and the multipart/mixed header and preamble. */
static enum dm_status message_multipart_open(struct message_sb *sb,
                                             char *boundary, size_t cap,
                                             struct dm_err *err)
{
	unsigned char rnd[12];
	char hex[25];
	enum dm_status st;

	if ((st = message_random(rnd, sizeof(rnd), err)) != DM_OK)
		return st;
	text_hex(rnd, sizeof(rnd), hex, sizeof(hex), false, '\0');
	snprintf(boundary, cap, "=_devmail_%s", hex);
	message_sb_str(sb, "Content-Type: multipart/mixed;\r\n boundary=\"");
	message_sb_str(sb, boundary);
	message_sb_str(sb, "\"\r\n\r\n"
	               "This is a multi-part message in MIME format.\r\n");
	return DM_OK;
}

/* The text part: its source (a copy of the buffer, or the file), scanned
 * once for the encoding, its part header, then its segment.  `boundary`
 * is NULL for a single-part message. */
static enum dm_status message_add_text(struct message *m,
                                       const struct message_spec *spec,
                                       struct message_sb *sb,
                                       const char *boundary,
                                       struct dm_err *err)
{
	struct message_seg seg = { .kind = MESSAGE_SEG_TEXT };
	enum dm_status st;

	if (spec->body_path) {
		seg.path = strdup(spec->body_path);
		if (!seg.path)
			return dm_err_set(err, DM_ENOMEM, "message: out of memory");
	} else if (spec->body && spec->body_len > 0) {
		m->body = malloc(spec->body_len);
		if (!m->body)
			return dm_err_set(err, DM_ENOMEM, "message: out of memory");
		memcpy(m->body, spec->body, spec->body_len);
		m->body_len = spec->body_len;
		m->heap += spec->body_len;
	}
	st = message_scan_body(m, &seg, boundary != NULL, err);
	if (st == DM_OK) {
		if (boundary) {
			message_sb_str(sb, "\r\n--");
			message_sb_str(sb, boundary);
			message_sb_str(sb, "\r\n");
		}
		message_sb_str(sb, "Content-Type: text/plain; charset=UTF-8\r\n"
		               "Content-Transfer-Encoding: ");
		message_sb_str(sb, seg.qp ? "quoted-printable\r\n\r\n"
		                          : "7bit\r\n\r\n");
		st = message_flush_sb(m, sb, err);
	}
	if (st == DM_OK)
		st = message_add_seg(m, &seg, err);
	if (st != DM_OK)
		free(seg.path);
	return st;
}

/* Part header of attachment i: delimiter, Content-Type with name,
 * Content-Disposition with filename* (RFC 2231) when the name is not
 * ASCII and an ASCII filename fallback, Content-Transfer-Encoding. */
static enum dm_status message_attachment_head(struct message_sb *sb, size_t i,
                                              const char *boundary,
                                              const char *ct, const char *name,
                                              struct dm_err *err)
{
	char fallback[MESSAGE_FILENAME_MAX + 1];
	enum dm_status st;

	message_fallback_name(name, fallback);
	/* The CRLF before a delimiter belongs to the delimiter (RFC 2046
	 * section 5.1.1): after the text part, which ends in CRLF, a second
	 * one keeps the text's last line break; a base64 part's final
	 * CRLF serves as the delimiter's. */
	message_sb_str(sb, i > 0 ? "--" : "\r\n--");
	message_sb_str(sb, boundary);
	message_sb_str(sb, "\r\nContent-Type: ");
	message_sb_str(sb, ct);
	message_sb_str(sb, ";\r\n name=");
	message_quoted(sb, fallback);
	message_sb_str(sb, "\r\nContent-Disposition: attachment;\r\n");
	if (!codec_is_ascii(name, strlen(name))) {
		/* RFC 2231 value first: parsers that keep the last of two
		 * "filename" parameters (Python's email) and those that prefer
		 * filename* (Thunderbird, Gmail) both get the UTF-8 name;
		 * older ones get the ASCII fallback. */
		char ext[MESSAGE_FILENAME_MAX * 3 + 16];
		if ((st = codec_rfc2231_encode(name, ext, sizeof(ext), err)))
			return st;
		message_sb_str(sb, " filename*=");
		message_sb_str(sb, ext);
		message_sb_str(sb, ";\r\n");
	}
	message_sb_str(sb, " filename=");
	message_quoted(sb, fallback);
	message_sb_str(sb, "\r\nContent-Transfer-Encoding: base64\r\n\r\n");
	return DM_OK;
}

/* Attachment i: the file must be readable now (its size is the SIZE
 * estimate); name and content type are checked, the part header rendered
 * and the base64 segment added. */
static enum dm_status message_add_attachment(struct message *m,
                                             const struct message_attachment *a,
                                             size_t i, struct message_sb *sb,
                                             const char *boundary,
                                             struct dm_err *err)
{
	struct message_seg seg = { .kind = MESSAGE_SEG_B64 };
	const char *name = a->name;
	char what[32];
	enum dm_status st;
	int fd;

	snprintf(what, sizeof(what), "attachment %zu", i + 1);
	if ((st = message_open("attachment", a->path, &fd, &seg.fsize, true,
	                       err)) != DM_OK)
		return st;
	close(fd);
	if (!name) {
		name = strrchr(a->path, '/');
		name = name ? name + 1 : a->path;
	} else if (strrchr(name, '/')) {
		name = strrchr(name, '/') + 1;
	}
	if ((st = message_check_name(what, name, err)) != DM_OK)
		return st;
	const char *ct = a->content_type ? a->content_type
	                                 : mimetype_from_name(name);
	if ((st = message_check_ctype(ct, err)) != DM_OK ||
	    (st = message_attachment_head(sb, i, boundary, ct, name, err)) ||
	    (st = message_flush_sb(m, sb, err)) != DM_OK)
		return st;
	seg.path = strdup(a->path);
	if (!seg.path)
		return dm_err_set(err, DM_ENOMEM, "message: out of memory");
	if ((st = message_add_seg(m, &seg, err)) != DM_OK) {
		free(seg.path);
		return st;
	}
	m->size += codec_b64_size(seg.fsize);
	return DM_OK;
}

/* The header, then the text part and each attachment as segments, then
 * the closing delimiter.  On failure the partly built message is freed by
 * the caller (message_free). */
static enum dm_status message_build_inner(struct message *m,
                                          const struct message_spec *spec,
                                          struct dm_err *err)
{
	struct message_sb sb = { 0 };
	enum dm_status st;
	char boundary[64];
	bool multipart = spec->nattachments > 0;
	bool text_part = !multipart || spec->body || spec->body_path;

	if ((st = message_check_spec(m, spec, err)) != DM_OK)
		return st;
	if ((st = message_head_origin(m, spec, &sb, err)) != DM_OK ||
	    (st = message_head_rcpts(m, spec, &sb, err)) != DM_OK ||
	    (st = message_head_rest(spec, &sb, err)) != DM_OK ||
	    (st = message_check_attachments(spec, err)) != DM_OK)
		goto fail;
	if (multipart && (st = message_multipart_open(&sb, boundary,
	                                              sizeof(boundary), err)))
		goto fail;
	if (text_part && (st = message_add_text(m, spec, &sb,
	                                        multipart ? boundary : NULL, err)))
		goto fail;
	for (size_t i = 0; i < spec->nattachments; i++)
		if ((st = message_add_attachment(m, &spec->attachments[i], i, &sb,
		                                 boundary, err)) != DM_OK)
			goto fail;
	if (multipart) {
		message_sb_str(&sb, "--");
		message_sb_str(&sb, boundary);
		message_sb_str(&sb, "--\r\n");
	}
	return message_flush_sb(m, &sb, err);
fail:
	free(sb.buf);
	return st;
}

/* ---- public ---------------------------------------------------------------------- */

void message_free(struct message *m)
{
	if (!m)
		return;
	if (m->fd >= 0)
		close(m->fd);
	for (size_t i = 0; i < m->nseg; i++) {
		free(m->segs[i].mem);
		free(m->segs[i].path);
	}
	free(m->segs);
	free(m->body);
	free(m->rcpt);
	free(m);
}

enum dm_status message_build(const struct message_spec *spec,
                             struct message **out, struct dm_err *err)
{
	struct message *m;
	enum dm_status st;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return dm_err_set(err, DM_ENOMEM, "message: out of memory");
	m->fd = -1;
	st = message_build_inner(m, spec, err);
	if (st != DM_OK) {
		message_free(m);
		return st;
	}
	message_rewind(m, NULL);
	*out = m;
	return DM_OK;
}

enum dm_status message_rewind(struct message *m, struct dm_err *err)
{
	(void)err;
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	m->cur = 0;
	m->pos = 0;
	m->seg_open = false;
	m->olen = m->opos = 0;
	return DM_OK;
}

/* Produces the next piece of an encoded segment into obuf, or finishes
 * the segment (cur advances). */
static enum dm_status message_produce(struct message *m, struct dm_err *err)
{
	struct message_seg *seg = &m->segs[m->cur];
	const unsigned char *p;
	size_t got = 0, o = 0;
	enum dm_status st;

	if (!m->seg_open) {
		codec_qp_init(&m->qp);
		codec_b64_init(&m->b64);
		m->prev = 0;
		m->at_bol = true;
		m->pos = 0;
		if (seg->path) {
			uint64_t size;
			st = message_open(seg->kind == MESSAGE_SEG_B64 ? "attachment"
			                  : "body file", seg->path, &m->fd, &size,
			                  false, err);
			if (st != DM_OK)
				return st;
		}
		m->seg_open = true;
	}
	if (seg->path) {
		st = message_read_fd(m->fd, seg->path, m->ibuf, sizeof(m->ibuf),
		                     &got, err);
		if (st != DM_OK)
			return st;
		p = (const unsigned char *)m->ibuf;
	} else {
		uint64_t left = m->body_len - m->pos;
		got = left < MESSAGE_IN_CHUNK ? (size_t)left : MESSAGE_IN_CHUNK;
		p = got > 0 ? (const unsigned char *)m->body + m->pos : NULL;
	}
	m->pos += got;
	if (m->pos > seg->fsize || (got == 0 && m->pos != seg->fsize)) {
		char esc[MESSAGE_PATH_ECHO];
		return dm_err_set(err, DM_EIO, "'%s' changed size since the message "
		                  "was built (%llu bytes then)",
		                  seg->path ? text_escape(seg->path, esc, sizeof(esc))
		                  : "body", (unsigned long long)seg->fsize);
	}
	if (got > 0) {
		if (seg->kind == MESSAGE_SEG_B64) {
			o = codec_b64_update(&m->b64, p, got, m->obuf);
		} else if (seg->qp) {
			o = codec_qp_update(&m->qp, p, got, m->obuf);
		} else {
			for (size_t i = 0; i < got; i++) {
				if (p[i] == '\n' && m->prev != '\r')
					m->obuf[o++] = '\r';
				m->obuf[o++] = (char)p[i];
				m->prev = p[i];
			}
		}
	} else {
		if (seg->kind == MESSAGE_SEG_B64)
			o = codec_b64_final(&m->b64, m->obuf);
		else if (seg->qp)
			o = codec_qp_final(&m->qp, m->obuf);
		if (o > 0)
			m->at_bol = m->obuf[o - 1] == '\n';
		if (!m->at_bol) {
			m->obuf[o++] = '\r';
			m->obuf[o++] = '\n';
		}
		if (m->fd >= 0)
			close(m->fd);
		m->fd = -1;
		m->seg_open = false;
		m->cur++;
		m->pos = 0;
	}
	if (got > 0 && o > 0)
		m->at_bol = m->obuf[o - 1] == '\n';
	m->olen = o;
	m->opos = 0;
	return DM_OK;
}

static enum dm_status message_read(void *ctx, char *buf, size_t cap,
                                   size_t *got, struct dm_err *err)
{
	struct message *m = ctx;
	size_t n = 0;

	while (n < cap) {
		if (m->opos < m->olen) {
			size_t k = m->olen - m->opos;
			if (k > cap - n)
				k = cap - n;
			memcpy(buf + n, m->obuf + m->opos, k);
			m->opos += k;
			n += k;
			continue;
		}
		if (m->cur >= m->nseg)
			break;
		struct message_seg *seg = &m->segs[m->cur];
		if (seg->kind == MESSAGE_SEG_MEM) {
			size_t k = seg->memlen - (size_t)m->pos;
			if (k > cap - n)
				k = cap - n;
			memcpy(buf + n, seg->mem + m->pos, k);
			m->pos += k;
			n += k;
			if (m->pos == seg->memlen) {
				m->cur++;
				m->pos = 0;
			}
			continue;
		}
		enum dm_status st = message_produce(m, err);
		if (st != DM_OK) {
			*got = 0;
			return st;
		}
	}
	*got = n;
	return DM_OK;
}

struct mail_source message_source(struct message *m)
{
	return (struct mail_source){ message_read, m };
}

bool message_needs_8bitmime(const struct message *m)
{
	return m->smtputf8;
}

bool message_needs_smtputf8(const struct message *m)
{
	return m->smtputf8;
}

uint64_t message_size_estimate(const struct message *m)
{
	return m->size;
}

const char *message_sender(const struct message *m)
{
	return m->from.spec;
}

size_t message_recipient_count(const struct message *m)
{
	return m->nrcpt;
}

const char *message_recipient(const struct message *m, size_t i)
{
	return i < m->nrcpt ? m->rcpt[i].spec : NULL;
}

const char *message_id(const struct message *m)
{
	return m->msgid;
}

size_t message_memory(const struct message *m)
{
	return sizeof(*m) + m->heap;
}

enum dm_status message_write_fd(struct message *m, int fd, struct dm_err *err)
{
	char buf[16384];
	enum dm_status st = message_rewind(m, err);

	while (st == DM_OK) {
		size_t got = 0;
		st = message_read(m, buf, sizeof(buf), &got, err);
		if (st != DM_OK || got == 0)
			break;
		int e = paths_write_all(fd, buf, got);
		if (e != 0)
			return dm_err_set(err, DM_EIO, "writing the message: %s",
			                  strerror(e));
	}
	return st;
}
