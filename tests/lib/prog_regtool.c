/*
 * prog_regtool.c - registry driver for multi-process tests and docs.
 *
 *   regtool --readme-table           print the README key table (markdown)
 *   regtool ROOT get KEY             print the value
 *   regtool ROOT set KEY VALUE       set one key
 *   regtool ROOT import FILE         import an INI file
 *   regtool ROOT export FILE         export to an INI file
 *   regtool ROOT fill PREFIX COUNT   set PREFIX/k0..k<COUNT-1> (= "v<i>"), one
 *                                    transaction each
 *   regtool ROOT counter             print the change counter
 *
 * import honours DEVMAIL_TEST_IMPORT_PAUSE_US: after each applied row (inside
 * the transaction, before the commit) it prints "applying <done>/<total>" on
 * stdout, flushes, and sleeps that many microseconds, so that a test can
 * SIGKILL it mid-transaction at a known point.
 * Exit status: 0 ok, else the sysexits code of the error (message on stderr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/registry.h"
#include "core/schema.h"

static int regtool_fail(enum dm_status st, const struct dm_err *err)
{
	fprintf(stderr, "regtool: %s\n", err->msg[0] ? err->msg : dm_status_str(st));
	return dm_status_exit(st);
}

static void regtool_readme_table(void)
{
	size_t n;
	const struct schema_key *k = schema_keys(&n);
	char type[160];

	printf("| key | type | default | meaning |\n");
	printf("| --- | --- | --- | --- |\n");
	for (size_t i = 0; i < n; i++)
		printf("| %s | %s | %s | %s |\n", k[i].name,
		       schema_type_str(&k[i], type, sizeof(type)),
		       schema_default_display(&k[i]), k[i].summary);
}

static void regtool_pause(size_t done, size_t total, void *ctx)
{
	useconds_t us = *(useconds_t *)ctx;

	printf("applying %zu/%zu\n", done, total);
	fflush(stdout);
	usleep(us);
}

static enum dm_status regtool_import(struct registry *reg, const char *file,
                                     struct dm_err *err)
{
	const char *env = getenv("DEVMAIL_TEST_IMPORT_PAUSE_US");
	useconds_t us = env ? (useconds_t)strtoul(env, NULL, 10) : 0;

	return registry_import_progress(reg, file, env ? regtool_pause : NULL,
	                                &us, err);
}

static enum dm_status regtool_fill(struct registry *reg, const char *prefix,
                                   long count, struct dm_err *err)
{
	char key[160], value[32];

	for (long i = 0; i < count; i++) {
		snprintf(key, sizeof(key), "%s/k%ld", prefix, i);
		snprintf(value, sizeof(value), "v%ld", i);
		enum dm_status st = registry_set(reg, key, value, NULL, err);
		if (st)
			return st;
	}
	return DM_OK;
}

static enum dm_status regtool_run(struct registry *reg, int argc, char **argv,
                                  struct dm_err *err)
{
	const char *cmd = argv[2];
	char value[REG_VALUE_MAX];
	enum dm_status st = DM_EUSAGE;

	if (strcmp(cmd, "get") == 0 && argc == 4) {
		st = registry_get(reg, argv[3], value, sizeof(value), NULL, err);
		if (!st)
			printf("%s\n", value);
	} else if (strcmp(cmd, "set") == 0 && argc == 5) {
		st = registry_set(reg, argv[3], argv[4], NULL, err);
	} else if (strcmp(cmd, "import") == 0 && argc == 4) {
		st = regtool_import(reg, argv[3], err);
	} else if (strcmp(cmd, "export") == 0 && argc == 4) {
		st = registry_export(reg, argv[3], err);
	} else if (strcmp(cmd, "fill") == 0 && argc == 5) {
		st = regtool_fill(reg, argv[3], strtol(argv[4], NULL, 10), err);
	} else if (strcmp(cmd, "counter") == 0 && argc == 3) {
		printf("%llu\n", (unsigned long long)registry_change_counter(reg));
		st = DM_OK;
	} else {
		dm_err_set(err, DM_EUSAGE, "usage: regtool ROOT get|set|import|"
		           "export|fill|counter ARGS, or regtool --readme-table");
	}
	return st;
}

int main(int argc, char **argv)
{
	struct dm_err err;
	struct registry *reg;
	enum dm_status st;

	dm_err_clear(&err);
	if (argc == 2 && strcmp(argv[1], "--readme-table") == 0) {
		regtool_readme_table();
		return 0;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: regtool ROOT CMD ARGS | regtool --readme-table\n");
		return dm_status_exit(DM_EUSAGE);
	}
	if ((st = registry_open(argv[1], &reg, &err)))
		return regtool_fail(st, &err);
	st = regtool_run(reg, argc, argv, &err);
	registry_close(reg);
	return st ? regtool_fail(st, &err) : 0;
}
