/*
 * test_readme_keys.c - the key table in README.md (between the
 * keys:begin/keys:end markers) lists exactly the schema keys, in order, with
 * their types, defaults and summaries.  Regenerate it with
 * `regtool --readme-table`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/schema.h"
#include "testroot.h"

#define CELLS 4

/* README.md of the source tree, malloc'd. */
static char *load_readme(void)
{
	const char *src = getenv("DEVMAIL_SOURCE_DIR");
	char path[1024];

	assert_non_null(src);
	snprintf(path, sizeof(path), "%s/README.md", src);
	char *buf = testroot_slurp(path, NULL);
	assert_non_null(buf);
	return buf;
}

/* Splits "| a | b | c | d |" into trimmed cells; returns the count. */
static int split_row(char *line, char *cells[CELLS + 1])
{
	int n = 0;
	char *p = line;

	if (*p != '|')
		return -1;
	p++;
	while (*p && n <= CELLS) {
		char *bar = strchr(p, '|');
		if (!bar)
			return -1;    /* row not closed */
		*bar = '\0';
		while (*p == ' ')
			p++;
		char *e = bar;
		while (e > p && e[-1] == ' ')
			*--e = '\0';
		cells[n++] = p;
		p = bar + 1;
	}
	return *p == '\0' ? n : -1;
}

static void test_readme_table_matches_schema(void **state)
{
	char *text = load_readme();
	char *begin = strstr(text, "<!-- keys:begin -->\n");
	char *end = strstr(text, "<!-- keys:end -->");
	size_t nkeys, row = 0;
	const struct schema_key *keys = schema_keys(&nkeys);

	(void)state;
	assert_non_null(begin);
	assert_non_null(end);
	assert_true(begin < end);
	*end = '\0';
	char *line = begin + strlen("<!-- keys:begin -->\n");
	for (char *next; line && *line; line = next) {
		char *cells[CELLS + 1], type[160];
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (*line == '\0')
			continue;
		if (split_row(line, cells) != CELLS)
			fail_msg("README key table: malformed row '%s'", line);
		if (row == 0) {
			assert_string_equal(cells[0], "key");
			assert_string_equal(cells[1], "type");
			assert_string_equal(cells[2], "default");
			assert_string_equal(cells[3], "meaning");
		} else if (row == 1) {
			for (int i = 0; i < CELLS; i++)
				assert_string_equal(cells[i], "---");
		} else {
			size_t i = row - 2;
			if (i >= nkeys)
				fail_msg("README lists '%s', not in the schema", cells[0]);
			if (strcmp(cells[0], keys[i].name) != 0)
				fail_msg("README row %zu is '%s', schema says '%s' (regenerate "
				         "with regtool --readme-table)", i + 1, cells[0], keys[i].name);
			assert_string_equal(cells[1], schema_type_str(&keys[i], type, sizeof(type)));
			assert_string_equal(cells[2], schema_default_display(&keys[i]));
			assert_string_equal(cells[3], keys[i].summary);
		}
		row++;
	}
	if (row != nkeys + 2)
		fail_msg("README lists %zu keys, the schema has %zu",
		         row >= 2 ? row - 2 : 0, nkeys);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_readme_table_matches_schema),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
