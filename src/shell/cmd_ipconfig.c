/* cmd_ipconfig.c - IPCONFIG: the network as the unit sees it and the mail
 * account; -E sets the account up on the terminal, the long options do it
 * from a script.  Showing is account_view() (nothing unsealed), saving is
 * account_save() (one transaction, password sealed); this file only asks,
 * shows and reports, through the shell's io: the io decides how a secret
 * is read without echo and what an interrupt is. */
#include "shell/shell.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include "core/netinfo.h"
#include "core/schema.h"
#include "core/vault.h"
#include "mail/account.h"

#define IPC_ANSWER_MAX 1024     /* one typed answer */
#define IPC_PASSWORD_MAX 2048   /* sealed form must fit a registry value */
#define IPC_TRIES 3             /* bad answers / mismatches before giving up */

/* Options that have no short form get a "letter" no one can type as one:
 * UTF-8 continuation bytes (0x80-0x9f here, 0xa0-0xbf after the parser's
 * case folding) never directly follow the ASCII '-' in valid text. */
#define IPC_LONG_ONLY(n) ((char)(0x80 + (n)))

enum {
	IPC_OPT_EMAIL, IPC_OPT_MAILHOST, IPC_OPT_PORT, IPC_OPT_SMTPS,
	IPC_OPT_STARTTLS, IPC_OPT_REQTLS, IPC_OPT_FROM, IPC_OPT_TO,
	IPC_OPT_USERNAME, IPC_OPT_MECH, IPC_OPT_PWSTDIN, IPC_OPT_TOKSTDIN,
	IPC_OPT_CLEARPW, IPC_OPT_CLEARTOK,
};

static const struct shell_opt ipc_opts[] = {
	[IPC_OPT_EMAIL]    = { 'e', "email", NULL },
	[IPC_OPT_MAILHOST] = { IPC_LONG_ONLY(0), "mailhost", "HOST" },
	[IPC_OPT_PORT]     = { IPC_LONG_ONLY(1), "port", "N" },
	[IPC_OPT_SMTPS]    = { IPC_LONG_ONLY(2), "smtps", "on|off" },
	[IPC_OPT_STARTTLS] = { IPC_LONG_ONLY(3), "starttls", "on|off" },
	[IPC_OPT_REQTLS]   = { IPC_LONG_ONLY(4), "require-tls", "on|off" },
	[IPC_OPT_FROM]     = { IPC_LONG_ONLY(5), "from", "ADDR" },
	[IPC_OPT_TO]       = { IPC_LONG_ONLY(6), "to", "ADDR[,ADDR]" },
	[IPC_OPT_USERNAME] = { IPC_LONG_ONLY(7), "username", "USER" },
	[IPC_OPT_MECH]     = { IPC_LONG_ONLY(8), "mechanism", "MECH" },
	[IPC_OPT_PWSTDIN]  = { IPC_LONG_ONLY(9), "password-stdin", NULL },
	[IPC_OPT_TOKSTDIN] = { IPC_LONG_ONLY(10), "oauth-token-stdin", NULL },
	[IPC_OPT_CLEARPW]  = { IPC_LONG_ONLY(11), "clear-password", NULL },
	[IPC_OPT_CLEARTOK] = { IPC_LONG_ONLY(12), "clear-oauth-token", NULL },
	{ 0, NULL, NULL },
};

/* ---- the display ------------------------------------------------------- */

/* The email section (also the summary after a change). */
static void ipc_print_email(struct shell *sh, const struct account_view *v)
{
	shell_out(sh, "Email:\n");
	shell_out(sh, "  MailHost:   %s\n", v->host[0] ? v->host :
	          "not set (IPCONFIG -E sets it)");
	shell_out(sh, "  Port:       %u\n", v->port);
	shell_out(sh, "  Security:   %s, RequireTLS %s\n",
	          account_view_security(v), v->require_tls ? "on" : "off");
	shell_out(sh, "  From:       %s\n", v->from[0] ? v->from : "not set");
	shell_out(sh, "  To:         %s\n", v->to[0] ? v->to : "not set");
	shell_out(sh, "  Username:   %s\n", v->username[0] ? v->username :
	          "not set (no AUTH)");
	/* Only whether it is set: the view never holds the sealed value. */
	shell_out(sh, "  Password:   %s\n", v->password_set ? "set (sealed)" :
	          "not set");
	if (v->oauth_token_set)
		shell_out(sh, "  OAuth token: set (sealed; XOAUTH2)\n");
}

/* The account view on the heap (it is large); NULL after printing why. */
static struct account_view *ipc_view(struct shell *sh, struct registry *reg,
                                     int *rc)
{
	struct account_view *v = malloc(sizeof(*v));
	struct dm_err e;
	enum dm_status st;

	if (!v) {
		*rc = shell_error(sh, EX_OSERR, "out of memory");
		return NULL;
	}
	dm_err_clear(&e);
	if ((st = account_view(reg, v, &e))) {
		free(v);
		*rc = shell_fail(sh, st, &e);
		return NULL;
	}
	return v;
}

static int ipc_show(struct shell *sh, struct registry *reg)
{
	struct account_view *v;
	struct netinfo *ni;
	struct dm_err e;
	enum dm_status st;
	int rc = EX_OK;

	if (!(v = ipc_view(sh, reg, &rc)))
		return rc;
	if (!(ni = calloc(1, sizeof(*ni)))) {
		free(v);
		return shell_error(sh, EX_OSERR, "out of memory");
	}
	dm_err_clear(&e);
	if ((st = netinfo_read(ni, NULL, &e))) {
		free(ni);
		free(v);
		return shell_fail(sh, st, &e);
	}
	shell_out(sh, "Host name:  %s\n", v->helo[0] ? v->helo : ni->hostname);
	if (strcmp(v->helo, ni->hostname) != 0 && ni->hostname[0])
		shell_out(sh, "            (system host name %s)\n", ni->hostname);
	shell_out(sh, "Interfaces:\n");
	if (ni->n_addrs == 0)
		shell_out(sh, "  none\n");
	for (size_t i = 0; i < ni->n_addrs; i++) {
		const struct netinfo_addr *a = &ni->addrs[i];
		shell_out(sh, "  %-10s %s %s/%u%s\n", a->ifname, a->ipv6 ? "IPv6" : "IPv4",
		          a->addr, a->prefix, a->up ? "" : "  (down)");
	}
	shell_out(sh, "Default gateway:");
	if (ni->n_gateways == 0)
		shell_out(sh, " none");
	for (size_t i = 0; i < ni->n_gateways; i++)
		shell_out(sh, "%s %s", i ? "," : "", ni->gateways[i]);
	shell_out(sh, "\nDNS servers:");
	if (ni->n_dns == 0)
		shell_out(sh, " none");
	for (size_t i = 0; i < ni->n_dns; i++)
		shell_out(sh, "%s %s", i ? "," : "", ni->dns[i]);
	shell_out(sh, "\nClock:      %s\n\n",
	          ni->clock_synced > 0 ? "synchronised (NTP)" :
	          ni->clock_synced == 0 ? "not synchronised (no NTP)" : "unknown");
	free(ni);
	ipc_print_email(sh, v);
	free(v);
	return EX_OK;
}

/* ---- reading secrets ------------------------------------------------------ */

/* The exit for a read that did not give a line: 0 for SHELL_READ_OK. */
static int ipc_read_failed(struct shell *sh, enum shell_read r)
{
	if (r == SHELL_READ_INTR)
		return shell_error(sh, 130, "interrupted; nothing changed");
	if (r == SHELL_READ_EOF)
		return shell_error(sh, EX_NOINPUT, "input ended; nothing changed");
	return 0;
}

/* Reads a secret for --password-stdin / --oauth-token-stdin: one line of
 * the shell's input, not echoed; a person at a terminal is prompted on the
 * error stream (the output may be a file), a pipe is not.  `opt` names the
 * option in messages. */
static int ipc_secret_stdin(struct shell *sh, const char *opt,
                            const char *prompt, char *buf, size_t cap,
                            size_t *len)
{
	enum shell_read r = shell_read_secret(sh, SHELL_ERR,
	                                      shell_interactive(sh) ? prompt : NULL,
	                                      buf, cap);
	switch (r) {
	case SHELL_READ_OK:
		break;
	case SHELL_READ_EOF:
		return shell_error(sh, EX_DATAERR, "%s: nothing on standard input; "
		                   "nothing changed", opt);
	case SHELL_READ_INTR:
		return ipc_read_failed(sh, r);
	case SHELL_READ_LONG:
		return shell_error(sh, EX_DATAERR, "%s: the secret is too long "
		                   "(limit %zu bytes); nothing changed", opt,
		                   cap - 1);
	}
	*len = strlen(buf);
	if (*len == 0)
		return shell_error(sh, EX_DATAERR, "%s: the line is empty; nothing "
		                   "changed", opt);
	return 0;
}

/* ---- saving -------------------------------------------------------------- */

/* Logs the change (never the password) and prints the summary. */
static void ipc_report(struct shell *sh, struct registry *reg,
                       const struct account_update *u)
{
	bool pw_changed = u->password != NULL || u->clear_password;
	bool tok_changed = u->oauth_token != NULL || u->clear_oauth_token;
	struct account_view *v;
	int rc = 0;

	if (!(v = ipc_view(sh, reg, &rc)))
		return;
	shell_log(sh, "email account updated: MailHost=%s, Port=%u, SMTPS=%s, "
	          "RequireTLS=%s, password %s%s", v->host[0] ? v->host : "(not set)",
	          v->port, v->smtps ? "on" : "off", v->require_tls ? "on" : "off",
	          pw_changed ? (u->password ? "changed" : "cleared") : "unchanged",
	          tok_changed ? (u->oauth_token ? ", OAuth token changed" :
	                         ", OAuth token cleared") : "");
	shell_out(sh, "Email account saved%s%s.\n",
	          u->password ? " (password sealed)" : "",
	          u->oauth_token ? " (OAuth token sealed)" : "");
	ipc_print_email(sh, v);
	free(v);
}

static int ipc_save(struct shell *sh, struct registry *reg,
                    const struct account_update *u)
{
	struct dm_err e;
	enum dm_status st;

	/* A Ctrl-C that came after the last answer still stops the save. */
	if (shell_interrupted(sh))
		return ipc_read_failed(sh, SHELL_READ_INTR);
	dm_err_clear(&e);
	if ((st = account_save(reg, shell_root(sh), u, &e)))
		return shell_error(sh, dm_status_exit(st), "%s; nothing changed",
		                   e.msg[0] ? e.msg : dm_status_str(st));
	ipc_report(sh, reg, u);
	return EX_OK;
}

static int ipc_script(struct shell *sh, struct registry *reg,
                      const struct shell_opts *o)
{
	struct account_update u = {
		.mailhost = o->value[IPC_OPT_MAILHOST],
		.port = o->value[IPC_OPT_PORT],
		.smtps = o->value[IPC_OPT_SMTPS],
		.starttls = o->value[IPC_OPT_STARTTLS],
		.require_tls = o->value[IPC_OPT_REQTLS],
		.from = o->value[IPC_OPT_FROM],
		.to = o->value[IPC_OPT_TO],
		.username = o->value[IPC_OPT_USERNAME],
		.mechanism = o->value[IPC_OPT_MECH],
	};
	char pw[IPC_PASSWORD_MAX];
	size_t len = 0;
	int rc;

	u.clear_password = o->seen[IPC_OPT_CLEARPW];
	u.clear_oauth_token = o->seen[IPC_OPT_CLEARTOK];
	/* Standard input carries one secret per call. */
	if (o->seen[IPC_OPT_PWSTDIN] && o->seen[IPC_OPT_TOKSTDIN])
		return shell_error(sh, EX_USAGE, "give --password-stdin or "
		                   "--oauth-token-stdin, one per call");
	if ((o->seen[IPC_OPT_PWSTDIN] && u.clear_password) ||
	    (o->seen[IPC_OPT_TOKSTDIN] && u.clear_oauth_token))
		return shell_error(sh, EX_USAGE, "a secret cannot be set and "
		                   "cleared at once");
	if (o->seen[IPC_OPT_PWSTDIN] || o->seen[IPC_OPT_TOKSTDIN]) {
		bool tok = o->seen[IPC_OPT_TOKSTDIN];
		if ((rc = ipc_secret_stdin(sh, tok ? "--oauth-token-stdin" :
		                           "--password-stdin", tok ? "OAuth token: " :
		                           "Password: ", pw, sizeof(pw), &len))) {
			vault_wipe(pw, sizeof(pw));
			return rc;
		}
		if (tok) {
			u.oauth_token = pw;
			u.oauth_token_len = len;
		} else {
			u.password = pw;
			u.password_len = len;
		}
	}
	rc = ipc_save(sh, reg, &u);
	vault_wipe(pw, sizeof(pw));
	return rc;
}

/* ---- IPCONFIG -E --------------------------------------------------------- */

struct ipc_setup {
	struct shell *sh;
	struct account_view cur;   /* the account before the setup */
	char prompt[REG_VALUE_MAX + 256];
	char host[IPC_ANSWER_MAX], port[16], from[IPC_ANSWER_MAX],
	     to[IPC_ANSWER_MAX], user[IPC_ANSWER_MAX];
	bool smtps;
	char pw[IPC_PASSWORD_MAX], pw2[IPC_PASSWORD_MAX];
};

/* Asks for `key` showing `cur` as the default.  An empty answer keeps it;
 * "-" clears an optional key (out = "").  The answer is validated by the
 * schema and stored canonical in out[cap]; a bad one is asked again. */
static int ipc_ask(struct ipc_setup *s, const char *label, const char *key,
                   const char *cur, bool required, char *out, size_t cap)
{
	const struct schema_key *k = schema_find(key);
	char answer[IPC_ANSWER_MAX];

	for (int t = 0; t < IPC_TRIES; t++) {
		struct dm_err e;
		enum shell_read r;

		if (cur[0])
			snprintf(s->prompt, sizeof(s->prompt), "%s [%s]: ", label, cur);
		else
			snprintf(s->prompt, sizeof(s->prompt), "%s%s: ", label,
			         required ? "" : " [not set]");
		r = shell_read_line(s->sh, SHELL_OUT, s->prompt, answer, sizeof(answer));
		if (r == SHELL_READ_LONG) {
			shell_out(s->sh, "  too long (limit %zu bytes); try again\n",
			          sizeof(answer) - 1);
			continue;
		}
		if (r != SHELL_READ_OK)
			return ipc_read_failed(s->sh, r);
		const char *a = answer;
		while (*a == ' ' || *a == '\t')
			a++;
		if (!*a) {
			if (!cur[0] && required) {
				shell_out(s->sh, "  %s is needed; try again\n", key);
				continue;
			}
			snprintf(out, cap, "%s", cur);
			return 0;
		}
		if (strcmp(a, "-") == 0 && !required) {
			out[0] = '\0';
			return 0;
		}
		dm_err_clear(&e);
		if (schema_validate(k, a, out, cap, &e) == DM_OK)
			return 0;
		shell_out(s->sh, "  %s; try again\n", e.msg);
	}
	return shell_error(s->sh, EX_DATAERR, "%s: no valid answer after %d tries; "
	                   "nothing changed", key, IPC_TRIES);
}

/* A yes/no question; `def` on Enter. */
static int ipc_yes_no(struct ipc_setup *s, const char *question, bool def,
                      bool *out)
{
	char answer[64];

	snprintf(s->prompt, sizeof(s->prompt), "%s [%s]: ", question,
	         def ? "Y/n" : "y/N");
	for (int t = 0; t < IPC_TRIES; t++) {
		enum shell_read r = shell_read_line(s->sh, SHELL_OUT, s->prompt,
		                                    answer, sizeof(answer));
		if (r == SHELL_READ_LONG)
			continue;
		if (r != SHELL_READ_OK)
			return ipc_read_failed(s->sh, r);
		if (!answer[0]) {
			*out = def;
			return 0;
		}
		if (strcasecmp(answer, "y") == 0 || strcasecmp(answer, "n") == 0) {
			*out = (answer[0] | 0x20) == 'y';
			return 0;
		}
		if (schema_parse_bool(answer, out))
			return 0;
		shell_out(s->sh, "  please answer y or n\n");
	}
	return shell_error(s->sh, EX_DATAERR, "no valid answer after %d tries; "
	                   "nothing changed", IPC_TRIES);
}

/* Password twice, not echoed.  Enter keeps the current one (*changed
 * false); a mismatch asks again, IPC_TRIES times at most. */
static int ipc_ask_password(struct ipc_setup *s, bool have, bool *changed)
{
	*changed = false;
	for (int t = 0; t < IPC_TRIES; t++) {
		enum shell_read r;
		r = shell_read_secret(s->sh, SHELL_OUT, have ? "Password (not shown; "
		                      "Enter keeps the current one): " : "Password "
		                      "(not shown; Enter for none): ", s->pw,
		                      sizeof(s->pw));
		if (r == SHELL_READ_LONG) {
			shell_out(s->sh, "  too long (limit %zu bytes); try again\n",
			          sizeof(s->pw) - 1);
			continue;
		}
		if (r != SHELL_READ_OK)
			return ipc_read_failed(s->sh, r);
		if (!s->pw[0])
			return 0;
		r = shell_read_secret(s->sh, SHELL_OUT, "Password again: ", s->pw2,
		                      sizeof(s->pw2));
		if (r == SHELL_READ_LONG) {
			shell_out(s->sh, "  the passwords do not match; try again\n");
			continue;
		}
		if (r != SHELL_READ_OK)
			return ipc_read_failed(s->sh, r);
		if (strcmp(s->pw, s->pw2) == 0) {
			vault_wipe(s->pw2, sizeof(s->pw2));
			*changed = true;
			return 0;
		}
		vault_wipe(s->pw, sizeof(s->pw));
		vault_wipe(s->pw2, sizeof(s->pw2));
		shell_out(s->sh, "  the passwords do not match; try again\n");
	}
	return shell_error(s->sh, EX_DATAERR, "the passwords did not match %d "
	                   "times; nothing changed", IPC_TRIES);
}

static int ipc_setup_run(struct ipc_setup *s, struct registry *reg)
{
	const struct account_view *cur = &s->cur;
	char port_cur[16];
	bool pw_changed = false;
	long port;
	int rc;

	s->smtps = cur->smtps;
	shell_out(s->sh, "Email account setup.  Enter keeps the value in brackets; "
	          "'-' clears an optional one.\n");
	if ((rc = ipc_ask(s, "Mail server (Email/MailHost)", "Email/MailHost",
	                  cur->host, true, s->host, sizeof(s->host))))
		return rc;

	shell_out(s->sh,
	    "Port: 587 = submission, log in, encrypted with STARTTLS (usual choice)\n"
	    "      465 = implicit TLS (SMTPS), encrypted from the first byte\n"
	    "       25 = SMTP relay, STARTTLS when the server offers it\n");
	snprintf(port_cur, sizeof(port_cur), "%u", cur->port);
	if ((rc = ipc_ask(s, "Port (Email/Port)", "Email/Port", port_cur, true,
	                  s->port, sizeof(s->port))))
		return rc;
	port = strtol(s->port, NULL, 10);
	if (port == 465 && !s->smtps) {
		if ((rc = ipc_yes_no(s, "Port 465 expects TLS from the first byte. "
		                     "Turn on SMTPS?", true, &s->smtps)))
			return rc;
	} else if ((port == 587 || port == 25) && s->smtps) {
		bool off = true;
		if ((rc = ipc_yes_no(s, "SMTPS is on, but this port uses STARTTLS. "
		                     "Turn SMTPS off?", true, &off)))
			return rc;
		s->smtps = !off;
	}

	if ((rc = ipc_ask(s, "From address (Email/FromAddress)", "Email/FromAddress",
	                  cur->from, false, s->from, sizeof(s->from))))
		return rc;
	if ((rc = ipc_ask(s, "Default To, commas between (Email/ToAddress)",
	                  "Email/ToAddress", cur->to, false, s->to, sizeof(s->to))))
		return rc;
	if ((rc = ipc_ask(s, "Username, '-' for none (Email/Username)",
	                  "Email/Username", cur->username, false, s->user,
	                  sizeof(s->user))))
		return rc;
	if ((rc = ipc_ask_password(s, cur->password_set, &pw_changed)))
		return rc;

	/* Everything at once: one transaction, or nothing. */
	struct account_update u = {
		.mailhost = s->host,
		.port = s->port,
		.from = s->from,
		.to = s->to,
		.username = s->user,
		.smtps = s->smtps != cur->smtps ? (s->smtps ? "true" : "false") : NULL,
		.password = pw_changed ? s->pw : NULL,
		.password_len = pw_changed ? strlen(s->pw) : 0,
	};
	return ipc_save(s->sh, reg, &u);
}

static int ipc_setup(struct shell *sh, struct registry *reg)
{
	struct ipc_setup *s = calloc(1, sizeof(*s));
	struct dm_err e;
	enum dm_status st;
	int rc;

	if (!s)
		return shell_error(sh, EX_OSERR, "out of memory");
	s->sh = sh;
	dm_err_clear(&e);
	if ((st = account_view(reg, &s->cur, &e)))
		rc = shell_fail(sh, st, &e);
	else
		rc = ipc_setup_run(s, reg);
	vault_wipe(s, sizeof(*s));
	free(s);
	if (rc == EX_OK)
		shell_out(sh, "Test it with: SENDMAIL -t you@example.com "
		          "-s test -m hello\n");
	return rc;
}

/* ---- the command --------------------------------------------------------- */

static int ipc_run(struct shell *sh, int argc, char **argv)
{
	struct shell_opts o;
	struct registry *reg;
	struct dm_err e;
	enum dm_status st;
	bool script = false;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (shell_word_is_secret(argv[i]))
			return shell_error(sh, EX_USAGE, "a password or token is "
			    "never taken on the command line; use --password-stdin "
			    "or --oauth-token-stdin (each reads one line from "
			    "standard input) or IPCONFIG -E (asks without echo)");
	}
	if ((rc = shell_opts_parse(sh, ipc_opts, argc, argv, &o)))
		return rc;
	if (o.argc != 0)
		return shell_usage(sh);
	for (int i = IPC_OPT_MAILHOST; i <= IPC_OPT_CLEARTOK; i++)
		script = script || o.seen[i];
	if (script && o.seen[IPC_OPT_EMAIL])
		return shell_error(sh, EX_USAGE, "-E asks for everything; give "
		                   "either -E or the --mailhost ... options");
	dm_err_clear(&e);
	if ((st = shell_registry(sh, &reg, &e)))
		return shell_fail(sh, st, &e);
	if (o.seen[IPC_OPT_EMAIL])
		return ipc_setup(sh, reg);
	if (script)
		return ipc_script(sh, reg, &o);
	return ipc_show(sh, reg);
}

const struct shell_command shell_cmd_ipconfig = {
	.name = "IPCONFIG",
	.usage = "IPCONFIG [-E | --mailhost HOST --port N ... --password-stdin]",
	.options =
		"-E                    set up the email account on the terminal\n"
		"--mailhost HOST       SMTP server (Email/MailHost)\n"
		"--port N              587 submission, 465 SMTPS, 25 relay\n"
		"--smtps on|off        TLS from the first byte (Email/SMTPS)\n"
		"--starttls on|off     upgrade with STARTTLS when offered\n"
		"--require-tls on|off  never send over a clear connection\n"
		"--from ADDR           sender (Email/FromAddress)\n"
		"--to ADDR[,ADDR]      default recipients (Email/ToAddress)\n"
		"--username USER       AUTH identity (Email/Username)\n"
		"--mechanism MECH      auto, PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256,\n"
		"                      SCRAM-SHA-256-PLUS, XOAUTH2\n"
		"--password-stdin      read the password from one line of standard input\n"
		"--oauth-token-stdin   read an OAuth 2 bearer token (XOAUTH2) the same way\n"
		"--clear-password      remove the stored password\n"
		"--clear-oauth-token   remove the stored OAuth token",
	.summary = "show the network and email settings; set up the email account",
	.description =
		"Without options IPCONFIG shows the host name, each interface's "
		"IPv4 and IPv6 addresses with their prefix length, the default "
		"gateway, the DNS servers, whether the clock is synchronised (NTP), "
		"and the email settings: MailHost, Port, the security mode "
		"(STARTTLS, SMTPS or none, and RequireTLS), From, default To, "
		"Username and whether a password is set. The password itself is "
		"never shown."
		"\n\n"
		"IPCONFIG -E asks for the mail server, the port, the From address, "
		"the default recipients, the user name and the password, showing "
		"the current values in brackets (Enter keeps them). The password "
		"is typed twice and not shown. Nothing is written until every "
		"answer is valid; then all keys are saved in one registry "
		"transaction with the password encrypted by the vault."
		"\n\n"
		"Scripts use the long options instead; only the keys given change. "
		"A password is never accepted on the command line: pipe it to "
		"--password-stdin. A bad value is refused with the rule it broke "
		"and nothing changes. Every change is written to the system log, "
		"never the password. Test the account with SENDMAIL -t "
		"you@example.com -s test -m hello.",
	.run = ipc_run,
};
