/*
 * test_dialogue.c - mail/dialogue: which lines of a session belong to
 * which failed message (the engine's "message N not sent" and "error:"
 * notes), as the delivery path stores them with outbox_dialogue_save().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mail/dialogue.h"
#include "mail/outbox.h"

/* ---- dialogue attribution ----------------------------------------------------- */

static void feed(struct dialogue *d, const char *const *lines, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *l = lines[i];
		enum smtp_dir dir = l[0] == '>' ? SMTP_DIR_CLIENT :
		                    l[0] == '<' ? SMTP_DIR_SERVER : SMTP_DIR_INFO;
		dialogue_line(d, dir, l + 2);
	}
}

static bool has_line(const char **got, size_t n, const char *want)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(got[i], want) == 0)
			return true;
	return false;
}

static void test_dialogue_attribution(void **state)
{
	struct dialogue *d = dialogue_new();
	const char *got[DIALOGUE_SNAP_LINES];
	(void)state;

	assert_non_null(d);
	static const char *const run[] = {
		"< 220 mx ESMTP",
		"> EHLO unit",
		"< 250 mx",
		"> MAIL FROM:<a@x>",
		"< 250 ok",
		"> RCPT TO:<nobody@x>",
		"< 550 5.1.1 No such user",
		"- message 1 not sent: recipient refused",
		"> RSET",
		"< 250 ok",
		"> MAIL FROM:<a@x>",
		"< 250 ok",
		"> RCPT TO:<ok@x>",
		"< 250 ok",
		"- message 2 accepted",
		"> MAIL FROM:<a@x>",
		"> RCPT TO:<big@x>",
		"< 552 5.3.4 too big",
		"- message 3 not sent: message too big",
	};
	feed(d, run, sizeof(run) / sizeof(run[0]));
	/* In report order: message 1, then message 3. */
	size_t n = dialogue_for_failure(d, "recipient refused", got,
	                                DIALOGUE_SNAP_LINES);
	assert_true(n >= 3);
	assert_string_equal(got[n - 1], "--- message 1 not sent: recipient refused");
	assert_true(has_line(got, n, "<<< 550 5.1.1 No such user"));
	assert_false(has_line(got, n, "<<< 552 5.3.4 too big"));
	n = dialogue_for_failure(d, "message too big", got, DIALOGUE_SNAP_LINES);
	assert_string_equal(got[n - 1], "--- message 3 not sent: message too big");
	assert_true(has_line(got, n, "<<< 552 5.3.4 too big"));
	/* The same diagnosis twice is handed out in order, once each. */
	dialogue_reset(d);
	static const char *const twice[] = {
		"> RCPT TO:<one@x>", "< 550 no one",
		"- message 1 not sent: recipient refused",
		"> RCPT TO:<two@x>", "< 550 no two",
		"- message 2 not sent: recipient refused",
	};
	feed(d, twice, 6);
	n = dialogue_for_failure(d, "recipient refused", got, 4);
	assert_true(has_line(got, n, "<<< 550 no one"));
	assert_false(has_line(got, n, "<<< 550 no two"));
	n = dialogue_for_failure(d, "recipient refused", got, 4);
	assert_true(has_line(got, n, "<<< 550 no two"));
	/* max limits to the last lines. */
	assert_int_equal(n, 4);
	assert_string_equal(got[3], "--- message 2 not sent: recipient refused");

	/* A session failure: every message (expired ones) gets its lines. */
	dialogue_reset(d);
	static const char *const sess[] = {
		"- connecting to 127.0.0.1:25",
		"- error: connect to 127.0.0.1:25: Connection refused",
	};
	feed(d, sess, 2);
	for (int k = 0; k < 2; k++) {
		n = dialogue_for_failure(d, "something else", got, DIALOGUE_SNAP_LINES);
		assert_int_equal(n, 2);
		assert_string_equal(got[1], "--- error: connect to 127.0.0.1:25: "
		                    "Connection refused");
	}

	/* No note at all: the tail of the run; nothing at all: no lines. */
	dialogue_reset(d);
	assert_int_equal(dialogue_for_failure(d, "x", got, DIALOGUE_SNAP_LINES), 0);
	for (int i = 0; i < 100; i++) {
		char l[32];
		snprintf(l, sizeof(l), "< 250 line %d", i);
		feed(d, (const char *const[]){ l }, 1);
	}
	n = dialogue_for_failure(d, "x", got, DIALOGUE_SNAP_LINES);
	assert_int_equal(n, DIALOGUE_SNAP_LINES);
	assert_string_equal(got[n - 1], "<<< 250 line 99");
	assert_string_equal(got[0], "<<< 250 line 84");

	/* A very long line is cut to what the outbox keeps. */
	char *big = malloc(5000);
	assert_non_null(big);
	memset(big, 'y', 4999);
	big[4999] = '\0';
	dialogue_line(d, SMTP_DIR_SERVER, big);
	n = dialogue_for_failure(d, "x", got, 1);
	assert_int_equal(strlen(got[0]), OUTBOX_DIALOGUE_LINE_MAX - 1);
	free(big);

	/* More notes than snapshots: no crash, later ones use the tail. */
	dialogue_reset(d);
	for (int i = 0; i < DIALOGUE_SNAPS + 20; i++)
		feed(d, (const char *const[]){ "- message 1 not sent: r" }, 1);
	for (int i = 0; i < DIALOGUE_SNAPS + 20; i++)
		assert_true(dialogue_for_failure(d, "r", got, DIALOGUE_SNAP_LINES) > 0);
	dialogue_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dialogue_attribution),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
