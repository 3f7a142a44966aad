/* tokenizer: Hugging Face tokenizer.json semantics (BPE) at run time, in plain C11 + libc.
 * The compiler (compiler/frontend/tokjson.c) validates a tokenizer.json and serialises it into the blob
 * described below; moe_tok_load builds a MoeTokenizer from that blob (it copies what it keeps, so
 * the blob may be freed afterwards). A MoeTokenizer is read-only after loading: encode/decode may
 * run on several threads at once; a MoeTokStream belongs to one thread. Every moe_tok_* output
 * buffer is malloc'd and owned by the caller unless the contract says "borrowed".
 *
 * Pipelines (exactly as HF tokenizers 0.23 runs them):
 *   encode: added tokens matched on the raw text (leftmost, then longest) -> per segment between
 *           them: normalizer steps (NFC | Prepend | Replace) -> pre-tokenizer (none | the
 *           Qwen2/Llama-3 split regex, hand-coded) -> optional ByteLevel byte->char mapping ->
 *           BPE (priority queue over a linked list of symbols; byte fallback / unk) -> with
 *           add_special, the post-processor's prefix and suffix ids.
 *   decode: id -> token string (added tokens included) -> decoder: ByteLevel (bytes, then lossy
 *           UTF-8) or "pieces" (Replace* -> ByteFallback -> Fuse -> Strip(start)).
 * Invalid UTF-8 passed to encode is first replaced by U+FFFD (maximal-subpart rule).
 *
 * Blob format v1. Integers are little-endian; u32/i32 are 4 bytes, u8 one byte;
 * str = u32 byte length + that many bytes of UTF-8 (no NUL). Sections in this order:
 *   magic     8 bytes "MOETOK01"
 *   u32       version (= 1)
 *   u32       n_vocab: ids are 0 .. n_vocab-1 (model vocab and added tokens together)
 *   u32       model flags: 1 byte_fallback, 2 fuse_unk, 4 ignore_merges
 *   i32 x3    unk_id, bos_id, eos_id (-1: none)
 *   u32       n_norm, then n_norm steps: u32 kind (1 NFC, 2 Prepend, 3 Replace),
 *             kind 2: str prepend; kind 3: str pattern (non-empty), str content
 *   u32       pre-tokenizer: 0 none (a segment is one piece), 1 the Qwen2 / Llama-3 split regex
 *   u32       max digits per \p{N} piece for kind 1 (1 Qwen2/3, 3 Llama-3); 0 for kind 0
 *   u32       byte_level: 1 = map each piece's bytes to GPT-2's printable characters before BPE
 *   u32       n_prefix, i32 ids[n_prefix]: ids put before the text when add_special
 *   u32       n_suffix, i32 ids[n_suffix]: ids put after the text when add_special
 *   u32       decoder: 1 ByteLevel, 2 pieces; for 2 only:
 *             u32 n_replace, then n_replace x (str pattern (non-empty), str content);
 *             u32 byte_fallback (0/1); u32 strip_start; str strip_content (one character or empty)
 *   n_vocab x (u8 flags, str token): flags 1 present (else a hole: the id decodes to nothing),
 *             2 in the BPE model vocab, 4 added token (matched on the raw text), 8 special
 *   u32       n_merges, then n_merges x (i32 left, i32 right, i32 result); rank = index; result's
 *             string is left's followed by right's; a later duplicate pair overrides an earlier one
 *   (end of blob: nothing may follow) */
#ifndef MOE_TOKENIZER_H
#define MOE_TOKENIZER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MOE_TOK_MAGIC "MOETOK01"
#define MOE_TOK_VERSION 1

enum {
    MOE_TOK_OK = 0,
    MOE_TOK_ENOMEM = -1, /* an allocation failed; outputs untouched */
    MOE_TOK_EINVAL = -2, /* a NULL argument where one is required */
};

/* Blob constants shared with compiler/frontend/tokjson.c. */
enum { MOE_TOK_MODEL_BYTE_FALLBACK = 1, MOE_TOK_MODEL_FUSE_UNK = 2, MOE_TOK_MODEL_IGNORE_MERGES = 4 };
enum { MOE_TOK_NORM_NFC = 1, MOE_TOK_NORM_PREPEND = 2, MOE_TOK_NORM_REPLACE = 3 };
enum { MOE_TOK_PRE_NONE = 0, MOE_TOK_PRE_SPLIT_QWEN = 1 };
enum { MOE_TOK_DEC_BYTE_LEVEL = 1, MOE_TOK_DEC_PIECES = 2 };
enum { MOE_TOK_F_PRESENT = 1, MOE_TOK_F_MODEL = 2, MOE_TOK_F_ADDED = 4, MOE_TOK_F_SPECIAL = 8 };

typedef struct MoeTokenizer MoeTokenizer;
typedef struct MoeTokStream MoeTokStream;

/* Builds a tokenizer from a blob; NULL with a one-line reason in err (if errlen > 0) when the
 * blob is corrupt or memory runs out. Never reads outside [blob, blob+len). */
MoeTokenizer *moe_tok_load(const void *blob, size_t len, char *err, size_t errlen);
/* Frees t and everything it owns; t may be NULL. */
void moe_tok_free(MoeTokenizer *t);

/* Encodes len bytes of text (NULs allowed; len < 512 MiB, else MOE_TOK_EINVAL); *ids is malloc'd
 * (caller frees; non-NULL even when *n_ids is 0). add_special adds the post-processor's ids.
 * Returns MOE_TOK_OK or an error code. */
int moe_tok_encode(const MoeTokenizer *t, const char *text, size_t len, bool add_special, int32_t **ids, size_t *n_ids);
/* Decodes n ids into *out (malloc'd, NUL-terminated, valid UTF-8; *out_len excludes the NUL).
 * Ids outside the vocabulary are skipped, as HF does; skip_special drops special added tokens. */
int moe_tok_decode(const MoeTokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **out, size_t *out_len);

/* Number of ids (model vocab + added tokens). */
int32_t moe_tok_vocab_size(const MoeTokenizer *t);
/* BOS / EOS ids, -1 when the tokenizer has none. */
int32_t moe_tok_bos(const MoeTokenizer *t);
int32_t moe_tok_eos(const MoeTokenizer *t);
/* The string of token id (borrowed; *len set), NULL when id is outside the vocabulary. */
const char *moe_tok_token(const MoeTokenizer *t, int32_t id, size_t *len);
/* True when id is a special added token (<s>, <|im_end|>, ...). */
bool moe_tok_is_special(const MoeTokenizer *t, int32_t id);

/* A streaming decoder for generation: feed ids one at a time; each call hands back the bytes
 * that are now final. The concatenation of all feeds plus the final flush equals
 * moe_tok_decode of the same ids byte for byte (held back: an incomplete UTF-8 character, and
 * in byte-fallback tokenizers a whole run of byte tokens, which is only decidable at its end).
 * The stream borrows t, which must outlive it. NULL when out of memory. */
MoeTokStream *moe_tok_stream_new(const MoeTokenizer *t, bool skip_special);
/* Feeds one id; *out and *out_len get the newly final bytes (borrowed until the next call on s). */
int moe_tok_stream_feed(MoeTokStream *s, int32_t id, const char **out, size_t *out_len);
/* Ends the text: returns what was held back (borrowed, as above) and resets s to a fresh stream. */
int moe_tok_stream_flush(MoeTokStream *s, const char **out, size_t *out_len);
/* Frees s; s may be NULL. */
void moe_tok_stream_free(MoeTokStream *s);

#endif
