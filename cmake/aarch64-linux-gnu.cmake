# Toolchain file for the AArch64 runtime (cross_runtime.cmake): Debian's cross compiler
# (gcc-aarch64-linux-gnu) and its sysroot /usr/aarch64-linux-gnu (libc6-dev-arm64-cross,
# libgomp1-arm64-cross). MOEC_CROSS_CC may name another aarch64-linux-gnu C compiler driver.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
if(NOT MOEC_CROSS_CC)
  set(MOEC_CROSS_CC aarch64-linux-gnu-gcc)
endif()
set(CMAKE_C_COMPILER ${MOEC_CROSS_CC})
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
