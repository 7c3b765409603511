/* test_tokenizer.c - table-driven tests of the console tokenizer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shell/tokenizer.h"

#define W(...) { __VA_ARGS__, NULL }

struct tok_case {
	const char *line;
	unsigned flags;
	enum dm_status status;
	const char *words[12];     /* NULL-terminated expected words */
	int assign;                /* expected assign index */
	const char *msg_part;      /* for errors: a part of the message */
};

static const struct tok_case split_cases[] = {
	{ "", 0, DM_OK, W(NULL), -1, NULL },
	{ "   \t  ", 0, DM_OK, W(NULL), -1, NULL },
	{ "REG", 0, DM_OK, W("REG"), -1, NULL },
	{ "  REG   -a\tEmail  ", 0, DM_OK, W("REG", "-a", "Email"), -1, NULL },
	{ "HELP REG\n", 0, DM_OK, W("HELP", "REG"), -1, NULL },
	{ "HELP REG\r\n", 0, DM_OK, W("HELP", "REG"), -1, NULL },
	/* quotes */
	{ "say 'a b  c'", 0, DM_OK, W("say", "a b  c"), -1, NULL },
	{ "say \"a b\"", 0, DM_OK, W("say", "a b"), -1, NULL },
	{ "say 'it\"s'", 0, DM_OK, W("say", "it\"s"), -1, NULL },
	{ "say \"it's\"", 0, DM_OK, W("say", "it's"), -1, NULL },
	{ "say ab\"c d\"e", 0, DM_OK, W("say", "abc de"), -1, NULL },
	{ "say '' \"\"", 0, DM_OK, W("say", "", ""), -1, NULL },
	{ "say 'a\\b'", 0, DM_OK, W("say", "a\\b"), -1, NULL },
	/* escapes */
	{ "say \"a\\\"b\"", 0, DM_OK, W("say", "a\"b"), -1, NULL },
	{ "say \"a\\\\b\"", 0, DM_OK, W("say", "a\\b"), -1, NULL },
	{ "say \"C:\\dir\"", 0, DM_OK, W("say", "C:\\dir"), -1, NULL },
	{ "say a\\ b", 0, DM_OK, W("say", "a b"), -1, NULL },
	{ "say \\'x", 0, DM_OK, W("say", "'x"), -1, NULL },
	/* '=' without the flag is ordinary */
	{ "REG Email/Port=587", 0, DM_OK, W("REG", "Email/Port=587"), -1, NULL },
	/* '=' with the flag: every spacing gives the same words */
	{ "REG Email/Port = 587", TOKENIZER_ASSIGN, DM_OK, W("REG", "Email/Port", "=", "587"), 2, NULL },
	{ "REG Email/Port=587", TOKENIZER_ASSIGN, DM_OK, W("REG", "Email/Port", "=", "587"), 2, NULL },
	{ "REG Email/Port =587", TOKENIZER_ASSIGN, DM_OK, W("REG", "Email/Port", "=", "587"), 2, NULL },
	{ "REG Email/Port= 587", TOKENIZER_ASSIGN, DM_OK, W("REG", "Email/Port", "=", "587"), 2, NULL },
	{ "REG K = a=b", TOKENIZER_ASSIGN, DM_OK, W("REG", "K", "=", "a=b"), 2, NULL },
	{ "REG K =", TOKENIZER_ASSIGN, DM_OK, W("REG", "K", "="), 2, NULL },
	{ "REG K = \"\"", TOKENIZER_ASSIGN, DM_OK, W("REG", "K", "=", ""), 2, NULL },
	{ "REG \"K=v\"", TOKENIZER_ASSIGN, DM_OK, W("REG", "K=v"), -1, NULL },
	{ "REG K\\=v", TOKENIZER_ASSIGN, DM_OK, W("REG", "K=v"), -1, NULL },
	{ "REG K = '=' ", TOKENIZER_ASSIGN, DM_OK, W("REG", "K", "=", "="), 2, NULL },
	{ "A=B C", TOKENIZER_ASSIGN, DM_OK, W("A=B", "C"), -1, NULL },
	{ "REG -x a=b.ini", TOKENIZER_ASSIGN, DM_OK, W("REG", "-x", "a", "=", "b.ini"), 3, NULL },
	{ "REG --export=a.ini", TOKENIZER_ASSIGN, DM_OK, W("REG", "--export=a.ini"), -1, NULL },
	/* errors */
	{ "say 'abc", 0, DM_EUSAGE, W(NULL), -1, "unterminated single quote (opened at column 5)" },
	{ "say \"abc", 0, DM_EUSAGE, W(NULL), -1, "unterminated double quote (opened at column 5)" },
	{ "say \"a\\\"", 0, DM_EUSAGE, W(NULL), -1, "unterminated double quote" },
	{ "say abc\\", 0, DM_EUSAGE, W(NULL), -1, "ends with a backslash" },
	/* CR/LF end the line inside quotes too: no word holds them */
	{ "'multi\nline'", 0, DM_EUSAGE, W(NULL), -1,
	  "unterminated single quote (opened at column 1); a LF ends the line" },
	{ "\"a\rb\"", 0, DM_EUSAGE, W(NULL), -1,
	  "unterminated double quote (opened at column 1); a CR ends the line" },
	{ " \"\n\"", 0, DM_EUSAGE, W(NULL), -1,
	  "unterminated double quote (opened at column 2); a LF ends the line" },
	{ "say \"a\\\r\nb\"", 0, DM_EUSAGE, W(NULL), -1, "a CR ends the line" },
	{ "REG K = 'v\r\n", TOKENIZER_ASSIGN, DM_EUSAGE, W(NULL), -1,
	  "unterminated single quote (opened at column 9); a CR ends the line" },
	{ "say 'a b'\n'c", 0, DM_OK, W("say", "a b"), -1, NULL },
	{ "say \"a\"\r\nrest", 0, DM_OK, W("say", "a"), -1, NULL },
};

static void check_words(const struct tokenizer_line *tl, const char *const *words)
{
	int n = 0;
	while (words[n])
		n++;
	assert_int_equal(tl->argc, n);
	for (int i = 0; i < n; i++)
		assert_string_equal(tl->argv[i], words[i]);
	assert_null(tl->argv[n]);
}

static void test_split_table(void **state)
{
	(void)state;
	struct tokenizer_line *tl = malloc(sizeof(*tl));
	assert_non_null(tl);
	for (size_t i = 0; i < sizeof(split_cases) / sizeof(split_cases[0]); i++) {
		const struct tok_case *c = &split_cases[i];
		struct dm_err e;
		dm_err_clear(&e);
		print_message("case %zu: [%s]\n", i, c->line);
		enum dm_status st = tokenizer_split(c->line, c->flags, tl, &e);
		assert_int_equal(st, c->status);
		check_words(tl, c->words);
		assert_int_equal(tl->assign, c->assign);
		if (c->msg_part)
			assert_non_null(strstr(e.msg, c->msg_part));
		else
			assert_string_equal(e.msg, "");
	}
	free(tl);
}

static void test_caps(void **state)
{
	(void)state;
	struct tokenizer_line *tl = malloc(sizeof(*tl));
	char *line = malloc(TOKENIZER_MAX_LINE + 16);
	struct dm_err e;
	assert_non_null(tl);
	assert_non_null(line);

	/* Exactly the word cap works, one more fails. */
	line[0] = '\0';
	for (int i = 0; i < TOKENIZER_MAX_WORDS; i++)
		strcat(line, "w ");
	dm_err_clear(&e);
	assert_int_equal(tokenizer_split(line, 0, tl, &e), DM_OK);
	assert_int_equal(tl->argc, TOKENIZER_MAX_WORDS);
	strcat(line, "w");
	assert_int_equal(tokenizer_split(line, 0, tl, &e), DM_EUSAGE);
	assert_non_null(strstr(e.msg, "too many words"));
	assert_int_equal(tl->argc, 0);

	/* Word length cap, also inside quotes. */
	memset(line, 'x', TOKENIZER_MAX_WORD);
	line[TOKENIZER_MAX_WORD] = '\0';
	dm_err_clear(&e);
	assert_int_equal(tokenizer_split(line, 0, tl, &e), DM_OK);
	assert_int_equal(strlen(tl->argv[0]), TOKENIZER_MAX_WORD);
	line[0] = '"';
	line[TOKENIZER_MAX_WORD] = 'x';
	line[TOKENIZER_MAX_WORD + 1] = 'x';
	line[TOKENIZER_MAX_WORD + 2] = '"';
	line[TOKENIZER_MAX_WORD + 3] = '\0';
	assert_int_equal(tokenizer_split(line, 0, tl, &e), DM_EUSAGE);
	assert_non_null(strstr(e.msg, "too long"));

	/* Line cap. */
	memset(line, ' ', TOKENIZER_MAX_LINE + 1);
	line[TOKENIZER_MAX_LINE + 1] = '\0';
	dm_err_clear(&e);
	assert_int_equal(tokenizer_split(line, 0, tl, &e), DM_EUSAGE);
	assert_non_null(strstr(e.msg, "line too long"));
	line[TOKENIZER_MAX_LINE] = '\0';
	assert_int_equal(tokenizer_split(line, 0, tl, &e), DM_OK);
	assert_int_equal(tl->argc, 0);

	free(line);
	free(tl);
}

struct argv_case {
	const char *in[6];
	unsigned flags;
	const char *words[8];
	int assign;
};

static const struct argv_case argv_cases[] = {
	{ W("REG", "Email/Port=587"), TOKENIZER_ASSIGN, W("REG", "Email/Port", "=", "587"), 2 },
	{ W("REG", "Email/Port", "=", "587"), TOKENIZER_ASSIGN, W("REG", "Email/Port", "=", "587"), 2 },
	{ W("REG", "Email/Port=", "587"), TOKENIZER_ASSIGN, W("REG", "Email/Port", "=", "587"), 2 },
	{ W("REG", "Email/Port", "=587"), TOKENIZER_ASSIGN, W("REG", "Email/Port", "=", "587"), 2 },
	{ W("REG", "K", "=", "a=b"), TOKENIZER_ASSIGN, W("REG", "K", "=", "a=b"), 2 },
	{ W("REG", "-x", "f"), TOKENIZER_ASSIGN, W("REG", "-x", "f"), -1 },
	{ W("REG", "K=v", "x y"), 0, W("REG", "K=v", "x y"), -1 },
	{ W("A=B"), TOKENIZER_ASSIGN, W("A=B"), -1 },
};

static void test_from_argv(void **state)
{
	(void)state;
	struct tokenizer_line *tl = malloc(sizeof(*tl));
	assert_non_null(tl);
	for (size_t i = 0; i < sizeof(argv_cases) / sizeof(argv_cases[0]); i++) {
		const struct argv_case *c = &argv_cases[i];
		int argc = 0;
		while (c->in[argc])
			argc++;
		print_message("argv case %zu\n", i);
		assert_int_equal(tokenizer_from_argv(argc, (char *const *)c->in,
		                                     c->flags, tl, NULL), DM_OK);
		check_words(tl, c->words);
		assert_int_equal(tl->assign, c->assign);
	}
	/* The word cap applies to argv too. */
	char *many[TOKENIZER_MAX_WORDS + 2];
	for (int i = 0; i < TOKENIZER_MAX_WORDS + 1; i++)
		many[i] = (char *)"w";
	many[TOKENIZER_MAX_WORDS + 1] = NULL;
	struct dm_err e;
	dm_err_clear(&e);
	assert_int_equal(tokenizer_from_argv(TOKENIZER_MAX_WORDS + 1, many, 0, tl, &e),
	                 DM_EUSAGE);
	assert_non_null(strstr(e.msg, "too many words"));
	free(tl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_table),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_from_argv),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
