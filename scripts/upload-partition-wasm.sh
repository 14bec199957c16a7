#!/usr/bin/env bash
# Uploads the partition wasm into a deployed index, in chunks under the message limit, then
# asks the index to run its housekeeping (which fills the spare-partition pool).
#
# Usage: scripts/upload-partition-wasm.sh [icp|dfx] [extra tool args, e.g. -e ic / --network ic]
#        icp-cli (`icp`) is the default; dfx is the alternative.
# Env:   WASM (default target/wasm/partition.wasm.gz), CANISTER (default index)
# Test:  scripts/tests/upload-partition-wasm.sh (stub `icp` and `dfx` check the exact calls).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOOL="${1:-icp}"; shift || true
WASM="${WASM:-target/wasm/partition.wasm.gz}"
CANISTER="${CANISTER:-index}"
CHUNK=1000000
[ -f "$WASM" ] || { echo "no $WASM: run scripts/build-wasm.sh partition first" >&2; exit 1; }

call() { # method, argument file, extra tool args...
  case "$TOOL" in
    icp) icp canister call "$CANISTER" "$1" --args-file "$2" "${@:3}" ;;
    dfx) dfx canister call "${@:3}" "$CANISTER" "$1" --argument-file "$2" ;;
    *) echo "tool must be dfx or icp" >&2; exit 1 ;;
  esac
}

TOTAL=$(wc -c < "$WASM")
SHA=$(sha256sum "$WASM" | cut -d' ' -f1 | sed 's/../\\&/g')
ARGS=$(mktemp)
trap 'rm -f "$ARGS"' EXIT
for ((off = 0; off < TOTAL; off += CHUNK)); do
  # dd reads exactly this chunk (`tail | head` would die of SIGPIPE under pipefail).
  BYTES=$(dd if="$WASM" bs=$CHUNK skip=$((off / CHUNK)) count=1 status=none | od -An -v -tx1 | tr -d ' \n' | sed 's/../\\&/g')
  printf '(record { offset = %d : nat64; bytes = blob "%s"; total_len = %d : nat64; sha256 = blob "%s" })\n' \
    "$off" "$BYTES" "$TOTAL" "$SHA" > "$ARGS"
  echo "[upload] bytes $off..$((off + CHUNK < TOTAL ? off + CHUNK : TOTAL)) of $TOTAL"
  call upload_partition_wasm_chunk "$ARGS" "$@"
done
echo '()' > "$ARGS"
call run_housekeeping "$ARGS" "$@"
