# AArch64 executables (label "e2e;aarch64"): every golden that the native compiled path checks
# (e2e.cmake's list), compiled with --target aarch64-linux-gnu for a CPU with SVE (neoverse-v1, run
# on qemu's "max" CPU with 256-bit vectors as a V1 has; qemu 7.2 has no neoverse-v1 model) and one
# without (neoverse-n1, on qemu's neoverse-n1; of the GGUF goldens, those of the block types q4_0 and
# q6_k, and the f32 and bf16 ones), run under qemu-aarch64 with Debian's cross libraries
# as its sysroot; plus tests/e2e/aarch64_checks.sh. Each skips (77) with a message when qemu-aarch64
# or the AArch64 runtime (cmake/cross_runtime.cmake) is absent. Under the sanitizers only the checks
# run: the goldens test the AArch64 code, which a sanitized moec compiles no differently.
set(MOEC_AARCH64_CPUS neoverse-v1 neoverse-n1)
set(MOEC_AARCH64_QEMU_CPU_neoverse-v1 max,sve-default-vector-length=32)
set(MOEC_AARCH64_QEMU_CPU_neoverse-n1 neoverse-n1)
if(NOT MOEC_SANITIZE)
  foreach(case ${MOEC_GOLDEN_CASES})
    get_filename_component(name ${case} NAME)
    if(name IN_LIST MOEC_GOLDEN_COMPILED_PENDING)
      continue()
    endif()
    foreach(cpu ${MOEC_AARCH64_CPUS})
      if(cpu STREQUAL "neoverse-n1" AND name MATCHES "^gguf_.*_(q4_k_m|q8_0)$|^gguf_qwen2_moe_q4_0$")
        continue() # the block types again: each has a case of its own on the N1 (q4_0, split q6_k) or the V1
      endif()
      add_test(NAME aarch64_golden_${cpu}_${name}
               COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/aarch64_golden.sh $<TARGET_FILE:moec> $<TARGET_FILE:golden_check>
                       ${case} ${CMAKE_CURRENT_BINARY_DIR}/tmp/aarch64_${cpu}_${name} ${cpu}
                       ${MOEC_AARCH64_QEMU_CPU_${cpu}} "${MOEC_AARCH64_RUNTIME_DIR}")
      set_tests_properties(aarch64_golden_${cpu}_${name} PROPERTIES LABELS "e2e;aarch64" SKIP_RETURN_CODE 77
                           TIMEOUT 600)
    endforeach()
  endforeach()
endif()
foreach(check selfcontained sidecar missing vector int8 bf16)
  add_test(NAME aarch64_${check}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/aarch64_checks.sh $<TARGET_FILE:moec>
                   ${CMAKE_CURRENT_BINARY_DIR}/tmp/aarch64_${check} ${check} "${MOEC_AARCH64_RUNTIME_DIR}")
  set_tests_properties(aarch64_${check} PROPERTIES LABELS "e2e;aarch64" SKIP_RETURN_CODE 77 TIMEOUT 600)
endforeach()
