/*
 * address.h - one mailbox or a list of them (RFC 5322 section 3.4,
 * RFC 6531/6532 for UTF-8 local parts and domains).
 *
 * Accepted forms:  a@b   <a@b>   Name <a@b>   "Last, First" <a@b>
 *                  "john doe"@b  (quoted local part)   a@[192.0.2.1]
 *                  a@[IPv6:2001:db8::1]
 * Refused on purpose, each with a message naming the rule:
 *   - comments "(...)" outside quoted strings: they are obsolete for new
 *     mail and a classic way to hide a second address, so we do not guess;
 *   - group syntax "name: a@b, c@d;" and source routes "<@x:a@b>";
 *   - CR, LF, NUL and other control characters anywhere, except TAB in
 *     the display name (a TAB in the addr-spec, even quoted or escaped, is
 *     refused: RFC 5321 4.1.2);
 *   - missing '@', empty local part or domain, bad domain labels (empty,
 *     longer than 63, leading/trailing '-', characters outside
 *     letters/digits/'-'/UTF-8), unquoted local parts with spaces, specials
 *     or misplaced dots, unbalanced quotes or angle brackets, text after
 *     '>', invalid UTF-8, local part longer than 64 octets, addr-spec longer
 *     than 254 octets (RFC 5321 section 4.5.3.1), display name longer than
 *     ADDRESS_NAME_MAX octets.
 * Display names may be quoted strings, atoms (with '.', as in obs-phrase)
 * or RFC 2047 encoded-words in UTF-8, which are decoded (a word that does
 * not decode to clean UTF-8 text is kept literally), so the header form
 * made by address_format() parses back to the same name.
 * In lists, addresses are separated by ',' or ';' outside quotes and angle
 * brackets; empty entries (",,", trailing ',') are skipped.
 * The grammar is core/text's (text_mailbox_parse(), text_list_next()): the
 * registry checks Email/FromAddress and Email/ToAddress with the same code.
 */
#ifndef DEVMAIL_MAIL_ADDRESS_H
#define DEVMAIL_MAIL_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"
#include "core/text.h"

#define ADDRESS_LOCAL_MAX TEXT_ADDR_LOCAL_MAX  /* 64, RFC 5321 4.5.3.1.1 */
#define ADDRESS_SPEC_MAX TEXT_ADDR_SPEC_MAX    /* 254: path 256 minus "<>" */
#define ADDRESS_NAME_MAX 256    /* our cap on a display name, octets */
#define ADDRESS_LIST_MAX 1000   /* our cap on the entries of one list */
/* Room for address_format(): encoded name (<= 4x) + quotes + spec. */
#define ADDRESS_HEADER_MAX (ADDRESS_NAME_MAX * 4 + ADDRESS_SPEC_MAX + 64)

struct address {
	/* addr-spec for the envelope (MAIL FROM / RCPT TO), canonical: the
	 * local part unquoted when it is a dot-atom, else quoted with '\'
	 * escapes; domain as given. NUL-terminated. */
	char spec[ADDRESS_SPEC_MAX + 1];
	/* display name, unquoted and unescaped, UTF-8; "" when none. */
	char name[ADDRESS_NAME_MAX + 1];
	/* the addr-spec contains non-ASCII: needs SMTPUTF8 (RFC 6531). */
	bool utf8;
};

/* Parses exactly one mailbox from text (NUL-terminated, surrounding
 * whitespace ignored) into *out.  Errors: DM_EINVAL with a message that
 * quotes the input and says what is wrong. */
enum dm_status address_parse(const char *text, struct address *out,
                             struct dm_err *err);

/* Parses a list.  On success *out is a malloc'd array of *count entries
 * (count may be 0 for an empty or blank list; *out is then NULL); free it
 * with address_list_free().  Errors: DM_EINVAL (message names the entry),
 * DM_ENOMEM (allocation, or more than ADDRESS_LIST_MAX entries). */
enum dm_status address_list_parse(const char *text, struct address **out,
                                  size_t *count, struct dm_err *err);

/* Frees an array from address_list_parse(); NULL ok. */
void address_list_free(struct address *list);

/* Header form of one mailbox into out[cap] (NUL-terminated):
 *   spec                      when there is no display name
 *   Name <spec>               atoms separated by single spaces
 *   "Last, First" <spec>      any other ASCII name: specials, leading,
 *                             trailing or repeated spaces (quoted, escaped)
 *   =?UTF-8?B?...?= <spec>    non-ASCII name (RFC 2047 section 5(3))
 * No folding (the caller folds the whole header).  Errors: DM_ENOMEM when
 * cap is too small (ADDRESS_HEADER_MAX always suffices). */
enum dm_status address_format(const struct address *a, char *out, size_t cap,
                              struct dm_err *err);

/* True when the address needs SMTPUTF8 (non-ASCII local part or domain). */
bool address_needs_smtputf8(const struct address *a);

/* True when both addr-specs name the same mailbox: local parts compared
 * exactly (RFC 5321 2.4: they may be case-sensitive), domains without case. */
bool address_same(const struct address *a, const struct address *b);

#endif
