#!/usr/bin/env bash
# verify_checks.sh MOEC WORK: corrupted weights are caught by `OUT --verify` and `moec verify`.
# A tiny model is compiled embedded and with a sidecar .moew; both verify clean. Then one bit is
# flipped inside the weights section (2 MiB into the weights, format.h) and inside the tokenizer
# section (offset from the header's second MoeSection): each copy must fail `moec verify` and
# `OUT --verify` with one error line and exit 1, and the intact files must still pass.
set -u
moec=$1 work=$2
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
"$moec" synth "$work/m" --arch mixtral --preset tiny --seed 3 >/dev/null 2>&1 || fail "synth"
"$moec" compile "$work/m" -o "$work/emb.exe" -q || fail "compile embedded"
"$moec" compile "$work/m" -o "$work/side.exe" --weights sidecar -q || fail "compile sidecar"
"$moec" verify "$work/emb.exe" "$work/side.exe.moew" || fail "intact files do not verify"
"$work/emb.exe" --verify || fail "intact executable does not verify itself"
"$work/side.exe" --weights "$work/side.exe.moew" --verify --tokens 1,2,3 -n 2 >/dev/null || fail "verify + run"

u64_at() { od -An -tu8 -j "$2" -N8 "$1" | tr -d ' '; }
# flip FILE OFFSET: xor one byte of FILE with 0x10, in place
flip() {
  local b; b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $((b ^ 16)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
size=$(stat -c %s "$work/emb.exe")
hdr=$(od -An -tu8 -j $((size - 8)) -N8 "$work/emb.exe" | tr -d ' ')   # MoeTrailer.header_offset
tok=$(u64_at "$work/side.exe.moew" 64)                                # sections[1].offset
[ "$(od -An -tu4 -j 56 -N4 "$work/side.exe.moew" | tr -d ' ')" = 2 ] || fail "second section is not the tokenizer"
i=0
for target in "emb.exe $((hdr + 2097152 + 1234))" "emb.exe $((hdr + tok + 100))" \
              "side.exe.moew $((2097152 + 4321))" "side.exe.moew $((tok + 7))"; do
  set -- $target; i=$((i + 1))
  cp "$work/$1" "$work/bad$i" && flip "$work/bad$i" "$2"
  cmp -s "$work/$1" "$work/bad$i" && fail "the flip changed nothing"
  "$moec" verify "$work/bad$i" >/dev/null 2>"$work/err"; rc=$?
  cat "$work/err"
  [ $rc -eq 1 ] && [ "$(wc -l <"$work/err")" -eq 1 ] && grep -q "weights are corrupt" "$work/err" ||
    fail "moec verify on $1 with byte $2 flipped: status $rc"
  if [ "$1" = emb.exe ]; then chmod +x "$work/bad$i"; run=("$work/bad$i");
  else run=("$work/side.exe" --weights "$work/bad$i"); fi
  "${run[@]}" --verify --tokens 1,2,3 -n 2 >/dev/null 2>"$work/err"; rc=$?
  cat "$work/err"
  [ $rc -eq 1 ] && [ "$(wc -l <"$work/err")" -eq 1 ] && grep -q "weights are corrupt" "$work/err" ||
    fail "OUT --verify with $1 byte $2 flipped: status $rc"
done
"$moec" verify "$work/m/config.json" 2>"$work/err" && fail "a non-weights file verified"
cat "$work/err"; grep -q "not a moec weights file" "$work/err" || fail "no clear error for a non-weights file"
echo PASS
