#!/usr/bin/env bash
# Writes the Compose stack's secrets into deploy/compose/secrets/ (mode 0600,
# never commit): the province's PIN pepper, the NIK key, the hub's
# page-session key (shared by its replicas), a bearer token for
# back-office callers (services keep only its SHA-256) and an operator and an
# auditor token for the hub (the hub keeps only their SHA-256), and a local
# CA (tls-ca.pem, tls-ca.key) with one TLS certificate (tls-cert, tls-key)
# for every service name of the stack, localhost and 127.0.0.1 (docs/TLS.md).
# Existing files are kept. Prints the tokens' paths.
set -euo pipefail
DIR=$(cd "$(dirname "$0")" && pwd)/secrets
(umask 077 && mkdir -p "$DIR")
secret() { [ -s "$DIR/$1" ] || (umask 077 && od -An -tx1 -N"$2" /dev/urandom | tr -d ' \n' >"$DIR/$1"); }
secret pin-pepper 32
secret nik-key 32
secret session-key 32
secret client-token 24
secret operator-token 24
secret auditor-token 24
hash() { printf %s "$(cat "$DIR/$1")" | sha256sum | cut -d' ' -f1; }
(umask 077 && printf 'backoffice:%s\n' "$(hash client-token)" >"$DIR/tokens")
(umask 077 && printf 'operator:%s\n' "$(hash operator-token)" >"$DIR/operator-tokens")
(umask 077 && printf 'auditor:%s\n' "$(hash auditor-token)" >"$DIR/auditor-tokens")
if [ ! -s "$DIR/tls-cert" ]; then
    (
        umask 077
        cd "$DIR"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
            -subj "/CN=MPP compose CA" -keyout tls-ca.key -out tls-ca.pem 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=mpp" -keyout tls-key -out tls.csr 2>/dev/null
        # Compose service names, and the Kubernetes services (deploy/k8s).
        names="DNS:localhost,IP:127.0.0.1,DNS:hub,DNS:mpp-hub,DNS:mpp-hub.mpp.svc"
        for s in frontoffice dukcapil imigrasi bpn pln pdam bank dpmptsp; do
            names="$names,DNS:$s,DNS:mpp-$s,DNS:mpp-$s.mpp.svc"
        done
        printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$names" >tls.ext
        openssl x509 -req -in tls.csr -CA tls-ca.pem -CAkey tls-ca.key -CAcreateserial -days 825 \
            -extfile tls.ext -out tls-cert 2>/dev/null
        rm -f tls.csr tls.ext
    )
fi
# The certificate and its CA are public (the keys stay 0600).
chmod 644 "$DIR/tls-cert" "$DIR/tls-ca.pem"
echo "secrets in $DIR (operator token: $DIR/operator-token)"
