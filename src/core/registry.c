/*
 * registry.c - the settings store: root/registry.db (SQLite).
 *
 * Tables:  keys(name COLLATE NOCASE PRIMARY KEY, value)   one row per set key
 *          meta(k PRIMARY KEY, v)  'format' = 1, 'changes' = change counter
 * Durability: WAL with synchronous=FULL.  NORMAL is crash-consistent in WAL
 * mode but may lose the last commits on power loss; settings are written
 * rarely and an operator who was told "saved" must find the value after a
 * power cut, so one fsync per commit is the right price.
 * Concurrency: busy timeout 5 s; every write transaction is BEGIN IMMEDIATE
 * (takes the write lock first, so no reader-to-writer upgrade can deadlock)
 * and bumps meta 'changes', which other processes poll.
 * Opening is read-only when the file is already set up (the usual case: a
 * one-shot SENDMAIL or REG only reads): the tables are created in a write
 * transaction only when they are missing, and the statements that write are
 * prepared on their first use, so a reader never waits behind a writer to
 * open and never parses SQL it will not run.
 */
#include "core/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/paths.h"
#include "core/text.h"
#include "core/vault.h"

#define REG_FORMAT 1
#define REG_BUSY_MS 5000
#define REG_IMPORT_MAX (1024 * 1024)

struct registry {
	sqlite3 *db;
	sqlite3_stmt *get;          /* name -> name, value (prepared at open) */
	/* Prepared on first use (reg_stmt()): */
	sqlite3_stmt *put_known;    /* replace, row takes the schema's case */
	sqlite3_stmt *put_unknown;  /* upsert, row keeps its first-written case */
	sqlite3_stmt *del;
	sqlite3_stmt *bump;
	sqlite3_stmt *counter;
	int reading;                /* registry_read_begin() depth */
};

#define REG_SQL_GET "SELECT name, value FROM keys WHERE name = ?1"
#define REG_SQL_PUT_KNOWN "INSERT OR REPLACE INTO keys(name, value) VALUES(?1, ?2)"
#define REG_SQL_PUT_UNKNOWN "INSERT INTO keys(name, value) VALUES(?1, ?2) " \
	"ON CONFLICT(name) DO UPDATE SET value = excluded.value"
#define REG_SQL_DEL "DELETE FROM keys WHERE name = ?1"
#define REG_SQL_BUMP "UPDATE meta SET v = v + 1 WHERE k = 'changes'"
#define REG_SQL_COUNTER "SELECT v FROM meta WHERE k = 'changes'"

/* One validated write: canonical name and stored value (NULL: delete). */
struct reg_item {
	char *name;
	char *value;
	bool known;
};

struct reg_items {
	struct reg_item *v;
	size_t n, cap;
};

static enum dm_status reg_sqlerr(struct registry *reg, const char *what,
                                 struct dm_err *err)
{
	return dm_err_set(err, DM_EIO, "registry: %s: %s", what,
	                  sqlite3_errmsg(reg->db));
}

static enum dm_status reg_exec(struct registry *reg, const char *sql,
                               struct dm_err *err)
{
	if (sqlite3_exec(reg->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return reg_sqlerr(reg, sql, err);
	return DM_OK;
}

/* ---- opening ------------------------------------------------------------ */

static const char reg_schema_sql[] =
	"CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
	"INSERT OR IGNORE INTO meta(k, v) VALUES('format', 1), ('changes', 0);"
	"CREATE TABLE IF NOT EXISTS keys(name TEXT COLLATE NOCASE PRIMARY KEY,"
	" value TEXT NOT NULL) WITHOUT ROWID;";

/* Creates the file (mode 0600, before SQLite does: its -wal/-shm copy the
 * mode) when it does not exist.  An existing file
 * is never opened here: SQLite's locks are POSIX record locks, and closing
 * ANY descriptor of the file drops every lock this process holds on it -
 * including those of another connection in the same process (the daemon
 * has one per thread).  A closing writer elsewhere would then believe it
 * was the last connection and delete the WAL and shared-memory files under
 * us, leaving our connection on a stale snapshot for good. */
static enum dm_status reg_create_file(const char *path, struct dm_err *err)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST)
		return DM_OK;
	if (fd < 0 && errno == ENOENT)
		return DM_ENOTFOUND;   /* no directory: the caller makes it */
	if (fd < 0)
		return dm_err_set(err, DM_EIO, "registry: cannot create %s: %s",
		                  path, strerror(errno));
	close(fd);
	return DM_OK;
}

/* journal_mode=WAL needs a moment of exclusive access the first time; the
 * busy handler covers it, a few bounded retries cover the rest. */
static enum dm_status reg_set_wal(struct registry *reg, struct dm_err *err)
{
	for (int i = 0; i < 50; i++) {
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(reg->db, "PRAGMA journal_mode=WAL", -1, &st,
		                       NULL) != SQLITE_OK)
			return reg_sqlerr(reg, "journal_mode", err);
		int rc = sqlite3_step(st);
		bool wal = rc == SQLITE_ROW &&
		    strcasecmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
		sqlite3_finalize(st);
		if (wal)
			return DM_OK;
		if (rc != SQLITE_BUSY && rc != SQLITE_ROW)
			break;
		usleep(100 * 1000);
	}
	return reg_sqlerr(reg, "cannot switch to WAL mode", err);
}

static enum dm_status reg_check_format(struct registry *reg, struct dm_err *err)
{
	sqlite3_stmt *st;
	long long fmt = -1;

	if (sqlite3_prepare_v2(reg->db, "SELECT v FROM meta WHERE k='format'", -1,
	                       &st, NULL) != SQLITE_OK)
		return reg_sqlerr(reg, "format", err);
	if (sqlite3_step(st) == SQLITE_ROW)
		fmt = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (fmt != REG_FORMAT)
		return dm_err_set(err, DM_EIO,
		    "registry: unsupported format %lld (this build reads %d)",
		    fmt, REG_FORMAT);
	return DM_OK;
}

/* True when both tables are there and the format is this build's: nothing
 * to create, and no write transaction needed to find it out.  Anything
 * else (a new file, a missing table, an error) is left to
 * reg_init_tables(), which creates what is missing or reports the error. */
static bool reg_tables_ready(struct registry *reg)
{
	sqlite3_stmt *st;
	bool ready = false;

	if (sqlite3_prepare_v2(reg->db, "SELECT (SELECT v FROM meta WHERE "
	                       "k='format'), EXISTS(SELECT 1 FROM sqlite_schema "
	                       "WHERE type='table' AND name='keys')", -1, &st,
	                       NULL) != SQLITE_OK)
		return false;   /* no meta table yet (or an error) */
	if (sqlite3_step(st) == SQLITE_ROW)
		ready = sqlite3_column_type(st, 0) == SQLITE_INTEGER &&
		        sqlite3_column_int64(st, 0) == REG_FORMAT &&
		        sqlite3_column_int(st, 1) == 1;
	sqlite3_finalize(st);
	return ready;
}

static enum dm_status reg_init_tables(struct registry *reg, struct dm_err *err)
{
	enum dm_status st = reg_exec(reg, "BEGIN IMMEDIATE", err);
	if (st)
		return st;
	if ((st = reg_exec(reg, reg_schema_sql, err)) ||
	    (st = reg_check_format(reg, err))) {
		sqlite3_exec(reg->db, "ROLLBACK", NULL, NULL, NULL);
		return st;
	}
	return reg_exec(reg, "COMMIT", err);
}

static enum dm_status reg_prepare(struct registry *reg, const char *sql,
                                  sqlite3_stmt **out, struct dm_err *err)
{
	if (sqlite3_prepare_v3(reg->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out,
	                       NULL) != SQLITE_OK)
		return reg_sqlerr(reg, sql, err);
	return DM_OK;
}

/* *slot, prepared from sql on its first use. */
static enum dm_status reg_stmt(struct registry *reg, sqlite3_stmt **slot,
                               const char *sql, struct dm_err *err)
{
	return *slot ? DM_OK : reg_prepare(reg, sql, slot, err);
}

/* Process-wide SQLite settings, before its first use: no bulk page-cache
 * allocation per connection (SQLite's default takes 20 pages, ~87 KiB,
 * and touches each of them; the registry reads 3 or 4 pages). */
static pthread_once_t reg_config_once = PTHREAD_ONCE_INIT;

static void reg_config(void)
{
	/* SQLITE_MISUSE when SQLite was already initialised by someone
	 * else: then its defaults stay, which is fine. */
	(void)sqlite3_config(SQLITE_CONFIG_PAGECACHE, (void *)NULL, 0, 0);
}

static enum dm_status reg_open_db(struct registry *reg, const char *path,
                                  struct dm_err *err)
{
	enum dm_status st;

	(void)pthread_once(&reg_config_once, reg_config);
	if (sqlite3_open_v2(path, &reg->db, SQLITE_OPEN_READWRITE |
	                    SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
		return reg_sqlerr(reg, path, err);
	sqlite3_busy_timeout(reg->db, REG_BUSY_MS);
	if ((st = reg_set_wal(reg, err)) ||
	    (st = reg_exec(reg, "PRAGMA synchronous=FULL", err)))
		return st;
	if (!reg_tables_ready(reg) && (st = reg_init_tables(reg, err)))
		return st;
	return reg_prepare(reg, REG_SQL_GET, &reg->get, err);
}

enum dm_status registry_open(const char *root, struct registry **out,
                             struct dm_err *err)
{
	char path[DM_PATH_MAX];
	struct registry *reg;
	enum dm_status st;

	*out = NULL;
	if ((st = paths_join(root, "registry.db", path, sizeof(path), err)))
		return st;
	/* The root is made only when the file cannot be created for want of
	 * it: an existing root costs no mkdir or stat. */
	if ((st = reg_create_file(path, err)) == DM_ENOTFOUND &&
	    (st = paths_ensure(root, err)) == DM_OK)
		st = reg_create_file(path, err);
	if (st)
		return st == DM_ENOTFOUND ? dm_err_set(err, DM_EIO,
		    "registry: cannot create %s: %s", path, strerror(ENOENT)) : st;
	reg = calloc(1, sizeof(*reg));
	if (!reg)
		return dm_err_set(err, DM_ENOMEM, "registry: out of memory");
	st = reg_open_db(reg, path, err);
	if (st) {
		registry_close(reg);
		return st;
	}
	*out = reg;
	return DM_OK;
}

void registry_close(struct registry *reg)
{
	if (!reg)
		return;
	sqlite3_finalize(reg->get);
	sqlite3_finalize(reg->put_known);
	sqlite3_finalize(reg->put_unknown);
	sqlite3_finalize(reg->del);
	sqlite3_finalize(reg->bump);
	sqlite3_finalize(reg->counter);
	sqlite3_close(reg->db);
	free(reg);
}

/* ---- reading ------------------------------------------------------------ */

/* Looks up the stored row for `key`.  On a hit copies the stored name and
 * value (either may be NULL to skip) and sets *found. */
static enum dm_status reg_lookup(struct registry *reg, const char *key,
                                 char *name, size_t name_cap, char *value,
                                 size_t cap, bool *found, struct dm_err *err)
{
	enum dm_status st = DM_OK;
	int rc;

	*found = false;
	sqlite3_bind_text(reg->get, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(reg->get);
	if (rc == SQLITE_ROW) {
		const char *n = (const char *)sqlite3_column_text(reg->get, 0);
		const char *v = (const char *)sqlite3_column_text(reg->get, 1);
		*found = true;
		if (name)
			snprintf(name, name_cap, "%s", n ? n : "");
		if (value && snprintf(value, cap, "%s", v ? v : "") >= (int)cap)
			st = dm_err_set(err, DM_ENOMEM,
			    "%s: stored value longer than the buffer (%zu)", key, cap);
	} else if (rc != SQLITE_DONE) {
		st = reg_sqlerr(reg, "read", err);
	}
	sqlite3_reset(reg->get);
	sqlite3_clear_bindings(reg->get);
	return st;
}

static enum dm_status reg_bad_name(const char *key, struct dm_err *err)
{
	char esc[160];
	return dm_err_set(err, DM_EINVAL,
	    "'%s' is not a key name (Section/Name: letters, digits, '_', '-', '.')",
	    text_escape(key ? key : "", esc, sizeof(esc)));
}

enum dm_status registry_get(struct registry *reg, const char *key,
                            char *value, size_t cap, bool *is_set,
                            struct dm_err *err)
{
	const struct schema_key *k;
	enum dm_status st;
	bool found;

	if (is_set)
		*is_set = false;
	if (!schema_name_ok(key))
		return reg_bad_name(key, err);
	st = reg_lookup(reg, key, NULL, 0, value, cap, &found, err);
	if (st || found) {
		if (is_set)
			*is_set = found;
		return st;
	}
	k = schema_find(key);
	if (cap == 0)
		return dm_err_set(err, DM_ENOMEM, "%s: no room for the value", key);
	value[0] = '\0';
	if (k && k->def && strlen(k->def) >= cap)
		return dm_err_set(err, DM_ENOMEM, "%s: default longer than the buffer", key);
	if (k)
		schema_default_value(k, value, cap);
	return DM_OK;
}

enum dm_status registry_canon(struct registry *reg, const char *key,
                              char *out, size_t cap, bool *known,
                              struct dm_err *err)
{
	const struct schema_key *k;
	bool found;
	enum dm_status st;

	if (known)
		*known = false;
	if (!schema_name_ok(key))
		return reg_bad_name(key, err);
	if (cap <= strlen(key))
		return dm_err_set(err, DM_EINVAL, "%s: name buffer too small", key);
	k = schema_find(key);
	if (k) {
		if (known)
			*known = true;
		snprintf(out, cap, "%s", k->name);
		return DM_OK;
	}
	st = reg_lookup(reg, key, out, cap, NULL, 0, &found, err);
	if (!st && !found)
		snprintf(out, cap, "%s", key);
	return st;
}

static enum dm_status reg_get_required(struct registry *reg, const char *key,
                                       char *buf, size_t cap, struct dm_err *err)
{
	bool set;
	enum dm_status st = registry_get(reg, key, buf, cap, &set, err);
	if (st)
		return st;
	if (!set && buf[0] == '\0')
		return dm_err_set(err, DM_ENOTFOUND, "%s: not set and no default", key);
	return DM_OK;
}

enum dm_status registry_get_int(struct registry *reg, const char *key,
                                long *out, struct dm_err *err)
{
	char buf[REG_VALUE_MAX], *end;
	enum dm_status st = reg_get_required(reg, key, buf, sizeof(buf), err);

	if (st)
		return st;
	errno = 0;
	long v = strtol(buf, &end, 10);
	if (buf[0] == ' ' || *end != '\0' || errno == ERANGE)
		return dm_err_set(err, DM_EINVAL, "%s: stored value '%.64s' is not an integer",
		                  key, buf);
	*out = v;
	return DM_OK;
}

enum dm_status registry_get_bool(struct registry *reg, const char *key,
                                 bool *out, struct dm_err *err)
{
	char buf[REG_VALUE_MAX];
	enum dm_status st = reg_get_required(reg, key, buf, sizeof(buf), err);

	if (st)
		return st;
	if (!schema_parse_bool(buf, out))
		return dm_err_set(err, DM_EINVAL, "%s: stored value '%.64s' is not a boolean",
		                  key, buf);
	return DM_OK;
}

enum dm_status registry_read_begin(struct registry *reg, struct dm_err *err)
{
	if (reg->reading > 0) {
		reg->reading++;
		return DM_OK;
	}
	enum dm_status st = reg_exec(reg, "BEGIN", err);
	if (st == DM_OK)
		reg->reading = 1;
	return st;
}

void registry_read_end(struct registry *reg)
{
	if (reg && reg->reading > 0 && --reg->reading == 0)
		sqlite3_exec(reg->db, "COMMIT", NULL, NULL, NULL);
}

uint64_t registry_change_counter(struct registry *reg)
{
	uint64_t v = 0;

	if (!reg || reg_stmt(reg, &reg->counter, REG_SQL_COUNTER, NULL) != DM_OK)
		return 0;
	if (sqlite3_step(reg->counter) == SQLITE_ROW)
		v = (uint64_t)sqlite3_column_int64(reg->counter, 0);
	sqlite3_reset(reg->counter);
	return v;
}

/* ---- validating --------------------------------------------------------- */

static void reg_items_free(struct reg_items *items)
{
	for (size_t i = 0; i < items->n; i++) {
		free(items->v[i].name);
		if (items->v[i].value) {
			vault_wipe(items->v[i].value, strlen(items->v[i].value));
			free(items->v[i].value);
		}
	}
	free(items->v);
	memset(items, 0, sizeof(*items));
}

static enum dm_status reg_items_push(struct reg_items *items, const char *name,
                                     const char *value, bool known,
                                     struct dm_err *err)
{
	if (items->n == items->cap) {
		size_t cap = items->cap ? items->cap * 2 : 16;
		struct reg_item *v = realloc(items->v, cap * sizeof(*v));
		if (!v)
			return dm_err_set(err, DM_ENOMEM, "registry: out of memory");
		items->v = v;
		items->cap = cap;
	}
	struct reg_item *it = &items->v[items->n];
	it->name = strdup(name);
	it->value = value ? strdup(value) : NULL;
	it->known = known;
	if (!it->name || (value && !it->value)) {
		free(it->name);
		free(it->value);
		return dm_err_set(err, DM_ENOMEM, "registry: out of memory");
	}
	items->n++;
	return DM_OK;
}

/* A sealed key: only a value already in the vault's sealed form, and only
 * when the caller allows it.  The value is never echoed: it may be a
 * password typed in the wrong place. */
static enum dm_status reg_check_sealed(const struct schema_key *k,
                                       const char *value, bool allow_sealed,
                                       struct dm_err *err)
{
	if (!allow_sealed)
		return schema_validate(k, value, NULL, 0, err);
	if (strlen(value) >= REG_VALUE_MAX || !vault_is_sealed(value))
		return dm_err_set(err, DM_EPERM,
		    "%s: value is not in sealed form (%s...); set it with IPCONFIG "
		    "or the web page, which encrypt it on entry", k->name,
		    VAULT_PREFIX);
	return DM_OK;
}

/* Validates one write and appends it, canonicalised, to items. */
static enum dm_status reg_check_one(struct registry *reg, const char *key,
                                    const char *value, bool allow_sealed,
                                    struct reg_items *items, struct dm_err *err)
{
	char canon[REG_VALUE_MAX], name[160];
	const struct schema_key *k = schema_find(key);
	enum dm_status st;

	if (!schema_name_ok(key))
		return reg_bad_name(key, err);
	if ((st = registry_canon(reg, key, name, sizeof(name), NULL, err)))
		return st;
	if (!value)
		return reg_items_push(items, name, NULL, k != NULL, err);
	if (k && k->type == SCHEMA_SEALED) {
		st = reg_check_sealed(k, value, allow_sealed, err);
		return st ? st : reg_items_push(items, name, value, true, err);
	}
	st = k ? schema_validate(k, value, canon, sizeof(canon), err)
	       : schema_validate_text(name, value, canon, sizeof(canon), err);
	return st ? st : reg_items_push(items, name, canon, k != NULL, err);
}

/* ---- writing ------------------------------------------------------------ */

static enum dm_status reg_step_done(struct registry *reg, sqlite3_stmt *s,
                                    struct dm_err *err)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_DONE ? DM_OK : reg_sqlerr(reg, "write", err);
}

static enum dm_status reg_write_item(struct registry *reg,
                                     const struct reg_item *it,
                                     struct dm_err *err)
{
	sqlite3_stmt **slot = !it->value ? &reg->del
	    : it->known ? &reg->put_known : &reg->put_unknown;
	const char *sql = !it->value ? REG_SQL_DEL
	    : it->known ? REG_SQL_PUT_KNOWN : REG_SQL_PUT_UNKNOWN;
	enum dm_status st = reg_stmt(reg, slot, sql, err);

	if (st)
		return st;
	sqlite3_stmt *s = *slot;
	sqlite3_bind_text(s, 1, it->name, -1, SQLITE_STATIC);
	if (it->value)
		sqlite3_bind_text(s, 2, it->value, -1, SQLITE_STATIC);
	return reg_step_done(reg, s, err);
}

/* One write transaction: all items, the counter bump, commit; or nothing. */
static enum dm_status reg_apply(struct registry *reg,
                                const struct reg_items *items,
                                registry_progress_fn fn, void *ctx,
                                struct dm_err *err)
{
	enum dm_status st = reg_exec(reg, "BEGIN IMMEDIATE", err);

	if (st)
		return st;
	for (size_t i = 0; i < items->n && !st; i++) {
		st = reg_write_item(reg, &items->v[i], err);
		if (!st && fn)
			fn(i + 1, items->n, ctx);
	}
	if (!st)
		st = reg_stmt(reg, &reg->bump, REG_SQL_BUMP, err);
	if (!st)
		st = reg_step_done(reg, reg->bump, err);
	if (!st)
		st = reg_exec(reg, "COMMIT", err);
	if (st)
		sqlite3_exec(reg->db, "ROLLBACK", NULL, NULL, NULL);
	return st;
}

enum dm_status registry_set_batch(struct registry *reg,
                                  const struct registry_pair *pairs, size_t n,
                                  bool allow_sealed, struct dm_err *err)
{
	struct reg_items items = { 0 };
	enum dm_status st = DM_OK;

	for (size_t i = 0; i < n && !st; i++)
		st = reg_check_one(reg, pairs[i].key, pairs[i].value, allow_sealed,
		                   &items, err);
	if (!st)
		st = reg_apply(reg, &items, NULL, NULL, err);
	reg_items_free(&items);
	return st;
}

enum dm_status registry_set(struct registry *reg, const char *key,
                            const char *value, bool *unknown,
                            struct dm_err *err)
{
	struct registry_pair p = { key, value };

	if (unknown)
		*unknown = false;
	if (!value)
		return dm_err_set(err, DM_EINVAL, "%s: no value given", key ? key : "");
	enum dm_status st = registry_set_batch(reg, &p, 1, false, err);
	if (!st && unknown)
		*unknown = schema_find(key) == NULL;
	return st;
}

enum dm_status registry_delete(struct registry *reg, const char *key,
                               struct dm_err *err)
{
	struct registry_pair p = { key, NULL };
	return registry_set_batch(reg, &p, 1, false, err);
}

/* ---- listing ------------------------------------------------------------ */

static bool reg_in_section(const char *key, const char *section)
{
	size_t sl;

	if (!section || !*section)
		return true;
	sl = strlen(section);
	while (sl > 0 && section[sl - 1] == '/')
		sl--;
	return strncasecmp(key, section, sl) == 0 && key[sl] == '/';
}

static enum dm_status reg_walk_schema(struct registry *reg, const char *section,
                                      bool all, registry_walk_fn fn, void *ctx,
                                      int *stop, struct dm_err *err)
{
	char value[REG_VALUE_MAX];
	size_t n;
	const struct schema_key *keys = schema_keys(&n);

	for (size_t i = 0; i < n && !*stop; i++) {
		bool set;
		if (!reg_in_section(keys[i].name, section))
			continue;
		enum dm_status st = registry_get(reg, keys[i].name, value,
		                                 sizeof(value), &set, err);
		if (st)
			return st;
		if (!set && !all)
			continue;
		struct registry_entry e = { keys[i].name, value, set, &keys[i] };
		*stop = fn(&e, ctx);
	}
	return DM_OK;
}

static enum dm_status reg_walk_unknown(struct registry *reg, const char *section,
                                       registry_walk_fn fn, void *ctx,
                                       int *stop, struct dm_err *err)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(reg->db, "SELECT name, value FROM keys "
	                       "ORDER BY name COLLATE NOCASE", -1, &s, NULL) != SQLITE_OK)
		return reg_sqlerr(reg, "list", err);
	while (!*stop && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 0);
		const char *value = (const char *)sqlite3_column_text(s, 1);
		if (!name || schema_find(name) || !reg_in_section(name, section))
			continue;
		struct registry_entry e = { name, value ? value : "", true, NULL };
		*stop = fn(&e, ctx);
	}
	sqlite3_finalize(s);
	if (!*stop && rc != SQLITE_DONE)
		return reg_sqlerr(reg, "list", err);
	return DM_OK;
}

enum dm_status registry_list(struct registry *reg, const char *section,
                             bool all, registry_walk_fn fn, void *ctx,
                             struct dm_err *err)
{
	int stop = 0;
	enum dm_status st = registry_read_begin(reg, err);  /* one snapshot */

	if (st)
		return st;
	st = reg_walk_schema(reg, section, all, fn, ctx, &stop, err);
	if (!st && !stop)
		st = reg_walk_unknown(reg, section, fn, ctx, &stop, err);
	registry_read_end(reg);
	if (st)
		return st;
	return (enum dm_status)stop;
}

/* ---- export ------------------------------------------------------------- */

struct reg_buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void reg_buf_add(struct reg_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void reg_buf_add(struct reg_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || b->len + (size_t)n + 1 > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)(n < 0 ? 0 : n);
		char *p = n < 0 ? NULL : realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Returns DM_ENOMEM (not 1, which is DM_EINVAL) so that registry_list()
 * hands back a status that says what happened. */
static int reg_collect(const struct registry_entry *e, void *ctx)
{
	return (int)reg_items_push(ctx, e->key, e->value, e->schema != NULL,
	                           NULL);
}

static size_t reg_section_len(const char *name)
{
	return (size_t)(strrchr(name, '/') - name);
}

/* Sections in order of first appearance; each holds all of its keys. */
static void reg_format_ini(const struct reg_items *items, struct reg_buf *b)
{
	reg_buf_add(b, "; devmail registry export (format %d)\n", REG_FORMAT);
	for (size_t i = 0; i < items->n; i++) {
		const char *ni = items->v[i].name;
		size_t si = reg_section_len(ni);
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = reg_section_len(items->v[j].name) == si &&
			    strncasecmp(items->v[j].name, ni, si) == 0;
		if (seen)
			continue;
		reg_buf_add(b, "\n[%.*s]\n", (int)si, ni);
		for (size_t j = i; j < items->n; j++) {
			const char *nj = items->v[j].name;
			if (reg_section_len(nj) == si && strncasecmp(nj, ni, si) == 0)
				reg_buf_add(b, "%s = %s\n", nj + si + 1, items->v[j].value);
		}
	}
}

enum dm_status registry_export(struct registry *reg, const char *path,
                               struct dm_err *err)
{
	struct reg_items items = { 0 };
	struct reg_buf b = { 0 };
	enum dm_status st = registry_list(reg, NULL, false, reg_collect, &items, err);

	/* registry_list() returns its own errors (err already filled) or the
	 * callback's DM_ENOMEM (err not filled yet: dm_err_set fills it once) */
	if (st == DM_ENOMEM)
		st = dm_err_set(err, DM_ENOMEM, "registry: out of memory");
	if (!st) {
		reg_format_ini(&items, &b);
		st = b.oom ? dm_err_set(err, DM_ENOMEM, "registry: out of memory")
		    : paths_write_atomic(path, b.p, b.len, 0600, err);
	}
	if (b.p)
		vault_wipe(b.p, b.len);
	free(b.p);
	reg_items_free(&items);
	return st;
}

/* ---- import ------------------------------------------------------------- */

static enum dm_status reg_read_file(const char *path, char **out,
                                    struct dm_err *err)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (!f)
		return dm_err_set(err, DM_ENOINPUT, "cannot read %s: %s", path,
		                  strerror(errno));
	buf = malloc(REG_IMPORT_MAX + 1);
	if (!buf) {
		fclose(f);
		return dm_err_set(err, DM_ENOMEM, "registry: out of memory");
	}
	n = fread(buf, 1, REG_IMPORT_MAX + 1, f);
	bool bad = ferror(f) != 0;
	fclose(f);
	if (bad || n > REG_IMPORT_MAX) {
		free(buf);
		return dm_err_set(err, bad ? DM_EIO : DM_EINVAL,
		    bad ? "cannot read %s" : "%s: larger than 1 MiB", path);
	}
	buf[n] = '\0';
	*out = buf;
	return DM_OK;
}

static char *reg_trim(char *s)
{
	char *e = s + strlen(s);
	while (*s == ' ' || *s == '\t')
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	return s;
}

/* One INI line (already split off, CR removed).  Updates the section in
 * section[cap]; appends a validated item for `name = value` lines. */
static enum dm_status reg_parse_line(struct registry *reg, char *line,
                                     char *section, size_t cap,
                                     struct reg_items *items, struct dm_err *err)
{
	char name[200];
	char *s = reg_trim(line), *eq;

	if (*s == '\0' || *s == ';' || *s == '#')
		return DM_OK;
	if (*s == '[') {
		size_t l = strlen(s);
		if (l < 3 || s[l - 1] != ']' || l - 2 >= cap)
			return dm_err_set(err, DM_EINVAL, "bad section header");
		s[l - 1] = '\0';
		snprintf(section, cap, "%s", reg_trim(s + 1));
		return DM_OK;
	}
	if (!(eq = strchr(s, '=')))
		return dm_err_set(err, DM_EINVAL, "expected 'name = value'");
	*eq = '\0';
	char *key = reg_trim(s), *value = reg_trim(eq + 1);
	if (snprintf(name, sizeof(name), "%s%s%s", section, *section ? "/" : "",
	             key) >= (int)sizeof(name))
		return dm_err_set(err, DM_EINVAL, "key name too long");
	return reg_check_one(reg, name, value, true, items, err);
}

static enum dm_status reg_parse_ini(struct registry *reg, const char *path,
                                    char *text, struct reg_items *items,
                                    struct dm_err *err)
{
	char section[160] = "";
	size_t lineno = 0;

	for (char *line = text, *next; line; line = next) {
		struct dm_err e;
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		size_t l = strlen(line);
		if (l > 0 && line[l - 1] == '\r')
			line[l - 1] = '\0';
		dm_err_clear(&e);
		enum dm_status st = reg_parse_line(reg, line, section, sizeof(section),
		                                   items, &e);
		if (st)
			return dm_err_set(err, st, "%s:%zu: %s", path, lineno, e.msg);
	}
	return DM_OK;
}

enum dm_status registry_import_progress(struct registry *reg,
                                        const char *path,
                                        registry_progress_fn fn, void *ctx,
                                        struct dm_err *err)
{
	struct reg_items items = { 0 };
	char *text = NULL;
	enum dm_status st = reg_read_file(path, &text, err);

	if (!st)
		st = reg_parse_ini(reg, path, text, &items, err);
	if (!st)
		st = reg_apply(reg, &items, fn, ctx, err);
	if (text) {
		vault_wipe(text, strlen(text));
		free(text);
	}
	reg_items_free(&items);
	return st;
}

enum dm_status registry_import(struct registry *reg, const char *path,
                               struct dm_err *err)
{
	return registry_import_progress(reg, path, NULL, NULL, err);
}
