/* mkbad: writes the tiny Mixtral checkpoint (synth_write_model, seed 1) to OUT_DIR, then breaks
 * it one way, for the end-to-end error tests (tests/errors/check_error.sh runs moec on it and
 * expects exit status 1 and exactly one stderr line matching the case's pattern).
 *
 *   mkbad CASE OUT_DIR          (OUT_DIR is replaced if it holds a model; CASE "none": intact)
 *
 * CASE                   what it does                                   stderr contains (grep -E safe)
 * missing_config         deletes config.json                            config.json: cannot open
 * malformed_json         trailing comma at the end of config.json       config.json: malformed JSON
 * unknown_model_type     model_type "frobnicator_moe"                   key 'model_type': 'frobnicator_moe' is not supported
 * missing_field          drops "hidden_size"                            key 'hidden_size': missing
 * topk_gt_experts        num_experts_per_tok 5 with 4 experts           key 'num_experts_per_tok': must be <= the number of experts
 * truncated_safetensors  cuts off the second half of lm_head.weight     model.safetensors: tensor 'lm_head.weight': data_offsets .* run past the end of the data section
 * header_len_past_eof    header length := file size                     model.safetensors: header length: runs past the end of the file
 * offsets_oob            model.norm.weight's data_offsets moved past    model.safetensors: tensor 'model.norm.weight': data_offsets .* run past the end of the data section
 *                        the data section (same length)
 * unsupported_dtype      model.norm.weight BF16 [64] -> I64 [16]        model.safetensors: tensor 'model.norm.weight': dtype not supported; expected BF16, F16 or F32, got I64
 *                        (same byte size)
 * wrong_shape            layer 0 k_proj stored transposed [64, 32]      tensor 'model.layers.0.self_attn.k_proj.weight': wrong shape; expected \[32, 64\], got \[64, 32\]
 *                        (q_proj is square, [64, 64], in the tiny
 *                        preset, so transposing it changes nothing)
 * missing_tensor         drops layer 1 expert 2's w3 (file rewritten)   tensor 'model.layers.1.block_sparse_moe.experts.2.w3.weight': missing
 * index_missing_shard    2 shards + index; deletes the second shard     model.safetensors.index.json: shard 'model-00002-of-00002.safetensors' \(for tensor '[^']+'\): no such file
 * huge_hidden            hidden_size 1e12                               key 'hidden_size': must be <= 262144
 * huge_layers            num_hidden_layers 1e11                         key 'num_hidden_layers': must be <= 4096
 * huge_model             each size plausible, their product 2^53 params the sizes describe a model of more than
 *
 * Exit status: 0 written, 1 failure (message on stderr), 2 usage / unknown case. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "synth.h"

static const char *const cases[] = {
    "none", "missing_config", "malformed_json", "unknown_model_type", "missing_field", "topk_gt_experts",
    "truncated_safetensors", "header_len_past_eof", "offsets_oob", "unsupported_dtype", "wrong_shape",
    "missing_tensor", "index_missing_shard", "huge_hidden", "huge_layers", "huge_model",
};

static char *path_of(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = xmalloc((size_t)n + 1);
    size_t got = fread(p, 1, (size_t)n, f);
    fclose(f);
    p[got] = 0;
    *len = got;
    return p;
}

static bool write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(p, 1, n, f) == n;
    if (f && fclose(f) != 0) ok = false;
    if (!ok) fprintf(stderr, "mkbad: cannot write %s\n", path);
    return ok;
}

/* ---------------------------------------------------------------- config.json edits */

typedef enum ConfigEdit { SET_MODEL_TYPE, DROP_HIDDEN_SIZE, SET_TOPK_5, HUGE_HIDDEN, HUGE_LAYERS, HUGE_MODEL } ConfigEdit;

static void set_num(cJSON *j, const char *key, double v) { cJSON_ReplaceItemInObject(j, key, cJSON_CreateNumber(v)); }

static bool edit_config(const char *dir, ConfigEdit e) {
    char *path = path_of(dir, "config.json");
    size_t len;
    char *text = read_all(path, &len);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    bool ok = false;
    if (j) {
        if (e == SET_MODEL_TYPE) cJSON_ReplaceItemInObject(j, "model_type", cJSON_CreateString("frobnicator_moe"));
        if (e == DROP_HIDDEN_SIZE) cJSON_DeleteItemFromObject(j, "hidden_size");
        if (e == SET_TOPK_5) set_num(j, "num_experts_per_tok", 5);
        if (e == HUGE_HIDDEN) set_num(j, "hidden_size", 1e12);
        if (e == HUGE_LAYERS) set_num(j, "num_hidden_layers", 1e11);
        if (e == HUGE_MODEL) { /* every size plausible on its own; their product is not */
            set_num(j, "hidden_size", 65536);
            set_num(j, "num_attention_heads", 64);
            set_num(j, "num_key_value_heads", 8);
            set_num(j, "intermediate_size", 262144);
            set_num(j, "num_local_experts", 16384);
            set_num(j, "num_hidden_layers", 4096);
        }
        char *out = cJSON_Print(j);
        ok = write_all(path, out, strlen(out));
        cJSON_free(out);
        cJSON_Delete(j);
    }
    free(path);
    return ok;
}

/* {"a": 1, ..., "z": "x"\n} -> {"a": 1, ..., "z": "x", : a trailing comma and no closing brace. */
static bool break_json(const char *dir) {
    char *path = path_of(dir, "config.json");
    size_t len;
    char *text = read_all(path, &len);
    char *brace = text ? strrchr(text, '}') : NULL;
    bool ok = false;
    if (brace) {
        size_t n = (size_t)(brace - text);
        while (n && (text[n - 1] == '\n' || text[n - 1] == ' ' || text[n - 1] == '\t')) n--;
        memcpy(text + n, ",\n", 3);
        ok = write_all(path, text, n + 2);
    }
    free(text);
    free(path);
    return ok;
}

/* ---------------------------------------------------------------- raw safetensors header edits */

typedef enum HeaderEdit { OFFSETS_PAST_END, DTYPE_I64 } HeaderEdit;

/* Rewrites model.safetensors's JSON header (data section unchanged) with one entry edited. */
static bool edit_header(const char *dir, HeaderEdit e) {
    char *path = path_of(dir, "model.safetensors");
    size_t len;
    unsigned char *raw = (unsigned char *)read_all(path, &len);
    bool ok = false;
    if (!raw || len < 8) goto out;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | raw[i];
    if (hl > len - 8) goto out;
    cJSON *h = cJSON_ParseWithLength((const char *)raw + 8, hl);
    cJSON *t = cJSON_GetObjectItem(h, "model.norm.weight");
    if (!t) {
        cJSON_Delete(h);
        goto out;
    }
    size_t data = len - 8 - hl;
    if (e == OFFSETS_PAST_END) { /* same length, moved one data section further */
        cJSON *off = cJSON_GetObjectItem(t, "data_offsets");
        double b = cJSON_GetArrayItem(off, 0)->valuedouble, en = cJSON_GetArrayItem(off, 1)->valuedouble;
        cJSON_ReplaceItemInArray(off, 0, cJSON_CreateNumber(b + (double)data));
        cJSON_ReplaceItemInArray(off, 1, cJSON_CreateNumber(en + (double)data));
    } else { /* BF16 [64] (128 bytes) -> I64 [16] (128 bytes) */
        cJSON_ReplaceItemInObject(t, "dtype", cJSON_CreateString("I64"));
        double n = cJSON_GetArrayItem(cJSON_GetObjectItem(t, "shape"), 0)->valuedouble;
        cJSON *shape = cJSON_CreateArray();
        cJSON_AddItemToArray(shape, cJSON_CreateNumber(n * 2 / 8));
        cJSON_ReplaceItemInObject(t, "shape", shape);
    }
    char *text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t tl = strlen(text), padded = (tl + 7) / 8 * 8;
    unsigned char *out = xmalloc(8 + padded + data);
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(out + 8, text, tl);
    memset(out + 8 + tl, ' ', padded - tl);
    memcpy(out + 8 + padded, raw + 8 + hl, data);
    cJSON_free(text);
    ok = write_all(path, out, 8 + padded + data);
    free(out);
out:
    if (!ok) fprintf(stderr, "mkbad: cannot edit the header of %s\n", path);
    free(raw);
    free(path);
    return ok;
}

/* Header length := the file size, which runs past the end of the file. */
static bool header_past_eof(const char *dir) {
    char *path = path_of(dir, "model.safetensors");
    struct stat st;
    FILE *f = stat(path, &st) == 0 ? fopen(path, "r+b") : NULL;
    bool ok = false;
    if (f) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)st.st_size >> (8 * i));
        ok = fwrite(len8, 1, 8, f) == 8;
        ok = fclose(f) == 0 && ok;
    }
    free(path);
    return ok;
}

/* ---------------------------------------------------------------- rewrites through the table */

typedef enum TableEdit { TRANSPOSE_K_PROJ, DROP_EXPERT, CUT_LM_HEAD } TableEdit;

static bool edit_table(const char *dir, TableEdit e) {
    static const char k_proj[] = "model.layers.0.self_attn.k_proj.weight";
    static const char dropped[] = "model.layers.1.block_sparse_moe.experts.2.w3.weight";
    Diag d = {0};
    Arena *a = arena_new();
    TensorTable tt = {0};
    char *path = path_of(dir, "model.safetensors");
    bool ok = st_open_file(&tt, a, &d, path);
    if (ok && e == CUT_LM_HEAD) {
        const TensorInfo *t = st_find(&tt, "lm_head.weight");
        const StShard *s = &tt.shards[0];
        /* lm_head is the last tensor synth writes: cut its second half off the end of the file */
        ok = t && (const char *)t->data + t->nbytes == (const char *)s->map + s->size &&
             truncate(path, (off_t)(s->size - t->nbytes / 2)) == 0;
    } else if (ok) {
        StWriteTensor *ws = xcalloc((size_t)tt.n, sizeof *ws);
        int n = 0;
        for (int i = 0; i < tt.n; i++) {
            const TensorInfo *t = &tt.t[i];
            if (e == DROP_EXPERT && !strcmp(t->name, dropped)) continue;
            StWriteTensor *w = &ws[n++];
            *w = (StWriteTensor){.name = t->name, .dtype = t->dtype, .rank = t->rank, .data = t->data};
            memcpy(w->shape, t->shape, sizeof w->shape);
            if (e == TRANSPOSE_K_PROJ && !strcmp(t->name, k_proj)) w->shape[0] = t->shape[1], w->shape[1] = t->shape[0];
        }
        ok = n < tt.n || e == TRANSPOSE_K_PROJ ? st_write_file(&d, path, ws, n) : false;
        free(ws);
    }
    if (!ok) fprintf(stderr, "mkbad: cannot rewrite %s\n", path);
    st_close(&tt);
    arena_destroy(a);
    free(path);
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fputs("usage: mkbad CASE OUT_DIR\ncases:", stderr);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) fprintf(stderr, " %s", cases[i]);
        fputc('\n', stderr);
        return 2;
    }
    const char *c = argv[1], *dir = argv[2];
    int k = -1;
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++)
        if (!strcmp(c, cases[i])) k = i;
    if (k < 0) {
        fprintf(stderr, "mkbad: unknown case '%s'\n", c);
        return 2;
    }
    SynthOptions o;
    synth_options_init(&o, dir, SYNTH_MIXTRAL, SYNTH_TINY);
    o.seed = 1;
    o.force = true;
    o.shards = strcmp(c, "index_missing_shard") ? 1 : 2;
    Diag d = {0};
    if (!synth_write_model(&d, &o)) return 1;

    bool ok = true;
    char *p = NULL;
    if (!strcmp(c, "missing_config")) ok = unlink(p = path_of(dir, "config.json")) == 0;
    else if (!strcmp(c, "malformed_json")) ok = break_json(dir);
    else if (!strcmp(c, "unknown_model_type")) ok = edit_config(dir, SET_MODEL_TYPE);
    else if (!strcmp(c, "missing_field")) ok = edit_config(dir, DROP_HIDDEN_SIZE);
    else if (!strcmp(c, "topk_gt_experts")) ok = edit_config(dir, SET_TOPK_5);
    else if (!strcmp(c, "huge_hidden")) ok = edit_config(dir, HUGE_HIDDEN);
    else if (!strcmp(c, "huge_layers")) ok = edit_config(dir, HUGE_LAYERS);
    else if (!strcmp(c, "huge_model")) ok = edit_config(dir, HUGE_MODEL);
    else if (!strcmp(c, "truncated_safetensors")) ok = edit_table(dir, CUT_LM_HEAD);
    else if (!strcmp(c, "header_len_past_eof")) ok = header_past_eof(dir);
    else if (!strcmp(c, "offsets_oob")) ok = edit_header(dir, OFFSETS_PAST_END);
    else if (!strcmp(c, "unsupported_dtype")) ok = edit_header(dir, DTYPE_I64);
    else if (!strcmp(c, "wrong_shape")) ok = edit_table(dir, TRANSPOSE_K_PROJ);
    else if (!strcmp(c, "missing_tensor")) ok = edit_table(dir, DROP_EXPERT);
    else if (!strcmp(c, "index_missing_shard")) ok = unlink(p = path_of(dir, "model-00002-of-00002.safetensors")) == 0;
    free(p);
    if (!ok) {
        fprintf(stderr, "mkbad: %s: could not break the model in %s\n", c, dir);
        return 1;
    }
    printf("%s: %s\n", c, dir);
    return 0;
}
