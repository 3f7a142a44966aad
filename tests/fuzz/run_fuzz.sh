#!/usr/bin/env bash
# run_fuzz.sh TARGET CORPUS WORK SECONDS: runs a libFuzzer target for SECONDS over the checked-in
# CORPUS, writing new inputs to WORK/corpus (CORPUS itself is read only), and prints libFuzzer's
# final stats (executions, coverage). Non-zero exit on any finding: its input is left in WORK.
set -u
target=$1 corpus=$2 work=$3 seconds=$4
rm -rf "$work" && mkdir -p "$work/corpus" "$corpus"
cd "$work"
# -rss_limit_mb: a parser that allocates from an unchecked size shows up as an OOM finding
"$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" "$work/corpus" "$corpus" 2>"$work/log"
rc=$?
grep -E "^(#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|stat::peak_rss_mb|.*cov: )" "$work/log" | tail -3
if [ $rc -ne 0 ]; then
  tail -40 "$work/log"
  echo "FAIL: $(basename "$target") found a problem; input in $work"
  exit 1
fi
echo PASS
