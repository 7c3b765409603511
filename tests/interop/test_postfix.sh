#!/usr/bin/env bash
# test_postfix.sh - the queue path against a real MTA: Debian's Postfix with Dovecot
# SASL on 127.0.0.1 (bench/mta.sh: STARTTLS required + AUTH, and implicit TLS; a
# test CA from tests/lib/pki.sh), driven by the devmail console as a user runs it.
#   1. Outbox/Sessions 1, 10 queued: OUTBOX -a -v sends them as BDAT ... LAST
#      (Postfix offers CHUNKING), no DATA, over ONE connection; Postfix's cleanup
#      logs each Message-ID exactly once.
#   2. Outbox/Sessions 2, 20 queued: two connections, each message once.
#   3. SENDMAIL over implicit TLS (Email/SMTPS on): sent, the result line says TLS.
# Postfix and Dovecot are stopped by PID (mta_stop) whatever happens; every wait is
# bounded. Needs root (Postfix's master); CI runs as root.
set -u
SRC=${DEVMAIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${DEVMAIL_BUILD_DIR:-$SRC/build}
DMC=$BUILD/devmail
pass=0 fail=0
check() { # NAME COND-STATUS [DETAIL]
	if [ "$2" -eq 0 ]; then pass=$((pass + 1)); echo "ok   $1"
	else fail=$((fail + 1)); echo "FAIL $1${3:+: $3}"; fi
}
[ -x "$DMC" ] || { echo "test_postfix: $DMC not built"; exit 1; }
[ -x /usr/lib/postfix/sbin/master ] || { echo "test_postfix: postfix missing (scripts/setup installs it)"; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "test_postfix: needs root to run Postfix's master"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/devmail-pftest-XXXXXX") || exit 1
. "$SRC/bench/mta.sh"
cleanup() { mta_stop; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

bash "$SRC/tests/lib/pki.sh" "$work/pki" >/dev/null 2>&1 || { echo "test_postfix: pki.sh failed"; exit 1; }
mta_start "$work/pki/chain.pem" "$work/pki/server.key" >/dev/null || { echo "test_postfix: Postfix did not start"; exit 1; }
LOG=$MTA_DIR/postfix.log
R=$work/root
dm() { "$DMC" --root "$R" "$@"; }
dm IPCONFIG --mailhost 127.0.0.1 --port "$MTA_PORT_STARTTLS" --smtps off --require-tls on \
	--from sender@example.test --to rcpt@example.test --username "$MTA_USER" \
	--password-stdin <"$MTA_PASSFILE" >/dev/null || { echo "test_postfix: IPCONFIG failed"; exit 1; }
dm REG Email/CAFile = "$work/pki/ca.pem" >/dev/null || exit 1

# log_count PATTERN: lines of Postfix's log matching the ERE
log_count() { grep -cE "$1" "$LOG" 2>/dev/null || true; }
# wait_log PATTERN N: until at least N lines match (10 s at most)
wait_log() {
	local i
	for ((i = 0; i < 100; i++)); do
		[ "$(log_count "$1")" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
# queue N TAG: N messages queued with SENDMAIL -q, subjects "TAG k"
queue() {
	local k
	for ((k = 1; k <= $1; k++)); do
		dm SENDMAIL -q -s "$2 $k" -m "message $k of $2" >/dev/null || return 1
	done
}
# ids_once: every Message-ID in cleanup's lines appears exactly once
ids_once() {
	local dup
	dup=$(grep -oE 'cleanup\[[0-9]+\]: [0-9A-F]+: message-id=<[^>]*>' "$LOG" |
		sed 's/.*message-id=//' | sort | uniq -d)
	[ -z "$dup" ] || { echo "duplicates: $dup"; return 1; }
}
CONN='smtpd\[[0-9]+\]: connect from'
IDS='cleanup\[[0-9]+\]: [0-9A-F]+: message-id='

# ---- 1. one session, BDAT
dm REG Outbox/Sessions = 1 >/dev/null
queue 10 one; check "1: 10 queued" $?
c0=$(log_count "$CONN"); m0=$(log_count "$IDS")
dm OUTBOX -a -v >"$work/out1" 2>&1; rc=$?
check "1: OUTBOX -a exits 0" $rc "$(tail -3 "$work/out1")"
check "1: 10 result lines 'Sent to'" $([ "$(grep -c ': Sent to ' "$work/out1")" -eq 10 ]; echo $?)
grep -qE '^>> BDAT [0-9]+ LAST' "$work/out1"; check "1: the dialogue shows BDAT n LAST" $?
grep -qE '^>> MAIL FROM' "$work/out1" && ! grep -qE '^>> DATA' "$work/out1"; check "1: no DATA command (CHUNKING used)" $?
wait_log "$IDS" $((m0 + 10)); check "1: Postfix's cleanup took 10 messages" $?
check "1: one connection" $([ $(( $(log_count "$CONN") - c0 )) -eq 1 ]; echo $?) "$(( $(log_count "$CONN") - c0 ))"
ids_once; check "1: each Message-ID once" $?
check "1: the outbox is empty" $(dm OUTBOX | grep -q 'empty'; echo $?)

# ---- 2. two sessions
dm REG Outbox/Sessions = 2 >/dev/null
queue 20 two; check "2: 20 queued" $?
c0=$(log_count "$CONN"); m0=$(log_count "$IDS")
dm OUTBOX -a >"$work/out2" 2>&1; rc=$?
check "2: OUTBOX -a exits 0" $rc "$(tail -3 "$work/out2")"
check "2: 20 result lines 'Sent to'" $([ "$(grep -c ': Sent to ' "$work/out2")" -eq 20 ]; echo $?)
wait_log "$IDS" $((m0 + 20)); check "2: Postfix's cleanup took 20 messages" $?
n=$(( $(log_count "$CONN") - c0 ))
check "2: two connections" $([ "$n" -eq 2 ]; echo $?) "$n"
ids_once; check "2: each Message-ID once" $?

# ---- 3. implicit TLS
dm IPCONFIG --port "$MTA_PORT_SMTPS" --smtps on >/dev/null; check "3: IPCONFIG --smtps on" $?
dm SENDMAIL -s "implicit" -m "over implicit TLS" >"$work/out3" 2>&1; rc=$?
check "3: SENDMAIL over implicit TLS exits 0" $rc "$(cat "$work/out3")"
grep -q 'Sent to rcpt@example.test' "$work/out3" && grep -q 'TLS1\.[23]' "$work/out3" &&
	grep -q 'certificate verified' "$work/out3"
check "3: the result line names TLS and a verified certificate" $? "$(cat "$work/out3")"

echo "test_postfix: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
