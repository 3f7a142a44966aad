#!/usr/bin/env bash
# build.sh: install what is missing (Debian 12, as root or with sudo), build, and run.
#   ./build.sh demo         build, then `moec demo`: synthesise (once), compile and run the tiny
#                           Mixtral on a text prompt, both paths, and compare them (no downloads)
#   ./build.sh test         build with -Werror and run the whole ctest suite (on x86-64 with the
#                           AArch64 cross toolchain and qemu-user: the AArch64 executables too)
#   ./build.sh asan-test    the suite again under AddressSanitizer + UndefinedBehaviorSanitizer, but
#                           for the tests labelled slow or nosan (tests/CMakeLists.txt says why)
#   ./build.sh fuzz [S]     build the libFuzzer targets (clang-19, ASan + UBSan) and run each for S
#                           seconds (default 30) on its checked-in corpus (tests/fuzz/fuzz.cmake)
#   ./build.sh build        just build (build/moec)
set -euo pipefail
cd "$(dirname "$0")"

PKGS="cmake make gcc libc6-dev pkg-config clang-19 llvm-19-dev libcjson-dev"
[ "${1:-}" = fuzz ] && PKGS="$PKGS libclang-rt-19-dev libomp-19-dev" # libFuzzer, clang's OpenMP
# the AArch64 runtime (cmake/cross_runtime.cmake) and qemu-aarch64, which runs the AArch64 tests
CROSS_PKGS="gcc-aarch64-linux-gnu libc6-dev-arm64-cross libgomp1-arm64-cross qemu-user"
cross=""
if [ "$(uname -m)" = x86_64 ] && { [ "${1:-}" = test ] || [ "${1:-}" = asan-test ]; }; then
  cross=ON PKGS="$PKGS $CROSS_PKGS"
fi
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "build.sh: installing$missing" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

jobs=$(nproc)
configure_build() { # dir, extra cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
}

case "${1:-demo}" in
  build) configure_build build ;;
  demo) configure_build build; ./build/moec demo ;;
  test)
    configure_build build -DMOEC_WERROR=ON ${cross:+-DMOEC_CROSS_AARCH64=$cross}
    ctest --test-dir build --output-on-failure -j"$jobs" --no-tests=error ;;
  asan-test)
    configure_build build-asan -DMOEC_WERROR=ON -DMOEC_SANITIZE=ON ${cross:+-DMOEC_CROSS_AARCH64=$cross}
    ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j"$jobs" --no-tests=error -LE 'slow|nosan' ;;
  fuzz)
    CC=clang-19 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DMOEC_FUZZ=ON -DMOEC_FUZZ_SECONDS="${2:-30}" >/dev/null
    cmake --build build-fuzz -j"$jobs" --target fuzz
    ctest --test-dir build-fuzz --output-on-failure -j"$jobs" --no-tests=error -L fuzz ;; # one core each
  *) echo "usage: ./build.sh [demo|test|asan-test|fuzz [SECONDS]|build]" >&2; exit 2 ;;
esac
