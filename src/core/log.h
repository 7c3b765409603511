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

#include <stddef.h>
#include "core/err.h"

#define LOG_LINE_MAX 2048
#define LOG_DEFAULT_MAX_SIZE (1024L * 1024L)

/* Appends one line (CR/LF in the text are replaced by spaces; longer text is
 * truncated to LOG_LINE_MAX).  `max_size` <= 0 means the default.
 * Errors: DM_EIO. */
enum dm_status log_write(const char *root, long max_size, struct dm_err *err,
                         const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Calls fn for each of the last n lines (oldest first), reading the rotated
 * file too when the current one has fewer.  Errors: DM_EIO. */
typedef void (*log_line_fn)(const char *line, void *ctx);
enum dm_status log_tail(const char *root, size_t n, log_line_fn fn, void *ctx,
                        struct dm_err *err);

#endif
