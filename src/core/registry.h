/*
 * registry.h - the unit's settings: an SQLite file `registry.db` under the
 * data root, shared by the console, the daemon and the web page.
 *
 * WAL mode with a busy timeout lets several processes use it at once.  Every
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

#define REG_VALUE_MAX 4096

/* Opens (creating when missing) root/registry.db.  *out owned by the caller,
 * released with registry_close().  Errors: DM_EIO. */
enum dm_status registry_open(const char *root, struct registry **out,
                             struct dm_err *err);
void registry_close(struct registry *reg);

/* Reads a key.  Unset keys yield the schema default (or "" when none) and
 * *is_set = false.  `is_set` may be NULL.  The returned canonical name (for
 * display) is written into canon[canon_cap] when canon is non-NULL.
 * Errors: DM_EINVAL (bad name), DM_ENOMEM (value longer than cap), DM_EIO. */
enum dm_status registry_get(struct registry *reg, const char *key,
                            char *value, size_t cap, bool *is_set,
                            struct dm_err *err);

/* Typed conveniences over registry_get() (defaults applied). */
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

/* Writes all pairs in one transaction, or none on any error.  With
 * `allow_sealed`, sealed keys accept a value that is already vault-sealed
 * (checked for the vault's format, never plaintext). */
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

/* Calls `fn` for each key in order.  `section` (case-insensitive, e.g.
 * "Email") limits to one section, NULL for all.  With `all`, every schema key
 * is listed (set or not) plus every stored unknown key; otherwise only keys
 * that are set.  A non-zero return from fn stops the walk and is returned. */
typedef int (*registry_walk_fn)(const struct registry_entry *e, void *ctx);
enum dm_status registry_list(struct registry *reg, const char *section,
                             bool all, registry_walk_fn fn, void *ctx,
                             struct dm_err *err);

/* Writes the set keys as INI text (`[Email]` / `Port = 587`) to path,
 * durably.  Sealed values are exported in their sealed form. */
enum dm_status registry_export(struct registry *reg, const char *path,
                               struct dm_err *err);

/* Reads INI text from path and applies it all-or-nothing (one transaction;
 * every line validated first).  Errors name the line number. */
enum dm_status registry_import(struct registry *reg, const char *path,
                               struct dm_err *err);

/* A counter that grows with every committed change by any process; cheap
 * enough to poll (one small read).  0 on error. */
uint64_t registry_change_counter(struct registry *reg);

#endif
