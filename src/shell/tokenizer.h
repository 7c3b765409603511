/*
 * tokenizer.h - splits a console line into words.
 *
 * Rules (a small, predictable subset of sh):
 *   - words are separated by blanks (space, tab); CR/LF end the line,
 *     also inside quotes (so a quote still open there is unterminated);
 *   - '...' keeps everything literally up to the next single quote;
 *   - "..." keeps everything except that \" and \\ stand for " and \
 *     (a backslash before any other character is kept as is, so
 *     "C:\dir" survives);
 *   - outside quotes a backslash makes the next character literal
 *     (`a\ b` is one word, `\=` is a plain '=');
 *   - quoted parts join the word they touch (`ab"c d"` is "abc d"); an empty
 *     quoted string is an empty word;
 *   - with TOKENIZER_ASSIGN, the first unquoted, unescaped '=' after the first
 *     word, outside words that start with '-', is an operator: it ends the
 *     word before it and becomes a word "=" of its own, so `KEY=V`,
 *     `KEY = V`, `KEY= V` and `KEY =V` all give KEY, =, V.
 *     Later '=' characters are ordinary (`K = a=b` gives K, =, a=b).
 * Caps: TOKENIZER_MAX_WORDS words, TOKENIZER_MAX_WORD bytes per word,
 * TOKENIZER_MAX_LINE bytes of input.  Going past any cap, an unterminated
 * quote or a trailing backslash is an error (DM_EUSAGE) with a message that
 * says which rule and where; the result is then empty.
 */
#ifndef DEVMAIL_SHELL_TOKENIZER_H
#define DEVMAIL_SHELL_TOKENIZER_H

#include <stddef.h>
#include "core/err.h"

#define TOKENIZER_MAX_WORDS 64
#define TOKENIZER_MAX_WORD 1024
#define TOKENIZER_MAX_LINE 8192

/* Flags for tokenizer_split() / tokenizer_from_argv(). */
#define TOKENIZER_ASSIGN 0x1u

/* The words of one line.  A plain value (caller-allocated, ~9 KiB); argv
 * points into buf and stays valid as long as the struct does. */
struct tokenizer_line {
	int argc;
	int assign;      /* index of the '=' operator word, -1 when none */
	char *argv[TOKENIZER_MAX_WORDS + 1];   /* NULL-terminated */
	char buf[TOKENIZER_MAX_LINE + TOKENIZER_MAX_WORDS];
};

/* Splits `line` (NUL-terminated) into *out.
 * Errors: DM_EUSAGE (unterminated quote, trailing backslash, a cap hit). */
enum dm_status tokenizer_split(const char *line, unsigned flags,
                               struct tokenizer_line *out, struct dm_err *err);

/* Copies words that the operating system's shell already split (the one-shot
 * `devmail CMD ARGS...` form) into *out, applying TOKENIZER_ASSIGN the same
 * way: a word that is exactly "=" is the operator, else the first word that
 * holds '=' is split at its first '='.  Quotes are not interpreted again.
 * Errors: DM_EUSAGE (a cap hit). */
enum dm_status tokenizer_from_argv(int argc, char *const *argv, unsigned flags,
                                   struct tokenizer_line *out,
                                   struct dm_err *err);

#endif
