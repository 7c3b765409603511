/* dlog.c - devmaild's reporting: system log, and stderr in the foreground. */
#include "daemon/dlog.h"

#include <stdarg.h>
#include <stdio.h>

#include "core/log.h"

void dlog(const struct dlog *l, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_write(l->root, l->max_size, NULL, "devmaild: %s", line);
	if (l->to_stderr)
		fprintf(stderr, "devmaild: %s\n", line);
}

void dlog_stderr(const struct dlog *l, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	va_list ap;

	if (!l->to_stderr)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "devmaild: %s\n", line);
}
