#!/usr/bin/env bash
# Every test of the project, as CI runs it (.ci/run calls exactly this).
# Installs what it needs first (rustfmt/clippy components when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

start=$(date +%s)
step() { printf '\n== %s (at %ss)\n' "$*" "$(( $(date +%s) - start ))"; }

step "toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "canister wasm (every canister must build for wasm32)"
scripts/build-wasm.sh -- --locked

step "script tests (stub icp/dfx)"
bash scripts/tests/upload-partition-wasm.sh

step "cargo test"
cargo test --workspace --locked
