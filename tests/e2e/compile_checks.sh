#!/usr/bin/env bash
# compile_checks.sh MOEC WORK CHECK: end-to-end checks of `moec compile` on tiny synthetic models.
#   selfcontained  OUT copied alone into an empty folder runs with an empty environment, gives the
#                  same ids as `moec run`, and ldd lists only libc, libm, the OpenMP runtime, pthreads
#   sidecar        --weights sidecar writes OUT + OUT.moew; a .moew of another model is refused
#   capacity       with --capacity-factor 0.5 assignments are dropped; compiled == generic (ids,
#                  routes, logits), and --stats counts the same drops in both
#   aarch64        --target aarch64-linux-gnu --emit obj writes an AArch64 ELF object
#   atomic         a failed compile leaves no partial output and does not clobber an existing OUT
#   llvm           --emit llvm: kernels have no shape parameters
#   errors         unknown triple / CPU, a CPU or features the target cannot run (32-bit x86 CPUs
#                  for x86_64, -64bit, code-mode features, -sse), a 32-bit or big-endian triple: one
#                  clear error line (and at most one note), exit 1, never an LLVM abort; -sse2 and
#                  an old 64-bit CPU give executables that run
#   text           --prompt / --prompt-file / stdin give the same text on both paths
#   lastrow        without --logits-out the prefill computes the last prompt row's logits only
#                  (moe_step_prefill_last): the same ids (greedy and sampled) as with it and as
#                  `moec run`, over full, padded and past-the-context chunks
#   bench          moec bench --quick prints its table (warm, cold and page-cache lines), JSON and
#                  SVG; --batch 1,3 a row per batch size (batch 1 of top-2 routing reads 2 experts);
#                  --quant q8_0 --act int8 and --act bf16 say the mode in the table and JSON;
#                  a killed run's executables (dead pid) are removed from the cache, a live one's kept
#   amx            prefill through AMX tiles (when the host has them), with 3 planes (exact) and with
#                  --amx-planes 2, gives the ids of `moec run` and of an executable compiled with
#                  --features -amx-bf16, logits within 1e-4 of it
#   mixed          qwen2_moe / qwen3_moe with dense layers first, in the middle and last, dense widths
#                  other than the experts' and one equal to them: compiled == generic (ids and
#                  routes exact, logits within 1e-4), prefill in one chunk and in several
#   demo           moec demo (synth + compile + both paths on a text prompt): both texts, identical
#                  tokens, a speed table; run again it reuses the model; a bad --dir is one error line
set -u
moec=$1 work=$2 check=$3
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
synth() { "$moec" synth "$work/$1" --arch "$2" --preset tiny --seed "${3:-7}" >/dev/null 2>&1 || fail "synth $1"; }
prompt=5,17,99,3,250,31,8,64,12,200,7,1
# same_paths MODEL EXE PROMPT N [run args...]: `moec run` and EXE give the same ids and routes
# (--trace) and logits within 1e-4 (--logits-out)
same_paths() {
  local m=$1 exe=$2 p=$3 n=$4; shift 4
  "$moec" run "$m" --tokens "$p" -n "$n" --threads 2 --trace "$work/g.json" --logits-out "$work/g.f32" "$@" \
      >"$work/g.out" 2>"$work/g.err" || { cat "$work/g.err"; fail "generic run of $m"; }
  "$exe" --tokens "$p" -n "$n" --threads 2 --trace "$work/c.json" --logits-out "$work/c.f32" \
      >"$work/c.out" 2>"$work/c.err" || { cat "$work/c.err"; fail "compiled run of $m"; }
  echo "  generic $(cat "$work/g.out") | compiled $(cat "$work/c.out")"
  [ -s "$work/g.out" ] && cmp -s "$work/g.out" "$work/c.out" || fail "$m: ids differ"
  routes() { tr -d ' \n' <"$1" | sed 's/.*"router_topk":\(.*\),"router_weights".*/\1/'; }
  [ "$(routes "$work/g.json")" = "$(routes "$work/c.json")" ] || fail "$m: routes differ"
  [ "$(wc -c <"$work/g.f32")" = "$(wc -c <"$work/c.f32")" ] || fail "$m: logits of different lengths"
  paste <(od -An -v -tf4 -w4 "$work/g.f32") <(od -An -v -tf4 -w4 "$work/c.f32") |
    awk '{d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d; n++}
         END {printf "  %d logits, max |generic - compiled| = %.3g\n", n, m; exit !(n > 0 && m < 1e-4)}' \
    || fail "$m: logits differ"
}
case $check in
selfcontained)
  synth m mixtral
  "$moec" compile "$work/m" -o "$work/out.exe" --threads 2 -q || fail "compile"
  mkdir "$work/alone" && cp "$work/out.exe" "$work/alone/" && rm -rf "$work/m.cache"
  want=$("$moec" run "$work/m" --tokens $prompt -n 12 --threads 2) || fail "moec run"
  got=$(cd "$work/alone" && env -i ./out.exe --tokens $prompt -n 12 --threads 2) || fail "alone run"
  echo "generic:  $want"; echo "compiled: $got"
  [ "$want" = "$got" ] || fail "compiled ids differ from the generic path"
  libs=$(ldd "$work/alone/out.exe" | awk '{print $1}' | sed 's/\.so.*//' | sort -u | tr '\n' ' ')
  echo "ldd: $libs"
  # a sanitizer build (./build.sh asan-test) links the sanitizer runtimes too; nothing else is allowed
  case " $libs " in *" libasan "*) libs=$(echo "$libs" | tr ' ' '\n' | grep -Ev '^(libasan|libubsan|libstdc\+\+|libgcc_s|libdl|librt)$' | tr '\n' ' ');; esac
  for l in $libs; do
    case $l in linux-vdso|/lib64/ld-linux-x86-64|/lib/ld-linux-aarch64|libc|libm|libgomp|libpthread) ;;
      *) fail "unexpected shared library $l";; esac
  done ;;
sidecar)
  synth m mixtral; synth m2 mixtral 8
  "$moec" compile "$work/m" -o "$work/side.exe" --weights sidecar -q || fail "compile"
  "$moec" compile "$work/m2" -o "$work/other.exe" --weights sidecar -q || fail "compile other"
  [ -f "$work/side.exe.moew" ] || fail "no sidecar"
  "$work/side.exe" --weights "$work/side.exe.moew" --tokens 1,2,3 -n 4 >/dev/null || fail "sidecar run"
  "$work/side.exe" --weights "$work/other.exe.moew" --tokens 1,2,3 -n 4 2>"$work/err" && fail "mismatched weights accepted"
  cat "$work/err"; grep -q "hash" "$work/err" || fail "the error does not name the hash" ;;
capacity)
  synth m qwen3_moe 11
  "$moec" compile "$work/m" -o "$work/cap.exe" --capacity-factor 0.5 --prefill-chunk 12 --threads 2 -q || fail "compile"
  "$moec" run "$work/m" --tokens $prompt -n 6 --capacity-factor 0.5 --stats --trace "$work/g.json" \
      --logits-out "$work/g.f32" >"$work/g.out" 2>"$work/g.err" || fail "generic"
  "$work/cap.exe" --tokens $prompt -n 6 --stats --trace "$work/c.json" --logits-out "$work/c.f32" \
      >"$work/c.out" 2>"$work/c.err" || fail "compiled"
  cat "$work/g.out" "$work/c.out"; grep dropped "$work/g.err" "$work/c.err"
  cmp -s "$work/g.out" "$work/c.out" || fail "ids differ"
  gd=$(grep -o 'dropped assignments: [0-9]*' "$work/g.err"); cd_=$(grep -o 'dropped assignments: [0-9]*' "$work/c.err")
  [ "$gd" = "$cd_" ] || fail "drop counts differ: '$gd' vs '$cd_'"
  [ "$gd" != "dropped assignments: 0" ] || fail "the case drops nothing"
  python_free_cmp() { # routes in the traces must be identical
    grep -A100000 router_topk "$1" | sed -n '/router_topk/,/router_weights/p' | head -n -1; }
  [ "$(python_free_cmp "$work/g.json")" = "$(python_free_cmp "$work/c.json")" ] || fail "router choices differ" ;;
aarch64)
  synth m olmoe
  "$moec" compile "$work/m" -o "$work/a64.o" --target aarch64-linux-gnu --emit obj -q || fail "compile"
  magic=$(od -An -tx1 -N4 "$work/a64.o" | tr -d ' '); mach=$(od -An -tu2 -j18 -N2 "$work/a64.o" | tr -d ' ')
  echo "ELF magic $magic, e_machine $mach"
  [ "$magic" = 7f454c46 ] && [ "$mach" = 183 ] || fail "not an AArch64 ELF object" ;;
atomic)
  synth m mixtral
  echo keep >"$work/out.exe"
  cp -r "$work/m" "$work/bad" && truncate -s 1000 "$work/bad/model.safetensors"
  "$moec" compile "$work/bad" -o "$work/out.exe" -q 2>"$work/err" && fail "bad model compiled"
  cat "$work/err"
  [ "$(cat "$work/out.exe")" = keep ] || fail "OUT was clobbered"
  left=$(ls "$work" | grep -c tmp || true); [ "$left" = 0 ] || fail "temporary files left: $(ls "$work")" ;;
llvm)
  synth m mixtral
  "$moec" compile "$work/m" -o "$work/m.ll" --emit llvm -q || fail "compile"
  grep -c '^define' "$work/m.ll"
  # every defined kernel takes only pointers (and pos0, ith, nth): no i64 shape parameter besides
  # pos0 and, in the prefill kernels (named *_n), n, the real rows of a partial chunk
  bad=$(grep '^define' "$work/m.ll" | grep '@k_' | sed -E 's/i64 [^,)]*%(pos0|n)[,)]//g' |
    grep -E 'i64 [^,)]*%[a-zA-Z_]+' || true)
  [ -z "$bad" ] || fail "kernels with shape parameters: $bad"
  bad=$(grep '^define' "$work/m.ll" | grep '@k_' | grep -Ev '_n(\.[0-9]+)?\(' | grep -E 'i64 [^,)]*%n[,)]' || true)
  [ -z "$bad" ] || fail "decode kernels with a row count parameter: $bad"
  grep -q '^define.*@k_experts_down_T1(' "$work/m.ll" || fail "no decode experts kernel"
  grep -q 'define.*@kt_' "$work/m.ll" && fail "a template survived" || true ;;
errors)
  synth m mixtral
  "$moec" compile "$work/m" -o "$work/x" --target sparc-sun-solaris9 -q 2>"$work/e1"; rc=$?
  cat "$work/e1"; [ $rc = 1 ] && [ "$(wc -l <"$work/e1")" -le 2 ] || fail "unknown triple: status $rc"
  grep -qi "aarch64\|x86" "$work/e1" || fail "the error does not list the available targets"
  "$moec" compile "$work/m" -o "$work/x" --cpu notacpu9000 -q 2>"$work/e2"; rc=$?
  cat "$work/e2"; [ $rc = 1 ] && grep -q notacpu9000 "$work/e2" || fail "unknown cpu: status $rc"
  # REGEX ARGS...: exit status 1, one "moec: error:" line matching REGEX, at most one note after it
  one_error() {
    local regex=$1; shift
    "$moec" compile "$work/m" -o "$work/x" -q "$@" 2>"$work/e"; local rc=$?
    echo "$* -> status $rc:"; cat "$work/e"
    [ $rc = 1 ] || fail "$*: status $rc, expected 1"
    [ "$(grep -c '^moec: error: ' "$work/e")" = 1 ] && [ "$(grep -vc '^moec: note: ' "$work/e")" = 1 ] \
      || fail "$*: expected one error line (and at most one note)"
    grep -Eq -- "$regex" "$work/e" || fail "$*: the error does not match /$regex/"
    [ -e "$work/x" ] && fail "$*: output written" || true
  }
  one_error "CPU 'pentium2': a 32-bit x86 CPU" --target x86_64-linux-gnu --cpu pentium2
  one_error "CPU 'prescott': a 32-bit x86 CPU" --target x86_64-linux-gnu --cpu prescott --emit obj
  one_error "feature '-64bit'" --target x86_64-linux-gnu --features -64bit
  one_error "feature '-64bit-mode'" --target x86_64-linux-gnu --cpu x86-64 --features +avx2,-64bit-mode
  one_error "feature '\\+nonsense': not a feature" --target x86_64-linux-gnu --features +nonsense
  one_error "SSE disabled" --target x86_64-linux-gnu --cpu x86-64 --features -sse
  one_error "CPU 'skylake': not a CPU LLVM knows for aarch64" --target aarch64-linux-gnu --cpu skylake
  one_error "target triple 'riscv64-linux-gnu': no LLVM target" --target riscv64-linux-gnu
  one_error "target triple 'garbage': no LLVM target" --target garbage
  one_error "i686-unknown-linux-gnu: 32-bit pointers" --target i686-linux-gnu --emit obj
  one_error "aarch64_be-unknown-linux-gnu: big-endian" --target aarch64_be-linux-gnu --emit obj
  # what a 64-bit target can run compiles: an old 64-bit CPU, a 32-bit one with +64bit, SSE2 off
  [ "$(uname -m)" = x86_64 ] || { echo "PASS (not an x86_64 host: the x86_64 executables are not run)"; exit 0; }
  want=$("$moec" run "$work/m" --tokens $prompt -n 4) || fail "moec run"
  for args in "--cpu nocona" "--cpu pentium4 --features +64bit" "--cpu x86-64 --features -sse2"; do
    "$moec" compile "$work/m" -o "$work/ok.exe" -q --target x86_64-linux-gnu $args || fail "compile $args"
    got=$("$work/ok.exe" --tokens $prompt -n 4) || fail "run of $args"
    echo "$args: generic $want | compiled $got"; [ "$got" = "$want" ] || fail "$args: ids differ"
  done ;;
text)
  synth m mixtral
  "$moec" compile "$work/m" -o "$work/t.exe" -q || fail "compile"
  g=$("$moec" run "$work/m" --prompt "The quick brown fox" -n 24) || fail "generic text run"
  c=$("$work/t.exe" --prompt "The quick brown fox" -n 24) || fail "compiled text run"
  s=$(printf 'The quick brown fox' | "$work/t.exe" -n 24) || fail "compiled stdin run"
  printf 'The quick brown fox' >"$work/p.txt"
  f=$("$work/t.exe" --prompt-file "$work/p.txt" -n 24) || fail "compiled prompt-file run"
  [ -n "$g" ] && [ "$g" = "$c" ] && [ "$c" = "$s" ] && [ "$c" = "$f" ] || fail "texts differ: '$g' / '$c' / '$s' / '$f'"
  # the prompt is encoded as `moec tokenize --add-special` encodes it, in both paths, and the same
  # ids through --tokens generate the same first token
  ids=$("$moec" tokenize "$work/m" --add-special <"$work/p.txt" | tr -d '[] ')
  jids() { tr -d ' \n' <"$1" | sed -n "s/.*\"$2\":\[\([0-9,]*\)\].*/\1/p"; }
  "$moec" run "$work/m" --prompt-file "$work/p.txt" -n 24 --trace "$work/tg.json" >/dev/null || fail "generic trace run"
  "$work/t.exe" --prompt-file "$work/p.txt" -n 24 --trace "$work/tc.json" >/dev/null || fail "compiled trace run"
  [ -n "$ids" ] && [ "$(jids "$work/tg.json" prompt_ids)" = "$ids" ] && [ "$(jids "$work/tc.json" prompt_ids)" = "$ids" ] \
    || fail "prompt ids differ from moec tokenize's $ids: $(jids "$work/tg.json" prompt_ids) / $(jids "$work/tc.json" prompt_ids)"
  first=$("$moec" run "$work/m" --tokens "$ids" -n 1) || fail "ids run"
  [ "$first" = "$(jids "$work/tg.json" generated_ids | cut -d, -f1)" ] || fail "--tokens $ids generated $first, not the text run's first token"
  echo "text: $c"
  # a model folder without tokenizer.json still runs with --tokens, and --prompt says what is missing
  cp -r "$work/m" "$work/nt" && rm "$work/nt/tokenizer.json"
  "$moec" run "$work/nt" --tokens 1,2,3 -n 2 >/dev/null || fail "--tokens without tokenizer.json"
  "$moec" run "$work/nt" --prompt hi -n 2 2>"$work/e" && fail "--prompt without tokenizer.json ran"
  grep -q "tokenizer.json" "$work/e" || fail "the error does not name tokenizer.json: $(cat "$work/e")"
  "$moec" compile "$work/nt" -o "$work/nt.exe" -q || fail "compile without tokenizer"
  "$work/nt.exe" --prompt hi -n 2 2>"$work/e2" && fail "exe without tokenizer ran --prompt"
  grep -q "tokenizer" "$work/e2" || fail "exe error does not name the tokenizer" ;;
amx)
  synth m qwen2_moe 5 # shared expert, biases
  long=$(seq -s, 3 3 240) # 80 tokens: a full chunk of 64 and a partial one of 16
  "$moec" compile "$work/m" -o "$work/amx.exe" --prefill-chunk 64 --threads 2 2>"$work/amx.err" || fail "compile"
  "$moec" compile "$work/m" -o "$work/fma.exe" --prefill-chunk 64 --threads 2 --features -amx-bf16 \
      2>"$work/fma.err" || fail "compile with -amx-bf16"
  cat "$work/amx.err" "$work/fma.err"
  ! grep -q "AMX tiles" "$work/fma.err" || fail "--features -amx-bf16 still uses AMX tiles"
  grep -q "AMX tiles" "$work/amx.err" || echo "note: this host has no AMX-BF16: both executables use FMA"
  "$moec" compile "$work/m" -o "$work/amx2.exe" --prefill-chunk 64 --threads 2 --amx-planes 2 -q \
      || fail "compile with --amx-planes 2"
  want=$("$moec" run "$work/m" --tokens $long -n 8 --threads 2) || fail "moec run"
  f=$("$work/fma.exe" --tokens $long -n 8 --threads 2 --logits-out "$work/f.f32") || fail "fma run"
  for e in amx amx2; do
    a=$("$work/$e.exe" --tokens $long -n 8 --threads 2 --logits-out "$work/$e.f32") || fail "$e run"
    echo "generic $want | $e $a | fma $f"
    [ -n "$want" ] && [ "$a" = "$want" ] && [ "$f" = "$want" ] || fail "ids differ"
    paste <(od -An -v -tf4 -w4 "$work/$e.f32") <(od -An -v -tf4 -w4 "$work/f.f32") |
      awk -v e=$e '{d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d; n++}
           END {printf "%d logits, max |%s - fma| = %.3g\n", n, e, m; exit !(n == 88 * 384 && m < 1e-4)}' \
      || fail "logits differ"
  done ;;
lastrow)
  synth m mixtral
  # P = 6, S = 16, 13 prompt tokens: chunks at 0 and 6, then one of 1 real row at 12 whose padding
  # would run past the context (no KV slot is written for it); 11 tokens: a padded last chunk (5 real rows)
  "$moec" compile "$work/m" -o "$work/l.exe" --context 16 --prefill-chunk 6 --threads 2 -q || fail "compile"
  for p in 5,17,99,3,250,31,8,64,12,200,7,1,42 5,17,99,3,250,31,8,64,12,200,7; do
    want=$("$moec" run "$work/m" --tokens $p -n 4 --threads 2) || fail "moec run"
    all=$("$work/l.exe" --tokens $p -n 4 --threads 2 --logits-out "$work/l.f32") || fail "run with --logits-out"
    last=$("$work/l.exe" --tokens $p -n 4 --threads 2) || fail "run without --logits-out"
    trace=$("$work/l.exe" --tokens $p -n 4 --threads 1 --trace "$work/l.json") || fail "run with --trace"
    samp_all=$("$work/l.exe" --tokens $p -n 4 --temp 2 --seed 3 --logits-out "$work/s.f32") || fail "sampled, all rows"
    samp_last=$("$work/l.exe" --tokens $p -n 4 --temp 2 --seed 3) || fail "sampled, last row"
    echo "prompt $p: generic $want | --logits-out $all | plain $last | --trace $trace | sampled $samp_all / $samp_last"
    [ -n "$want" ] && [ "$all" = "$want" ] && [ "$last" = "$want" ] && [ "$trace" = "$want" ] \
      || fail "ids differ without --logits-out"
    [ "$samp_all" = "$samp_last" ] || fail "sampled ids differ without --logits-out"
  done ;;
bench)
  synth m mixtral
  # executables a killed bench left behind (its process gone) are removed; a live process's are kept
  dead=$(sh -c 'echo $$')
  mkdir -p "$work/cache/moec"
  touch "$work/cache/moec/bench-$dead.exe" "$work/cache/moec/bench-b8-$dead.exe" "$work/cache/moec/bench-$$.exe"
  XDG_CACHE_HOME="$work/cache" "$moec" bench "$work/m" --threads 2 --prompt 16 --gen 4 --contexts 64,128 --repeat 1 \
      --quick --json "$work/b.json" --plot "$work/b.svg" >"$work/b.txt" 2>"$work/b.err" || { cat "$work/b.err"; fail "bench"; }
  [ ! -e "$work/cache/moec/bench-$dead.exe" ] && [ ! -e "$work/cache/moec/bench-b8-$dead.exe" ] \
    || fail "bench: a killed run's executables were left in the cache"
  [ -e "$work/cache/moec/bench-$$.exe" ] || fail "bench: removed the executable of a live process"
  cat "$work/b.txt"
  for f in "decode tok/s @16" "decode tok/s @128" "prefill tok/s @16" "read bandwidth" "cold: first token" \
           "warm prefill @P" "cold / warm" "page cache: "; do
    grep -q "$f" "$work/b.txt" || fail "no '$f' in the table"; done
  grep -q '"figures"' "$work/b.json" && grep -q '<polyline' "$work/b.svg" || fail "json or svg missing"
  # the bandwidth is probed before the runs and again before and after each compiled decode run (contexts
  # 16, 64, 128), and each decode run is put against its own two probes
  grep -q "median of 7 probes, one before the runs" "$work/b.txt" || fail "bench: not 1 + 2 x 3 bandwidth probes"
  # of the executable's own pages, with fresh memory's figure beside it
  grep -q "bandwidth: of the compiled executable's pages" "$work/b.txt" && grep -Eq "fresh memory: [0-9]" "$work/b.txt" \
    && grep -Eq '"fresh_memory_gbs": [0-9]' "$work/b.json" || fail "bench: not said which memory the probes read"
  grep -Eq "^decode, share of own bound +@16 [0-9]+% \[[0-9]+, [0-9]+\], @64 .*, @128 " "$work/b.txt" \
    || fail "bench: no share of each decode run's own bound"
  # (any number: under load from other tests the tiny model's share can round to 0%)
  grep -q '"share_own_probes": \[[0-9]' "$work/b.json" || fail "bench: no own-probe share in the JSON"
  # --batch: one row per batch size, the experts a step reads out of E, and the bound's legend
  "$moec" bench "$work/m" --threads 2 --prompt 8 --gen 6 --repeat 1 --quick --batch 1,3 >"$work/bb.txt" \
      2>"$work/bb.err" || { cat "$work/bb.err"; fail "bench --batch"; }
  cat "$work/bb.txt"
  grep -Eq '^1 +[0-9.]+ \[' "$work/bb.txt" && grep -Eq '^3 +[0-9.]+ \[' "$work/bb.txt" || fail "bench --batch: no rows"
  grep -Eq '^1 .* 2\.00/4$' "$work/bb.txt" || fail "bench --batch: batch 1 of top-2 routing reads 2 of 4 experts"
  grep -q "bound = the mean rows of a step" "$work/bb.txt" || fail "bench --batch: no legend"
  # before and after each compiled run, of that executable's pages
  grep -q "median of 4 probes of the executables' pages" "$work/bb.txt" || fail "bench --batch: not 2 x 2 bandwidth probes"
  grep -Eq '^3 .* [0-9]+% +[0-9.]+/4$' "$work/bb.txt" || fail "bench --batch: no share of each run's own bound"
  # --quant with --act int8: both paths in the int8 mode, said in the table and the JSON
  "$moec" bench "$work/m" --threads 2 --prompt 16 --gen 4 --contexts 64 --repeat 1 --quick --quant q8_0 --act int8 \
      --json "$work/q.json" >"$work/q.txt" 2>"$work/q.err" || { cat "$work/q.err"; fail "bench --act int8"; }
  grep -q "^activations: int8" "$work/q.txt" && grep -q '"act": "int8"' "$work/q.json" || fail "bench: no int8 line"
  # --act bf16 (the bf16 weights as they are): said in the table and the JSON; with AVX512_BF16 on this
  # machine the prefill limit is vdpbf16ps's peak
  "$moec" bench "$work/m" --threads 2 --prompt 16 --gen 4 --contexts 64 --repeat 1 --quick --act bf16 \
      --json "$work/bf.json" >"$work/bf.txt" 2>"$work/bf.err" || { cat "$work/bf.err"; fail "bench --act bf16"; }
  grep -q "^activations: bf16" "$work/bf.txt" && grep -q '"act": "bf16"' "$work/bf.json" || fail "bench: no bf16 line"
  if grep -qw avx512_bf16 /proc/cpuinfo && ! grep -qw amx_bf16 /proc/cpuinfo; then
    grep -q "vdpbf16ps peak" "$work/bf.txt" || fail "bench --act bf16: no vdpbf16ps peak on an AVX512_BF16 machine"
  fi ;;
mixed)
  # name, arch, layers, prefill chunk, synth options. decoder_sparse_step 2 on 5 layers: dense layers 0, 2, 4
  # (first, middle, last), MoE 1, 3; mlp_only_layers 1,3 on 4 layers: MoE first, dense in the middle and last.
  # The tiny presets' dense width is 192, the experts' 96. A chunk of 16: the 12-token prompt in one partial
  # chunk, then 23 tokens in a full and a partial one.
  while read -r name arch layers chunk opts; do
    echo "$name: $arch --layers $layers --prefill-chunk $chunk $opts"
    "$moec" synth "$work/$name" --arch "$arch" --layers "$layers" --seed 3 $opts >/dev/null 2>&1 || fail "synth $name"
    "$moec" compile "$work/$name" -o "$work/$name.exe" --prefill-chunk "$chunk" --threads 2 -q || fail "compile $name"
    same_paths "$work/$name" "$work/$name.exe" $prompt 6
    [ "$chunk" = 16 ] && same_paths "$work/$name" "$work/$name.exe" "$(seq -s, 7 7 161)" 4
  done <<CASES
q2_step  qwen2_moe 5 16  --decoder-sparse-step 2 --dense-intermediate-size 48
q3_only  qwen3_moe 4 128 --mlp-only-layers 1,3 --dense-intermediate-size 96
q3_first qwen3_moe 3 16  --mlp-only-layers 0
CASES
  ;;
demo)
  "$moec" demo --dir "$work/cache" --threads 2 >"$work/d1.txt" 2>"$work/d1.err" || { cat "$work/d1.err"; fail "demo"; }
  cat "$work/d1.txt"
  [ -s "$work/d1.err" ] && { cat "$work/d1.err"; fail "demo wrote to stderr"; }
  [ -f "$work/cache/mixtral-tiny/tokenizer.json" ] && [ -x "$work/cache/mixtral-tiny.exe" ] || fail "no model or executable"
  grep -q '^model: .*(synthesised now)' "$work/d1.txt" || fail "the first run did not synthesise"
  g=$(sed -n 's/^generic:  "\(.*\)"   (moec run)$/\1/p' "$work/d1.txt")
  c=$(sed -n 's/^compiled: "\(.*\)"   (mixtral-tiny.exe)$/\1/p' "$work/d1.txt")
  [ -n "$g" ] && [ "$g" = "$c" ] || fail "texts missing or different: '$g' / '$c'"
  # the generic text is what `moec run` prints for that prompt (escaped as the demo escapes it)
  p=$(sed -n 's/^prompt:   "\(.*\)" (.*$/\1/p' "$work/d1.txt")
  want=$("$moec" run "$work/cache/mixtral-tiny" --prompt "$p" -n 24 --threads 2 | sed 's/\\/\\\\/g; s/"/\\"/g')
  [ "$g" = "$want" ] || fail "demo text '$g' is not moec run's '$want'"
  grep -q '^tokens:   identical: the same [0-9]* generated tokens on both paths' "$work/d1.txt" || fail "no identical-tokens line"
  grep -Eq '^speed: .*prefill \([0-9]+ tok\) +decode \([0-9]+ tok\)' "$work/d1.txt" || fail "no speed header"
  for path in generic compiled; do
    grep -Eq "^ +$path +[0-9]+\.[0-9] +[0-9]+\.[0-9]\$" "$work/d1.txt" || fail "no $path speed line"; done
  grep -Eq '^ +compiled / generic +[0-9]+\.[0-9]+x +[0-9]+\.[0-9]+x$' "$work/d1.txt" || fail "no ratio line"
  "$moec" demo --dir "$work/cache" --threads 2 >"$work/d2.txt" 2>&1 || fail "second demo"
  grep -q '^model: .*(cached)' "$work/d2.txt" || fail "the second run did not reuse the model"
  [ "$(grep -E '^(generic|compiled|tokens):' "$work/d1.txt")" = "$(grep -E '^(generic|compiled|tokens):' "$work/d2.txt")" ] \
    || fail "the second run generated something else"
  ls "$work/cache" | grep -q '^demo-' && fail "temporary files left: $(ls "$work/cache")"
  : >"$work/file"
  "$moec" demo --dir "$work/file/sub" >/dev/null 2>"$work/e"; rc=$?
  cat "$work/e"; [ $rc = 1 ] && [ "$(wc -l <"$work/e")" = 1 ] && grep -q "^moec: error: $work/file/sub: " "$work/e" \
    || fail "bad --dir: status $rc" ;;
bench_identical)
  # the bench preset (1.6 GB bf16): 32 greedy decode steps after a 64-token prompt, both paths
  "$moec" synth "$work/mb" --arch mixtral --preset bench --seed 1 >/dev/null 2>&1 || fail "synth bench"
  "$moec" compile "$work/mb" -o "$work/mb.exe" --threads 2 -q || fail "compile"
  p=$(seq -s, 101 164)
  g=$("$moec" run "$work/mb" --tokens $p -n 33 --threads 2 --verbose) || fail "generic"
  c=$("$work/mb.exe" --tokens $p -n 33 --threads 2 --verbose) || fail "compiled"
  echo "generic:  $g"; echo "compiled: $c"
  [ "$g" = "$c" ] || fail "compiled and generic tokens differ"
  # batch slots on the bench preset: 5 prompts of different lengths on 4 slots (one waits for a
  # free slot), each == that prompt alone through the batch-1 executable, and == the generic path's
  "$moec" compile "$work/mb" -o "$work/mb4.exe" --batch 4 --threads 2 -q || fail "compile --batch 4"
  ps="$(seq -s, 201 240);$(seq -s, 7 9);$(seq -s, 1000 1070);42;$(seq -s, 300 317)"
  "$work/mb4.exe" --batch-prompts --tokens "$ps" -n 12 --threads 2 >"$work/b.c" || fail "compiled batch"
  "$moec" run "$work/mb" --batch-prompts --batch 4 --tokens "$ps" -n 12 --threads 2 >"$work/b.g" || fail "generic batch"
  i=0; IFS=';' read -ra pl <<<"$ps"
  for q in "${pl[@]}"; do i=$((i + 1)); echo "[$i] $("$work/mb.exe" --tokens "$q" -n 12 --threads 2)"; done >"$work/b.a"
  rm -rf "$work/mb" "$work/mb.exe" "$work/mb4.exe"
  cat "$work/b.c"
  cmp -s "$work/b.c" "$work/b.a" || { diff "$work/b.c" "$work/b.a"; fail "bench preset: batched != alone"; }
  cmp -s "$work/b.c" "$work/b.g" || { diff "$work/b.c" "$work/b.g"; fail "bench preset: compiled batch != generic batch"; } ;;
*) fail "unknown check $check" ;;
esac
echo PASS
