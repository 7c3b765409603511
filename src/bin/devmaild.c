/* bin/devmaild.c - `devmaild [--root DIR] [--foreground] [-v]`: the devmail
 * service (daemon/devmaild.h).
 *
 * Without --foreground it detaches: the child starts a new session, moves
 * to /, points stdin/stdout/stderr at /dev/null and boots; the parent
 * waits until the child says it is running (or why it is not) on a pipe,
 * and exits 0 (or with the child's status and message).  So
 * `devmaild && next-step` only goes on once the PID file is held and the
 * boot mail is queued.  Under systemd use --foreground (Type=exec), which
 * also reports on stderr, i.e. into the journal.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "core/paths.h"
#include "daemon/devmaild.h"

#ifndef DEVMAIL_VERSION
#define DEVMAIL_VERSION "unknown"
#endif

static int usage(FILE *f, int code)
{
	fprintf(f,
	    "usage: devmaild [--root DIR] [--foreground] [-v]\n"
	    "  --root DIR        data root (else $DEVMAIL_ROOT, else the default)\n"
	    "  -f, --foreground  stay attached; report on stderr as well as in the\n"
	    "                    system log (systemd: Type=exec)\n"
	    "  -v, --verbose     with --foreground: the SMTP dialogue on stderr\n"
	    "  --version         print the version\n"
	    "Delivers the outbox by itself (retries on the Outbox/* schedule, wakes\n"
	    "when a message is queued or a setting changes), sends the boot mail\n"
	    "when Events/OnBoot/Email is on, logs NTP clock synchronisation.\n"
	    "SIGTERM/SIGINT stop it (within 2 s), SIGHUP reloads the registry.\n"
	    "exit: 0 stopped, 75 another devmaild serves the root, 74 local I/O\n"
	    "      error, 64 usage\n");
	return code;
}

/* Waits for the child's "OK <pid>" or "ERR <status> <text>" line. */
static int wait_ready(int fd, pid_t child)
{
	char buf[1024];
	size_t len = 0;

	for (;;) {
		ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		if (len == sizeof(buf) - 1)
			break;
	}
	close(fd);
	buf[len] = '\0';
	char *nl = strchr(buf, '\n');
	if (nl)
		*nl = '\0';
	if (strncmp(buf, "OK ", 3) == 0)
		return EX_OK;
	if (strncmp(buf, "ERR ", 4) == 0) {
		char *end;
		long code = strtol(buf + 4, &end, 10);
		if (end != buf + 4 && *end == ' ') {
			fprintf(stderr, "devmaild: %s\n", end + 1);
			return code > 0 && code < 256 ? (int)code : EX_SOFTWARE;
		}
	}
	/* No word from it: it died during boot.  Reap it if it is gone. */
	int st = 0;
	if (waitpid(child, &st, WNOHANG) == child && WIFEXITED(st) &&
	    WEXITSTATUS(st) != 0)
		fprintf(stderr, "devmaild: exited during start with status %d\n",
		        WEXITSTATUS(st));
	else
		fprintf(stderr, "devmaild: ended during start without a word "
		        "(see the system log)\n");
	return EX_SOFTWARE;
}

static int detach(struct devmaild_settings *s)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) != 0) {
		fprintf(stderr, "devmaild: pipe: %s\n", strerror(errno));
		return EX_OSERR;
	}
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "devmaild: fork: %s\n", strerror(errno));
		return EX_OSERR;
	}
	if (pid > 0) {
		close(p[1]);
		return wait_ready(p[0], pid);
	}
	close(p[0]);
	if (setsid() < 0)
		_exit(EX_OSERR);
	if (chdir("/") != 0)
		_exit(EX_OSERR);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
		_exit(EX_OSERR);
	if (null > 2)
		close(null);
	s->ready_fd = p[1];
	exit(devmaild_run(s));
}

int main(int argc, char **argv)
{
	const char *cli_root = NULL;
	char root[DM_PATH_MAX], abs_root[PATH_MAX];
	struct devmaild_settings s;
	struct dm_err e;

	memset(&s, 0, sizeof(s));
	s.ready_fd = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--root") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "devmaild: --root needs a directory\n");
				return usage(stderr, EX_USAGE);
			}
			cli_root = argv[++i];
		} else if (strncmp(a, "--root=", 7) == 0) {
			cli_root = a + 7;
		} else if (strcmp(a, "-f") == 0 || strcmp(a, "--foreground") == 0) {
			s.foreground = true;
		} else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
			s.verbose = true;
		} else if (strcmp(a, "-fv") == 0 || strcmp(a, "-vf") == 0) {
			s.foreground = s.verbose = true;
		} else if (strcmp(a, "--version") == 0) {
			printf("devmaild %s\n", DEVMAIL_VERSION);
			return EX_OK;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			return usage(stdout, EX_OK);
		} else {
			fprintf(stderr, "devmaild: unknown argument %s\n", a);
			return usage(stderr, EX_USAGE);
		}
	}
	dm_err_clear(&e);
	if (paths_root(cli_root, root, sizeof(root), &e) != DM_OK ||
	    paths_ensure(root, &e) != DM_OK) {
		fprintf(stderr, "devmaild: %s\n", e.msg[0] ? e.msg : "no data root");
		return EX_CONFIG;
	}
	/* Absolute: the detached daemon works from /. */
	if (!realpath(root, abs_root)) {
		fprintf(stderr, "devmaild: %s: %s\n", root, strerror(errno));
		return EX_IOERR;
	}
	umask(077);
	s.root = abs_root;
	if (s.foreground)
		return devmaild_run(&s);
	return detach(&s);
}
