/* The generic path's kernels (compiler/interp/kernels.c) against their reference twins
 * (tests/ref/ref_ops.c, ref_qops.c), each at several shapes: one ragged, one with top_k = 1,
 * bf16/f16/f32 weights, and every block-quantised type in both activation modes (odd row counts,
 * T = 1 and T > 1); the bf16 activation mode and its rounding (gk_round_bf16). NMSE <= 1e-10 where
 * both compute in f32 from identical inputs (1e-6 is the STYLE bound). */
#include <stdlib.h>
#include <string.h>

#include "interp/kernels.h"
#include "quant.h"
#include "ref/ref_ops.h"
#include "ref/ref_qops.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}
static float *randv(int64_t n, float scale) {
    float *v = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = frand() * scale;
    return v;
}
/* Weights in dtype dt (returned) and their exact f32 values (in *wf). */
static void *randw(int64_t n, DType dt, float scale, float **wf) {
    float *f = randv(n, scale);
    void *w = malloc(dtype_size(dt) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        if (dt == DT_BF16) ((uint16_t *)w)[i] = f32_to_bf16(f[i]);
        else if (dt == DT_F16) ((uint16_t *)w)[i] = f32_to_f16(f[i]);
        else ((float *)w)[i] = f[i];
        f[i] = dtype_load_f32(dt, w, (size_t)i);
    }
    *wf = f;
    return w;
}

#define NMSE_OK(got, want, n, what)                                                                  \
    do {                                                                                             \
        double e_ = test_nmse(got, want, (size_t)(n));                                               \
        if (e_ > 1e-10) fprintf(stderr, "%s: nmse %.3g\n", what, e_);                                \
        EXPECT_TRUE(e_ <= 1e-10);                                                                    \
    } while (0)

static void t_matmul(int64_t T, int64_t K, int64_t N, DType dt, bool bias) {
    float *x = randv(T * K, 1), *wf, *b = bias ? randv(N, 1) : NULL;
    void *w = randw(N * K, dt, 0.5f, &wf);
    float *y = malloc(sizeof(float) * (size_t)(T * N)), *r = malloc(sizeof(float) * (size_t)(T * N));
    gk_matmul(y, x, T, K, w, dt, N, b, DT_F32, GK_ACT_INT8); /* the mode does not touch plain weights */
    ref_matmul(r, x, T, K, w, dt, N, b);
    NMSE_OK(y, r, T * N, "matmul");
    free(x), free(wf), free(b), free(w), free(y), free(r);
}

/* The bf16 activation mode: bf16 weights meet x rounded to bf16 (the reference rounds on its own,
 * through frexp/nearbyint, and sums in double); every other weight dtype is left exact, bit for bit. */
static void t_matmul_bf16(int64_t T, int64_t K, int64_t N, bool bias) {
    float *x = randv(T * K, 1), *wf, *b = bias ? randv(N, 1) : NULL;
    void *w = randw(N * K, DT_BF16, 0.5f, &wf);
    float *y = malloc(sizeof(float) * (size_t)(T * N)), *r = malloc(sizeof(float) * (size_t)(T * N));
    float *ex = malloc(sizeof(float) * (size_t)(T * N));
    gk_matmul(y, x, T, K, w, DT_BF16, N, b, DT_F32, GK_ACT_BF16);
    ref_matmul_act_bf16(r, x, T, K, w, DT_BF16, N, b);
    NMSE_OK(y, r, T * N, "matmul bf16 act");
    gk_matmul(ex, x, T, K, w, DT_BF16, N, b, DT_F32, GK_ACT_EXACT);
    int same = 0;
    for (int64_t i = 0; i < T * N; i++) same += y[i] == ex[i];
    EXPECT_TRUE(same < T * N / 2); /* the mode really rounds (about 2^-9 relative per element) */
    double e = test_nmse(y, ex, (size_t)(T * N));
    EXPECT_TRUE(e > 1e-9 && e < 1e-4);
    free(w), free(wf);
    const DType others[] = {DT_F32, DT_F16, DT_Q8_0};
    for (int i = 0; i < 3; i++) { /* unaffected: the same bits as the exact mode */
        DType dt = others[i];
        if (dtype_is_quant(dt) && K % dtype_block_elems(dt)) continue;
        if (dtype_is_quant(dt)) {
            float *f = randv(N * K, 0.5f);
            size_t rb = quant_row_bytes(dt, K);
            w = malloc(rb * (size_t)N);
            for (int64_t row = 0; row < N; row++) quant_quantize_row(dt, f + row * K, (char *)w + rb * (size_t)row, K);
            free(f);
        } else {
            w = randw(N * K, dt, 0.5f, &wf);
            free(wf);
        }
        gk_matmul(y, x, T, K, w, dt, N, b, DT_F32, GK_ACT_BF16);
        gk_matmul(ex, x, T, K, w, dt, N, b, DT_F32, GK_ACT_EXACT);
        same = 0;
        for (int64_t j = 0; j < T * N; j++) same += y[j] == ex[j];
        EXPECT_EQ(same, T * N);
        free(w);
    }
    free(x), free(b), free(y), free(r), free(ex);
}

static bool same_bits(float a, float b) { return !memcmp(&a, &b, sizeof a); }

/* gk_round_bf16 against ref_round_bf16: the ties, both signs, subnormals, overflow to infinity, and
 * 2^20 random bit patterns (NaN aside). */
static void t_round_bf16(void) {
    const float cases[][2] = {
        {1.0f, 1.0f},
        {1.0f + 0x1p-8f, 1.0f},                  /* a tie: to the even 1 */
        {1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-6f},    /* a tie: to the even 1 + 2^-6, up */
        {1.0f + 0x1p-8f + 0x1p-20f, 1.0f + 0x1p-7f}, /* just past the tie: up */
        {-(1.0f + 3 * 0x1p-8f), -(1.0f + 0x1p-6f)},
        {3.14159274f, 3.140625f},
        {0x1p-133f, 0x1p-133f},                  /* the least bf16 subnormal: kept */
        {0x1p-134f, 0.0f},                       /* half of it, a tie: to the even 0 */
        {0x1.8p-133f, 0x1p-132f},                /* 1.5 of it, a tie: to the even 2 */
        {0x1.0101p-130f, 0x1p-130f},            /* a subnormal: rounded to 2^-133 steps */
        {0x1.fffffep127f, INFINITY},            /* FLT_MAX rounds up to infinity */
        {-0.0f, -0.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float got;
        gk_round_bf16(&got, &cases[i][0], 1);
        if (!same_bits(got, cases[i][1]) || !same_bits(ref_round_bf16(cases[i][0]), cases[i][1]))
            fprintf(stderr, "round_bf16(%a): got %a, ref %a, expected %a\n", (double)cases[i][0], (double)got,
                    (double)ref_round_bf16(cases[i][0]), (double)cases[i][1]);
        EXPECT_TRUE(same_bits(got, cases[i][1]));
        EXPECT_TRUE(same_bits(ref_round_bf16(cases[i][0]), cases[i][1]));
    }
    enum { N = 1 << 20 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        uint32_t u = (uint32_t)(rng >> 32);
        if (i % 4 == 0) u = (u & 0xffff0000u) | 0x8000u; /* every fourth an exact tie */
        memcpy(&x[i], &u, 4);
        if (isnan(x[i])) x[i] = 1.0f;
    }
    gk_round_bf16(y, x, N);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += !same_bits(y[i], ref_round_bf16(x[i]));
    EXPECT_EQ(bad, 0);
    gk_round_bf16(x, x, N); /* in place */
    bad = 0;
    for (int i = 0; i < N; i++) bad += !same_bits(x[i], y[i]);
    EXPECT_EQ(bad, 0);
    free(x), free(y);
}

static void t_rmsnorm(int64_t T, int64_t N, int64_t G) {
    float *x = randv(T * N, 3), *w = randv(G, 1);
    float *y = malloc(sizeof(float) * (size_t)(T * N)), *r = malloc(sizeof(float) * (size_t)(T * N));
    gk_rmsnorm(y, x, T, N, w, DT_F32, G, 1e-5f);
    ref_rmsnorm(r, x, T, N, w, G, 1e-5f);
    NMSE_OK(y, r, T * N, "rmsnorm");
    free(x), free(w), free(y), free(r);
}

static void t_embed(void) {
    float *tf;
    void *table = randw(50 * 24, DT_BF16, 1, &tf);
    int32_t ids[5] = {3, 0, 49, 3, 17};
    float y[5 * 24], r[5 * 24];
    gk_embed(y, ids, 5, table, DT_BF16, 24);
    ref_embed(r, ids, 5, table, DT_BF16, 24);
    for (int i = 0; i < 5 * 24; i++) EXPECT_TRUE(y[i] == r[i]);
    free(tf), free(table);
}

static void t_rope(int64_t T, int64_t heads, int64_t hd, int64_t pos0, float mscale) {
    float *x = randv(T * heads * hd, 2), inv[64];
    for (int64_t i = 0; i < hd / 2; i++) inv[i] = 1.0f / powf(10000.0f, (float)(2 * i) / (float)hd);
    float *y = malloc(sizeof(float) * (size_t)(T * heads * hd)), *r = malloc(sizeof(float) * (size_t)(T * heads * hd));
    int64_t *pos = malloc(sizeof(int64_t) * (size_t)T);
    for (int64_t t = 0; t < T; t++) pos[t] = pos0 + t;
    gk_rope(y, x, T, heads, hd, inv, mscale, pos);
    ref_rope(r, x, T, heads, hd, inv, mscale, pos0);
    NMSE_OK(y, r, T * heads * hd, "rope");
    free(x), free(y), free(r), free(pos);
}

/* Prefill of T0 tokens then one decode step in slot 1 of two, against the reference over all
 * positions; slot 0 holds another sequence written before, which must not leak in. */
static void t_attention(int64_t T0, int64_t nh, int64_t nkv, int64_t hd, int64_t window) {
    int64_t S = T0 + 1, kvw = nkv * hd;
    float *q = randv(S * nh * hd, 1), *k = randv(S * kvw, 1), *v = randv(S * kvw, 1);
    float *k0 = randv(S * kvw, 4), *v0 = randv(S * kvw, 4), *y0 = malloc(sizeof(float) * (size_t)(S * nh * hd));
    float *kc = malloc(sizeof(float) * (size_t)(2 * S * kvw)), *vc = malloc(sizeof(float) * (size_t)(2 * S * kvw));
    float *y = malloc(sizeof(float) * (size_t)(S * nh * hd)), *r = malloc(sizeof(float) * (size_t)(S * nh * hd));
    int64_t pos[64];
    int32_t slot0[64] = {0}, slot1[64];
    for (int64_t t = 0; t < S; t++) pos[t] = t, slot1[t] = 1;
    gk_attention(y0, q, k0, v0, S, kc, vc, S * kvw, nh, nkv, hd, window, pos, slot0);
    gk_attention(y, q, k, v, T0, kc, vc, S * kvw, nh, nkv, hd, window, pos, slot1);
    gk_attention(y + T0 * nh * hd, q + T0 * nh * hd, k + T0 * kvw, v + T0 * kvw, 1, kc, vc, S * kvw, nh, nkv, hd,
                 window, pos + T0, slot1);
    ref_attention(r, q, k, v, S, nh, nkv, hd, window, 0);
    NMSE_OK(y, r, S * nh * hd, "attention");
    free(q), free(k), free(v), free(kc), free(vc), free(y), free(r), free(k0), free(v0), free(y0);
}

static void t_router(int64_t T, int64_t E, int64_t k, bool renorm) {
    float *l = randv(T * E, 3);
    MoeRoute *a = malloc(sizeof(MoeRoute) * (size_t)(T * k)), *b = malloc(sizeof(MoeRoute) * (size_t)(T * k));
    gk_router(a, l, T, E, k, renorm);
    ref_router(b, l, T, E, k, renorm);
    for (int64_t i = 0; i < T * k; i++) {
        EXPECT_EQ(a[i].expert, b[i].expert);
        EXPECT_NEAR(a[i].weight, b[i].weight, 1e-6);
    }
    float sum = 0;
    for (int64_t j = 0; j < k; j++) sum += a[j].weight;
    if (renorm) EXPECT_NEAR(sum, 1.0, 1e-6);
    free(l), free(a), free(b);
}

static void t_moe(int64_t T, int64_t E, int64_t k, int64_t H, int64_t I, DType dt, double factor) {
    float *x = randv(T * H, 1), *l = randv(T * E, 2), *gf, *uf, *df;
    void *g = randw(E * I * H, dt, 0.3f, &gf), *u = randw(E * I * H, dt, 0.3f, &uf), *d = randw(E * H * I, dt, 0.3f, &df);
    MoeRoute *routes = malloc(sizeof(MoeRoute) * (size_t)(T * k));
    ref_router(routes, l, T, E, k, true);
    const void *pg[64], *pu[64], *pd[64];
    size_t es = dtype_size(dt);
    for (int64_t e = 0; e < E; e++) {
        pg[e] = (char *)g + (size_t)(e * I * H) * es;
        pu[e] = (char *)u + (size_t)(e * I * H) * es;
        pd[e] = (char *)d + (size_t)(e * H * I) * es;
    }
    GkExperts ex = {E, k, H, I, dt, dt, dt, GK_ACT_EXACT, pg, pu, pd};
    int64_t cap = gk_capacity(factor, T, k, E);
    void *scratch = malloc(gk_moe_scratch_bytes(&ex, T));
    float *y = malloc(sizeof(float) * (size_t)(T * H)), *r = malloc(sizeof(float) * (size_t)(T * H));
    int64_t dropped = 0, dropped_ref = 0, counts[64] = {0};
    gk_moe_ffn(y, x, routes, T, &ex, cap, scratch, &dropped, counts);
    ref_moe_ffn(r, x, routes, T, E, k, H, I, gf, uf, df, cap, &dropped_ref);
    NMSE_OK(y, r, T * H, "moe_ffn");
    EXPECT_EQ(dropped, dropped_ref);
    int64_t processed = 0;
    for (int64_t e = 0; e < E; e++) processed += counts[e];
    EXPECT_EQ(processed + dropped, T * k);
    if (factor > 0 && factor < 1 && T >= 8) EXPECT_TRUE(dropped > 0); /* the case really drops */
    if (dt == DT_BF16) { /* the bf16 mode: gate/up meet x, down silu(g) * u, rounded to bf16 */
        ex.act = GK_ACT_BF16;
        dropped = dropped_ref = 0;
        gk_moe_ffn(y, x, routes, T, &ex, cap, scratch, &dropped, NULL);
        ref_moe_ffn_act_bf16(r, x, routes, T, E, k, H, I, gf, uf, df, cap, &dropped_ref);
        /* silu(g) * u differs by f32 rounding between the sides before its rounding to bf16, so a
         * value within ~1e-7 of a tie could round apart (2^-8 on that element, nmse ~1e-6); with
         * these seeds none does: nmse ~2e-15 */
        NMSE_OK(y, r, T * H, "moe_ffn bf16 act");
        ex.act = GK_ACT_EXACT;
        float *y0 = malloc(sizeof(float) * (size_t)(T * H));
        gk_moe_ffn(y0, x, routes, T, &ex, cap, scratch, &dropped, NULL);
        EXPECT_TRUE(test_nmse(y, y0, (size_t)(T * H)) > 1e-9); /* the mode acts */
        free(y0);
    }
    free(x), free(l), free(gf), free(uf), free(df), free(g), free(u), free(d), free(routes), free(scratch), free(y),
        free(r);
}

/* ---- block-quantised weights ---- */

static const DType qtypes[] = {DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_Q8_0, DT_Q4_K, DT_Q5_K, DT_Q6_K};
enum { N_QTYPES = sizeof qtypes / sizeof qtypes[0] };

/* rows x K random values quantised to t with the runtime's quantiser (the twins decode them on their own). */
static void *randq(int64_t rows, int64_t K, DType t, float scale) {
    float *f = randv(rows * K, scale);
    size_t rb = quant_row_bytes(t, K);
    char *w = malloc(rb * (size_t)rows);
    for (int64_t r = 0; r < rows; r++) quant_quantize_row(t, f + r * K, w + (size_t)r * rb, K);
    free(f);
    return w;
}

#define NMSE_LE(got, want, n, bound, what)                                                           \
    do {                                                                                             \
        double e_ = test_nmse(got, want, (size_t)(n));                                               \
        if (e_ > (bound)) fprintf(stderr, "%s %s: nmse %.3g\n", what, dtype_name(t), e_);             \
        EXPECT_TRUE(e_ <= (bound));                                                                  \
    } while (0)

static void t_qmatmul(DType t, int64_t T, int64_t K, int64_t N, bool bias) {
    float *x = randv(T * K, 1), *b = bias ? randv(N, 1) : NULL;
    void *w = randq(N, K, t, 0.5f);
    float *y = malloc(sizeof(float) * (size_t)(T * N)), *r = malloc(sizeof(float) * (size_t)(T * N));
    gk_matmul(y, x, T, K, w, t, N, b, DT_F32, GK_ACT_EXACT);
    ref_qmatmul(r, x, T, K, w, t, N, b);
    NMSE_LE(y, r, T * N, 1e-10, "qmatmul exact");
    gk_matmul(y, x, T, K, w, t, N, b, DT_F32, GK_ACT_INT8);
    ref_qmatmul_int8(r, x, T, K, w, t, N, b);
    int same = 0;
    for (int64_t i = 0; i < T * N; i++) same += y[i] == r[i];
    EXPECT_EQ(same, T * N); /* the same arithmetic, so the same bits */
    /* int8 stays close to exact: activations keep ~7 bits per 32 */
    float *ex = malloc(sizeof(float) * (size_t)(T * N));
    ref_qmatmul(ex, x, T, K, w, t, N, b);
    NMSE_LE(y, ex, T * N, 1e-3, "qmatmul int8 vs exact");
    free(x), free(b), free(w), free(y), free(r), free(ex);
}

static void t_qembed(DType t) {
    int64_t V = 37, H = dtype_block_elems(t) * 2;
    void *table = randq(V, H, t, 1);
    int32_t ids[4] = {36, 0, 5, 36};
    float *y = malloc(sizeof(float) * (size_t)(4 * H)), *r = malloc(sizeof(float) * (size_t)(4 * H));
    gk_embed(y, ids, 4, table, t, H);
    ref_qembed(r, ids, 4, table, t, H);
    int same = 0;
    for (int64_t i = 0; i < 4 * H; i++) same += y[i] == r[i];
    EXPECT_EQ(same, 4 * H);
    free(table), free(y), free(r);
}

/* Experts whose gate, up and down each have their own type (gdt, udt, ddt), both modes. */
static void t_qmoe(int64_t T, int64_t E, int64_t k, int64_t H, int64_t I, DType gdt, DType udt, DType ddt,
                   double factor) {
    float *x = randv(T * H, 1), *l = randv(T * E, 2);
    const void *pg[16], *pu[16], *pd[16];
    for (int64_t e = 0; e < E; e++) {
        pg[e] = randq(I, H, gdt, 0.3f);
        pu[e] = randq(I, H, udt, 0.3f);
        pd[e] = randq(H, I, ddt, 0.3f);
    }
    MoeRoute *routes = malloc(sizeof(MoeRoute) * (size_t)(T * k));
    ref_router(routes, l, T, E, k, true);
    float *y = malloc(sizeof(float) * (size_t)(T * H)), *r = malloc(sizeof(float) * (size_t)(T * H));
    int64_t cap = gk_capacity(factor, T, k, E);
    for (int mode = 0; mode < 2; mode++) {
        GkExperts ex = {E, k, H, I, gdt, udt, ddt, mode ? GK_ACT_INT8 : GK_ACT_EXACT, pg, pu, pd};
        void *scratch = malloc(gk_moe_scratch_bytes(&ex, T));
        int64_t dropped = 0, dropped_ref = 0;
        gk_moe_ffn(y, x, routes, T, &ex, cap, scratch, &dropped, NULL);
        ref_qmoe_ffn(r, x, routes, T, E, k, H, I, pg, gdt, pu, udt, pd, ddt, mode, cap, &dropped_ref);
        DType t = ddt;
        /* int8: the down projection quantises silu(g) * u, which the two sides round alike but for
         * the order of float sums in y; a level that flips moves one element by 1/127 of a block */
        NMSE_LE(y, r, T * H, mode ? 1e-6 : 1e-10, mode ? "qmoe int8" : "qmoe exact");
        EXPECT_EQ(dropped, dropped_ref);
        free(scratch);
    }
    for (int64_t e = 0; e < E; e++) free((void *)pg[e]), free((void *)pu[e]), free((void *)pd[e]);
    free(x), free(l), free(routes), free(y), free(r);
}

static void t_quant_all(void) {
    for (int i = 0; i < N_QTYPES; i++) {
        DType t = qtypes[i];
        int64_t be = dtype_block_elems(t);
        t_qmatmul(t, 1, be, 13, false);            /* decode, one block per row, odd rows */
        t_qmatmul(t, 5, 2 * be, 7, true);          /* prefill with a bias */
        t_qmatmul(t, 3, be == 32 ? 96 : 512, 1, false); /* one row */
        t_qembed(t);
    }
    t_qmoe(5, 4, 2, 256, 256, DT_Q4_K, DT_Q4_K, DT_Q6_K, 0);   /* Q4_K_M's mix */
    t_qmoe(1, 4, 1, 256, 512, DT_Q5_K, DT_Q4_K, DT_Q8_0, 0);   /* decode, top_k = 1 */
    t_qmoe(9, 3, 2, 64, 96, DT_Q8_0, DT_Q4_0, DT_Q5_1, 0);     /* ragged expert count, 32-blocks */
    t_qmoe(16, 4, 2, 32, 64, DT_Q4_1, DT_Q5_0, DT_Q8_0, 0.5);  /* capacity drops */
}

int main(void) {
    t_embed();
    t_matmul(1, 64, 96, DT_BF16, false);
    t_matmul(3, 67, 13, DT_F32, true);   /* ragged */
    t_matmul(17, 128, 40, DT_F16, false);
    t_matmul_bf16(1, 64, 96, false);
    t_matmul_bf16(5, 67, 13, true);      /* ragged, prefill, bias */
    t_matmul_bf16(17, 256, 40, false);
    t_round_bf16();
    t_rmsnorm(1, 64, 64);
    t_rmsnorm(5, 96, 16);                /* per-head groups */
    t_rmsnorm(3, 37, 37);                /* ragged */
    t_rope(1, 4, 16, 0, 1.0f);
    t_rope(7, 2, 64, 123, 1.2f);
    t_rope(3, 3, 6, 5, 1.0f);
    t_attention(7, 4, 2, 16, 0);
    t_attention(12, 4, 1, 8, 5);         /* MQA + window */
    t_attention(1, 3, 3, 6, 0);          /* ragged */
    t_router(5, 4, 2, true);
    t_router(9, 8, 1, false);            /* top_k = 1 */
    t_router(3, 60, 4, false);
    t_moe(5, 4, 2, 16, 24, DT_BF16, 0);
    t_moe(1, 8, 1, 32, 12, DT_F32, 0);   /* top_k = 1, decode */
    t_moe(23, 6, 2, 19, 7, DT_F16, 0);   /* ragged */
    t_moe(16, 4, 2, 16, 8, DT_BF16, 0.5);/* capacity drops */
    t_quant_all();
    EXPECT_EQ(gk_capacity(0, 10, 2, 4), 10);
    EXPECT_EQ(gk_capacity(1.0, 10, 2, 4), 5);
    EXPECT_EQ(gk_capacity(1.25, 7, 2, 8), 3);   /* ceil(2.1875) */
    EXPECT_EQ(gk_capacity(100, 10, 2, 4), 10);  /* clamped to T */
    EXPECT_EQ(gk_capacity(0.01, 10, 2, 4), 1);  /* clamped to 1 */
    return test_done();
}
