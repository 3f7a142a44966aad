#!/usr/bin/env bash
# gguf_checks.sh MOEC WORK [SHARED]: GGUF models end to end, the way a user drives them.
#   roundtrip  each family (and qwen with dense layers first and last, a dense width of its own)
#              synthesised, converted with `moec convert`, runs with bit-identical logits and the
#              same ids from the .gguf and from the folder, on both paths, and compiles from either
#              into executables giving the same ids
#   inspect    `moec inspect` of a GGUF file lists its tensor types per class; on the Q4_K_M golden
#              (SHARED given) exactly the mix llama-quantize wrote (case.json tensor_types_by_class)
#   errors     broken GGUF files (bad magic, truncated, a tensor's offset past the end, an unknown
#              type, a missing key, a refused key, a wrong shape) each give one error line, exit 1
set -u
moec=$1 work=$2 shared=${3:-}
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
p=5,17,99,3,250,31,8,64,12,200,7,1
n=8
# same MODEL_A MODEL_B: `moec run` on both gives the same ids and bit-identical logits
same() {
  "$moec" run "$1" --tokens $p -n $n --logits-out "$work/a.f32" >"$work/a.out" 2>"$work/err" || { cat "$work/err"; fail "run $1"; }
  "$moec" run "$2" --tokens $p -n $n --logits-out "$work/b.f32" >"$work/b.out" 2>"$work/err" || { cat "$work/err"; fail "run $2"; }
  cmp -s "$work/a.out" "$work/b.out" || fail "$1 and $2: ids differ: $(cat "$work/a.out") vs $(cat "$work/b.out")"
  cmp -s "$work/a.f32" "$work/b.f32" || fail "$1 and $2: logits differ"
  echo "  $(basename "$1") == $(basename "$2"): $(cat "$work/a.out")"
}
for spec in "mixtral" "qwen2_moe" "qwen3_moe" "olmoe" \
            "qwen2_moe --mlp-only-layers 0,3 --layers 4 --dense-intermediate-size 96" \
            "qwen3_moe --decoder-sparse-step 2 --layers 4"; do
  set -- $spec; arch=$1; shift
  name=$arch$(echo "$*" | tr -dc 'a-z0-9')
  "$moec" synth "$work/$name" --arch "$arch" --preset tiny --seed 5 "$@" >/dev/null 2>&1 || fail "synth $spec"
  "$moec" convert "$work/$name" -o "$work/$name.gguf" 2>/dev/null || fail "convert $spec"
  same "$work/$name" "$work/$name.gguf"
  "$moec" compile "$work/$name.gguf" -o "$work/$name.g.exe" -q || fail "compile $name.gguf"
  "$moec" compile "$work/$name" -o "$work/$name.f.exe" -q || fail "compile $name"
  a=$("$work/$name.g.exe" --tokens $p -n $n) && b=$("$work/$name.f.exe" --tokens $p -n $n) || fail "compiled runs"
  [ "$a" = "$(cat "$work/a.out")" ] && [ "$b" = "$a" ] || fail "$name: compiled ids $a / $b differ from $(cat "$work/a.out")"
done

# inspect: types per tensor class (the shared expert's gate and the norms in f32, as llama.cpp's
# converter writes them)
"$moec" inspect "$work/qwen2_moe.gguf" >"$work/inspect.out" || fail "inspect"
grep -Eq "^weights .* in 1 GGUF file" "$work/inspect.out" && grep -Eq "blk.N.ffn_up_exps.weight +bf16 \(2\)" "$work/inspect.out" &&
  grep -Eq "blk.N.ffn_gate_inp_shexp.weight +f32 \(2\)" "$work/inspect.out" &&
  grep -Eq "blk.N.attn_norm.weight +f32 \(2\)" "$work/inspect.out" || { cat "$work/inspect.out"; fail "inspect types"; }
km="$shared/goldens/gguf/gguf_mixtral_k_small_q4_k_m/model"
if [ -n "$shared" ] && [ -d "$km" ]; then
  "$moec" inspect "$km" >"$work/inspect.out" || fail "inspect q4_k_m"
  for want in "output.weight +q6_k" "token_embd.weight +q4_k" "blk.N.attn_v.weight +q4_k \(1\), q6_k \(1\)" \
              "blk.N.ffn_down_exps.weight +q4_k \(1\), q6_k \(1\)" "blk.N.ffn_gate_exps.weight +q4_k \(2\)" \
              "blk.N.ffn_gate_inp.weight +f32 \(2\)"; do
    grep -Eq "$want" "$work/inspect.out" || { cat "$work/inspect.out"; fail "inspect q4_k_m: no /$want/"; }
  done
  echo "  inspect: the Q4_K_M golden's types per class as llama-quantize wrote them"
fi

# errors: each broken file gives exactly one line naming the problem, and exit status 1
g="$work/mixtral.gguf"
expect_error() { # NAME FILE REGEX
  "$moec" run "$2" --tokens 1,2,3 -n 2 >/dev/null 2>"$work/err"; rc=$?
  echo "  $1: $(cat "$work/err")"
  [ $rc -eq 1 ] || fail "$1: exit status $rc, expected 1"
  [ "$(wc -l <"$work/err")" -eq 1 ] || fail "$1: expected exactly one line on stderr"
  grep -Eq -- "$3" "$work/err" || fail "$1: stderr does not match /$3/"
}
patch() { # FILE OFFSET BYTES(octal escapes)
  printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
# offset of a tensor's info in the file: where its name appears, plus the name's length
info_at() { grep -abo "$2" "$1" | head -1 | cut -d: -f1; }
cp "$g" "$work/magic.gguf"; patch "$work/magic.gguf" 0 'GGUX'
expect_error magic "$work/magic.gguf" "magic"
head -c 5000 "$g" >"$work/trunc.gguf"
expect_error truncated "$work/trunc.gguf" "trunc|past the end|runs past"
cp "$g" "$work/offset.gguf"   # output_norm.weight: ne0 u64 at +4 after n_dims; type u32, offset u64 follow
at=$(info_at "$work/offset.gguf" output_norm.weight); at=$((at + 18 + 4 + 8 + 4))
patch "$work/offset.gguf" $at '\340\377\377\000\000\000\000\000'
expect_error offset "$work/offset.gguf" "output_norm.weight"
cp "$g" "$work/type.gguf"; at=$(info_at "$work/type.gguf" output_norm.weight); at=$((at + 18 + 4 + 8))
patch "$work/type.gguf" $at '\143\000\000\000'
expect_error type "$work/type.gguf" "output_norm.weight.*(type|99)"
cp "$g" "$work/key.gguf"; at=$(info_at "$work/key.gguf" llama.embedding_length)
patch "$work/key.gguf" $at 'llama.embedding_lengtX'
expect_error missing_key "$work/key.gguf" "llama.embedding_length"
cp "$g" "$work/refused.gguf"; at=$(info_at "$work/refused.gguf" llama.rope.dimension_count)
patch "$work/refused.gguf" $((at + 26 + 4)) '\010\000\000\000'   # RoPE over 8 of the 16 head dims
expect_error refused_key "$work/refused.gguf" "llama.rope.dimension_count.*partial rotary"
cp "$g" "$work/shape.gguf"; at=$(info_at "$work/shape.gguf" blk.0.attn_v.weight)
patch "$work/shape.gguf" $((at + 19 + 4 + 8)) '\020\000\000\000\000\000\000\000'   # ne1 32 -> 16
expect_error wrong_shape "$work/shape.gguf" "v_proj.weight': wrong shape. expected \\[32, 64\\], got \\[16, 64\\]"
echo PASS
