/* The compiled path on GGUF block-quantised weights (runtime/quant.h): the pack pass and the kernel
 * templates (compiled natively into this test, as in test_fused_kernels.c). Weights are made with
 * quant_quantize_row; the oracles are quant_dequant_row (and tests/ref/ref_quant.c's independent
 * dequantiser): what pack writes, read back through the layout the kernels read (kt_quant.h), must be
 * the dequantised values bit for bit; and the kernels' outputs must match tests/ref/ref_qops.c's
 * exact-mode twins (dequantised weights, double sums) within f32 rounding: NMSE <= 1e-10. Every
 * kernel runs with nth = 1, 2 and 3 and as a partial prefill chunk (PAD layout rows not real).
 * The int8 mode (KT_ACT_I8; with KT_DP_VNNI too where this CPU has AVX512-VNNI): the activation
 * quantiser is quant_act_q8 bit for bit, the int8 tile is quant_dot_int8 row by row within f32
 * rounding, and the kernels match ref_qops.c's int8 twins within QTOL_I8 (below). */
#pragma GCC diagnostic ignored "-Wpsabi" /* 64-byte vectors between static inline helpers only */
#include <stdlib.h>

#include "../../compiler/kernels/moe.c"
#include "../../compiler/kernels/norm_matmul.c"
#include "passes/passes.h"
#include "quant.h"
#include "ref/ref_ops.h"
#include "ref/ref_qops.h"
#include "ref/ref_quant.h"
#include "test.h"

static const DType all_types[] = {DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_Q8_0, DT_Q4_K, DT_Q5_K, DT_Q6_K};
enum { N_TYPES = sizeof all_types / sizeof all_types[0] };

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

/* A [R, K] tensor of block type t with random values (an offset per row, so mins matter), and its
 * dequantised values in *deq (row-major f32). */
typedef struct QTensor {
    TensorInfo ti;
    float *deq; /* [R, K] */
} QTensor;

static QTensor qtensor(DType t, int64_t R, int64_t K) {
    QTensor q;
    size_t rb = quant_row_bytes(t, K);
    float *row = malloc(sizeof(float) * (size_t)K);
    uint8_t *data = malloc(rb * (size_t)R);
    q.deq = malloc(sizeof(float) * (size_t)(R * K));
    for (int64_t r = 0; r < R; r++) {
        float off = 0.2f * frand();
        for (int64_t c = 0; c < K; c++) row[c] = off + frand() * (c % 97 == 5 ? 3.0f : 0.5f);
        quant_quantize_row(t, row, data + (size_t)r * rb, K);
        quant_dequant_row(t, data + (size_t)r * rb, q.deq + r * K, K);
        float *twin = malloc(sizeof(float) * (size_t)K); /* the independent dequantiser agrees */
        ref_dequant(t, data + (size_t)r * rb, twin, K);
        EXPECT_TRUE(memcmp(twin, q.deq + r * K, sizeof(float) * (size_t)K) == 0);
        free(twin);
    }
    free(row);
    q.ti = (TensorInfo){.name = "w", .file = "test", .dtype = t, .rank = 2, .shape = {R, K}, .data = data,
                        .nbytes = rb * (size_t)R};
    return q;
}
static void qtensor_free(QTensor *q) { free((void *)q->ti.data), free(q->deq); }

typedef struct Sink {
    char *buf;
    size_t n, cap;
} Sink;
static bool sink_write(void *user, const void *p, size_t n) {
    Sink *s = user;
    if (s->n + n > s->cap) {
        s->cap = (s->n + n) * 2;
        s->buf = realloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->n, p, n);
    s->n += n;
    return true;
}

/* Packs one entry (offset 0) and returns its bytes. */
static char *pack_one(PackEntry e) {
    PackTable pt = {.e = &e, .n = 1, .cap = 1, .total = e.bytes};
    Sink s = {0};
    EXPECT_TRUE(pack_write(&pt, sink_write, NULL, &s));
    EXPECT_EQ(s.n, e.bytes);
    return s.buf;
}

/* Element (r, c) of matrix m of an f32 panel-packed entry of R-row matrices over K columns. */
static float panel_at(const char *buf, int64_t m, int64_t R, int64_t r, int64_t c, int64_t K) {
    return ((const float *)buf)[m * kt_panel_elems(R, K) + kt_panel_index(r, c, K, 0)];
}

/* Step 1 of the quantised compiled path: a block-type matrix without a kernel packs dequantised to
 * f32; every packed element equals quant_dequant_row's. PACK_PANEL stacks two parts of different
 * types (a Q4_K_M-style q|v), PACK_PANEL_EACH two experts of an odd row count, PACK_GATE_UP one
 * expert's gate and up, PACK_ROWS an embedding table. */
static void t_pack_dequant(DType t) {
    const int64_t K = dtype_block_elems(t) == 256 ? 512 : 96, R = 37;
    DType other = dtype_block_elems(t) == 32 ? (t == DT_Q8_0 ? DT_Q4_0 : DT_Q8_0) : t == DT_Q6_K ? DT_Q4_K : DT_Q6_K;
    QTensor a = qtensor(t, R, K), b = qtensor(t, R, K), v = qtensor(other, 5, K);
    int ok = 1;
    { /* PACK_PANEL_EACH, 2 experts */
        const TensorInfo *parts[2] = {&a.ti, &b.ti};
        PackEntry e = {.kind = PACK_PANEL_EACH, .parts = parts, .n_parts = 2, .dtype = DT_F32, .rows = 2 * R,
                       .cols = K};
        e.bytes = 2 * kt_panel_elems(R, K) * 4;
        char *buf = pack_one(e);
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < K; c++)
                ok &= panel_at(buf, 0, R, r, c, K) == a.deq[r * K + c] &&
                      panel_at(buf, 1, R, r, c, K) == b.deq[r * K + c];
        free(buf);
    }
    { /* PACK_PANEL: rows of a, then of v (another type) */
        const TensorInfo *parts[2] = {&a.ti, &v.ti};
        PackEntry e = {.kind = PACK_PANEL, .parts = parts, .n_parts = 2, .dtype = DT_F32, .rows = R + 5, .cols = K};
        e.bytes = kt_panel_elems(R + 5, K) * 4;
        char *buf = pack_one(e);
        for (int64_t r = 0; r < R + 5; r++)
            for (int64_t c = 0; c < K; c++)
                ok &= panel_at(buf, 0, R + 5, r, c, K) == (r < R ? a.deq[r * K + c] : v.deq[(r - R) * K + c]);
        free(buf);
    }
    { /* PACK_GATE_UP: gate a, up b; block i/16 holds gate rows then up rows */
        const TensorInfo *parts[2] = {&a.ti, &b.ti};
        PackEntry e = {.kind = PACK_GATE_UP, .parts = parts, .n_parts = 2, .dtype = DT_F32, .rows = 2 * R, .cols = K};
        const int64_t RP = (R + 15) / 16 * 32;
        e.bytes = kt_panel_elems(RP, K) * 4;
        char *buf = pack_one(e);
        for (int64_t i = 0; i < R; i++)
            for (int64_t c = 0; c < K; c++)
                ok &= panel_at(buf, 0, RP, i / 16 * 32 + i % 16, c, K) == a.deq[i * K + c] &&
                      panel_at(buf, 0, RP, i / 16 * 32 + 16 + i % 16, c, K) == b.deq[i * K + c];
        free(buf);
    }
    { /* PACK_ROWS: an embedding table, dequantised rows back to back */
        const TensorInfo *parts[1] = {&a.ti};
        PackEntry e = {.kind = PACK_ROWS, .parts = parts, .n_parts = 1, .dtype = DT_F32, .rows = R, .cols = K};
        e.bytes = R * K * 4;
        char *buf = pack_one(e);
        ok &= memcmp(buf, a.deq, (size_t)e.bytes) == 0;
        free(buf);
    }
    if (!ok) fprintf(stderr, "pack dequantised %s: a value differs from quant_dequant_row\n", dtype_name(t));
    EXPECT_TRUE(ok);
    qtensor_free(&a), qtensor_free(&b), qtensor_free(&v);
}

/* ---- the quantised panel layout ---- */

static const DType kernel_types[] = {DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_Q8_0, DT_Q4_K, DT_Q5_K, DT_Q6_K};
enum { N_KTYPES = sizeof kernel_types / sizeof kernel_types[0] };

/* Element (r, c) of a quantised panel matrix at byte m0 of buf (R rows over K), through the kernels'
 * own dequantiser (kt_qg_cols). */
static float qpanel_at(const char *buf, int64_t m0, int64_t r, int64_t c, int64_t K, int32_t wdt) {
    KtQg q = kt_qg_at((const uint8_t *)buf + m0, r / 32 * kt_q_block_bytes(K, wdt), (int)(r / 16 % 2), c / 32, wdt);
    kt_vf lo, hi;
    kt_qg_cols(&q, (int)(c % 16), &lo, &hi, wdt);
    return (c % 32 < 16 ? lo : hi)[r % 16];
}

/* Pack (PACK_PANEL_EACH of 2 matrices of 37 rows, PACK_GATE_UP) keeps a kernel type; the kernels'
 * dequantised view of the packed bytes (column by column, and a block through kt_qpanel_dequant) is
 * quant_dequant_row's, padding rows are 0. */
static void t_qlayout(DType t) {
    const int32_t wdt = (int32_t)t;
    const int64_t K = dtype_block_elems(t) == 256 ? 512 : 96, R = 37, RP = 64;
    QTensor a = qtensor(t, R, K), b = qtensor(t, R, K);
    int ok = 1, dq_ok = 1;
    const TensorInfo *parts[2] = {&a.ti, &b.ti};
    PackEntry e = {.kind = PACK_PANEL_EACH, .parts = parts, .n_parts = 2, .dtype = t, .rows = 2 * R, .cols = K};
    const int64_t mb = kt_q_panel_bytes(R, K, wdt);
    e.bytes = 2 * mb;
    char *buf = pack_one(e);
    for (int m = 0; m < 2; m++)
        for (int64_t r = 0; r < RP; r++)
            for (int64_t c = 0; c < K; c++)
                ok &= qpanel_at(buf, m * mb, r, c, K, wdt) == (r < R ? (m ? b : a).deq[r * K + c] : 0.0f);
    float *dq = calloc((size_t)kt_dq_scratch(K), sizeof(float));
    for (int64_t blk = 0; blk < 2; blk++) { /* block 1 of matrix 1, groups 1.. (a thread's slice) */
        int64_t g0 = blk, ng = K / 32 - g0;
        kt_qpanel_dequant(dq, (const uint8_t *)buf + mb, blk * kt_q_block_bytes(K, wdt), g0, ng, wdt);
        for (int64_t r = 0; r < 32; r++)
            for (int64_t c = 0; c < 32 * ng; c++) {
                int64_t row = blk * 32 + r;
                float want = row < R ? b.deq[row * K + g0 * 32 + c] : 0.0f;
                dq_ok &= dq[kt_panel_index(r, c, 32 * ng, 0)] == want;
            }
    }
    free(buf);
    e = (PackEntry){.kind = PACK_GATE_UP, .parts = parts, .n_parts = 2, .dtype = t, .rows = 2 * R, .cols = K};
    e.bytes = kt_q_panel_bytes((R + 15) / 16 * 32, K, wdt);
    buf = pack_one(e);
    for (int64_t i = 0; i < R; i++)
        for (int64_t c = 0; c < K; c++)
            ok &= qpanel_at(buf, 0, i / 16 * 32 + i % 16, c, K, wdt) == a.deq[i * K + c] &&
                  qpanel_at(buf, 0, i / 16 * 32 + 16 + i % 16, c, K, wdt) == b.deq[i * K + c];
    if (!ok || !dq_ok)
        fprintf(stderr, "quantised panel %s: the kernels' view differs from quant_dequant_row\n", dtype_name(t));
    EXPECT_TRUE(ok);
    EXPECT_TRUE(dq_ok);
    free(buf), free(dq);
    qtensor_free(&a), qtensor_free(&b);
}

/* ---- kernels ---- */

#define QTOL 1e-10
/* The int8 mode's kernels against its twins: both quantise their own f32 activations, which differ in
 * the last bits (RMSNorm and SiLU computed otherwise), so now and then a value within an ulp of a
 * rounding boundary takes the neighbouring level: one level of one value of a row moves its dot
 * products by ~|w| amax / 127, NMSE ~1e-8 per such value; a wrong sum, scale or offset is >= 1e-4. */
#define QTOL_I8 1e-6
enum { PAD = 3 };
/* The activation mode bits the kernels run with (kt_quant.h), set by main: 0, KT_ACT_I8, and with
 * KT_DP_VNNI where the CPU has it. */
static int32_t g_act;
/* The target bits every weight carries too (kt_common.h): 0, and KT_NARROW in a second run of the exact
 * mode (the tiles of a target with narrower vectors than AVX-512's; correct on any CPU). */
static int32_t g_tgt;
#define SENTINEL 12345.0f

static float *randv(int64_t n, float scale, float offset) {
    float *v = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = offset + frand() * scale;
    return v;
}
static float *zeros(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static float *sentinels(int64_t n) {
    float *v = zeros(n);
    for (int64_t i = 0; i < n; i++) v[i] = SENTINEL;
    return v;
}
static void sentinels_ok(const float *v, int64_t from, int64_t to, const char *what) {
    int ok = 1;
    for (int64_t i = from; i < to; i++) ok &= v[i] == SENTINEL;
    if (!ok) fprintf(stderr, "%s: a padding row was written\n", what);
    EXPECT_TRUE(ok);
}
static void nmse_ok(const float *got, const float *want, int64_t n, const char *what, DType t, int nth) {
    double e = test_nmse(got, want, (size_t)n), tol = g_act ? QTOL_I8 : QTOL;
    if (!(e <= tol)) fprintf(stderr, "%s %s (nth %d, act %#x): nmse %.3g\n", what, dtype_name(t), nth, g_act | g_tgt, e);
    EXPECT_TRUE(e <= tol);
}

/* Packs parts as one entry of kind into a malloc'd buffer. */
static char *qpack(PackKind kind, const TensorInfo **parts, int n_parts, int64_t R, int64_t K, int64_t n_mat) {
    DType t = parts[0]->dtype;
    PackEntry e = {.kind = kind, .parts = parts, .n_parts = n_parts, .dtype = t, .rows = R, .cols = K};
    e.bytes = n_mat * kt_q_panel_bytes(kind == PACK_GATE_UP ? (parts[0]->shape[0] + 15) / 16 * 32 : R / n_mat, K, t);
    return pack_one(e);
}

/* The int8 mode's pieces, against runtime/quant.c: kt_qa_quantise is quant_act_q8 bit for bit, and the
 * int8 tile over a 32-row block (one token, all of K: the generic order of operations) gives each
 * row's quant_dot_int8 within f32 rounding (exactly, where both contract to FMAs). */
static void t_qtile_i8(DType t, int32_t dp) {
    const int64_t K = dtype_block_elems(t) == 256 ? 512 : 96, R = 37;
    QTensor w = qtensor(t, R, K);
    float *x = malloc(sizeof(float) * (size_t)K);
    for (int64_t i = 0; i < K; i++) x[i] = frand() * (i % 7 == 0 ? 4.0f : 1.0f);
    x[5] = 0.0f;
    void *qa = calloc(1, (size_t)kt_qa_row_bytes(K)), *buf = malloc(quant_act_bytes(K));
    kt_qa_quantise(qa, x, K, 0, K / 32);
    QuantAct ref = quant_act_view(buf, K);
    quant_act_q8(x, &ref);
    KtQa a = kt_qa_at(qa, 0, K, 0);
    int ok = !memcmp(a.q, ref.q, (size_t)K) && !memcmp(a.d, ref.d, sizeof(float) * (size_t)(K / 32));
    for (int64_t b = 0; b < K / 32; b++) ok &= a.s16[2 * b] + a.s16[2 * b + 1] == ref.sum[b];
    EXPECT_TRUE(ok);
    const TensorInfo *parts[1] = {&w.ti};
    char *wp = qpack(PACK_PANEL, parts, 1, R, K, 1);
    const int32_t wdt = (int32_t)t | KT_ACT_I8 | dp;
    double worst = 0;
    for (int64_t blk = 0; blk < 2; blk++) {
        KtQa xa[KT_TB];
        for (int i = 0; i < KT_TB; i++) xa[i] = a;
        kt_vf acc[2][KT_TB];
        kt_qpanel_tile_i8(acc, 1, (const uint8_t *)wp, blk * kt_q_block_bytes(K, wdt), xa, 0, K / 32, wdt);
        for (int64_t r = blk * 32; r < R && r < blk * 32 + 32; r++) {
            float want = quant_dot_int8(t, (const char *)w.ti.data + r * quant_row_bytes(t, K), &ref, K);
            float got = acc[r % 32 / 16][0][r % 16];
            double e = fabs((double)got - want) / (fabs(want) + 1e-3);
            worst = e > worst ? e : worst;
        }
    }
    if (!(worst <= 1e-5)) fprintf(stderr, "int8 tile %s (dp %#x): relative error %.3g\n", dtype_name(t), dp, worst);
    EXPECT_TRUE(worst <= 1e-5);
    free(x), free(qa), free(buf), free(wp);
    qtensor_free(&w);
}

/* kt_norm_matmul on a block-type w [N, K]: T < 16 is the decode tile (in registers), T >= 16 the
 * prefill one (a block dequantised per chunk). */
static void t_qnorm_matmul(DType t, int64_t T, int64_t K, int64_t N, int has_norm, int has_bias, int has_resid) {
    float eps = 1e-5f;
    float *x = randv(T * K, 2, 0), *nw = randv(K, 0.3f, 1), *bias = randv(N, 1, 0), *resid = randv(T * N, 1, 0);
    QTensor w = qtensor(t, N, K);
    float *h = zeros(T * K), *r = zeros(T * N);
    if (has_norm) ref_rmsnorm(h, x, T, K, nw, K, eps);
    else memcpy(h, x, sizeof(float) * (size_t)(T * K));
    (g_act ? ref_qmatmul_int8 : ref_qmatmul)(r, h, T, K, w.ti.data, t, N, has_bias ? bias : NULL);
    if (has_resid)
        for (int64_t i = 0; i < T * N; i++) r[i] += resid[i];
    const TensorInfo *parts[1] = {&w.ti};
    char *wp = qpack(PACK_PANEL, parts, 1, N, K, 1);
    for (int pad = 0; pad <= PAD; pad += PAD)
        for (int nth = 1; nth <= 3; nth++) {
            int64_t TL = T + pad;
            const int32_t wdt = (int32_t)t | g_act | g_tgt;
            float *y = sentinels(TL * N);
            float *scratch = zeros(nth * kt_norm_matmul_scratch(TL, K, has_norm, 0, kt_q_scratch_kind(wdt)));
            for (int ith = 0; ith < nth; ith++)
                kt_norm_matmul(y, x, nw, wp, bias, resid, scratch, TL, K, N, eps, has_norm, has_bias, has_resid, wdt,
                               wdt, N, 0, T, ith, nth);
            nmse_ok(y, r, T * N, TL >= KT_TILE_T ? "norm_matmul prefill" : "norm_matmul decode", t, nth);
            sentinels_ok(y, T * N, TL * N, "norm_matmul");
            free(y), free(scratch);
        }
    free(x), free(nw), free(bias), free(resid), free(h), free(r), free(wp);
    qtensor_free(&w);
}

/* kt_norm_matmul on a stack of two block types (fuse's two-type panel, as a GGUF Q4_K_M's q|k|v with
 * v in Q6_K): NA rows of ta, then NB of tb packed as the pack pass lays them out (a second matrix
 * from row NA on), against the two matrices' twins side by side. */
static void t_qnorm_matmul2(DType ta, DType tb, int64_t T, int64_t K, int64_t NA, int64_t NB) {
    const int64_t N = NA + NB;
    float eps = 1e-5f, *x = randv(T * K, 2, 0), *nw = randv(K, 0.3f, 1), *bias = randv(N, 1, 0);
    QTensor a = qtensor(ta, NA, K), b = qtensor(tb, NB, K);
    float *h = zeros(T * K), *ra = zeros(T * NA), *rb = zeros(T * NB), *r = zeros(T * N);
    ref_rmsnorm(h, x, T, K, nw, K, eps);
    void (*mm)(float *, const float *, int64_t, int64_t, const void *, DType, int64_t, const float *) =
        g_act ? ref_qmatmul_int8 : ref_qmatmul;
    mm(ra, h, T, K, a.ti.data, ta, NA, bias);
    mm(rb, h, T, K, b.ti.data, tb, NB, bias + NA);
    for (int64_t t = 0; t < T; t++) {
        memcpy(r + t * N, ra + t * NA, sizeof(float) * (size_t)NA);
        memcpy(r + t * N + NA, rb + t * NB, sizeof(float) * (size_t)NB);
    }
    const TensorInfo *parts[2] = {&a.ti, &b.ti};
    PackEntry e = {.kind = PACK_PANEL, .parts = parts, .n_parts = 2, .dtype = ta, .dtype2 = tb, .split = NA,
                   .rows = N, .cols = K};
    e.bytes = kt_q_panel_bytes(NA, K, (int32_t)ta) + kt_q_panel_bytes(NB, K, (int32_t)tb);
    char *wp = pack_one(e);
    const int32_t wa = (int32_t)ta | g_act | g_tgt, wb = (int32_t)tb | g_act | g_tgt;
    const int32_t q = kt_q_scratch_kind(wa) > kt_q_scratch_kind(wb) ? kt_q_scratch_kind(wa) : kt_q_scratch_kind(wb);
    for (int nth = 1; nth <= 3; nth += 2) {
        float *y = sentinels(T * N), *scratch = zeros(nth * kt_norm_matmul_scratch(T, K, 1, 0, q));
        for (int ith = 0; ith < nth; ith++)
            kt_norm_matmul(y, x, nw, wp, bias, NULL, scratch, T, K, N, eps, 1, 1, 0, wa, wb, NA, 0, T, ith, nth);
        nmse_ok(y, r, T * N, T >= KT_TILE_T ? "two-type norm_matmul prefill" : "two-type norm_matmul decode", tb, nth);
        free(y), free(scratch);
    }
    free(x), free(nw), free(bias), free(h), free(ra), free(rb), free(r), free(wp);
    qtensor_free(&a), qtensor_free(&b);
}

/* One MoE layer with block-type experts: gate/up of type tg, down of type td, the shared/dense expert's
 * gate/up tsg and down tsd (shared_kind 1: qwen2, sigmoid-gated; 2: a dense MLP layer, E = 0). The
 * router gate is f32. T < 16: the decode form (kt_experts_act + kt_experts_down); T >= 16: kt_experts
 * + kt_reduce, whose lists of 8 tokens or more take the dequantised-block path, shorter ones the
 * in-register one. */
typedef struct QMoeCase {
    int64_t T, H, I, E, k, C, SI;
    int32_t shared_kind;
    DType tg, td, tsg, tsd;
    const char *name;
} QMoeCase;

static void t_qmoe(QMoeCase mc) {
    int64_t T = mc.T, H = mc.H, I = mc.I, E = mc.E, k = mc.k, C = mc.C, SI = mc.SI;
    float eps = 1e-5f;
    float *x = randv(T * H, 2, 0), *nw = randv(H, 0.3f, 1), *resid = randv(T * H, 1, 0);
    float *gate_w = randv(E * H, 3.0f / sqrtf((float)H), 0), *sg_w = randv(H, 0.5f, 0);
    QTensor *g = calloc((size_t)E + 1, sizeof(QTensor)), *u = calloc((size_t)E + 1, sizeof(QTensor));
    QTensor *d = calloc((size_t)E + 1, sizeof(QTensor));
    const TensorInfo **gu_parts = calloc(2 * (size_t)E + 1, sizeof(void *));
    const TensorInfo **d_parts = calloc((size_t)E + 1, sizeof(void *));
    const void **gp = calloc((size_t)E + 1, sizeof(void *)), **up = calloc((size_t)E + 1, sizeof(void *));
    const void **dp = calloc((size_t)E + 1, sizeof(void *));
    for (int64_t e = 0; e < E; e++) {
        g[e] = qtensor(mc.tg, I, H), u[e] = qtensor(mc.tg, I, H), d[e] = qtensor(mc.td, H, I);
        gu_parts[e] = &g[e].ti, gu_parts[E + e] = &u[e].ti, d_parts[e] = &d[e].ti;
        gp[e] = g[e].ti.data, up[e] = u[e].ti.data, dp[e] = d[e].ti.data;
    }
    QTensor sg = {0}, su = {0}, sd = {0};
    char *gate_up = NULL, *down = NULL, *sh_gate_up = NULL, *sh_down = NULL;
    if (E > 0) {
        gate_up = qpack(PACK_GATE_UP, gu_parts, (int)(2 * E), E * I * 2, H, E);
        down = qpack(PACK_PANEL_EACH, d_parts, (int)E, E * H, I, E);
    }
    if (mc.shared_kind) {
        sg = qtensor(mc.tsg, SI, H), su = qtensor(mc.tsg, SI, H), sd = qtensor(mc.tsd, H, SI);
        const TensorInfo *sgu[2] = {&sg.ti, &su.ti}, *sdd[1] = {&sd.ti};
        sh_gate_up = qpack(PACK_GATE_UP, sgu, 2, SI * 2, H, 1);
        sh_down = qpack(PACK_PANEL, sdd, 1, H, SI, 1);
    }

    /* reference: rmsnorm, f32 router, ref_qmoe_ffn, the shared/dense expert through ref_qmatmul, residual */
    float *h = zeros(T * H), *r = zeros(T * H), *logits = zeros(T * E);
    MoeRoute *routes = malloc(sizeof(MoeRoute) * (size_t)(T * k > 0 ? T * k : 1));
    int64_t dropped = 0;
    ref_rmsnorm(h, x, T, H, nw, H, eps);
    if (E > 0) {
        ref_matmul(logits, h, T, H, gate_w, DT_F32, E, NULL);
        ref_router(routes, logits, T, E, k, true);
        ref_qmoe_ffn(r, h, routes, T, E, k, H, I, (const void *const *)gp, mc.tg, (const void *const *)up, mc.tg,
                     (const void *const *)dp, mc.td, g_act != 0, C, &dropped);
    }
    if (mc.shared_kind) {
        float *gv = zeros(T * SI), *uv = zeros(T * SI), *o = zeros(T * H), gt[64];
        void (*mm)(float *, const float *, int64_t, int64_t, const void *, DType, int64_t, const float *) =
            g_act ? ref_qmatmul_int8 : ref_qmatmul;
        mm(gv, h, T, H, sg.ti.data, mc.tsg, SI, NULL);
        mm(uv, h, T, H, su.ti.data, mc.tsg, SI, NULL);
        for (int64_t i = 0; i < T * SI; i++) gv[i] = (float)((double)gv[i] / (1 + exp(-(double)gv[i])) * uv[i]);
        mm(o, gv, T, SI, sd.ti.data, mc.tsd, H, NULL);
        for (int64_t t = 0; t < T; t++) {
            gt[t] = 1.0f;
            if (mc.shared_kind == 1) {
                double sdot = 0;
                for (int64_t c = 0; c < H; c++) sdot += (double)h[t * H + c] * sg_w[c];
                gt[t] = (float)(1 / (1 + exp(-sdot)));
            }
            for (int64_t c = 0; c < H; c++) r[t * H + c] += gt[t] * o[t * H + c];
        }
        free(gv), free(uv), free(o);
    }
    for (int64_t i = 0; i < T * H; i++) r[i] += resid[i];

    const int32_t wg = (int32_t)mc.tg | g_act | g_tgt, wd = (int32_t)mc.td | g_act | g_tgt;
    const int32_t wsg = (int32_t)mc.tsg | g_act | g_tgt;
    const int32_t wsd = (int32_t)mc.tsd | g_act | g_tgt, q = kt_q_scratch_kind(wg); /* every weight here a kernel type */
    const int32_t q8 = (E > 0 && kt_i8(wd) ? 1 : 0) | (mc.shared_kind && kt_i8(wsd) ? 2 : 0);
    for (int run = 0; run < 6; run++) { /* nth 1..3, then again laid out for PAD more rows */
        int nth = run % 3 + 1;
        int64_t TL = T + (run >= 3 ? PAD : 0);
        char *dispatch = E > 0 ? malloc((size_t)kt_dispatch_bytes(TL, k, E, C)) : NULL;
        float *y = sentinels(TL * H);
        if (E > 0)
            for (int ith = 0; ith < nth; ith++)
                kt_router(dispatch, x, nw, gate_w, NULL, NULL, 0, TL, H, E, k, C, eps, 1, 0, T, ith, nth);
        if (TL >= KT_TILE_T) {
            int64_t spt = kt_experts_scratch(TL, H, I > SI ? I : SI, nth, 0, q);
            float *partials = zeros(nth * TL * H), *scratch = zeros(nth * spt);
            for (int ith = 0; ith < nth; ith++)
                kt_experts(partials, x, nw, dispatch, gate_up, down, sh_gate_up, sh_down, sg_w, scratch, NULL, TL, H, I, E, k,
                           C, SI, mc.shared_kind, eps, spt, wg, wd, wsg, wsd, 0, T, ith, nth);
            for (int ith = 0; ith < nth; ith++) kt_reduce(y, resid, partials, TL, H, T, ith, nth);
            free(partials), free(scratch);
        } else {
            float *act = zeros(kt_experts_act_floats(TL, E, C, I, SI, q8));
            float *ascr = zeros(nth * kt_experts_act_scratch(TL, H, kt_i8(wg)));
            for (int ith = 0; ith < nth; ith++)
                kt_experts_act(act, x, nw, dispatch, gate_up, sh_gate_up, sg_w, ascr, NULL, TL, H, I, E, k, C, SI,
                               mc.shared_kind, eps, wg, wsg, q8, T, ith, nth);
            for (int ith = 0; ith < nth; ith++)
                kt_experts_down(y, resid, dispatch, act, down, sh_down, NULL, TL, H, I, E, k, C, SI, mc.shared_kind, wd, wsd,
                                T, ith, nth);
            free(act), free(ascr);
        }
        nmse_ok(y, r, T * H, mc.name, mc.tg, nth);
        sentinels_ok(y, T * H, TL * H, mc.name);
        free(dispatch), free(y);
    }
    for (int64_t e = 0; e < E; e++) qtensor_free(&g[e]), qtensor_free(&u[e]), qtensor_free(&d[e]);
    if (mc.shared_kind) qtensor_free(&sg), qtensor_free(&su), qtensor_free(&sd);
    free(g), free(u), free(d), free(gu_parts), free(d_parts), free(gp), free(up), free(dp);
    free(gate_up), free(down), free(sh_gate_up), free(sh_down);
    free(x), free(nw), free(resid), free(gate_w), free(sg_w), free(h), free(r), free(logits), free(routes);
}

int main(void) {
    for (int i = 0; i < N_TYPES; i++) t_pack_dequant(all_types[i]);
    __builtin_cpu_init();
    const int vnni = __builtin_cpu_supports("avx512vnni");
    for (int i = 0; i < N_KTYPES; i++) {
        t_qtile_i8(kernel_types[i], 0);
        if (vnni) t_qtile_i8(kernel_types[i], KT_DP_VNNI);
    }
    /* the exact mode, int8, int8 with VNNI where the CPU has it, then the exact mode narrow (last, so
     * the others' random cases stay those their tolerances were set on) */
    const int n_modes = vnni ? 3 : 2;
    const int32_t modes[3] = {0, KT_ACT_I8, KT_ACT_I8 | KT_DP_VNNI};
    for (int m = 0; m <= n_modes; m++) {
    g_act = m < n_modes ? modes[m] : 0;
    g_tgt = m < n_modes ? 0 : KT_NARROW;
    for (int i = 0; i < N_KTYPES; i++) {
        DType t = kernel_types[i];
        int64_t K = dtype_block_elems(t) == 256 ? 512 : 96, K2 = dtype_block_elems(t) == 256 ? 256 : 64;
        if (m == 0) t_qlayout(t);
        /*                T   K   N  norm bias resid */
        t_qnorm_matmul(t, 1, K, 37, 1, 0, 1);   /* decode, odd rows */
        t_qnorm_matmul(t, 5, K2, 70, 1, 1, 1);  /* decode, one tile of 5, 3 blocks */
        t_qnorm_matmul(t, 15, K, 13, 0, 1, 0);  /* tiles of 8 and a tail of 7; fewer rows than a block */
        t_qnorm_matmul(t, 21, K, 40, 1, 1, 1);  /* prefill: dequantised blocks */
        t_qnorm_matmul(t, 16, K2, 2, 0, 0, 1);  /* prefill, fewer rows than threads */
        DType t2 = t == DT_Q6_K ? DT_Q4_0 : DT_Q6_K; /* K a multiple of 256 for both */
        t_qnorm_matmul2(t, t2, 1, 512, 64, 32);      /* decode */
        t_qnorm_matmul2(t, t2, 19, 512, 96, 45);     /* prefill, an odd second part */
    }
    /* the expert FFN, every kernel type, H and I whole blocks of the K types */
    for (int i = 0; i < N_KTYPES; i++) {
        DType t = kernel_types[i], o = t == DT_Q6_K ? DT_Q8_0 : DT_Q6_K; /* down of another type (Q4_K_M) */
        t_qmoe((QMoeCase){1, 256, 512, 8, 2, 1, 0, 0, t, t, t, t, "qmoe decode (mixtral)"});
        t_qmoe((QMoeCase){3, 256, 256, 4, 2, 3, 512, 1, t, o, o, t, "qmoe decode, qwen2 shared, mixed types"});
        t_qmoe((QMoeCase){40, 256, 512, 4, 2, 40, 0, 0, t, o, t, t, "qmoe prefill (long and short lists)"});
        t_qmoe((QMoeCase){19, 256, 256, 8, 3, 19, 256, 1, t, t, o, o, "qmoe prefill, shared, lists < 8 and >= 8"});
        t_qmoe((QMoeCase){17, 512, 0, 0, 0, 0, 768, 2, t, t, t, o, "qmoe dense layer prefill"});
        t_qmoe((QMoeCase){2, 256, 0, 0, 0, 0, 512, 2, t, t, t, t, "qmoe dense layer decode"});
    }
    }
    return test_done();
}
