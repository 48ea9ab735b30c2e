# shellcheck shell=bash
# Sourced by tests/run-all.sh, deploy/local/up.sh and deploy/lib/ensure-nats.sh:
# the project's own Python virtual environment, `.venv` at the repository
# root. Python tools go there, never into the system interpreter's
# site-packages (which Debian 12+ and Ubuntu 24.04 refuse, PEP 668).
#
#   mpp_ensure_venv            creates .venv if missing; exports MPP_VENV
#   mpp_venv_pip PKG [CHECK]   installs PKG into it unless `python -c CHECK`
#                              (or, without CHECK, `pip show PKG`) says it is there

mpp_ensure_venv() {
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    MPP_VENV="$root/.venv"
    export MPP_VENV
    [ -x "$MPP_VENV/bin/python3" ] && return 0
    command -v python3 >/dev/null 2>&1 || { echo "error: python3 is needed (for .venv) and not installed" >&2; return 1; }
    echo "creating the project's Python environment $MPP_VENV" >&2
    if ! python3 -m venv "$MPP_VENV" >/dev/null 2>&1; then
        # Debian and Ubuntu ship venv in a package of its own.
        rm -rf "$MPP_VENV"
        local sudo=
        if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo=sudo; fi
        local pyver
        pyver=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        echo "python3 -m venv failed; installing python3-venv with apt-get" >&2
        { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
            "python3-venv" "python${pyver}-venv"; } >&2 2>/dev/null ||
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >&2 || true
        python3 -m venv "$MPP_VENV" >&2 || {
            echo "error: cannot create $MPP_VENV (install python3-venv)" >&2
            return 1
        }
    fi
}

mpp_venv_pip() {
    local pkg=$1 check=${2:-}
    mpp_ensure_venv || return 1
    if [ -n "$check" ]; then
        "$MPP_VENV/bin/python3" -c "$check" >/dev/null 2>&1 && return 0
    elif "$MPP_VENV/bin/python3" -m pip show --quiet "$pkg" >/dev/null 2>&1; then
        return 0
    fi
    echo "installing $pkg into $MPP_VENV" >&2
    "$MPP_VENV/bin/python3" -m pip install --quiet --disable-pip-version-check "$pkg" >&2
}
