#!/usr/bin/env bash
# Tests scripts/upload-partition-wasm.sh without a network: stub `icp` and `dfx` on PATH record
# each call's argv and argument file; the test checks the exact command lines (method and
# argument file once each, extra tool args where the tool takes them), the chunk offsets, and
# that the uploaded pieces put together are the module, with its length and SHA-256.
#
# Run: bash scripts/tests/upload-partition-wasm.sh   (also a step of scripts/test.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$WORK/bin"
for tool in icp dfx; do
  cat > "$WORK/bin/$tool" <<STUB
#!/usr/bin/env bash
# Records one call: its argv, one argument a line, and a copy of its argument file.
n=\$(ls "$WORK/calls" 2>/dev/null | grep -c '\.argv$' || true)
mkdir -p "$WORK/calls"
printf '%s\n' "$tool" "\$@" > "$WORK/calls/\$n.argv"
prev=""
for a in "\$@"; do
  case "\$prev" in --args-file|--argument-file) cp "\$a" "$WORK/calls/\$n.arg" ;; esac
  prev="\$a"
done
echo '(variant { Ok })'
STUB
  chmod +x "$WORK/bin/$tool"
done

# A module of 2.5 chunks (the script uploads 1,000,000-byte chunks).
head -c 2500000 /dev/urandom > "$WORK/module.wasm.gz"
SHA=$(sha256sum "$WORK/module.wasm.gz" | cut -d' ' -f1)

decode_blob() { # the blob "\ab\cd..." of field $1 in file $2, as raw bytes
  printf '%b' "$(sed -n "s/.*$1 = blob \"\([^\"]*\)\".*/\1/p" "$2" | sed 's/\\/\\x/g')"
}

check() { # tool, expected argv prefix for (method, file) as a pattern, extra args...
  local tool="$1"; shift
  rm -rf "$WORK/calls"
  WASM="$WORK/module.wasm.gz" CANISTER=index PATH="$WORK/bin:$PATH" \
    "$ROOT/scripts/upload-partition-wasm.sh" "$tool" "$@" > "$WORK/out" 2>&1 \
    || { cat "$WORK/out" >&2; fail "$tool: the script failed"; }
  local calls; calls=$(ls "$WORK/calls" | grep -c '\.argv$')
  [ "$calls" = 4 ] || fail "$tool: $calls calls, expected 3 uploads and run_housekeeping"
  : > "$WORK/joined"
  for i in 0 1 2 3; do
    local method=upload_partition_wasm_chunk; [ "$i" = 3 ] && method=run_housekeeping
    local got; got=$(tr '\n' ' ' < "$WORK/calls/$i.argv")
    local want
    case "$tool" in
      icp) want="icp canister call index $method --args-file $(sed -n 7p "$WORK/calls/$i.argv")${*:+ $*} " ;;
      dfx) want="dfx canister call ${*:+$* }index $method --argument-file $(sed -n "$((7 + $#))p" "$WORK/calls/$i.argv") " ;;
    esac
    [ "$got" = "$want" ] || fail "$tool call $i: got [$got], want [$want]"
    [ -f "$WORK/calls/$i.arg" ] || fail "$tool call $i: no argument file"
    if [ "$i" = 3 ]; then
      [ "$(cat "$WORK/calls/3.arg")" = "()" ] || fail "$tool: run_housekeeping takes ()"
      continue
    fi
    grep -q "offset = $((i * 1000000)) : nat64;" "$WORK/calls/$i.arg" || fail "$tool call $i: offset"
    grep -q "total_len = 2500000 : nat64;" "$WORK/calls/$i.arg" || fail "$tool call $i: total_len"
    [ "$(decode_blob sha256 "$WORK/calls/$i.arg" | od -An -v -tx1 | tr -d ' \n')" = "$SHA" ] \
      || fail "$tool call $i: sha256"
    decode_blob bytes "$WORK/calls/$i.arg" >> "$WORK/joined"
  done
  cmp -s "$WORK/joined" "$WORK/module.wasm.gz" || fail "$tool: the uploaded pieces are not the module"
  echo "ok: $tool $*"
}

check icp -e ic
check icp
check dfx --network ic
check dfx
echo "upload-partition-wasm.sh: all checks passed"
