/*
 * message.h - the streaming MIME message builder.
 *
 * RFC 5322 (message format), RFC 2045/2046 (MIME, multipart/mixed),
 * RFC 2047 (non-ASCII header text), RFC 2183 + RFC 2231 (attachment file
 * names), RFC 6531/6532 (UTF-8 addresses), RFC 1870 (SIZE).
 *
 * message_build() validates everything up front (addresses, header values,
 * attachment files) and renders only the small parts (headers, part
 * headers); the body and the attachments are read and encoded chunk by
 * chunk as the reader pulls through message_source(), with buffers of a
 * fixed size, so memory does not grow with message size.
 *
 * Output: CRLF line ends only, every line at most 998 octets, headers
 * folded at 78 where possible.  Headers written: Date, Message-ID, From,
 * To (or "undisclosed-recipients:;"), Cc, Subject, MIME-Version, extra
 * headers, Content-*.  Bcc is never written.  The text body is 7bit when
 * it is ASCII with lines of at most 998 octets (and, in a multipart
 * message, cannot collide with the boundary), else quoted-printable; UTF-8.
 * Attachments make a multipart/mixed message; each part is base64 with
 * Content-Disposition: attachment and a filename (RFC 2231 filename* plus
 * an ASCII fallback when the name is not ASCII).  The boundary contains
 * "=_", which neither base64 nor quoted-printable can produce.
 */
#ifndef DEVMAIL_MAIL_MESSAGE_H
#define DEVMAIL_MAIL_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <stdint.h>
#include "core/err.h"
#include "mail/source.h"

/* Size of the builder's read buffer (input chunk) and of its output
 * staging buffer; together with the rendered headers this is all the
 * memory a message holds while it is read. */
#define MESSAGE_IN_CHUNK 4096
#define MESSAGE_OUT_BUF (6 * MESSAGE_IN_CHUNK + 64)
#define MESSAGE_FILENAME_MAX 255   /* octets of an attachment name */
#define MESSAGE_HEADERS_MAX 64     /* extra headers */

struct message_attachment {
	const char *path;          /* file to attach; required */
	const char *name;          /* name shown to the reader (UTF-8); NULL:
	                              the last component of path */
	const char *content_type;  /* "type/subtype"; NULL: from the name's
	                              extension (mimetype_from_name) */
};

struct message_header {
	const char *name;          /* field name, e.g. "X-Device" */
	const char *value;         /* UTF-8 unstructured text, no CR/LF */
};

struct message_spec {
	const char *from;                    /* one mailbox; required */
	/* Recipient lists: each element is an address list ("a@b, N <c@d>"). */
	const char *const *to;   size_t nto;
	const char *const *cc;   size_t ncc;
	const char *const *bcc;  size_t nbcc; /* envelope only, never written */
	const char *subject;                 /* UTF-8; NULL: no Subject header */
	/* Text body (UTF-8): a buffer OR a file, not both; neither: empty
	 * body (or, with attachments, no text part). */
	const char *body;        size_t body_len;
	const char *body_path;
	const struct message_attachment *attachments; size_t nattachments;
	const struct message_header *headers; size_t nheaders;
	const char *date;        /* RFC 5322 date-time; NULL: now (local zone) */
	const char *message_id;  /* "<id@host>" (brackets optional); NULL:
	                            generated from random bytes and hostname */
	const char *hostname;    /* right side of a generated Message-ID;
	                            NULL: gethostname() */
};

struct message;

/* Validates spec and prepares a message.  Strings in spec are copied; the
 * files named are opened again when read.  *out owned by the caller
 * (message_free).  Errors: DM_EINVAL (bad address, CR/LF or control
 * characters in a header value, bad header name, invalid UTF-8, no
 * recipient, both body and body_path), DM_ENOINPUT (body file or
 * attachment missing, unreadable or not a regular file; message names the
 * file), DM_EIO, DM_ENOMEM. */
enum dm_status message_build(const struct message_spec *spec,
                             struct message **out, struct dm_err *err);

/* The pull stream of the message bytes (CRLF, not dot-stuffed).  Valid
 * until message_free().  Read errors: DM_EIO (a file cannot be read, or
 * changed size since message_build). */
struct mail_source message_source(struct message *m);

/* Starts the stream again from the first byte (for a retry). */
enum dm_status message_rewind(struct message *m, struct dm_err *err);

/* Whether the transaction needs BODY=8BITMIME / SMTPUTF8.  Bodies are
 * always 7bit or encoded, so 8BITMIME is needed only together with
 * SMTPUTF8 (UTF-8 addresses appear raw in the header, RFC 6532). */
bool message_needs_8bitmime(const struct message *m);
bool message_needs_smtputf8(const struct message *m);

/* Upper bound of the number of octets the source produces (for SIZE=);
 * exact as long as the files keep the size they had at build time (a
 * change makes the read fail with DM_EIO instead). */
uint64_t message_size_estimate(const struct message *m);

/* Envelope: the From addr-spec, and To+Cc+Bcc addr-specs deduplicated
 * (address_same) in order of first appearance.  Strings owned by m. */
const char *message_sender(const struct message *m);
size_t message_recipient_count(const struct message *m);
const char *message_recipient(const struct message *m, size_t i);

/* The Message-ID written, with angle brackets.  Owned by m. */
const char *message_id(const struct message *m);

/* Bytes of memory the message holds (structure, rendered headers and
 * fixed buffers); constant while the message is read. */
size_t message_memory(const struct message *m);

/* Rewinds and writes the whole message to fd (the outbox spool), handling
 * short writes and EINTR.  Errors: DM_EIO, and the source's errors. */
enum dm_status message_write_fd(struct message *m, int fd, struct dm_err *err);

/* Closes any open file and frees.  NULL ok. */
void message_free(struct message *m);

/* The RFC 5322 section 3.3 date of time `t` in local time, independent of
 * the locale ("Tue, 24 Nov 2026 20:01:15 +0000") into out[cap]. */
void message_date(time_t t, char *out, size_t cap);

/* A new, globally unique msg-id "<random.devmail@host>" into out[cap] (the
 * angle brackets included).  `hostname` NULL or unusable as a domain (IP
 * literal, non-ASCII, not a domain) falls back to the system host name,
 * then "localhost".  Errors: DM_EIO (no randomness), DM_ENOMEM (cap). */
enum dm_status message_new_id(const char *hostname, char *out, size_t cap,
                              struct dm_err *err);

#endif
