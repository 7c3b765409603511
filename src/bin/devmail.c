/* bin/devmail.c - the `devmail` binary: `devmail [--root DIR] [COMMAND ARGS...]`.
 * Without a command: the console; with one: run it once, exit with its
 * sysexits status.  Either way the commands read and write through the
 * standard streams' shell_io (shell/io.h): in console mode when the console
 * reads the commands from stdin, in command mode when stdin is the
 * command's own. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "core/paths.h"
#include "shell/shell.h"

static int main_usage(FILE *f, int code)
{
	fprintf(f,
	    "usage: devmail [--root DIR] [COMMAND ARGS...]\n"
	    "  without a command, opens the console (HELP lists the commands)\n"
	    "  --root DIR   data root (else $DEVMAIL_ROOT, else the default)\n");
	return code;
}

int main(int argc, char **argv)
{
	const char *cli_root = NULL;
	char root[DM_PATH_MAX];
	struct shell *sh;
	struct dm_err e;
	int i, rc;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--root") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "devmail: --root needs a directory\n");
				return main_usage(stderr, EX_USAGE);
			}
			cli_root = argv[++i];
		} else if (strncmp(a, "--root=", 7) == 0) {
			cli_root = a + 7;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			return main_usage(stdout, EX_OK);
		} else if (strcmp(a, "--") == 0) {
			i++;
			break;
		} else if (a[0] == '-' && a[1] == '-') {
			fprintf(stderr, "devmail: unknown option %s\n", a);
			return main_usage(stderr, EX_USAGE);
		} else {
			break;
		}
	}

	dm_err_clear(&e);
	if (paths_root(cli_root, root, sizeof(root), &e) != DM_OK) {
		fprintf(stderr, "devmail: %s\n", e.msg);
		return EX_CONFIG;
	}
	bool console = i >= argc;
	struct shell_io *io = NULL;
	enum dm_status st = shell_io_std_new(console ? SHELL_IO_STD_CONSOLE :
	                                     SHELL_IO_STD_COMMAND, &io, &e);
	if (st == DM_OK) {
		struct shell_settings s = { .root = root, .io = io };
		st = shell_new(&s, &sh, &e);
	}
	if (st) {
		fprintf(stderr, "devmail: %s\n", e.msg[0] ? e.msg : dm_status_str(st));
		shell_io_std_free(io);
		return dm_status_exit(st);
	}
	if (console)
		rc = shell_console(sh);
	else
		rc = shell_run_argv(sh, argc - i, argv + i);
	shell_free(sh);
	shell_io_std_free(io);
	return rc;
}
