/*
 * account.h - the mail account as one unit: what IPCONFIG, the web page and
 * the daemon share.  Saving writes every changed key in one registry
 * transaction with the password sealed by the vault on entry; loading turns
 * the registry (+ the unsealed password) into struct smtp_settings; the view
 * is the account as a person is shown it, with nothing unsealed.
 *
 * Commands are thin: anything both the console and the web page do with the
 * account lives here, never in a command's file.
 */
#ifndef DEVMAIL_MAIL_ACCOUNT_H
#define DEVMAIL_MAIL_ACCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"
#include "core/registry.h"
#include "mail/smtp.h"

/* Fields to change; NULL leaves a key as it is, "" deletes it (back to the
 * default).  Booleans as text ("on", "off", "true", ...), validated by the
 * schema. */
struct account_update {
	const char *mailhost;     /* Email/MailHost */
	const char *port;         /* Email/Port */
	const char *smtps;        /* Email/SMTPS */
	const char *starttls;     /* Email/StartTLS */
	const char *require_tls;  /* Email/RequireTLS */
	const char *from;         /* Email/FromAddress */
	const char *to;           /* Email/ToAddress */
	const char *username;     /* Email/Username */
	const char *mechanism;    /* Email/AuthMechanism */
	/* The password in clear, caller-owned (the caller wipes it).  NULL:
	 * unchanged; with clear_password the key is deleted instead. */
	const char *password;
	size_t password_len;
	bool clear_password;
	/* The OAuth 2 bearer token for XOAUTH2 (Email/OAuthToken), handled
	 * like the password: sealed on entry, caller-owned and wiped by it. */
	const char *oauth_token;
	size_t oauth_token_len;
	bool clear_oauth_token;
};

/* Seals the password (when given) and writes every given key in one
 * transaction, or nothing on any error (the message names the key, the
 * value and the rule).  Errors: DM_EINVAL, DM_EPERM (vault key file),
 * DM_ECRYPTO, DM_EIO. */
enum dm_status account_save(struct registry *reg, const char *root,
                            const struct account_update *u,
                            struct dm_err *err);

/* Everything smtp_client_open() needs, read from the registry.  Strings
 * live inside the struct; the password and token are unsealed into
 * heap buffers that account_clear() wipes and frees. */
struct account {
	struct smtp_settings smtp;   /* points into the fields below */
	char host[256];
	char helo[256];
	char from[REG_VALUE_MAX];
	char to[REG_VALUE_MAX];
	char username[REG_VALUE_MAX];
	char mechanism[32];
	char cafile[REG_VALUE_MAX];
	char fingerprint[128];
	char *password;              /* NULL when none set */
	char *oauth_token;           /* NULL when none set */
	bool password_set;
};

/* Loads the account.  Missing Email/MailHost -> DM_ECONFIG naming the key.
 * A password that cannot be unsealed -> DM_ECRYPTO / DM_EPERM with the
 * vault's message.  Always call account_clear() afterwards (also on
 * error). */
enum dm_status account_load(struct registry *reg, const char *root,
                            struct account *a, struct dm_err *err);

/* Wipes and frees the secrets; the struct may be loaded again. */
void account_clear(struct account *a);

/* The account as IPCONFIG and the web page show it, read from the registry
 * with the defaults applied.  Nothing is unsealed (no vault key is read):
 * the sealed keys only say whether they hold a value, so the view never
 * holds a secret and works when the vault key is missing or damaged.
 * Strings are "" when the key is not set and has no default. */
struct account_view {
	char host[256];                 /* Email/MailHost */
	unsigned port;                  /* Email/Port */
	bool smtps;                     /* Email/SMTPS */
	bool starttls;                  /* Email/StartTLS */
	bool require_tls;               /* Email/RequireTLS */
	char from[REG_VALUE_MAX];       /* Email/FromAddress */
	char to[REG_VALUE_MAX];         /* Email/ToAddress */
	char username[REG_VALUE_MAX];   /* Email/Username ("": no AUTH) */
	char mechanism[32];             /* Email/AuthMechanism ("auto") */
	bool password_set;              /* Email/Password holds a sealed value */
	bool oauth_token_set;           /* Email/OAuthToken holds a sealed value */
	bool verify;                    /* Email/VerifyCertificate */
	char cafile[REG_VALUE_MAX];     /* Email/CAFile ("": system store only) */
	char fingerprint[128];          /* Email/Fingerprint ("": not pinned) */
	unsigned timeout_s;             /* Email/Timeout, seconds per step */
	char allow_plaintext_auth[256]; /* Email/AllowPlaintextAuth ("": none) */
	char helo[256];                 /* IpConfig/HostName, else the system
	                                 * host name: the EHLO name */
};

/* Fills *v (caller-owned; large: allocate it, or keep it static).  On error
 * *v is zeroed.  Errors: DM_EINVAL (NULL argument), DM_EIO and what
 * registry_get() says about a damaged value. */
enum dm_status account_view(struct registry *reg, struct account_view *v,
                            struct dm_err *err);

/* The security mode in words, as IPCONFIG shows it: "SMTPS (TLS from the
 * first byte)", "STARTTLS (when offered)" or "none".  Static storage. */
const char *account_view_security(const struct account_view *v);

#endif
