#!/usr/bin/env bash
# test_cmd_io.sh - console commands do their I/O through the shell's io only.
#   A command (src/shell/cmd_*.c) reads and writes through the struct shell_io
#   its caller gave the shell (shell/io.h), so it runs the same on a terminal,
#   in a pipe, in memory and in a Telnet session.  It must not name the
#   process's standard streams or descriptors, the terminal, or signals:
#   STDIN_FILENO STDOUT_FILENO STDERR_FILENO stdin stdout stderr fileno
#   isatty ttyname tcgetattr tcsetattr termios getpass signal( sigaction
#   raise( printf puts putchar getchar perror, nor include <termios.h> or
#   <signal.h>.  Comments and string literals are ignored (the option
#   "--password-stdin" and messages about standard input are fine).
#   The checker is first run on two planted files, so that it cannot pass
#   by matching nothing.  Prints one line per violation; exit 1 if any.
set -u
src="${DEVMAIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/src"
[ -d "$src/shell" ] || { echo "test_cmd_io: no source tree at $src" >&2; exit 2; }
command -v perl >/dev/null || { echo "test_cmd_io: perl is needed" >&2; exit 2; }

WORDS='STDIN_FILENO|STDOUT_FILENO|STDERR_FILENO|stdin|stdout|stderr|fileno|isatty|ttyname|tcgetattr|tcsetattr|termios|getpass|sigaction|printf|vprintf|puts|putchar|getchar|perror'
CALLS='signal|raise'

# The C text of a file with comments and string/char literals blanked out;
# line breaks are kept so that line numbers stay right.
strip_c() {
	perl -0777 -pe '
		s{ /\*.*?\*/ | //[^\n]* | "(?:\\.|[^"\\\n])*" | '"'"'(?:\\.|[^'"'"'\\\n])*'"'"' }
		 { my $m = $&; $m =~ s/[^\n]//g; $m }gsex' "$1"
}

# Prints "FILE:LINE: text" for each violation in one file; status 1 if any.
check_file() {
	local f=$1 label=$2 hits
	hits=$(strip_c "$f" | grep -nE \
		"(^|[^A-Za-z0-9_])($WORDS)([^A-Za-z0-9_]|\$)|(^|[^A-Za-z0-9_])($CALLS)[[:space:]]*\\(|#[[:space:]]*include[[:space:]]*<(termios|signal)\\.h>")
	[ -z "$hits" ] && return 0
	while IFS= read -r h; do
		echo "test_cmd_io: $label:${h%%:*}: ${h#*:}"
	done <<<"$hits"
	return 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/devmail-cmdio-XXXXXX") || exit 2
trap 'rm -rf -- "$tmp"' EXIT

# The checker must catch what it is for ...
cat >"$tmp/cmd_bad.c" <<'EOF'
#include <termios.h>
static int a(void) { return isatty(STDIN_FILENO); }
static void b(void) { fprintf(stderr, "x"); signal (SIGINT, SIG_IGN); }
static int c(char *p) { return getc(stdin) + (p != 0); }
EOF
n=$(check_file "$tmp/cmd_bad.c" planted | wc -l)
if [ "$n" -ne 4 ]; then
	echo "test_cmd_io: the checker found $n of the 4 planted lines:"
	check_file "$tmp/cmd_bad.c" planted
	exit 2
fi
# ... and leave alone what only looks like it.
cat >"$tmp/cmd_good.c" <<'EOF'
/* reads stdin through the io; isatty() is the io's business */
static const char *opt = "--password-stdin", *msg = "the body on stdin";
static int shell_input_free_stdin_like(void) { return 's' + '"'; }
static int sendmail_input_body(int stdin_fd) { return stdin_fd; } // stdout
EOF
if ! check_file "$tmp/cmd_good.c" planted >/dev/null; then
	echo "test_cmd_io: the checker flags text it must ignore:"
	check_file "$tmp/cmd_good.c" planted
	exit 2
fi

bad=0 checked=0
for f in "$src"/shell/cmd_*.c; do
	[ -e "$f" ] || continue
	check_file "$f" "src/shell/${f##*/}" || bad=1
	checked=$((checked + 1))
done
[ "$checked" -ge 5 ] || { echo "test_cmd_io: only $checked command files found"; exit 2; }
if [ "$bad" -ne 0 ]; then
	echo "test_cmd_io: FAILED (commands read and write through shell_io: shell/io.h)"
	exit 1
fi
echo "test_cmd_io: $checked command files do their I/O through shell_io"
