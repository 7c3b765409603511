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

/* The outer shape of one mailbox (RFC 5322 3.4): `addr-spec`, `<addr-spec>`
 * or `name <addr-spec>`, scanning outside double quotes.  Sets *lt and *gt
 * to the offsets of '<' and '>' (len when there are none).  Returns NULL,
 * or why the shape is refused as a phrase that follows the input ("has more
 * than one '<'"): comments, unbalanced quotes or brackets, a list separator,
 * group syntax.  The registry's address rule and the mail address parser
 * share it, so REG and SENDMAIL agree. */
const char *text_mailbox_shape(const char *s, size_t len, size_t *lt,
                               size_t *gt);

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
