/*
 * io.h - the seam between console commands and whatever carries them: a
 * terminal, a pipe, memory (unit tests, the web page), a Telnet session.
 *
 * A command (cmd_*.c) never touches a file descriptor, a stdio stream,
 * termios, isatty() or a signal handler.  It writes and reads through the
 * struct shell_io that its caller gave the shell; shell.h wraps the calls
 * (shell_out(), shell_err(), shell_read_line(), shell_read_secret(),
 * shell_read_data(), shell_interactive(), shell_width(),
 * shell_interrupted()).  The implementation decides what "not echoed" and
 * "interrupted" mean: termios and SIGINT on a terminal, nothing in a pipe,
 * WILL ECHO and IAC IP in a Telnet session.
 *
 * Implementations here:
 *   - the standard streams (io_std.c): a terminal or a pipe, for
 *     bin/devmail.c and the console; it owns termios and the signal
 *     handlers;
 *   - memory (io_mem.c): input from a buffer, output captured.
 * A server embeds a struct shell_io in its session and fills `ops` and
 * `ctx` itself; a NULL operation behaves as documented below.
 */
#ifndef DEVMAIL_SHELL_IO_H
#define DEVMAIL_SHELL_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "core/err.h"

enum shell_stream {
	SHELL_OUT,     /* results */
	SHELL_ERR,     /* diagnostics, prompts for a piped secret, transcripts */
};

enum shell_read {
	SHELL_READ_OK,     /* a whole line, without its CR/LF, NUL-terminated */
	SHELL_READ_EOF,    /* input ended (or failed) before a line began */
	SHELL_READ_INTR,   /* the user interrupted: Ctrl-C, a signal, Telnet IP */
	SHELL_READ_LONG,   /* the line did not fit buf: consumed and refused */
};

struct shell_io_ops {
	/* Writes p[n] to stream s (n may be 0).  Returns 0 or an errno value;
	 * the shell ignores write errors as printf(3) users do.  Required. */
	int (*write)(void *ctx, enum shell_stream s, const char *p, size_t n);
	/* Pushes buffered output out; the shell calls it after every command
	 * and an implementation calls it itself before waiting for input.
	 * NULL: output is never buffered. */
	void (*flush)(void *ctx);
	/* Shows `prompt` (NULL: none) on stream ps, then reads one line into
	 * buf[cap].  Anything but SHELL_READ_OK leaves buf wiped.  NULL:
	 * always SHELL_READ_EOF (no input). */
	enum shell_read (*read_line)(void *ctx, enum shell_stream ps,
	                             const char *prompt, char *buf, size_t cap);
	/* The same for a secret: what is typed is not echoed (echo goes off
	 * before the prompt shows, and the Enter that was not echoed is
	 * replaced by a newline after it), and no copy stays behind in the
	 * implementation's buffers where it can avoid one.  The caller wipes
	 * buf.  NULL: always SHELL_READ_EOF. */
	enum shell_read (*read_secret)(void *ctx, enum shell_stream ps,
	                               const char *prompt, char *buf,
	                               size_t cap);
	/* Reads up to cap bytes of data (SENDMAIL's body in the one-shot
	 * form).  Returns the count, 0 at the end, -1 with errno on error.
	 * Only called while the input is free for the command (see
	 * shell_input_free() in shell.h).  NULL: always 0. */
	ssize_t (*read_data)(void *ctx, void *buf, size_t cap);
	/* True when a person answers the prompts as they appear (a terminal,
	 * a Telnet session), false for a pipe or a script.  NULL: false. */
	bool (*interactive)(void *ctx);
	/* Columns of the terminal that shows stream s, 0 when it is not a
	 * terminal (in-place updates such as a progress bar need > 0).
	 * NULL: 0. */
	int (*width)(void *ctx, enum shell_stream s);
	/* True once the user asked to stop the running command (Ctrl-C, a
	 * termination signal, Telnet IP), until reset.  Commands poll it
	 * between steps.  NULL: never. */
	bool (*interrupted)(void *ctx);
	/* Forgets an interrupt and drops per-command state (the terminal
	 * implementation restores the signal handlers it installed for a
	 * read).  The shell calls it after every command; a session loop
	 * also before every prompt.  NULL: nothing to do. */
	void (*reset)(void *ctx);
};

/* What a shell borrows: the table and its context.  The implementation
 * owns both and outlives every shell that uses it. */
struct shell_io {
	const struct shell_io_ops *ops;
	void *ctx;
};

/* ---- the standard streams (io_std.c) ----------------------------------- */

enum shell_io_std_mode {
	/* One command (`devmail CMD ARGS...`): standard input belongs to the
	 * command, is read with read(2) straight from descriptor 0 (no stdio
	 * buffer keeps a copy of a secret) and may carry a message body. */
	SHELL_IO_STD_COMMAND,
	/* The console reads its commands from standard input.  On a terminal
	 * a command's answers are read from the descriptor too, and SIGINT is
	 * caught for the io's lifetime (Ctrl-C stops a command, not the
	 * console); in a pipe they are the next lines of the same stdio
	 * stream the console reads, so no command swallows what follows. */
	SHELL_IO_STD_CONSOLE,
};

/* Output to stdout / stderr, input from stdin (a terminal or a pipe).
 * While a read waits, SIGINT, SIGTERM, SIGHUP and SIGQUIT end it with
 * SHELL_READ_INTR (and interrupted() true) instead of killing the process,
 * with the terminal's echo restored; the previous handlers come back at
 * reset().  One such io per process at a time (signals are process-wide).
 * Release with shell_io_std_free().  Errors: DM_ENOMEM. */
enum dm_status shell_io_std_new(enum shell_io_std_mode mode,
                                struct shell_io **out, struct dm_err *err);
/* Restores what the io changed (signal handlers) and frees it; NULL ok. */
void shell_io_std_free(struct shell_io *io);

/* ---- memory (io_mem.c) ------------------------------------------------- */

#define SHELL_IO_MEM_OUT_MAX (4u * 1024 * 1024)  /* default cap per stream */

struct shell_io_mem_settings {
	const char *input;    /* lines (LF or CRLF) and data to read; copied */
	size_t input_len;
	bool interactive;     /* answer interactive() like a terminal would */
	int width;            /* what width() says for both streams; 0: none */
	bool echo;            /* show lines read after their prompt, as a
	                       * terminal would (secrets never: only the
	                       * newline), so output reads like a transcript */
	size_t out_max;       /* cap per output stream; 0: SHELL_IO_MEM_OUT_MAX.
	                       * Past it write() keeps what fits and returns
	                       * ENOSPC. */
};

/* An io that reads from a copy of s->input and captures what is written.
 * Release with shell_io_mem_free().  Errors: DM_ENOMEM, DM_EINVAL. */
enum dm_status shell_io_mem_new(const struct shell_io_mem_settings *s,
                                struct shell_io **out, struct dm_err *err);
/* Everything written to stream s so far, NUL-terminated (never NULL);
 * *len (when not NULL) receives its length.  Valid until the next write,
 * shell_io_mem_clear() or shell_io_mem_free(). */
const char *shell_io_mem_output(const struct shell_io *io, enum shell_stream s,
                                size_t *len);
/* Wipes and empties both captured streams. */
void shell_io_mem_clear(struct shell_io *io);
/* Bytes of input not read yet. */
size_t shell_io_mem_input_left(const struct shell_io *io);
/* As if the user pressed Ctrl-C: interrupted() is true and reads return
 * SHELL_READ_INTR until reset(). */
void shell_io_mem_interrupt(struct shell_io *io);
/* Wipes the input copy and the captured output and frees the io; NULL ok. */
void shell_io_mem_free(struct shell_io *io);

#endif
