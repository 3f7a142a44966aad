#!/usr/bin/env bash
# quant_compile_checks.sh MOEC WORK [all] [SHARED]: `moec compile --quant` against `moec run --quant`
# (exact activations) on the tiny synthetic models of every family (q8_0 q4_0 q4_k q5_k q6_k and a
# mixture q4_k,attn=q8_0,head=q6_k): by default each family with one type (every type once) and the
# mixture; with "all" every family with every type (~4 min). Identical ids and routes, logits within
# 1e-4; a 20-token prompt prefilled in one partial chunk (the default) and, for q4_0, in chunks of 16
# (the prefill kernels, then a partial chunk of 4), then decode. The tiny models' rows of 64 or 96 are
# not whole K-type blocks, so --quant gives those matrices the fallbacks q5_0, q5_1 or q8_0, which run
# in their own kernels too (kernels/kt_quant.h): no matrix is dequantised to f32.
# Then the int8 activation mode (`compile --act int8` against `run --act int8`): every family with a
# type whose matrices all have kernels at these shapes, and the GGUF goldens of K types (SHARED, the
# folder of ../shared, as 4th argument): identical ids (greedy tokens), mean |logit difference| under
# 0.1. Each path quantises its own f32 activations, which differ in the last bits (and between
# builds: the sanitizer build's generic path rounds otherwise), and exact halves are common: a row
# that is a dequantised embedding has few distinct values, so x / d lands on k + 0.5 (about 20 times
# in the qwen2_moe run), and an ulp decides its level. One such level moves that position's keys and
# values, so later logits (up to ~0.07 on these tiny models; means 0.001-0.024 measured), and can tip
# a router near-tie (seen once under ASan: one position's logits then moved 0.9), so routes are not
# compared in this mode. A wrong scale or offset in a kernel changes the ids (measured by mutating
# them); tests/unit/test_qkernels.c checks the kernels themselves.
set -u
moec=$1 work=$2 all=${3:-} shared=${4:-}
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
prompt=5,17,99,3,250,31,8,64,12,200,7,1,44,90,2,300,18,77,150,9
# same_paths MODEL EXE SPEC [ACT TOL]: `moec run --quant SPEC --act ACT` (SPEC "": none) and EXE give
# the same ids and routes (--trace; int8: ids only) and logits within TOL (--logits-out; the largest
# difference, int8: the mean; default exact, 1e-4)
same_paths() {
  local m=$1 exe=$2 spec=$3 act=${4:-exact} tol=${5:-1e-4} q=()
  [ -n "$spec" ] && q=(--quant "$spec")
  "$moec" run "$m" "${q[@]}" --act "$act" --tokens $prompt -n 6 --threads 2 --trace "$work/g.json" \
      --logits-out "$work/g.f32" >"$work/g.out" 2>"$work/g.err" || { cat "$work/g.err"; fail "generic run of $m"; }
  "$exe" --tokens $prompt -n 6 --threads 2 --trace "$work/c.json" --logits-out "$work/c.f32" \
      >"$work/c.out" 2>"$work/c.err" || { cat "$work/c.err"; fail "compiled run of $exe"; }
  [ -s "$work/g.out" ] && cmp -s "$work/g.out" "$work/c.out" || fail "$exe: ids differ"
  routes() { tr -d ' \n' <"$1" | sed 's/.*"router_topk":\(.*\),"router_weights".*/\1/'; }
  [ "$act" = int8 ] || [ "$(routes "$work/g.json")" = "$(routes "$work/c.json")" ] || fail "$exe: routes differ"
  [ "$(wc -c <"$work/g.f32")" = "$(wc -c <"$work/c.f32")" ] || fail "$exe: logits of different lengths"
  paste <(od -An -v -tf4 -w4 "$work/g.f32") <(od -An -v -tf4 -w4 "$work/c.f32") |
    awk -v what="$exe" -v tol="$tol" -v act="$act" '{d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d; s += d; n++}
         END {printf "  %s: ids equal, %d logits, max |generic - compiled| = %.3g, mean %.3g\n", what, n, m, s / n;
              exit !(n > 0 && (act == "int8" ? s / n : m) < tol)}' || fail "$exe: logits differ"
}
declare -A types=([mixtral]="q8_0 q6_k" [qwen2_moe]=q4_0 [qwen3_moe]=q4_k [olmoe]=q5_k)
for arch in mixtral qwen2_moe qwen3_moe olmoe; do
  "$moec" synth "$work/$arch" --arch "$arch" --preset tiny --seed 5 >/dev/null 2>&1 || fail "synth $arch"
  specs="${types[$arch]} q4_k,attn=q8_0,head=q6_k"
  [ "$all" = all ] && specs="q8_0 q4_0 q4_k q5_k q6_k q4_k,attn=q8_0,head=q6_k"
  for spec in $specs; do
    exe="$work/${arch}_${spec//[,=]/_}"
    chunk=""
    [ "$spec" = q4_0 ] || [ "$spec" = q6_k ] && chunk="--prefill-chunk 16"
    "$moec" compile "$work/$arch" --quant "$spec" -o "$exe" --threads 2 $chunk 2>"$work/compile.err" ||
      { cat "$work/compile.err"; fail "compile $arch --quant $spec"; }
    # every type has a kernel now: q4_k's fallback q5_0 (the tiny rows) too, and no matrix is dequantised
    grep -q "run dequantised" "$work/compile.err" && { cat "$work/compile.err"; fail "$arch $spec: dequantised"; }
    same_paths "$work/$arch" "$exe" "$spec"
    rm -f "$exe"
  done
done
# the int8 activation mode: types whose matrices all have kernels at the tiny shapes (q6_k falls back
# to q8_0 there), then the K-type GGUF goldens as llama-quantize wrote them
declare -A i8types=([mixtral]=q8_0 [qwen2_moe]=q4_0 [qwen3_moe]=q6_k [olmoe]=q4_0)
for arch in mixtral qwen2_moe qwen3_moe olmoe; do
  spec=${i8types[$arch]} exe="$work/${arch}_int8"
  "$moec" compile "$work/$arch" --quant "$spec" --act int8 -o "$exe" --threads 2 --prefill-chunk 16 \
      2>"$work/compile.err" || { cat "$work/compile.err"; fail "compile $arch --quant $spec --act int8"; }
  grep -q "run dequantised" "$work/compile.err" && { cat "$work/compile.err"; fail "$arch $spec: a matrix without kernel"; }
  same_paths "$work/$arch" "$exe" "$spec" int8 0.1
  rm -f "$exe"
done
if [ -n "$shared" ]; then
  for g in gguf_mixtral_k_small_q4_k_m gguf_qwen3_moe_split_q6_k; do
    m=$(ls "$shared/goldens/gguf/$g/model/"*.gguf | head -1) exe="$work/${g}_int8"
    "$moec" compile "$m" --act int8 -o "$exe" --threads 2 2>"$work/compile.err" ||
      { cat "$work/compile.err"; fail "compile $g --act int8"; }
    # a Q4_K_M's q|k|v of two types packs as two quantised matrices, not dequantised to f32
    grep -q "run dequantised" "$work/compile.err" && { cat "$work/compile.err"; fail "$g: a matrix dequantised"; }
    same_paths "$m" "$exe" "" int8 0.1
    rm -f "$exe"
  done
fi
echo "quant compile checks passed"
