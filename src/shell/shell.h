/*
 * shell.h - the console's context, dispatcher, command table and the option
 * parser that commands share.
 *
 * Adding a command (IPCONFIG, SENDMAIL, OUTBOX, ...):
 *   1. write src/shell/cmd_NAME.c defining
 *        const struct shell_command shell_cmd_NAME = {
 *            .name = "NAME", .usage = "NAME [-x FILE] ARG",
 *            .options = "-x FILE   what -x does\n-y        what -y does",
 *            .summary = "one line for the HELP list",
 *            .description = "paragraphs for HELP NAME ...",
 *            .run = cmd_NAME_run,
 *        };
 *      with `static int cmd_NAME_run(struct shell *sh, int argc, char **argv)`
 *      returning a sysexits code (0 on success);
 *   2. add `extern const struct shell_command shell_cmd_NAME;` below and
 *      `&shell_cmd_NAME,` to the table in shell.c.
 * The handler gets the words of the line (argv[0] is the command name as
 * typed); it parses options with shell_opts_parse(), writes results with
 * shell_out() and errors with shell_error() ("NAME: message" on the error
 * stream).  Commands stay thin: shared work lives in the library.
 *
 * Every byte a command reads or writes goes through the struct shell_io
 * (shell/io.h) its caller gave the shell, through the wrappers below: a
 * command never touches a descriptor, a stdio stream, termios or a signal
 * handler, so the same command runs on a terminal, in a pipe, in memory
 * and in a Telnet session (tests/build/test_cmd_io.sh checks it).
 */
#ifndef DEVMAIL_SHELL_SHELL_H
#define DEVMAIL_SHELL_SHELL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "core/err.h"
#include "core/registry.h"
#include "shell/io.h"
#include "shell/tokenizer.h"

struct shell;

/* The command accepts `KEY = VALUE` (the tokenizer splits the first '='). */
#define SHELL_CMD_ASSIGN 0x1u

struct shell_command {
	const char *name;         /* canonical upper-case name, matched ignoring case */
	const char *usage;        /* one line, e.g. "REG [-a] [SECTION | KEY] [= VALUE]" */
	const char *options;      /* "-a        text\n-d KEY    text", or NULL */
	const char *summary;      /* one line for the HELP list */
	const char *description;  /* HELP paragraphs ('\n\n' separates them) */
	unsigned flags;           /* SHELL_CMD_* */
	int (*run)(struct shell *sh, int argc, char **argv);
};

/* The command table, in HELP order; *n receives the count. */
const struct shell_command *const *shell_commands(size_t *n);
/* Case-insensitive lookup; NULL when unknown. */
const struct shell_command *shell_command_find(const char *name);

extern const struct shell_command shell_cmd_help;
extern const struct shell_command shell_cmd_reg;
extern const struct shell_command shell_cmd_ipconfig;
extern const struct shell_command shell_cmd_sendmail;
extern const struct shell_command shell_cmd_outbox;
extern const struct shell_command shell_cmd_log;
extern const struct shell_command shell_cmd_exit;
extern const struct shell_command shell_cmd_quit;

struct shell_settings {
	const char *root;           /* data root (paths_root()); copied */
	const struct shell_io *io;  /* where commands read and write; borrowed,
	                             * it must outlive the shell (or its
	                             * replacement by shell_set_io()) */
};

/* Creates a shell.  Nothing is opened until a command needs it.
 * *out is released with shell_free().  Errors: DM_ENOMEM, DM_EINVAL (no
 * root, or no io with a write operation). */
enum dm_status shell_new(const struct shell_settings *s, struct shell **out,
                         struct dm_err *err);
/* Closes the registry if it was opened and frees sh (NULL allowed); the io
 * is the caller's. */
void shell_free(struct shell *sh);

/* Replaces the io (a server gives each session its own; a test captures a
 * command's output).  Borrowed like shell_settings.io. */
void shell_set_io(struct shell *sh, const struct shell_io *io);
const struct shell_io *shell_io(const struct shell *sh);

const char *shell_root(const struct shell *sh);

/* ---- output (through the io) ------------------------------------------- */

/* printf to the output / error stream.  Return 0 or the io's errno value
 * (callers may ignore it, as with printf). */
int shell_out(struct shell *sh, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int shell_err(struct shell *sh, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Writes p[n] as it is to stream s. */
int shell_write(struct shell *sh, enum shell_stream s, const char *p, size_t n);
/* Pushes buffered output out (the dispatcher does after each command). */
void shell_flush(struct shell *sh);

/* ---- input (through the io) -------------------------------------------- */

/* One line / one secret (not echoed) after `prompt` (NULL: none) on stream
 * ps; see struct shell_io_ops.  Output is flushed first.  Anything but
 * SHELL_READ_OK leaves buf wiped; the caller wipes a secret after use. */
enum shell_read shell_read_line(struct shell *sh, enum shell_stream ps,
                                const char *prompt, char *buf, size_t cap);
enum shell_read shell_read_secret(struct shell *sh, enum shell_stream ps,
                                  const char *prompt, char *buf, size_t cap);
/* Up to cap bytes of data (a message body); 0 at the end, -1 with errno.
 * EBUSY while the input carries commands (!shell_input_free()). */
ssize_t shell_read_data(struct shell *sh, void *buf, size_t cap);
/* A person answers the prompts as they appear (terminal, Telnet). */
bool shell_interactive(const struct shell *sh);
/* Columns of the terminal showing stream s; 0 when it is not one. */
int shell_width(const struct shell *sh, enum shell_stream s);
/* True once the user asked to stop the running command (Ctrl-C, a
 * termination signal); commands poll it between steps.  Cleared after
 * every command. */
bool shell_interrupted(const struct shell *sh);
/* Forgets an interrupt (the io's reset()); a session loop calls it before
 * each prompt. */
void shell_clear_interrupt(struct shell *sh);
/* False while a session reads its commands from the io's input (a console,
 * interactive or piped; later Telnet): a command must not read data from
 * it then, or it would swallow the commands that follow (answers and
 * secrets, one line each, are fine).  True in the one-shot form. */
bool shell_input_free(const struct shell *sh);
/* True once EXIT or QUIT ran. */
bool shell_exit_requested(const struct shell *sh);

/* The registry of the data root, opened (and the root created) on first use;
 * owned by the shell.  Errors: DM_EIO and whatever paths_ensure() says. */
enum dm_status shell_registry(struct shell *sh, struct registry **out,
                              struct dm_err *err);

/* Runs one console line / one already-split command; returns its sysexits
 * code.  Blank lines and lines starting with '#' do nothing (0).  Unknown
 * commands and tokenizer errors print a message and return 64. */
int shell_run_line(struct shell *sh, const char *line);
int shell_run_argv(struct shell *sh, int argc, char *const *argv);

/* Prints "NAME: message" on the error stream, NAME being the running
 * command's canonical name ("devmail" outside a command); returns `code`. */
int shell_error(struct shell *sh, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Prints the failure of a library call (err->msg, else the status name) and
 * returns dm_status_exit(st). */
int shell_fail(struct shell *sh, enum dm_status st, const struct dm_err *err);

/* Appends "NAME: text" to the system log, sized by Log/MaxSize.  A failure
 * to log is reported on the error stream but does not fail the command. */
void shell_log(struct shell *sh, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- the console (console.c) ------------------------------------------- */

/* The prompt `<hostname> /> `: IpConfig/HostName when set, else the system
 * host name, written into buf[cap]; returns buf. */
const char *shell_prompt(struct shell *sh, char *buf, size_t cap);

/* The local console: reads and runs lines from the process's standard
 * input until EXIT/QUIT or end of input.  The shell's io must be the
 * standard streams in SHELL_IO_STD_CONSOLE mode (bin/devmail.c makes it).
 * On a terminal: libedit line editing, the prompt, history kept in
 * root/console_history (0600); returns 0.  Otherwise lines are read plainly
 * without a prompt (scripts pipe commands in) and the status of the last
 * command is returned (0 after EXIT/QUIT). */
int shell_console(struct shell *sh);
/* True when a console line may carry a secret in clear: it names a sealed
 * registry key (REG Email/Password = ...) or has a word like --password,
 * --pw..., --oauth-token, --token (but not the *-stdin forms).  Such lines
 * are refused by the commands and must not be kept in the history file. */
bool shell_line_has_secret(const char *line);
/* The word test used by shell_line_has_secret() (commands refuse such words). */
bool shell_word_is_secret(const char *word);

/* Marks the io's input as carrying a session's commands, so that
 * shell_input_free() is false (shell_console() calls it; so does any other
 * session loop before its first line). */
void shell_set_console(struct shell *sh);

/* ---- option parsing shared by commands --------------------------------- */

#define SHELL_OPTS_MAX 16

struct shell_opt {
	char letter;              /* 'a' for -a (matched ignoring case, unless the
	                           * spec also has the other case: OUTBOX -r / -R);
	                           * 0 ends the list */
	const char *long_name;    /* "all" for --all, or NULL */
	const char *arg;          /* value name ("FILE") when the option takes one, else NULL */
};

struct shell_opts {
	bool seen[SHELL_OPTS_MAX];          /* indexed like the spec */
	const char *value[SHELL_OPTS_MAX];  /* the value, for options with `arg` */
	int argc;                           /* operands, in order */
	char *argv[TOKENIZER_MAX_WORDS + 1];
};

/* Parses argv[1..] against `spec`.  Options may come anywhere before "--";
 * a word "=" and everything after it are operands (so `KEY = -5` works).
 * Flags group (-ad); a value may be attached (-n5, --lines=5) or the next
 * word.  Unknown options, a missing value or a repeated option print an
 * error naming the command and return 64; 0 on success. */
int shell_opts_parse(struct shell *sh, const struct shell_opt *spec, int argc,
                     char **argv, struct shell_opts *out);

/* Prints "usage: USAGE" for the running command and returns 64. */
int shell_usage(struct shell *sh);

#endif
