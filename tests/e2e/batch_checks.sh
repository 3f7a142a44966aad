#!/usr/bin/env bash
# batch_checks.sh MOEC WORK CHECK [MODEL]: sequence slots (`moec compile --batch B`), driven as a
# user does: `OUT --batch-prompts` and `moec run --batch-prompts`.
#   slots MODEL  a golden model compiled with --batch 4 and prefill chunks of 4 (a prompt's chunks
#                run between the other slots' decode steps): 7 prompts of 1 to 13 tokens (more
#                than the slots, so slots are freed and reused while others decode); every
#                prompt's greedy ids are those it gets alone through the same executable, through
#                a --batch 1 executable, through `moec run` alone and through `moec run
#                --batch-prompts --batch 4`
#   wide         --batch 16 (decode steps of 16 rows take the prefill-size kernels): 20 prompts
#   capacity     --capacity-factor 0.5 with --batch 4: a decode step's capacity is ceil(0.5*4*2/4) = 1
#                over its live rows in slot order (prompts of P tokens, so that prefill steps match
#                the generic path's one-step prefill too); compiled == generic ids, and the same
#                expert counts and drops per layer (--stats), some dropped
#   errors       bad --batch values and ';' prompts without --batch-prompts: one error line, exit 2
set -u
moec=$1 work=$2 check=$3 model=${4:-}
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
prompts="5,17,99,3,250,31,8,64,12,200,7,1,9;42;3,4;100,101,102,103,104,105,106,107,108,109,110;8,8,8,8,8,8;300;77,1,2,3,4"

# each_alone CMD...: runs CMD --tokens P for every prompt P, printing "[i] ids" like --batch-prompts
each_alone() {
  local i=0 p
  IFS=';' read -ra ps <<<"$prompts"
  for p in "${ps[@]}"; do
    i=$((i + 1))
    echo "[$i] $("$@" --tokens "$p")" || return 1
  done
}
same() { # NAME FILE_A FILE_B
  cmp -s "$2" "$3" || { diff "$2" "$3" | head -5; fail "$1"; }
}
case $check in
slots)
  "$moec" compile "$model" -o "$work/b4" --batch 4 --prefill-chunk 4 --threads 2 -q || fail "compile --batch 4"
  "$moec" compile "$model" -o "$work/b1" --threads 2 -q || fail "compile --batch 1"
  "$work/b4" --batch-prompts --tokens "$prompts" -n 10 --threads 2 --verbose >"$work/batch" 2>"$work/err" ||
    { cat "$work/err"; fail "--batch-prompts"; }
  cat "$work/batch" "$work/err"
  [ "$(wc -l <"$work/batch")" = 7 ] || fail "expected 7 results"
  each_alone "$work/b4" -n 10 --threads 2 >"$work/alone4" || fail "alone through the --batch 4 executable"
  same "batched ids differ from each prompt alone (same executable)" "$work/batch" "$work/alone4"
  each_alone "$work/b1" -n 10 --threads 2 >"$work/alone1" || fail "alone through a --batch 1 executable"
  same "batched ids differ from a --batch 1 executable" "$work/batch" "$work/alone1"
  each_alone "$moec" run "$model" -n 10 --threads 2 >"$work/galone" || fail "moec run alone"
  same "batched ids differ from moec run alone" "$work/batch" "$work/galone"
  "$moec" run "$model" --batch-prompts --batch 4 --tokens "$prompts" -n 10 --threads 2 >"$work/gbatch" ||
    fail "moec run --batch-prompts"
  same "moec run --batch-prompts differs" "$work/batch" "$work/gbatch"
  echo "7 prompts on 4 slots: identical to alone, both paths" ;;
wide)
  "$moec" synth "$work/m" --arch qwen3_moe --preset tiny --seed 3 >/dev/null 2>&1 || fail "synth"
  "$moec" compile "$work/m" -o "$work/b16" --batch 16 --threads 2 -q || fail "compile --batch 16"
  prompts=$(for i in $(seq 1 20); do printf '%s%d,%d,%d' "$([ $i -gt 1 ] && echo ';')" $((i * 7)) $((i * 13 % 380)) $i; done)
  "$work/b16" --batch-prompts --tokens "$prompts" -n 6 --threads 2 >"$work/batch" || fail "--batch-prompts"
  each_alone "$work/b16" -n 6 --threads 2 >"$work/alone" || fail "alone"
  same "batch 16: batched ids differ from alone" "$work/batch" "$work/alone"
  "$moec" run "$work/m" --batch-prompts --batch 16 --tokens "$prompts" -n 6 --threads 2 >"$work/gbatch" || fail "run"
  same "batch 16: moec run --batch-prompts differs" "$work/batch" "$work/gbatch"
  echo "20 prompts on 16 slots: identical to alone, both paths" ;;
capacity)
  # prompts of P tokens: a prefill step then has the capacity of the generic path's one-step prefill
  prompts="5,17,99,3,250,31;42,1,2,3,4,5;3,4,200,201,202,9;100,101,102,103,104,105;8,8,8,8,8,8;300,2,300,2,300,2;77,1,2,3,4,5"
  "$moec" compile "$model" -o "$work/b4" --batch 4 --prefill-chunk 6 --capacity-factor 0.5 --threads 2 -q ||
    fail "compile"
  "$work/b4" --batch-prompts --tokens "$prompts" -n 10 --threads 2 --stats >"$work/c.out" 2>"$work/c.err" ||
    { cat "$work/c.err"; fail "compiled"; }
  "$moec" run "$model" --batch-prompts --batch 4 --capacity-factor 0.5 --tokens "$prompts" -n 10 --threads 2 \
      --stats >"$work/g.out" 2>"$work/g.err" || { cat "$work/g.err"; fail "generic"; }
  same "capacity with batch: ids differ between the paths" "$work/c.out" "$work/g.out"
  # the totals: the compiled executable prints them last ("all 7 prompts:"), the generic path once
  sed -n '/^all 7 prompts/,$p' "$work/c.err" | grep -E '^  L|^dropped' >"$work/c.st"
  grep -E '^  L|^dropped' "$work/g.err" >"$work/g.st"
  cat "$work/c.st"
  [ -s "$work/c.st" ] || fail "no totals in --stats"
  same "capacity with batch: expert counts or drops differ" "$work/c.st" "$work/g.st"
  grep -q '^dropped assignments: [1-9]' "$work/c.st" || fail "nothing dropped with capacity 1"
  grep -q '^prompt 7: expert utilisation' "$work/c.err" || fail "no per-prompt stats" ;;
errors)
  "$moec" synth "$work/m" --arch mixtral --preset tiny >/dev/null 2>&1 || fail "synth"
  one_error() { # CMD...: exit 2 and one line containing $want
    "$@" >/dev/null 2>"$work/e"; local rc=$?
    [ $rc = 2 ] && [ "$(wc -l <"$work/e")" = 1 ] && grep -qF -- "$want" "$work/e" ||
      { cat "$work/e"; fail "expected exit 2 and one error line with '$want' (rc $rc)"; }
  }
  want="--batch: expected an integer in [1, 1024]; got '0'"; one_error "$moec" compile "$work/m" -o "$work/x" --batch 0
  want="--batch: expected an integer in [1, 1024]; got '2000'"; one_error "$moec" compile "$work/m" -o "$work/x" --batch 2000
  "$moec" compile "$work/m" -o "$work/b2" --batch 2 --threads 2 -q || fail "compile"
  want="';' separates the prompts of --batch-prompts"; one_error "$work/b2" --tokens "1,2;3"
  want="';' separates the prompts of --batch-prompts"; one_error "$moec" run "$work/m" --tokens "1,2;3"
  "$work/b2" --batch-prompts --tokens "1,2;x" >/dev/null 2>"$work/e" && fail "bad prompt ran"
  grep -q "prompt 2: " "$work/e" || { cat "$work/e"; fail "bad prompt: message"; }
  want="--batch: sets the slots of --batch-prompts"; one_error "$moec" run "$work/m" --tokens 1,2 --batch 2
  echo "errors ok" ;;
*) fail "unknown check $check" ;;
esac
