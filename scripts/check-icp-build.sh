#!/usr/bin/env bash
# Checks the deploy path's build with the real icp-cli: `icp build` on the project's icp.yaml
# (every canister it lists: index and partition), then checks the artifacts icp-cli keeps for
# `icp deploy` in .icp/cache/artifacts/<name>: present, gzip, a wasm module inside, and the same
# bytes as scripts/build-wasm.sh's target/wasm/<name>.wasm.gz.
#
# icp-cli comes from the npm package @icp-sdk/icp-cli-linux-x64 at a pinned version, installed
# project-locally into target/tools/icp-cli (never globally; its own prefix, because an
# `npm install --no-save` into target/tools/npm would remove the ic-wasm installed there) and
# linked as target/tools/bin/icp. Idempotent: an installed binary of the pinned version is kept.
# No network is needed: `icp build` only runs the build scripts. Telemetry is switched off.
#
# Quiet on success: the icp version, then one line per canister (name, bytes, sha256).
#
# Env: FLOTILLA_ROOT (repo root; default: this script's parent directory),
#      ICP_CLI_VERSION (default below), ICP (an existing icp binary: skips the npm install),
#      plus what scripts/build-wasm.sh reads.
set -euo pipefail

ROOT="${FLOTILLA_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
ROOT="$(cd "$ROOT" && pwd)"
export FLOTILLA_ROOT="$ROOT"
TOOLS="$ROOT/target/tools"
ICP_CLI_VERSION="${ICP_CLI_VERSION:-1.5.0}"
ICP_NPM_PKG="@icp-sdk/icp-cli-linux-x64"
CANISTERS=(index partition) # the canisters of icp.yaml

# icp-cli sends usage telemetry unless told not to; a check must not phone home.
export DO_NOT_TRACK=1 ICP_TELEMETRY_DISABLED=1

say() { echo "[icp-build] $*"; }
die() { echo "[icp-build] error: $*" >&2; exit 1; }

LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
show_log() { sed 's/^/  | /' "$LOG" >&2; }

# ---------------------------------------------------------------- icp-cli
icp_runs() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }
why_not_running() { # a binary that is there but does not run: name missing shared libraries
  local missing
  missing="$(ldd "$1" 2>/dev/null | grep 'not found' | tr -s ' \t' ' ' || true)"
  [ -z "$missing" ] || echo " (missing shared libraries:$missing)"
}

if [ -n "${ICP:-}" ]; then
  icp_runs "$ICP" || die "ICP=$ICP does not run$(why_not_running "$ICP")"
  icp="$ICP"
else
  prefix="$TOOLS/icp-cli"
  icp="$prefix/node_modules/$ICP_NPM_PKG/bin/icp"
  if ! icp_runs "$icp" || [ "$("$icp" --version)" != "icp $ICP_CLI_VERSION" ]; then
    case "$(uname -s)/$(uname -m)" in
      Linux/x86_64) ;;
      *) die "$ICP_NPM_PKG is for Linux x86_64 only; set ICP to an icp binary" ;;
    esac
    command -v npm >/dev/null 2>&1 || die "npm not found (needed for $ICP_NPM_PKG)"
    mkdir -p "$prefix"
    if ! npm install --prefix "$prefix" --no-save --no-package-lock --no-audit --no-fund \
      --loglevel=error "$ICP_NPM_PKG@$ICP_CLI_VERSION" >"$LOG" 2>&1; then
      show_log
      die "npm install $ICP_NPM_PKG@$ICP_CLI_VERSION into ${prefix#"$ROOT"/} failed"
    fi
    [ -x "$icp" ] || die "no icp binary at ${icp#"$ROOT"/} after npm install"
    icp_runs "$icp" || die "${icp#"$ROOT"/} does not run$(why_not_running "$icp")"
    [ "$("$icp" --version)" = "icp $ICP_CLI_VERSION" ] \
      || die "npm installed $("$icp" --version), not icp $ICP_CLI_VERSION"
  fi
  mkdir -p "$TOOLS/bin"
  ln -sf "$icp" "$TOOLS/bin/icp"
fi
say "$("$icp" --version)"

# ---------------------------------------------------------------- icp build
cd "$ROOT"
# icp-cli runs the canisters' build scripts in parallel, and each one starts with
# install-wasm-tools.sh: install the tools once, first, so that two first-time installs
# (npm, rustup) never run at the same time.
if ! scripts/install-wasm-tools.sh >"$LOG" 2>&1; then
  show_log
  die "scripts/install-wasm-tools.sh failed"
fi

artifacts="$ROOT/.icp/cache/artifacts"
for c in "${CANISTERS[@]}"; do rm -f "$artifacts/$c"; done # check this build's output, not an old one

# (RUST_LIB_BACKTRACE=0: an error is a message, not a stack trace, whatever RUST_BACKTRACE says.)
if ! RUST_LIB_BACKTRACE=0 "$icp" build --project-root-override "$ROOT" >"$LOG" 2>&1; then
  show_log
  die "icp build failed"
fi

# ---------------------------------------------------------------- artifacts
for c in "${CANISTERS[@]}"; do
  a="$artifacts/$c"
  [ -f "$a" ] || { show_log; die "$c: icp build left no artifact at ${a#"$ROOT"/}"; }
  [ -s "$a" ] || die "$c: ${a#"$ROOT"/} is empty"
  [ "$(head -c2 "$a" | od -An -tx1 | tr -d ' \n')" = 1f8b ] || die "$c: ${a#"$ROOT"/} is not gzip"
  gzip -t "$a" 2>/dev/null || die "$c: ${a#"$ROOT"/} is a broken gzip stream"
  magic="$( (gzip -dc "$a" 2>/dev/null || true) | head -c8 | od -An -tx1 | tr -d ' \n')"
  [ "$magic" = 0061736d01000000 ] || die "$c: ${a#"$ROOT"/} does not hold a wasm module (starts $magic)"
  sha="$(sha256sum "$a" | cut -d' ' -f1)"
  built="$ROOT/target/wasm/$c.wasm.gz"
  [ -f "$built" ] && [ "$(sha256sum "$built" | cut -d' ' -f1)" = "$sha" ] \
    || die "$c: ${a#"$ROOT"/} differs from target/wasm/$c.wasm.gz"
  say "$c: $(wc -c <"$a" | tr -d ' ') B (gzip; wasm $(gzip -dc "$a" | wc -c | tr -d ' ') B) sha256 $sha"
done
