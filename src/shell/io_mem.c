/* io_mem.c - a shell_io in memory: input from a buffer, output captured.
 * Unit tests run commands through it; a server that renders a command's
 * output (the web page) can too.  See io.h. */
#include "shell/io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/vault.h"

struct io_mem_buf {
	char *p;          /* NUL-terminated when not NULL */
	size_t len, cap;
};

struct io_mem {
	struct shell_io io;
	char *input;      /* owned copy, wiped on free */
	size_t input_len, pos;
	bool interactive, echo, interrupted;
	int width;
	size_t out_max;
	struct io_mem_buf out[2];   /* indexed by enum shell_stream */
};

static struct io_mem *io_mem_of(const struct shell_io *io)
{
	return io->ctx;
}

static void io_mem_buf_wipe(struct io_mem_buf *b)
{
	if (b->p)
		vault_wipe(b->p, b->cap);
	b->len = 0;
	if (b->p)
		b->p[0] = '\0';
}

/* Appends p[n], keeping at most out_max bytes; ENOSPC when cut. */
static int io_mem_append(struct io_mem *m, enum shell_stream s, const char *p,
                         size_t n)
{
	struct io_mem_buf *b = &m->out[s == SHELL_ERR];
	int rc = 0;

	if (n > m->out_max - b->len) {
		n = m->out_max - b->len;
		rc = ENOSPC;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		if (cap > m->out_max + 1)
			cap = m->out_max + 1;
		char *np = malloc(cap);
		if (!np)
			return ENOMEM;
		if (b->p) {
			memcpy(np, b->p, b->len);
			vault_wipe(b->p, b->cap);
			free(b->p);
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return rc;
}

static int io_mem_write(void *ctx, enum shell_stream s, const char *p, size_t n)
{
	return io_mem_append(ctx, s, p, n);
}

/* The next line of input into buf[cap]; `secret` wipes the consumed bytes
 * of the input copy as well, so the secret exists only in buf. */
static enum shell_read io_mem_line(struct io_mem *m, char *buf, size_t cap,
                                   bool secret)
{
	if (m->interrupted) {
		vault_wipe(buf, cap);
		return SHELL_READ_INTR;
	}
	if (m->pos >= m->input_len) {
		vault_wipe(buf, cap);
		return SHELL_READ_EOF;
	}
	char *start = m->input + m->pos;
	size_t left = m->input_len - m->pos;
	char *nl = memchr(start, '\n', left);
	size_t take = nl ? (size_t)(nl - start) + 1 : left;
	size_t n = nl ? (size_t)(nl - start) : left;

	while (n > 0 && start[n - 1] == '\r')
		n--;
	enum shell_read r = SHELL_READ_OK;
	if (n + 1 > cap) {
		vault_wipe(buf, cap);
		r = SHELL_READ_LONG;
	} else {
		memcpy(buf, start, n);
		buf[n] = '\0';
	}
	if (secret)
		vault_wipe(start, take);
	m->pos += take;
	return r;
}

static void io_mem_prompt(struct io_mem *m, enum shell_stream ps,
                          const char *prompt)
{
	if (prompt)
		io_mem_append(m, ps, prompt, strlen(prompt));
}

static enum shell_read io_mem_read_line(void *ctx, enum shell_stream ps,
                                        const char *prompt, char *buf,
                                        size_t cap)
{
	struct io_mem *m = ctx;

	io_mem_prompt(m, ps, prompt);
	enum shell_read r = io_mem_line(m, buf, cap, false);
	if (m->echo && r == SHELL_READ_OK) {
		io_mem_append(m, ps, buf, strlen(buf));
		io_mem_append(m, ps, "\n", 1);
	}
	return r;
}

static enum shell_read io_mem_read_secret(void *ctx, enum shell_stream ps,
                                          const char *prompt, char *buf,
                                          size_t cap)
{
	struct io_mem *m = ctx;

	io_mem_prompt(m, ps, prompt);
	enum shell_read r = io_mem_line(m, buf, cap, true);
	if (m->echo && prompt)
		io_mem_append(m, ps, "\n", 1);   /* the Enter, never the secret */
	return r;
}

static ssize_t io_mem_read_data(void *ctx, void *buf, size_t cap)
{
	struct io_mem *m = ctx;
	size_t n = m->input_len - m->pos;

	if (m->interrupted) {
		errno = EINTR;
		return -1;
	}
	if (n > cap)
		n = cap;
	memcpy(buf, m->input + m->pos, n);
	m->pos += n;
	return (ssize_t)n;
}

static bool io_mem_interactive(void *ctx)
{
	return ((struct io_mem *)ctx)->interactive;
}

static int io_mem_width(void *ctx, enum shell_stream s)
{
	(void)s;
	return ((struct io_mem *)ctx)->width;
}

static bool io_mem_interrupted(void *ctx)
{
	return ((struct io_mem *)ctx)->interrupted;
}

static void io_mem_reset(void *ctx)
{
	((struct io_mem *)ctx)->interrupted = false;
}

static const struct shell_io_ops io_mem_ops = {
	.write = io_mem_write,
	.read_line = io_mem_read_line,
	.read_secret = io_mem_read_secret,
	.read_data = io_mem_read_data,
	.interactive = io_mem_interactive,
	.width = io_mem_width,
	.interrupted = io_mem_interrupted,
	.reset = io_mem_reset,
};

enum dm_status shell_io_mem_new(const struct shell_io_mem_settings *s,
                                struct shell_io **out, struct dm_err *err)
{
	struct io_mem *m;

	*out = NULL;
	if (!s || (s->input_len && !s->input) || s->width < 0)
		return dm_err_set(err, DM_EINVAL, "shell_io_mem_new: bad settings");
	m = calloc(1, sizeof(*m));
	if (!m)
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	m->input = malloc(s->input_len + 1);
	if (!m->input) {
		free(m);
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	}
	if (s->input_len)
		memcpy(m->input, s->input, s->input_len);
	m->input[s->input_len] = '\0';
	m->input_len = s->input_len;
	m->interactive = s->interactive;
	m->echo = s->echo;
	m->width = s->width;
	m->out_max = s->out_max ? s->out_max : SHELL_IO_MEM_OUT_MAX;
	m->io.ops = &io_mem_ops;
	m->io.ctx = m;
	*out = &m->io;
	return DM_OK;
}

const char *shell_io_mem_output(const struct shell_io *io, enum shell_stream s,
                                size_t *len)
{
	const struct io_mem_buf *b = &io_mem_of(io)->out[s == SHELL_ERR];

	if (len)
		*len = b->len;
	return b->p ? b->p : "";
}

void shell_io_mem_clear(struct shell_io *io)
{
	struct io_mem *m = io_mem_of(io);

	io_mem_buf_wipe(&m->out[0]);
	io_mem_buf_wipe(&m->out[1]);
}

size_t shell_io_mem_input_left(const struct shell_io *io)
{
	const struct io_mem *m = io_mem_of(io);
	return m->input_len - m->pos;
}

void shell_io_mem_interrupt(struct shell_io *io)
{
	io_mem_of(io)->interrupted = true;
}

void shell_io_mem_free(struct shell_io *io)
{
	if (!io)
		return;
	struct io_mem *m = io_mem_of(io);
	vault_wipe(m->input, m->input_len + 1);
	free(m->input);
	for (int i = 0; i < 2; i++) {
		io_mem_buf_wipe(&m->out[i]);
		free(m->out[i].p);
	}
	free(m);
}
