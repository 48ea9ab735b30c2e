#!/usr/bin/env bash
# Writes the Compose stack's secrets into deploy/compose/secrets/ (mode 0600,
# never commit); the same files, as keys of the Secret mpp-secrets, serve
# the Kubernetes files (deploy/k8s). No secret is shared by two participants
# (the front office and the seven agency services), except the province's
# PIN pepper, which the front office (the only service that issues PINs;
# agencies' walk-in citizens' cases are opened there) and the hub share:
#
#   pin-pepper                  the province's PIN pepper (the front office, the hub)
#   session-key                 the hub's page-session key (shared by its replicas)
#   nik-key                     the front office's NIK key
#   vault-key                   the front office's key vault key (KEK)
#   client-token-<p>            the bearer token of participant <p>'s back-office
#                               caller (give it to that caller only; never mounted)
#   tokens-<p>                  <p>'s tokens file: client_id:sha256(token)[:scopes]
#                               (the front office's caller gets cases:open,
#                               personal-data:read, personal-data:erase, pins:reissue;
#                               its tokens file also lists each agency's walk-in token)
#   front-office-token-<a>      agency <a>'s own token at the front office, to open
#                               its walk-in citizens' cases (scope cases:open-walk-in
#                               only; mounted into <a> alone)
#   operator-token, auditor-token and their hashes operator-tokens, auditor-tokens (the hub)
#   nats-nkey-<user>, .pub      the NATS NKey of <user> (`mpp-registrar
#                               nats-nkey`): its seed (0600, mounted into that
#                               user's workload only) and public key; users:
#                               every participant, the registrar, the hub
#                               ("hub" in Compose, "mpp-hub-0" and "mpp-hub-1"
#                               in Kubernetes) and the Kubernetes stream
#                               set-up Job ("stream-setup")
#   nats.env                    the PUBLIC keys as NATS_NKEY_<USER>=U..., for
#                               the NATS server (Compose env_file)
#   tls-ca.pem, tls-ca.key      a local CA (docs/TLS.md); tls-ca.pem is public
#   tls-cert-<s>, tls-key-<s>   the TLS certificate and key of server <s> (the
#                               hub and every participant), each its own
#   nats-cert, nats-key         the NATS servers' certificate (client and
#                               route ports; Compose and Kubernetes names)
#   signing-key-<p>, .pub       participant <p>'s Ed25519 event-signing key (its
#                               seed, 0600) and public key (for the registrar)
#   registrar.key, .pub         the province registrar's Ed25519 key: the
#                               private one belongs OFFLINE with the registrar
#                               (move it off this host); the hub mounts .pub
#   witness-key, .pub           the trial witness's cosigning key (seed, 0600);
#                               a real witness makes its own on its own host
#   witness-token               the witness's auditor token (its hash is in
#                               auditor-tokens as client "witness")
#   ../.env                     MPP_WITNESS_VKEY (the witness's vkey, which
#                               the hub is given) and MPP_HUB_PUBLIC_KEY (fill
#                               in after the hub's first start, for the
#                               witness: docs/AUDIT.md "Running a witness")
#
# Existing files are kept (delete one to rotate it). Prints the tokens' paths.
set -euo pipefail
DIR=$(cd "$(dirname "$0")" && pwd)/secrets
PARTICIPANTS=(frontoffice dukcapil imigrasi bpn pln pdam bank dpmptsp)
NATS_USERS=("${PARTICIPANTS[@]}" hub mpp-hub-0 mpp-hub-1 stream-setup registrar)
(umask 077 && mkdir -p "$DIR")
secret() { [ -s "$DIR/$1" ] || (umask 077 && od -An -tx1 -N"$2" /dev/urandom | tr -d ' \n' >"$DIR/$1"); }
hash() { printf %s "$(cat "$DIR/$1")" | sha256sum | cut -d' ' -f1; }
secret pin-pepper 32
secret nik-key 32
secret vault-key 32
secret session-key 32
secret operator-token 24
secret auditor-token 24
(umask 077 && printf 'operator:%s\n' "$(hash operator-token)" >"$DIR/operator-tokens")
secret witness-token 24
(umask 077 && printf 'auditor:%s\nwitness:%s\n' "$(hash auditor-token)" "$(hash witness-token)" >"$DIR/auditor-tokens")
# ed25519 NAME: an Ed25519 key in the format of `mpp-registrar keygen`: NAME
# holds the 32-byte seed in hex (0600), NAME.pub the public key in hex;
# kept if present. The seed and the public key are the last 32 bytes of
# OpenSSL's PKCS#8 and SubjectPublicKeyInfo DER encodings.
ed25519() {
    [ -s "$DIR/$1" ] && return 0
    local der
    der=$(mktemp)
    openssl genpkey -algorithm ed25519 -outform DER -out "$der" 2>/dev/null
    (umask 077 && { tail -c 32 "$der" | od -An -tx1 | tr -d ' \n'; echo; } >"$DIR/$1")
    { openssl pkey -inform DER -in "$der" -pubout -outform DER 2>/dev/null | tail -c 32 | od -An -tx1 | tr -d ' \n'; echo; } >"$DIR/$1.pub"
    rm -f "$der"
}
ed25519 registrar.key
ed25519 witness-key
# The witness's vkey (c2sp.org/signed-note, cosignature/v1 type 0x04):
# NAME+hex(SHA-256(NAME "\n" 0x04 key)[:4])+base64(0x04 key).
WITNESS_NAME=witness.mpp.example/witness
bytes() { printf "$(sed 's/../\\x&/g' "$1" | tr -d '\n')"; }
vkey_hash=$({ printf '%s\n\x04' "$WITNESS_NAME"; bytes "$DIR/witness-key.pub"; } | sha256sum | cut -c1-8)
vkey_b64=$({ printf '\x04'; bytes "$DIR/witness-key.pub"; } | base64 -w0)
ENV_FILE=$(dirname "$DIR")/.env
hub_key=$(sed -n 's/^MPP_HUB_PUBLIC_KEY=//p' "$ENV_FILE" 2>/dev/null || true)
printf 'MPP_WITNESS_NAME=%s\nMPP_WITNESS_VKEY=%s+%s+%s\nMPP_HUB_PUBLIC_KEY=%s\n' \
    "$WITNESS_NAME" "$WITNESS_NAME" "$vkey_hash" "$vkey_b64" "$hub_key" >"$ENV_FILE"
for p in "${PARTICIPANTS[@]}"; do
    ed25519 "signing-key-$p"
    secret "client-token-$p" 24
    scopes=
    [ "$p" != frontoffice ] || scopes=:cases:open,personal-data:read,personal-data:erase,pins:reissue
    (umask 077 && printf 'backoffice-%s:%s%s\n' "$p" "$(hash "client-token-$p")" "$scopes" >"$DIR/tokens-$p")
done
# Each agency's walk-in token at the front office (BukaBerkasInstansi).
for p in "${PARTICIPANTS[@]}"; do
    [ "$p" != frontoffice ] || continue
    secret "front-office-token-$p" 24
    (umask 077 && printf 'walk-in-%s:%s:cases:open-walk-in\n' "$p" "$(hash "front-office-token-$p")" \
        >>"$DIR/tokens-frontoffice")
done

# NATS NKeys: one per user. The server is given only the public keys
# (nkey: $NATS_NKEY_<USER>, from nats.env); each seed stays with its user.
# shellcheck source=../lib/nkey.sh
source "$(dirname "$DIR")/../lib/nkey.sh"
NATS_ENV=
for u in "${NATS_USERS[@]}"; do
    public=$(mpp_nkey "$DIR/nats-nkey-$u")
    NATS_ENV+=$(printf 'NATS_NKEY_%s=%s' "$(echo "$u" | tr 'a-z-' 'A-Z_')" "$public")$'\n'
done
printf '%s' "$NATS_ENV" >"$DIR/nats.env"

cd "$DIR"
if [ ! -s tls-ca.pem ]; then
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
        -subj "/CN=MPP compose CA" -keyout tls-ca.key -out tls-ca.pem 2>/dev/null)
fi
# cert NAME EXTENDED_KEY_USAGE SUBJECT_ALT_NAMES: tls-cert-NAME / tls-key-NAME
# (or OUT_CERT / OUT_KEY), signed by the local CA, unless present.
cert() {
    local name=$1 eku=$2 names=$3 out_cert=${4:-tls-cert-$1} out_key=${5:-tls-key-$1}
    [ -s "$out_cert" ] && return 0
    (
        umask 077
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=$name" -keyout "$out_key" -out "$name.csr" 2>/dev/null
        printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$names" "$eku" >"$name.ext"
        openssl x509 -req -in "$name.csr" -CA tls-ca.pem -CAkey tls-ca.key -CAcreateserial -days 825 \
            -extfile "$name.ext" -out "$out_cert" 2>/dev/null
        rm -f "$name.csr" "$name.ext"
    )
}
# Each server's own certificate: its Compose service name, its Kubernetes
# Service names, localhost and 127.0.0.1.
cert hub serverAuth "DNS:localhost,IP:127.0.0.1,DNS:hub,DNS:mpp-hub,DNS:mpp-hub.mpp.svc,DNS:mpp-hub-0.mpp-hub-replicas,DNS:mpp-hub-0.mpp-hub-replicas.mpp.svc"
for s in "${PARTICIPANTS[@]}"; do
    cert "$s" serverAuth "DNS:localhost,IP:127.0.0.1,DNS:$s,DNS:mpp-$s,DNS:mpp-$s.mpp.svc"
done
# NATS: client port and routes. Routes verify each other's certificate both
# ways, so it is a client certificate too. Names: Compose's "nats", the
# Kubernetes Service and every pod behind it.
cert nats serverAuth,clientAuth "DNS:localhost,IP:127.0.0.1,DNS:nats,DNS:mpp-nats,DNS:mpp-nats.mpp.svc,DNS:*.mpp-nats,DNS:*.mpp-nats.mpp.svc,DNS:*.mpp-nats.mpp.svc.cluster.local" \
    nats-cert nats-key
rm -f tls-ca.srl
# The certificates and the CA are public (the keys stay 0600).
chmod 644 tls-ca.pem nats-cert tls-cert-*
echo "secrets in $DIR (operator token: $DIR/operator-token; back-office tokens: $DIR/client-token-<participant>)"
