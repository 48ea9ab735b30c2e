#!/usr/bin/env bash
# Runs the whole local MPP Hub system on this machine until Ctrl-C:
#   nats-server (JetStream)  127.0.0.1:14222   data .local/nats/
#   mpp-hub                  gRPC 127.0.0.1:50051, HTTP 127.0.0.1:8080   data .local/hub/
#   mpp-dukcapil             gRPC 127.0.0.1:50061   data .local/dukcapil/
# then creates sample cases with mpp-sim and prints where to look them up.
# Logs: .local/logs/. Data persists across runs; delete .local/ to start over.
#
# Usage: deploy/local/up.sh [--release] [--cases N] [--seed S] [--no-sim]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

PROFILE=debug
CASES=8
SEED=1771
RUN_SIM=1
while [ $# -gt 0 ]; do
    case "$1" in
    --release) PROFILE=release ;;
    --cases) CASES=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --no-sim) RUN_SIM=0 ;;
    -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

NATS_PORT=14222
NATS_URL="nats://127.0.0.1:$NATS_PORT"
HUB_GRPC=127.0.0.1:50051
HUB_HTTP=127.0.0.1:8080
DUKCAPIL_GRPC=127.0.0.1:50061
REGION=1771
START_DEADLINE_S=60

# shellcheck source=../lib/ensure-nats.sh
source deploy/lib/ensure-nats.sh
mpp_ensure_nats_server

port_in_use() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
for addr in "127.0.0.1:$NATS_PORT" "$HUB_GRPC" "$HUB_HTTP" "$DUKCAPIL_GRPC"; do
    if port_in_use "$addr"; then
        echo "error: $addr is already in use (another local stack running?)" >&2
        exit 1
    fi
done

echo "building ($PROFILE) ..." >&2
if [ "$PROFILE" = release ]; then
    cargo build --release -p mpp-hub -p mpp-dukcapil -p mpp-sim
else
    cargo build -p mpp-hub -p mpp-dukcapil -p mpp-sim
fi
BIN="$ROOT/target/$PROFILE"

mkdir -p .local/logs .local/nats .local/hub .local/dukcapil
PIDS=()
cleanup() {
    trap - EXIT INT TERM
    echo >&2
    echo "stopping ..." >&2
    local i
    # Stop in reverse order of start: agency service, hub, then NATS.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
        wait "${PIDS[i]}" 2>/dev/null || true
    done
    echo "stopped; data kept in .local/ (logs in .local/logs/)" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls "$@" until it succeeds or START_DEADLINE_S passes.
wait_until() {
    local what=$1 pid=$2
    shift 2
    local deadline=$((SECONDS + START_DEADLINE_S))
    until "$@" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: $what exited; see its log in .local/logs/" >&2
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "error: $what not up after ${START_DEADLINE_S}s; see .local/logs/" >&2
            exit 1
        fi
        sleep 0.2
    done
}
http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

"$MPP_NATS_SERVER" -c deploy/nats/local.conf >>.local/logs/nats-server.log 2>&1 &
PIDS+=($!)
wait_until nats-server "${PIDS[-1]}" port_in_use "127.0.0.1:$NATS_PORT"
echo "nats-server  up: $NATS_URL (monitoring http://127.0.0.1:18222/jsz)" >&2

"$BIN/mpp-hub" serve --nats-url "$NATS_URL" --data-dir .local/hub \
    --grpc-addr "$HUB_GRPC" --http-addr "$HUB_HTTP" \
    --calendars-dir deploy/calendars >>.local/logs/mpp-hub.log 2>&1 &
PIDS+=($!)
wait_until mpp-hub "${PIDS[-1]}" http_ok "http://$HUB_HTTP/readyz"
echo "mpp-hub      up: gRPC $HUB_GRPC, HTTP http://$HUB_HTTP" >&2

DUKCAPIL_ARGS=(--nats-url "$NATS_URL" --grpc-addr "$DUKCAPIL_GRPC" --region-code "$REGION")
DUKCAPIL_HELP=$("$BIN/mpp-dukcapil" --help 2>&1 || true)
if grep -q -- '--pin-pepper-file' <<<"$DUKCAPIL_HELP"; then
    if [ ! -s .local/dukcapil/pin-pepper ]; then
        # A local, random pepper for citizens' lookup PINs; never commit it.
        (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >.local/dukcapil/pin-pepper)
    fi
    DUKCAPIL_ARGS+=(--pin-pepper-file .local/dukcapil/pin-pepper)
fi
if grep -q -- '--tokens-file' <<<"$DUKCAPIL_HELP"; then
    # The sample-traffic client (mpp-sim) gets a local token; the service
    # keeps only its SHA-256 (printf %s TOKEN | sha256sum).
    if [ ! -s .local/dukcapil/sim-token ]; then
        (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >.local/dukcapil/sim-token)
    fi
    printf '# written by deploy/local/up.sh\nmpp-sim:%s\n' \
        "$(tr -d '\n' <.local/dukcapil/sim-token | sha256sum | cut -d' ' -f1)" >.local/dukcapil/tokens
    DUKCAPIL_ARGS+=(--tokens-file .local/dukcapil/tokens)
    MPP_DUKCAPIL_TOKEN=$(cat .local/dukcapil/sim-token)
    export MPP_DUKCAPIL_TOKEN
fi
if grep -q -- '--data-dir' <<<"$DUKCAPIL_HELP"; then
    DUKCAPIL_ARGS+=(--data-dir .local/dukcapil/data)
fi
"$BIN/mpp-dukcapil" "${DUKCAPIL_ARGS[@]}" >>.local/logs/mpp-dukcapil.log 2>&1 &
PIDS+=($!)
wait_until mpp-dukcapil "${PIDS[-1]}" port_in_use "$DUKCAPIL_GRPC"
echo "mpp-dukcapil up: gRPC $DUKCAPIL_GRPC (region $REGION)" >&2

if [ "$RUN_SIM" = 1 ]; then
    echo >&2
    echo "sample cases (mpp-sim --cases $CASES --seed $SEED):" >&2
    "$BIN/mpp-sim" --dukcapil-addr "http://$DUKCAPIL_GRPC" --cases "$CASES" --seed "$SEED" \
        --lookup-base "http://$HUB_HTTP/api/v1/cases/" | tee -a .local/logs/mpp-sim.out
fi

cat <<MSG

Look up a case:   http://$HUB_HTTP/api/v1/cases/<tracking number>   (e.g. the URLs above)
                  gRPC mpp.v1.CasesService/GetCase on $HUB_GRPC
Health:           http://$HUB_HTTP/healthz   http://$HUB_HTTP/readyz
Head of the log:  http://$HUB_HTTP/api/v1/head
Logs:             .local/logs/
mpp-dukcapil:     gRPC $DUKCAPIL_GRPC; the mpp-sim client token is in .local/dukcapil/sim-token
Press Ctrl-C to stop everything.
MSG

# Run until Ctrl-C, or until one of the processes exits on its own.
set +e
wait -n "${PIDS[@]}"
status=$?
set -e
echo "a process exited on its own (status $status); see .local/logs/" >&2
exit 1
