# End-to-end tests of `moec compile` (label e2e): every golden through the compiled executable,
# and the checks of tests/e2e/compile_checks.sh.
foreach(case ${MOEC_GOLDEN_CASES})
  get_filename_component(name ${case} NAME)
  add_test(NAME golden_compiled_${name}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/compiled_golden.sh $<TARGET_FILE:moec> $<TARGET_FILE:golden_check>
                   ${case} ${CMAKE_CURRENT_BINARY_DIR}/tmp/compiled_${name})
  set_tests_properties(golden_compiled_${name} PROPERTIES LABELS "golden;e2e" SKIP_RETURN_CODE 77 TIMEOUT 600)
endforeach()
foreach(check selfcontained sidecar capacity aarch64 atomic llvm errors text lastrow amx bench demo mixed)
  add_test(NAME compile_${check}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/compile_checks.sh $<TARGET_FILE:moec>
                   ${CMAKE_CURRENT_BINARY_DIR}/tmp/compile_${check} ${check})
  set_tests_properties(compile_${check} PROPERTIES LABELS e2e TIMEOUT 600)
endforeach()
# The bench preset (1.6 GB): compiled == generic tokens, and 5 prompts on 4 slots == each alone and
# == the generic batch. Label slow: not run under the sanitizers.
add_test(NAME compile_bench_identical
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/compile_checks.sh $<TARGET_FILE:moec>
                 ${CMAKE_CURRENT_BINARY_DIR}/tmp/compile_bench_identical bench_identical)
set_tests_properties(compile_bench_identical PROPERTIES LABELS "e2e;slow" TIMEOUT 1200 RUN_SERIAL TRUE)
# LLVM's fatal errors become one error line and exit status 1 (cg_new's handler), never an abort.
add_executable(llvm_fatal ${CMAKE_CURRENT_SOURCE_DIR}/e2e/llvm_fatal.c)
target_link_libraries(llvm_fatal PRIVATE moec_core)
add_test(NAME compile_llvm_fatal COMMAND llvm_fatal)
set_tests_properties(compile_llvm_fatal PROPERTIES LABELS e2e TIMEOUT 60)
# Sequence slots (--batch B): every family's golden (and two quantised GGUF ones) batched ==
# alone on both paths; batch 16; capacity with batch; the errors. tests/e2e/batch_checks.sh.
foreach(case ${MOEC_GOLDEN_CASES})
  get_filename_component(name ${case} NAME)
  if(NOT name MATCHES "^gguf_" OR name MATCHES "k_small_q4_k_m|qwen2_moe_q4_0")
    add_test(NAME batch_slots_${name}
             COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/batch_checks.sh $<TARGET_FILE:moec>
                     ${CMAKE_CURRENT_BINARY_DIR}/tmp/batch_slots_${name} slots ${case}/model)
    set_tests_properties(batch_slots_${name} PROPERTIES LABELS e2e TIMEOUT 600)
  endif()
  if(name STREQUAL "mixtral_tiny_bf16")
    add_test(NAME batch_capacity
             COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/batch_checks.sh $<TARGET_FILE:moec>
                     ${CMAKE_CURRENT_BINARY_DIR}/tmp/batch_capacity capacity ${case}/model)
    set_tests_properties(batch_capacity PROPERTIES LABELS e2e TIMEOUT 600)
  endif()
endforeach()
foreach(check wide errors)
  add_test(NAME batch_${check}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/batch_checks.sh $<TARGET_FILE:moec>
                   ${CMAKE_CURRENT_BINARY_DIR}/tmp/batch_${check} ${check})
  set_tests_properties(batch_${check} PROPERTIES LABELS e2e TIMEOUT 600)
endforeach()
# examples/ built and run as their headers say, and against an installed copy (pkg-config moert);
# compare_llama.sh against stand-ins for llama.cpp's binaries.
foreach(check c_api install serve_remote compare_llama)
  add_test(NAME examples_${check}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/examples_checks.sh $<TARGET_FILE:moec> ${PROJECT_SOURCE_DIR}
                   ${PROJECT_BINARY_DIR} ${CMAKE_CURRENT_BINARY_DIR}/tmp/examples_${check} ${check})
  set_tests_properties(examples_${check} PROPERTIES LABELS e2e SKIP_RETURN_CODE 77 TIMEOUT 600)
  if(MOEC_SANITIZE) # the runtime is instrumented: so must the programs linking it be
    set_tests_properties(examples_${check} PROPERTIES ENVIRONMENT "EXAMPLE_CFLAGS=-fsanitize=address,undefined")
  endif()
endforeach()
# Memory budgets (OUT --memory MB): with the smallest budget (experts evicted every step) ids and
# logits are byte-identical to the unbounded run, embedded and sidecar, on three families and two
# quantised GGUF goldens; refusals; --stats. tests/e2e/memory_checks.sh.
foreach(case ${MOEC_GOLDEN_CASES})
  get_filename_component(name ${case} NAME)
  if(name MATCHES "^(mixtral_tiny_bf16|qwen2_moe_tiny_bf16|qwen3_moe_tiny_bf16|gguf_mixtral_k_small_q4_k_m|gguf_qwen2_moe_q4_0)$")
    add_test(NAME memory_identical_${name}
             COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/memory_checks.sh $<TARGET_FILE:moec>
                     ${CMAKE_CURRENT_BINARY_DIR}/tmp/memory_${name} identical ${case}/model)
    set_tests_properties(memory_identical_${name} PROPERTIES LABELS e2e SKIP_RETURN_CODE 77 TIMEOUT 600)
  endif()
endforeach()
add_test(NAME memory_errors
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/memory_checks.sh $<TARGET_FILE:moec>
                 ${CMAKE_CURRENT_BINARY_DIR}/tmp/memory_errors errors)
set_tests_properties(memory_errors PROPERTIES LABELS e2e TIMEOUT 600)
