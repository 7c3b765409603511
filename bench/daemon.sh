#!/usr/bin/env bash
# bench/daemon.sh BUILD_DIR - devmaild against msmtp and curl, and devmaild idle.
#
# Not a test (nothing here fails a build); results go to docs/PERFORMANCE.md.
#
#   1. N (1000) messages of 1 KiB, from the first one handed over to the last one
#      accepted by the server:
#        devmaild live      devmaild running; `devmail-sendmail RCPT < msg` N times in
#                           a row (each exits 0 once queued: the daemon owns it), until
#                           the daemon has logged N "sent" lines
#        devmaild drain     N queued beforehand (`devmail-sendmail -odq`), then devmaild
#                           started: start to the last "sent" (Outbox/Sessions 1 and 2)
#        msmtp              `msmtp` once per message, N times in a row
#        curl --next        `curl` with --next, B (100) messages per process
#      every client verifies the test CA and authenticates over STARTTLS.  "Accepted"
#      is counted on the server's side: with Postfix, the `status=sent` lines of its
#      log (maillog_file; the discard transport logs one per message right after the
#      queue manager takes the accepted message, so the count trails the 250 by a few
#      ms, alike for every client); with the npm peer, the captured files.  Each run
#      ends when the server has accepted N more messages (bounded: DM_BENCH_WAIT_S,
#      600 s) and is checked to have accepted exactly N.
#   2. devmaild idle: RSS and wake-ups (voluntary context switches of all its threads,
#      from /proc/PID/task/*/status; involuntary ones shown apart) over IDLE (60) s with
#      an empty queue, from 5 s after start (so the clock watch's first look, 60 s after
#      start while the clock is not synchronised, falls inside).
#
# Peer (DM_BENCH_TARGET):
#   postfix    (default) the private Postfix 3.7 + Dovecot SASL of bench/mta.sh on
#              127.0.0.1 (STARTTLS required, AUTH only inside TLS, everything
#              discarded); needs root, postfix, dovecot-core (scripts/setup)
#   npm        the npm smtp-server of tests/node (STARTTLS, AUTH, greeting pause
#              removed, capture to disk): the peer of the first measurements
#   host:port  any MTA, with DM_BENCH_USER, DM_BENCH_PASSWORD_FILE and DM_BENCH_CA (its
#              CA file); nothing counts what it accepts, so devmaild runs end at the
#              daemon's own "sent" lines and msmtp/curl runs when the clients exit
#
# Knobs: DM_BENCH_DAEMON_N (1000), DM_BENCH_CURL_BATCH (100), DM_BENCH_IDLE_S (60),
#        DM_BENCH_SKIP_MSMTP=1 (msmtp takes 0.1-0.2 s per message), DM_BENCH_WAIT_S (600).
# Every process started is stopped by PID; exits 1 only when the harness cannot run.
set -uo pipefail

BUILD=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
case "$BUILD" in /*) ;; *) BUILD="$SRC/$BUILD" ;; esac
N=${DM_BENCH_DAEMON_N:-1000}
BATCH=${DM_BENCH_CURL_BATCH:-100}
IDLE=${DM_BENCH_IDLE_S:-60}
WAIT_S=${DM_BENCH_WAIT_S:-600}
TARGET=${DM_BENCH_TARGET:-postfix}
DEVMAIL="$BUILD/devmail"
SENDMAIL="$BUILD/devmail-sendmail"
DEVMAILD="$BUILD/devmaild"

die() { echo "bench/daemon: $*" >&2; exit 1; }
for p in "$DEVMAIL" "$SENDMAIL" "$DEVMAILD"; do [ -x "$p" ] || die "$p not built"; done
command -v msmtp >/dev/null || die "msmtp not found (run scripts/setup)"
command -v curl >/dev/null || die "curl not found (run scripts/setup)"

work=$(mktemp -d "${TMPDIR:-/tmp}/devmail-bench-daemon-XXXXXX") || die "mktemp failed"
pids=()
DPID=""
cleanup() {
	local p i
	declare -F mta_stop >/dev/null && mta_stop
	for p in "$DPID" "${pids[@]}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; done
	for p in "$DPID" "${pids[@]}"; do
		[ -n "$p" ] || continue
		for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FROM=sender@example.com
TO=rcpt@example.com
CAP=""
PFLOG=""
case "$TARGET" in
postfix)
	[ "$(id -u)" = 0 ] || die "the Postfix peer needs root (or DM_BENCH_TARGET=npm)"
	. "$SRC/bench/mta.sh"
	bash "$SRC/tests/lib/pki.sh" "$work/pki" >/dev/null || die "PKI generation failed"
	CA="$work/pki/ca.pem"
	mta_start "$work/pki/server.pem" "$work/pki/server.key" >"$work/mta.out" ||
		die "the private Postfix + Dovecot did not start (bench/mta.sh)"
	HOST=127.0.0.1
	PORT=$MTA_PORT_STARTTLS
	USER_NAME=$MTA_USER
	PASSWORD=$MTA_PASSWORD
	FROM=sender@$MTA_DOMAIN
	TO=rcpt@$MTA_DOMAIN
	PFLOG="$MTA_DIR/postfix.log"
	PEER="Postfix $(postconf -c "$MTA_DIR/etc" -h mail_version 2>/dev/null) + Dovecot $(dovecot --version 2>/dev/null | cut -d' ' -f1) SASL (bench/mta.sh) on $HOST:$PORT (STARTTLS required, AUTH, discard transport; accepted = status=sent in its log)"
	;;
npm)
	command -v node >/dev/null || die "node not found (run scripts/setup)"
	[ -f "$SRC/tests/node/node_modules/smtp-server/package.json" ] || die "npm smtp-server missing (run scripts/setup)"
	bash "$SRC/tests/lib/pki.sh" "$work/pki" >/dev/null || die "PKI generation failed"
	CA="$work/pki/ca.pem"
	HOST=127.0.0.1
	USER_NAME=bench
	PASSWORD=bench-$$-pw
	CAP="$work/cap"
	mkdir -p "$CAP"
	node "$SRC/tests/node/smtp_server.js" --tls starttls --cert "$work/pki/server.pem" \
		--key "$work/pki/server.key" --user "$USER_NAME:$PASSWORD" --size 1073741824 \
		--capture "$CAP" --quiet >"$work/srv.out" 2>"$work/srv.err" &
	pids+=($!)
	PORT=""
	for _ in $(seq 1 200); do
		PORT=$(awk '/^READY /{print $2; exit}' "$work/srv.out")
		[ -n "$PORT" ] && break
		sleep 0.05
	done
	[ -n "$PORT" ] || { cat "$work/srv.err" >&2; die "smtp-server did not start"; }
	PEER="npm smtp-server $(node -p "require('$SRC/tests/node/node_modules/smtp-server/package.json').version") on $HOST:$PORT (STARTTLS, AUTH, capture to disk; accepted = captured files)"
	;;
*:*)
	HOST=${TARGET%:*}
	PORT=${TARGET##*:}
	USER_NAME=${DM_BENCH_USER:?DM_BENCH_USER}
	PASSWORD=$(cat "${DM_BENCH_PASSWORD_FILE:?DM_BENCH_PASSWORD_FILE}")
	CA=${DM_BENCH_CA:?DM_BENCH_CA}
	PEER="$TARGET (external; nothing counts what it accepts)"
	;;
*) die "DM_BENCH_TARGET is postfix, npm or host:port" ;;
esac
printf 'machine %s login %s password %s\n' "$HOST" "$USER_NAME" "$PASSWORD" >"$work/netrc"
cat >"$work/msmtprc" <<EOF
defaults
auth on
user $USER_NAME
password $PASSWORD
tls on
tls_trust_file $CA
tls_starttls on
from $FROM
logfile
account st
host $HOST
port $PORT
EOF
chmod 600 "$work/netrc" "$work/msmtprc"

# The 1 KiB message, CRLF, with Date and Message-ID (nobody adds anything).
{
	printf 'From: Bench <%s>\r\nTo: <%s>\r\nSubject: devmail bench 1 KiB\r\n' "$FROM" "$TO"
	printf 'Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <bench@example.com>\r\n'
	printf 'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n'
	for i in $(seq 1 14); do printf 'line %02d of the benchmark body, sixty-odd characters long....\r\n' "$i"; done
} >"$work/m1k.eml"
head -c 1024 "$work/m1k.eml" >"$work/m1k.tmp"; printf '\r\n' >>"$work/m1k.tmp"; mv "$work/m1k.tmp" "$work/m1k.eml"

ld() { cut -d' ' -f1-3 /proc/loadavg; }
now_ms() { local t=$EPOCHREALTIME; echo $(( ${t%.*} * 1000 + 10#${t#*.} / 1000 )); }
# accepted: how many messages the server has accepted so far; "" when it cannot tell.
accepted() {
	local n
	if [ -n "$PFLOG" ]; then
		n=$(grep -ac ' status=sent ' "$PFLOG" 2>/dev/null); echo "${n:-0}"
	elif [ -n "$CAP" ]; then
		find "$CAP" -maxdepth 1 -name '*.eml' | wc -l
	fi
}
sent_lines() { local n; n=$(grep -ac ', sent ' "$1/log/system.log" 2>/dev/null); echo "${n:-0}"; }
# wait_accepted BEFORE [ROOT]: until the server accepted N more messages than BEFORE
# (or, when it cannot tell, until the daemon on ROOT logged N "sent" lines); at most
# WAIT_S seconds.  Polls every 10 ms.
wait_accepted() {
	local before=$1 root=${2:-} end=$((SECONDS + WAIT_S)) a
	while ((SECONDS < end)); do
		if [ -n "$before" ]; then
			a=$(accepted)
			(( a - before >= N )) && return 0
		elif [ -n "$root" ]; then
			[ "$(sent_lines "$root")" -ge "$N" ] && return 0
		else
			return 0
		fi
		sleep 0.01
	done
	echo "  WARNING: not all $N accepted within $WAIT_S s" >&2
	return 1
}
# check_accepted BEFORE WHAT: after a short settle, the server accepted exactly N.
check_accepted() {
	[ -n "$1" ] || return 0
	sleep 0.3
	local got=$(( $(accepted) - $1 ))
	[ "$got" -eq "$N" ] || echo "  WARNING: $2: the server accepted $got messages, not $N"
}

# make_root NAME SESSIONS: a data root with the account (password through stdin).
make_root() {
	local root="$work/$1"
	printf '%s\n' "$PASSWORD" | "$DEVMAIL" --root "$root" IPCONFIG --mailhost "$HOST" \
		--port "$PORT" --starttls on --require-tls on --from "$FROM" --to "$TO" \
		--username "$USER_NAME" --password-stdin >/dev/null || die "IPCONFIG failed"
	"$DEVMAIL" --root "$root" REG Email/CAFile = "$CA" >/dev/null || die "REG failed"
	"$DEVMAIL" --root "$root" REG Outbox/Sessions = "$2" >/dev/null || die "REG failed"
	echo "$root"
}
# start_daemon ROOT: devmaild --foreground in the background; waits for "ready".
start_daemon() {
	"$DEVMAILD" --root "$1" --foreground 2>>"$work/devmaild.err" &
	DPID=$!
	for _ in $(seq 1 300); do
		grep -aq "devmaild: ready (" "$1/log/system.log" 2>/dev/null && return 0
		kill -0 "$DPID" 2>/dev/null || break
		sleep 0.02
	done
	die "devmaild did not start"
}
stop_daemon() {
	[ -n "$DPID" ] || return 0
	kill -TERM "$DPID" 2>/dev/null
	wait "$DPID" 2>/dev/null
	DPID=""
}
echo "devmaild benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPU, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "peer: $PEER"
echo "clients: $DEVMAILD, $(msmtp --version | head -n 1), $(curl --version | head -n 1 | cut -d' ' -f1-2)"
echo "N=$N messages of 1 KiB; curl --next batches of $BATCH"
echo

# ---- 1a. devmaild live -----------------------------------------------------------------
echo "[1/5] devmaild live: $N x devmail-sendmail while the daemon runs (Outbox/Sessions 2) (load $(ld))"
root=$(make_root live 2)
start_daemon "$root"
c0=$(accepted)
t0=$(now_ms)
for ((i = 0; i < N; i++)); do
	"$SENDMAIL" --root "$root" "$TO" <"$work/m1k.eml" || die "devmail-sendmail failed"
done
tq=$(now_ms)
wait_accepted "$c0" "$root"
t1=$(now_ms)
live_ms=$((t1 - t0))
live_q_ms=$((tq - t0))
check_accepted "$c0" "devmaild live"
live_rss=$(awk '/VmRSS/ {print $2}' "/proc/$DPID/status" 2>/dev/null)
stop_daemon

# ---- 1b. devmaild drain ------------------------------------------------------------------
declare -A drain_ms
for s in 1 2; do
	echo "[$((1 + s))/5] devmaild drain: $N queued beforehand, Outbox/Sessions $s (load $(ld))"
	root=$(make_root "drain$s" "$s")
	for ((i = 0; i < N; i++)); do
		"$SENDMAIL" --root "$root" -odq "$TO" <"$work/m1k.eml" || die "devmail-sendmail -odq failed"
	done
	c0=$(accepted)
	t0=$(now_ms)
	start_daemon "$root"
	wait_accepted "$c0" "$root"
	t1=$(now_ms)
	drain_ms[$s]=$((t1 - t0))
	check_accepted "$c0" "devmaild drain $s"
	stop_daemon
done

# ---- 1c. msmtp once per message -----------------------------------------------------------
msmtp_ms=n/a
if [ "${DM_BENCH_SKIP_MSMTP:-0}" != 1 ]; then
	echo "[4/5] msmtp: $N processes in a row (load $(ld))"
	c0=$(accepted)
	t0=$(now_ms)
	for ((i = 0; i < N; i++)); do
		msmtp -C "$work/msmtprc" -a st "$TO" <"$work/m1k.eml" || die "msmtp failed"
	done
	wait_accepted "$c0"
	t1=$(now_ms)
	msmtp_ms=$((t1 - t0))
	check_accepted "$c0" "msmtp"
fi

# ---- 1d. curl --next batches -----------------------------------------------------------------
echo "[5/5] curl: $((N / BATCH)) processes of $BATCH messages (--next) (load $(ld))"
curl_batch() {
	local args=() i
	for ((i = 1; i <= $1; i++)); do
		((i > 1)) && args+=(--next)
		args+=(--url "smtp://$HOST:$PORT" --ssl-reqd --cacert "$CA" --netrc-file "$work/netrc"
			--mail-from "$FROM" --mail-rcpt "$TO" -T "$work/m1k.eml")
	done
	curl -sS "${args[@]}" >/dev/null
}
c0=$(accepted)
t0=$(now_ms)
for ((b = 0; b < N / BATCH; b++)); do curl_batch "$BATCH" || die "curl failed"; done
wait_accepted "$c0"
t1=$(now_ms)
curl_ms=$((t1 - t0))
check_accepted "$c0" "curl"

# ---- 2. idle -----------------------------------------------------------------------------------
echo "idle: devmaild with an empty queue, $IDLE s, measured from 5 s after start (load $(ld))"
root="$work/idle"
start_daemon "$root"
sleep 5
# A wake-up is a voluntary context switch (asleep in poll, woken, asleep again);
# involuntary ones are preemptions while it runs, which a loaded machine adds.
ctx() { cat /proc/"$DPID"/task/*/status 2>/dev/null | awk -v k="$1" '$1 == k ":" {s += $2} END {print s + 0}'; }
threads0=$(awk '/Threads/ {print $2}' "/proc/$DPID/status")
w0=$(ctx voluntary_ctxt_switches); n0=$(ctx nonvoluntary_ctxt_switches)
sleep "$IDLE"
w1=$(ctx voluntary_ctxt_switches); n1=$(ctx nonvoluntary_ctxt_switches)
idle_rss=$(awk '/VmRSS/ {print $2}' "/proc/$DPID/status")
idle_wakeups=$((w1 - w0))
idle_preempt=$((n1 - n0))
clock_state=$(grep -ao 'ready (.*)' "$root/log/system.log" | head -1)
stop_daemon

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || a + 0 == 0) print "n/a"; else printf "%.2f", b / a }'; }
per() { awk -v t="$1" -v n="$N" 'BEGIN { if (t == "n/a") print "n/a"; else printf "%.2f", t / n }'; }
d2=${drain_ms[2]}
echo "end (load $(ld))"
echo
echo "| $N messages of 1 KiB, handed over -> last accepted | total ms | ms/message | / devmaild live | / devmaild drain (Sessions 2) |"
echo "| --- | ---: | ---: | ---: | ---: |"
echo "| devmaild live (devmail-sendmail x $N while it runs; Sessions 2) | $live_ms | $(per $live_ms) | 1.00 | $(ratio $d2 $live_ms) |"
echo "|   of which handing over ($N devmail-sendmail processes) | $live_q_ms | $(per $live_q_ms) | | |"
echo "| devmaild drain, queued beforehand, Outbox/Sessions 1 | ${drain_ms[1]} | $(per ${drain_ms[1]}) | $(ratio $live_ms ${drain_ms[1]}) | $(ratio $d2 ${drain_ms[1]}) |"
echo "| devmaild drain, queued beforehand, Outbox/Sessions 2 | $d2 | $(per $d2) | $(ratio $live_ms $d2) | 1.00 |"
echo "| msmtp, one process per message | $msmtp_ms | $(per $msmtp_ms) | $(ratio $live_ms $msmtp_ms) | $(ratio $d2 $msmtp_ms) |"
echo "| curl --next, $BATCH per process | $curl_ms | $(per $curl_ms) | $(ratio $live_ms $curl_ms) | $(ratio $d2 $curl_ms) |"
echo
echo "devmaild RSS after the live run: ${live_rss:-?} KiB"
echo "devmaild idle: RSS $idle_rss KiB ($(awk -v k="$idle_rss" 'BEGIN {printf "%.1f", k / 1024}') MiB; goal <= 8 MiB),"
echo "  $threads0 threads, $idle_wakeups wake-ups (voluntary context switches; $idle_preempt involuntary) in $IDLE s; $clock_state"
echo "  (the clock watch looks once 60 s after start while the clock is not synchronised;"
echo "   see src/daemon/clockwatch.h)"
[ -n "$CAP" ] && echo "server captured $(accepted) messages in all"
if [ -n "$PFLOG" ]; then
	echo "Postfix: $(accepted) status=sent lines in all, $(grep -ac 'status=deferred\|status=bounced' "$PFLOG") deferred/bounced, $(mta_queue_count) left in its queue"
fi
exit 0
