#!/usr/bin/env bash
# quant_checks.sh MOEC WORK: --quant from the command line (the numbers are checked by
# tests/unit/test_quantize.c and test_kernels.c).
#  - every family runs with --quant in both activation modes (--act exact|int8), every type on some
#    family (random weights: a quantised model may pick other tokens, so only the runs are checked);
#  - `moec inspect --quant` prints bytes per class and each fallback; `moec run`, `moec compile`
#    print the same summary, and the compiled graph (--dump-after build) has the quantised dtypes;
#  - a dense layer of width 40 keeps its down_proj as stored (rows not a multiple of 32);
#  - bad specs (unknown type, unknown class, a class twice) and a bad --act: one line, exit 2,
#    for run, compile and inspect alike.
set -u
moec=$1 work=$2
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
toks=3,1,4,1,5,9,2,6

types=(q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k q8_0) i=0
for arch in mixtral qwen2_moe qwen3_moe olmoe; do
  "$moec" synth "$work/$arch" --arch $arch --preset tiny >/dev/null 2>&1 || fail "synth $arch"
  "$moec" run "$work/$arch" --tokens $toks -n 6 --quant q8_0 >/dev/null 2>"$work/err" || fail "run $arch --quant q8_0"
  grep -q "^moec: --quant q8_0: 22 matrices, .* 0 fell back" "$work/err" ||
    [ $arch != qwen2_moe ] || fail "$arch: no --quant summary: $(cat "$work/err")"
  for spec in ${types[i]} ${types[i + 1]} "q4_k,attn=q8_0,head=q6_k,embed=q8_0,shared=q8_0,experts=q4_k"; do
    for act in exact int8; do
      out=$("$moec" run "$work/$arch" --tokens $toks -n 6 --quant "$spec" --act $act 2>"$work/err") ||
        fail "run $arch --quant $spec --act $act: $(cat "$work/err")"
      [ "$(echo "$out" | tr ',' '\n' | wc -l)" -eq 6 ] || fail "$arch $spec $act: '$out'"
    done
  done
  i=$((i + 2))
done

m=$work/dense
"$moec" synth "$m" --arch qwen2_moe --mlp-only-layers 0 --dense-intermediate-size 40 >/dev/null 2>&1 || fail "synth dense"
"$moec" inspect "$m" --quant q4_k,attn=q8_0 >"$work/inspect" || fail "inspect --quant"
cat "$work/inspect"
for want in "^quant  *q4_k,attn=q8_0" "^  experts  *3 matrices  q4_k" "^  attn  *8 matrices  q8_0" \
            "^  other .*as stored" "^  total .* -> " \
            "^fallback  *model.layers.0.mlp.down_proj.weight (shared): rows of 40, not a multiple of 256: q4_k -> bf16 (kept as stored)" \
            "^fallback  *L01.moe.down_proj (experts): rows of 96, not a multiple of 256: q4_k -> q5_0"; do
  grep -q "$want" "$work/inspect" || fail "inspect --quant: no line matching '$want'"
done
grep -q "q8_0.*fell back\|self_attn.*q8_0 ->" "$work/inspect" && fail "attn at q8_0 must not fall back"
"$moec" run "$m" --tokens $toks -n 4 --quant q4_k >/dev/null 2>"$work/err" || fail "run dense --quant q4_k"
grep -q "1 shared matrix with rows of 40 (not a multiple of 256) stays bf16 instead of q4_k" "$work/err" ||
  fail "run: no fallback note: $(cat "$work/err")"
"$moec" compile "$m" --quant q4_k --dump-after build >"$work/ir" 2>"$work/err" || fail "compile --quant --dump-after build"
grep -q "^moec: --quant q4_k: " "$work/err" || fail "compile: no --quant summary"
grep -q "q5_0\[4, 96, 64\].*L01.moe.gate_proj" "$work/ir" || fail "compile: the graph is not quantised"
grep -q "bf16\[64, 40\].*model.layers.0.mlp.down_proj.weight" "$work/ir" || fail "compile: the kept matrix changed"
grep -q "bf16\[.*model.layers.1.mlp.gate.weight" "$work/ir" || fail "compile: the router was quantised"

# errors: one line, exit 2
for cmd in "run $m --tokens 1" "compile $m -o $work/x.exe" "inspect $m"; do
  for spec in q3_k q4_k,mlp=q8_0 q4_k,attn=q8_0,attn=q4_0; do
    $moec $cmd --quant $spec >/dev/null 2>"$work/err"; rc=$?
    cat "$work/err"
    [ $rc -eq 2 ] && [ "$(wc -l <"$work/err")" -eq 1 ] && grep -q "^moec: error: --quant: " "$work/err" ||
      fail "$cmd --quant $spec: status $rc"
  done
done
"$moec" run "$m" --tokens 1 --act int4 >/dev/null 2>"$work/err"; rc=$?
[ $rc -eq 2 ] && grep -q "^moec: error: --act: expected exact, int8 or bf16; got 'int4'" "$work/err" ||
  fail "--act int4: $rc"
echo "quant checks: ok"
