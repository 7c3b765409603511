/* cmd_reg.c - REG: list, read, set, delete, export and import registry keys. */
#include "shell/shell.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "core/schema.h"

enum { REG_OPT_ALL, REG_OPT_DELETE, REG_OPT_EXPORT, REG_OPT_IMPORT };

static const struct shell_opt reg_opts[] = {
	[REG_OPT_ALL]    = { 'a', "all", NULL },
	[REG_OPT_DELETE] = { 'd', "delete", "KEY" },
	[REG_OPT_EXPORT] = { 'x', "export", "FILE" },
	[REG_OPT_IMPORT] = { 'i', "import", "FILE" },
	{ 0, NULL, NULL },
};

struct reg_walk {
	struct shell *sh;
	bool all;
	size_t count;
};

/* One "KEY = VALUE" line.  Sealed values are never shown, set or not. */
static void reg_print(struct shell *sh, const char *key, const char *value,
                      bool is_set, const struct schema_key *k, bool detail)
{
	bool sealed = k && k->type == SCHEMA_SEALED;
	const char *shown = sealed ? (is_set ? "<sealed>" : "") : value;

	const char *note = "";
	char buf[160];

	if (!k) {
		note = "   [unknown key]";
	} else if (detail && !is_set) {
		note = value[0] ? "   [default]" : "   [not set]";
	} else if (detail && is_set) {
		snprintf(buf, sizeof(buf), "   [set; default %s]", k->def ? k->def : "none");
		note = buf;
	}
	shell_out(sh, "%s = %s%s\n", key, shown, note);
}

static int reg_walk_print(const struct registry_entry *e, void *ctx)
{
	struct reg_walk *w = ctx;
	reg_print(w->sh, e->key, e->value, e->is_set, e->schema, w->all);
	w->count++;
	return 0;
}

static int reg_list(struct shell *sh, struct registry *reg, const char *section,
                    bool all)
{
	struct reg_walk w = { .sh = sh, .all = all };
	struct dm_err e;
	enum dm_status st;

	dm_err_clear(&e);
	if ((st = registry_list(reg, section, all, reg_walk_print, &w, &e)))
		return shell_fail(sh, st, &e);
	if (w.count == 0 && section)
		shell_out(sh, "no keys %s in section %s%s\n",
		        all ? "known or set" : "set", section,
		        all ? "" : " (REG -a lists every key)");
	else if (w.count == 0)
		shell_out(sh, "no keys set (REG -a lists every key)\n");
	return EX_OK;
}

/* The name to show: the schema's canonical case when the key is known. */
static const char *reg_canon(const char *key, const struct schema_key *k)
{
	return k ? k->name : key;
}

static int reg_show(struct shell *sh, struct registry *reg, const char *key)
{
	char value[REG_VALUE_MAX];
	const struct schema_key *k = schema_find(key);
	struct dm_err e;
	bool is_set = false;
	enum dm_status st;

	dm_err_clear(&e);
	if ((st = registry_get(reg, key, value, sizeof(value), &is_set, &e)))
		return shell_fail(sh, st, &e);
	if (!k && !is_set)
		return shell_error(sh, EX_DATAERR,
		    "%s: unknown key, not set (REG -a lists the known keys)", key);
	reg_print(sh, reg_canon(key, k), value, is_set, k, true);
	return EX_OK;
}

static int reg_delete(struct shell *sh, struct registry *reg, const char *key)
{
	char value[REG_VALUE_MAX];
	const struct schema_key *k = schema_find(key);
	struct dm_err e;
	enum dm_status st;

	dm_err_clear(&e);
	if ((st = registry_delete(reg, key, &e)))
		return shell_fail(sh, st, &e);
	shell_log(sh, "%s deleted", reg_canon(key, k));
	if (k && k->type != SCHEMA_SEALED && k->def &&
	    registry_get(reg, key, value, sizeof(value), NULL, NULL) == DM_OK)
		shell_out(sh, "%s deleted (reads as its default, %s)\n",
		        k->name, value);
	else
		shell_out(sh, "%s deleted\n", reg_canon(key, k));
	return EX_OK;
}

static int reg_set(struct shell *sh, struct registry *reg, const char *key,
                   const char *value)
{
	char stored[REG_VALUE_MAX];
	const struct schema_key *k = schema_find(key);
	struct dm_err e;
	bool unknown = false;
	enum dm_status st;

	/* Refuse before the registry sees the clear text (DESIGN: the password
	 * "requires the active step of encryption"). */
	if (k && k->type == SCHEMA_SEALED)
		return shell_error(sh, EX_NOPERM,
		    "%s is sealed and cannot be typed in clear; set it with IPCONFIG, "
		    "which encrypts it on entry", k->name);
	dm_err_clear(&e);
	if ((st = registry_set(reg, key, value, &unknown, &e)))
		return shell_fail(sh, st, &e);
	dm_err_clear(&e);
	if ((st = registry_get(reg, key, stored, sizeof(stored), NULL, &e)))
		return shell_fail(sh, st, &e);
	shell_log(sh, "%s set to '%s'", reg_canon(key, k), stored);
	shell_out(sh, "%s = %s%s\n", reg_canon(key, k), stored,
	        unknown ? "   [unknown key, stored as text]" : "");
	return EX_OK;
}

static int reg_export(struct shell *sh, struct registry *reg, const char *path)
{
	struct dm_err e;
	enum dm_status st;

	dm_err_clear(&e);
	if ((st = registry_export(reg, path, &e)))
		return shell_fail(sh, st, &e);
	shell_log(sh, "registry exported to %s", path);
	shell_out(sh, "registry exported to %s\n", path);
	return EX_OK;
}

static int reg_import(struct shell *sh, struct registry *reg, const char *path)
{
	struct dm_err e;
	enum dm_status st;

	if (access(path, R_OK) != 0)
		return shell_error(sh, EX_NOINPUT, "%s: %s", path, strerror(errno));
	dm_err_clear(&e);
	if ((st = registry_import(reg, path, &e)))
		return shell_fail(sh, st, &e);
	shell_log(sh, "registry imported from %s", path);
	shell_out(sh, "registry imported from %s\n", path);
	return EX_OK;
}

/* Joins the words after '=' with single spaces (`REG K = a b` sets "a b",
 * as JANOS takes the rest of the line). */
static int reg_join(struct shell *sh, int argc, char **argv, char *out, size_t cap)
{
	size_t len = 0;
	out[0] = '\0';
	for (int i = 0; i < argc; i++) {
		size_t w = strlen(argv[i]);
		if (len + w + (i ? 1 : 0) >= cap)
			return shell_error(sh, EX_DATAERR, "value too long (limit %zu bytes)",
			                   cap - 1);
		if (i)
			out[len++] = ' ';
		memcpy(out + len, argv[i], w + 1);
		len += w;
	}
	return 0;
}

static int reg_run(struct shell *sh, int argc, char **argv)
{
	struct shell_opts o;
	struct registry *reg;
	struct dm_err e;
	enum dm_status st;
	int rc, actions;

	if ((rc = shell_opts_parse(sh, reg_opts, argc, argv, &o)))
		return rc;
	actions = o.seen[REG_OPT_DELETE] + o.seen[REG_OPT_EXPORT] + o.seen[REG_OPT_IMPORT];
	if (actions > 1 || (actions && (o.argc || o.seen[REG_OPT_ALL])))
		return shell_usage(sh);
	if (o.argc >= 1 && strcmp(o.argv[0], "=") == 0)
		return shell_error(sh, EX_USAGE, "a key name must come before '='");
	if (o.argc >= 2 && strcmp(o.argv[1], "=") != 0)
		return shell_usage(sh);
	if (o.argc >= 2 && o.seen[REG_OPT_ALL])
		return shell_usage(sh);
	dm_err_clear(&e);
	if ((st = shell_registry(sh, &reg, &e)))
		return shell_fail(sh, st, &e);

	if (o.seen[REG_OPT_DELETE])
		return reg_delete(sh, reg, o.value[REG_OPT_DELETE]);
	if (o.seen[REG_OPT_EXPORT])
		return reg_export(sh, reg, o.value[REG_OPT_EXPORT]);
	if (o.seen[REG_OPT_IMPORT])
		return reg_import(sh, reg, o.value[REG_OPT_IMPORT]);
	if (o.argc == 0)
		return reg_list(sh, reg, NULL, o.seen[REG_OPT_ALL]);
	if (o.argc == 1) {
		if (strchr(o.argv[0], '/') == NULL)
			return reg_list(sh, reg, o.argv[0], o.seen[REG_OPT_ALL]);
		return reg_show(sh, reg, o.argv[0]);
	}
	/* KEY = [VALUE...]: an empty right-hand side deletes, as in JANOS. */
	if (o.argc == 3 && o.argv[2][0] == '\0')
		return reg_delete(sh, reg, o.argv[0]);
	if (o.argc == 2)
		return reg_delete(sh, reg, o.argv[0]);
	char value[REG_VALUE_MAX];
	if ((rc = reg_join(sh, o.argc - 2, o.argv + 2, value, sizeof(value))))
		return rc;
	return reg_set(sh, reg, o.argv[0], value);
}

const struct shell_command shell_cmd_reg = {
	.name = "REG",
	.usage = "REG [-a] [SECTION | KEY] [= VALUE]",
	.options =
		"-a         every known key, with its default and whether it is set\n"
		"-d KEY     delete KEY (it reads as its default again)\n"
		"-x FILE    export the keys that are set to FILE (INI text)\n"
		"-i FILE    import FILE (all of it or nothing)",
	.summary = "list, read, set, delete, export and import registry keys",
	.description =
		"Without arguments REG lists the keys that are set; REG SECTION lists "
		"one section (REG Email), REG KEY shows one key (REG Email/Port). "
		"REG KEY = VALUE validates VALUE against the key's rule, stores its "
		"canonical form and prints it; REG KEY = with nothing after the "
		"equals sign deletes the key. Key names ignore case. Keys that are "
		"not in the schema may be stored as text and are marked [unknown key]."
		"\n\n"
		"Sealed keys (Email/Password) show as <sealed> and cannot be set "
		"here: IPCONFIG encrypts them first. Every change "
		"is written to the system log (LOG shows it). HELP KEY describes a "
		"key.",
	.flags = SHELL_CMD_ASSIGN,
	.run = reg_run,
};
