# cross_runtime.cmake: libmoert for AArch64 Linux, so `moec compile --target aarch64-linux-gnu`
# links a complete executable. A separate CMake build (cmake/cross_runtime/, with the toolchain file
# cmake/aarch64-linux-gnu.cmake) of runtime/CMakeLists.txt, run as an ExternalProject at build time;
# its archives land in <build>/aarch64/runtime/, where compiler/artifact.c looks for them.
#   MOEC_CROSS_AARCH64  AUTO (default): built when Debian's cross compiler and sysroot are there;
#                       ON: they must be; OFF: never (moec then says which packages to install).
set(MOEC_CROSS_AARCH64 AUTO CACHE STRING "Build libmoert for aarch64-linux-gnu: AUTO, ON or OFF")
set(MOEC_CROSS_PACKAGES "gcc-aarch64-linux-gnu libc6-dev-arm64-cross libgomp1-arm64-cross")

set(MOEC_AARCH64_RUNTIME_DIR "")
if(NOT MOEC_CROSS_AARCH64 STREQUAL "OFF" AND NOT MOEC_FUZZ)
  find_program(MOEC_AARCH64_CC NAMES aarch64-linux-gnu-gcc)
  if(MOEC_AARCH64_CC AND EXISTS /usr/aarch64-linux-gnu/include/stdio.h)
    execute_process(COMMAND ${MOEC_AARCH64_CC} -print-file-name=libgomp.so
                    OUTPUT_VARIABLE gomp OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  endif()
  if(MOEC_AARCH64_CC AND EXISTS /usr/aarch64-linux-gnu/include/stdio.h AND IS_ABSOLUTE "${gomp}" AND EXISTS "${gomp}")
    include(ExternalProject)
    set(MOEC_AARCH64_RUNTIME_DIR ${PROJECT_BINARY_DIR}/aarch64/runtime)
    ExternalProject_Add(moert_aarch64
      SOURCE_DIR ${PROJECT_SOURCE_DIR}/cmake/cross_runtime
      BINARY_DIR ${PROJECT_BINARY_DIR}/aarch64
      PREFIX ${PROJECT_BINARY_DIR}/aarch64-ep
      CMAKE_ARGS -DCMAKE_TOOLCHAIN_FILE=${PROJECT_SOURCE_DIR}/cmake/aarch64-linux-gnu.cmake
                 -DMOEC_CROSS_CC=${MOEC_AARCH64_CC} -DCMAKE_BUILD_TYPE=Release
                 -DMOEC_SOURCE_DIR=${PROJECT_SOURCE_DIR} -DMOEC_WERROR=${MOEC_WERROR}
      BUILD_ALWAYS ON           # runtime sources live outside the ExternalProject's view
      INSTALL_COMMAND ""
      BUILD_BYPRODUCTS ${MOEC_AARCH64_RUNTIME_DIR}/libmoert.a ${MOEC_AARCH64_RUNTIME_DIR}/libmoert_main.a
      USES_TERMINAL_BUILD OFF)
    message(STATUS "moec: libmoert for aarch64-linux-gnu with ${MOEC_AARCH64_CC}")
  elseif(MOEC_CROSS_AARCH64 STREQUAL "ON")
    message(FATAL_ERROR "MOEC_CROSS_AARCH64=ON: no AArch64 cross compiler with its sysroot and libgomp; "
                        "apt-get install ${MOEC_CROSS_PACKAGES}")
  else()
    message(STATUS "moec: no AArch64 cross toolchain: --target aarch64-linux-gnu emits objects only "
                   "(apt-get install ${MOEC_CROSS_PACKAGES})")
  endif()
endif()
