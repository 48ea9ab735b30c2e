# shellcheck shell=bash
# Sourced by deploy/nats/gen-secure.sh and deploy/nats/cluster/gen-cluster.sh:
# a throw-away CA and certificates signed by it, made with openssl (a
# local/dev and test convenience; production gives its own certificates).
# Existing files are kept, so running a generator again changes nothing.

# mpp_tls_ca DIR DAYS: makes the CA DIR/ca.pem (public) and DIR/ca.key
# (mode 0600) unless both exist.
mpp_tls_ca() {
    local dir=$1 days=$2
    if [ -s "$dir/ca.pem" ] && [ -s "$dir/ca.key" ]; then
        return 0
    fi
    command -v openssl >/dev/null || { echo "error: openssl is needed to make a TLS certificate" >&2; return 1; }
    (
        umask 077
        mkdir -p "$dir"
        cd "$dir"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
            -subj "/CN=MPP NATS throw-away CA" -keyout ca.key -out ca.pem 2>/dev/null
    ) || { echo "error: openssl could not make a CA in $dir" >&2; return 1; }
    chmod 644 "$dir/ca.pem"
}

# mpp_tls_cert DIR NAME DAYS SANS: makes DIR/NAME.pem (public) and
# DIR/NAME.key (mode 0600), signed by the CA of DIR (mpp_tls_ca), for
# server and client use (a cluster node presents it on both ends of a
# route), with the subjectAltName SANS (e.g. IP:127.0.0.1,DNS:localhost);
# unless both exist.
mpp_tls_cert() {
    local dir=$1 name=$2 days=$3 sans=$4
    if [ -s "$dir/$name.pem" ] && [ -s "$dir/$name.key" ]; then
        return 0
    fi
    (
        umask 077
        cd "$dir"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=$name" -keyout "$name.key" -out "$name.csr" 2>/dev/null
        printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$sans" >"$name.ext"
        openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
            -extfile "$name.ext" -out "$name.pem" 2>/dev/null
        rm -f "$name.csr" "$name.ext" ca.srl
    ) || { echo "error: openssl could not make the certificate $dir/$name.pem" >&2; return 1; }
    chmod 644 "$dir/$name.pem"
}
