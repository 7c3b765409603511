/*
 * registry.h - the unit's settings: an SQLite file `registry.db` under the
 * data root, shared by the console, the daemon and the web page.
 *
 * WAL mode with a busy timeout lets several processes use it at once.  A
 * `struct registry` belongs to one thread; open one per process after fork.  Every
 * write validates against the schema (schema.h); unknown keys may be stored
 * as text (JANOS applications keep their own keys) but are reported as
 * unknown.  Sealed keys (Email/Password) are written only through
 * registry_set_batch() with `allow_sealed`, by code that sealed the value
 * with the vault (IPCONFIG, the web page).
 */
#ifndef DEVMAIL_CORE_REGISTRY_H
#define DEVMAIL_CORE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/err.h"
#include "core/schema.h"

struct registry;

/* Every stored value is shorter than this, so `char v[REG_VALUE_MAX]`
 * holds any value (longer ones are refused on write). */
#define REG_VALUE_MAX SCHEMA_VALUE_MAX

/* Opens (creating when missing) root/registry.db.  *out owned by the caller,
 * released with registry_close().  Errors: DM_EIO. */
enum dm_status registry_open(const char *root, struct registry **out,
                             struct dm_err *err);
void registry_close(struct registry *reg);

/* Reads a key.  Unset keys yield the schema default (or "" when none; the
 * system host name for IpConfig/HostName) and *is_set = false.  `is_set` may
 * be NULL.  registry_canon() gives the name to display.
 * Errors: DM_EINVAL (bad name), DM_ENOMEM (value longer than cap), DM_EIO. */
enum dm_status registry_get(struct registry *reg, const char *key,
                            char *value, size_t cap, bool *is_set,
                            struct dm_err *err);

/* The canonical spelling of `key` into out[cap]: the schema's case for known
 * keys, the first-written case for stored unknown keys, else `key` itself.
 * *known (may be NULL) tells whether the schema declares it.
 * Errors: DM_EINVAL (bad name or cap too small), DM_EIO. */
enum dm_status registry_canon(struct registry *reg, const char *key,
                              char *out, size_t cap, bool *known,
                              struct dm_err *err);

/* A read snapshot: every registry_get() (and friends) until the matching
 * registry_read_end() sees the same committed state, and the file's read
 * lock is taken once instead of once per key (a caller reading a dozen
 * keys, like account_load(), pays one lock instead of twelve).  Nests;
 * writing inside a snapshot fails.  Keep it short: a snapshot held open
 * keeps a writer's changes from being checkpointed.  Errors: DM_EIO. */
enum dm_status registry_read_begin(struct registry *reg, struct dm_err *err);
void registry_read_end(struct registry *reg);

/* Typed conveniences over registry_get() (defaults applied).
 * Errors: DM_ENOTFOUND (unset and no default), DM_EINVAL (stored value is
 * not an integer / boolean), plus those of registry_get(). */
enum dm_status registry_get_int(struct registry *reg, const char *key,
                                long *out, struct dm_err *err);
enum dm_status registry_get_bool(struct registry *reg, const char *key,
                                 bool *out, struct dm_err *err);

/* Validates and stores one key.  Unknown (well-formed) keys are stored as text
 * and *unknown is set true (may be NULL).  Sealed keys: DM_EPERM.
 * Errors: DM_EINVAL (message names key, value and rule), DM_EPERM, DM_EIO. */
enum dm_status registry_set(struct registry *reg, const char *key,
                            const char *value, bool *unknown,
                            struct dm_err *err);

struct registry_pair {
	const char *key;
	const char *value;   /* NULL deletes the key (back to default) */
};

/* Writes all pairs in one transaction, or none on any error (every pair is
 * validated before anything is written).  With `allow_sealed`, sealed keys
 * accept a value that is already vault-sealed (vault_is_sealed(), never
 * plaintext; a refused value is not echoed in the message).
 * Errors: DM_EINVAL, DM_EPERM, DM_ENOMEM, DM_EIO. */
enum dm_status registry_set_batch(struct registry *reg,
                                  const struct registry_pair *pairs, size_t n,
                                  bool allow_sealed, struct dm_err *err);

/* Deletes a key (it reads as its default again).  Deleting an unset key is
 * not an error.  Errors: DM_EINVAL, DM_EIO. */
enum dm_status registry_delete(struct registry *reg, const char *key,
                               struct dm_err *err);

struct registry_entry {
	const char *key;       /* canonical name */
	const char *value;     /* stored value, or default when !is_set */
	bool is_set;
	const struct schema_key *schema;  /* NULL for unknown keys */
};

/* Calls `fn` for each key in order: schema keys in schema order, then unknown
 * keys sorted case-insensitively.  The walk reads one snapshot; `fn` must not
 * write to the registry.  A section matches a key that starts with
 * "section/" ("Events" matches Events/OnBoot/Email).  `section` (case-insensitive, e.g.
 * "Email") limits to one section, NULL for all.  With `all`, every schema key
 * is listed (set or not) plus every stored unknown key; otherwise only keys
 * that are set.  A non-zero return from fn stops the walk and is returned. */
typedef int (*registry_walk_fn)(const struct registry_entry *e, void *ctx);
enum dm_status registry_list(struct registry *reg, const char *section,
                             bool all, registry_walk_fn fn, void *ctx,
                             struct dm_err *err);

/* Writes the set keys as INI text (`[Email]` / `Port = 587`) to path,
 * durably (paths_write_atomic, mode 0600).  The section is everything before
 * the last '/': Events/OnBoot/Email -> `[Events/OnBoot]` `Email = true`.
 * Sealed values are exported in their sealed form.  Errors: DM_EIO. */
enum dm_status registry_export(struct registry *reg, const char *path,
                               struct dm_err *err);

/* Reads INI text from path and applies it all-or-nothing (one transaction;
 * every line validated first).  Whole-line comments start with ';' or '#';
 * blank lines are skipped; `name = value` with spaces around '=' ignored; a
 * name outside any [section] must be a full Section/Name.  Sealed keys take
 * only sealed values (as written by registry_export()).  Files over 1 MiB
 * are refused.  Errors name the file and line number: DM_ENOINPUT (cannot
 * read), DM_EINVAL, DM_EPERM, DM_ENOMEM, DM_EIO. */
enum dm_status registry_import(struct registry *reg, const char *path,
                               struct dm_err *err);

/* registry_import() that calls fn(done, total, ctx) after each row is
 * written inside the transaction, before the commit (progress display; the
 * crash tests use it to stop a writer mid-transaction).  fn may be NULL. */
typedef void (*registry_progress_fn)(size_t done, size_t total, void *ctx);
enum dm_status registry_import_progress(struct registry *reg,
                                        const char *path,
                                        registry_progress_fn fn, void *ctx,
                                        struct dm_err *err);

/* A counter that grows with every committed change by any process; cheap
 * enough to poll (one small read of a meta row that every write transaction
 * bumps).  0 on error. */
uint64_t registry_change_counter(struct registry *reg);

#endif
