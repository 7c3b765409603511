#!/bin/bash
# bench/outbox_drain.sh BUILD_DIR [N] [REPS] [SESSIONS] - the queue path:
# queues N messages (default 200) with devmail-sendmail -odq, then drains
# them with `devmail OUTBOX -a` against aiosmtpd on loopback (STARTTLS
# required, AUTH, the test CA): once under `strace -c -f` (system calls per
# delivered message: fsync, openat, close, ...), then REPS times (default 5)
# for the wall time, each from a copy of the same queue.  SESSIONS sets
# Outbox/Sessions (default: the key's default).  Numbers in docs/outbox.md.
# Needs strace and Debian's /usr/bin/python3 with python3-aiosmtpd.
set -u
BUILD=$(cd "${1:?usage: outbox_drain.sh BUILD_DIR [N] [REPS] [SESSIONS]}" && pwd)
N=${2:-200}; REPS=${3:-5}; SESS=${4:-}
SRC=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/devmail-drain-XXXXXX")
bash "$SRC/tests/lib/pki.sh" "$W/pki" >/dev/null 2>&1 || { echo "pki failed"; exit 1; }
/usr/bin/python3 "$SRC/tests/interop/aiosmtpd_server.py" --tls starttls-required \
	--cert "$W/pki/server.pem" --key "$W/pki/server.key" --user bench:benchpass \
	>"$W/srv.out" 2>"$W/srv.err" &
SPID=$!
trap 'kill $SPID 2>/dev/null; wait $SPID 2>/dev/null; rm -rf "$W"' EXIT
PORT=
for _ in $(seq 100); do
	read -r w PORT <"$W/srv.out" 2>/dev/null && [ "$w" = READY ] && break
	PORT=; sleep 0.1
done
[ -n "$PORT" ] || { echo "aiosmtpd did not start"; exit 1; }
R0="$W/root"; mkdir -p "$R0"
printf 'benchpass\n' | "$BUILD/devmail" --root "$R0" IPCONFIG --mailhost 127.0.0.1 \
	--port "$PORT" --smtps off --starttls on --require-tls on --from dev@example.com \
	--to ops@example.com --username bench --password-stdin >/dev/null ||
	{ echo "IPCONFIG failed"; exit 1; }
"$BUILD/devmail" --root "$R0" REG Email/CAFile = "$W/pki/ca.pem" >/dev/null
[ -n "$SESS" ] && "$BUILD/devmail" --root "$R0" REG Outbox/Sessions = "$SESS" >/dev/null
for i in $(seq "$N"); do
	printf 'Subject: m%d\n\nbody %d\n' "$i" "$i" |
		"$BUILD/devmail-sendmail" --root "$R0" -odq ops@example.com ||
		{ echo "enqueue failed"; exit 1; }
done
cp -a "$R0" "$W/s"
strace -c -f -o "$W/strace.txt" "$BUILD/devmail" --root "$W/s" OUTBOX -a >"$W/out" 2>&1
echo "strace run: exit $?, $(tail -1 "$W/out")"
sent=$(grep -c ': Sent to ' "$W/out")
awk -v n="$sent" '$NF ~ /^(fsync|fdatasync|openat|close|rename|unlink|rmdir|flock|connect)$/ {
	err = (NF == 6) ? $5 : 0
	printf "  %-8s %6d calls (%d failed)  %.3f per delivered message\n", $NF, $4, err, $4 / n }' \
	"$W/strace.txt"
for r in $(seq "$REPS"); do
	rm -rf "$W/t"; cp -a "$R0" "$W/t"; sync
	s=$(date +%s%N)
	"$BUILD/devmail" --root "$W/t" OUTBOX -a >"$W/out" 2>&1
	e=$(date +%s%N)
	echo "wall $(( (e - s) / 1000000 )) ms: $(tail -1 "$W/out")"
done
