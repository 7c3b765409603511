/*
 * mimetype.h - content type of an attachment from its file name.
 */
#ifndef DEVMAIL_MAIL_MIMETYPE_H
#define DEVMAIL_MAIL_MIMETYPE_H

/* The media type for the extension of `filename` (case-insensitive, the
 * part after the last '.' of the last path component), e.g. "text/csv"
 * for "log.CSV".  Unknown or missing extension: "application/octet-stream".
 * Returns a static string, never NULL; filename may be NULL. */
const char *mimetype_from_name(const char *filename);

#endif
