#!/usr/bin/env bash
# Writes the configs of a locked-down NATS cluster from the template
# deploy/nats/cluster/node.conf.template, one per node:
#   OUT_DIR/<node>.conf           the node's config (mode 0600; public keys only)
#   OUT_DIR/creds/<user>.nk       each user's NKey seed (SU..., mode 0600), for
#                                 --nats-nkey-file of that user's process only
#   OUT_DIR/creds/<user>.nk.pub   its public key (U...), what the configs name
#   OUT_DIR/tls/ca.pem            the CA: --nats-tls-ca-file of every client,
#                                 and what each node checks its routes against
#   OUT_DIR/tls/<node>.pem, <node>.key   the node's certificate (names:
#                                 <node>, localhost, 127.0.0.1, ::1) and key
# The NKeys are made with `mpp-registrar nats-nkey` ($MPP_REGISTRAR, on PATH,
# or built in the repository); the CA and certificates with openssl (a
# throw-away CA: a local/dev and test convenience; production gives each
# node its own certificate from the province's CA). Existing keys and
# certificates are kept, so running this again (e.g. for one more node)
# changes none of them. Each config is checked with `nats-server -t` when a
# nats-server is found ($MPP_NATS_SERVER or on PATH).
#
# Usage: deploy/nats/cluster/gen-cluster.sh OUT_DIR [--node NAME]...
#            [--host HOST] [--client-port PORT] [--cluster-port PORT]
#            [--routes URLS] [--store-dir DIR] [--conf-dir DIR]
# Defaults: the nodes mpp-nats-1, mpp-nats-2, mpp-nats-3 (each --node
#   replaces the defaults; the names are the hosts the routes dial)
#   --host 0.0.0.0 --client-port 4222 --cluster-port 6222
#   --routes "nats-route://<node>:<cluster port>" for every node
#   --store-dir /var/lib/mpp/nats/jetstream
# --routes: the comma-separated route URLs when the nodes are not reached
#   by their names (e.g. three nodes on one host, on other route ports).
# --conf-dir: where the nodes see OUT_DIR (default OUT_DIR's absolute path).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TEMPLATE=$HERE/node.conf.template
NODES=()
HOST=0.0.0.0
CLIENT_PORT=4222
CLUSTER_PORT=6222
ROUTES=
STORE_DIR=/var/lib/mpp/nats/jetstream
CONF_DIR=
TLS_DAYS=825

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; }
[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in -h | --help) usage; exit 0 ;; esac
OUT=$1
shift
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || { echo "error: $1 needs a value (see --help)" >&2; exit 2; }
    case "$1" in
    --node) NODES+=("$2") ;;
    --host) HOST=$2 ;;
    --client-port) CLIENT_PORT=$2 ;;
    --cluster-port) CLUSTER_PORT=$2 ;;
    --routes) ROUTES=$2 ;;
    --store-dir) STORE_DIR=$2 ;;
    --conf-dir) CONF_DIR=$2 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift 2
done
[ ${#NODES[@]} -gt 0 ] || NODES=(mpp-nats-1 mpp-nats-2 mpp-nats-3)
for port in "$CLIENT_PORT" "$CLUSTER_PORT"; do
    [[ "$port" =~ ^[0-9]{1,5}$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] \
        || { echo "error: unusable port ${port@Q}" >&2; exit 2; }
done
for n in "${NODES[@]}"; do
    [[ "$n" =~ ^[A-Za-z0-9][A-Za-z0-9.-]*$ ]] \
        || { echo "error: unusable node name ${n@Q} (letters, digits, dots and dashes)" >&2; exit 2; }
done
if [ -z "$ROUTES" ]; then
    for n in "${NODES[@]}"; do ROUTES="${ROUTES:+$ROUTES,}nats-route://$n:$CLUSTER_PORT"; done
fi
(umask 077 && mkdir -p "$OUT")
OUT_ABS=$(cd "$OUT" && pwd)
CONF_DIR=${CONF_DIR:-$OUT_ABS}
# shellcheck source=../../lib/confvalue.sh
source "$HERE/../../lib/confvalue.sh"
mpp_conf_values_ok "$HOST" "$ROUTES" "$STORE_DIR" "$CONF_DIR" || exit 2
routes_conf=
IFS=, read -r -a route_list <<<"$ROUTES"
for r in "${route_list[@]}"; do
    [[ "$r" == nats-route://* ]] || { echo "error: route ${r@Q} is no nats-route:// URL" >&2; exit 2; }
    routes_conf="${routes_conf:+$routes_conf, }\"$r\""
done

# shellcheck source=../../lib/nkey.sh
source "$HERE/../../lib/nkey.sh"
# shellcheck source=../../lib/tls.sh
source "$HERE/../../lib/tls.sh"
# Bash >= 5.2 would put the matched text in place of '&' in a replacement.
shopt -u patsub_replacement 2>/dev/null || true

conf=$(cat "$TEMPLATE")
(umask 077 && mkdir -p "$OUT/creds" "$OUT/tls")
chmod 700 "$OUT/creds"
mapfile -t USERS < <(grep -o '{{NKEY_[A-Za-z0-9_-]*}}' "$TEMPLATE" | sed 's/^{{NKEY_//; s/}}$//' | sort -u)
[ ${#USERS[@]} -gt 0 ] || { echo "error: no {{NKEY_<user>}} in $TEMPLATE" >&2; exit 1; }
for user in "${USERS[@]}"; do
    public=$(mpp_nkey "$OUT/creds/$user.nk")
    conf=${conf//"{{NKEY_${user}}}"/$public}
done
mpp_tls_ca "$OUT/tls" "$TLS_DAYS"
conf=${conf//"{{HOST}}"/$HOST}
conf=${conf//"{{CLIENT_PORT}}"/$CLIENT_PORT}
conf=${conf//"{{CLUSTER_PORT}}"/$CLUSTER_PORT}
conf=${conf//"{{ROUTES}}"/$routes_conf}
conf=${conf//"{{STORE_DIR}}"/$STORE_DIR}

NATS_SERVER=${MPP_NATS_SERVER:-$(command -v nats-server || true)}
[ -n "$NATS_SERVER" ] || echo "warning: no nats-server found; the configs were not checked" >&2
header='# Written by deploy/nats/cluster/gen-cluster.sh from node.conf.template; NKey public keys only.'
for node in "${NODES[@]}"; do
    mpp_tls_cert "$OUT/tls" "$node" "$TLS_DAYS" "IP:127.0.0.1,IP:::1,DNS:localhost,DNS:$node"
    node_conf=${conf//"{{SERVER_NAME}}"/$node}
    # The comment block names the placeholders too; only the config lines count.
    left=$(grep -v '^[[:space:]]*#' <<<"$node_conf" | grep -o '{{[A-Za-z0-9_-]*}}' \
        | grep -vx '{{TLS_CERT}}\|{{TLS_KEY}}\|{{TLS_CA}}' | sort -u | tr '\n' ' ' || true)
    if [ -n "$left" ]; then
        echo "error: template fields left unfilled: $left" >&2
        exit 1
    fi
    # tls_paths DIR: the node's config with its TLS files under DIR.
    tls_paths() {
        local c=${node_conf//"{{TLS_CERT}}"/$1/tls/$node.pem}
        c=${c//"{{TLS_KEY}}"/$1/tls/$node.key}
        printf '%s\n%s\n' "$header" "${c//"{{TLS_CA}}"/$1/tls/ca.pem}"
    }
    tmp=$(umask 077 && mktemp "$OUT/.$node.conf.XXXXXX")
    trap 'rm -f "$tmp"' EXIT
    # The check reads the certificates where this machine has them.
    tls_paths "$OUT_ABS" >"$tmp"
    if [ -n "$NATS_SERVER" ] && ! out=$("$NATS_SERVER" -t -c "$tmp" 2>&1); then
        echo "error: nats-server rejects the config of $node: $out" >&2
        exit 1
    fi
    tls_paths "$CONF_DIR" >"$tmp"
    mv "$tmp" "$OUT/$node.conf"
    trap - EXIT
done
echo "wrote ${NODES[*]/%/.conf} in $OUT, ${#USERS[@]} NKey seeds in $OUT/creds/ (${USERS[*]}) and the CA and node certificates in $OUT/tls/" >&2
