#!/usr/bin/env bash
# Writes a runnable nats-server config with one NKey user per participant
# and TLS from the template deploy/nats/secure.conf:
#   OUT_DIR/nats.conf            the config (mode 0600; it holds only public keys)
#   OUT_DIR/creds/<user>.nk      each user's NKey seed (SU..., mode 0600), for
#                                --nats-nkey-file of that user's process only
#   OUT_DIR/creds/<user>.nk.pub  its public key (U...), what the config names
#   OUT_DIR/tls/ca.pem           the CA of the server's certificate, for
#                                --nats-tls-ca-file of every client
#   OUT_DIR/tls/server.pem, server.key   the server's certificate and key
# An NKey (`mpp-registrar nats-nkey`, found as $MPP_REGISTRAR, on PATH or
# built in the repository) is made for every @NKEY_<user>@ of the template;
# an existing OUT_DIR/creds/<user>.nk is kept, so running this again keeps
# every key. Without --tls-cert, a throw-away CA and server certificate are
# made with openssl (kept when present; a local/dev convenience: production
# gives its own with --tls-cert/--tls-key). The config is checked with
# `nats-server -t` when a nats-server is found ($MPP_NATS_SERVER or on PATH).
#
# Usage: deploy/nats/gen-secure.sh OUT_DIR [--listen HOST:PORT] [--http HOST:PORT]
#            [--store-dir DIR] [--server-name NAME] [--template FILE]
#            [--tls-cert FILE --tls-key FILE] [--tls-name DNS] [--conf-dir DIR]
# Defaults (the local stack's): --listen 127.0.0.1:14222 --http 127.0.0.1:18222
#   --store-dir .local/nats/jetstream (relative to nats-server's working
#   directory) --server-name mpp-local --template <this dir>/secure.conf
# --tls-name adds a DNS name to the generated certificate (repeatable; it
#   always has localhost, 127.0.0.1, ::1, nats and mpp-nats).
# --conf-dir: where nats-server sees OUT_DIR (e.g. /etc/nats in a container;
#   default OUT_DIR's absolute path); the generated certificate's paths in
#   the config start with it.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LISTEN=127.0.0.1:14222
HTTP=127.0.0.1:18222
STORE_DIR=.local/nats/jetstream
SERVER_NAME=mpp-local
TEMPLATE=$HERE/secure.conf
TLS_CERT=
TLS_KEY=
TLS_NAMES=(localhost nats mpp-nats)
CONF_DIR=
TLS_DAYS=825

usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; }
[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in -h | --help) usage; exit 0 ;; esac
OUT=$1
shift
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || { echo "error: $1 needs a value (see --help)" >&2; exit 2; }
    case "$1" in
    --listen) LISTEN=$2 ;;
    --http) HTTP=$2 ;;
    --store-dir) STORE_DIR=$2 ;;
    --server-name) SERVER_NAME=$2 ;;
    --template) TEMPLATE=$2 ;;
    --tls-cert) TLS_CERT=$2 ;;
    --tls-key) TLS_KEY=$2 ;;
    --tls-name) TLS_NAMES+=("$2") ;;
    --conf-dir) CONF_DIR=$2 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift 2
done

if { [ -n "$TLS_CERT" ] && [ -z "$TLS_KEY" ]; } || { [ -z "$TLS_CERT" ] && [ -n "$TLS_KEY" ]; }; then
    echo "error: --tls-cert and --tls-key go together" >&2
    exit 2
fi
(umask 077 && mkdir -p "$OUT")
OUT_ABS=$(cd "$OUT" && pwd)
CONF_DIR=${CONF_DIR:-$OUT_ABS}
# shellcheck source=../lib/confvalue.sh
source "$HERE/../lib/confvalue.sh"
check_values=("$LISTEN" "$HTTP" "$STORE_DIR" "$SERVER_NAME" "$CONF_DIR" "${TLS_NAMES[@]}")
[ -z "$TLS_CERT" ] || check_values+=("$TLS_CERT" "$TLS_KEY")
mpp_conf_values_ok "${check_values[@]}" || exit 2
[ -r "$TEMPLATE" ] || { echo "error: cannot read template $TEMPLATE" >&2; exit 1; }

# shellcheck source=../lib/nkey.sh
source "$HERE/../lib/nkey.sh"
# shellcheck source=../lib/tls.sh
source "$HERE/../lib/tls.sh"

conf=$(cat "$TEMPLATE")
# Bash >= 5.2 would put the matched text in place of '&' in a replacement.
shopt -u patsub_replacement 2>/dev/null || true
conf=${conf//@SERVER_NAME@/$SERVER_NAME}
conf=${conf//@LISTEN@/$LISTEN}
conf=${conf//@HTTP@/$HTTP}
conf=${conf//@STORE_DIR@/$STORE_DIR}

# The server's TLS certificate: the one given, or a throw-away CA and
# certificate made here (kept across runs, like the NKeys).
if [ -n "$TLS_CERT" ]; then
    cert_in_conf=$TLS_CERT key_in_conf=$TLS_KEY
    cert_to_check=$TLS_CERT key_to_check=$TLS_KEY
else
    (umask 077 && mkdir -p "$OUT/tls")
    if [ ! -s "$OUT/tls/server.pem" ] || [ ! -s "$OUT/tls/server.key" ] || [ ! -s "$OUT/tls/ca.pem" ]; then
        names="IP:127.0.0.1,IP:::1"
        for n in "${TLS_NAMES[@]}"; do names="$names,DNS:$n"; done
        mpp_tls_ca "$OUT/tls" "$TLS_DAYS"
        rm -f "$OUT/tls/server.pem" "$OUT/tls/server.key"
        mpp_tls_cert "$OUT/tls" server "$TLS_DAYS" "$names"
        echo "made a throw-away CA and server certificate in $OUT/tls/ (names: $names)" >&2
    fi
    # The certificates are public (the keys stay 0600).
    chmod 644 "$OUT/tls/ca.pem" "$OUT/tls/server.pem"
    cert_in_conf=$CONF_DIR/tls/server.pem key_in_conf=$CONF_DIR/tls/server.key
    cert_to_check=$OUT_ABS/tls/server.pem key_to_check=$OUT_ABS/tls/server.key
fi

(umask 077 && mkdir -p "$OUT/creds")
chmod 700 "$OUT/creds"
mapfile -t USERS < <(grep -o '@NKEY_[A-Za-z0-9_-]*@' "$TEMPLATE" | sed 's/^@NKEY_//; s/@$//' | sort -u)
[ ${#USERS[@]} -gt 0 ] || { echo "error: no @NKEY_<user>@ in $TEMPLATE" >&2; exit 1; }
for user in "${USERS[@]}"; do
    public=$(mpp_nkey "$OUT/creds/$user.nk")
    conf=${conf//@NKEY_${user}@/$public}
done
left=$(grep -o '@[A-Za-z0-9_-]*@' <<<"$conf" | grep -vx '@TLS_CERT@\|@TLS_KEY@' | sort -u | tr '\n' ' ' || true)
if [ -n "$left" ]; then
    echo "error: template fields left unfilled: $left" >&2
    exit 1
fi

tmp=$(umask 077 && mktemp "$OUT/.nats.conf.XXXXXX")
check=$(umask 077 && mktemp "$OUT/.nats-check.conf.XXXXXX")
trap 'rm -f "$tmp" "$check"' EXIT
header=$(printf '# Written by deploy/nats/gen-secure.sh from %s; NKey public keys only.' "$(basename "$TEMPLATE")")
printf '%s\n%s\n' "$header" "${conf//@TLS_CERT@/$cert_in_conf}" >"$tmp"
sed -i "s|@TLS_KEY@|$key_in_conf|" "$tmp"
# The check reads the certificate where this machine has it.
printf '%s\n%s\n' "$header" "${conf//@TLS_CERT@/$cert_to_check}" >"$check"
sed -i "s|@TLS_KEY@|$key_to_check|" "$check"
NATS_SERVER=${MPP_NATS_SERVER:-$(command -v nats-server || true)}
if [ -n "$NATS_SERVER" ]; then
    if ! out=$("$NATS_SERVER" -t -c "$check" 2>&1); then
        echo "error: nats-server rejects the generated config: $out" >&2
        exit 1
    fi
else
    echo "warning: no nats-server found; the config was not checked" >&2
fi
mv "$tmp" "$OUT/nats.conf"
rm -f "$check"
trap - EXIT
echo "wrote $OUT/nats.conf and ${#USERS[@]} NKey seeds in $OUT/creds/ (${USERS[*]})" >&2
