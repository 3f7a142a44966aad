/* tokjson: Hugging Face tokenizer.json -> the runtime tokenizer blob (runtime/tokenizer.h).
 * Reads tokenizer.json (and tokenizer_config.json beside it, for bos/eos), checks that every
 * component is one the runtime implements exactly, and serialises it. Each unsupported feature
 * (WordPiece, Unigram, Metaspace, an unknown split regex, ...) is one diag_error naming it.
 * Other readers (frontend/gguf_tok.c) build a tokenizer.json tree in memory and pass it to
 * tokjson_load_json, so every tokenizer goes through the same checks.
 * Also writes a small synthetic mistral-style tokenizer.json for `moec synth`. */
#ifndef MOEC_TOKJSON_H
#define MOEC_TOKJSON_H
#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "diag.h"

/* The smallest vocabulary tokjson_write_synthetic accepts: <unk> <s> </s>, 256 byte tokens and
 * "▁" (without it a space would decode as "▁": HF replaces "▁" before ByteFallback). */
#define TOKJSON_SYNTH_MIN_VOCAB 260

struct cJSON;

/* The two split regexes the runtime implements (pre_tokenizer Split, Isolated), exactly as the
 * tokenizer.json files spell them: Qwen2/Qwen3 (one digit per piece) and Llama-3 (up to three). */
extern const char tokjson_qwen2_split[];
extern const char tokjson_llama3_split[];

/* Loads path (a tokenizer.json, or a folder holding one; bos/eos from tokenizer_config.json
 * beside it) into a blob allocated in a; false after diag_error (the file is named in every
 * message). */
bool tokjson_load(Arena *a, Diag *d, const char *path, void **blob, size_t *blob_len);
/* The same from a parsed tokenizer.json tree (root) and an optional parsed tokenizer_config.json
 * (config, NULL for none; its bos_token/eos_token name bos/eos). name and config_name label the
 * messages. Neither tree is modified; the blob is allocated in a. False after diag_error. */
bool tokjson_load_json(Arena *a, Diag *d, const char *name, const struct cJSON *root, const char *config_name,
                       const struct cJSON *config, void **blob, size_t *blob_len);

/* Writes a valid mistral-style tokenizer.json with exactly vocab_size ids (>= 260) to path,
 * through a temporary name and a rename; false after diag_error. */
bool tokjson_write_synthetic(Diag *d, const char *path, int vocab_size);

/* A ~5 KB English paragraph (NUL-terminated, static): tokbench's default input and the
 * synthetic tokenizer's training text. */
const char *tokjson_sample_text(void);

#endif
