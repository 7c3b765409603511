/*
 * fuzz_tokenizer.c - the console tokenizer (shell/tokenizer.h).
 *
 * Input: byte 0 bit 0 sets TOKENIZER_ASSIGN; the rest is the line.
 * Properties:
 *   - on error the result is empty and the status DM_EUSAGE with a message;
 *   - argc <= TOKENIZER_MAX_WORDS, argv NULL-terminated, each word shorter
 *     than TOKENIZER_MAX_WORD + 1 and inside buf;
 *   - no word holds CR or LF (they end the line);
 *   - assign is -1, or > 0 with argv[assign] "=", and only with the flag;
 *   - quoting each word again (single quotes, ' as '\'') and splitting gives
 *     the same words and the same operator position;
 *   - tokenizer_from_argv() of the words without the flag gives them back.
 */
#include "fuzz_util.h"

#include "shell/tokenizer.h"

static void fuzz_check_line(const struct tokenizer_line *t, unsigned flags, const char *line)
{
	FUZZ_CHECK(t->argc >= 0 && t->argc <= TOKENIZER_MAX_WORDS, "argc %d", t->argc);
	FUZZ_CHECK(t->argv[t->argc] == NULL, "argv not NULL-terminated");
	for (int i = 0; i < t->argc; i++) {
		const char *w = t->argv[i];
		FUZZ_CHECK(w >= t->buf && w < t->buf + sizeof(t->buf), "word %d outside buf", i);
		size_t wl = strnlen(w, (size_t)(t->buf + sizeof(t->buf) - w));
		FUZZ_CHECK(w + wl < t->buf + sizeof(t->buf), "word %d not terminated", i);
		FUZZ_CHECK(wl <= TOKENIZER_MAX_WORD, "word %d has %zu bytes", i, wl);
		FUZZ_CHECK(strpbrk(w, "\r\n") == NULL, "word %d holds CR/LF (line '%s')", i, line);
	}
	if (t->assign >= 0) {
		FUZZ_CHECK(flags & TOKENIZER_ASSIGN, "operator without the flag");
		FUZZ_CHECK(t->assign > 0 && t->assign < t->argc &&
		           strcmp(t->argv[t->assign], "=") == 0, "assign %d", t->assign);
	} else {
		FUZZ_CHECK(t->assign == -1, "assign %d", t->assign);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > TOKENIZER_MAX_LINE + 64)
		return 0;
	unsigned flags = (data[0] & 1) ? TOKENIZER_ASSIGN : 0;
	char *line = malloc(size);
	if (!line)
		abort();
	memcpy(line, data + 1, size - 1);
	line[size - 1] = '\0';

	static struct tokenizer_line t, u, v;
	struct dm_err err;
	dm_err_clear(&err);
	enum dm_status st = tokenizer_split(line, flags, &t, &err);
	if (st != DM_OK) {
		FUZZ_CHECK(st == DM_EUSAGE && err.msg[0], "status %d", (int)st);
		FUZZ_CHECK(t.argc == 0 && t.argv[0] == NULL, "result not empty on error");
		free(line);
		return 0;
	}
	fuzz_check_line(&t, flags, line);

	/* quote again and split */
	size_t cap = 8;
	for (int i = 0; i < t.argc; i++)
		cap += strlen(t.argv[i]) * 4 + 3;
	char *q = malloc(cap);
	if (!q)
		abort();
	size_t ql = 0;
	for (int i = 0; i < t.argc; i++) {
		if (i > 0)
			q[ql++] = ' ';
		if (i == t.assign) {
			q[ql++] = '=';
			continue;
		}
		q[ql++] = '\'';
		for (const char *p = t.argv[i]; *p; p++) {
			if (*p == '\'') {
				memcpy(q + ql, "'\\''", 4);
				ql += 4;
			} else {
				q[ql++] = *p;
			}
		}
		q[ql++] = '\'';
	}
	q[ql] = '\0';
	if (ql <= TOKENIZER_MAX_LINE) {
		dm_err_clear(&err);
		st = tokenizer_split(q, flags, &u, &err);
		/* more quote characters can hit the line cap in buf */
		if (st == DM_OK) {
			FUZZ_CHECK(u.argc == t.argc && u.assign == t.assign,
			           "requoted '%s' gave %d words (assign %d), not %d (assign %d)",
			           q, u.argc, u.assign, t.argc, t.assign);
			for (int i = 0; i < t.argc; i++)
				FUZZ_CHECK(strcmp(t.argv[i], u.argv[i]) == 0, "word %d changed through '%s'",
				           i, q);
		} else {
			FUZZ_CHECK(strstr(err.msg, "too long"), "requoted '%s': %s", q, err.msg);
		}
	}
	free(q);

	dm_err_clear(&err);
	st = tokenizer_from_argv(t.argc, t.argv, 0, &v, &err);
	FUZZ_CHECK(st == DM_OK, "from_argv: %s", err.msg);
	FUZZ_CHECK(v.argc == t.argc && v.assign == -1, "from_argv argc %d", v.argc);
	for (int i = 0; i < t.argc; i++)
		FUZZ_CHECK(strcmp(t.argv[i], v.argv[i]) == 0, "from_argv word %d", i);
	fuzz_check_line(&v, 0, line);
	free(line);
	return 0;
}
