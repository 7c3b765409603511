/*
 * text.h - small text helpers shared by every layer: hex encoding, UTF-8
 * validation (RFC 3629), one-line copies and escaped quotes of untrusted
 * text, the RFC 5322 address grammar the registry and the mail parser
 * share.
 *
 * No allocation, no I/O; every output buffer is caller-owned with a cap.
 */
#ifndef DEVMAIL_CORE_TEXT_H
#define DEVMAIL_CORE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Writes in[n] as hex digits (lower case, or upper case when `upper`) into
 * out[cap], NUL-terminated, with `sep` between bytes unless sep is '\0'
 * ("ab:cd" for a fingerprint, "abcd" for a random name).  Only whole bytes
 * are written: a byte that does not fit with its separator and the NUL is
 * left out, so out[cap] >= 2n+1 (3n with a separator) holds all of it.
 * Returns the length written (without the NUL); nothing when cap is 0. */
size_t text_hex(const void *in, size_t n, char *out, size_t cap, bool upper,
                char sep);

/* Length (1-4) of the well-formed UTF-8 sequence at s[0..len), 0 when it is
 * malformed or cut short, or len is 0.  RFC 3629 section 4: no overlong
 * forms, no surrogates (U+D800-DFFF), nothing past U+10FFFF. */
size_t text_utf8_seq(const void *s, size_t len);

/* True when all of s[len] is well-formed UTF-8 (see text_utf8_seq); NULs
 * count as characters, so the caller decides whether they are allowed. */
bool text_utf8_valid(const char *s, size_t len);

/* True for a control character: C0 (NUL, tab, CR, LF, ...) and DEL.  The
 * one test behind every sanitiser (text_one_line, text_escape). */
bool text_is_ctl(unsigned char c);

/* RFC 5322 3.2.3 atext, plus every octet >= 0x80 (RFC 6532 3.2: UTF-8 in
 * addresses; the caller checks the sequences with text_utf8_valid()). */
bool text_atext(unsigned char c);

/* True when s[len] is a dot-atom: atext runs joined by single dots, no dot
 * first or last (RFC 5322 3.2.3). */
bool text_dot_atom(const char *s, size_t len);

/* ---- the address grammar ---------------------------------------------------
 * One grammar for a mailbox, used by the registry's address rule
 * (core/schema.c: Email/FromAddress, Email/ToAddress) and the mail parser
 * (mail/address.c), so that REG never stores an address that fails at send
 * time nor refuses one that works.  RFC 5322 3.4 (mailbox, name-addr,
 * addr-spec), 3.2.3 (atext, dot-atom), 3.2.4 (quoted-string); RFC 5321
 * 4.5.3.1 (lengths), 4.1.2 (quoted local parts are printable), 4.1.3
 * (address literals); RFC 1123 2.1 (labels); RFC 6531/6532 (UTF-8).
 * Refused on purpose: comments "(...)", group syntax, source routes, lists
 * where one mailbox is expected.  Blanks (space, TAB) around parts and
 * between the words of a display name are ignored; a TAB or other control
 * character in an addr-spec is refused.  The callers refuse controls (and
 * the registry TAB) earlier with their own words, and limit the display
 * name themselves (they measure it differently). */

#define TEXT_ADDR_LOCAL_MAX 64    /* RFC 5321 4.5.3.1.1, canonical form */
#define TEXT_ADDR_SPEC_MAX 254    /* RFC 5321 4.5.3.1.3 path 256 minus "<>" */
#define TEXT_ADDR_DOMAIN_MAX 253
#define TEXT_ADDR_LABEL_MAX 63

/* The outer shape of one mailbox (RFC 5322 3.4): `addr-spec`, `<addr-spec>`
 * or `name <addr-spec>`, scanning outside double quotes.  Sets *lt and *gt
 * to the offsets of '<' and '>' (len when there are none).  Returns NULL,
 * or why the shape is refused as a phrase that follows the input ("has more
 * than one '<'"): comments, unbalanced quotes or brackets, a list separator,
 * group syntax.  text_mailbox_parse() starts with it. */
const char *text_mailbox_shape(const char *s, size_t len, size_t *lt,
                               size_t *gt);

/* One mailbox as spans of the input that text_mailbox_parse() accepted. */
struct text_mailbox {
	size_t name_off, name_len;      /* display name as written, without
	                                 * surrounding blanks; 0 len: none */
	size_t name_text;               /* its octets once unquoted, each run
	                                 * of blanks counted as one space */
	size_t local_off, local_len;    /* local part as written */
	size_t local_canon;             /* length of its canonical form */
	size_t domain_off, domain_len;  /* domain as written */
};

/* Checks that s[len] is exactly one mailbox: valid UTF-8, the shape above,
 * nothing but blanks after '>', no empty '<>' or source route, a display
 * name of atoms ('.' allowed, as in obs-phrase; UTF-8 and RFC 2047
 * encoded-words are atoms) and quoted strings, an '@' outside quotes, a
 * local part that is a dot-atom or one whole quoted string (not empty, no
 * TAB or control, canonical form <= 64 octets), a domain of labels (letters,
 * digits, '-' and UTF-8; 1-63 octets, no '-' at either end; <= 253 in all)
 * or an address literal ([192.0.2.1], [IPv6:2001:db8::1]), and <= 254
 * octets of addr-spec in canonical form.  Returns true with *m filled, or
 * false with why[cap] (NUL-terminated, cut to fit) holding a phrase that
 * reads after the quoted input: "has a space in the local part (quote it:
 * \"a b\"@example.com)". */
bool text_mailbox_parse(const char *s, size_t len, struct text_mailbox *m,
                        char *why, size_t cap);

/* The canonical form (RFC 5321 4.1.2) of a local part s[len] that
 * text_mailbox_parse() accepted: unquoted when its content is a dot-atom
 * (`"john"` -> `john`), else quoted with a backslash before each '"' and
 * '\\' (`"a\\ b"` -> `"a b"`).  Writes it NUL-terminated into out[cap]
 * when out is not NULL and it fits (cap > length); returns its length. */
size_t text_local_canon(const char *s, size_t len, char *out, size_t cap);

/* Steps through an address list s[len]: entries end at ',' or ';' outside
 * double quotes and angle brackets.  Start with *pos = 0; each call sets
 * [*b, *e) to the next entry without surrounding blanks (it may be empty:
 * ",," or a trailing ',') and returns true, or returns false when the list
 * is done.  The registry refuses empty entries, the mail parser skips them. */
bool text_list_next(const char *s, size_t len, size_t *pos, size_t *b,
                    size_t *e);

/* Copies in[len] (NULs included; NULL with len 0 is allowed) into out[cap]
 * on one line: every control character becomes `repl` (log lines and the
 * outbox use ' ', address echoes '?'), so text from a user or a server can
 * never start a second line.  Cut to cap-1 bytes without a mark, always
 * NUL-terminated when cap > 0; out may be in (in place).  Returns the number
 * of bytes copied: less than len when cut. */
size_t text_one_line(const char *in, size_t len, char *out, size_t cap,
                     char repl);

/* Copies the NUL-terminated `in` into out[cap] for quoting in a message
 * ("Email/Port: '70000' is out of range", "cannot open 'a\nb'"): CR, LF and
 * TAB become \r \n \t, backslash and single quote are escaped with a
 * backslash, other control characters become \xNN; bytes >= 0x80 are
 * kept.  Input that does not fit is cut at a whole escape and ends in
 * "...".  out is always NUL-terminated; with cap < 8 it is "".  Returns
 * out. */
const char *text_escape(const char *in, char *out, size_t cap);

#endif
