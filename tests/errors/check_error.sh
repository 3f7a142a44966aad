#!/usr/bin/env bash
# check_error.sh MOEC MKBAD CASE REGEX WORKDIR [moec run args...]
# Builds the broken model CASE with mkbad (CASE "good" = an intact tiny model), runs
# `moec run MODEL ARGS` and checks: exit status 1, exactly one line on stderr, and that line
# matching REGEX (grep -E). Never a crash (a signal gives status > 128).
set -u
moec=$1 mkbad=$2 case=$3 regex=$4 work=$5
shift 5
rm -rf "$work" && mkdir -p "$work"
if [ "$case" = good ]; then
  "$mkbad" none "$work/model" >/dev/null 2>&1 || { echo "mkbad none failed"; exit 1; }
else
  "$mkbad" "$case" "$work/model" >/dev/null 2>&1 || { echo "mkbad $case failed"; exit 1; }
fi
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--tokens 1,2,3 -n 2)
"$moec" run "$work/model" "${args[@]}" >"$work/out" 2>"$work/err"
rc=$?
lines=$(wc -l <"$work/err")
echo "exit status $rc; stderr ($lines lines):"
cat "$work/err"
[ "$rc" -eq 1 ] || { echo "FAIL: expected exit status 1"; exit 1; }
[ "$lines" -eq 1 ] || { echo "FAIL: expected exactly one line on stderr"; exit 1; }
grep -Eq -- "$regex" "$work/err" || { echo "FAIL: stderr does not match /$regex/"; exit 1; }
echo PASS
