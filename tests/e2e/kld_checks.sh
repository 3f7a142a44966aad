#!/usr/bin/env bash
# kld_checks.sh MOEC WORK [SHARED]: `moec kld` end to end on the tiny Mixtral (the arithmetic itself is
# tests/unit/test_kld.c):
#  - the model against itself: KL exactly 0, top-1 1, equal perplexities;
#  - against its --quant q8_0 and q4_0 versions (a few hundred tokens of text): a small positive
#    KL, larger for the coarser q4_0; --act int8 runs too; --ref-cache reuses REF's logits;
#  - against its compiled executable: KL at rounding level, top-1 1; the executable as REF
#    tokenises the text with its embedded tokenizer;
#  - windows: --ctx and --score all give the scored-position counts stated in --help;
#  - GGUF files (when ../shared is given): the f32 golden against llama-quantize's Q8_0 file gives
#    the same figures as against itself with --quant q8_0 (the same bytes);
#  - bad input: a vocabulary mismatch, --quant on an executable, a missing model, usage errors:
#    one line each (exit 1, or 2 for usage).
set -u
moec=$1 work=$2 shared=${3:-}
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
# json FILE KEY: the number after "KEY": in FILE
json() { sed -n "s/.*\"$2\": \([-0-9.e+]*\).*/\1/p" "$1" | head -1; }
# lt A B: A < B as numbers
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

m=$work/mx
"$moec" synth "$m" --arch mixtral --preset tiny >/dev/null 2>&1 || fail "synth"
cat >"$work/text.txt" <<'EOF'
The harbor town woke slowly on the morning the new ferry arrived. Fishermen stood along the quay,
watching the white hull turn in the narrow channel, while children ran between the stacked crates
and the gulls circled above the market. By noon the square was full: merchants from the islands
unloaded baskets of lemons and salt, the baker sold out of bread before the bells rang twelve, and
an old man who had built boats for fifty years explained to anyone who listened why the new ship
would never ride the winter swell as well as the wooden ones had. Nobody believed him, and
everybody listened.
EOF
t=$work/text.txt

# against itself
"$moec" kld "$m" "$m" --text "$t" --threads 2 --json "$work/self.json" >"$work/self.out" 2>"$work/err" ||
  fail "kld self: $(cat "$work/err")"
cat "$work/self.out"
n=$(json "$work/self.json" scored)
[ "$n" -ge 150 ] || fail "self: only $n positions scored"
[ "$(json "$work/self.json" kl_mean)" = 0 ] && [ "$(json "$work/self.json" kl_max)" = 0 ] || fail "self: KL not 0"
[ "$(json "$work/self.json" top1)" = 1.000000 ] || fail "self: top-1 not 1"
[ "$(json "$work/self.json" ppl_ratio)" = 1 ] || fail "self: perplexities differ"
grep -q "^top-1 agreement  *1.0000 ($n of $n positions)" "$work/self.out" || fail "self: no top-1 line"
grep -q "^perplexity " "$work/self.out" || fail "self: no perplexity line"

# quantised: q8_0 closer than q4_0
for q in q8_0 q4_0; do
  "$moec" kld "$m" "$m" --quant $q --text "$t" --threads 2 --json "$work/$q.json" --ref-cache "$work/ref.bin" \
    >"$work/$q.out" 2>"$work/err" || fail "kld --quant $q: $(cat "$work/err")"
  grep -E "^KL|^top-1|^perplexity" "$work/$q.out"
done
grep -q "^moec: kld: REF $m: the logits of [0-9]* rows from $work/ref.bin" "$work/err" || fail "--ref-cache not read"
"$moec" kld "$m" "$m" --quant q8_0 --text "$t" --threads 2 --json "$work/q8_0b.json" >/dev/null 2>&1 || fail "kld again"
cmp -s "$work/q8_0.json" "$work/q8_0b.json" || fail "--ref-cache: other figures than REF run afresh"
k8=$(json "$work/q8_0.json" kl_mean) k4=$(json "$work/q4_0.json" kl_mean)
lt 0 "$k8" || fail "q8_0: KL $k8 not positive"
lt "$k8" "$k4" || fail "KL of q8_0 ($k8) not below q4_0's ($k4)"
lt "$k4" 0.5 || fail "q4_0: KL $k4 implausibly large"
lt "$(json "$work/q4_0.json" top1)" "$(json "$work/q8_0.json" top1)" ||
  [ "$(json "$work/q8_0.json" top1)" = 1.000000 ] || fail "top-1: q4_0 agrees more than q8_0"
"$moec" kld "$m" "$m" --quant q4_0 --act int8 --text "$t" --threads 2 --json "$work/int8.json" >/dev/null 2>"$work/err" ||
  fail "kld --act int8: $(cat "$work/err")"
grep -q '"quant": "q4_0", "act": "int8"' "$work/int8.json" || fail "int8: the JSON does not say the mode"
lt 0 "$(json "$work/int8.json" kl_mean)" || fail "int8: KL not positive"

# windows: 7 tokens in windows of 4 -> [4, 3]; half scores rows 2 (of 4) and 1 (of 3), all 3 + 2
"$moec" kld "$m" "$m" --tokens 5,6,7,8,9,10,11 --ctx 4 --json "$work/w.json" >/dev/null 2>&1 || fail "kld --ctx 4"
[ "$(json "$work/w.json" scored)" = 2 ] && [ "$(json "$work/w.json" windows)" = 2 ] || fail "--ctx 4: $(cat "$work/w.json")"
"$moec" kld "$m" "$m" --tokens 5,6,7,8,9,10,11 --ctx 4 --score all --json "$work/w.json" >/dev/null 2>&1 ||
  fail "kld --score all"
[ "$(json "$work/w.json" scored)" = 5 ] || fail "--score all: $(cat "$work/w.json")"

# a compiled executable on either side
"$moec" compile "$m" -o "$work/mx.exe" >/dev/null 2>&1 || fail "compile"
"$moec" kld "$m" "$work/mx.exe" --text "$t" --threads 2 --ctx 96 --json "$work/exe.json" >/dev/null 2>"$work/err" ||
  fail "kld folder vs executable: $(cat "$work/err")"
lt "$(json "$work/exe.json" kl_max)" 1e-6 || fail "executable: KL $(json "$work/exe.json" kl_max) above rounding"
[ "$(json "$work/exe.json" top1)" = 1.000000 ] || fail "executable: top-1 not 1"
"$moec" kld "$work/mx.exe" "$m" --text "$t" --threads 2 --ctx 96 --json "$work/exe2.json" >/dev/null 2>"$work/err" ||
  fail "kld executable vs folder: $(cat "$work/err")"
[ "$(json "$work/exe2.json" tokens)" = "$(json "$work/exe.json" tokens)" ] || fail "the embedded tokenizer differs"

# GGUF files on both sides
g=$shared/goldens/gguf
if [ -f "$g/gguf_mixtral_f32/model/model-F32.gguf" ] && [ -f "$g/gguf_mixtral_q8_0/model/model-Q8_0.gguf" ]; then
  ids=$(seq -s, 1 120)
  "$moec" kld "$g/gguf_mixtral_f32/model/model-F32.gguf" "$g/gguf_mixtral_q8_0/model/model-Q8_0.gguf" --tokens "$ids" \
    --ctx 60 --json "$work/gguf.json" >/dev/null 2>"$work/err" || fail "kld GGUF: $(cat "$work/err")"
  "$moec" kld "$g/gguf_mixtral_f32/model/model-F32.gguf" "$g/gguf_mixtral_f32/model/model-F32.gguf" --quant q8_0 \
    --tokens "$ids" --ctx 60 --json "$work/gguf2.json" >/dev/null 2>"$work/err" || fail "kld GGUF --quant: $(cat "$work/err")"
  k=$(json "$work/gguf.json" kl_mean)
  lt 0 "$k" && [ "$k" = "$(json "$work/gguf2.json" kl_mean)" ] ||
    fail "GGUF Q8_0 file: KL $k; --quant q8_0: $(json "$work/gguf2.json" kl_mean)"
else
  echo "(no GGUF goldens under '$shared': GGUF checks skipped)"
fi

# bad input: one line each
one_line() { # STATUS PATTERN COMMAND...
  local want=$1 pat=$2; shift 2
  "$moec" "$@" >/dev/null 2>"$work/err"; local rc=$?
  cat "$work/err"
  [ $rc -eq "$want" ] && [ "$(wc -l <"$work/err")" -eq 1 ] && grep -q "$pat" "$work/err" ||
    fail "moec $*: status $rc (expected $want, one line matching '$pat')"
}
cp -r "$m" "$work/big"
sed -i 's/"vocab_size":\t384/"vocab_size":\t512/' "$work/big/config.json"
one_line 1 "^moec: error: $work/big: vocabulary of 512 tokens; expected the same as REF $m (384)$" \
  kld "$m" "$work/big" --tokens 1,2,3
one_line 1 "is a compiled executable" kld "$m" "$work/mx.exe" --quant q8_0 --tokens 1,2,3
one_line 1 "^moec: error: $work/none" kld "$m" "$work/none" --tokens 1,2,3
one_line 1 "token id 400 at position 1: must be < vocab_size (384)" kld "$m" "$m" --tokens 1,400
one_line 1 "expected at least 2" kld "$m" "$m" --tokens 1
one_line 1 "2 tokens leave no position to score" kld "$m" "$m" --tokens 1,2
one_line 2 "expected two models" kld "$m" --tokens 1,2
one_line 2 "expected one of --text FILE and --tokens IDS" kld "$m" "$m"
one_line 2 "^moec: error: --act: expected exact, int8 or bf16; got 'int4'" kld "$m" "$m" --act int4 --tokens 1,2
one_line 2 "^moec: error: --quant: " kld "$m" "$m" --quant q3_k --tokens 1,2
echo "kld checks passed"
