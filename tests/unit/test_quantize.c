/* frontend/quantize: --quant specs (good ones and every error), the classes and fallbacks on tiny
 * synthetic models, and `moec run --quant` against a checkpoint quantised by hand: every matrix the
 * spec names is quantised with quant_quantize_row, dequantised with the reference twin
 * (tests/ref/ref_quant.c) and written as f32 with st_write_file, with the class and fallback rules
 * spelled out again here; the two runs' logits agree within 1e-4. */
#include <stdlib.h>

#include "frontend.h"
#include "quant.h"
#include "quantize.h"
#include "ref/ref_quant.h"
#include "test.h"

static void t_spec(void) {
    QuantSpec s;
    Diag d = {.quiet = true};
    EXPECT_TRUE(quantize_spec_parse(&d, "q4_k,attn=q8_0,head=q6_k,embed=q8_0,shared=q8_0,experts=q4_k", &s));
    EXPECT_EQ(s.type[QC_EXPERTS], DT_Q4_K);
    EXPECT_EQ(s.type[QC_ATTN], DT_Q8_0);
    EXPECT_EQ(s.type[QC_HEAD], DT_Q6_K);
    EXPECT_TRUE(quantize_spec_parse(&d, "Q8_0", &s));
    for (int c = 0; c < QC_COUNT; c++) EXPECT_EQ(s.type[c], DT_Q8_0);
    EXPECT_TRUE(quantize_spec_parse(&d, "experts=q4_0", &s)); /* only one class */
    EXPECT_EQ(s.type[QC_EXPERTS], DT_Q4_0);
    EXPECT_EQ(s.type[QC_ATTN], DT_COUNT);
    EXPECT_EQ(d.n_errors, 0);
    static const struct {
        const char *spec, *msg;
    } bad[] = {
        {"q3_k", "unknown type 'q3_k'"},
        {"q4_k,mlp=q8_0", "unknown class 'mlp'"},
        {"q4_k,attn=q8_0,attn=q4_0", "class 'attn' given twice"},
        {"q4_k,q8_0", "a second default type"},
        {"q4_k,", "empty item"},
        {"attn=", "unknown type ''"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Diag e = {.quiet = true};
        EXPECT_TRUE(!quantize_spec_parse(&e, bad[i].spec, &s));
        EXPECT_EQ(e.n_errors, 1);
        EXPECT_STR_CONTAINS(e.first, bad[i].msg);
    }
}

/* The class of a tensor by its HF name, as the spec's classes are defined (-1: never quantised). */
static int class_of(const char *name, bool tied) {
    if (!strcmp(name, "model.embed_tokens.weight")) return tied ? QC_HEAD : QC_EMBED;
    if (!strcmp(name, "lm_head.weight")) return QC_HEAD;
    if (strstr(name, ".experts.")) return QC_EXPERTS;
    if (strstr(name, "self_attn.") && strstr(name, "_proj.weight")) return QC_ATTN;
    if (strstr(name, "_proj.weight")) return QC_SHARED; /* shared expert, dense MLP */
    return -1;                                          /* router, norms, biases, shared gate */
}

/* llama-quantize's rule: K types need rows of 256, else Q5_0/Q5_1/Q8_0; rows not of 32: stored. */
static DType expect_type(DType want, int64_t cols) {
    if (cols % dtype_block_elems(want) == 0) return want;
    DType f = want == DT_Q4_K ? DT_Q5_0 : want == DT_Q5_K ? DT_Q5_1 : DT_Q8_0;
    return cols % 32 == 0 ? f : DT_COUNT;
}

static bool sh(const char *fmt, const char *a, const char *b, const char *c) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, a, b, c);
    return test_run(cmd, NULL, NULL) == 0;
}

/* Writes dst/model.safetensors: every tensor of src as f32, the matrices of the classes quantised
 * to type (with fallbacks) and dequantised by the reference twin. */
static void write_expected(const char *src, const char *dst, DType type, bool tied) {
    Arena *a = arena_new();
    Diag d = {0};
    TensorTable tt = {0};
    EXPECT_TRUE(st_open_dir(&tt, a, &d, src));
    StWriteTensor *ws = calloc((size_t)tt.n, sizeof *ws);
    for (int i = 0; i < tt.n; i++) {
        const TensorInfo *t = &tt.t[i];
        int64_t n = 1, cols = t->shape[t->rank - 1];
        for (int k = 0; k < t->rank; k++) n *= t->shape[k];
        float *f = malloc(sizeof(float) * (size_t)n);
        for (int64_t j = 0; j < n; j++) f[j] = dtype_load_f32(t->dtype, t->data, (size_t)j);
        DType q = class_of(t->name, tied) >= 0 ? expect_type(type, cols) : DT_COUNT;
        if (q != DT_COUNT) {
            size_t rb = quant_row_bytes(q, cols);
            void *buf = malloc(rb);
            for (int64_t r = 0; r < n / cols; r++) {
                quant_quantize_row(q, f + r * cols, buf, cols);
                ref_dequant(q, buf, f + r * cols, cols);
            }
            free(buf);
        }
        ws[i] = (StWriteTensor){t->name, DT_F32, t->rank, {0}, f};
        memcpy(ws[i].shape, t->shape, sizeof ws[i].shape);
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/model.safetensors", dst);
    EXPECT_TRUE(st_write_file(&d, path, ws, tt.n));
    for (int i = 0; i < tt.n; i++) free((void *)ws[i].data);
    free(ws);
    st_close(&tt);
    arena_destroy(a);
}

/* moec run --quant SPEC on a synth model == moec run on the hand-quantised f32 copy. */
static void t_run(const char *tag, const char *synth_args, const char *spec, DType type, bool tied) {
    const char *tmp = test_tmpdir(tag);
    char m[900], e[900], la[900], lb[900], args[512];
    snprintf(m, sizeof m, "%s/m", tmp);
    snprintf(e, sizeof e, "%s/e", tmp);
    snprintf(la, sizeof la, "%s/a.f32", tmp);
    snprintf(lb, sizeof lb, "%s/b.f32", tmp);
    EXPECT_TRUE(sh(MOEC_BIN " synth %s %s --force >/dev/null 2>&1%s", m, synth_args, ""));
    EXPECT_TRUE(sh("mkdir -p %s && cp %s/config.json %s/", e, m, e));
    write_expected(m, e, type, tied);
    snprintf(args, sizeof args, "--tokens 3,1,4,1,5,9,2,6 -n 4 --quant %s", spec);
    EXPECT_TRUE(sh(MOEC_BIN " run %s %s --logits-out %s >/dev/null 2>&1", m, args, la));
    EXPECT_TRUE(sh(MOEC_BIN " run %s --tokens 3,1,4,1,5,9,2,6 -n 4 --logits-out %s >/dev/null 2>&1%s", e, lb, ""));
    size_t na = 0, nb = 0;
    char *A = test_read_file(la, &na), *B = test_read_file(lb, &nb);
    EXPECT_TRUE(A && B && na == nb && na > 0);
    if (A && B && na == nb) {
        double worst = 0;
        for (size_t i = 0; i < na / 4; i++) worst = fmax(worst, fabs(((float *)A)[i] - ((float *)B)[i]));
        if (worst > 1e-4) fprintf(stderr, "%s: logits differ by %g\n", tag, worst);
        EXPECT_TRUE(worst <= 1e-4);
    }
    free(A), free(B);
    if (!test_failures) sh("rm -rf %s%s%s", tmp, "", "");
}

/* Classes and fallbacks as quantize_model reports them on a qwen2_moe with a dense layer of width 40
 * (its down_proj rows of 40: not a multiple of 32, so kept as stored). */
static void t_report(void) {
    const char *tmp = test_tmpdir("quantize_report");
    char m[900];
    snprintf(m, sizeof m, "%s/m", tmp);
    EXPECT_TRUE(sh(MOEC_BIN " synth %s --arch qwen2_moe --mlp-only-layers 0 --dense-intermediate-size 40 --force "
                   ">/dev/null 2>&1%s%s", m, "", ""));
    Arena *a = arena_new();
    Diag d = {0};
    Model md;
    QuantSpec s;
    QuantReport r;
    EXPECT_TRUE(model_load(&md, a, &d, m));
    EXPECT_TRUE(quantize_spec_parse(&d, "q4_k,attn=q8_0,head=q6_k", &s));
    EXPECT_TRUE(quantize_model(&md, a, &d, &s, false, &r));
    EXPECT_EQ(r.n_mats[QC_ATTN], 8);
    EXPECT_EQ(r.n_mats[QC_EXPERTS], 3);   /* layer 1's stacks */
    EXPECT_EQ(r.n_mats[QC_SHARED], 6);    /* layer 0 dense MLP + layer 1 shared expert */
    EXPECT_EQ(r.n_mats[QC_EMBED], 1);
    EXPECT_EQ(r.n_mats[QC_HEAD], 1);
    int kept = 0, q5 = 0, q8 = 0;
    for (int i = 0; i < r.n_fallback; i++) {
        const QuantFallback *f = &r.fallback[i];
        if (!dtype_is_quant(f->got)) {
            kept++;
            EXPECT_EQ(f->cols, 40);
            EXPECT_EQ(f->got, DT_BF16);
            EXPECT_STR_CONTAINS(f->name, "model.layers.0.mlp.down_proj.weight");
        }
        q5 += f->got == DT_Q5_0;
        q8 += f->want == DT_Q6_K && f->got == DT_Q8_0; /* the head, rows of 64 */
    }
    EXPECT_EQ(kept, 1);
    EXPECT_EQ(q8, 1);
    EXPECT_EQ(q5, 3 + 5 + 1); /* experts, the other dense + shared matrices, the embedding */
    EXPECT_EQ(r.n_fallback, 1 + 1 + 9);
    for (uint32_t i = 0; i < md.g->n; i++) { /* never quantised: norms, router, shared gate */
        const Node *n = &md.g->nodes[i];
        if (n->op == OP_WEIGHT && (strstr(n->name, "norm") || strstr(n->name, "mlp.gate.") ||
                                   strstr(n->name, "shared_expert_gate")))
            EXPECT_EQ(n->dtype, DT_BF16);
    }
    model_close(&md);
    arena_destroy(a);
    if (!test_failures) sh("rm -rf %s%s%s", tmp, "", "");
}

int main(void) {
    t_spec();
    t_report();
    t_run("quantize_q8", "--arch mixtral", "q8_0", DT_Q8_0, false);
    t_run("quantize_q4k", "--arch qwen2_moe --mlp-only-layers 0 --dense-intermediate-size 40", "q4_k", DT_Q4_K,
          false);
    t_run("quantize_tied", "--arch olmoe --tied", "q6_k", DT_Q6_K, true);
    return test_done();
}
