#!/usr/bin/env bash
# Runs the whole local MPP Hub system on this machine until Ctrl-C:
#   nats-server (JetStream)   127.0.0.1:14222 (monitoring :18222)   .local/nats/
#   mpp-hub                   gRPC :50051, HTTP :8080               .local/data/hub/
#   mpp-frontoffice           gRPC :50060, metrics :9160            .local/data/frontoffice/
#   mpp-dukcapil              gRPC :50061, metrics :9161            .local/data/dukcapil/
#   mpp-imigrasi, mpp-bpn, mpp-pln, mpp-pdam, mpp-bank, mpp-dpmptsp
#                             gRPC :50062..:50067, metrics :9162..:9167, .local/data/<agency>/
# then drives sample journeys with mpp-sim (cases opened at the front office,
# filed into by the agencies) and prints where to look them up, with PINs.
# Secrets are generated once into .local/secrets/ (mode 0600, never commit):
# the province's PIN pepper, the NIK key, the front office's serial key
# (unguessable tracking numbers), an operator token (/ops) and an auditor
# token (the audit API), a local registrar key and each participant's own
# event-signing key (signing-<service>.key; the hub trusts the registrar's
# public key, and the registrar registers every service with its key:
# docs/OPERATIONS.md "Participant registry"), and mpp-sim's own token for each
# service (sim-token-<service>; that service alone keeps its SHA-256, in
# .local/secrets/tokens-<service>: no tokens file is shared), and each
# agency's token at the front office, for its walk-in citizens' cases
# (front-office-token-<agency>; scope cases:open-walk-in only). Only the
# front office and the hub get the PIN pepper. Logs:
# .local/logs/. Data persists across runs; delete .local/ to start over.
# Ctrl-C (or SIGTERM) stops all.
#
# Usage: deploy/local/up.sh [--release] [--cases N] [--seed S] [--rate R]
#                           [--journey NAME[,NAME]] [--no-sim] [--secure-nats] [--tls]
# --secure-nats: NATS with one NKey user per participant and TLS (deploy/nats/secure.conf; config, NKey seeds and CA in .local/nats/secure/).
# --tls: every gRPC and HTTP server over TLS, with a local CA made by openssl in .local/secrets/tls/ (docs/TLS.md).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

PROFILE=debug
CASES=12
SEED=1771
RATE=50
JOURNEYS=
RUN_SIM=1
SECURE_NATS=0
TLS=0
while [ $# -gt 0 ]; do
    case "$1" in
    --release) PROFILE=release ;;
    --cases) CASES=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --journey) JOURNEYS=$2; shift ;;
    --no-sim) RUN_SIM=0 ;;
    --secure-nats) SECURE_NATS=1 ;;
    --tls) TLS=1 ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

NATS_PORT=14222
NATS_URL="nats://127.0.0.1:$NATS_PORT"
NATS_MONITOR=127.0.0.1:18222
HUB_GRPC=127.0.0.1:50051
HUB_HTTP=127.0.0.1:8080
REGION=1771
START_DEADLINE_S=60
CATCH_UP_DEADLINE_S=60
SAMPLES=4
# The front office's gRPC port, where agencies open walk-in citizens' cases.
FRONT_OFFICE_GRPC=50060
# name  gRPC port  metrics port (the agencies' default gRPC ports)
SERVICES=(
    "frontoffice $FRONT_OFFICE_GRPC 9160"
    "dukcapil 50061 9161"
    "imigrasi 50062 9162"
    "bpn 50063 9163"
    "pln 50064 9164"
    "pdam 50065 9165"
    "bank 50066 9166"
    "dpmptsp 50067 9167"
)

# shellcheck source=../lib/ensure-nats.sh
source deploy/lib/ensure-nats.sh
mpp_ensure_nats_server

# jq reads the hub's and NATS' JSON below; install it (Debian's package) or
# stop here with one line, rather than time out later.
if ! command -v jq >/dev/null 2>&1; then
    SUDO=
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=sudo; fi
    echo "jq not found; installing it with apt-get" >&2
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq jq; } >&2 || true
    command -v jq >/dev/null 2>&1 || { echo "error: deploy/local/up.sh needs jq (apt-get install jq)" >&2; exit 1; }
fi

port_in_use() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
ADDRS=("127.0.0.1:$NATS_PORT" "$NATS_MONITOR" "$HUB_GRPC" "$HUB_HTTP")
for s in "${SERVICES[@]}"; do
    read -r _ grpc metrics <<<"$s"
    ADDRS+=("127.0.0.1:$grpc" "127.0.0.1:$metrics")
done
for addr in "${ADDRS[@]}"; do
    if port_in_use "$addr"; then
        echo "error: $addr is already in use (another local stack running?)" >&2
        exit 1
    fi
done

echo "building ($PROFILE) ..." >&2
BUILD=(cargo build -p mpp-hub -p mpp-agencies -p mpp-frontoffice -p mpp-sim -p mpp-registrar --bins)
if [ "$PROFILE" = release ]; then
    BUILD+=(--release)
fi
"${BUILD[@]}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"

mkdir -p .local/logs .local/nats .local/data
(umask 077 && mkdir -p .local/secrets)
chmod 700 .local/secrets

# Writes $2 random bytes, hex-encoded, to .local/secrets/$1 (mode 0600) unless it exists.
secret() {
    if [ ! -s ".local/secrets/$1" ]; then
        (umask 077 && od -An -tx1 -N"$2" /dev/urandom | tr -d ' \n' >".local/secrets/$1")
    fi
    chmod 600 ".local/secrets/$1"
}
# The province's PIN pepper: the front office publishes PIN verifiers under
# it, the hub checks citizens' PINs with it; no agency service gets it (a
# walk-in citizen's case is opened by the front office). The NIK key: keyed
# NIK hashes.
secret pin-pepper 32
secret nik-key 32
# The front office's key vault key: the vault is encrypted at rest under it.
secret vault-key 32
# The front office's serial key: tracking numbers that cannot be guessed from the last one.
secret serial-key 32
# mpp-sim's bearer token at each service, and that service's tokens file
# with only its SHA-256 (printf %s TOKEN | sha256sum); at the front office
# with the scopes it needs. mpp-sim gets them as MPP_<SERVICE>_TOKEN.
SIM_TOKENS=()
for s in "${SERVICES[@]}"; do
    read -r name _ <<<"$s"
    secret "sim-token-$name" 24
    scopes=
    [ "$name" != frontoffice ] || scopes=:cases:open,personal-data:read,personal-data:erase,pins:reissue
    (umask 077 && printf '# written by deploy/local/up.sh: client_id:sha256(token)[:scopes]\nmpp-sim:%s%s\n' \
        "$(sha256sum <".local/secrets/sim-token-$name" | cut -d' ' -f1)" "$scopes" >".local/secrets/tokens-$name")
    SIM_TOKENS+=("MPP_$(tr a-z A-Z <<<"$name")_TOKEN=$(cat ".local/secrets/sim-token-$name")")
done
# Each agency's own token at the front office, which opens its walk-in
# citizens' cases (BukaBerkasInstansi): scope cases:open-walk-in only.
for s in "${SERVICES[@]}"; do
    read -r name _ <<<"$s"
    [ "$name" != frontoffice ] || continue
    secret "front-office-token-$name" 24
    (umask 077 && printf 'walk-in-%s:%s:cases:open-walk-in\n' "$name" \
        "$(sha256sum <".local/secrets/front-office-token-$name" | cut -d' ' -f1)" >>.local/secrets/tokens-frontoffice)
done
PEPPER=.local/secrets/pin-pepper

# The participant registry: a local registrar key (on a real province it is
# kept offline) and one signing key per participant, each readable by that
# participant only. The registry file lists every local participant.
keygen() {
    if [ ! -s ".local/secrets/$1" ]; then
        "$BIN/mpp-registrar" keygen --out ".local/secrets/$1" >/dev/null
    fi
}
keygen registrar.key
category_of() {
    case "$1" in
    dukcapil | dpmptsp) echo daerah ;;
    imigrasi) echo vertikal ;;
    bpn) echo pusat ;;
    pln) echo bumn ;;
    pdam) echo bumd ;;
    bank) echo swasta ;;
    esac
}
REGISTRY=.local/registry.toml
{
    echo "# Written by deploy/local/up.sh: the local stack's participant registry."
    for s in "${SERVICES[@]}"; do
        read -r name _ _ <<<"$s"
        keygen "signing-$name.key"
        if [ "$name" = frontoffice ]; then
            printf '[[participant]]\nid = "mpp-%s"\nkind = "front_office"\ncategory = "daerah"\nregions = ["%s"]\n' "$REGION" "$REGION"
            printf 'services = { loket = ["case_opened", "personal_data_sealed", "personal_data_erased", "pin_reissued", "personal_data_read"] }\n'
        else
            printf '[[participant]]\nid = "%s"\nkind = "agency"\ncategory = "%s"\nregions = ["%s"]\n' "$name" "$(category_of "$name")" "$REGION"
            printf 'services_from_catalogue = "../deploy/catalogue/%s.toml"\n' "$name"
        fi
        printf '[[participant.key]]\npublic_key_file = "secrets/signing-%s.key.pub"\n\n' "$name"
        # PLN follows DPMPTSP's building approvals (PBG issued) on its cases
        # and schedules a paid connection's installation itself
        # (services/agencies/src/pln.rs); nobody else follows anything.
        if [ "$name" = pln ]; then
            printf '[[participant.follow]]\nparticipant = "dpmptsp"\nservice = "pbg"\nevent_types = ["issued"]\n\n'
        fi
    done
} >"$REGISTRY"

# With --tls: a local CA and one certificate for 127.0.0.1 and localhost,
# made once (mode 0600 keys); every server gets --tls-cert-file and
# --tls-key-file, every client (curl, mpp-sim) trusts ca.pem.
SCHEME=http
TLS_ARGS=()
CURL_TLS=()
if [ "$TLS" = 1 ]; then
    TLS_DIR=.local/secrets/tls
    if [ ! -s "$TLS_DIR/server.pem" ]; then
        (umask 077 && mkdir -p "$TLS_DIR")
        (
            umask 077
            cd "$TLS_DIR"
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
                -subj "/CN=MPP local CA" -keyout ca.key -out ca.pem 2>/dev/null
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >san.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
                -extfile san.ext -out server.pem 2>/dev/null
        )
    fi
    SCHEME=https
    TLS_ARGS=(--tls-cert-file "$TLS_DIR/server.pem" --tls-key-file "$TLS_DIR/server.key")
    CURL_TLS=(--cacert "$TLS_DIR/ca.pem")
fi
# curl, trusting the local CA with --tls.
curl_() { curl ${CURL_TLS[@]+"${CURL_TLS[@]}"} "$@"; }

PIDS=()
NAMES=()
cleanup() {
    trap - EXIT INT TERM
    echo >&2
    echo "stopping ..." >&2
    local i
    # Stop in reverse order of start, each before the next: the services
    # drain their outboxes into NATS, then the hub stops, then NATS.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
        wait "${PIDS[i]}" 2>/dev/null || true
    done
    echo "stopped ${#PIDS[@]} processes; data kept in .local/ (logs in .local/logs/)" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Job control: each child runs in its own process group, so Ctrl-C reaches
# this script (which stops the children in order), not every child at once.
set -m

# Starts "$@" in the background as $1's basename, logging to .local/logs/.
start() {
    local name
    name=$(basename "$1")
    "$@" >>".local/logs/$name.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$name")
}

# Polls "$@" until it succeeds or START_DEADLINE_S passes (then exits the
# script). Returns 1 if process $2 exits first.
poll_until() {
    local what=$1 pid=$2
    shift 2
    local deadline=$((SECONDS + START_DEADLINE_S))
    until "$@" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "error: $what not up after ${START_DEADLINE_S}s; see .local/logs/$what.log" >&2
            exit 1
        fi
        sleep 0.2
    done
}
# Like poll_until, but a process exit ends the script, with its log's end.
wait_until() {
    if ! poll_until "$@"; then
        echo "error: $1 exited; see .local/logs/$1.log:" >&2
        grep -v '^ *[0-9]*: \|^ *at ' ".local/logs/$1.log" | tail -n 12 >&2 || true
        exit 1
    fi
}
# Starts an agency service and waits for its gRPC port. The default ports
# lie in Linux's ephemeral range, so another program's outgoing connection
# may hold one for a moment: a start that fails with "Address already in
# use" is retried a few times.
BIND_ATTEMPTS_MAX=5
start_service() {
    local name=$1 port=$2 attempt lines log=".local/logs/$1.log"
    shift 2
    for ((attempt = 1; ; attempt++)); do
        lines=$( (wc -l <"$log") 2>/dev/null || echo 0)
        start "$@"
        if poll_until "$name" "${PIDS[-1]}" port_in_use "127.0.0.1:$port"; then
            return 0
        fi
        wait "${PIDS[-1]}" 2>/dev/null || true
        unset 'PIDS[-1]' 'NAMES[-1]'
        if [ "$attempt" -ge "$BIND_ATTEMPTS_MAX" ] ||
            ! tail -n +"$((lines + 1))" "$log" | grep -q "Address already in use"; then
            echo "error: $name exited; see .local/logs/$name.log:" >&2
            grep -v '^ *[0-9]*: \|^ *at ' ".local/logs/$name.log" | tail -n 12 >&2 || true
            exit 1
        fi
        echo "$name: a port was busy (attempt $attempt of $BIND_ATTEMPTS_MAX); retrying" >&2
        sleep 1
    done
}
http_ok() { curl_ -fsS -o /dev/null --max-time 2 "$1"; }
has_flag() { grep -q -- "$2" <<<"$1"; }

# With --secure-nats every process logs in as its own NATS NKey user (seed
# in .local/nats/secure/creds/<user>.nk) over TLS (the throw-away CA
# .local/nats/secure/tls/ca.pem); agencies may only publish their own
# events, so the hub creates the stream (--skip-stream-setup).
NATS_CONF=deploy/nats/local.conf
nats_login() { :; }
if [ "$SECURE_NATS" = 1 ]; then
    MPP_NATS_SERVER=$MPP_NATS_SERVER MPP_REGISTRAR="$BIN/mpp-registrar" deploy/nats/gen-secure.sh .local/nats/secure
    NATS_CONF=.local/nats/secure/nats.conf
    nats_login() {
        echo "--nats-user $1 --nats-nkey-file .local/nats/secure/creds/$1.nk" \
            "--nats-tls-ca-file .local/nats/secure/tls/ca.pem"
    }
fi
start "$MPP_NATS_SERVER" -c "$NATS_CONF"
wait_until nats-server "${PIDS[-1]}" port_in_use "127.0.0.1:$NATS_PORT"
echo "nats-server     up: $NATS_URL (monitoring http://$NATS_MONITOR/jsz)" >&2

HUB_ARGS=(serve --nats-url "$NATS_URL" --data-dir .local/data/hub --grpc-addr "$HUB_GRPC"
    --http-addr "$HUB_HTTP" --calendars-dir deploy/calendars ${TLS_ARGS[@]+"${TLS_ARGS[@]}"})
# shellcheck disable=SC2207 # user names and paths without spaces
HUB_ARGS+=($(nats_login hub))
# The local operator's and auditor's tokens: the hub keeps only their
# SHA-256 (tokens files in the hub's format, client_id:sha256).
secret operator-token 24
secret auditor-token 24
for role in operator auditor; do
    (umask 077 && printf '# written by deploy/local/up.sh: client_id:sha256(token)\nlocal-%s:%s\n' "$role" \
        "$(sha256sum <".local/secrets/$role-token" | cut -d' ' -f1)" >".local/secrets/$role-tokens")
done
HUB_ARGS+=(--operator-tokens-file .local/secrets/operator-tokens --auditor-tokens-file .local/secrets/auditor-tokens)
# Each participant's own token for the hub's verdict feed (VerdictService):
# the service reads it (--hub-token-file), the hub keeps its SHA-256 under
# the participant's id (the front office is mpp-<region>).
participant_id() { if [ "$1" = frontoffice ]; then echo "mpp-$REGION"; else echo "$1"; fi; }
(
    umask 077
    echo "# written by deploy/local/up.sh: participant_id:sha256(token)"
    for s in "${SERVICES[@]}"; do
        read -r name _ <<<"$s"
        secret "hub-token-$name" 24
        printf '%s:%s\n' "$(participant_id "$name")" "$(sha256sum <".local/secrets/hub-token-$name" | cut -d' ' -f1)"
    done
) >.local/secrets/participant-tokens
HUB_ARGS+=(--participant-tokens-file .local/secrets/participant-tokens)
HUB_HELP=$("$BIN/mpp-hub" serve --help 2>&1 || true)
if has_flag "$HUB_HELP" --pin-pepper-file; then
    HUB_ARGS+=(--pin-pepper-file "$PEPPER")
fi
HUB_ARGS+=(--registrar-key-file .local/secrets/registrar.key.pub)
start "$BIN/mpp-hub" "${HUB_ARGS[@]}"
wait_until mpp-hub "${PIDS[-1]}" http_ok "$SCHEME://$HUB_HTTP/readyz"
echo "mpp-hub         up: gRPC $HUB_GRPC, HTTP $SCHEME://$HUB_HTTP" >&2

# The registry, once per stream (the marker lives with the data): the
# registrar signs the statements (offline in a province) and publishes them.
if [ ! -e .local/data/registry-published ]; then
    "$BIN/mpp-registrar" sign --registrar-key .local/secrets/registrar.key --registry "$REGISTRY" \
        --out .local/data/registry.statements >&2
    # shellcheck disable=SC2046 # user names and paths without spaces
    "$BIN/mpp-registrar" publish --statements .local/data/registry.statements --nats-url "$NATS_URL" \
        $(nats_login registrar) >&2
    touch .local/data/registry-published
fi

for s in "${SERVICES[@]}"; do
    read -r name grpc metrics <<<"$s"
    exe="$BIN/mpp-$name"
    help=$("$exe" --help 2>&1 || true)
    args=(--nats-url "$NATS_URL" --grpc-addr "127.0.0.1:$grpc" --region-code "$REGION"
        --data-dir ".local/data/$name" --tokens-file ".local/secrets/tokens-$name"
        --metrics-addr "127.0.0.1:$metrics" ${TLS_ARGS[@]+"${TLS_ARGS[@]}"}
        --signing-key-file ".local/secrets/signing-$name.key"
        --hub-url "$SCHEME://$HUB_GRPC" --hub-token-file ".local/secrets/hub-token-$name")
    [ "$SCHEME" = http ] || args+=(--hub-tls-ca-file "$TLS_DIR/ca.pem")
    if [ "$SECURE_NATS" = 1 ]; then
        # shellcheck disable=SC2207 # user names and paths without spaces
        args+=($(nats_login "$name") --skip-stream-setup)
    fi
    if [ "$name" = frontoffice ]; then
        args+=(--pin-pepper-file "$PEPPER" --nik-key-file .local/secrets/nik-key --vault-key-file .local/secrets/vault-key
            --serial-key-file .local/secrets/serial-key --mpp-name "MPP Kota Bengkulu"
            --lookup-base-url "$SCHEME://$HUB_HTTP/lacak")
        # Notifications to citizens take their settings from the environment
        # (the flags' MPP_* fallbacks); no SMTP server or gateway is started.
        if [ -n "${MPP_SMTP_URL:-}${MPP_SMS_GATEWAY_URL:-}" ]; then
            echo "notifications: on (MPP_SMTP_URL / MPP_SMS_GATEWAY_URL; docs/NOTIFICATIONS.md)" >&2
        else
            echo "notifications: off (set MPP_SMTP_URL and MPP_SMTP_FROM, or MPP_SMS_GATEWAY_URL and MPP_SMS_GATEWAY_TOKEN_FILE; docs/NOTIFICATIONS.md)" >&2
        fi
    else
        # Walk-in citizens' cases are opened by the front office (started first).
        args+=(--front-office-url "$SCHEME://127.0.0.1:$FRONT_OFFICE_GRPC"
            --front-office-token-file ".local/secrets/front-office-token-$name")
        [ "$SCHEME" = http ] || args+=(--front-office-tls-ca-file "$TLS_DIR/ca.pem")
        if [ -f "deploy/catalogue/$name.toml" ] && has_flag "$help" --catalogue-file; then
            args+=(--catalogue-file "deploy/catalogue/$name.toml")
        fi
    fi
    start_service "mpp-$name" "$grpc" "$exe" "${args[@]}"
    printf '%-15s up: gRPC 127.0.0.1:%s, metrics %s://127.0.0.1:%s/metrics\n' "mpp-$name" "$grpc" "$SCHEME" "$metrics" >&2
done

# The stream's last sequence, from the NATS monitoring endpoint.
stream_last_seq() {
    curl -fsS --max-time 2 "http://$NATS_MONITOR/jsz?streams=true" | jq -r '[.account_details[]?.stream_detail[]? | select(.name == "MPP_EVENTS") | .state.last_seq] | first // 0'
}
hub_last_stream_seq() { curl_ -fsS --max-time 2 "$SCHEME://$HUB_HTTP/api/v1/head" | jq -r '.last_stream_seq // 0'; }
caught_up() {
    local want have
    want=$(stream_last_seq) && have=$(hub_last_stream_seq) && [ "$want" -gt 0 ] && [ "$have" -ge "$want" ]
}

SAMPLE_LINES=()
if [ "$RUN_SIM" = 1 ]; then
    SIM_ARGS=(--cases "$CASES" --seed "$SEED" --rate "$RATE" --region-code "$REGION"
        --lookup-base "$SCHEME://$HUB_HTTP/api/v1/cases/")
    if [ "$TLS" = 1 ]; then
        SIM_ARGS+=(--tls-ca-file "$TLS_DIR/ca.pem")
    fi
    if [ -n "$JOURNEYS" ]; then
        SIM_ARGS+=(--journey "$JOURNEYS")
    fi
    for s in "${SERVICES[@]}"; do
        read -r name grpc _ <<<"$s"
        SIM_ARGS+=("--$name-addr" "$SCHEME://127.0.0.1:$grpc")
    done
    echo >&2
    echo "sample traffic: mpp-sim ${SIM_ARGS[*]:0:8} (tokens from .local/secrets/sim-token-<service>)" >&2
    env "${SIM_TOKENS[@]}" "$BIN/mpp-sim" "${SIM_ARGS[@]}" | tee .local/logs/mpp-sim.out
    mapfile -t SAMPLE_LINES < <(grep -v '^#' .local/logs/mpp-sim.out | head -n "$SAMPLES")
    wait_until mpp-hub "${PIDS[1]}" caught_up
    echo "mpp-hub ingested everything up to stream seq $(hub_last_stream_seq)" >&2
fi

echo
echo "MPP Hub, local stack (region $REGION):"
CURL_SHOWN="curl${CURL_TLS[*]+ ${CURL_TLS[*]}}"
echo "  tracking page   $SCHEME://$HUB_HTTP/lacak   (tracking number + PIN)"
echo "  JSON lookup     $CURL_SHOWN -H 'X-MPP-PIN: <pin>' $SCHEME://$HUB_HTTP/api/v1/cases/<tracking number>"
echo "  gRPC            mpp.v1.CasesService/GetCase on $HUB_GRPC${CURL_TLS[*]+ (TLS, CA $TLS_DIR/ca.pem)}"
echo "  health          $SCHEME://$HUB_HTTP/healthz   $SCHEME://$HUB_HTTP/readyz   $SCHEME://$HUB_HTTP/api/v1/head"
echo "  ops dashboard   $SCHEME://$HUB_HTTP/ops   (operator token: $(cat .local/secrets/operator-token))"
echo "  audit API       mpp.v1.AuditService on $HUB_GRPC   (auditor token: $(cat .local/secrets/auditor-token); docs/AUDIT_API.md)"
if http_ok "$SCHEME://$HUB_HTTP/metrics" 2>/dev/null; then
    echo "  hub metrics     $SCHEME://$HUB_HTTP/metrics"
fi
echo "  verdicts        each service hears the hub's verdict on its events: mpp.v1.EventStatusService on its gRPC port, mpp_agency_verdicts_total on its metrics"
if [ ${#SAMPLE_LINES[@]} -gt 0 ]; then
    echo
    echo "Sample cases (all in .local/logs/mpp-sim.out):"
    for line in "${SAMPLE_LINES[@]}"; do
        IFS=$'\t' read -r tn pin journey url _ <<<"$line"
        body=$(curl_ -sS --max-time 5 -H "X-MPP-PIN: $pin" "$url" || true)
        status=$(jq -r '.status // .error.code // "?"' <<<"$body" 2>/dev/null || echo "?")
        next=$(jq -r '[.next_actions[]?.kind] | unique | join(",")' <<<"$body" 2>/dev/null || true)
        printf '  %-12s %s  PIN %s  status %s%s\n' "$journey" "$tn" "$pin" "$status" "${next:+ (next: $next)}"
        printf '               %s -H '\''X-MPP-PIN: %s'\'' %s\n' "$CURL_SHOWN" "$pin" "$url"
    done
fi
echo
echo "Service metrics:"
for s in "${SERVICES[@]}"; do
    read -r name _ metrics <<<"$s"
    printf '  %-15s %s://127.0.0.1:%s/metrics\n' "mpp-$name" "$SCHEME" "$metrics"
done
echo
echo "Secrets in .local/secrets/ (0600): pin-pepper, nik-key, vault-key, serial-key, operator-token, auditor-token (operator-tokens, auditor-tokens = their hashes), registrar.key, signing-<service>.key, sim-token-<service> (mpp-sim's token there; tokens-<service> = its hash), front-office-token-<agency> (its walk-in token at the front office)."
SIM_ENV='for s in frontoffice dukcapil imigrasi bpn pln pdam bank dpmptsp; do export "MPP_${s^^}_TOKEN=$(cat .local/secrets/sim-token-$s)"; done'
if [ "$TLS" = 1 ]; then
    echo "More traffic: $SIM_ENV; $BIN/mpp-sim --cases 20 --seed 7 --tls-ca-file $TLS_DIR/ca.pem --<service>-addr https://127.0.0.1:<port> (each service)"
else
    echo "More traffic: $SIM_ENV; $BIN/mpp-sim --cases 20 --seed 7"
fi
echo "Logs: .local/logs/.  Stop: Ctrl-C here (or kill -TERM $$); everything started here stops."

# Run until Ctrl-C, or until one of the processes exits on its own.
set +e
wait -n "${PIDS[@]}"
status=$?
set -e
for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
        echo "${NAMES[i]} exited on its own (status $status); see .local/logs/${NAMES[i]}.log" >&2
    fi
done
exit 1
