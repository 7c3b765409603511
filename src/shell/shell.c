/* shell.c - console context, command table, dispatcher, the wrappers over
 * the shell_io, shared option parser. */
#include "shell/shell.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include "core/log.h"
#include "core/schema.h"
#include "core/vault.h"
#include "core/paths.h"

struct shell {
	char root[DM_PATH_MAX];
	const struct shell_io *io;   /* borrowed */
	bool console;          /* the io's input carries a session's commands */
	bool exit_requested;
	struct registry *reg;                 /* lazily opened */
	const struct shell_command *current;  /* the running command, or NULL */
};

/* ---- the command table --------------------------------------------------- */

static int shell_exit_run(struct shell *sh, int argc, char **argv)
{
	(void)argv;
	if (argc > 1)
		return shell_usage(sh);
	sh->exit_requested = true;
	return EX_OK;
}

const struct shell_command shell_cmd_exit = {
	.name = "EXIT",
	.usage = "EXIT",
	.summary = "leave the console",
	.description = "Ends the console session (QUIT does the same).",
	.run = shell_exit_run,
};

const struct shell_command shell_cmd_quit = {
	.name = "QUIT",
	.usage = "QUIT",
	.summary = "leave the console",
	.description = "Ends the console session (EXIT does the same).",
	.run = shell_exit_run,
};

/* One line per command; HELP lists them in this order. */
static const struct shell_command *const shell_table[] = {
	&shell_cmd_help,
	&shell_cmd_reg,
	&shell_cmd_ipconfig,
	&shell_cmd_sendmail,
	&shell_cmd_outbox,
	&shell_cmd_log,
	&shell_cmd_exit,
	&shell_cmd_quit,
};

const struct shell_command *const *shell_commands(size_t *n)
{
	*n = sizeof(shell_table) / sizeof(shell_table[0]);
	return shell_table;
}

const struct shell_command *shell_command_find(const char *name)
{
	size_t n;
	const struct shell_command *const *t = shell_commands(&n);
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(t[i]->name, name) == 0)
			return t[i];
	return NULL;
}

/* ---- context ------------------------------------------------------------- */

enum dm_status shell_new(const struct shell_settings *s, struct shell **out,
                         struct dm_err *err)
{
	struct shell *sh;

	*out = NULL;
	if (!s->root || !*s->root || strlen(s->root) >= sizeof(sh->root))
		return dm_err_set(err, DM_EINVAL, "bad data root");
	if (!s->io || !s->io->ops || !s->io->ops->write)
		return dm_err_set(err, DM_EINVAL, "no shell_io to read and write");
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	memcpy(sh->root, s->root, strlen(s->root) + 1);
	sh->io = s->io;
	*out = sh;
	return DM_OK;
}

void shell_free(struct shell *sh)
{
	if (!sh)
		return;
	if (sh->reg)
		registry_close(sh->reg);
	free(sh);
}

void shell_set_io(struct shell *sh, const struct shell_io *io)
{
	sh->io = io;
}

const struct shell_io *shell_io(const struct shell *sh) { return sh->io; }
const char *shell_root(const struct shell *sh) { return sh->root; }
bool shell_input_free(const struct shell *sh) { return !sh->console; }
void shell_set_console(struct shell *sh) { sh->console = true; }
bool shell_exit_requested(const struct shell *sh) { return sh->exit_requested; }

/* ---- the io ---------------------------------------------------------------- */

int shell_write(struct shell *sh, enum shell_stream s, const char *p, size_t n)
{
	return sh->io->ops->write(sh->io->ctx, s, p, n);
}

void shell_flush(struct shell *sh)
{
	if (sh->io->ops->flush)
		sh->io->ops->flush(sh->io->ctx);
}

/* Formats into a stack buffer (a heap one for long text) and writes it in
 * one call, so a session's transport sees whole lines. */
__attribute__((format(printf, 3, 0)))
static int shell_vwrite(struct shell *sh, enum shell_stream s, const char *fmt,
                        va_list ap)
{
	char small[1024];
	va_list ap2;
	int rc;

	va_copy(ap2, ap);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	if (n < 0) {
		va_end(ap2);
		return EINVAL;
	}
	if ((size_t)n < sizeof(small)) {
		va_end(ap2);
		return shell_write(sh, s, small, (size_t)n);
	}
	char *big = malloc((size_t)n + 1);
	if (!big) {
		va_end(ap2);
		return ENOMEM;
	}
	vsnprintf(big, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	rc = shell_write(sh, s, big, (size_t)n);
	free(big);
	return rc;
}

int shell_out(struct shell *sh, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = shell_vwrite(sh, SHELL_OUT, fmt, ap);
	va_end(ap);
	return rc;
}

int shell_err(struct shell *sh, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = shell_vwrite(sh, SHELL_ERR, fmt, ap);
	va_end(ap);
	return rc;
}

enum shell_read shell_read_line(struct shell *sh, enum shell_stream ps,
                                const char *prompt, char *buf, size_t cap)
{
	if (cap == 0)
		return SHELL_READ_LONG;
	shell_flush(sh);
	if (!sh->io->ops->read_line) {
		vault_wipe(buf, cap);
		return SHELL_READ_EOF;
	}
	return sh->io->ops->read_line(sh->io->ctx, ps, prompt, buf, cap);
}

enum shell_read shell_read_secret(struct shell *sh, enum shell_stream ps,
                                  const char *prompt, char *buf, size_t cap)
{
	if (cap == 0)
		return SHELL_READ_LONG;
	shell_flush(sh);
	if (!sh->io->ops->read_secret) {
		vault_wipe(buf, cap);
		return SHELL_READ_EOF;
	}
	return sh->io->ops->read_secret(sh->io->ctx, ps, prompt, buf, cap);
}

ssize_t shell_read_data(struct shell *sh, void *buf, size_t cap)
{
	if (!shell_input_free(sh)) {
		errno = EBUSY;
		return -1;
	}
	if (!sh->io->ops->read_data)
		return 0;
	return sh->io->ops->read_data(sh->io->ctx, buf, cap);
}

bool shell_interactive(const struct shell *sh)
{
	return sh->io->ops->interactive && sh->io->ops->interactive(sh->io->ctx);
}

int shell_width(const struct shell *sh, enum shell_stream s)
{
	return sh->io->ops->width ? sh->io->ops->width(sh->io->ctx, s) : 0;
}

bool shell_interrupted(const struct shell *sh)
{
	return sh->io->ops->interrupted && sh->io->ops->interrupted(sh->io->ctx);
}

void shell_clear_interrupt(struct shell *sh)
{
	if (sh->io->ops->reset)
		sh->io->ops->reset(sh->io->ctx);
}

enum dm_status shell_registry(struct shell *sh, struct registry **out,
                              struct dm_err *err)
{
	enum dm_status st;

	/* registry_open() creates the root when it is missing. */
	if (!sh->reg && (st = registry_open(sh->root, &sh->reg, err)))
		return st;
	*out = sh->reg;
	return DM_OK;
}

static const char *shell_current_name(const struct shell *sh)
{
	return sh->current ? sh->current->name : "devmail";
}

int shell_error(struct shell *sh, int code, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;

	/* One write per message: "NAME: text\n". */
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	shell_err(sh, "%s: %s\n", shell_current_name(sh), msg ? msg : "out of memory");
	free(msg);
	shell_flush(sh);
	return code;
}

int shell_fail(struct shell *sh, enum dm_status st, const struct dm_err *err)
{
	const char *msg = err && err->msg[0] ? err->msg : dm_status_str(st);
	return shell_error(sh, dm_status_exit(st), "%s", msg);
}

int shell_usage(struct shell *sh)
{
	const char *usage = sh->current ? sh->current->usage : "devmail [--root DIR] [COMMAND ARGS...]";
	shell_err(sh, "%s: usage: %s (HELP %s for more)\n", shell_current_name(sh),
	          usage, shell_current_name(sh));
	shell_flush(sh);
	return EX_USAGE;
}

void shell_log(struct shell *sh, const char *fmt, ...)
{
	char text[LOG_LINE_MAX];
	struct dm_err e;
	struct registry *reg;
	long max_size = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	dm_err_clear(&e);
	if (shell_registry(sh, &reg, NULL) == DM_OK &&
	    registry_get_int(reg, "Log/MaxSize", &max_size, NULL) != DM_OK)
		max_size = 0;   /* not declared or unreadable: the log's default */
	if (log_write(sh->root, max_size, &e, "%s: %s", shell_current_name(sh), text))
		shell_err(sh, "%s: warning: cannot write the system log: %s\n",
		          shell_current_name(sh), e.msg[0] ? e.msg : "I/O error");
}

/* ---- dispatch ------------------------------------------------------------ */

static int shell_dispatch(struct shell *sh, const struct shell_command *cmd,
                          struct tokenizer_line *tl)
{
	const struct shell_command *saved = sh->current;
	sh->current = cmd;
	int rc = cmd->run(sh, tl->argc, tl->argv);
	sh->current = saved;
	shell_flush(sh);
	/* An interrupt belongs to the command it stopped. */
	shell_clear_interrupt(sh);
	return rc;
}

static int shell_unknown(struct shell *sh, const char *name)
{
	return shell_error(sh, EX_USAGE,
	    "unknown command '%s' (HELP lists the commands)", name);
}

int shell_run_line(struct shell *sh, const char *line)
{
	struct tokenizer_line *tl;
	struct dm_err e;
	const struct shell_command *cmd;
	int rc;

	const char *p = line;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0' || *p == '\n' || *p == '\r' || *p == '#')
		return EX_OK;
	tl = malloc(sizeof(*tl));
	if (!tl)
		return shell_error(sh, EX_OSERR, "out of memory");
	dm_err_clear(&e);
	enum dm_status st = tokenizer_split(line, 0, tl, &e);
	if (st) {
		rc = shell_error(sh, EX_USAGE, "%s", e.msg);
		goto out;
	}
	if (tl->argc == 0) {
		rc = EX_OK;
		goto out;
	}
	cmd = shell_command_find(tl->argv[0]);
	if (!cmd) {
		rc = shell_unknown(sh, tl->argv[0]);
		goto out;
	}
	if (cmd->flags & SHELL_CMD_ASSIGN) {
		st = tokenizer_split(line, TOKENIZER_ASSIGN, tl, &e);
		if (st) {
			rc = shell_error(sh, EX_USAGE, "%s", e.msg);
			goto out;
		}
	}
	rc = shell_dispatch(sh, cmd, tl);
out:
	vault_wipe(tl, sizeof(*tl));
	free(tl);
	return rc;
}

int shell_run_argv(struct shell *sh, int argc, char *const *argv)
{
	struct tokenizer_line *tl;
	struct dm_err e;
	const struct shell_command *cmd;
	int rc;

	if (argc < 1)
		return EX_OK;
	cmd = shell_command_find(argv[0]);
	if (!cmd)
		return shell_unknown(sh, argv[0]);
	tl = malloc(sizeof(*tl));
	if (!tl)
		return shell_error(sh, EX_OSERR, "out of memory");
	dm_err_clear(&e);
	enum dm_status st = tokenizer_from_argv(argc, argv,
	    (cmd->flags & SHELL_CMD_ASSIGN) ? TOKENIZER_ASSIGN : 0, tl, &e);
	if (st)
		rc = shell_error(sh, EX_USAGE, "%s", e.msg);
	else
		rc = shell_dispatch(sh, cmd, tl);
	vault_wipe(tl, sizeof(*tl));
	free(tl);
	return rc;
}

/* A word that asks to pass a secret in clear: --password, -pw..., --token,
 * --oauth-token (any number of dashes, any case); the *-stdin forms that
 * read the secret from standard input are fine. */
bool shell_word_is_secret(const char *w)
{
	const char *p = w;

	if (*p != '-')
		return false;
	while (*p == '-')
		p++;
	size_t len = strcspn(p, "=");
	if (len > 6 && strncasecmp(p + len - 6, "-stdin", 6) == 0)
		return false;
	return strncasecmp(p, "pass", 4) == 0 || strncasecmp(p, "pw", 2) == 0 ||
	       strncasecmp(p, "oauth", 5) == 0 || strncasecmp(p, "token", 5) == 0;
}

bool shell_line_has_secret(const char *line)
{
	struct tokenizer_line *tl = malloc(sizeof(*tl));
	bool secret = false;

	if (!tl)
		return true;     /* cannot tell: keep it out of the history */
	if (tokenizer_split(line, TOKENIZER_ASSIGN, tl, NULL) != DM_OK) {
		/* Unsplittable lines are refused anyway; a cheap textual check. */
		secret = strcasestr(line, "pass") || strcasestr(line, "token");
	} else {
		for (int i = 0; i < tl->argc && !secret; i++) {
			const struct schema_key *k = schema_find(tl->argv[i]);
			secret = shell_word_is_secret(tl->argv[i]) ||
			         (k && k->type == SCHEMA_SEALED);
		}
	}
	vault_wipe(tl, sizeof(*tl));
	free(tl);
	return secret;
}

/* ---- options ------------------------------------------------------------- */

/* A letter matches its own case first (OUTBOX has -r and -R), then the
 * other case: letters ignore case unless a spec has both. */
static int shell_opt_index(const struct shell_opt *spec, char letter,
                           const char *long_name, size_t long_len)
{
	if (!long_name)
		for (int i = 0; spec[i].letter && i < SHELL_OPTS_MAX; i++)
			if (spec[i].letter == letter)
				return i;
	for (int i = 0; spec[i].letter && i < SHELL_OPTS_MAX; i++) {
		if (long_name) {
			if (spec[i].long_name && strlen(spec[i].long_name) == long_len &&
			    strncasecmp(spec[i].long_name, long_name, long_len) == 0)
				return i;
		} else if ((spec[i].letter | 0x20) == (letter | 0x20)) {
			return i;
		}
	}
	return -1;
}

/* Records option i with an optional value; 0 or an exit code. */
static int shell_opt_take(struct shell *sh, const struct shell_opt *spec, int i,
                          const char *shown, const char *value,
                          struct shell_opts *out)
{
	if (out->seen[i])
		return shell_error(sh, EX_USAGE, "option %s given twice", shown);
	out->seen[i] = true;
	if (spec[i].arg) {
		if (!value)
			return shell_error(sh, EX_USAGE, "option %s needs a value (%s)",
			                   shown, spec[i].arg);
		out->value[i] = value;
	} else if (value) {
		return shell_error(sh, EX_USAGE, "option %s takes no value", shown);
	}
	return 0;
}

/* A word that looks like a negative number is an operand, not an option,
 * unless the spec has digit options (it has none today). */
static bool shell_opt_is_number(const char *w)
{
	if (w[0] != '-' || !w[1])
		return false;
	for (const char *p = w + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

int shell_opts_parse(struct shell *sh, const struct shell_opt *spec, int argc,
                     char **argv, struct shell_opts *out)
{
	bool only_operands = false;
	int rc;

	memset(out, 0, sizeof(*out));
	for (int a = 1; a < argc; a++) {
		char *w = argv[a];
		if (only_operands || w[0] != '-' || w[1] == '\0' || shell_opt_is_number(w)) {
			if (strcmp(w, "=") == 0)
				only_operands = true;
			if (out->argc >= TOKENIZER_MAX_WORDS)
				return shell_error(sh, EX_USAGE, "too many arguments");
			out->argv[out->argc++] = w;
			out->argv[out->argc] = NULL;
			continue;
		}
		if (strcmp(w, "--") == 0) {
			only_operands = true;
			continue;
		}
		if (w[1] == '-') {
			const char *name = w + 2;
			const char *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			int i = shell_opt_index(spec, 0, name, len);
			if (i < 0)
				return shell_error(sh, EX_USAGE, "unknown option %s", w);
			const char *value = eq ? eq + 1 : NULL;
			if (!value && spec[i].arg && a + 1 < argc)
				value = argv[++a];
			if ((rc = shell_opt_take(sh, spec, i, w, value, out)))
				return rc;
			continue;
		}
		for (const char *p = w + 1; *p; p++) {
			char shown[3] = { '-', *p, '\0' };
			int i = shell_opt_index(spec, *p, NULL, 0);
			if (i < 0)
				return shell_error(sh, EX_USAGE, "unknown option %s", shown);
			const char *value = NULL;
			if (spec[i].arg) {
				if (p[1])
					value = p + 1;
				else if (a + 1 < argc)
					value = argv[++a];
			}
			if ((rc = shell_opt_take(sh, spec, i, shown, value, out)))
				return rc;
			if (spec[i].arg)
				break;
		}
	}
	return 0;
}
