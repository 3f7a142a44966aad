/* fuzz_gguf: libFuzzer target for the GGUF reader (compiler/frontend/gguf.c).
 * Parses the input as one GGUF image in memory (gguf_open_buffer, the same parser gguf_open
 * uses on each mapped part) with a quiet Diag, then walks whatever it accepted: every key
 * through the formatter and the typed getters, every tensor through gguf_find and its bytes;
 * then reads it as a model as `moec run file.gguf` does (frontend/gguf_model.c: the metadata
 * through the family's config reader, the tensors renamed, sliced and unpermuted), and its
 * tokenizer.ggml.* metadata as a tokenizer (frontend/gguf_tok.c), which encodes a short text; a model
 * it accepts is written back as `moec convert` does (frontend/gguf_export.c), and the file written
 * must open again.
 * Seeds: tests/fuzz/corpus/gguf/ (small files from gguf_write_file, a truncated golden header). */
#include <stddef.h>
#include <stdint.h>

#include <stdlib.h>
#include <unistd.h>

#include "frontend.h"
#include "fuzz_util.h"
#include "gguf_model.h"
#include "gguf_tok.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Arena *a = arena_new();
    Diag d = {.quiet = true};
    GgufFile g;
    if (gguf_open_buffer(&g, a, &d, "fuzz.gguf", data, size)) {
        char buf[256];
        for (int i = 0; i < g.n_kv; i++) {
            const GgufKv *kv = &g.kv[i];
            gguf_kv_format(kv, buf, sizeof buf);
            if (gguf_kv_find(&g, kv->key) != kv) __builtin_trap();
            Diag q = {.quiet = true};
            uint32_t u32;
            int32_t i32;
            uint64_t u64;
            float f;
            bool b;
            const char *s;
            (void)gguf_get_u32(&g, &q, kv->key, &u32);
            (void)gguf_get_i32(&g, &q, kv->key, &i32);
            (void)gguf_get_u64(&g, &q, kv->key, &u64);
            (void)gguf_get_f32(&g, &q, kv->key, &f);
            (void)gguf_get_bool(&g, &q, kv->key, &b);
            (void)gguf_get_str(&g, &q, kv->key, &s);
            const GgufKv *arr = gguf_get_num_arr(&g, &q, kv->key);
            if (arr && arr->n) (void)(gguf_arr_f64(arr, arr->n - 1) + (double)gguf_arr_i64(arr, 0));
            arr = gguf_get_str_arr(&g, &q, kv->key);
            if (arr && arr->n) (void)gguf_arr_str(arr, arr->n - 1);
        }
        /* every accepted tensor's bytes lie in the input */
        uint8_t sum = 0;
        for (int i = 0; i < g.n_tensors; i++) {
            const GgufTensor *t = &g.t[i];
            if (gguf_find(&g, t->ti.name) != t) __builtin_trap();
            const uint8_t *p = t->ti.data;
            if (t->ti.nbytes && (p < data || p + t->ti.nbytes > data + size)) __builtin_trap();
            if (t->ti.nbytes) sum ^= p[0] ^ p[t->ti.nbytes - 1];
        }
        (void)sum;
        ModelConfig c;
        const Arch *arch;
        TensorTable tt;
        Diag q = {.quiet = true};
        if (gguf_model_config(&g, a, &q, &c, &arch) && gguf_model_tensors(&g, arch, &c, a, &q, &tt)) {
            Model m = {.dir = "fuzz.gguf", .arch = arch, .cfg = c, .tt = tt};
            char out[512];
            snprintf(out, sizeof out, "%s/export.gguf", fuzz_dir());
            if (gguf_export(&m, a, &q, out)) {
                GgufFile back;
                Diag r = {.quiet = true};
                if (!gguf_open(&back, a, &r, out)) __builtin_trap(); /* what export wrote must read back */
                gguf_close(&back);
            }
            unlink(out);
        }
        void *blob;
        size_t len;
        char err[256];
        MoeTokenizer *tok = gguf_tokenizer_blob(&g, a, &q, &blob, &len) ? moe_tok_load(blob, len, err, sizeof err) : NULL;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (tok && moe_tok_encode(tok, "Hello, world! caf\xc3\xa9 12", 19, true, &ids, &n_ids) == 0) free(ids);
        moe_tok_free(tok);
    } else if (d.n_errors == 0) {
        __builtin_trap(); /* a failure must say why */
    }
    gguf_close(&g);
    arena_destroy(a);
    return 0;
}
