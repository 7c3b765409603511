/*
 * prog_logwriter.c - test helper: appends COUNT lines to the system log of
 * ROOT, as one process among several (test_log runs four at once).
 *
 *   logwriter ROOT WRITER_ID COUNT MAX_SIZE [PAD]
 *
 * Line text: "writer W seq N pad XXX..." with PAD 'x' characters (default
 * 0), so the test can check each line is whole and each writer's sequence
 * is complete and in order.  Exit 0 on success, 1 on a log error (message on
 * stderr), 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static int logwriter_arg(const char *s, long min, long max, long *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static char pad[LOG_LINE_MAX];
	long id, count, max_size, padlen = 0;

	if ((argc != 5 && argc != 6) ||
	    logwriter_arg(argv[2], 0, 1000000, &id) ||
	    logwriter_arg(argv[3], 0, 100000000, &count) ||
	    logwriter_arg(argv[4], 0, 1L << 40, &max_size) ||
	    (argc == 6 && logwriter_arg(argv[5], 0, LOG_LINE_MAX - 64, &padlen))) {
		fprintf(stderr, "usage: logwriter ROOT WRITER_ID COUNT MAX_SIZE [PAD]\n");
		return 2;
	}
	memset(pad, 'x', (size_t)padlen);
	for (long i = 0; i < count; i++) {
		struct dm_err err;
		dm_err_clear(&err);
		if (log_write(argv[1], max_size, &err, "writer %ld seq %ld pad %.*s",
		              id, i, (int)padlen, pad) != DM_OK) {
			fprintf(stderr, "logwriter %ld: line %ld: %s\n", id, i, err.msg);
			return 1;
		}
	}
	return 0;
}
