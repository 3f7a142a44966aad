/* quant.c: ggml's block formats, decoded through one internal form.
 *
 * Every block of every type decodes to a Block: one integer level per element, an integer scale per
 * group of elements, an f32 super scale D and (types with a min) an f32 M and an integer min per group:
 *     x[i] = (D * sc[g]) * lev[i]  [+ M * mn[g]]
 * That is exactly the arithmetic of ggml's dequantisers (for Q4_0..Q8_0, sc = mn = 1 and D * 1 = D), and
 * the int8 dot product reads the same integers. The quantisers write blocks directly. */
#include "quant.h"

#include <assert.h>
#include <ctype.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

static float ld_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return f16_to_f32(h);
}
static void st_f16(uint8_t *p, float f) {
    uint16_t h = f32_to_f16(f);
    memcpy(p, &h, 2);
}
static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* a * b rounded to f32 on its own. ggml's reference quantisers are built without FMA contraction;
 * GCC's default (-ffp-contract=fast) would fuse a * b + c into one fma and change a level now and
 * then, so the Q*_0/Q*_1 quantisers take their products through here. */
static float mul_rounded(float a, float b) {
    volatile float p = a * b;
    return p;
}

/* The 8 six-bit scales and mins of a Q4_K/Q5_K super-block in 12 bytes. Sub-blocks 0-3: scale in
 * the low 6 bits of byte j, min in the low 6 bits of byte j + 4. Sub-blocks 4-7: low 4 bits of the
 * scale and of the min in the low and high nibble of byte j + 4; their top 2 bits in the top 2 bits
 * of byte j - 4 (scale) and byte j (min). */
static void kscales_get(const uint8_t *s, int sc[8], int mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
    }
    for (int j = 4; j < 8; j++) {
        sc[j] = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}
static void kscales_put(uint8_t *s, const int sc[8], const int mn[8]) {
    memset(s, 0, 12);
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)sc[j];
        s[j + 4] = (uint8_t)mn[j];
    }
    for (int j = 4; j < 8; j++) {
        s[j + 4] = (uint8_t)((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
        s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
        s[j] |= (uint8_t)((mn[j] >> 4) << 6);
    }
}

/* ------------------------------------------------------------------ decoding */

typedef struct Block {
    int n;            /* elements: 32 or 256 */
    int group;        /* elements per scale group: 32 (Q6_K: 16) */
    int has_min;
    float D, M;       /* super scale; min scale (M is -dmin for the K types) */
    int sc[16];       /* [n / group] integer scale per group (1 unless a K type) */
    int mn[8];        /* [n / 32] integer min per group (1 for Q4_1/Q5_1) */
    int8_t lev[256];  /* [n] integer level of each element */
} Block;

static void decode(DType t, const uint8_t *b, Block *k) {
    k->n = (int)dtype_block_elems(t);
    k->group = 32;
    k->has_min = 0;
    k->M = 0;
    for (int g = 0; g < 16; g++) k->sc[g] = 1;
    for (int g = 0; g < 8; g++) k->mn[g] = 1;
    switch (t) {
    case DT_Q4_0: /* d, qs[16] */
        k->D = ld_f16(b);
        for (int j = 0; j < 16; j++) {
            k->lev[j] = (int8_t)((b[2 + j] & 0xF) - 8);
            k->lev[j + 16] = (int8_t)((b[2 + j] >> 4) - 8);
        }
        break;
    case DT_Q4_1: /* d, m, qs[16] */
        k->D = ld_f16(b), k->M = ld_f16(b + 2), k->has_min = 1;
        for (int j = 0; j < 16; j++) {
            k->lev[j] = (int8_t)(b[4 + j] & 0xF);
            k->lev[j + 16] = (int8_t)(b[4 + j] >> 4);
        }
        break;
    case DT_Q5_0:
    case DT_Q5_1: { /* d, [m], qh (u32 little-endian: bit i is element i's fifth bit), qs[16] */
        int off = t == DT_Q5_1 ? 4 : 2;
        uint32_t qh = (uint32_t)b[off] | (uint32_t)b[off + 1] << 8 | (uint32_t)b[off + 2] << 16 |
                      (uint32_t)b[off + 3] << 24;
        const uint8_t *qs = b + off + 4;
        int bias = t == DT_Q5_1 ? 0 : 16;
        k->D = ld_f16(b);
        if (t == DT_Q5_1) k->M = ld_f16(b + 2), k->has_min = 1;
        for (int j = 0; j < 16; j++) {
            k->lev[j] = (int8_t)((int)((qs[j] & 0xF) | ((qh >> j) & 1) << 4) - bias);
            k->lev[j + 16] = (int8_t)((int)((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - bias);
        }
        break;
    }
    case DT_Q8_0: /* d, int8 qs[32] */
        k->D = ld_f16(b);
        memcpy(k->lev, b + 2, 32);
        break;
    case DT_Q4_K:
    case DT_Q5_K: { /* d, dmin, scales[12], [qh[32]], qs[128] */
        const uint8_t *qh = b + 16, *qs = b + (t == DT_Q5_K ? 48 : 16);
        k->D = ld_f16(b), k->M = -ld_f16(b + 2), k->has_min = 1;
        kscales_get(b + 4, k->sc, k->mn);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
                if (t == DT_Q5_K) {
                    lo |= ((qh[l] >> (2 * c)) & 1) << 4;
                    hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
                }
                k->lev[64 * c + l] = (int8_t)lo;
                k->lev[64 * c + 32 + l] = (int8_t)hi;
            }
        break;
    }
    case DT_Q6_K: { /* ql[128], qh[64], int8 scales[16], d */
        const uint8_t *ql = b, *qh = b + 128;
        k->group = 16;
        k->D = ld_f16(b + 208);
        for (int g = 0; g < 16; g++) k->sc[g] = (int8_t)b[192 + g];
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *lq = ql + 64 * h, hb = qh[32 * h + l];
                int q0 = (lq[l] & 0xF) | (hb & 3) << 4;
                int q1 = (lq[l + 32] & 0xF) | ((hb >> 2) & 3) << 4;
                int q2 = (lq[l] >> 4) | ((hb >> 4) & 3) << 4;
                int q3 = (lq[l + 32] >> 4) | ((hb >> 6) & 3) << 4;
                int8_t *y = k->lev + 128 * h + l;
                y[0] = (int8_t)(q0 - 32), y[32] = (int8_t)(q1 - 32);
                y[64] = (int8_t)(q2 - 32), y[96] = (int8_t)(q3 - 32);
            }
        break;
    }
    default:
        assert(!"decode: not a block type");
    }
}

/* dst[0..k->n) = the block's values, with ggml's order of operations: (D * sc) * lev, then + M * mn.
 * D * sc and D * sc * lev are exact in f32 (an f16 significand < 2^11, |sc| <= 128 and |lev| <= 32, or
 * |lev| <= 128 with sc = 1, multiply to less than 2^24), so the only rounding is the final addition,
 * as in ggml, and FMA contraction cannot change a value. */
static void block_values(const Block *k, float *dst) {
    for (int i = 0; i < k->n; i++) {
        float s = k->D * (float)k->sc[i / k->group];
        float v = s * (float)k->lev[i];
        if (k->has_min) v = v + k->M * (float)k->mn[i / 32];
        dst[i] = v;
    }
}

size_t quant_row_bytes(DType t, int64_t n) {
    int64_t be = dtype_block_elems(t);
    assert(n % be == 0 && dtype_block_bytes(t) > 0);
    return (size_t)(n / be) * dtype_block_bytes(t);
}

void quant_dequant_row(DType t, const void *src, float *dst, int64_t n) {
    if (!dtype_is_quant(t)) {
        for (int64_t i = 0; i < n; i++) dst[i] = dtype_load_f32(t, src, (size_t)i);
        return;
    }
    int64_t be = dtype_block_elems(t);
    size_t bb = dtype_block_bytes(t);
    assert(n % be == 0);
    Block k;
    for (int64_t blk = 0; blk < n / be; blk++) {
        decode(t, (const uint8_t *)src + (size_t)blk * bb, &k);
        block_values(&k, dst + blk * be);
    }
}

/* ------------------------------------------------------------------ quantisers: ggml's RTN types */

/* The signed value of largest magnitude (the first, on ties), as ggml's Q4_0/Q5_0 pick it. */
static float signed_amax(const float *x, int n) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    return max;
}

/* Q4_0 (bits 4) and Q5_0 (bits 5): d = max / -2^(bits-1), so the largest magnitude maps to level 0;
 * level = min(2^bits - 1, trunc(x / d + 2^(bits-1) + 0.5)). */
static void quantize_sym(const float *x, uint8_t *b, int bits) {
    float half = (float)(1 << (bits - 1)), d = signed_amax(x, 32) / -half, id = d != 0 ? 1.0f / d : 0.0f;
    int top = (1 << bits) - 1, lev[32];
    st_f16(b, d);
    for (int i = 0; i < 32; i++) lev[i] = clampi((int8_t)(mul_rounded(x[i], id) + (half + 0.5f)), 0, top);
    uint8_t *qs = b + (bits == 5 ? 6 : 2);
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((lev[j] & 0xF) | (lev[j + 16] & 0xF) << 4);
        qh |= (uint32_t)(lev[j] >> 4) << j | (uint32_t)(lev[j + 16] >> 4) << (j + 16);
    }
    if (bits == 5)
        for (int i = 0; i < 4; i++) b[2 + i] = (uint8_t)(qh >> (8 * i));
}

/* Q4_1 and Q5_1: d = (max - min) / (2^bits - 1), m = min; level = trunc((x - min) / d + 0.5). */
static void quantize_asym(const float *x, uint8_t *b, int bits) {
    float min = x[0], max = x[0];
    for (int i = 1; i < 32; i++) min = fminf(min, x[i]), max = fmaxf(max, x[i]);
    int top = (1 << bits) - 1, lev[32];
    float d = (max - min) / (float)top, id = d != 0 ? 1.0f / d : 0.0f;
    st_f16(b, d);
    st_f16(b + 2, min);
    for (int i = 0; i < 32; i++) lev[i] = clampi((int)(mul_rounded(x[i] - min, id) + 0.5f), 0, top);
    uint8_t *qs = b + (bits == 5 ? 8 : 4);
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((lev[j] & 0xF) | (lev[j + 16] & 0xF) << 4);
        qh |= (uint32_t)(lev[j] >> 4) << j | (uint32_t)(lev[j + 16] >> 4) << (j + 16);
    }
    if (bits == 5)
        for (int i = 0; i < 4; i++) b[4 + i] = (uint8_t)(qh >> (8 * i));
}

/* Q8_0: d = amax / 127, level = roundf(x / d) (halves away from zero). */
static void quantize_q8_0(const float *x, uint8_t *b) {
    float amax = 0;
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
    float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
    st_f16(b, d);
    for (int i = 0; i < 32; i++) b[2 + i] = (uint8_t)(int8_t)roundf(x[i] * id);
}

/* ------------------------------------------------------------------ quantisers: K types
 *
 * Per sub-block, a least-squares search: for each of a fan of trial grids, round every element to
 * its nearest level, fit the best scale (and min) to those levels in closed form, and keep the fit
 * of least squared error; then alternate "round to the fitted grid, refit" while it improves. The
 * super-block then stores its f16 scale(s) and each sub-block's integer scale (and min), chosen
 * among the nearest three (or 3 x 3) by the squared error the dequantiser will really give. */

/* Error and levels of x[0..n) on the grid v = s * l - m, l in [lo, hi] (s > 0 or m > 0 or both 0). */
static double grid_round(const float *x, int n, double s, double m, int lo, int hi, int *lev) {
    double err = 0;
    for (int i = 0; i < n; i++) {
        int l = s != 0 ? clampi((int)lrint((x[i] + m) / s), lo, hi) : 0;
        double e = s * l - m - x[i];
        lev[i] = l, err += e * e;
    }
    return err;
}

/* Best s >= 0, m >= 0 with x ~ s * l - m, l in [0, nmax], for the 32 values x. Returns the error. */
static double fit_scale_min(const float *x, int nmax, double *s_out, double *m_out) {
    enum { N = 32 };
    double lo = 0, hi = x[0];
    for (int i = 0; i < N; i++) lo = fmin(lo, x[i]), hi = fmax(hi, x[i]);
    double best_s = 0, best_m = -lo, best = 0;
    int lev[N];
    for (int i = 0; i < N; i++) best += (x[i] - lo) * (x[i] - lo); /* s = 0: everything at lo */
    if (hi <= lo) {
        *s_out = 0, *m_out = -lo;
        return best;
    }
    /* The fan: nmax levels plus -1.5 .. +1.5 in steps of 0.1 across [lo, hi], then refinement. */
    double s = 0, m = 0;
    for (int step = -15; step <= 15 + 8; step++) {
        if (step <= 15) {
            s = (hi - lo) / (nmax + 0.1 * step), m = -lo;
        } else if (best_s == 0) {
            break;
        } else {
            s = best_s, m = best_m; /* refinement: round on the best fit so far, refit */
        }
        grid_round(x, N, s, m, 0, nmax, lev);
        /* least squares of x = s * l + c over (s, c), then c <= 0 (m = -c >= 0) */
        double sl = 0, sl2 = 0, sx = 0, sxl = 0;
        for (int i = 0; i < N; i++) sl += lev[i], sl2 += (double)lev[i] * lev[i], sx += x[i], sxl += (double)x[i] * lev[i];
        double det = N * sl2 - sl * sl, fs, fc;
        if (det <= 0) continue;
        fs = (N * sxl - sx * sl) / det, fc = (sl2 * sx - sl * sxl) / det;
        if (fc > 0) fc = 0, fs = sxl / sl2;
        if (fs <= 0) continue;
        double err = grid_round(x, N, fs, -fc, 0, nmax, lev);
        if (err < best) {
            best = err, best_s = fs, best_m = -fc;
        } else if (step > 15) {
            break;
        }
    }
    *s_out = best_s, *m_out = best_m;
    return best;
}

/* Q4_K (nmax 15) and Q5_K (nmax 31). */
static void quantize_k_min(const float *x, uint8_t *b, DType t) {
    int nmax = t == DT_Q5_K ? 31 : 15, sc[8], mn[8], lev[256];
    double s[8], m[8], smax = 0, mmax = 0;
    for (int j = 0; j < 8; j++) {
        fit_scale_min(x + 32 * j, nmax, &s[j], &m[j]);
        smax = fmax(smax, s[j]), mmax = fmax(mmax, m[j]);
    }
    st_f16(b, (float)(smax / 63));
    st_f16(b + 2, (float)(mmax / 63));
    float d = ld_f16(b), dmin = ld_f16(b + 2);
    for (int j = 0; j < 8; j++) {
        const float *xj = x + 32 * j;
        int sc0 = d > 0 ? clampi((int)lrint(s[j] / d), 0, 63) : 0;
        int mn0 = dmin > 0 ? clampi((int)lrint(m[j] / dmin), 0, 63) : 0;
        double best = -1;
        for (int ds = -1; ds <= 1; ds++)
            for (int dm = -1; dm <= 1; dm++) {
                int cs = sc0 + ds, cm = mn0 + dm, l[32];
                if (cs < 0 || cs > 63 || cm < 0 || cm > 63) continue;
                float fs = d * (float)cs, fm = dmin * (float)cm; /* as the dequantiser forms them */
                double err = 0;
                for (int i = 0; i < 32; i++) {
                    l[i] = fs != 0 ? clampi((int)lrintf((xj[i] + fm) / fs), 0, nmax) : 0;
                    double e = (double)(fs * (float)l[i] - fm) - xj[i];
                    err += e * e;
                }
                if (best < 0 || err < best) {
                    best = err, sc[j] = cs, mn[j] = cm;
                    memcpy(lev + 32 * j, l, sizeof l);
                }
            }
    }
    kscales_put(b + 4, sc, mn);
    uint8_t *qh = b + 16, *qs = b + (t == DT_Q5_K ? 48 : 16);
    if (t == DT_Q5_K) memset(qh, 0, 32);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int lo = lev[64 * c + l], hi = lev[64 * c + 32 + l];
            qs[32 * c + l] = (uint8_t)((lo & 0xF) | (hi & 0xF) << 4);
            if (t == DT_Q5_K) qh[l] |= (uint8_t)((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
        }
}

/* Best signed s with x ~ s * l, l in [-32, 31], for the 16 values x. */
static double fit_scale_sym(const float *x, double *s_out) {
    enum { N = 16 };
    int lev[N];
    double sx2 = 0, best_s = 0;
    for (int i = 0; i < N; i++) sx2 += (double)x[i] * x[i];
    double best = sx2, xm = signed_amax(x, N);
    if (xm == 0) {
        *s_out = 0;
        return 0;
    }
    /* The fan: the largest magnitude xm on level -(32 + 0.1k) (the extra negative level) or on
     * 31 + 0.1k, k = -10..10; then refinement: round on the best fit so far, refit. */
    for (int step = 0; step < 42 + 8; step++) {
        double s;
        if (step < 42) {
            s = xm / (step < 21 ? -(32 + 0.1 * (step - 10)) : 31 + 0.1 * (step - 31));
        } else {
            if (best_s == 0) break;
            s = best_s;
        }
        /* levels of x on s < 0 are minus the levels of x on |s| within [-31, 32] */
        grid_round(x, N, fabs(s), 0, s > 0 ? -32 : -31, s > 0 ? 31 : 32, lev);
        if (s < 0)
            for (int i = 0; i < N; i++) lev[i] = -lev[i];
        double sxl = 0, sl2 = 0;
        for (int i = 0; i < N; i++) sxl += (double)x[i] * lev[i], sl2 += (double)lev[i] * lev[i];
        if (sl2 == 0) continue;
        double fs = sxl / sl2, err = sx2 - fs * sxl;
        if (err < best) {
            best = err, best_s = fs;
        } else if (step >= 42) {
            break;
        }
    }
    *s_out = best_s;
    return best;
}

/* Levels of x[0..16) on the grid s * l, l in [-32, 31] (any sign of s) and their error. */
static double round_sym(const float *x, float s, int *lev) {
    double err = 0;
    for (int i = 0; i < 16; i++) {
        lev[i] = s != 0 ? clampi((int)lrintf(x[i] / s), -32, 31) : 0;
        double e = (double)(s * (float)lev[i]) - x[i];
        err += e * e;
    }
    return err;
}

static void quantize_q6_k(const float *x, uint8_t *b) {
    double s[16], smax = 0;
    int lev[256];
    for (int g = 0; g < 16; g++) {
        fit_scale_sym(x + 16 * g, &s[g]);
        if (fabs(s[g]) > fabs(smax)) smax = s[g];
    }
    memset(b, 0, 210);
    /* the largest sub-scale on integer scale -128 (the one level a signed byte has beyond 127) */
    st_f16(b + 208, (float)(smax / -128));
    float d = ld_f16(b + 208);
    if (d == 0) return; /* everything (rounds to) zero: an all-zero block */
    for (int g = 0; g < 16; g++) {
        int sc0 = clampi((int)lrint(s[g] / d), -128, 127), l[16];
        double best = -1;
        for (int ds = -1; ds <= 1; ds++) {
            int cs = sc0 + ds;
            if (cs < -128 || cs > 127) continue;
            double err = round_sym(x + 16 * g, d * (float)cs, l);
            if (best < 0 || err < best) {
                best = err, b[192 + g] = (uint8_t)(int8_t)cs;
                memcpy(lev + 16 * g, l, sizeof l);
            }
        }
    }
    uint8_t *ql = b, *qh = b + 128;
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            int q[4];
            for (int k = 0; k < 4; k++) q[k] = lev[128 * h + 32 * k + l] + 32;
            ql[64 * h + l] = (uint8_t)((q[0] & 0xF) | (q[2] & 0xF) << 4);
            ql[64 * h + 32 + l] = (uint8_t)((q[1] & 0xF) | (q[3] & 0xF) << 4);
            qh[32 * h + l] = (uint8_t)(q[0] >> 4 | (q[1] >> 4) << 2 | (q[2] >> 4) << 4 | (q[3] >> 4) << 6);
        }
}

void quant_quantize_row(DType t, const float *src, void *dst, int64_t n) {
    int64_t be = dtype_block_elems(t);
    size_t bb = dtype_block_bytes(t);
    assert(n % be == 0);
    for (int64_t blk = 0; blk < n / be; blk++) {
        const float *x = src + blk * be;
        uint8_t *b = (uint8_t *)dst + (size_t)blk * bb;
        switch (t) {
        case DT_F32: memcpy(b, x, 4); break;
        case DT_F16: { uint16_t h = f32_to_f16(*x); memcpy(b, &h, 2); break; }
        case DT_BF16: { uint16_t h = f32_to_bf16(*x); memcpy(b, &h, 2); break; }
        case DT_Q4_0: quantize_sym(x, b, 4); break;
        case DT_Q5_0: quantize_sym(x, b, 5); break;
        case DT_Q4_1: quantize_asym(x, b, 4); break;
        case DT_Q5_1: quantize_asym(x, b, 5); break;
        case DT_Q8_0: quantize_q8_0(x, b); break;
        case DT_Q4_K: case DT_Q5_K: quantize_k_min(x, b, t); break;
        case DT_Q6_K: quantize_q6_k(x, b); break;
        default: assert(!"quant_quantize_row: unsupported type");
        }
    }
}

/* ------------------------------------------------------------------ dot products */

float quant_dot_exact(DType t, const void *w, const float *x, int64_t n) {
    int64_t be = dtype_is_quant(t) ? dtype_block_elems(t) : 256;
    float buf[256], acc = 0.0f;
    assert(!dtype_is_quant(t) || n % be == 0);
    for (int64_t i0 = 0; i0 < n; i0 += be) {
        int64_t m = n - i0 < be ? n - i0 : be;
        quant_dequant_row(t, (const uint8_t *)w + quant_row_bytes(t, i0), buf, m);
        for (int64_t i = 0; i < m; i++) acc = fmaf(buf[i], x[i0 + i], acc);
    }
    return acc;
}

size_t quant_act_bytes(int64_t n) {
    int64_t nb = n / QUANT_ACT_BLOCK;
    return (size_t)nb * (sizeof(float) + sizeof(int32_t)) + (size_t)n;
}

QuantAct quant_act_view(void *buf, int64_t n) {
    assert(n % QUANT_ACT_BLOCK == 0 && ((uintptr_t)buf & 3) == 0);
    int64_t nb = n / QUANT_ACT_BLOCK;
    QuantAct a = {.n = n, .d = buf};
    a.sum = (int32_t *)(a.d + nb);
    a.q = (int8_t *)(a.sum + nb);
    return a;
}

void quant_act_q8(const float *x, QuantAct *out) {
    for (int64_t blk = 0; blk < out->n / QUANT_ACT_BLOCK; blk++) {
        const float *xb = x + blk * QUANT_ACT_BLOCK;
        float amax = 0;
        for (int i = 0; i < QUANT_ACT_BLOCK; i++) amax = fmaxf(amax, fabsf(xb[i]));
        float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int i = 0; i < QUANT_ACT_BLOCK; i++) {
            int8_t q = (int8_t)roundf(xb[i] * id);
            out->q[blk * QUANT_ACT_BLOCK + i] = q;
            sum += q;
        }
        out->d[blk] = d;
        out->sum[blk] = sum;
    }
}

float quant_dot_int8(DType t, const void *w, const QuantAct *xa, int64_t n) {
    int64_t be = dtype_block_elems(t);
    size_t bb = dtype_block_bytes(t);
    assert(dtype_is_quant(t) && n % be == 0 && n == xa->n);
    float acc = 0.0f;
    Block k;
    for (int64_t blk = 0; blk < n / be; blk++) {
        decode(t, (const uint8_t *)w + (size_t)blk * bb, &k);
        for (int a = 0; a < k.n / QUANT_ACT_BLOCK; a++) { /* activation blocks inside this weight block */
            int64_t ab = blk * (be / QUANT_ACT_BLOCK) + a;
            const int8_t *q = xa->q + ab * QUANT_ACT_BLOCK;
            int32_t isum = 0;
            for (int g0 = 0; g0 < QUANT_ACT_BLOCK; g0 += k.group) { /* one or two scale groups */
                int32_t gsum = 0;
                for (int i = g0; i < g0 + k.group; i++) gsum += k.lev[a * QUANT_ACT_BLOCK + i] * q[i];
                isum += k.sc[(a * QUANT_ACT_BLOCK + g0) / k.group] * gsum;
            }
            acc = fmaf(k.D * xa->d[ab], (float)isum, acc);
            if (k.has_min) acc = fmaf(k.M * xa->d[ab], (float)(k.mn[a] * xa->sum[ab]), acc);
        }
    }
    return acc;
}

DType quant_type_from_name(const char *s) {
    for (int t = 0; t < DT_COUNT; t++) {
        const char *name = dtype_name((DType)t);
        size_t i = 0;
        while (name[i] && s[i] && tolower((unsigned char)s[i]) == name[i]) i++;
        if (!name[i] && !s[i] && (t <= DT_BF16 || dtype_is_quant((DType)t))) return (DType)t;
    }
    return DT_COUNT;
}
