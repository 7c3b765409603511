/* cmd_log.c - LOG: the last lines of the system log. */
#include "shell/shell.h"

#include <errno.h>
#include <stdlib.h>
#include <sysexits.h>

#include "core/log.h"

#define LOG_CMD_DEFAULT 20
#define LOG_CMD_MAX 100000

enum { LOG_OPT_LINES };

static const struct shell_opt log_opts[] = {
	[LOG_OPT_LINES] = { 'n', "lines", "N" },
	{ 0, NULL, NULL },
};

struct log_cmd_ctx {
	struct shell *sh;
	size_t count;
};

static void log_cmd_line(const char *line, void *ctx)
{
	struct log_cmd_ctx *c = ctx;
	shell_out(c->sh, "%s\n", line);
	c->count++;
}

static int log_run(struct shell *sh, int argc, char **argv)
{
	struct shell_opts o;
	struct log_cmd_ctx c = { .sh = sh };
	struct dm_err e;
	long n = LOG_CMD_DEFAULT;
	enum dm_status st;
	int rc;

	if ((rc = shell_opts_parse(sh, log_opts, argc, argv, &o)))
		return rc;
	if (o.argc != 0)
		return shell_usage(sh);
	if (o.seen[LOG_OPT_LINES]) {
		const char *v = o.value[LOG_OPT_LINES];
		char *end;
		errno = 0;
		n = strtol(v, &end, 10);
		if (errno || end == v || *end || n < 1 || n > LOG_CMD_MAX)
			return shell_error(sh, EX_USAGE,
			    "-n: '%s' is not a line count (integer 1-%d)", v, LOG_CMD_MAX);
	}
	dm_err_clear(&e);
	if ((st = log_tail(shell_root(sh), (size_t)n, log_cmd_line, &c, &e)))
		return shell_fail(sh, st, &e);
	if (c.count == 0)
		shell_out(sh, "the system log is empty\n");
	return EX_OK;
}

const struct shell_command shell_cmd_log = {
	.name = "LOG",
	.usage = "LOG [-n N]",
	.options = "-n N       show the last N lines (default 20)",
	.summary = "show the end of the system log",
	.description =
		"Prints the last lines of the system log (log/system.log under the "
		"data root, with its rotated predecessor when needed), oldest first. "
		"Every registry change, mail attempt and boot is logged there.",
	.run = log_run,
};
