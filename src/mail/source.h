/*
 * source.h - a pull stream of message bytes.
 *
 * The SMTP engine sends a message by pulling from a source; the message
 * builder (message.c) and the outbox spool (outbox.c) both provide one, so
 * attachments are read and encoded in chunks as they are sent and memory
 * does not grow with message size.  The bytes are the RFC 5322 message with
 * CRLF line ends, NOT dot-stuffed (the engine stuffs for DATA; BDAT sends
 * them as they are).
 */
#ifndef DEVMAIL_MAIL_SOURCE_H
#define DEVMAIL_MAIL_SOURCE_H

#include <stddef.h>
#include "core/err.h"

/* Fills buf with up to cap bytes; *got == 0 means the end.  Errors are the
 * source's own (DM_EIO for a file that cannot be read, ...). */
typedef enum dm_status (*mail_read_fn)(void *ctx, char *buf, size_t cap,
                                       size_t *got, struct dm_err *err);

struct mail_source {
	mail_read_fn read;
	void *ctx;
};

#endif
