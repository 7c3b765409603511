/* console.c - the local console's loop: libedit on a terminal, plain lines
 * when commands are piped in.  It owns standard input while it runs; the
 * commands it runs read and write through the shell's io (io_std.c in
 * SHELL_IO_STD_CONSOLE mode), never through the streams themselves.
 *
 * libedit is loaded with dlopen() when a console starts on a terminal, not
 * linked: with it and its own libraries (libtinfo, libbsd, libmd) loaded at
 * exec, every one-shot command (devmail SENDMAIL, REG, HELP, cron's
 * devmail-sendmail) paid ~1.5 ms and ~300 KiB of resident memory for line
 * editing it never does. */
#include "shell/shell.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <histedit.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "core/paths.h"

#define CONSOLE_HISTORY "console_history"
#define CONSOLE_HISTORY_SIZE 500
/* The soname libedit has had since 2003 (Debian's libedit2). */
#define CONSOLE_LIBEDIT "libedit.so.2"

/* The libedit functions the console calls, from dlopen(). */
static struct {
	EditLine *(*el_init)(const char *, FILE *, FILE *, FILE *);
	void (*el_end)(EditLine *);
	void (*el_reset)(EditLine *);
	const char *(*el_gets)(EditLine *, int *);
	int (*el_get)(EditLine *, int, ...);
	int (*el_set)(EditLine *, int, ...);
	int (*el_wset)(EditLine *, int, ...);
	History *(*history_init)(void);
	void (*history_end)(History *);
	int (*history)(History *, HistEvent *, int, ...);
	char error[200];   /* why it could not be loaded, or "" */
} console_edit;

static pthread_once_t console_edit_once = PTHREAD_ONCE_INIT;

/* Loads libedit once per process (never unloaded: its atexit and signal
 * state must outlive a console). */
static void console_edit_load(void)
{
	void *lib = dlopen(CONSOLE_LIBEDIT, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		const char *why = dlerror();
		snprintf(console_edit.error, sizeof(console_edit.error), "%s",
		         why ? why : CONSOLE_LIBEDIT ": cannot be loaded");
		return;
	}
	/* POSIX: a dlsym() result converts to a function pointer. */
#define CONSOLE_SYM(name) \
	(*(void **)(&console_edit.name) = dlsym(lib, #name)) != NULL
	if (!(CONSOLE_SYM(el_init) && CONSOLE_SYM(el_end) &&
	      CONSOLE_SYM(el_reset) && CONSOLE_SYM(el_gets) &&
	      CONSOLE_SYM(el_get) && CONSOLE_SYM(el_set) &&
	      CONSOLE_SYM(el_wset) && CONSOLE_SYM(history_init) &&
	      CONSOLE_SYM(history_end) && CONSOLE_SYM(history))) {
		snprintf(console_edit.error, sizeof(console_edit.error),
		         "%s lacks a line-editing function", CONSOLE_LIBEDIT);
		console_edit.el_init = NULL;
	}
#undef CONSOLE_SYM
}

/* True when libedit is usable; else *why says what failed. */
static bool console_edit_ready(const char **why)
{
	(void)pthread_once(&console_edit_once, console_edit_load);
	*why = console_edit.error;
	return console_edit.el_init != NULL;
}

const char *shell_prompt(struct shell *sh, char *buf, size_t cap)
{
	char host[256] = "";
	struct registry *reg;
	bool is_set = false;

	if (shell_registry(sh, &reg, NULL) != DM_OK ||
	    registry_get(reg, "IpConfig/HostName", host, sizeof(host), &is_set,
	                 NULL) != DM_OK || !is_set || !host[0]) {
		if (gethostname(host, sizeof(host)) != 0 || !host[0])
			snprintf(host, sizeof(host), "devmail");
		host[sizeof(host) - 1] = '\0';
	}
	snprintf(buf, cap, "%s /> ", host);
	return buf;
}

struct console {
	struct shell *sh;
	char prompt[300];
	bool abandoned;       /* Ctrl-C pressed on the line being edited */
};

/* Ctrl-C while editing: a key, not a signal.  The edit mode has ISIG off
 * (EL_SETTY below), so the key reaches libedit, which ends the line; the
 * loop then drops it.  No signal races with the read. */
static unsigned char console_abandon(EditLine *el, int ch)
{
	struct console *c = NULL;
	(void)ch;
	console_edit.el_get(el, EL_CLIENTDATA, &c);
	if (c)
		c->abandoned = true;
	return CC_NEWLINE;
}

static char *console_prompt_fn(EditLine *el)
{
	struct console *c = NULL;
	console_edit.el_get(el, EL_CLIENTDATA, &c);
	return c ? c->prompt : (char *)"/> ";
}

static int console_plain(struct shell *sh)
{
	char *line = NULL;
	size_t cap = 0;
	int rc = EX_OK;

	while (!shell_exit_requested(sh) && getline(&line, &cap, stdin) >= 0)
		rc = shell_run_line(sh, line);
	free(line);
	return shell_exit_requested(sh) ? EX_OK : rc;
}

static int console_tty(struct shell *sh)
{
	struct console c = { .sh = sh };
	char path[DM_PATH_MAX];
	bool have_file = false;
	HistEvent ev;
	EditLine *el;
	History *hist;
	const char *why;

	if (!console_edit_ready(&why))
		return shell_error(sh, EX_OSERR, "cannot start line editing: %s",
		                   why);
	if (paths_ensure(shell_root(sh), NULL) == DM_OK &&
	    paths_join(shell_root(sh), CONSOLE_HISTORY, path, sizeof(path), NULL) == DM_OK) {
		/* Create it private before libedit's fopen() could make it 0644. */
		int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd >= 0) {
			close(fd);
			have_file = true;
		}
	}
	hist = console_edit.history_init();
	el = console_edit.el_init("devmail", stdin, stdout, stderr);
	if (!hist || !el) {
		if (el)
			console_edit.el_end(el);
		if (hist)
			console_edit.history_end(hist);
		return shell_error(sh, EX_OSERR, "cannot start line editing");
	}
	console_edit.history(hist, &ev, H_SETSIZE, CONSOLE_HISTORY_SIZE);
	console_edit.history(hist, &ev, H_SETUNIQUE, 1);
	if (have_file)
		console_edit.history(hist, &ev, H_LOAD, path);
	console_edit.el_set(el, EL_EDITOR, "emacs");
	console_edit.el_set(el, EL_SIGNAL, 1);
	console_edit.el_set(el, EL_HIST, console_edit.history, hist);
	console_edit.el_set(el, EL_CLIENTDATA, &c);
	console_edit.el_set(el, EL_PROMPT, console_prompt_fn);
	/* The wide form stores the static names as given; the narrow
	 * el_set(EL_ADDFN) copies them and never frees the copies. */
	console_edit.el_wset(el, EL_ADDFN, L"dm-abandon",
	                     L"drop the line being typed", console_abandon);
	console_edit.el_set(el, EL_BIND, "^C", "dm-abandon", NULL);
	console_edit.el_set(el, EL_SETTY, "-d", "-isig", NULL);

	/* SIGINT is caught for the session by the io (io_std.c, console mode
	 * on a terminal): a signal that reaches el_gets() makes its read
	 * return EINTR, and shell_interrupted() says so. */
	shell_out(sh, "devmail console: HELP lists the commands, EXIT leaves.\n");
	shell_flush(sh);
	while (!shell_exit_requested(sh)) {
		int count = 0;
		shell_prompt(sh, c.prompt, sizeof(c.prompt));
		shell_clear_interrupt(sh);
		c.abandoned = false;
		const char *line = console_edit.el_gets(el, &count);
		if (c.abandoned || shell_interrupted(sh)) {
			/* Drop what was typed; a fresh prompt follows. */
			console_edit.el_reset(el);
			shell_out(sh, "\n");
			shell_flush(sh);
			continue;
		}
		if (!line || count <= 0) {
			shell_out(sh, "\n");
			shell_flush(sh);
			break;
		}
		const char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		/* A line that carries a secret in clear is refused by its
		 * command and never written to the history file. */
		if (*p && *p != '\n' && !shell_line_has_secret(line)) {
			console_edit.history(hist, &ev, H_ENTER, line);
			if (have_file)
				console_edit.history(hist, &ev, H_SAVE, path);
		}
		shell_run_line(sh, line);
	}
	console_edit.el_end(el);
	console_edit.history_end(hist);
	return EX_OK;
}

int shell_console(struct shell *sh)
{
	shell_set_console(sh);
	if (isatty(STDIN_FILENO))
		return console_tty(sh);
	return console_plain(sh);
}
