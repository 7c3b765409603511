#!/usr/bin/env bash
# Generates a throw-away test PKI with GnuTLS certtool into OUTDIR:
#   ca.pem ca.key               test CA
#   server.pem server.key       leaf for localhost, 127.0.0.1, ::1 (signed by the CA)
#   chain.pem                   server.pem followed by ca.pem
#   other.pem other.key         leaf for wrong.example only (signed by the CA)
#   self.pem self.key           self-signed leaf for localhost, 127.0.0.1, ::1
# Usage: pki.sh OUTDIR   (idempotent: does nothing when OUTDIR/ca.pem exists)
set -euo pipefail
out=${1:?usage: pki.sh OUTDIR}
mkdir -p "$out"
[ -f "$out/ca.pem" ] && [ -f "$out/self.pem" ] && exit 0
cd "$out"
key() { certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$1" 2>/dev/null; }

cat > ca.tmpl <<T
cn = "devmail test CA"
ca
cert_signing_key
expiration_days = 30
T
key ca.key
certtool --generate-self-signed --load-privkey ca.key --template ca.tmpl --outfile ca.pem 2>/dev/null

leaf_tmpl() {
  printf 'cn = "%s"\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 30\n' "$1"
  shift
  for n in "$@"; do
    case "$n" in
      *:*|[0-9]*.[0-9]*.[0-9]*.[0-9]*) printf 'ip_address = "%s"\n' "$n" ;;
      *) printf 'dns_name = "%s"\n' "$n" ;;
    esac
  done
}
leaf_tmpl localhost localhost 127.0.0.1 ::1 > server.tmpl
key server.key
certtool --generate-certificate --load-privkey server.key --load-ca-certificate ca.pem \
  --load-ca-privkey ca.key --template server.tmpl --outfile server.pem 2>/dev/null
cat server.pem ca.pem > chain.pem

leaf_tmpl wrong.example wrong.example > other.tmpl
key other.key
certtool --generate-certificate --load-privkey other.key --load-ca-certificate ca.pem \
  --load-ca-privkey ca.key --template other.tmpl --outfile other.pem 2>/dev/null

key self.key
certtool --generate-self-signed --load-privkey self.key --template server.tmpl --outfile self.pem 2>/dev/null
rm -f ./*.tmpl
chmod 600 ./*.key
