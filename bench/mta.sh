#!/usr/bin/env bash
# bench/mta.sh - a private Postfix with Dovecot SASL on 127.0.0.1, for the benchmark.
#
# Sourced (bench/run, tests):
#   . bench/mta.sh
#   mta_start CERT KEY      # starts both; sets MTA_DIR MTA_PORT_STARTTLS MTA_PORT_SMTPS
#                           # MTA_USER MTA_PASSWORD MTA_PASSFILE MTA_DOMAIN MTA_PIDS
#   ...                     # returns non-zero (and says why on stderr) when it cannot
#   mta_stop                # stops both by PID (bounded waits), removes MTA_DIR
# Run (by hand):
#   bash bench/mta.sh [PKI_DIR]  # makes a test CA with tests/lib/pki.sh when PKI_DIR
#                                # has none, prints READY lines, runs until INT/TERM
#                                # or until stdin reaches EOF, then stops both
#
# Everything lives in a temp dir (MTA_DIR, mode 0711 so that the postfix and dovecot
# users can reach their files): Postfix's config_directory, queue_directory and
# data_directory, Dovecot's base_dir/state_dir, the passwd-file with one user and a
# generated password, the logs (postfix.log, dovecot.log). No system service is used
# or touched; both run in the foreground (Postfix: master -s in its own session,
# Dovecot: dovecot -F) in the background of the caller, and only their PIDs are
# signalled.
#
# Postfix: two smtpd services on free high ports of 127.0.0.1:
#   MTA_PORT_STARTTLS  STARTTLS required (smtpd_tls_security_level=encrypt), AUTH only
#                      after it (smtpd_tls_auth_only=yes)
#   MTA_PORT_SMTPS     implicit TLS (smtpd_tls_wrappermode=yes)
# AUTH through Dovecot (smtpd_sasl_type=dovecot, socket in the queue's private/).
# Relaying needs AUTH (permit_sasl_authenticated, reject); every delivery goes to the
# discard transport, so nothing piles up in the queue. PIPELINING, CHUNKING, 8BITMIME,
# SMTPUTF8 stay as Postfix has them by default. message_size_limit is 1 GiB.
#
# Knobs: DM_BENCH_MTA_MECHS (Dovecot auth_mechanisms, default "plain login"; add
#        scram-sha-256 to have Postfix offer it), DM_BENCH_MTA_DOMAIN (example.test).

MTA_SBIN=${MTA_SBIN:-/usr/lib/postfix/sbin}
MTA_DIR=""
MTA_PIDS=()

mta__err() { echo "mta: $*" >&2; }

# mta__free_port: prints a TCP port of 127.0.0.1 that is free now (the kernel's pick).
mta__free_port() {
	/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# mta__wait_smtp PORT TLS(0|1) TRIES: waits (TRIES tries 0.1 s apart, 15 s at most) until
# PORT accepts a connection; without TLS also until the 220 greeting arrives.
mta__wait_smtp() {
	local port=$1 tls=$2 tries=$3 i line end=$((SECONDS + 15))
	for ((i = 0; i < tries && SECONDS < end; i++)); do
		if { exec 7<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
			if [ "$tls" = 1 ]; then
				exec 7>&-
				return 0
			fi
			line=""
			IFS= read -r -t 1 line <&7
			printf 'QUIT\r\n' >&7 2>/dev/null
			exec 7>&-
			case "$line" in 220*) return 0 ;; esac
		fi
		mta__alive || return 1
		sleep 0.1
	done
	return 1
}

# mta__alive: both daemons still running
mta__alive() {
	local p
	for p in "${MTA_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || return 1; done
	return 0
}

mta__show_logs() {
	local f
	for f in "$MTA_DIR"/postfix.log "$MTA_DIR"/postfix.err "$MTA_DIR"/dovecot.log "$MTA_DIR"/dovecot.err; do
		[ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
	done
}

# mta_start CERT KEY: see the top of the file.
mta_start() {
	local cert=$1 key=$2 d q i
	local mechs=${DM_BENCH_MTA_MECHS:-plain login}
	MTA_DOMAIN=${DM_BENCH_MTA_DOMAIN:-example.test}
	[ -x "$MTA_SBIN/master" ] || { mta__err "postfix not installed ($MTA_SBIN/master; run scripts/setup)"; return 1; }
	command -v dovecot >/dev/null || { mta__err "dovecot not installed (run scripts/setup)"; return 1; }
	[ "$(id -u)" = 0 ] || { mta__err "needs root (postfix and dovecot drop to their own users)"; return 1; }
	id postfix >/dev/null 2>&1 && id dovecot >/dev/null 2>&1 || { mta__err "users postfix/dovecot missing"; return 1; }
	[ -r "$cert" ] && [ -r "$key" ] || { mta__err "certificate or key missing: $cert $key"; return 1; }

	MTA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/devmail-mta-XXXXXX") || return 1
	d=$MTA_DIR
	chmod 711 "$d"
	mkdir -p "$d/etc" "$d/spool" "$d/data" "$d/dovecot/run" "$d/dovecot/state"
	chown postfix:postfix "$d/data"
	chmod 755 "$d/dovecot/run"
	MTA_PIDS=()
	MTA_USER=bench
	MTA_PASSWORD="mta-$(head -c 12 /dev/urandom | base64 | tr '+/' 'xy')"
	MTA_PASSFILE="$d/password"
	printf '%s' "$MTA_PASSWORD" >"$MTA_PASSFILE"
	chmod 600 "$MTA_PASSFILE"
	MTA_PORT_STARTTLS=$(mta__free_port) && MTA_PORT_SMTPS=$(mta__free_port) || { mta__err "no free port"; return 1; }
	[ "$MTA_PORT_STARTTLS" != "$MTA_PORT_SMTPS" ] || MTA_PORT_SMTPS=$(mta__free_port)
	# smtpd reads the key while still root (before its privileges drop).
	install -m 644 "$cert" "$d/etc/server.pem"
	install -m 600 "$key" "$d/etc/server.key"

	# ---- Dovecot: auth only, its client socket in Postfix's queue (private/auth)
	q=$d/spool
	mkdir -p "$q/private"
	chown postfix:root "$q/private"
	chmod 700 "$q/private"
	printf '%s:{PLAIN}%s\n' "$MTA_USER" "$MTA_PASSWORD" >"$d/dovecot/passwd"
	chown dovecot:root "$d/dovecot/passwd"
	chmod 600 "$d/dovecot/passwd"
	cat >"$d/dovecot/dovecot.conf" <<EOF
# private Dovecot for bench/mta.sh: SASL for Postfix, no IMAP/POP
protocols = none
listen = 127.0.0.1
base_dir = $d/dovecot/run
state_dir = $d/dovecot/state
instance_name = devmail-bench-$$
log_path = $d/dovecot.log
ssl = no
auth_mechanisms = $mechs
disable_plaintext_auth = yes
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $d/dovecot/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
service auth {
  unix_listener $q/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
service anvil {
  chroot =
}
EOF
	dovecot -F -c "$d/dovecot/dovecot.conf" >"$d/dovecot.out" 2>"$d/dovecot.err" </dev/null &
	MTA_PIDS+=($!)
	for ((i = 0; i < 100; i++)); do
		[ -S "$q/private/auth" ] && break
		mta__alive || break
		sleep 0.05
	done
	if [ ! -S "$q/private/auth" ]; then
		mta__err "dovecot did not create its auth socket"
		mta__show_logs
		return 1
	fi

	# ---- Postfix
	cat >"$d/etc/main.cf" <<EOF
# private Postfix for bench/mta.sh
compatibility_level = 3.6
queue_directory = $q
data_directory = $d/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $d/postfix.log
maillog_file_prefixes = $d
myhostname = mta.$MTA_DOMAIN
mydomain = $MTA_DOMAIN
myorigin = \$myhostname
mydestination =
relay_domains = $MTA_DOMAIN
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
alias_maps =
alias_database =
local_recipient_maps =
biff = no
# deliveries go nowhere
default_transport = discard:bench
relay_transport = discard:bench
local_transport = discard:bench
virtual_transport = discard:bench
message_size_limit = 1073741824
mailbox_size_limit = 0
# submission: AUTH through Dovecot, only inside TLS; relaying needs AUTH
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_tls_auth_only = yes
smtpd_tls_chain_files = $d/etc/server.key, $d/etc/server.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 0
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions =
EOF
	cat >"$d/etc/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$MTA_PORT_STARTTLS inet n - n - - smtpd
  -o smtpd_tls_security_level=encrypt
127.0.0.1:$MTA_PORT_SMTPS inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
	# Queue subdirectories and their owners (post-install, as "postfix start" does).
	if ! postfix -c "$d/etc" check >"$d/postfix.err" 2>&1; then
		mta__err "postfix check failed"
		mta__show_logs
		return 1
	fi
	# master -s: foreground, its own session (SIGTERM reaches its process group only).
	"$MTA_SBIN/master" -c "$d/etc" -s >>"$d/postfix.out" 2>>"$d/postfix.err" </dev/null &
	MTA_PIDS+=($!)
	if ! mta__wait_smtp "$MTA_PORT_STARTTLS" 0 100 || ! mta__wait_smtp "$MTA_PORT_SMTPS" 1 50; then
		mta__err "postfix did not answer on 127.0.0.1:$MTA_PORT_STARTTLS / $MTA_PORT_SMTPS"
		mta__show_logs
		return 1
	fi
	echo "READY $MTA_PORT_STARTTLS starttls"
	echo "READY $MTA_PORT_SMTPS smtps"
	return 0
}

# mta_stop: TERM to each PID, up to 3 s each, then KILL; removes MTA_DIR.
mta_stop() {
	local p i
	for p in "${MTA_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${MTA_PIDS[@]}"; do
		for ((i = 0; i < 30; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	MTA_PIDS=()
	[ -n "$MTA_DIR" ] && [ -d "$MTA_DIR" ] && rm -rf "$MTA_DIR"
	MTA_DIR=""
}

# mta_queue_count: messages in Postfix's queue now (0 when deliveries keep up).
mta_queue_count() {
	find "$MTA_DIR/spool/incoming" "$MTA_DIR/spool/active" "$MTA_DIR/spool/deferred" \
		"$MTA_DIR/spool/hold" "$MTA_DIR/spool/maildrop" -type f 2>/dev/null | wc -l
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -uo pipefail
	src=$(cd "$(dirname "$0")/.." && pwd)
	pki=${1:-}
	own_pki=""
	if [ -z "$pki" ]; then
		pki=$(mktemp -d "${TMPDIR:-/tmp}/devmail-mta-pki-XXXXXX") || exit 1
		own_pki=$pki
	fi
	trap 'mta_stop; [ -n "$own_pki" ] && rm -rf "$own_pki"' EXIT
	trap 'exit 130' INT TERM
	bash "$src/tests/lib/pki.sh" "$pki" || { mta__err "PKI generation failed"; exit 1; }
	mta_start "$pki/server.pem" "$pki/server.key" || exit 1
	echo "CA $pki/ca.pem"
	echo "USER $MTA_USER"
	echo "PASSWORD_FILE $MTA_PASSFILE"
	echo "DIR $MTA_DIR"
	# Runs until a signal or until stdin ends (at most a day).
	read -r -t 86400 _ || true
fi
