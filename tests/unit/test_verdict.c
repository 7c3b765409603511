/*
 * test_verdict.c - the retry verdict (mail/verdict.h), table-driven: the
 * failure kind of every status with and without each reply class, every
 * status x reply x phase combination against the four rules, named cases
 * (AUTH 454 / 535 at open and pipelined, 452 4.5.3 at MAIL and elsewhere,
 * 421 anywhere, cancellation), and recipient mixes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mail/verdict.h"

#define NSTATUS (DM_ECANCELED + 1)

/* Rule 1 without a code: one row per status, written out. */
static const enum verdict_kind no_code[NSTATUS] = {
	[DM_OK] = VERDICT_SENT,
	[DM_EINVAL] = VERDICT_PERMANENT,
	[DM_EUSAGE] = VERDICT_PERMANENT,
	[DM_ENOTFOUND] = VERDICT_PERMANENT,
	[DM_ENOINPUT] = VERDICT_PERMANENT,
	[DM_ECONFIG] = VERDICT_PERMANENT,
	[DM_EPERM] = VERDICT_PERMANENT,
	[DM_EIO] = VERDICT_TEMPORARY,
	[DM_ENOMEM] = VERDICT_TEMPORARY,
	[DM_ECRYPTO] = VERDICT_PERMANENT,
	[DM_ENET] = VERDICT_TEMPORARY,
	[DM_ETIMEOUT] = VERDICT_TEMPORARY,
	[DM_ETLS] = VERDICT_PERMANENT,
	[DM_EPROTO] = VERDICT_TEMPORARY,
	[DM_EAUTH] = VERDICT_PERMANENT,
	[DM_ETEMPFAIL] = VERDICT_TEMPORARY,
	[DM_EPERMFAIL] = VERDICT_PERMANENT,
	[DM_EBUSY] = VERDICT_TEMPORARY,
	[DM_ECANCELED] = VERDICT_TEMPORARY,
};

static void test_failure_without_code(void **state)
{
	(void)state;
	for (int s = 0; s < NSTATUS; s++) {
		enum verdict_kind got = verdict_failure((enum dm_status)s, 0);
		if (got != no_code[s])
			fail_msg("%s without a code: %s, want %s",
			         dm_status_str((enum dm_status)s), verdict_kind_str(got),
			         verdict_kind_str(no_code[s]));
	}
}

/* The reply classes: a 4xx or 5xx code decides whatever the status; a
 * code of another class (a confused server) leaves it to the status. */
static const struct {
	int code;
	const char *enhanced;
	int cls;          /* 4, 5, or 0: the status decides */
} replies[] = {
	{ 0, "", 0 },
	{ 250, "2.0.0", 0 },
	{ 354, "", 0 },
	{ 421, "4.3.2", 4 },
	{ 450, "4.2.0", 4 },
	{ 451, "4.3.0", 4 },
	{ 452, "4.5.3", 4 },
	{ 452, "4.2.2", 4 },
	{ 454, "4.7.0", 4 },
	{ 534, "5.7.9", 5 },
	{ 535, "5.7.8", 5 },
	{ 550, "5.1.1", 5 },
	{ 552, "5.3.4", 5 },
	{ 554, "5.6.0", 5 },
};
#define NREPLIES (sizeof(replies) / sizeof(replies[0]))

static const enum verdict_phase phases[] = {
	VERDICT_SESSION, VERDICT_MAIL, VERDICT_MESSAGE,
};
static const char *const phase_names[] = { "session", "MAIL", "message" };

static void test_failure_by_code(void **state)
{
	(void)state;
	for (int s = 1; s < NSTATUS; s++)
		for (size_t r = 0; r < NREPLIES; r++) {
			enum verdict_kind want = replies[r].cls == 4 ? VERDICT_TEMPORARY
			                       : replies[r].cls == 5 ? VERDICT_PERMANENT
			                       : no_code[s];
			enum verdict_kind got = verdict_failure((enum dm_status)s,
			                                        replies[r].code);
			if (got != want)
				fail_msg("%s with %d: %s, want %s",
				         dm_status_str((enum dm_status)s), replies[r].code,
				         verdict_kind_str(got), verdict_kind_str(want));
		}
	/* DM_OK is never a failure, whatever code came with it. */
	for (size_t r = 0; r < NREPLIES; r++)
		assert_int_equal(verdict_failure(DM_OK, replies[r].code), VERDICT_SENT);
}

/* Every status x reply x phase, without recipient detail, against the
 * rules as docs/outbox.md states them. */
static void test_every_combination(void **state)
{
	(void)state;
	size_t checked = 0, session_ends = 0, kept = 0;
	for (int s = 0; s < NSTATUS; s++)
		for (size_t r = 0; r < NREPLIES; r++)
			for (size_t p = 0; p < 3; p++) {
				struct verdict_input in = {
					.status = (enum dm_status)s, .phase = phases[p],
					.code = replies[r].code, .enhanced = replies[r].enhanced,
				};
				struct verdict v;
				verdict_decide(&in, &v, NULL);
				checked++;
				const char *what = dm_status_str(in.status);
				if (s == DM_OK) {
					if (v.message != VERDICT_SENT || v.failure != VERDICT_SENT ||
					    v.session || v.session_end || v.nretry)
						fail_msg("accepted (%d, %s) is not plainly sent",
						         in.code, phase_names[p]);
					continue;
				}
				enum verdict_kind failure = verdict_failure(in.status, in.code);
				bool session = phases[p] == VERDICT_SESSION ||
				               s == DM_EAUTH || s == DM_ECANCELED;
				bool end = in.code == 421 ||
				           (in.code == 452 && phases[p] == VERDICT_MAIL &&
				            !strcmp(in.enhanced, "4.5.3"));
				enum verdict_kind message = session || end
				                            ? VERDICT_TEMPORARY : failure;
				if (v.failure != failure || v.session != session ||
				    v.session_end != end || v.message != message ||
				    v.nretry != 0)
					fail_msg("%s, %d %s, phase %s: message %s failure %s "
					         "session %d end %d; want %s %s %d %d", what,
					         in.code, in.enhanced, phase_names[p],
					         verdict_kind_str(v.message),
					         verdict_kind_str(v.failure), v.session,
					         v.session_end, verdict_kind_str(message),
					         verdict_kind_str(failure), session, end);
				session_ends += v.session_end;
				kept += v.message == VERDICT_TEMPORARY;
			}
	assert_int_equal(checked, (size_t)NSTATUS * NREPLIES * 3);
	assert_true(session_ends > 0);
	assert_true(kept > 0 && kept < checked);
}

/* Named cases: the ones the outbox and the exit statuses rely on. */
static void test_named_cases(void **state)
{
	static const struct {
		const char *name;
		enum dm_status status;
		enum verdict_phase phase;
		int code;
		const char *enh;
		enum verdict_kind message, failure;
		bool session, end;
	} rows[] = {
		{ "AUTH 454 at open", DM_EAUTH, VERDICT_SESSION, 454, "4.7.0",
		  VERDICT_TEMPORARY, VERDICT_TEMPORARY, true, false },
		{ "AUTH 535 at open", DM_EAUTH, VERDICT_SESSION, 535, "5.7.8",
		  VERDICT_TEMPORARY, VERDICT_PERMANENT, true, false },
		{ "AUTH 535 pipelined with MAIL", DM_EAUTH, VERDICT_MAIL, 535, "5.7.8",
		  VERDICT_TEMPORARY, VERDICT_PERMANENT, true, false },
		{ "AUTH 454 pipelined", DM_EAUTH, VERDICT_MESSAGE, 454, "4.7.0",
		  VERDICT_TEMPORARY, VERDICT_TEMPORARY, true, false },
		{ "AUTH not offered", DM_EAUTH, VERDICT_SESSION, 0, "",
		  VERDICT_TEMPORARY, VERDICT_PERMANENT, true, false },
		{ "certificate refused", DM_ETLS, VERDICT_SESSION, 0, "",
		  VERDICT_TEMPORARY, VERDICT_PERMANENT, true, false },
		{ "server down", DM_ENET, VERDICT_SESSION, 0, "",
		  VERDICT_TEMPORARY, VERDICT_TEMPORARY, true, false },
		{ "greeting 554", DM_EPERMFAIL, VERDICT_SESSION, 554, "",
		  VERDICT_TEMPORARY, VERDICT_PERMANENT, true, false },
		{ "greeting 421", DM_ETEMPFAIL, VERDICT_SESSION, 421, "4.3.2",
		  VERDICT_TEMPORARY, VERDICT_TEMPORARY, true, true },
		{ "cancelled mid-message", DM_ECANCELED, VERDICT_MESSAGE, 0, "",
		  VERDICT_TEMPORARY, VERDICT_TEMPORARY, true, false },
		{ "452 4.5.3 at MAIL", DM_ETEMPFAIL, VERDICT_MAIL, 452, "4.5.3",
		  VERDICT_TEMPORARY, VERDICT_TEMPORARY, false, true },
		{ "452 4.5.3 after MAIL", DM_ETEMPFAIL, VERDICT_MESSAGE, 452, "4.5.3",
		  VERDICT_TEMPORARY, VERDICT_TEMPORARY, false, false },
		{ "452 4.3.1 at MAIL", DM_ETEMPFAIL, VERDICT_MAIL, 452, "4.3.1",
		  VERDICT_TEMPORARY, VERDICT_TEMPORARY, false, false },
		{ "421 at the dot", DM_ETEMPFAIL, VERDICT_MESSAGE, 421, "4.4.2",
		  VERDICT_TEMPORARY, VERDICT_TEMPORARY, false, true },
		{ "421 before its turn", DM_ETEMPFAIL, VERDICT_SESSION, 421, "",
		  VERDICT_TEMPORARY, VERDICT_TEMPORARY, true, true },
		{ "550 at MAIL", DM_EPERMFAIL, VERDICT_MAIL, 550, "5.1.8",
		  VERDICT_PERMANENT, VERDICT_PERMANENT, false, false },
		{ "451 at the dot", DM_ETEMPFAIL, VERDICT_MESSAGE, 451, "4.3.0",
		  VERDICT_TEMPORARY, VERDICT_TEMPORARY, false, false },
		{ "554 at the dot", DM_EPERMFAIL, VERDICT_MESSAGE, 554, "5.6.0",
		  VERDICT_PERMANENT, VERDICT_PERMANENT, false, false },
		{ "drop after the dot", DM_ENET, VERDICT_MESSAGE, 0, "",
		  VERDICT_TEMPORARY, VERDICT_TEMPORARY, false, false },
		{ "SIZE exceeded", DM_EPERMFAIL, VERDICT_MESSAGE, 0, "",
		  VERDICT_PERMANENT, VERDICT_PERMANENT, false, false },
		{ "CR in an address", DM_EINVAL, VERDICT_MESSAGE, 0, "",
		  VERDICT_PERMANENT, VERDICT_PERMANENT, false, false },
		{ "spool read error", DM_EIO, VERDICT_MESSAGE, 0, "",
		  VERDICT_TEMPORARY, VERDICT_TEMPORARY, false, false },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct verdict_input in = { rows[i].status, rows[i].phase,
		                            rows[i].code, rows[i].enh, NULL, 0 };
		struct verdict v;
		verdict_decide(&in, &v, NULL);
		if (v.message != rows[i].message || v.failure != rows[i].failure ||
		    v.session != rows[i].session || v.session_end != rows[i].end)
			fail_msg("%s: message %s failure %s session %d end %d",
			         rows[i].name, verdict_kind_str(v.message),
			         verdict_kind_str(v.failure), v.session, v.session_end);
	}
	/* NULL enhanced code is "none" */
	struct verdict_input in = { DM_ETEMPFAIL, VERDICT_MAIL, 452, NULL, NULL, 0 };
	struct verdict v;
	verdict_decide(&in, &v, NULL);
	assert_false(v.session_end);
}

static void test_rcpt_kinds(void **state)
{
	(void)state;
	for (int code = 0; code < 600; code++) {
		enum verdict_kind want = code >= 200 && code < 300 ? VERDICT_SENT
		                       : code >= 500 ? VERDICT_PERMANENT
		                       : VERDICT_TEMPORARY;
		assert_int_equal(verdict_rcpt(code), want);
	}
}

/* Recipient mixes: what becomes of the message and who stays queued. */
static void test_recipient_mixes(void **state)
{
	static const struct {
		const char *name;
		enum dm_status status;
		enum verdict_phase phase;
		int code;
		int rcpt[4];
		size_t n;
		enum verdict_kind message;
		const char *marks;    /* retry[] as '0'/'1', "" when nretry == 0 */
	} rows[] = {
		{ "all accepted", DM_OK, VERDICT_MESSAGE, 250, { 250, 251 }, 2,
		  VERDICT_SENT, "" },
		{ "accepted, one 450", DM_OK, VERDICT_MESSAGE, 250, { 250, 450, 250 }, 3,
		  VERDICT_SENT, "010" },
		{ "accepted, one 550 (dropped)", DM_OK, VERDICT_MESSAGE, 250,
		  { 250, 550 }, 2, VERDICT_SENT, "" },
		{ "accepted, 450 and 550", DM_OK, VERDICT_MESSAGE, 250,
		  { 550, 250, 450 }, 3, VERDICT_SENT, "001" },
		{ "all 4xx", DM_ETEMPFAIL, VERDICT_MESSAGE, 450, { 450, 451 }, 2,
		  VERDICT_TEMPORARY, "" },
		{ "all refused, last 550", DM_ETEMPFAIL, VERDICT_MESSAGE, 550,
		  { 450, 550 }, 2, VERDICT_TEMPORARY, "10" },
		{ "all refused, last 450", DM_ETEMPFAIL, VERDICT_MESSAGE, 450,
		  { 550, 550, 450 }, 3, VERDICT_TEMPORARY, "001" },
		{ "all 5xx", DM_EPERMFAIL, VERDICT_MESSAGE, 550, { 550, 553 }, 2,
		  VERDICT_PERMANENT, "" },
		{ "451 at the dot, one 550 dropped", DM_ETEMPFAIL, VERDICT_MESSAGE, 451,
		  { 250, 550, 250 }, 3, VERDICT_TEMPORARY, "101" },
		{ "554 at the dot, one 450", DM_EPERMFAIL, VERDICT_MESSAGE, 554,
		  { 250, 450 }, 2, VERDICT_PERMANENT, "" },
		{ "drop during RCPT", DM_ENET, VERDICT_MESSAGE, 0, { 250, 0 }, 2,
		  VERDICT_TEMPORARY, "" },
		{ "session failure ignores recipients", DM_EAUTH, VERDICT_MESSAGE, 535,
		  { 0, 0 }, 2, VERDICT_TEMPORARY, "" },
		{ "421 during RCPT", DM_ETEMPFAIL, VERDICT_MESSAGE, 421, { 550, 0 }, 2,
		  VERDICT_TEMPORARY, "" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct verdict_input in = { rows[i].status, rows[i].phase,
		                            rows[i].code, "", rows[i].rcpt, rows[i].n };
		unsigned char retry[4];
		struct verdict v;
		memset(retry, 0xaa, sizeof(retry));
		verdict_decide(&in, &v, retry);
		char marks[8] = "";
		if (v.nretry)
			for (size_t k = 0; k < rows[i].n; k++)
				marks[k] = retry[k] ? '1' : '0';
		for (size_t k = 0; !v.nretry && k < rows[i].n; k++)
			if (retry[k])
				fail_msg("%s: recipient %zu marked without a subset",
				         rows[i].name, k);
		if (v.message != rows[i].message || strcmp(marks, rows[i].marks))
			fail_msg("%s: message %s marks '%s', want %s '%s'", rows[i].name,
			         verdict_kind_str(v.message), marks,
			         verdict_kind_str(rows[i].message), rows[i].marks);
		size_t n = 0;
		for (size_t k = 0; k < rows[i].n; k++)
			n += retry[k];
		assert_int_equal(n, v.nretry);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failure_without_code),
		cmocka_unit_test(test_failure_by_code),
		cmocka_unit_test(test_every_combination),
		cmocka_unit_test(test_named_cases),
		cmocka_unit_test(test_rcpt_kinds),
		cmocka_unit_test(test_recipient_mixes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
