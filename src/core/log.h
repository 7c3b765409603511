/*
 * log.h - the system log: root/log/system.log, one line per event, in the
 * JANOS form `MM/DD/YY HH:MM:SS.mmm, text`.  Rotated to system.log.bak past
 * a size set by the registry key Log/MaxSize (default 1 MiB).  Several
 * processes append at once: each line is one O_APPEND write under an
 * advisory lock that also serialises rotation.
 * (Not syslog(3).)
 */
#ifndef DEVMAIL_CORE_LOG_H
#define DEVMAIL_CORE_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include "core/err.h"

#define LOG_LINE_MAX 2048
#define LOG_DEFAULT_MAX_SIZE (1024L * 1024L)

/* Appends one line (CR/LF and other control characters in the text are
 * replaced by spaces; longer text is truncated to LOG_LINE_MAX bytes, never
 * inside a UTF-8 sequence).  `max_size` <= 0 means the default.  Creates
 * root/log/ (0700) and the files (0600) when missing.  The caller must not
 * pass secrets.  Errors: DM_EIO (message names the file), DM_EINVAL (path
 * too long, bad format). */
enum dm_status log_write(const char *root, long max_size, struct dm_err *err,
                         const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* log_write() with a va_list, for callers that wrap it. */
enum dm_status log_vwrite(const char *root, long max_size, struct dm_err *err,
                          const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));

/* Appends n lines at once, each stamped and cleaned as by log_write():
 * one lock, one open, one write (a delivery batch logs its outcomes so).
 * NULL entries are empty lines.  Errors: as log_write(), DM_ENOMEM. */
enum dm_status log_write_lines(const char *root, long max_size,
                               const char *const *lines, size_t n,
                               struct dm_err *err);

/* Calls fn for each of the last n lines (oldest first), reading the rotated
 * file too when the current one has fewer.  `line` is NUL-terminated without
 * its newline and valid only during the call.  A missing log yields no lines
 * and DM_OK.  Errors: DM_EIO. */
typedef void (*log_line_fn)(const char *line, void *ctx);
enum dm_status log_tail(const char *root, size_t n, log_line_fn fn, void *ctx,
                        struct dm_err *err);

#endif
