# Bad input end to end (label error): each case is a tiny model broken by tests/tools/mkbad.c (or a
# bad argument on an intact one), run through `moec run`; tests/errors/check_error.sh asserts exit
# status 1 and exactly one stderr line matching the pattern.
add_executable(mkbad ${CMAKE_CURRENT_SOURCE_DIR}/tools/mkbad.c)
target_link_libraries(mkbad PRIVATE moec_core)

set(MOEC_ERROR_CASES
  "missing_config|config.json: cannot open"
  "malformed_json|config.json: malformed JSON"
  "unknown_model_type|key 'model_type': 'frobnicator_moe' is not supported. expected one of: mixtral"
  "missing_field|key 'hidden_size': missing"
  "topk_gt_experts|key 'num_experts_per_tok': must be <= the number of experts \\(4\\). got 5"
  "truncated_safetensors|model.safetensors: tensor '[^']+': data_offsets .* run past the end of the data section"
  "header_len_past_eof|model.safetensors: header length: runs past the end of the file"
  "offsets_oob|model.safetensors: tensor 'model.norm.weight': data_offsets .* run past the end of the data section"
  "unsupported_dtype|tensor 'model.norm.weight': dtype not supported. expected BF16, F16 or F32, got I64"
  "wrong_shape|tensor 'model.layers.0.self_attn.k_proj.weight': wrong shape. expected \\[32, 64\\], got \\[64, 32\\]"
  "missing_tensor|tensor 'model.layers.1.block_sparse_moe.experts.2.w3.weight': missing"
  "huge_hidden|config.json: key 'hidden_size': must be <= 262144. got 1000000000000"
  "huge_layers|config.json: key 'num_hidden_layers': must be <= 4096. got 100000000000"
  "huge_model|config.json: the sizes describe a model of more than 1.76e\\+13 parameters"
  "index_missing_shard|model.safetensors.index.json: shard 'model-00002-of-00002.safetensors' \\(for tensor '[^']+'\\): no such file")
foreach(entry ${MOEC_ERROR_CASES})
  string(FIND "${entry}" "|" bar)
  string(SUBSTRING "${entry}" 0 ${bar} name)
  math(EXPR start "${bar} + 1")
  string(SUBSTRING "${entry}" ${start} -1 regex)
  add_test(NAME error_${name}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/errors/check_error.sh $<TARGET_FILE:moec> $<TARGET_FILE:mkbad>
                   ${name} "${regex}" ${CMAKE_CURRENT_BINARY_DIR}/tmp/error_${name})
  set_tests_properties(error_${name} PROPERTIES LABELS error TIMEOUT 120)
endforeach()

# bad arguments on an intact model
add_test(NAME error_token_id_ge_vocab
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/errors/check_error.sh $<TARGET_FILE:moec> $<TARGET_FILE:mkbad> good
                 "--tokens: token id 384 at position 1: must be < vocab_size \\(384\\)"
                 ${CMAKE_CURRENT_BINARY_DIR}/tmp/error_token_id --tokens 1,384,2 -n 2)
add_test(NAME error_prompt_too_long
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/errors/check_error.sh $<TARGET_FILE:moec> $<TARGET_FILE:mkbad> good
                 "expected at most max_position_embeddings \\(256\\)"
                 ${CMAKE_CURRENT_BINARY_DIR}/tmp/error_prompt_long --tokens 1,2,3 -n 300)
set_tests_properties(error_token_id_ge_vocab error_prompt_too_long PROPERTIES LABELS error TIMEOUT 120)
