#!/usr/bin/env bash
# test_layers.sh - DESIGN's one-way arrows, checked on every #include "layer/...":
#   bin -> daemon -> web, telnet, ftp -> shell -> mail -> net -> core
# A file may include its own layer and any layer below it, never one above or
# beside it.  Also: GnuTLS is named (#include <gnutls/...>) only in the files
# listed in GNUTLS_FILES.  Prints one line per violation; exit 1 if any.
set -u
src="${DEVMAIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/src"
[ -d "$src/core" ] || { echo "test_layers: no source tree at $src" >&2; exit 2; }

# What each layer may include (its own name first).
declare -A allowed=(
	[core]="core"
	[net]="net core"
	[mail]="mail net core"
	[shell]="shell mail net core"
	[web]="web shell mail net core"
	[telnet]="telnet shell mail net core"
	[ftp]="ftp shell mail net core"
	[daemon]="daemon web telnet ftp shell mail net core"
	[bin]="bin daemon web telnet ftp shell mail net core"
)
GNUTLS_FILES="core/crypto.c net/tls.c"

bad=0 checked=0
while IFS= read -r -d '' f; do
	rel=${f#"$src"/}
	layer=${rel%%/*}
	ok=${allowed[$layer]:-}
	if [ -z "$ok" ]; then
		echo "test_layers: $rel: directory '$layer' is not a known layer"
		bad=1; continue
	fi
	while IFS= read -r inc; do
		target=${inc%%/*}
		case " $ok " in
		*" $target "*) ;;
		*) echo "test_layers: $rel includes \"$inc\": $layer may not use $target"; bad=1 ;;
		esac
	done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([a-z]*\/[^"]*\)".*/\1/p' "$f")
	if grep -q '^[[:space:]]*#[[:space:]]*include[[:space:]]*<gnutls/' "$f"; then
		case " $GNUTLS_FILES " in
		*" $rel "*) ;;
		*) echo "test_layers: $rel includes GnuTLS; only $GNUTLS_FILES may"; bad=1 ;;
		esac
	fi
	checked=$((checked + 1))
done < <(find "$src" -name '*.[ch]' -print0)

[ "$checked" -gt 20 ] || { echo "test_layers: only $checked files found"; exit 2; }
if [ "$bad" -ne 0 ]; then
	echo "test_layers: FAILED"
	exit 1
fi
echo "test_layers: $checked files follow the arrows"
