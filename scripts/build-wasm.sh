#!/usr/bin/env bash
# Builds the canister wasm modules:
#   target/wasm/index.wasm.gz      (package flotilla-index-canister)
#   target/wasm/partition.wasm.gz  (package flotilla-partition-canister)
#   target/wasm/bench-map.wasm.gz  (package flotilla-bench-map-canister: the benchmark baseline)
#   target/wasm/example-dapp.wasm.gz (package flotilla-example-dapp-canister: a dapp canister
#                                   using the Rust client's ic-cdk transport)
# cargo (wasm32-unknown-unknown, profile `canister`) -> ic-wasm shrink ->
# candid:service metadata from the committed .did (public) -> gzip -n (deterministic).
#
# Usage: scripts/build-wasm.sh [index] [partition] [bench-map] [example-dapp] [-- extra cargo build args, e.g. --locked]
# With no canister named, builds all four. Works from any cwd.
# Under icp-cli (ICP_WASM_OUTPUT_PATH set) with exactly one canister named,
# the .wasm.gz is also copied to $ICP_WASM_OUTPUT_PATH.
#
# Env: FLOTILLA_ROOT (repo root; default: this script's parent directory),
#      FLOTILLA_WASM_PROFILE (cargo profile; default: canister),
#      plus what install-wasm-tools.sh reads (FLOTILLA_WASM_ROUTE, IC_WASM, ...).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${FLOTILLA_ROOT:-$SCRIPT_DIR/..}"
ROOT="$(cd "$ROOT" && pwd)"
export FLOTILLA_ROOT="$ROOT"
PROFILE="${FLOTILLA_WASM_PROFILE:-canister}"
TARGET=wasm32-unknown-unknown
OUT="$ROOT/target/wasm"

say() { echo "[build-wasm] $*"; }
die() { echo "[build-wasm] error: $*" >&2; exit 1; }

# name -> cargo package, canister dir (holds the committed .did)
declare -A PKG=([index]=flotilla-index-canister [partition]=flotilla-partition-canister
               [bench-map]=flotilla-bench-map-canister [example-dapp]=flotilla-example-dapp-canister)
declare -A DIR=([index]=canisters/index [partition]=canisters/partition
               [bench-map]=canisters/bench-map [example-dapp]=canisters/example-dapp)

canisters=()
cargo_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    index | partition | bench-map | example-dapp) canisters+=("$1") ;;
    --) shift; cargo_args=("$@"); break ;;
    -h | --help) sed -n '2,15p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument '$1' (expected index, partition, bench-map, example-dapp, or -- cargo args)" ;;
  esac
  shift
done
[ ${#canisters[@]} -gt 0 ] || canisters=(index partition bench-map example-dapp)

"$SCRIPT_DIR/install-wasm-tools.sh"
# shellcheck source=/dev/null
source "$ROOT/target/tools/wasm-env.sh"

cd "$ROOT"
if [ "$PROFILE" != release ] && [ "$PROFILE" != dev ] \
   && ! grep -q "^\[profile\.$PROFILE\]" Cargo.toml; then
  die "Cargo.toml has no [profile.$PROFILE] (see docs/deploy.md for the snippet)"
fi

# Flags that must reach `cargo tree` too (it resolves the same lock file).
tree_args=()
for a in ${cargo_args[@]+"${cargo_args[@]}"}; do
  case "$a" in --locked | --frozen | --offline) tree_args+=("$a") ;; esac
done

target_dir="${CARGO_TARGET_DIR:-}"
if [ -z "$target_dir" ]; then
  target_dir="$("$FLOTILLA_CARGO" metadata --format-version 1 --no-deps ${tree_args[@]+"${tree_args[@]}"} \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
fi
[ -n "$target_dir" ] || die "could not determine cargo's target directory"

toml_str() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }

mkdir -p "$OUT"
for c in "${canisters[@]}"; do
  pkg="${PKG[$c]}"
  did="${DIR[$c]}/$c.did"
  [ -f "$did" ] || die "missing $did"

  # rustflags for the wasm target only (build scripts and proc macros are not affected).
  # Paths are remapped so the wasm does not depend on where the repo or cargo home is.
  flags=("--remap-path-prefix=$ROOT=/flotilla" "--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo")
  deps="$("$FLOTILLA_CARGO" tree -p "$pkg" --target "$TARGET" -e normal --prefix none \
    --format '{p}' ${tree_args[@]+"${tree_args[@]}"} 2>/dev/null || true)"
  if grep -qE '^getrandom v0\.[34]\.' <<<"$deps"; then
    # getrandom 0.3+ on wasm32-unknown-unknown needs a backend; the canister crate
    # must then define the custom one (`__getrandom_v03_custom` for 0.3; the import
    # check below names the missing symbol if it does not).
    say "$c: getrandom $(grep -oE '^getrandom v0\.[0-9.]+' <<<"$deps" | head -1 | cut -c11-) in the graph: adding --cfg getrandom_backend=\"custom\""
    flags+=(--cfg 'getrandom_backend="custom"')
  elif grep -qE '^getrandom v0\.2\.' <<<"$deps"; then
    say "$c: warning: getrandom 0.2 in the graph; it needs features=[\"custom\"] and register_custom_getrandom!"
  fi
  rustflags=""
  for f in "${flags[@]}"; do rustflags+="${rustflags:+, }$(toml_str "$f")"; done
  if [ -n "${RUSTFLAGS:-}${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
    say "warning: RUSTFLAGS is set; cargo will ignore the target rustflags this script adds"
  fi

  say "$c: cargo build -p $pkg --target $TARGET --profile $PROFILE ($FLOTILLA_WASM_ROUTE route)"
  "$FLOTILLA_CARGO" build -p "$pkg" --target "$TARGET" --profile "$PROFILE" \
    --config "target.$TARGET.rustflags = [$rustflags]" \
    ${FLOTILLA_CARGO_EXTRA[@]+"${FLOTILLA_CARGO_EXTRA[@]}"} ${cargo_args[@]+"${cargo_args[@]}"}

  profile_dir="$PROFILE"; [ "$PROFILE" = dev ] && profile_dir=debug
  raw="$target_dir/$TARGET/$profile_dir/${pkg//-/_}.wasm"
  [ -f "$raw" ] || die "cargo did not produce $raw"

  wasm="$OUT/$c.wasm"
  "$IC_WASM" "$raw" -o "$wasm.tmp" shrink
  "$IC_WASM" "$wasm.tmp" -o "$wasm.tmp" metadata candid:service -f "$did" -v public

  # Only the IC system API may be imported: anything else (a getrandom or
  # wasm-bindgen leak) makes the IC refuse the module at install time.
  # (node is there anyway: ic-wasm comes from npm.) The .did itself is checked
  # against the code by the project's candid test, not here: ic-wasm 0.11.1's
  # check-endpoints mistakes composite_query methods for plain queries.
  if command -v node >/dev/null 2>&1; then
    bad="$(node -e '
      const m = new WebAssembly.Module(require("fs").readFileSync(process.argv[1]));
      for (const i of WebAssembly.Module.imports(m)) if (i.module !== "ic0") console.log(i.module + "." + i.name);
    ' "$wasm.tmp" | tr '\n' ' ')"
    [ -z "$bad" ] || die "$c: the wasm imports non-IC functions: $bad"
  else
    say "$c: node not found: skipping the import check"
  fi
  mv "$wasm.tmp" "$wasm"
  gzip -n -9 -c "$wasm" >"$wasm.gz.tmp"
  mv "$wasm.gz.tmp" "$wasm.gz"

  size() { wc -c <"$1" | tr -d ' '; }
  say "$c: raw $(size "$raw") B, shrunk+metadata $(size "$wasm") B, gz $(size "$wasm.gz") B -> ${wasm#"$ROOT"/}.gz"
  say "$c: sha256(gz) $(sha256sum "$wasm.gz" | cut -d' ' -f1)"
done

if [ -n "${ICP_WASM_OUTPUT_PATH:-}" ]; then
  [ ${#canisters[@]} -eq 1 ] || die "ICP_WASM_OUTPUT_PATH is set: name exactly one canister"
  cp "$OUT/${canisters[0]}.wasm.gz" "$ICP_WASM_OUTPUT_PATH"
  say "copied ${canisters[0]}.wasm.gz to \$ICP_WASM_OUTPUT_PATH"
fi
