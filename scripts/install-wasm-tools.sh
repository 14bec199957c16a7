#!/usr/bin/env bash
# Installs what scripts/build-wasm.sh needs, and records how to use it in
# target/tools/wasm-env.sh (sourced by build-wasm.sh). Idempotent: what is
# already there is checked, not reinstalled.
#
#   1. The wasm32-unknown-unknown target. Standard route: `rustup target add`.
#      Fallback (rustup cannot download the target): Debian's toolchain
#      (rustc-web cargo-web rust-web-src lld-22), used with RUSTC_BOOTSTRAP=1 and
#      -Zbuild-std. Force one with FLOTILLA_WASM_ROUTE=rustup|debian.
#   2. ic-wasm, from the npm package @icp-sdk/ic-wasm-linux-x64, installed
#      project-locally into target/tools/npm (never globally). Set IC_WASM to
#      an existing ic-wasm binary to skip the npm install.
#
# Env: FLOTILLA_ROOT (repo root; default: this script's parent directory),
#      FLOTILLA_WASM_ROUTE, IC_WASM, IC_WASM_VERSION (default below).
set -euo pipefail

ROOT="${FLOTILLA_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
ROOT="$(cd "$ROOT" && pwd)"
TOOLS="$ROOT/target/tools"
ENV_FILE="$TOOLS/wasm-env.sh"
IC_WASM_VERSION="${IC_WASM_VERSION:-0.11.1}"
IC_WASM_NPM_PKG="@icp-sdk/ic-wasm-linux-x64"
TARGET=wasm32-unknown-unknown
DEBIAN_PKGS=(rustc-web cargo-web rust-web-src lld-22)
DEBIAN_LINKER=wasm-ld-22

say() { echo "[wasm-tools] $*"; }
die() { echo "[wasm-tools] error: $*" >&2; exit 1; }

mkdir -p "$TOOLS"
cd "$ROOT" # so that a rust-toolchain.toml in the repo selects the toolchain

# ---------------------------------------------------------------- wasm target
rustup_route_ok() {
  command -v rustup >/dev/null 2>&1 || return 1
  if rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    say "rust target $TARGET: present ($(rustc --version))"
    return 0
  fi
  say "rust target $TARGET: installing with rustup"
  rustup target add "$TARGET" || return 1
  rustup target list --installed 2>/dev/null | grep -qx "$TARGET"
}

debian_route_ok() {
  if [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && command -v "$DEBIAN_LINKER" >/dev/null 2>&1 \
     && dpkg -s "${DEBIAN_PKGS[@]}" >/dev/null 2>&1; then
    say "debian toolchain: present ($(/usr/bin/rustc --version))"
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 || { say "apt-get not found"; return 1; }
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { say "not root and no sudo"; return 1; }
    sudo=(sudo)
  fi
  say "debian toolchain: apt-get install ${DEBIAN_PKGS[*]}"
  # The package lists may be stale (old rustc-web, no lld-22): refresh first.
  "${sudo[@]}" apt-get update -qq || return 1
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${DEBIAN_PKGS[@]}" >/dev/null || return 1
  [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && command -v "$DEBIAN_LINKER" >/dev/null 2>&1 || return 1
  say "debian toolchain: installed ($(/usr/bin/rustc --version))"
}

route="${FLOTILLA_WASM_ROUTE:-}"
case "$route" in
  rustup) rustup_route_ok || die "rustup route requested but target $TARGET is not available" ;;
  debian) debian_route_ok || die "debian route requested but the Debian toolchain could not be installed" ;;
  "")
    if rustup_route_ok; then
      route=rustup
    else
      say "rustup could not provide $TARGET; falling back to Debian's toolchain"
      debian_route_ok || die "neither rustup nor Debian's toolchain can build $TARGET"
      route=debian
    fi
    ;;
  *) die "FLOTILLA_WASM_ROUTE must be rustup or debian, not '$route'" ;;
esac

# ---------------------------------------------------------------- ic-wasm
ic_wasm_ok() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "^ic-wasm "; }

if [ -n "${IC_WASM:-}" ]; then
  ic_wasm_ok "$IC_WASM" || die "IC_WASM=$IC_WASM does not run"
  ic_wasm="$IC_WASM"
  say "ic-wasm: using IC_WASM=$ic_wasm ($("$ic_wasm" --version))"
else
  npm_prefix="$TOOLS/npm"
  ic_wasm="$npm_prefix/node_modules/$IC_WASM_NPM_PKG/bin/ic-wasm"
  if ic_wasm_ok "$ic_wasm" && [ "$("$ic_wasm" --version)" = "ic-wasm $IC_WASM_VERSION" ]; then
    say "ic-wasm: present ($("$ic_wasm" --version))"
  else
    case "$(uname -s)/$(uname -m)" in
      Linux/x86_64) ;;
      *) die "$IC_WASM_NPM_PKG is for Linux x86_64 only; set IC_WASM to an ic-wasm binary" ;;
    esac
    command -v npm >/dev/null 2>&1 || die "npm not found (needed for $IC_WASM_NPM_PKG)"
    say "ic-wasm: npm install $IC_WASM_NPM_PKG@$IC_WASM_VERSION into ${npm_prefix#"$ROOT"/}"
    mkdir -p "$npm_prefix"
    npm install --prefix "$npm_prefix" --no-save --no-package-lock --no-audit --no-fund \
      --loglevel=error "$IC_WASM_NPM_PKG@$IC_WASM_VERSION" >/dev/null
    ic_wasm_ok "$ic_wasm" || die "ic-wasm not found or not runnable at $ic_wasm after npm install"
    say "ic-wasm: installed ($("$ic_wasm" --version))"
  fi
  mkdir -p "$TOOLS/bin"
  ln -sf "$ic_wasm" "$TOOLS/bin/ic-wasm"
fi

# ---------------------------------------------------------------- env file
{
  echo "# Written by scripts/install-wasm-tools.sh; sourced by scripts/build-wasm.sh."
  echo "FLOTILLA_WASM_ROUTE=$route"
  echo "IC_WASM=$(printf %q "$ic_wasm")"
  if [ "$route" = rustup ]; then
    echo "FLOTILLA_CARGO=cargo"
    echo "FLOTILLA_CARGO_EXTRA=()"
  else
    echo "FLOTILLA_CARGO=/usr/bin/cargo"
    echo "FLOTILLA_CARGO_EXTRA=(-Zbuild-std=std,panic_abort)"
    echo "export RUSTC=/usr/bin/rustc"
    echo "export RUSTC_BOOTSTRAP=1"
    echo "export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$DEBIAN_LINKER"
  fi
} >"$ENV_FILE.$$.tmp"
mv "$ENV_FILE.$$.tmp" "$ENV_FILE"
say "route: $route (recorded in ${ENV_FILE#"$ROOT"/})"
