#!/usr/bin/env bash
# memory_checks.sh MOEC WORK CHECK [MODEL]: `OUT --memory MB` (a memory budget: the routed experts
# in a pool, read from the weights on demand), driven as a user does.
#   identical MODEL  the model compiled with embedded weights (prefill chunks of 5, so a prompt takes
#                    several prefill steps) and with a sidecar .moew (--batch 3): a budget too small
#                    by one kB is refused with one line naming the smallest that works; with exactly
#                    that smallest budget (the pool holds one layer's experts, so experts are evicted
#                    every step) the generated ids and every logits row (--logits-out) are
#                    byte-identical to the run without --memory, on both executables, with 2 threads
#                    and 1; --stats prints the pool and a hit-rate line per MoE layer, with
#                    evictions; a budget holding every expert evicts none; --batch-prompts on the
#                    --batch 3 executable (decode steps of several slots) prints the same ids
#   errors           bad --memory values: one error line, exit 2
set -u
moec=$1 work=$2 check=$3 model=${4:-}
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
same() { # NAME FILE_A FILE_B
  cmp -s "$2" "$3" || fail "$1"
}
prompt="5,17,99,3,250,31,8,64,12,200,7,1,9"
case $check in
identical)
  [ -d "$model" ] || { echo "SKIP: $model absent (../shared not beside the checkout)"; exit 77; }
  "$moec" compile "$model" -o "$work/emb" --prefill-chunk 5 --threads 2 -q || fail "compile (embedded)"
  "$moec" compile "$model" -o "$work/side" --weights sidecar --batch 3 --threads 2 -q || fail "compile (sidecar)"
  for exe in emb side; do
    w=; [ $exe = side ] && w="--weights $work/side.moew"
    for t in 2 1; do
      run="$work/$exe $w --threads $t -n 8 --tokens $prompt"
      $run --logits-out "$work/$exe.$t.ref" >"$work/$exe.$t.ids" || fail "$exe: run without --memory"
      # the smallest budget, from the refusal of a tiny one
      $run --memory 0.001 >/dev/null 2>"$work/err" && fail "$exe: --memory 0.001 was not refused"
      [ "$(wc -l <"$work/err")" = 1 ] || { cat "$work/err"; fail "$exe: expected one error line"; }
      grep -q "too small.*give at least [0-9.]* MB" "$work/err" || { cat "$work/err"; fail "$exe: refusal message"; }
      least=$(sed 's/.*give at least \([0-9.]*\) MB.*/\1/' "$work/err")
      below=$(awk -v m="$least" 'BEGIN { printf "%.3f", m - 0.001 }')
      $run --memory "$below" >/dev/null 2>"$work/err" && fail "$exe: --memory $below (below the least) was not refused"
      grep -q "too small" "$work/err" || { cat "$work/err"; fail "$exe: refusal message below the least"; }
      $run --memory "$least" --logits-out "$work/$exe.$t.mem" --stats >"$work/$exe.$t.mids" 2>"$work/stats" ||
        { cat "$work/stats"; fail "$exe: --memory $least"; }
      same "$exe, $t threads: ids with --memory $least differ" "$work/$exe.$t.ids" "$work/$exe.$t.mids"
      same "$exe, $t threads: logits with --memory $least differ" "$work/$exe.$t.ref" "$work/$exe.$t.mem"
      grep -q "^expert cache: budget .* slots of .* MB .*; reads " "$work/stats" || { cat "$work/stats"; fail "$exe: --stats pool line"; }
      layers=$(grep -c "^  L[0-9]* hit rate .* hits, .* misses, .* evictions) read .* MB, waited .* s" "$work/stats")
      [ "$layers" -ge 1 ] || { cat "$work/stats"; fail "$exe: --stats per-layer cache lines"; }
      ev=$(sed -n 's/^  all hit rate .* misses, \([0-9]*\) evictions.*/\1/p' "$work/stats")
      [ "${ev:-0}" -gt 0 ] || { cat "$work/stats"; fail "$exe: the smallest budget evicted nothing"; }
      echo "$exe, $t threads: --memory $least: identical ids and logits; $(grep '^  all' "$work/stats")"
    done
    # a budget holding every expert: read once each, never evicted
    "$work/$exe" $w --threads 2 -n 8 --tokens "$prompt" --memory 100000 --logits-out "$work/$exe.big" --stats \
      >"$work/$exe.bids" 2>"$work/stats" || { cat "$work/stats"; fail "$exe: --memory 100000"; }
    same "$exe: logits with a large budget differ" "$work/$exe.2.ref" "$work/$exe.big"
    grep -q "^  all .* 0 evictions" "$work/stats" || { cat "$work/stats"; fail "$exe: a large budget evicted"; }
  done
  # batch slots: decode steps of several rows, with experts evicted every step
  prompts="$prompt;42;3,4;100,101,102,103,104,105,106;8,8,8"
  "$work/side" --weights "$work/side.moew" --batch-prompts --tokens "$prompts" -n 6 --threads 2 >"$work/batch" || fail "--batch-prompts"
  "$work/side" --weights "$work/side.moew" --batch-prompts --tokens "$prompts" -n 6 --threads 2 --memory 0.001 >/dev/null 2>"$work/err"
  least=$(sed 's/.*give at least \([0-9.]*\) MB.*/\1/' "$work/err")
  "$work/side" --weights "$work/side.moew" --batch-prompts --tokens "$prompts" -n 6 --threads 2 --memory "$least" >"$work/mbatch" ||
    fail "--batch-prompts --memory $least"
  same "--batch-prompts ids with --memory $least differ" "$work/batch" "$work/mbatch"
  echo "batch 3, 5 prompts, --memory $least: identical ids" ;;
errors)
  "$moec" synth "$work/m" --arch mixtral --preset tiny --seed 1 >/dev/null 2>&1 || fail "synth"
  "$moec" compile "$work/m" -o "$work/x" --threads 2 -q || fail "compile"
  for bad in 0 -5 abc 1e13; do
    "$work/x" --tokens 1,2,3 --memory "$bad" >/dev/null 2>"$work/err"
    rc=$?
    [ $rc = 2 ] || fail "--memory $bad: exit $rc, expected 2"
    [ "$(wc -l <"$work/err")" = 1 ] && grep -q -- "--memory: expected a number" "$work/err" ||
      { cat "$work/err"; fail "--memory $bad: message"; }
  done
  echo "bad --memory values refused" ;;
*) fail "unknown check $check" ;;
esac
