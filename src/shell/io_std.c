/* io_std.c - the shell_io of the process's standard streams: a terminal or
 * a pipe (see io.h).  The one place of the shell, with console.c, that
 * touches descriptor 0, stdin/stdout/stderr, termios and signal handlers;
 * bin/devmail.c picks the mode. */
#include "shell/io.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "core/vault.h"

#define IO_STD_NSIG 4

/* The signals that end a read instead of the process. */
static const int io_std_sigs[IO_STD_NSIG] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

/* The last signal caught, 0 when none since the last reset. */
static volatile sig_atomic_t io_std_signal;

static void io_std_on_signal(int sig)
{
	io_std_signal = sig;
}

struct io_std {
	struct shell_io io;
	enum shell_io_std_mode mode;
	bool tty_in;        /* descriptor 0 is a terminal */
	bool raw;           /* read descriptor 0 with read(2), not through stdio */
	bool session;       /* SIGINT caught for the io's lifetime */
	struct sigaction session_old;
	bool caught;        /* io_std_sigs caught until reset */
	struct sigaction old[IO_STD_NSIG];
};

/* Installs the handler (no SA_RESTART: a blocking read returns EINTR). */
static void io_std_handle(int sig, struct sigaction *old)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = io_std_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, old);
}

/* From the first read of a command until reset(), a signal ends the read
 * (and any later one) instead of the process, so a half-answered setup
 * changes nothing and the terminal gets its echo back. */
static void io_std_catch(struct io_std *s)
{
	if (s->caught)
		return;
	for (int i = 0; i < IO_STD_NSIG; i++)
		io_std_handle(io_std_sigs[i], &s->old[i]);
	s->caught = true;
}

static void io_std_release(struct io_std *s)
{
	if (!s->caught)
		return;
	for (int i = 0; i < IO_STD_NSIG; i++)
		sigaction(io_std_sigs[i], &s->old[i], NULL);
	s->caught = false;
}

static FILE *io_std_stream(enum shell_stream st)
{
	return st == SHELL_ERR ? stderr : stdout;
}

static int io_std_write(void *ctx, enum shell_stream st, const char *p, size_t n)
{
	(void)ctx;
	if (n && fwrite(p, 1, n, io_std_stream(st)) != n)
		return errno ? errno : EIO;
	return 0;
}

static void io_std_flush(void *ctx)
{
	(void)ctx;
	fflush(stdout);
	fflush(stderr);
}

/* One line into buf[cap] without its CR/LF.  Raw: straight from the
 * descriptor a byte at a time (no stdio copy of a secret lingers; the
 * terminal gives whole lines anyway).  Otherwise through stdin, which a
 * piped console shares with its loop.  A longer line is consumed and
 * refused; a signal caught ends the read. */
static enum shell_read io_std_getline(struct io_std *s, char *buf, size_t cap)
{
	size_t n = 0;
	bool too_long = false, any = false;

	for (;;) {
		int c;
		if (io_std_signal)
			goto intr;
		if (s->raw) {
			unsigned char ch;
			ssize_t r = read(STDIN_FILENO, &ch, 1);
			if (r < 0 && errno == EINTR) {
				if (io_std_signal)
					goto intr;
				continue;
			}
			c = r == 1 ? ch : EOF;
		} else {
			c = getc(stdin);
			if (c == EOF && ferror(stdin) && errno == EINTR) {
				clearerr(stdin);
				if (io_std_signal)
					goto intr;
				continue;
			}
		}
		if (c == EOF) {
			if (!any) {
				vault_wipe(buf, cap);
				return SHELL_READ_EOF;
			}
			break;
		}
		any = true;
		if (c == '\n')
			break;
		if (n + 1 < cap)
			buf[n++] = (char)c;
		else
			too_long = true;
	}
	while (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (too_long) {
		vault_wipe(buf, cap);
		return SHELL_READ_LONG;
	}
	return SHELL_READ_OK;
intr:
	vault_wipe(buf, cap);
	return SHELL_READ_INTR;
}

static void io_std_prompt(enum shell_stream ps, const char *prompt)
{
	if (prompt)
		fputs(prompt, io_std_stream(ps));
	fflush(stdout);
	fflush(stderr);
}

static enum shell_read io_std_read_line(void *ctx, enum shell_stream ps,
                                        const char *prompt, char *buf,
                                        size_t cap)
{
	struct io_std *s = ctx;

	io_std_catch(s);
	io_std_prompt(ps, prompt);
	return io_std_getline(s, buf, cap);
}

/* Echo goes off before the prompt shows, so nothing typed once the prompt
 * is visible can be echoed; TCSAFLUSH drops what was typed ahead of it (as
 * getpass does).  The terminal is restored before returning, whatever
 * happened. */
static enum shell_read io_std_read_secret(void *ctx, enum shell_stream ps,
                                          const char *prompt, char *buf,
                                          size_t cap)
{
	struct io_std *s = ctx;
	struct termios old, quiet;
	bool restore = false;
	enum shell_read r;

	io_std_catch(s);
	if (s->tty_in && tcgetattr(STDIN_FILENO, &old) == 0) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
		quiet.c_lflag |= ICANON;
		if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0)
			restore = true;
	}
	io_std_prompt(ps, prompt);
	r = io_std_getline(s, buf, cap);
	if (restore)
		tcsetattr(STDIN_FILENO, TCSANOW, &old);
	if (prompt && (restore || r != SHELL_READ_OK))
		fputc('\n', io_std_stream(ps));   /* the Enter not echoed */
	fflush(io_std_stream(ps));
	return r;
}

static ssize_t io_std_read_data(void *ctx, void *buf, size_t cap)
{
	struct io_std *s = ctx;

	if (s->mode != SHELL_IO_STD_COMMAND) {
		errno = EBUSY;   /* standard input carries the console's commands */
		return -1;
	}
	for (;;) {
		ssize_t n = read(STDIN_FILENO, buf, cap);
		if (n < 0 && errno == EINTR)
			continue;
		return n;
	}
}

static bool io_std_interactive(void *ctx)
{
	return ((struct io_std *)ctx)->tty_in;
}

static int io_std_width(void *ctx, enum shell_stream st)
{
	struct winsize ws;
	int fd = fileno(io_std_stream(st));

	(void)ctx;
	if (fd < 0 || !isatty(fd))
		return 0;
	if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return 80;
}

static bool io_std_interrupted(void *ctx)
{
	(void)ctx;
	return io_std_signal != 0;
}

static void io_std_reset(void *ctx)
{
	io_std_release(ctx);
	io_std_signal = 0;
}

static const struct shell_io_ops io_std_ops = {
	.write = io_std_write,
	.flush = io_std_flush,
	.read_line = io_std_read_line,
	.read_secret = io_std_read_secret,
	.read_data = io_std_read_data,
	.interactive = io_std_interactive,
	.width = io_std_width,
	.interrupted = io_std_interrupted,
	.reset = io_std_reset,
};

enum dm_status shell_io_std_new(enum shell_io_std_mode mode,
                                struct shell_io **out, struct dm_err *err)
{
	struct io_std *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (!s)
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	s->mode = mode;
	s->tty_in = isatty(STDIN_FILENO) == 1;
	s->raw = s->tty_in || mode == SHELL_IO_STD_COMMAND;
	if (mode == SHELL_IO_STD_CONSOLE && s->tty_in) {
		/* While a command runs the terminal is in its normal mode (ISIG
		 * on): Ctrl-C is a signal then, and it stops the command (which
		 * polls interrupted() or sees EINTR), not the console.  While the
		 * console edits a line Ctrl-C is a key (console.c). */
		io_std_handle(SIGINT, &s->session_old);
		s->session = true;
	}
	io_std_signal = 0;
	s->io.ops = &io_std_ops;
	s->io.ctx = s;
	*out = &s->io;
	return DM_OK;
}

void shell_io_std_free(struct shell_io *io)
{
	if (!io)
		return;
	struct io_std *s = io->ctx;
	io_std_release(s);
	if (s->session)
		sigaction(SIGINT, &s->session_old, NULL);
	io_std_signal = 0;
	free(s);
}
