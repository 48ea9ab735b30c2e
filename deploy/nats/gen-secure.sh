#!/usr/bin/env bash
# Writes a runnable nats-server config with one user per agency from the
# template deploy/nats/secure.conf:
#   OUT_DIR/nats.conf            the config (mode 0600: it holds the passwords)
#   OUT_DIR/creds/<user>.pass    each user's password (mode 0600), for
#                                --nats-password-file of that user's process
# A random password (24 bytes, hex) is made for every @PASS_<user>@ of the
# template; an existing OUT_DIR/creds/<user>.pass is kept, so running this
# again keeps every password. The config is checked with `nats-server -t`
# when a nats-server is found ($MPP_NATS_SERVER or on PATH).
#
# Usage: deploy/nats/gen-secure.sh OUT_DIR [--listen HOST:PORT] [--http HOST:PORT]
#            [--store-dir DIR] [--server-name NAME] [--template FILE]
# Defaults (the local stack's): --listen 127.0.0.1:14222 --http 127.0.0.1:18222
#   --store-dir .local/nats/jetstream (relative to nats-server's working
#   directory) --server-name mpp-local --template <this dir>/secure.conf
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LISTEN=127.0.0.1:14222
HTTP=127.0.0.1:18222
STORE_DIR=.local/nats/jetstream
SERVER_NAME=mpp-local
TEMPLATE=$HERE/secure.conf
PASSWORD_BYTES=24

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
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
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift 2
done

# The values go inside quoted strings of the config: refuse anything that
# could end the string or the line.
for v in "$LISTEN" "$HTTP" "$STORE_DIR" "$SERVER_NAME"; do
    if [ -z "$v" ] || [[ "$v" == *[\"\\\$\'$'\n\r']* ]]; then
        echo "error: unusable value ${v@Q} (empty, or a quote, backslash, \$ or line break)" >&2
        exit 2
    fi
done
[ -r "$TEMPLATE" ] || { echo "error: cannot read template $TEMPLATE" >&2; exit 1; }

conf=$(cat "$TEMPLATE")
# Bash >= 5.2 would put the matched text in place of '&' in a replacement.
shopt -u patsub_replacement 2>/dev/null || true
conf=${conf//@SERVER_NAME@/$SERVER_NAME}
conf=${conf//@LISTEN@/$LISTEN}
conf=${conf//@HTTP@/$HTTP}
conf=${conf//@STORE_DIR@/$STORE_DIR}

(umask 077 && mkdir -p "$OUT/creds")
chmod 700 "$OUT/creds"
mapfile -t USERS < <(grep -o '@PASS_[A-Za-z0-9_-]*@' "$TEMPLATE" | sed 's/^@PASS_//; s/@$//' | sort -u)
[ ${#USERS[@]} -gt 0 ] || { echo "error: no @PASS_<user>@ in $TEMPLATE" >&2; exit 1; }
for user in "${USERS[@]}"; do
    pass_file="$OUT/creds/$user.pass"
    if [ ! -s "$pass_file" ]; then
        (umask 077 && od -An -tx1 -N"$PASSWORD_BYTES" /dev/urandom | tr -d ' \n' >"$pass_file")
    fi
    chmod 600 "$pass_file"
    pass=$(tr -d ' \n\r\t' <"$pass_file")
    if [ -z "$pass" ] || [[ "$pass" == *[\"\\\$\']* ]]; then
        echo "error: $pass_file holds no usable password (empty, or a quote, backslash or \$)" >&2
        exit 1
    fi
    conf=${conf//@PASS_${user}@/$pass}
done
if grep -q '@[A-Z_]*[A-Za-z0-9_-]*@' <<<"$conf"; then
    echo "error: template fields left unfilled: $(grep -o '@[A-Za-z0-9_-]*@' <<<"$conf" | sort -u | tr '\n' ' ')" >&2
    exit 1
fi

tmp=$(umask 077 && mktemp "$OUT/.nats.conf.XXXXXX")
trap 'rm -f "$tmp"' EXIT
printf '# Written by deploy/nats/gen-secure.sh from %s; holds passwords (0600).\n%s\n' \
    "$(basename "$TEMPLATE")" "$conf" >"$tmp"
NATS_SERVER=${MPP_NATS_SERVER:-$(command -v nats-server || true)}
if [ -n "$NATS_SERVER" ]; then
    if ! out=$("$NATS_SERVER" -t -c "$tmp" 2>&1); then
        echo "error: nats-server rejects the generated config: $out" >&2
        exit 1
    fi
else
    echo "warning: no nats-server found; the config was not checked" >&2
fi
mv "$tmp" "$OUT/nats.conf"
trap - EXIT
echo "wrote $OUT/nats.conf and ${#USERS[@]} password files in $OUT/creds/ (${USERS[*]})" >&2
