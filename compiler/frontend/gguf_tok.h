/* gguf_tok: the tokenizer a GGUF file describes (its tokenizer.ggml.* metadata) as the runtime
 * tokenizer blob. The metadata is turned into the tokenizer.json Hugging Face has for that family,
 * built in memory, and goes through tokjson_load_json: the same checks and serialisation as a
 * tokenizer.json file. Exact or refused: whatever the runtime cannot reproduce exactly is one
 * diag_error naming the file and the key (and the value).
 *   gpt2   byte-level BPE: the tokens (UNUSED ones are holes), tokenizer.ggml.merges, the
 *          pre-tokenizer that tokenizer.ggml.pre names (qwen2: NFC + the Qwen2 split;
 *          llama-bpe / llama3 / llama-v3: the Llama-3 split with ignore_merges), ByteLevel decoding.
 *   llama  SentencePiece-style BPE with byte fallback (Mixtral, Llama-2): the file has scores, not
 *          merges; the merges are every split of a token into two tokens, ranked by the token's
 *          score as HF's SentencePiece converter ranks them. That equals llama.cpp's rule (merge the
 *          adjacent pair whose concatenation scores highest, leftmost first) when the tokens made by
 *          merges have distinct scores; ties are refused. Normaliser Prepend("▁") + Replace(" ",
 *          "▁"), decoder Replace("▁", " "), ByteFallback, Fuse, Strip.
 * CONTROL, UNKNOWN and USER_DEFINED tokens become added tokens (special unless USER_DEFINED), as
 * llama.cpp treats them (a tokenizer.json may mark a CONTROL token such as Qwen's <|fim_prefix|>
 * non-special; the file does not say so, and only decode with skip_special sees it);
 * tokenizer.ggml.add_bos_token / add_eos_token make the post-processor (llama.cpp's defaults when
 * absent). Refused: other tokenizer models (bert, t5, rwkv, ...), other pre-tokenizers (gpt2 with
 * default = llama.cpp's own four-regex split, or olmo = GPT-2's regex: the runtime implements
 * neither), precompiled_charsmap, remove_extra_whitespaces; for llama, a vocabulary without the 256
 * byte tokens, tied scores among tokens made by merges, and a token that joins a character which is
 * not itself a token (llama.cpp would merge it; a BPE cannot). */
#ifndef MOEC_GGUF_TOK_H
#define MOEC_GGUF_TOK_H
#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "diag.h"
#include "gguf.h"

/* The blob (runtime/tokenizer.h) of g's tokenizer, allocated in a; false after diag_error. */
bool gguf_tokenizer_blob(const GgufFile *g, Arena *a, Diag *d, void **blob, size_t *len);

/* gguf_model_path(path) when path is a GGUF model: opens it and builds its tokenizer blob (false
 * after diag_error); *is_gguf false (and true returned) when path is no GGUF model. For the
 * commands that take a model path (run, compile, tokenize). */
bool gguf_tokenizer_load(Arena *a, Diag *d, const char *path, bool *is_gguf, void **blob, size_t *len);

#endif
