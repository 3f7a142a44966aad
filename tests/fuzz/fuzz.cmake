# Fuzz targets (label fuzz): every tests/fuzz/fuzz_<name>.c is a libFuzzer target over one parser
# of user files, with its seed corpus in tests/fuzz/corpus/<name>/. Built only when MOEC_FUZZ is
# on (clang-19, the whole build instrumented with ASan + UBSan and libFuzzer's coverage):
#   ./build.sh fuzz [SECONDS]      # every target for SECONDS (default 30) each, as CI does
# Each test runs its target for MOEC_FUZZ_SECONDS on a scratch copy of the corpus (new inputs go
# to the scratch folder; the checked-in corpus only changes by hand); a crash, leak, timeout or
# sanitizer report fails it, and libFuzzer leaves the input as crash-*/leak-*/timeout-* in WORK.
# Which target reaches which reader:
#   fuzz_config       frontend/frontend.c, hfconfig.c and every graphs/<family>.c config reader
#   fuzz_safetensors  frontend/safetensors.c (a file, or an index beside real shards)
#   fuzz_tokenizer    frontend/tokjson.c (tokenizer.json) and runtime/tokenizer.c (the blob)
#   fuzz_gguf         frontend/gguf.c, then gguf_model.c (config mapping, tensor names: through
#                     hfconfig.c's cfg_from_json and the family readers) and gguf_tok.c (through
#                     tokjson.c and the runtime tokenizer)
#   fuzz_weights      runtime/model.c's weights header, trailer and hash (moe_weights_verify)
#   fuzz_prompt       runtime/textio.c (--tokens, prompt files) and the tokenizer on them
#   fuzz_http         runtime/serve/http.c, the request heads `OUT serve` reads from the network
#   fuzz_json         runtime/serve/json.c, the request bodies `OUT serve` reads (reader, writer round trip)
#   fuzz_jinja        runtime/jinja.c: a chat template parsed, then rendered with a fixed conversation
#   fuzz_chat_template frontend/chat_template.c: tokenizer_config.json's "chat_template" (string,
#                     null or named list) and a --chat-template FILE, then the subset check
#   fuzz_server       runtime/serve/server.c's request handling without a model or a socket: a
#                     connection's bytes through http.c, the routing and every endpoint, json.c,
#                     the fields of a completion or chat request, the chat template, the tokenizer;
#                     a fake engine releases text through engine.c's stop-string scan
# frontend/gguf_export.c (moec convert) reads no file of its own: fuzz_gguf writes every model it
# accepts back through it and reopens the file written.
set(MOEC_FUZZ_SECONDS 30 CACHE STRING "Seconds each fuzz target runs under ctest")
add_custom_target(fuzz)
file(GLOB FUZZ_TARGETS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_*.c)
foreach(src ${FUZZ_TARGETS})
  get_filename_component(name ${src} NAME_WE)
  string(REPLACE "fuzz_" "" short ${name})
  add_executable(${name} ${src})
  add_dependencies(fuzz ${name})
  target_link_libraries(${name} PRIVATE moec_core)
  target_include_directories(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
  target_compile_definitions(${name} PRIVATE MOEC_SOURCE_DIR="${PROJECT_SOURCE_DIR}") # fixtures in tests/data
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  add_test(NAME fuzz_${short}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run_fuzz.sh $<TARGET_FILE:${name}>
                   ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${short} ${CMAKE_CURRENT_BINARY_DIR}/tmp/fuzz_${short}
                   ${MOEC_FUZZ_SECONDS})
  set_tests_properties(fuzz_${short} PROPERTIES LABELS fuzz TIMEOUT 3600)
endforeach()
