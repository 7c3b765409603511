#!/usr/bin/env bash
# test_demo.sh - `make demo`'s script (scripts/demo) against the built binaries.
#
# Runs scripts/demo with $DEVMAIL_BUILD_DIR under a private TMPDIR and checks:
# exit status 0; devmaild started and the boot mail ("demo-unit booted")
# arrived with its TLS result line (STARTTLS, certificate verified, AUTH); the
# two mails queued while the server was down waited in OUTBOX with a next try
# and were delivered by devmaild by itself once the server was back (the
# attachment's SHA-256 match line, the devmail-sendmail message, exit 0 from
# devmail-sendmail); `Email/Password = <sealed>` from REG Email; the password
# never printed; every PID the demo says it started is gone; and the demo
# removed its temporary directory.  Bounded by `timeout`.
set -uo pipefail

SRC=${DEVMAIL_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${DEVMAIL_BUILD_DIR:-$SRC/build}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_demo-XXXXXX")
trap 'rm -rf "$TMP"' EXIT

passed=0
failed=0
check() {   # check NAME COMMAND...
	local name=$1
	shift
	if "$@"; then
		passed=$((passed + 1))
		echo "ok   $name"
	else
		failed=$((failed + 1))
		echo "FAIL $name"
	fi
}
has() { grep -qE -- "$1" "$TMP/out"; }

TMPDIR="$TMP" timeout -k 5 120 bash "$SRC/scripts/demo" "$BUILD" >"$TMP/out" 2>&1
rc=$?
sed 's/^/  | /' "$TMP/out"
echo

check "demo exits 0 (got $rc)" test "$rc" -eq 0
check "devmaild started" has '^demo: started devmaild \(pid [0-9]+\)$'
check "the boot mail arrived: Subject: demo-unit booted" has '^  Subject: demo-unit booted$'
check "boot mail body names the host and the clock" has '^  \| Clock: +(synchronised \(NTP\)|not synchronised|unknown)$'
check "result line: Sent to ... STARTTLS ... certificate verified ... AUTH" \
	has '^TLS result line: Sent to ops@example\.com via localhost:[0-9]+ \(STARTTLS, TLS1\.[23], .*certificate verified.*AUTH [A-Z0-9-]+\): 250'
check "server saw AUTH demo over TLS" has '^  AUTH demo$'
check "devmail-sendmail exited 0 with devmaild serving the root" \
	has '^\[exit status 0: a devmaild serves this data root'
check "OUTBOX showed the two messages waiting with a next try" \
	has '^2 messages queued'
check "devmaild delivered them by itself after the server came back" \
	has '^demo: devmaild delivered both by itself, [0-9]+ s after the server came back$'
check "attachment SHA-256 match line" \
	has '^SHA-256 match: tank-levels\.csv received intact \([0-9a-f]{64}\)$'
check "devmail-sendmail's message arrived too" \
	has '\(devmail-sendmail, delivered by devmaild\): Subject: nightly backup done$'
check "REG Email shows Email/Password = <sealed>" has '^Email/Password = <sealed>$'
check "demo stopped devmaild by PID" has '^demo: stopped devmaild \(pid [0-9]+\)$'
check "demo reports no failed check" bash -c '! grep -q "demo: FAILED" "$1"' _ "$TMP/out"
check "demo ends with OK" has '^demo: OK - boot mail and queued mail delivered by devmaild'

# Every process the demo said it started must be gone.
pids=$(grep -oE '\(pid [0-9]+\)' "$TMP/out" | grep -oE '[0-9]+' | sort -u)
check "demo printed the PIDs it started" test -n "$pids"
for pid in $pids; do
	gone() { ! kill -0 "$1" 2>/dev/null; }
	check "pid $pid no longer running" gone "$pid"
	# Do not leave the demo's server behind when the check failed.
	if grep -qaE 'aiosmtpd_server|devmaild' "/proc/$pid/cmdline" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null
	fi
done
check "demo removed its temporary directory" \
	test -z "$(ls -A "$TMP" | grep -vx out)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
