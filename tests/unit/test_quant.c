/* runtime/quant.c against its reference twin (tests/ref/ref_quant.c) and against the formats' own
 * bounds: bit-identical dequantisation of random blocks, quantiser bytes of hand-made blocks,
 * quantisation error bounds, K-quantisers no worse than plain round-to-nearest, both dot products,
 * and (when ../shared/goldens/gguf exists) the bytes llama-quantize wrote for the tiny Mixtral. */
#include <stdlib.h>

#include "quant.h"
#include "ref/ref_quant.h"
#include "test.h"

static const DType QTYPES[] = {DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_Q8_0, DT_Q4_K, DT_Q5_K, DT_Q6_K};
enum { NQ = sizeof QTYPES / sizeof QTYPES[0] };

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t next(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}
static double unif(void) { return (double)(next() >> 11) / 9007199254740992.0; } /* [0, 1) */
static float gauss(void) { return (float)(sqrt(-2 * log(1 - unif())) * cos(6.283185307179586 * unif())); }

/* Blocks in a row: 7 for the 32-element types, 3 for the K types (n not a power of two either way). */
static int64_t row_len(DType t) { return dtype_block_elems(t) == 32 ? 7 * 32 : 3 * 256; }

/* Offsets of a block's f16 fields (-1 ends the list). */
static const int *f16_fields(DType t) {
    static const int d[] = {0, -1}, dm[] = {0, 2, -1}, q6[] = {208, -1};
    return t == DT_Q6_K ? q6 : (t == DT_Q4_1 || t == DT_Q5_1 || t == DT_Q4_K || t == DT_Q5_K) ? dm : d;
}

/* Random bytes, with every f16 field made finite (exponent 31 -> 30). */
static uint8_t *random_row(DType t, int64_t n) {
    size_t bytes = quant_row_bytes(t, n), bb = dtype_block_bytes(t);
    uint8_t *w = malloc(bytes);
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)next();
    for (size_t blk = 0; blk < bytes / bb; blk++)
        for (const int *f = f16_fields(t); *f >= 0; f++) {
            uint8_t *hi = w + blk * bb + *f + 1;
            if ((*hi & 0x7c) == 0x7c) *hi &= (uint8_t)~0x04;
        }
    return w;
}

static void t_row_bytes_and_names(void) {
    EXPECT_EQ(quant_row_bytes(DT_Q4_0, 64), 36);
    EXPECT_EQ(quant_row_bytes(DT_Q8_0, 96), 102);
    EXPECT_EQ(quant_row_bytes(DT_Q4_K, 512), 288);
    EXPECT_EQ(quant_row_bytes(DT_Q6_K, 256), 210);
    EXPECT_EQ(quant_row_bytes(DT_F32, 5), 20);
    EXPECT_EQ(quant_row_bytes(DT_BF16, 5), 10);
    EXPECT_EQ(quant_type_from_name("q8_0"), DT_Q8_0);
    EXPECT_EQ(quant_type_from_name("Q4_K"), DT_Q4_K);
    EXPECT_EQ(quant_type_from_name("q6_k"), DT_Q6_K);
    EXPECT_EQ(quant_type_from_name("BF16"), DT_BF16);
    EXPECT_EQ(quant_type_from_name("q4_k_m"), DT_COUNT);
    EXPECT_EQ(quant_type_from_name("route"), DT_COUNT);
    EXPECT_EQ(quant_type_from_name(""), DT_COUNT);
}

/* Random blocks dequantise to the same bits in quant.c and in the reference twin. */
static void t_dequant_random(DType t) {
    for (int rep = 0; rep < 20; rep++) {
        int64_t n = row_len(t);
        uint8_t *w = random_row(t, n);
        float *got = malloc(sizeof(float) * (size_t)n), *want = malloc(sizeof(float) * (size_t)n);
        quant_dequant_row(t, w, got, n);
        ref_dequant(t, w, want, n);
        int64_t bad = -1;
        for (int64_t i = 0; i < n && bad < 0; i++)
            if (memcmp(&got[i], &want[i], 4) != 0) bad = i;
        if (bad >= 0) fprintf(stderr, "%s: element %lld: %.9g, want %.9g\n", dtype_name(t), (long long)bad, got[bad], want[bad]);
        EXPECT_TRUE(bad < 0);
        free(w), free(got), free(want);
    }
}

static void t_dequant_plain(void) {
    uint16_t h[3] = {f32_to_f16(1.5f), f32_to_bf16(-2.25f), 0x3c00};
    float y[3];
    quant_dequant_row(DT_F16, h, y, 1);
    EXPECT_TRUE(y[0] == 1.5f);
    quant_dequant_row(DT_BF16, h + 1, y, 1);
    EXPECT_TRUE(y[0] == -2.25f);
    float f[3] = {1, -2, 3.5f};
    quant_dequant_row(DT_F32, f, y, 3);
    EXPECT_TRUE(memcmp(f, y, sizeof f) == 0);
    EXPECT_NEAR(quant_dot_exact(DT_F32, f, f, 3), 1 + 4 + 12.25, 0);
}

/* Hand-made blocks and the bytes ggml's reference quantisers give for them. */
static void t_quantize_by_hand(void) {
    /* Q8_0: amax = 12.7, d = 12.7 / 127 = 0.1, stored as f16 0x2e66 (0.0999755859375; 0x2e67 is
     * 0.1000366 and farther). Levels roundf(x * 10): 12.7 -> 127 (0x7f), -1.0 -> -10 (0xf6),
     * 0.26 -> 2.6 -> 3, -0.34 -> -3.4 -> -3 (0xfd), 3.14 -> 31.4 -> 31 (0x1f), -12.0 -> -120 (0x88);
     * the other 26 are 0. (No x * 10 is near a half, so the f32 rounding of 1/d cannot matter.) */
    float x8[32] = {12.7f, -1.0f, 0.26f, -0.34f, 3.14f, -12.0f};
    uint8_t want8[34] = {0x66, 0x2e, 0x7f, 0xf6, 0x03, 0xfd, 0x1f, 0x88}, got8[34];
    quant_quantize_row(DT_Q8_0, x8, got8, 32);
    EXPECT_TRUE(memcmp(got8, want8, 34) == 0);

    /* Q4_0: the largest magnitude is x[0] = -4, so d = -4 / -8 = 0.5 (f16 0x3800) and 1/d = 2.
     * Level = min(15, trunc(2x + 8.5)): -4 -> 0.5 -> 0; 3.9 -> 16.3 -> 15 (clamped); 1.0 -> 10.5 -> 10
     * (a half rounds up); -1.2 -> 6.1 -> 6; 0.3 -> 9.1 -> 9; x[16] = 2.2 -> 12.9 -> 12;
     * x[17] = -0.8 -> 6.9 -> 6; zeros -> 8. Byte j = level[j] | level[j + 16] << 4:
     * 0 | 12 << 4 = 0xc0, 15 | 6 << 4 = 0x6f, 10 | 8 << 4 = 0x8a, 0x86, 0x89, then 0x88 x 11. */
    float x4[32] = {-4.0f, 3.9f, 1.0f, -1.2f, 0.3f};
    x4[16] = 2.2f, x4[17] = -0.8f;
    uint8_t want4[18] = {0x00, 0x38, 0xc0, 0x6f, 0x8a, 0x86, 0x89}, got4[18];
    memset(want4 + 7, 0x88, 11);
    quant_quantize_row(DT_Q4_0, x4, got4, 32);
    EXPECT_TRUE(memcmp(got4, want4, 18) == 0);
    float back[256];
    quant_dequant_row(DT_Q4_0, got4, back, 32);
    EXPECT_TRUE(back[0] == -4.0f && back[1] == 3.5f && back[2] == 1.0f && back[3] == -1.0f && back[16] == 2.0f);

    /* An all-zero block stays all zero in every type. */
    float z[256] = {0};
    for (int k = 0; k < NQ; k++) {
        uint8_t b[210];
        int64_t n = dtype_block_elems(QTYPES[k]);
        quant_quantize_row(QTYPES[k], z, b, n);
        quant_dequant_row(QTYPES[k], b, back, n);
        EXPECT_TRUE(back[0] == 0 && back[n - 1] == 0);
    }
}

/* A test row: gaussian blocks, one with an outlier, one constant, one all positive. */
static float *test_row(int64_t n) {
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = gauss() * 0.05f;
    x[3] = 0.9f;
    for (int64_t i = 32; i < 64; i++) x[i] = -0.125f;
    for (int64_t i = 64; i < 96; i++) x[i] = fabsf(x[i]) + 0.01f;
    return x;
}

/* Round-to-nearest types: every element within the format's own bound. With s the f32 scale the
 * quantiser computes and s16 its f16 copy, an element on level q is off by at most s/2 (rounding) +
 * |q| * |s - s16| (the f16 scale) [+ |min - m16|]; the Q4_0/Q5_0 element whose level clamps at the
 * top (the opposite sign of the largest magnitude) is off by up to a whole s. */
static void t_quantize_bounds(DType t) {
    int64_t n = row_len(t);
    float *x = test_row(n), *y = malloc(sizeof(float) * (size_t)n);
    uint8_t *w = malloc(quant_row_bytes(t, n));
    quant_quantize_row(t, x, w, n);
    quant_dequant_row(t, w, y, n);
    int ok = 1;
    for (int64_t blk = 0; blk < n / 32; blk++) {
        const float *xb = x + 32 * blk;
        const uint8_t *b = w + blk * dtype_block_bytes(t);
        float amax = 0, smax = 0, mn = xb[0], mx = xb[0];
        for (int i = 0; i < 32; i++) {
            if (fabsf(xb[i]) > amax) amax = fabsf(xb[i]), smax = xb[i];
            mn = fminf(mn, xb[i]), mx = fmaxf(mx, xb[i]);
        }
        RefQElem e = ref_qelem(t, b, 0);
        double s, bound_extra = 0;
        int qmax;
        switch (t) {
        case DT_Q8_0: s = amax / 127.0f, qmax = 127; break;
        case DT_Q4_0: s = smax / -8.0f, qmax = 8; break;
        case DT_Q5_0: s = smax / -16.0f, qmax = 16; break;
        case DT_Q4_1: s = (mx - mn) / 15.0f, qmax = 15, bound_extra = fabs(mn - e.m); break;
        default: s = (mx - mn) / 31.0f, qmax = 31, bound_extra = fabs(mn - e.m); break;
        }
        for (int i = 0; i < 32; i++) {
            double err = fabs((double)y[32 * blk + i] - xb[i]);
            double half = (t == DT_Q4_0 || t == DT_Q5_0) && xb[i] / s > qmax - 1.5 ? 1.0 : 0.5;
            double bound = half * fabs(s) + qmax * fabs(s - e.d) + bound_extra + 1e-7 * amax;
            if (err > bound) {
                if (ok) fprintf(stderr, "%s block %lld elem %d: |err| %.3g > %.3g\n", dtype_name(t), (long long)blk, i, err, bound);
                ok = 0;
            }
        }
    }
    EXPECT_TRUE(ok);
    free(x), free(y), free(w);
}

/* ---- K types: squared error against plain round-to-nearest with the same format ---- */

static double sq_err(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s;
}

/* Plain RTN of one super-block, written as values (the dequantised result), not bytes: each sub-block
 * takes scale (max - min) / nmax and min -min(min, 0) (Q4_K/Q5_K) or scale amax / 31 (Q6_K), the
 * super-block scales are the largest over 63 (Q6_K: 127) rounded to f16, sub-scales round to nearest. */
static void rtn_k(DType t, const float *x, float *y) {
    if (t == DT_Q6_K) {
        float s[16], smax = 0;
        for (int g = 0; g < 16; g++) {
            float a = 0;
            for (int i = 0; i < 16; i++) a = fmaxf(a, fabsf(x[16 * g + i]));
            s[g] = a / 31, smax = fmaxf(smax, s[g]);
        }
        float d = f16_to_f32(f32_to_f16(smax / 127));
        for (int g = 0; g < 16; g++) {
            float sg = d * (float)(d > 0 ? lrintf(s[g] / d) : 0);
            for (int i = 0; i < 16; i++) {
                long q = sg > 0 ? lrintf(x[16 * g + i] / sg) : 0;
                q = q < -32 ? -32 : q > 31 ? 31 : q;
                y[16 * g + i] = sg * (float)q;
            }
        }
        return;
    }
    int nmax = t == DT_Q5_K ? 31 : 15;
    float s[8], m[8], smax = 0, mmax = 0;
    for (int j = 0; j < 8; j++) {
        float lo = 0, hi = x[32 * j];
        for (int i = 0; i < 32; i++) lo = fminf(lo, x[32 * j + i]), hi = fmaxf(hi, x[32 * j + i]);
        s[j] = (hi - lo) / (float)nmax, m[j] = -lo;
        smax = fmaxf(smax, s[j]), mmax = fmaxf(mmax, m[j]);
    }
    float d = f16_to_f32(f32_to_f16(smax / 63)), dm = f16_to_f32(f32_to_f16(mmax / 63));
    for (int j = 0; j < 8; j++) {
        long ls = d > 0 ? lrintf(s[j] / d) : 0, lm = dm > 0 ? lrintf(m[j] / dm) : 0;
        ls = ls > 63 ? 63 : ls, lm = lm > 63 ? 63 : lm;
        float sj = d * (float)ls, mj = dm * (float)lm;
        for (int i = 0; i < 32; i++) {
            long q = sj > 0 ? lrintf((x[32 * j + i] + mj) / sj) : 0;
            q = q < 0 ? 0 : q > nmax ? nmax : q;
            y[32 * j + i] = sj * (float)q - mj;
        }
    }
}

static void t_quantize_k(DType t) {
    int64_t n = 5 * 256;
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n), *r = malloc(sizeof(float) * (size_t)n);
    uint8_t *w = malloc(quant_row_bytes(t, n));
    for (int rep = 0; rep < 4; rep++) {
        for (int64_t i = 0; i < n; i++) x[i] = gauss() * (rep == 3 ? 3.0f : 0.02f) + (rep == 2 ? 0.01f : 0.0f);
        quant_quantize_row(t, x, w, n);
        quant_dequant_row(t, w, y, n);
        for (int64_t blk = 0; blk < n / 256; blk++) rtn_k(t, x + 256 * blk, r + 256 * blk);
        double e = sq_err(y, x, n), e_rtn = sq_err(r, x, n), sx = sq_err(x, r, 0);
        for (int64_t i = 0; i < n; i++) sx += (double)x[i] * x[i];
        printf("%s rep %d: nmse %.3g (round-to-nearest %.3g)\n", dtype_name(t), rep, e / sx, e_rtn / sx);
        EXPECT_TRUE(e <= e_rtn);
        EXPECT_TRUE(e / sx < (t == DT_Q4_K ? 1e-2 : t == DT_Q5_K ? 3e-3 : 1e-3));
    }
    /* a constant negative block, an all-positive block and a zero block survive */
    for (int64_t i = 0; i < 256; i++) x[i] = -0.5f, x[256 + i] = 1.0f + 0.001f * (float)i, x[512 + i] = 0;
    quant_quantize_row(t, x, w, 768);
    quant_dequant_row(t, w, y, 768);
    EXPECT_NEAR(y[17], -0.5f, 0.5 / 63);
    EXPECT_NEAR(y[256 + 100], 1.1f, 0.03);
    EXPECT_TRUE(y[512] == 0 && y[767] == 0);
    free(x), free(y), free(r), free(w);
}

/* ---- dot products ---- */

static void t_dot_exact(DType t) {
    int64_t n = row_len(t);
    uint8_t *w = random_row(t, n);
    /* small random f16 scales keep the products in range */
    for (size_t blk = 0; blk < quant_row_bytes(t, n) / dtype_block_bytes(t); blk++)
        for (const int *f = f16_fields(t); *f >= 0; f++) {
            uint16_t h = f32_to_f16((float)(unif() - 0.5) * 0.01f);
            memcpy(w + blk * dtype_block_bytes(t) + *f, &h, 2);
        }
    float *x = malloc(sizeof(float) * (size_t)n), *wf = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = gauss();
    ref_dequant(t, w, wf, n);
    double want = 0, mag = 0;
    for (int64_t i = 0; i < n; i++) want += (double)wf[i] * x[i], mag += fabs((double)wf[i] * x[i]);
    float got = quant_dot_exact(t, w, x, n);
    EXPECT_NEAR(got, want, (double)(n + 2) * 6e-8 * mag);
    /* the stated arithmetic exactly: fmaf in order of i */
    float acc = 0;
    for (int64_t i = 0; i < n; i++) acc = fmaf(wf[i], x[i], acc);
    EXPECT_TRUE(got == acc);

    /* int8 mode: the activation quantiser, then the documented arithmetic over the ref's integers */
    QuantAct xa = quant_act_view(malloc(quant_act_bytes(n)), n);
    quant_act_q8(x, &xa);
    int ok = 1;
    for (int64_t b = 0; b < n / 32; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[32 * b + i]));
        float d = amax / 127;
        int s = 0;
        for (int i = 0; i < 32; i++) {
            int q = (int)roundf(x[32 * b + i] * (1.0f / d));
            ok &= xa.q[32 * b + i] == q && fabsf(x[32 * b + i] - d * (float)q) <= 0.5001f * d;
            s += q;
        }
        ok &= xa.d[b] == d && xa.sum[b] == s;
    }
    EXPECT_TRUE(ok);
    int64_t be = dtype_block_elems(t);
    float acc8 = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        const uint8_t *blk = w + (32 * b / be) * dtype_block_bytes(t);
        int isum = 0, msum = 0;
        RefQElem e = ref_qelem(t, blk, (int)(32 * b % be));
        for (int i = 0; i < 32; i++) {
            RefQElem ei = ref_qelem(t, blk, (int)((32 * b + i) % be));
            isum += ei.sc * ei.q * xa.q[32 * b + i];
            msum += ei.mn * xa.q[32 * b + i];
        }
        acc8 = fmaf(e.d * xa.d[b], (float)isum, acc8);
        if (e.has_min) acc8 = fmaf(e.m * xa.d[b], (float)msum, acc8);
    }
    float got8 = quant_dot_int8(t, w, &xa, n);
    if (got8 != acc8) fprintf(stderr, "%s int8: %.9g, want %.9g\n", dtype_name(t), got8, acc8);
    EXPECT_TRUE(got8 == acc8);
    /* and it approximates the exact product: each activation is off by at most d/2 */
    double bound = 0;
    for (int64_t i = 0; i < n; i++) bound += fabs((double)wf[i]) * xa.d[i / 32] * 0.5;
    EXPECT_NEAR(got8, want, bound * 1.01 + (double)n * 1e-7 * mag);
    free(w), free(x), free(wf), free(xa.d);
}

/* ---- the goldens: tensors llama-quantize made from gguf_mixtral_f32 ---- */

typedef struct Gguf {
    uint8_t *buf;
    size_t len, data;
    size_t pos;
} Gguf;

static uint64_t rd(Gguf *g, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes && g->pos + (size_t)i < g->len; i++) v |= (uint64_t)g->buf[g->pos + i] << (8 * i);
    g->pos += (size_t)bytes;
    return v;
}
static void skip_value(Gguf *g, uint32_t type) {
    static const int size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == 8) {
        g->pos += rd(g, 8);
    } else if (type == 9) {
        uint32_t et = (uint32_t)rd(g, 4);
        uint64_t cnt = rd(g, 8);
        for (uint64_t i = 0; i < cnt && g->pos < g->len; i++) skip_value(g, et);
    } else {
        g->pos += type < 13 ? (size_t)size[type] : g->len;
    }
}
/* Finds tensor `name` in the GGUF file: its ggml type id, element count and data. */
static const uint8_t *gguf_tensor(Gguf *g, const char *name, uint32_t *type, int64_t *nel) {
    g->pos = 8;
    uint64_t nt = rd(g, 8), nkv = rd(g, 8), align = 32;
    for (uint64_t i = 0; i < nkv && g->pos < g->len; i++) {
        uint64_t kl = rd(g, 8);
        int is_align = kl == 17 && memcmp(g->buf + g->pos, "general.alignment", 17) == 0;
        g->pos += kl;
        uint32_t vt = (uint32_t)rd(g, 4);
        if (is_align) align = rd(g, 4);
        else skip_value(g, vt);
    }
    const uint8_t *found = NULL;
    uint64_t off = 0;
    for (uint64_t i = 0; i < nt && g->pos < g->len; i++) {
        uint64_t nl = rd(g, 8);
        int match = nl == strlen(name) && memcmp(g->buf + g->pos, name, nl) == 0;
        g->pos += nl;
        uint32_t nd = (uint32_t)rd(g, 4);
        int64_t ne = 1;
        for (uint32_t k = 0; k < nd; k++) ne *= (int64_t)rd(g, 8);
        uint32_t ty = (uint32_t)rd(g, 4);
        uint64_t o = rd(g, 8);
        if (match) *type = ty, *nel = ne, off = o, found = g->buf;
    }
    size_t data = (g->pos + align - 1) / align * align;
    return found && data + off < g->len ? g->buf + data + off : NULL;
}

static void t_goldens(void) {
    const char *dir = MOEC_SHARED_DIR "/goldens/gguf";
    char p32[512], p8[512], p4[512];
    snprintf(p32, sizeof p32, "%s/gguf_mixtral_f32/model/model-F32.gguf", dir);
    snprintf(p8, sizeof p8, "%s/gguf_mixtral_q8_0/model/model-Q8_0.gguf", dir);
    snprintf(p4, sizeof p4, "%s/gguf_mixtral_per_expert_q4_0/model/model-Q4_0.gguf", dir);
    Gguf f = {0}, q8 = {0}, q4 = {0};
    f.buf = (uint8_t *)test_read_file(p32, &f.len);
    q8.buf = (uint8_t *)test_read_file(p8, &q8.len);
    q4.buf = (uint8_t *)test_read_file(p4, &q4.len);
    if (!f.buf || !q8.buf || !q4.buf) {
        printf("goldens: %s etc. not found; skipped\n", p32);
        free(f.buf), free(q8.buf), free(q4.buf);
        return;
    }
    const char *names[] = {"blk.0.attn_q.weight", "blk.1.attn_output.weight", "blk.0.ffn_down.2.weight"};
    int checked = 0;
    for (int k = 0; k < 3; k++) {
        uint32_t tf = 99, tq = 99;
        int64_t nf = 0, nq = 0;
        /* expert 2's down matrix: the slice of the stacked F32 tensor (experts outermost) */
        const char *src = k == 2 ? "blk.0.ffn_down_exps.weight" : names[k];
        const uint8_t *xf = gguf_tensor(&f, src, &tf, &nf);
        Gguf *gq = k == 0 ? &q8 : &q4;
        DType dt = k == 0 ? DT_Q8_0 : DT_Q4_0;
        const uint8_t *wq = gguf_tensor(gq, names[k], &tq, &nq);
        if (!xf || !wq || tf != 0 || tq != (k == 0 ? 8u : 2u)) {
            printf("goldens: %s not found as expected (types %u, %u); skipped\n", names[k], tf, tq);
            continue;
        }
        if (k == 2) xf += (size_t)nq * 2 * 4;
        size_t bytes = quant_row_bytes(dt, nq);
        uint8_t *mine = malloc(bytes);
        float *x = malloc(sizeof(float) * (size_t)nq);
        memcpy(x, xf, sizeof(float) * (size_t)nq);
        quant_quantize_row(dt, x, mine, nq);
        size_t diff = 0;
        for (size_t i = 0; i < bytes; i++) diff += mine[i] != wq[i];
        if (diff) printf("goldens: %s: %zu of %zu bytes differ from llama-quantize's\n", names[k], diff, bytes);
        EXPECT_EQ(diff, 0);
        checked++;
        free(mine), free(x);
    }
    printf("goldens: %d tensors quantised byte for byte as llama-quantize did\n", checked);
    free(f.buf), free(q8.buf), free(q4.buf);
}

int main(void) {
    t_row_bytes_and_names();
    t_dequant_plain();
    for (int k = 0; k < NQ; k++) t_dequant_random(QTYPES[k]);
    t_quantize_by_hand();
    for (int k = 0; k < 5; k++) t_quantize_bounds(QTYPES[k]);
    for (int k = 5; k < NQ; k++) t_quantize_k(QTYPES[k]);
    for (int k = 0; k < NQ; k++) t_dot_exact(QTYPES[k]);
    t_goldens();
    return test_done();
}
