/* tokenizer.c - console line splitting (rules in tokenizer.h). */
#include "shell/tokenizer.h"

#include <stdbool.h>
#include <string.h>

/* Builder over out->buf: one word at a time, with the caps checked at each
 * byte so that a hostile line can never overrun the fixed buffers. */
struct tokenizer_build {
	struct tokenizer_line *out;
	size_t used;        /* bytes of buf in use */
	size_t word_len;    /* length of the open word */
	bool open;          /* a word is being built */
};

static void tokenizer_reset(struct tokenizer_line *out)
{
	out->argc = 0;
	out->assign = -1;
	out->argv[0] = NULL;
	out->buf[0] = '\0';
}

static enum dm_status tokenizer_begin(struct tokenizer_build *b,
                                      struct dm_err *err)
{
	if (b->open)
		return DM_OK;
	if (b->out->argc >= TOKENIZER_MAX_WORDS)
		return dm_err_set(err, DM_EUSAGE, "too many words (limit %d)",
		                  TOKENIZER_MAX_WORDS);
	b->out->argv[b->out->argc++] = b->out->buf + b->used;
	b->out->argv[b->out->argc] = NULL;
	b->word_len = 0;
	b->open = true;
	return DM_OK;
}

static enum dm_status tokenizer_put(struct tokenizer_build *b, char c,
                                    struct dm_err *err)
{
	enum dm_status st = tokenizer_begin(b, err);
	if (st)
		return st;
	if (b->word_len >= TOKENIZER_MAX_WORD)
		return dm_err_set(err, DM_EUSAGE,
		    "word %d is too long (limit %d characters)",
		    b->out->argc, TOKENIZER_MAX_WORD);
	/* +1 keeps room for the terminating NUL. */
	if (b->used + 1 >= sizeof(b->out->buf))
		return dm_err_set(err, DM_EUSAGE, "line too long (limit %d bytes)",
		                  TOKENIZER_MAX_LINE);
	b->out->buf[b->used++] = c;
	b->word_len++;
	return DM_OK;
}

static void tokenizer_end(struct tokenizer_build *b)
{
	if (!b->open)
		return;
	b->out->buf[b->used++] = '\0';
	b->open = false;
}

/* Emits a complete word "=" as the assignment operator. */
static enum dm_status tokenizer_operator(struct tokenizer_build *b,
                                         struct dm_err *err)
{
	tokenizer_end(b);
	enum dm_status st = tokenizer_put(b, '=', err);
	if (st)
		return st;
	b->out->assign = b->out->argc - 1;
	tokenizer_end(b);
	return DM_OK;
}

/* The command name and option words ("-x a=b" aside) never carry the
 * operator, matching tokenizer_from_argv(). */
static bool tokenizer_may_assign(const struct tokenizer_build *b)
{
	int done = b->out->argc - (b->open ? 1 : 0);   /* closed words */
	if (done < 1)
		return false;
	if (b->open && b->word_len > 0 && b->out->argv[b->out->argc - 1][0] == '-')
		return false;
	return true;
}

/* CR and LF end the line (tokenizer.h), inside quotes too: a quote still
 * open there is unterminated, and no word ever holds CR or LF. */
static bool tokenizer_eol(char c)
{
	return c == '\0' || c == '\n' || c == '\r';
}

static enum dm_status tokenizer_unterminated(struct dm_err *err,
                                             const char *kind,
                                             size_t open_col, char at)
{
	return dm_err_set(err, DM_EUSAGE,
	    "unterminated %s quote (opened at column %zu)%s", kind, open_col,
	    at == '\0' ? "" : at == '\n' ? "; a LF ends the line" :
	    "; a CR ends the line");
}

static enum dm_status tokenizer_scan(const char *line, unsigned flags,
                                     struct tokenizer_build *b,
                                     struct dm_err *err)
{
	bool want_assign = (flags & TOKENIZER_ASSIGN) != 0;
	enum dm_status st = DM_OK;
	size_t i = 0;

	while (line[i] && line[i] != '\n' && line[i] != '\r') {
		char c = line[i];
		if (c == ' ' || c == '\t') {
			tokenizer_end(b);
			i++;
		} else if (c == '\'') {
			size_t open_col = i + 1;
			if ((st = tokenizer_begin(b, err)))
				return st;
			for (i++; line[i] != '\'' ; i++) {
				if (tokenizer_eol(line[i]))
					return tokenizer_unterminated(err, "single",
					    open_col, line[i]);
				if ((st = tokenizer_put(b, line[i], err)))
					return st;
			}
			i++;
		} else if (c == '"') {
			size_t open_col = i + 1;
			if ((st = tokenizer_begin(b, err)))
				return st;
			for (i++; line[i] != '"'; i++) {
				char d = line[i];
				if (tokenizer_eol(d))
					return tokenizer_unterminated(err, "double",
					    open_col, d);
				if (d == '\\' && (line[i + 1] == '"' || line[i + 1] == '\\'))
					d = line[++i];
				if ((st = tokenizer_put(b, d, err)))
					return st;
			}
			i++;
		} else if (c == '\\') {
			char d = line[i + 1];
			if (d == '\0' || d == '\n' || d == '\r')
				return dm_err_set(err, DM_EUSAGE,
				    "the line ends with a backslash (column %zu)", i + 1);
			if ((st = tokenizer_put(b, d, err)))
				return st;
			i += 2;
		} else if (c == '=' && want_assign && b->out->assign < 0 &&
		           tokenizer_may_assign(b)) {
			if ((st = tokenizer_operator(b, err)))
				return st;
			i++;
		} else {
			if ((st = tokenizer_put(b, c, err)))
				return st;
			i++;
		}
	}
	tokenizer_end(b);
	return DM_OK;
}

enum dm_status tokenizer_split(const char *line, unsigned flags,
                               struct tokenizer_line *out, struct dm_err *err)
{
	struct tokenizer_build b = { .out = out };

	tokenizer_reset(out);
	if (!line)
		return DM_OK;
	if (strnlen(line, TOKENIZER_MAX_LINE + 1) > TOKENIZER_MAX_LINE)
		return dm_err_set(err, DM_EUSAGE, "line too long (limit %d bytes)",
		                  TOKENIZER_MAX_LINE);
	enum dm_status st = tokenizer_scan(line, flags, &b, err);
	if (st)
		tokenizer_reset(out);
	return st;
}

static enum dm_status tokenizer_copy(struct tokenizer_build *b, const char *s,
                                     size_t len, struct dm_err *err)
{
	enum dm_status st = tokenizer_begin(b, err);
	for (size_t i = 0; st == DM_OK && i < len; i++)
		st = tokenizer_put(b, s[i], err);
	tokenizer_end(b);
	return st;
}

enum dm_status tokenizer_from_argv(int argc, char *const *argv, unsigned flags,
                                   struct tokenizer_line *out,
                                   struct dm_err *err)
{
	struct tokenizer_build b = { .out = out };
	bool want_assign = (flags & TOKENIZER_ASSIGN) != 0;
	enum dm_status st = DM_OK;

	tokenizer_reset(out);
	for (int i = 0; st == DM_OK && i < argc; i++) {
		const char *w = argv[i];
		const char *eq = NULL;
		/* The command name and option words never carry the operator. */
		if (want_assign && out->assign < 0 && i > 0 && w[0] != '-')
			eq = strchr(w, '=');
		if (!eq) {
			st = tokenizer_copy(&b, w, strlen(w), err);
			continue;
		}
		if (eq > w)
			st = tokenizer_copy(&b, w, (size_t)(eq - w), err);
		if (st == DM_OK)
			st = tokenizer_operator(&b, err);
		if (st == DM_OK && eq[1])
			st = tokenizer_copy(&b, eq + 1, strlen(eq + 1), err);
	}
	if (st)
		tokenizer_reset(out);
	return st;
}
