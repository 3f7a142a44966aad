/* test_gguf_model: GGUF files as models (compiler/frontend/gguf_model.c, gguf_export.c).
 * (a) moec's own export of the HF golden mixtral_tiny_bf16 holds, tensor by tensor, the values
 *     llama.cpp's converter wrote into goldens/gguf/gguf_mixtral_f32 (the same checkpoint at f32):
 *     same names, shapes and values, so the layout — ggml dimension order, stacked experts, the
 *     llama q/k row permutation — is the converter's, and the metadata keys both write agree;
 * (b) reading that file back gives the HF tensors of the folder, byte for byte (norms, the router
 *     and other tensors llama.cpp's converter keeps in f32: value for value, widened to f32); and so
 *     does the same file with each layer's gate and up experts merged into one ffn_gate_up_exps tensor;
 * (c) metadata moec cannot honour is refused with one error naming the GGUF key: an unknown
 *     architecture, per-layer KV head counts, a sigmoid gating function, logit soft-capping,
 *     partial RoPE, a sliding window on qwen, a missing embedding length. */
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "gguf_model.h"
#include "test.h"

/* y, read back from the export, holds x: the same bytes, or x's values widened to f32. */
static bool same_tensor(const TensorInfo *x, const TensorInfo *y) {
    if (!y || y->rank != x->rank || memcmp(y->shape, x->shape, sizeof x->shape)) return false;
    if (y->dtype == x->dtype) return y->nbytes == x->nbytes && !memcmp(y->data, x->data, x->nbytes);
    if (y->dtype != DT_F32 || (x->dtype != DT_BF16 && x->dtype != DT_F16) || y->nbytes != x->nbytes * 2) return false;
    for (size_t j = 0; j < x->nbytes / 2; j++)
        if (dtype_load_f32(x->dtype, x->data, j) != dtype_load_f32(y->dtype, y->data, j)) return false;
    return true;
}

static void export_matches_llama_cpp(const char *shared) {
    char hf[4200], ref[4200], out[4200];
    snprintf(hf, sizeof hf, "%s/goldens/mixtral_tiny_bf16/model", shared);
    snprintf(ref, sizeof ref, "%s/goldens/gguf/gguf_mixtral_f32/model/model-F32.gguf", shared);
    snprintf(out, sizeof out, "%s/mixtral_tiny.gguf", test_tmpdir("gguf_model"));
    Arena *a = arena_new();
    Diag d = {0};
    Model m;
    EXPECT_TRUE(model_load(&m, a, &d, hf));
    EXPECT_TRUE(gguf_export(&m, a, &d, out));
    GgufFile mine, theirs;
    EXPECT_TRUE(gguf_open(&mine, a, &d, out));
    EXPECT_TRUE(gguf_open(&theirs, a, &d, ref));
    EXPECT_EQ(mine.n_tensors, theirs.n_tensors);
    int compared = 0;
    for (int i = 0; i < theirs.n_tensors; i++) {
        const GgufTensor *t = &theirs.t[i], *u = gguf_find(&mine, t->ti.name);
        if (!u) {
            test_check(false, __FILE__, __LINE__, "tensor present in moec's export", t->ti.name, "missing");
            continue;
        }
        EXPECT_EQ(u->ti.rank, t->ti.rank);
        for (int k = 0; k < t->ti.rank; k++) EXPECT_EQ(u->ne[k], t->ne[k]);
        size_t n = 1, bad = 0;
        for (int k = 0; k < t->ti.rank; k++) n *= (size_t)t->ne[k];
        for (size_t j = 0; j < n; j++) bad += dtype_load_f32(u->ti.dtype, u->ti.data, j) != dtype_load_f32(t->ti.dtype, t->ti.data, j);
        if (bad) test_check(false, __FILE__, __LINE__, "values equal to llama.cpp's", t->ti.name, "differ");
        compared++;
    }
    EXPECT_EQ(compared, 23);
    /* every key both files have agrees (general.* aside, and tokenizer.ggml.model: theirs has a
     * tokenizer, moec writes llama.cpp's no-vocab marker) */
    int keys = 0;
    for (int i = 0; i < mine.n_kv; i++) {
        const GgufKv *k = &mine.kv[i], *r = gguf_kv_find(&theirs, k->key);
        if (!r || !strncmp(k->key, "general.", 8) || !strcmp(k->key, "tokenizer.ggml.model")) continue;
        char a1[256], a2[256];
        gguf_kv_format(k, a1, sizeof a1);
        gguf_kv_format(r, a2, sizeof a2);
        test_check(!strcmp(a1, a2), __FILE__, __LINE__, k->key, a2, a1);
        keys++;
    }
    EXPECT_TRUE(keys >= 12);
    /* (b) read back: the HF tensors, byte for byte */
    Model back;
    Diag d2 = {0};
    EXPECT_TRUE(model_load(&back, a, &d2, out));
    EXPECT_EQ(back.tt.n, m.tt.n);
    for (int i = 0; i < m.tt.n && i < back.tt.n; i++) {
        const TensorInfo *x = &m.tt.t[i], *y = st_find(&back.tt, x->name);
        EXPECT_TRUE(same_tensor(x, y));
    }
    model_close(&back);
    /* the merged layout: blk.N.ffn_gate_up_exps [E, 2 I, H], each expert's gate rows then up rows */
    StWriteTensor *ts = arena_alloc(a, sizeof *ts * (size_t)mine.n_tensors);
    int nt = 0;
    for (int i = 0; i < mine.n_tensors; i++) {
        const TensorInfo *ti = &mine.t[i].ti;
        if (strstr(ti->name, "ffn_up_exps")) continue;
        StWriteTensor *t = &ts[nt++];
        *t = (StWriteTensor){ti->name, ti->dtype, ti->rank, {ti->shape[0], ti->shape[1], ti->shape[2]}, ti->data};
        if (!strstr(ti->name, "ffn_gate_exps")) continue;
        char up_name[96];
        snprintf(up_name, sizeof up_name, "%.*sffn_up_exps.weight", (int)(strstr(ti->name, "ffn_gate_exps") - ti->name),
                 ti->name);
        const GgufTensor *up = gguf_find(&mine, up_name);
        EXPECT_TRUE(up != NULL);
        if (!up) continue;
        size_t slab = ti->nbytes / (size_t)ti->shape[0];
        char *merged = arena_alloc(a, 2 * ti->nbytes);
        for (int64_t e = 0; e < ti->shape[0]; e++) {
            memcpy(merged + (size_t)(2 * e) * slab, (const char *)ti->data + (size_t)e * slab, slab);
            memcpy(merged + (size_t)(2 * e + 1) * slab, (const char *)up->ti.data + (size_t)e * slab, slab);
        }
        t->name = arena_printf(a, "%.*sffn_gate_up_exps.weight", (int)(strstr(ti->name, "ffn_gate_exps") - ti->name),
                               ti->name);
        t->shape[1] *= 2;
        t->data = merged;
    }
    char merged_path[4300];
    snprintf(merged_path, sizeof merged_path, "%s.merged.gguf", out);
    EXPECT_TRUE(gguf_write_file(&d, merged_path, mine.kv, mine.n_kv, ts, nt, 32));
    Model mg;
    Diag d3 = {0};
    EXPECT_TRUE(model_load(&mg, a, &d3, merged_path));
    EXPECT_EQ(mg.tt.n, m.tt.n);
    for (int i = 0; i < m.tt.n && i < mg.tt.n; i++) {
        const TensorInfo *x = &m.tt.t[i], *y = st_find(&mg.tt, x->name);
        EXPECT_TRUE(same_tensor(x, y));
    }
    model_close(&mg);
    gguf_close(&mine);
    gguf_close(&theirs);
    model_close(&m);
    arena_destroy(a);
}

/* A small llama (Mixtral) GGUF with one metadata key replaced (or added), read as a model. */
static void expect_refused(const char *key, GgufKv value, const char *want) {
    static const float norm[64], embd[8 * 64];
    GgufKv kvs[16];
    int n = 0;
    kvs[n++] = gguf_kv_str("general.architecture", "llama");
    kvs[n++] = gguf_kv_u32("llama.embedding_length", 64);
    kvs[n++] = gguf_kv_u32("llama.block_count", 1);
    kvs[n++] = gguf_kv_u32("llama.attention.head_count", 4);
    kvs[n++] = gguf_kv_u32("llama.attention.head_count_kv", 2);
    kvs[n++] = gguf_kv_u32("llama.feed_forward_length", 32);
    kvs[n++] = gguf_kv_u32("llama.expert_count", 4);
    kvs[n++] = gguf_kv_u32("llama.expert_used_count", 2);
    kvs[n++] = gguf_kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    bool replaced = false;
    for (int i = 0; i < n; i++)
        if (!strcmp(kvs[i].key, key)) kvs[i] = value, replaced = true;
    if (!replaced) kvs[n++] = value;
    StWriteTensor ts[] = {{"token_embd.weight", DT_F32, 2, {8, 64}, embd}, {"output_norm.weight", DT_F32, 1, {64}, norm}};
    char path[4200];
    snprintf(path, sizeof path, "%s/bad.gguf", test_tmpdir("gguf_model_bad"));
    Diag d = {.quiet = true};
    Arena *a = arena_new();
    EXPECT_TRUE(gguf_write_file(&d, path, kvs, n, ts, 2, 32));
    Model m;
    EXPECT_TRUE(!model_load_config(&m, a, &d, path));
    EXPECT_EQ(d.n_errors, 1);
    EXPECT_STR_CONTAINS(d.first, want);
    model_close(&m);
    arena_destroy(a);
}

int main(void) {
    static const uint32_t kv_heads[] = {2, 4};
    expect_refused("general.architecture", gguf_kv_str("general.architecture", "deepseek2"),
                   "'general.architecture': 'deepseek2' is not supported");
    expect_refused("llama.attention.head_count_kv", gguf_kv_arr("llama.attention.head_count_kv", GGUF_U32, 2, kv_heads),
                   "llama.attention.head_count_kv': per-layer values");
    expect_refused("llama.expert_gating_func", gguf_kv_u32("llama.expert_gating_func", 2), "llama.expert_gating_func");
    expect_refused("llama.final_logit_softcapping", gguf_kv_f32("llama.final_logit_softcapping", 30),
                   "final logit soft-capping");
    expect_refused("llama.rope.dimension_count", gguf_kv_u32("llama.rope.dimension_count", 8), "partial rotary");
    expect_refused("llama.embedding_length", gguf_kv_u32("llama.vocab_size", 8), "'llama.embedding_length': missing");
    expect_refused("llama.embedding_length", gguf_kv_u32("llama.embedding_length", 1u << 30),
                   "'llama.embedding_length': must be <= 262144");
    expect_refused("llama.expert_count", gguf_kv_u32("llama.expert_count", 0), "must be > 0");
    expect_refused("llama.expert_weights_norm", gguf_kv_bool("llama.expert_weights_norm", false), "renormalises");
    const char *shared = MOEC_SHARED_DIR;
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/goldens/gguf/gguf_mixtral_f32/model/model-F32.gguf", shared);
    FILE *f = fopen(probe, "rb");
    if (f) {
        fclose(f);
        export_matches_llama_cpp(shared);
    } else {
        printf("%s absent: the comparison with llama.cpp's converter is skipped\n", probe);
    }
    return test_done();
}
