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

step "icp build (icp-cli from npm, project-local) on icp.yaml: both canisters"
scripts/check-icp-build.sh

step "script tests (stub icp/dfx)"
bash scripts/tests/upload-partition-wasm.sh

step "web: npm packages (web/package-lock.json) and Debian's chromium"
scripts/install-web-tools.sh

step "web: bindgen, tsc --noEmit, bundle; the committed web/dist is what the sources build"
(cd web && npm run --silent build)
if [ -n "$(git status --porcelain -- web/dist)" ]; then
    git status --short -- web/dist
    echo "web/dist differs from a build of web/src: run (cd web && npm run build) and commit web/dist" >&2
    exit 1
fi

step "cargo test"
cargo test --workspace --locked

step "web: the TypeScript client and the pages in Chromium, against a running demo"
cargo build -p flotilla-cli --locked
(cd web && FLOTILLA_BIN=../target/debug/flotilla npm test --silent)
