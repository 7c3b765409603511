#!/usr/bin/env bash
# test_install.sh - what `make install` puts where, and that it is usable.
#
# `make install` is `cmake --install BUILD --prefix PREFIX` with DESTDIR in the
# environment (after the build); this runs the same install of the build under
# test into a temporary DESTDIR, twice (--prefix /usr and /opt/devmail), and
# checks: the programs (devmail in bin, devmail-sendmail and devmaild in sbin),
# the man pages (devmail(1), devmail-registry(5), devmail-sendmail(8),
# devmaild(8), each clean under `groff -ww`), the static libraries, headers
# and devmail.pc (a program built with `pkg-config --cflags --libs devmail`
# links and runs), the systemd unit (ExecStart naming the prefix, the
# hardening the issue asks for) and `systemd-analyze verify` on it without a
# single warning (ExecStart pointed into DESTDIR so that it exists).
# No process is left running; everything lives under one temporary directory.
set -uo pipefail

SRC=${DEVMAIL_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${DEVMAIL_BUILD_DIR:-$SRC/build}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/devmail-install-XXXXXX")
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
has() { grep -qxF -- "$2" "$1"; }

for prefix in /usr /opt/devmail; do
	D="$TMP/dest${prefix//\//_}"
	P="$D$prefix"
	if ! DESTDIR="$D" timeout 120 cmake --install "$BUILD" --prefix "$prefix" \
		>"$TMP/install.out" 2>&1; then
		cat "$TMP/install.out"
		check "cmake --install --prefix $prefix" false
		continue
	fi
	check "$prefix: nothing installed outside DESTDIR" \
		test -z "$(grep -- '-- Installing: ' "$TMP/install.out" | grep -vF -- "-- Installing: $D/")"
	check "$prefix: bin/devmail" test -x "$P/bin/devmail"
	check "$prefix: sbin/devmail-sendmail" test -x "$P/sbin/devmail-sendmail"
	check "$prefix: sbin/devmaild" test -x "$P/sbin/devmaild"
	check "$prefix: devmaild --version runs" \
		bash -c '"$1" --version | grep -qE "^devmaild [0-9]+\.[0-9]+"' _ "$P/sbin/devmaild"
	for m in man1/devmail.1 man5/devmail-registry.5 man8/devmail-sendmail.8 man8/devmaild.8; do
		check "$prefix: share/man/$m" test -s "$P/share/man/$m"
		check "$prefix: $m: no groff warning" \
			bash -c '[ -z "$(groff -ww -man -Tutf8 -z "$1" 2>&1)" ]' _ "$P/share/man/$m"
	done

	unit=$P/lib/systemd/system/devmaild.service
	check "$prefix: lib/systemd/system/devmaild.service" test -s "$unit"
	check "$prefix: unit ExecStart names the prefix" \
		has "$unit" "ExecStart=$prefix/sbin/devmaild --foreground --root /var/lib/devmail"
	for line in StateDirectory=devmail NoNewPrivileges=yes ProtectSystem=strict \
		PrivateTmp=yes ProtectHome=yes Restart=on-failure Type=exec \
		"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK" \
		"ExecReload=/bin/kill -HUP \$MAINPID"; do
		check "$prefix: unit has $line" has "$unit" "$line"
	done
	# systemd-analyze verify wants ExecStart to exist: point it into DESTDIR.
	mkdir -p "$TMP/verify"
	sed "s#^ExecStart=$prefix/#ExecStart=$P/#" "$unit" >"$TMP/verify/devmaild.service"
	MANPATH="$P/share/man" timeout 60 systemd-analyze verify \
		"$TMP/verify/devmaild.service" >"$TMP/verify.out" 2>&1
	rc=$?
	sed 's/^/  | /' "$TMP/verify.out"
	check "$prefix: systemd-analyze verify: exit 0" test "$rc" -eq 0
	check "$prefix: systemd-analyze verify: no warning" test ! -s "$TMP/verify.out"

	pc=$(find "$P" -name devmail.pc | head -1)
	check "$prefix: devmail.pc" test -n "$pc"
	[ -n "$pc" ] || continue
	check "$prefix: devmail.pc prefix" has "$pc" "prefix=$prefix"
	for h in core/err.h core/registry.h net/transport.h mail/outbox.h mail/submit.h; do
		check "$prefix: include/devmail/$h" test -s "$P/include/devmail/$h"
	done
	cat >"$TMP/use.c" <<'C'
#include <stdio.h>
#include "core/err.h"
#include "mail/outbox.h"
int main(void)
{
	printf("%ld %s\n", outbox_backoff(60, 3600, 3, 0.0), dm_status_str(DM_OK));
	return 0;
}
C
	flags=$(PKG_CONFIG_SYSROOT_DIR="$D" PKG_CONFIG_PATH="$(dirname "$pc")" \
		pkg-config --cflags --libs devmail 2>"$TMP/pc.err")
	check "$prefix: pkg-config --cflags --libs devmail" test -n "$flags"
	# An ASan build's libraries need the sanitizer runtime at link time.
	san=""
	grep -q '^DEVMAIL_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null &&
		san="-fsanitize=address,undefined"
	# shellcheck disable=SC2086
	cc $san -o "$TMP/use" "$TMP/use.c" $flags >"$TMP/cc.out" 2>&1
	rc=$?
	sed 's/^/  | /' "$TMP/cc.out"
	check "$prefix: a program builds against the installed library" test "$rc" -eq 0
	check "$prefix: ... and runs" \
		bash -c '[ "$("$1")" = "240 ok" ]' _ "$TMP/use"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
