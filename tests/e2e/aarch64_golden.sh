#!/usr/bin/env bash
# aarch64_golden.sh MOEC GOLDEN_CHECK CASE_DIR WORK CPU QEMU_CPU AARCH64_RUNTIME_DIR: compile the
# golden case's model for aarch64-linux-gnu and --cpu CPU, and check the AArch64 executable, run by
# qemu-aarch64 -cpu QEMU_CPU with Debian's cross libraries as its sysroot, against Hugging Face's
# reference exactly as compiled_golden.sh checks the native one (ids and routes exact, logits within
# 1e-4). Exit 77 when the case, qemu-aarch64 or the AArch64 runtime (cross toolchain) is absent.
set -eu
moec=$1 check=$2 case=$3 work=$4 cpu=$5 qcpu=$6 rtdir=$7
sysroot=/usr/aarch64-linux-gnu
[ -d "$case" ] || { echo "SKIP: $case absent (../shared not beside the checkout)"; exit 77; }
command -v qemu-aarch64 >/dev/null || { echo "SKIP: no qemu-aarch64 (apt-get install qemu-user)"; exit 77; }
[ -n "$rtdir" ] && [ -f "$rtdir/libmoert.a" ] && [ -f "$sysroot/lib/libgomp.so.1" ] || {
  echo "SKIP: no AArch64 runtime (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross libgomp1-arm64-cross, then reconfigure)"
  exit 77; }
rm -rf "$work" && mkdir -p "$work"
t0=$(date +%s.%N)
"$moec" compile "$case/model" -o "$work/model.exe" --target aarch64-linux-gnu --cpu "$cpu" --threads 2 -q
t1=$(date +%s.%N)
"$check" "$case" -- qemu-aarch64 -L "$sysroot" -cpu "$qcpu" "$work/model.exe" --threads 2 && rc=0 || rc=$?
t2=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v cpu="$cpu" -v q="$qcpu" \
  'BEGIN {printf "compile for %s: %.2f s; golden runs under qemu-aarch64 -cpu %s: %.2f s\n", cpu, b - a, q, c - b}'
exit $rc
