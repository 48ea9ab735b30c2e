# shellcheck shell=bash
# Sourced by deploy/nats/gen-secure.sh and deploy/compose/gen-secrets.sh:
# makes NATS NKey user keys with `mpp-registrar nats-nkey`.
#
# mpp-registrar is found as $MPP_REGISTRAR, then on PATH, then built in the
# repository ($CARGO_TARGET_DIR or target/, release before debug). Without
# it: build it (`cargo build -p mpp-registrar`) or run the generator where
# it is installed (the container image has it).

# Prints the path of mpp-registrar, or fails with one line.
mpp_find_registrar() {
    local root candidate
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    for candidate in "${MPP_REGISTRAR:-}" "$(command -v mpp-registrar 2>/dev/null || true)" \
        "${CARGO_TARGET_DIR:-$root/target}/release/mpp-registrar" \
        "${CARGO_TARGET_DIR:-$root/target}/debug/mpp-registrar"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: mpp-registrar not found (set MPP_REGISTRAR, put it on PATH, or cargo build -p mpp-registrar)" >&2
    return 1
}

# mpp_nkey SEED_FILE: makes an NKey user key unless SEED_FILE exists: the
# seed (SU..., mode 0600, the participant's --nats-nkey-file) in SEED_FILE
# and the public key (U..., what the server's config names) in
# SEED_FILE.pub. Prints the public key. An existing seed is kept, so a
# second run changes nothing; delete both files to rotate the key.
mpp_nkey() {
    local seed=$1 public registrar
    if [ ! -s "$seed" ]; then
        registrar=$(mpp_find_registrar) || return 1
        rm -f "$seed" "$seed.pub"
        "$registrar" nats-nkey --out "$seed" >/dev/null || return 1
    fi
    chmod 600 "$seed"
    public=$(tr -d ' \n\r\t' <"$seed.pub" 2>/dev/null || true)
    if [[ ! "$public" =~ ^U[A-Z2-7]{55}$ ]]; then
        echo "error: $seed.pub holds no NKey user public key (U..., 56 characters); delete $seed and its .pub to make a new key" >&2
        return 1
    fi
    chmod 644 "$seed.pub"
    echo "$public"
}
