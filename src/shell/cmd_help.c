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
static void help_wrap(struct shell *sh, const char *text, int indent)
{
	const char *p = text;
	int col = 0;

	while (*p) {
		if (*p == '\n') {
			shell_write(sh, SHELL_OUT, "\n", 1);   /* ends the line, or a blank one */
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
			shell_write(sh, SHELL_OUT, "\n", 1);
			col = 0;
		}
		if (col == 0) {
			shell_out(sh, "%*s", indent, "");
			col = indent;
		} else {
			shell_write(sh, SHELL_OUT, " ", 1);
			col++;
		}
		shell_write(sh, SHELL_OUT, p, len);
		col += (int)len;
		p += len;
	}
	if (col > 0)
		shell_write(sh, SHELL_OUT, "\n", 1);
}

static void help_list(struct shell *sh)
{
	size_t n;
	const struct shell_command *const *t = shell_commands(&n);

	shell_out(sh, "Commands (names ignore case, and option letters too unless the\n"
	             "command's help says otherwise):\n");
	for (size_t i = 0; i < n; i++)
		shell_out(sh, "  %-10s %s\n", t[i]->name, t[i]->summary);
	shell_out(sh, "HELP COMMAND shows a command's usage; HELP Section/Key "
	             "describes a registry key\n(REG -a lists the keys).\n");
}

static void help_command(struct shell *sh, const struct shell_command *c)
{
	/* The command word in capitals, as JANOS prints it; the rest verbatim,
	 * because SENDMAIL tells -f FROM from -F FILE by case. */
	const char *p0 = c->usage;
	char word[64];
	size_t n = 0;
	for (; *p0 && *p0 != ' ' && n + 1 < sizeof(word); p0++)
		word[n++] = (char)toupper((unsigned char)*p0);
	word[n] = '\0';
	shell_out(sh, "%s%s\n", word, p0);
	if (c->options && *c->options) {
		/* Verbatim: the option table is aligned by its author. */
		const char *p = c->options;
		shell_out(sh, "Options:\n");
		while (*p) {
			size_t len = strcspn(p, "\n");
			shell_out(sh, "  %.*s\n", (int)len, p);
			p += len + (p[len] == '\n');
		}
	}
	shell_write(sh, SHELL_OUT, "\n", 1);
	help_wrap(sh, c->description, 0);
}

static void help_key(struct shell *sh, const struct schema_key *k)
{
	char type[128];

	shell_out(sh, "NAME\n");
	shell_out(sh, "    %s - %s\n\n", k->name, k->summary ? k->summary : "");
	shell_out(sh, "DEFAULT\n");
	if (k->type == SCHEMA_SEALED)
		shell_out(sh, "    none (a sealed secret)\n\n");
	else
		shell_out(sh, "    %s\n\n", k->def ? k->def : "none");
	shell_out(sh, "DESCRIPTION\n");
	help_wrap(sh, k->description ? k->description : k->summary, 4);
	shell_write(sh, SHELL_OUT, "\n", 1);
	schema_type_str(k, type, sizeof(type));
	shell_out(sh, "    Values: %s.\n", type);
	if (k->type == SCHEMA_SEALED)
		shell_out(sh, "    Set with IPCONFIG (encrypted on entry); REG shows <sealed>.\n");
	shell_out(sh, "\nSEE ALSO\n");
	shell_out(sh, "    %s\n", k->see_also ? k->see_also : "REG");
}

/* HELP Email: the keys of one section, with their summaries. */
static bool help_section(struct shell *sh, const char *section)
{
	size_t n, len = strlen(section), shown = 0;
	const struct schema_key *keys = schema_keys(&n);

	for (size_t i = 0; i < n; i++) {
		if (strncasecmp(keys[i].name, section, len) != 0 || keys[i].name[len] != '/')
			continue;
		if (shown++ == 0)
			shell_out(sh, "Keys in section %.*s (HELP KEY for one):\n",
			        (int)len, keys[i].name);
		shell_out(sh, "  %-26s %s\n", keys[i].name,
		        keys[i].summary ? keys[i].summary : "");
	}
	return shown > 0;
}

static int help_run(struct shell *sh, int argc, char **argv)
{
	struct shell_opts o;
	int rc;

	if ((rc = shell_opts_parse(sh, (const struct shell_opt[]){ { 0, NULL, NULL } },
	                           argc, argv, &o)))
		return rc;
	if (o.argc > 1)
		return shell_usage(sh);
	if (o.argc == 0) {
		help_list(sh);
		return EX_OK;
	}
	const char *topic = o.argv[0];
	if (strchr(topic, '/')) {
		const struct schema_key *k = schema_find(topic);
		if (k) {
			help_key(sh, k);
			return EX_OK;
		}
	} else {
		const struct shell_command *c = shell_command_find(topic);
		if (c) {
			help_command(sh, c);
			return EX_OK;
		}
		if (help_section(sh, topic))
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
