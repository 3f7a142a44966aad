# Every case folder in ../shared/goldens (a folder with a case.json) is one test per path
# (label golden). goldens/gguf holds the GGUF cases, which have their own layout.
add_executable(golden_check ${CMAKE_CURRENT_SOURCE_DIR}/tools/golden_check.c)
target_link_libraries(golden_check PRIVATE moec_testref)
target_compile_definitions(golden_check PRIVATE MOEC_TEST_TMP="${CMAKE_CURRENT_BINARY_DIR}/tmp")

file(GLOB GOLDEN_CASES LIST_DIRECTORIES true ${MOEC_SHARED_DIR}/goldens/*)
set(MOEC_GOLDEN_NAMES "")
foreach(case ${GOLDEN_CASES})
  if(IS_DIRECTORY ${case} AND EXISTS ${case}/case.json)
    get_filename_component(name ${case} NAME)
    list(APPEND MOEC_GOLDEN_NAMES ${name})
    add_test(NAME golden_run_${name} COMMAND golden_check ${case} -- $<TARGET_FILE:moec> run {model} --threads 2)
    set_tests_properties(golden_run_${name} PROPERTIES LABELS golden SKIP_RETURN_CODE 77 TIMEOUT 300)
  endif()
endforeach()
if(NOT MOEC_GOLDEN_NAMES)
  # ../shared is absent: one test that says so and is reported as skipped.
  add_test(NAME golden_run_absent COMMAND golden_check ${MOEC_SHARED_DIR}/goldens/absent -- true)
  set_tests_properties(golden_run_absent PROPERTIES LABELS golden SKIP_RETURN_CODE 77)
endif()
