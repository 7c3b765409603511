/* cmd_ipconfig.c - IPCONFIG: the network as the unit sees it and the mail
 * account; -E sets the account up on the terminal, the long options do it
 * from a script.  Saving is account_save() (one transaction, password
 * sealed); this file only asks, shows and reports. */
#include "shell/shell.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

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

static void ipc_get(struct registry *reg, const char *key, char *buf,
                    size_t cap, bool *is_set)
{
	if (registry_get(reg, key, buf, cap, is_set, NULL) != DM_OK) {
		buf[0] = '\0';
		if (is_set)
			*is_set = false;
	}
}

static bool ipc_get_bool(struct registry *reg, const char *key)
{
	bool b = false;
	if (registry_get_bool(reg, key, &b, NULL) != DM_OK)
		return false;
	return b;
}

/* The email section (also the summary after a change). */
static void ipc_print_email(FILE *out, struct registry *reg)
{
	char v[REG_VALUE_MAX];
	bool set = false;
	bool smtps = ipc_get_bool(reg, "Email/SMTPS");
	bool starttls = ipc_get_bool(reg, "Email/StartTLS");
	bool reqtls = ipc_get_bool(reg, "Email/RequireTLS");

	fprintf(out, "Email:\n");
	ipc_get(reg, "Email/MailHost", v, sizeof(v), &set);
	fprintf(out, "  MailHost:   %s\n", set && v[0] ? v : "not set (IPCONFIG -E sets it)");
	ipc_get(reg, "Email/Port", v, sizeof(v), NULL);
	fprintf(out, "  Port:       %s\n", v);
	fprintf(out, "  Security:   %s, RequireTLS %s\n",
	        smtps ? "SMTPS (TLS from the first byte)" :
	        starttls ? "STARTTLS (when offered)" : "none",
	        reqtls ? "on" : "off");
	ipc_get(reg, "Email/FromAddress", v, sizeof(v), &set);
	fprintf(out, "  From:       %s\n", set && v[0] ? v : "not set");
	ipc_get(reg, "Email/ToAddress", v, sizeof(v), &set);
	fprintf(out, "  To:         %s\n", set && v[0] ? v : "not set");
	ipc_get(reg, "Email/Username", v, sizeof(v), &set);
	fprintf(out, "  Username:   %s\n", set && v[0] ? v : "not set (no AUTH)");
	/* Only whether it is set: the sealed value is never shown. */
	ipc_get(reg, "Email/Password", v, sizeof(v), &set);
	fprintf(out, "  Password:   %s\n", set && v[0] ? "set (sealed)" : "not set");
	ipc_get(reg, "Email/OAuthToken", v, sizeof(v), &set);
	if (set && v[0])
		fprintf(out, "  OAuth token: set (sealed; XOAUTH2)\n");
	vault_wipe(v, sizeof(v));
}

static int ipc_show(struct shell *sh, struct registry *reg)
{
	FILE *out = shell_out(sh);
	struct netinfo *ni = calloc(1, sizeof(*ni));
	char host[256];
	struct dm_err e;
	enum dm_status st;

	if (!ni)
		return shell_error(sh, EX_OSERR, "out of memory");
	dm_err_clear(&e);
	if ((st = netinfo_read(ni, NULL, &e))) {
		free(ni);
		return shell_fail(sh, st, &e);
	}
	ipc_get(reg, "IpConfig/HostName", host, sizeof(host), NULL);
	fprintf(out, "Host name:  %s\n", host[0] ? host : ni->hostname);
	if (strcmp(host, ni->hostname) != 0 && ni->hostname[0])
		fprintf(out, "            (system host name %s)\n", ni->hostname);
	fprintf(out, "Interfaces:\n");
	if (ni->n_addrs == 0)
		fprintf(out, "  none\n");
	for (size_t i = 0; i < ni->n_addrs; i++) {
		const struct netinfo_addr *a = &ni->addrs[i];
		fprintf(out, "  %-10s %s %s/%u%s\n", a->ifname, a->ipv6 ? "IPv6" : "IPv4",
		        a->addr, a->prefix, a->up ? "" : "  (down)");
	}
	fprintf(out, "Default gateway:");
	if (ni->n_gateways == 0)
		fprintf(out, " none");
	for (size_t i = 0; i < ni->n_gateways; i++)
		fprintf(out, "%s %s", i ? "," : "", ni->gateways[i]);
	fprintf(out, "\nDNS servers:");
	if (ni->n_dns == 0)
		fprintf(out, " none");
	for (size_t i = 0; i < ni->n_dns; i++)
		fprintf(out, "%s %s", i ? "," : "", ni->dns[i]);
	fprintf(out, "\nClock:      %s\n\n",
	        ni->clock_synced > 0 ? "synchronised (NTP)" :
	        ni->clock_synced == 0 ? "not synchronised (no NTP)" : "unknown");
	free(ni);
	ipc_print_email(out, reg);
	return EX_OK;
}

/* ---- reading answers ----------------------------------------------------- */

/* Set by a signal while a prompt waits: the read returns EINTR and the
 * setup stops, changing nothing, with the terminal restored. */
static volatile sig_atomic_t ipc_interrupted;

static void ipc_on_signal(int sig)
{
	(void)sig;
	ipc_interrupted = 1;
}

struct ipc_signals {
	struct sigaction old[4];
};

static const int ipc_sigs[4] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

static void ipc_signals_catch(struct ipc_signals *s)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = ipc_on_signal;   /* no SA_RESTART: reads return EINTR */
	sigemptyset(&sa.sa_mask);
	ipc_interrupted = 0;
	for (int i = 0; i < 4; i++)
		sigaction(ipc_sigs[i], &sa, &s->old[i]);
}

static void ipc_signals_restore(struct ipc_signals *s)
{
	for (int i = 0; i < 4; i++)
		sigaction(ipc_sigs[i], &s->old[i], NULL);
}

enum ipc_read { IPC_READ_OK, IPC_READ_EOF, IPC_READ_INTR, IPC_READ_LONG };

/* Reads one line into buf[cap] without its CR/LF.  On a terminal straight
 * from the descriptor (no stdio copy of a password lingers); otherwise
 * through stdin, which a piped console shares.  A longer line is consumed
 * and refused (IPC_READ_LONG, buf wiped). */
/* Set while reading a secret in the one-shot form: standard input is ours
 * alone, so it is read with read(2) a byte at a time and no copy of the
 * secret stays in stdio's buffer (a piped console shares stdin's buffer
 * with the console loop and must go through stdio). */
static bool ipc_raw_stdin;

static enum ipc_read ipc_read_line(char *buf, size_t cap)
{
	bool tty = isatty(STDIN_FILENO) || ipc_raw_stdin;
	size_t n = 0;
	bool too_long = false, any = false;

	for (;;) {
		int c;
		if (ipc_interrupted)
			goto intr;
		if (tty) {
			unsigned char ch;
			ssize_t r = read(STDIN_FILENO, &ch, 1);
			if (r < 0 && errno == EINTR)
				goto intr;
			c = r == 1 ? ch : EOF;
		} else {
			c = getc(stdin);
			if (c == EOF && ferror(stdin) && errno == EINTR) {
				clearerr(stdin);
				goto intr;
			}
		}
		if (c == EOF) {
			if (!any) {
				vault_wipe(buf, cap);
				return IPC_READ_EOF;
			}
			break;
		}
		any = true;
		if (c == '\n')
			break;
		if (n + 1 < cap)
			buf[n++] = (char)c;
		else
			too_long = true;
	}
	while (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (too_long) {
		vault_wipe(buf, cap);
		return IPC_READ_LONG;
	}
	return IPC_READ_OK;
intr:
	vault_wipe(buf, cap);
	return IPC_READ_INTR;
}

/* Reads a secret with echo off when stdin is a terminal; the terminal is
 * restored before returning, whatever happened. */
static enum ipc_read ipc_read_secret(FILE *out, const char *prompt, char *buf,
                                     size_t cap)
{
	struct termios old, quiet;
	bool restore = false;
	enum ipc_read r;

	/* Echo goes off before the prompt shows, so nothing typed once the
	 * prompt is visible can be echoed; TCSAFLUSH drops what was typed
	 * ahead of it (as getpass does). */
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
		quiet.c_lflag |= ICANON;
		if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0)
			restore = true;
	}
	fprintf(out, "%s", prompt);
	fflush(out);
	r = ipc_read_line(buf, cap);
	if (restore)
		tcsetattr(STDIN_FILENO, TCSANOW, &old);
	if (restore || r != IPC_READ_OK)
		fputc('\n', out);   /* the Enter the terminal did not echo */
	fflush(out);
	return r;
}

/* Reads a secret for --password-stdin / --oauth-token-stdin (echo off on a
 * terminal).  `opt` names the option in messages. */
static int ipc_secret_stdin(struct shell *sh, const char *opt,
                            const char *prompt, char *buf, size_t cap,
                            size_t *len)
{
	struct ipc_signals sigs;
	enum ipc_read r;

	ipc_signals_catch(&sigs);
	if (isatty(STDIN_FILENO))
		r = ipc_read_secret(shell_errout(sh), prompt, buf, cap);
	else {
		ipc_raw_stdin = shell_stdin_free(sh);
		r = ipc_read_line(buf, cap);
		ipc_raw_stdin = false;
	}
	ipc_signals_restore(&sigs);
	switch (r) {
	case IPC_READ_OK:
		break;
	case IPC_READ_EOF:
		return shell_error(sh, EX_DATAERR, "%s: nothing on standard input; "
		                   "nothing changed", opt);
	case IPC_READ_INTR:
		return shell_error(sh, 130, "interrupted; nothing changed");
	case IPC_READ_LONG:
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

	char host[256], port[16];

	ipc_get(reg, "Email/MailHost", host, sizeof(host), NULL);
	ipc_get(reg, "Email/Port", port, sizeof(port), NULL);
	shell_log(sh, "email account updated: MailHost=%s, Port=%s, SMTPS=%s, "
	          "RequireTLS=%s, password %s%s", host[0] ? host : "(not set)", port,
	          ipc_get_bool(reg, "Email/SMTPS") ? "on" : "off",
	          ipc_get_bool(reg, "Email/RequireTLS") ? "on" : "off",
	          pw_changed ? (u->password ? "changed" : "cleared") : "unchanged",
	          tok_changed ? (u->oauth_token ? ", OAuth token changed" :
	                         ", OAuth token cleared") : "");
	fprintf(shell_out(sh), "Email account saved%s%s.\n",
	        u->password ? " (password sealed)" : "",
	        u->oauth_token ? " (OAuth token sealed)" : "");
	ipc_print_email(shell_out(sh), reg);
}

static int ipc_save(struct shell *sh, struct registry *reg,
                    const struct account_update *u)
{
	struct dm_err e;
	enum dm_status st;

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
	FILE *out;
	char host[IPC_ANSWER_MAX], port[16], from[IPC_ANSWER_MAX],
	     to[IPC_ANSWER_MAX], user[IPC_ANSWER_MAX];
	bool smtps;
	char pw[IPC_PASSWORD_MAX], pw2[IPC_PASSWORD_MAX];
};

/* Why a setup stopped: 0 none yet, else its exit code. */
static int ipc_stop(struct ipc_setup *s, enum ipc_read r)
{
	if (r == IPC_READ_INTR)
		return shell_error(s->sh, 130, "interrupted; nothing changed");
	if (r == IPC_READ_EOF)
		return shell_error(s->sh, EX_NOINPUT, "input ended; nothing changed");
	return 0;
}

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
		enum ipc_read r;

		if (cur[0])
			fprintf(s->out, "%s [%s]: ", label, cur);
		else
			fprintf(s->out, "%s%s: ", label, required ? "" : " [not set]");
		fflush(s->out);
		r = ipc_read_line(answer, sizeof(answer));
		if (r == IPC_READ_LONG) {
			fprintf(s->out, "  too long (limit %zu bytes); try again\n",
			        sizeof(answer) - 1);
			continue;
		}
		if (r != IPC_READ_OK)
			return ipc_stop(s, r);
		const char *a = answer;
		while (*a == ' ' || *a == '\t')
			a++;
		if (!*a) {
			if (!cur[0] && required) {
				fprintf(s->out, "  %s is needed; try again\n", key);
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
		fprintf(s->out, "  %s; try again\n", e.msg);
	}
	return shell_error(s->sh, EX_DATAERR, "%s: no valid answer after %d tries; "
	                   "nothing changed", key, IPC_TRIES);
}

/* A yes/no question; `def` on Enter. */
static int ipc_yes_no(struct ipc_setup *s, const char *question, bool def,
                      bool *out)
{
	char answer[64];

	for (int t = 0; t < IPC_TRIES; t++) {
		fprintf(s->out, "%s [%s]: ", question, def ? "Y/n" : "y/N");
		fflush(s->out);
		enum ipc_read r = ipc_read_line(answer, sizeof(answer));
		if (r == IPC_READ_LONG)
			continue;
		if (r != IPC_READ_OK)
			return ipc_stop(s, r);
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
		fprintf(s->out, "  please answer y or n\n");
	}
	return shell_error(s->sh, EX_DATAERR, "no valid answer after %d tries; "
	                   "nothing changed", IPC_TRIES);
}

/* Password twice, without echo.  Enter keeps the current one (*changed
 * false); a mismatch asks again, IPC_TRIES times at most. */
static int ipc_ask_password(struct ipc_setup *s, bool have, bool *changed)
{
	*changed = false;
	for (int t = 0; t < IPC_TRIES; t++) {
		enum ipc_read r;
		r = ipc_read_secret(s->out, have ? "Password (not shown; Enter keeps "
		                    "the current one): " : "Password (not shown; "
		                    "Enter for none): ", s->pw, sizeof(s->pw));
		if (r == IPC_READ_LONG) {
			fprintf(s->out, "  too long (limit %zu bytes); try again\n",
			        sizeof(s->pw) - 1);
			continue;
		}
		if (r != IPC_READ_OK)
			return ipc_stop(s, r);
		if (!s->pw[0])
			return 0;
		r = ipc_read_secret(s->out, "Password again: ", s->pw2, sizeof(s->pw2));
		if (r == IPC_READ_LONG) {
			fprintf(s->out, "  the passwords do not match; try again\n");
			continue;
		}
		if (r != IPC_READ_OK)
			return ipc_stop(s, r);
		if (strcmp(s->pw, s->pw2) == 0) {
			vault_wipe(s->pw2, sizeof(s->pw2));
			*changed = true;
			return 0;
		}
		vault_wipe(s->pw, sizeof(s->pw));
		vault_wipe(s->pw2, sizeof(s->pw2));
		fprintf(s->out, "  the passwords do not match; try again\n");
	}
	return shell_error(s->sh, EX_DATAERR, "the passwords did not match %d "
	                   "times; nothing changed", IPC_TRIES);
}

static int ipc_setup_run(struct ipc_setup *s, struct registry *reg)
{
	char cur[REG_VALUE_MAX];
	bool set = false, pw_set = false, pw_changed = false;
	bool smtps_cur = ipc_get_bool(reg, "Email/SMTPS");
	long port;
	int rc;

	s->smtps = smtps_cur;
	fprintf(s->out, "Email account setup.  Enter keeps the value in brackets; "
	        "'-' clears an optional one.\n");
	ipc_get(reg, "Email/MailHost", cur, sizeof(cur), &set);
	if ((rc = ipc_ask(s, "Mail server (Email/MailHost)", "Email/MailHost",
	                  set ? cur : "", true, s->host, sizeof(s->host))))
		return rc;

	fprintf(s->out,
	    "Port: 587 = submission, log in, encrypted with STARTTLS (usual choice)\n"
	    "      465 = implicit TLS (SMTPS), encrypted from the first byte\n"
	    "       25 = SMTP relay, STARTTLS when the server offers it\n");
	ipc_get(reg, "Email/Port", cur, sizeof(cur), NULL);
	if ((rc = ipc_ask(s, "Port (Email/Port)", "Email/Port", cur, true,
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

	ipc_get(reg, "Email/FromAddress", cur, sizeof(cur), &set);
	if ((rc = ipc_ask(s, "From address (Email/FromAddress)", "Email/FromAddress",
	                  set ? cur : "", false, s->from, sizeof(s->from))))
		return rc;
	ipc_get(reg, "Email/ToAddress", cur, sizeof(cur), &set);
	if ((rc = ipc_ask(s, "Default To, commas between (Email/ToAddress)",
	                  "Email/ToAddress", set ? cur : "", false, s->to,
	                  sizeof(s->to))))
		return rc;
	ipc_get(reg, "Email/Username", cur, sizeof(cur), &set);
	if ((rc = ipc_ask(s, "Username, '-' for none (Email/Username)",
	                  "Email/Username", set ? cur : "", false, s->user,
	                  sizeof(s->user))))
		return rc;
	ipc_get(reg, "Email/Password", cur, sizeof(cur), &pw_set);
	vault_wipe(cur, sizeof(cur));
	if ((rc = ipc_ask_password(s, pw_set, &pw_changed)))
		return rc;

	/* Everything at once: one transaction, or nothing. */
	struct account_update u = {
		.mailhost = s->host,
		.port = s->port,
		.from = s->from,
		.to = s->to,
		.username = s->user,
		.smtps = s->smtps != smtps_cur ? (s->smtps ? "true" : "false") : NULL,
		.password = pw_changed ? s->pw : NULL,
		.password_len = pw_changed ? strlen(s->pw) : 0,
	};
	return ipc_save(s->sh, reg, &u);
}

static int ipc_setup(struct shell *sh, struct registry *reg)
{
	struct ipc_signals sigs;
	struct ipc_setup *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return shell_error(sh, EX_OSERR, "out of memory");
	s->sh = sh;
	s->out = shell_out(sh);
	ipc_signals_catch(&sigs);
	rc = ipc_setup_run(s, reg);
	ipc_signals_restore(&sigs);
	vault_wipe(s, sizeof(*s));
	free(s);
	if (rc == EX_OK)
		fprintf(shell_out(sh), "Test it with: SENDMAIL -t you@example.com "
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
