/*
 * dlog.h - how devmaild reports: every line goes to the system log
 * (core/log.h, ROOT/log/system.log, JANOS format), and in the foreground
 * also to stderr ("devmaild: <text>") so that the journal (systemd) or a
 * terminal sees it.  Safe from any thread: log_write() appends one line
 * with one O_APPEND write under a file lock, stderr is unbuffered.
 */
#ifndef DEVMAIL_DAEMON_DLOG_H
#define DEVMAIL_DAEMON_DLOG_H

#include <stdbool.h>

struct dlog {
	const char *root;      /* data root (borrowed) */
	long max_size;         /* Log/MaxSize; <= 0: the log's default */
	bool to_stderr;        /* --foreground */
};

/* One line; `fmt` must not carry secrets (it never does: the daemon logs
 * ids, hosts, addresses and the engine's redacted text). */
void dlog(const struct dlog *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Only to stderr (in the foreground): what is too chatty for the system
 * log, such as the SMTP dialogue with -v. */
void dlog_stderr(const struct dlog *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
