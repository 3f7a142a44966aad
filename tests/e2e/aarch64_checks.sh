#!/usr/bin/env bash
# aarch64_checks.sh MOEC WORK CHECK AARCH64_RUNTIME_DIR: checks of `moec compile --target
# aarch64-linux-gnu` beyond the goldens (those are aarch64_golden.sh):
#   selfcontained  the executable is an AArch64 PIE whose NEEDED entries are only libc, libm and
#                  libgomp, interpreter /lib/ld-linux-aarch64.so.1 (readelf: ldd cannot look into a
#                  foreign executable); copied alone into an empty folder it runs under qemu and
#                  gives the ids of `moec run`
#   sidecar        --weights sidecar: OUT + OUT.moew, run under qemu with --weights
#   missing        no AArch64 runtime, or no cross linker driver: one error line naming the packages
#                  to install, exit 1, no output written (needs neither qemu nor the toolchain)
#   vector         --emit asm: neoverse-v1 kernels use SVE (fmla on z registers), neoverse-n1 and
#                  cortex-a72 kernels NEON fmla on v registers and never a z register
#   int8           --quant q4_0 --act int8 (the int8 dot products' portable code: no vpdpbusd off x86)
#                  runs under qemu and gives the ids of `moec run --act int8`
#   bf16           --act bf16 (the bf16 pair products' portable code: no vdpbf16ps off x86) runs under
#                  qemu and gives the ids of `moec run --act bf16`
set -u
moec=$1 work=$2 check=$3 rtdir=$4
sysroot=/usr/aarch64-linux-gnu
packages="gcc-aarch64-linux-gnu libc6-dev-arm64-cross libgomp1-arm64-cross"
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
synth() { "$moec" synth "$work/$1" --arch "$2" --preset tiny --seed "${3:-7}" >/dev/null 2>&1 || fail "synth $1"; }
need_cross() {
  command -v qemu-aarch64 >/dev/null || { echo "SKIP: no qemu-aarch64 (apt-get install qemu-user)"; exit 77; }
  [ -n "$rtdir" ] && [ -f "$rtdir/libmoert.a" ] || { echo "SKIP: no AArch64 runtime (apt-get install $packages)"; exit 77; }
}
qemu() { qemu-aarch64 -L "$sysroot" -cpu "$@"; }
prompt=5,17,99,3,250,31,8,64,12,200,7,1
case $check in
selfcontained)
  need_cross
  synth m qwen3_moe
  "$moec" compile "$work/m" -o "$work/out.exe" --target aarch64-linux-gnu --cpu neoverse-n2 --threads 2 -q \
    || fail "compile"
  readelf -h "$work/out.exe" | grep -E 'Type:|Machine:'
  readelf -h "$work/out.exe" | grep -q 'Machine: *AArch64' || fail "not an AArch64 executable"
  interp=$(readelf -l "$work/out.exe" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
  echo "interpreter: $interp"; [ "$interp" = /lib/ld-linux-aarch64.so.1 ] || fail "interpreter $interp"
  libs=$(readelf -d "$work/out.exe" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sed 's/\.so.*//' | sort -u | tr '\n' ' ')
  echo "NEEDED: $libs"
  for l in $libs; do case $l in libc|libm|libgomp) ;; *) fail "unexpected shared library $l";; esac; done
  case " $libs " in *" libgomp "*) ;; *) fail "libgomp not linked";; esac
  mkdir "$work/alone" && cp "$work/out.exe" "$work/alone/"
  want=$("$moec" run "$work/m" --tokens $prompt -n 8 --threads 2) || fail "moec run"
  got=$(cd "$work/alone" && env -i "$(command -v qemu-aarch64)" -L "$sysroot" -cpu max ./out.exe --tokens $prompt -n 8 --threads 2) \
    || fail "alone run"
  echo "generic:  $want"; echo "aarch64:  $got"
  [ "$want" = "$got" ] || fail "AArch64 ids differ from the generic path" ;;
int8)
  need_cross
  synth m qwen2_moe
  "$moec" compile "$work/m" -o "$work/i8.exe" --quant q4_0 --act int8 --target aarch64-linux-gnu --cpu neoverse-n1 \
      --threads 2 -q || fail "compile --act int8"
  want=$("$moec" run "$work/m" --quant q4_0 --act int8 --tokens $prompt -n 8 --threads 2 2>/dev/null) || fail "moec run"
  got=$(qemu neoverse-n1 "$work/i8.exe" --tokens $prompt -n 8 --threads 2) || fail "int8 run"
  echo "generic:  $want"; echo "aarch64:  $got"
  [ "$want" = "$got" ] || fail "AArch64 int8 ids differ from the generic path" ;;
bf16)
  need_cross
  synth m mixtral
  "$moec" compile "$work/m" -o "$work/bf.exe" --act bf16 --target aarch64-linux-gnu --cpu neoverse-n1 --threads 2 -q \
    || fail "compile --act bf16"
  want=$("$moec" run "$work/m" --act bf16 --tokens $prompt -n 8 --threads 2 2>/dev/null) || fail "moec run"
  got=$(qemu neoverse-n1 "$work/bf.exe" --tokens $prompt -n 8 --threads 2) || fail "bf16 run"
  echo "generic:  $want"; echo "aarch64:  $got"
  [ "$want" = "$got" ] || fail "AArch64 bf16 ids differ from the generic path" ;;
sidecar)
  need_cross
  synth m mixtral
  "$moec" compile "$work/m" -o "$work/side.exe" --target aarch64-linux-gnu --cpu cortex-a72 --weights sidecar -q \
    || fail "compile"
  [ -f "$work/side.exe.moew" ] || fail "no sidecar"
  [ "$(stat -c %s "$work/side.exe")" -lt 4000000 ] || fail "weights embedded in sidecar mode"
  want=$("$moec" run "$work/m" --tokens $prompt -n 8 --threads 2) || fail "moec run"
  got=$(qemu cortex-a72 "$work/side.exe" --weights "$work/side.exe.moew" --tokens $prompt -n 8 --threads 2) \
    || fail "sidecar run"
  echo "generic:  $want"; echo "aarch64:  $got"
  [ "$want" = "$got" ] || fail "AArch64 ids differ from the generic path" ;;
missing)
  synth m mixtral
  # ENV... -- ARGS: exit status 1, one "moec: error:" line naming the packages, nothing written
  one_error() {
    "$@" "$moec" compile "$work/m" -o "$work/x" -q --target aarch64-linux-gnu 2>"$work/e"; local rc=$?
    echo "$* -> status $rc:"; cat "$work/e"
    [ $rc = 1 ] || fail "$*: status $rc, expected 1"
    [ "$(wc -l <"$work/e")" = 1 ] && grep -q '^moec: error: ' "$work/e" || fail "$*: expected one error line"
    grep -q "$packages" "$work/e" || fail "$*: the error does not name the packages"
    [ -e "$work/x" ] && fail "$*: output written" || true
    [ "$(ls "$work" | grep -c tmp)" = 0 ] || fail "$*: temporary files left"
  }
  one_error env MOEC_AARCH64_RUNTIME_DIR="$work/none"
  one_error env MOEC_CROSS_CC="$work/none/aarch64-linux-gnu-gcc"
  # --emit obj needs neither
  MOEC_AARCH64_RUNTIME_DIR="$work/none" "$moec" compile "$work/m" -o "$work/m.o" -q --target aarch64-linux-gnu \
    --emit obj || fail "--emit obj without the runtime" ;;
vector)
  synth m mixtral
  for cpu in neoverse-v1 neoverse-n1 cortex-a72; do
    "$moec" compile "$work/m" -o "$work/$cpu.s" --target aarch64-linux-gnu --cpu $cpu --emit asm -q || fail "asm $cpu"
    sve=$(grep -cE '^\s+fmla\s+z[0-9]' "$work/$cpu.s"); neon=$(grep -cE '^\s+fmla\s+v[0-9]+\.4s' "$work/$cpu.s")
    zreg=$(grep -cE '^\s+[a-z0-9.]+\s+.*\bz[0-9]+\.' "$work/$cpu.s")
    echo "$cpu: $sve SVE fmla, $neon NEON fmla (.4s), $zreg instructions on z registers"
    case $cpu in
      neoverse-v1) [ "$sve" -gt 0 ] || fail "$cpu: no SVE fmla" ;;
      *) [ "$neon" -gt 0 ] && [ "$zreg" = 0 ] || fail "$cpu: expected NEON fmla and no SVE" ;;
    esac
  done ;;
*) fail "unknown check $check" ;;
esac
echo PASS
