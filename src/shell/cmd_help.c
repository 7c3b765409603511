/* cmd_help.c - HELP: the command list, one command's usage, a registry key's
 * topic generated from the schema (NAME, DEFAULT, DESCRIPTION, SEE ALSO). */
#include "shell/shell.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include "core/schema.h"

#define HELP_WIDTH 78

/* Writes `text` wrapped at HELP_WIDTH with every line indented by `indent`
 * spaces; "\n" forces a line break, "\n\n" leaves a blank line. */
static void help_wrap(FILE *out, const char *text, int indent)
{
	const char *p = text;
	int col = 0;

	while (*p) {
		if (*p == '\n') {
			fputc('\n', out);   /* ends the line, or leaves a blank one */
			col = 0;
			p++;
			continue;
		}
		if (*p == ' ') {
			p++;
			continue;
		}
		size_t len = strcspn(p, " \n");
		if (col > indent && col + 1 + (int)len > HELP_WIDTH) {
			fputc('\n', out);
			col = 0;
		}
		if (col == 0) {
			fprintf(out, "%*s", indent, "");
			col = indent;
		} else {
			fputc(' ', out);
			col++;
		}
		fwrite(p, 1, len, out);
		col += (int)len;
		p += len;
	}
	if (col > 0)
		fputc('\n', out);
}

static void help_list(FILE *out)
{
	size_t n;
	const struct shell_command *const *t = shell_commands(&n);

	fprintf(out, "Commands (names ignore case, and option letters too unless the\n"
	             "command's help says otherwise):\n");
	for (size_t i = 0; i < n; i++)
		fprintf(out, "  %-10s %s\n", t[i]->name, t[i]->summary);
	fprintf(out, "HELP COMMAND shows a command's usage; HELP Section/Key "
	             "describes a registry key\n(REG -a lists the keys).\n");
}

static void help_command(FILE *out, const struct shell_command *c)
{
	/* The command word in capitals, as JANOS prints it; the rest verbatim,
	 * because SENDMAIL tells -f FROM from -F FILE by case. */
	const char *p0 = c->usage;
	for (; *p0 && *p0 != ' '; p0++)
		fputc(toupper((unsigned char)*p0), out);
	fprintf(out, "%s\n", p0);
	if (c->options && *c->options) {
		/* Verbatim: the option table is aligned by its author. */
		const char *p = c->options;
		fprintf(out, "Options:\n");
		while (*p) {
			size_t len = strcspn(p, "\n");
			fprintf(out, "  %.*s\n", (int)len, p);
			p += len + (p[len] == '\n');
		}
	}
	fputc('\n', out);
	help_wrap(out, c->description, 0);
}

static void help_key(FILE *out, const struct schema_key *k)
{
	char type[128];

	fprintf(out, "NAME\n");
	fprintf(out, "    %s - %s\n\n", k->name, k->summary ? k->summary : "");
	fprintf(out, "DEFAULT\n");
	if (k->type == SCHEMA_SEALED)
		fprintf(out, "    none (a sealed secret)\n\n");
	else
		fprintf(out, "    %s\n\n", k->def ? k->def : "none");
	fprintf(out, "DESCRIPTION\n");
	help_wrap(out, k->description ? k->description : k->summary, 4);
	fputc('\n', out);
	schema_type_str(k, type, sizeof(type));
	fprintf(out, "    Values: %s.\n", type);
	if (k->type == SCHEMA_SEALED)
		fprintf(out, "    Set with IPCONFIG (encrypted on entry); REG shows <sealed>.\n");
	fprintf(out, "\nSEE ALSO\n");
	fprintf(out, "    %s\n", k->see_also ? k->see_also : "REG");
}

/* HELP Email: the keys of one section, with their summaries. */
static bool help_section(FILE *out, const char *section)
{
	size_t n, len = strlen(section), shown = 0;
	const struct schema_key *keys = schema_keys(&n);

	for (size_t i = 0; i < n; i++) {
		if (strncasecmp(keys[i].name, section, len) != 0 || keys[i].name[len] != '/')
			continue;
		if (shown++ == 0)
			fprintf(out, "Keys in section %.*s (HELP KEY for one):\n",
			        (int)len, keys[i].name);
		fprintf(out, "  %-26s %s\n", keys[i].name,
		        keys[i].summary ? keys[i].summary : "");
	}
	return shown > 0;
}

static int help_run(struct shell *sh, int argc, char **argv)
{
	struct shell_opts o;
	FILE *out = shell_out(sh);
	int rc;

	if ((rc = shell_opts_parse(sh, (const struct shell_opt[]){ { 0, NULL, NULL } },
	                           argc, argv, &o)))
		return rc;
	if (o.argc > 1)
		return shell_usage(sh);
	if (o.argc == 0) {
		help_list(out);
		return EX_OK;
	}
	const char *topic = o.argv[0];
	if (strchr(topic, '/')) {
		const struct schema_key *k = schema_find(topic);
		if (k) {
			help_key(out, k);
			return EX_OK;
		}
	} else {
		const struct shell_command *c = shell_command_find(topic);
		if (c) {
			help_command(out, c);
			return EX_OK;
		}
		if (help_section(out, topic))
			return EX_OK;
	}
	return shell_error(sh, EX_USAGE,
	    "no help topic '%s' (HELP lists the commands, REG -a the registry keys)",
	    topic);
}

const struct shell_command shell_cmd_help = {
	.name = "HELP",
	.usage = "HELP [COMMAND | SECTION | SECTION/KEY]",
	.options = NULL,
	.summary = "list commands; describe a command or a registry key",
	.description =
		"HELP alone lists the commands. HELP COMMAND prints the command's "
		"usage, its options and what it does. HELP SECTION (HELP Email) lists "
		"the registry keys of a section and HELP SECTION/KEY (HELP Email/Port) "
		"prints the key's topic: NAME, DEFAULT, DESCRIPTION and SEE ALSO.",
	.run = help_run,
};
