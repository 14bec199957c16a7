#!/usr/bin/env bash
# Uploads the partition wasm into a deployed index, in chunks under the message limit, then
# asks the index to run its housekeeping (which fills the spare-partition pool).
#
# Usage: scripts/upload-partition-wasm.sh [dfx|icp] [extra tool args, e.g. --network ic / -e ic]
# Env:   WASM (default target/wasm/partition.wasm.gz), CANISTER (default index)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOOL="${1:-dfx}"; shift || true
WASM="${WASM:-target/wasm/partition.wasm.gz}"
CANISTER="${CANISTER:-index}"
CHUNK=1000000
[ -f "$WASM" ] || { echo "no $WASM: run scripts/build-wasm.sh partition first" >&2; exit 1; }

call() { # method, argument file
  case "$TOOL" in
    dfx) dfx canister call "$@" "$CANISTER" "$1" --argument-file "$2" ;;
    icp) icp canister call "$CANISTER" "$1" --args-file "$2" "${@:3}" ;;
    *) echo "tool must be dfx or icp" >&2; exit 1 ;;
  esac
}

TOTAL=$(wc -c < "$WASM")
SHA=$(sha256sum "$WASM" | cut -d' ' -f1 | sed 's/../\\&/g')
ARGS=$(mktemp)
trap 'rm -f "$ARGS"' EXIT
for ((off = 0; off < TOTAL; off += CHUNK)); do
  BYTES=$(tail -c +$((off + 1)) "$WASM" | head -c $CHUNK | od -An -v -tx1 | tr -d ' \n' | sed 's/../\\&/g')
  printf '(record { offset = %d : nat64; bytes = blob "%s"; total_len = %d : nat64; sha256 = blob "%s" })\n' \
    "$off" "$BYTES" "$TOTAL" "$SHA" > "$ARGS"
  echo "[upload] bytes $off..$((off + CHUNK < TOTAL ? off + CHUNK : TOTAL)) of $TOTAL"
  call upload_partition_wasm_chunk "$ARGS" "$@"
done
echo '()' > "$ARGS"
call run_housekeeping "$ARGS" "$@"
