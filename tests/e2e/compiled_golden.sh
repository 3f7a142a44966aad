#!/usr/bin/env bash
# compiled_golden.sh MOEC GOLDEN_CHECK CASE_DIR WORK: compile the golden case's model into an
# executable and check it against Hugging Face's reference exactly like `moec run` is checked.
set -eu
moec=$1 check=$2 case=$3 work=$4
[ -d "$case" ] || { echo "SKIP: $case absent (../shared not beside the checkout)"; exit 77; }
rm -rf "$work" && mkdir -p "$work"
"$moec" compile "$case/model" -o "$work/model.exe" --threads 2 -q
exec "$check" "$case" -- "$work/model.exe" --threads 2
