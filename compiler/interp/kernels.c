/* The generic path's kernels: plain loops over runtime shapes, OpenMP over independent rows,
 * `omp simd` reductions so the inner products vectorise. Honest, not specialised, not fused. */
#include "kernels.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "quant.h"

static inline float dot_f32(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Widens n elements of a weight row to f32 (a block type: dequantised, n a multiple of its block). */
static inline void widen(float *dst, const void *src, DType dt, int64_t n) {
    if (dt == DT_BF16) {
        const uint16_t *s = src;
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)s[i] << 16;
            memcpy(&dst[i], &u, 4);
        }
    } else if (dt == DT_F16) {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(s[i]);
    } else if (dtype_is_quant(dt)) {
        quant_dequant_row(dt, src, dst, n);
    } else {
        memcpy(dst, src, sizeof(float) * (size_t)n);
    }
}

void gk_embed(float *y, const int32_t *ids, int64_t T, const void *table, DType dt, int64_t H) {
    size_t rb = quant_row_bytes(dt, H);
    for (int64_t t = 0; t < T; t++) widen(y + t * H, (const char *)table + (size_t)ids[t] * rb, dt, H);
}

void gk_rmsnorm(float *y, const float *x, int64_t T, int64_t N, const void *w, DType wdt, int64_t G, float eps) {
    float *wf = malloc(sizeof(float) * (size_t)G);
    widen(wf, w, wdt, G);
    int64_t groups = N / G;
#pragma omp parallel for if (T * N > 32768)
    for (int64_t r = 0; r < T * groups; r++) {
        const float *xr = x + r * G;
        float *yr = y + r * G;
        float ss = dot_f32(xr, xr, G);
        float inv = 1.0f / sqrtf(ss / (float)G + eps);
        for (int64_t i = 0; i < G; i++) yr[i] = wf[i] * (xr[i] * inv);
    }
    free(wf);
}

/* The int8 activation mode: each x row quantised once (quant_act_q8), then every weight row's
 * quant_dot_int8 with the T quantised rows while the row is in cache; rows split over threads. */
static void matmul_int8(float *y, const float *x, int64_t T, int64_t K, const void *w, DType wdt, int64_t N,
                        const void *bias, DType bdt) {
    size_t stride = (quant_act_bytes(K) + 63) & ~(size_t)63, rb = quant_row_bytes(wdt, K);
    char *buf = malloc(stride * (size_t)T);
    QuantAct *xa = malloc(sizeof(QuantAct) * (size_t)T);
    MOE_ASSERT(buf && xa);
#pragma omp parallel for if (T * K > 65536)
    for (int64_t t = 0; t < T; t++) {
        xa[t] = quant_act_view(buf + (size_t)t * stride, K);
        quant_act_q8(x + t * K, &xa[t]);
    }
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < N; row++) {
        const void *wr = (const char *)w + (size_t)row * rb;
        float b = bias ? dtype_load_f32(bdt, bias, (size_t)row) : 0.0f;
        for (int64_t t = 0; t < T; t++) y[t * N + row] = quant_dot_int8(wdt, wr, &xa[t], K) + b;
    }
    free(xa);
    free(buf);
}

void gk_round_bf16(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = bf16_to_f32(f32_to_bf16(x[i]));
}

/* Rows of w in blocks of 4, widened (or dequantised) once into a thread-local buffer; each token's
 * x row is then read once per block for 4 dot products. Shape-generic: K, N and T are runtime values.
 * The bf16 activation mode rounds the T x rows once into a work buffer; the dot products below are
 * then those of two bf16 numbers, exact in f32, so only the order of the f32 sums differs from
 * vdpbf16ps. */
void gk_matmul(float *y, const float *x, int64_t T, int64_t K, const void *w, DType wdt, int64_t N, const void *bias,
               DType bdt, GkAct act) {
    if (dtype_is_quant(wdt) && act == GK_ACT_INT8) {
        matmul_int8(y, x, T, K, w, wdt, N, bias, bdt);
        return;
    }
    float *xr = NULL; /* [T, K] x rounded to bf16, in the bf16 mode */
    if (wdt == DT_BF16 && act == GK_ACT_BF16) {
        xr = malloc(sizeof(float) * (size_t)(T * K));
        MOE_ASSERT(xr);
        gk_round_bf16(xr, x, T * K);
        x = xr;
    }
    size_t rb = quant_row_bytes(wdt, K);
    int64_t n_blocks = (N + 3) / 4;
#pragma omp parallel
    {
        float *rows = malloc(sizeof(float) * (size_t)(4 * K));
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < n_blocks; blk++) {
            int64_t n0 = blk * 4, nr = N - n0 < 4 ? N - n0 : 4;
            const float *wr[4] = {NULL, NULL, NULL, NULL};
            for (int64_t r = 0; r < nr; r++) {
                const void *src = (const char *)w + (size_t)(n0 + r) * rb;
                if (wdt == DT_F32) {
                    wr[r] = src;
                } else {
                    widen(rows + r * K, src, wdt, K);
                    wr[r] = rows + r * K;
                }
            }
            for (int64_t r = nr; r < 4; r++) wr[r] = wr[0];
            float b[4] = {0, 0, 0, 0};
            for (int64_t r = 0; bias && r < nr; r++) b[r] = dtype_load_f32(bdt, bias, (size_t)(n0 + r));
            for (int64_t t = 0; t < T; t++) {
                const float *xt = x + t * K;
                float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
                for (int64_t k = 0; k < K; k++) {
                    s0 += xt[k] * wr[0][k];
                    s1 += xt[k] * wr[1][k];
                    s2 += xt[k] * wr[2][k];
                    s3 += xt[k] * wr[3][k];
                }
                float s[4] = {s0, s1, s2, s3};
                for (int64_t r = 0; r < nr; r++) y[t * N + n0 + r] = s[r] + b[r];
            }
        }
        free(rows);
    }
    free(xr);
}

void gk_add(float *y, const float *a, const float *b, int64_t n) {
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void gk_clamp(float *y, const float *x, int64_t n, float c) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] < -c ? -c : x[i] > c ? c : x[i];
}

static inline float silu(float a) { return a / (1.0f + expf(-a)); }

void gk_swiglu(float *y, const float *g, const float *u, int64_t n) {
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) y[i] = silu(g[i]) * u[i];
}

void gk_sigmoid_scale(float *y, const float *g, const float *x, int64_t T, int64_t N) {
    for (int64_t t = 0; t < T; t++) {
        float s = 1.0f / (1.0f + expf(-g[t]));
        for (int64_t i = 0; i < N; i++) y[t * N + i] = s * x[t * N + i];
    }
}

void gk_rope(float *y, const float *x, int64_t T, int64_t heads, int64_t hd, const float *inv_freq, float mscale,
             const int64_t *pos) {
    int64_t half = hd / 2;
    for (int64_t t = 0; t < T; t++) {
        float p = (float)pos[t];
        for (int64_t i = 0; i < half; i++) {
            float ang = p * inv_freq[i]; /* float32, as HF */
            float c = (float)cos((double)ang) * mscale, s = (float)sin((double)ang) * mscale;
            for (int64_t h = 0; h < heads; h++) {
                const float *xh = x + t * heads * hd + h * hd;
                float *yh = y + t * heads * hd + h * hd;
                float a = xh[i], b = xh[i + half];
                yh[i] = a * c - b * s;
                yh[i + half] = b * c + a * s;
            }
        }
    }
}

void gk_attention(float *out, const float *q, const float *k, const float *v, int64_t T, float *kcache, float *vcache,
                  int64_t slot_stride, int64_t nh, int64_t nkv, int64_t hd, int64_t window, const int64_t *pos,
                  const int32_t *slot) {
    const int64_t kvw = nkv * hd, group = nh / nkv;
    int64_t max_pos = 0;
    for (int64_t t = 0; t < T; t++) {
        memcpy(kcache + slot[t] * slot_stride + pos[t] * kvw, k + t * kvw, sizeof(float) * (size_t)kvw);
        memcpy(vcache + slot[t] * slot_stride + pos[t] * kvw, v + t * kvw, sizeof(float) * (size_t)kvw);
        max_pos = pos[t] > max_pos ? pos[t] : max_pos;
    }
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        float *p = malloc(sizeof(float) * (size_t)(max_pos + 1));
#pragma omp for collapse(2) schedule(static)
        for (int64_t t = 0; t < T; t++) {
            for (int64_t h = 0; h < nh; h++) {
                const int64_t i = pos[t], kvh = h / group;
                const float *kc = kcache + slot[t] * slot_stride, *vc = vcache + slot[t] * slot_stride;
                const int64_t j0 = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
                const float *qh = q + t * nh * hd + h * hd;
                float mx = -INFINITY;
                for (int64_t j = j0; j <= i; j++) {
                    p[j] = dot_f32(qh, kc + j * kvw + kvh * hd, hd) * scale;
                    if (p[j] > mx) mx = p[j];
                }
                float sum = 0.0f;
                for (int64_t j = j0; j <= i; j++) sum += (p[j] = expf(p[j] - mx));
                float *o = out + t * nh * hd + h * hd;
                memset(o, 0, sizeof(float) * (size_t)hd);
                for (int64_t j = j0; j <= i; j++) {
                    const float pj = p[j] / sum, *vj = vc + j * kvw + kvh * hd;
#pragma omp simd
                    for (int64_t d = 0; d < hd; d++) o[d] += pj * vj[d];
                }
            }
        }
        free(p);
    }
}

void gk_router(MoeRoute *routes, const float *logits, int64_t T, int64_t E, int64_t k, bool renorm) {
    float *p = malloc(sizeof(float) * (size_t)E);
    for (int64_t t = 0; t < T; t++) {
        const float *l = logits + t * E;
        float mx = -INFINITY, sum = 0.0f;
        for (int64_t e = 0; e < E; e++) mx = l[e] > mx ? l[e] : mx;
        for (int64_t e = 0; e < E; e++) sum += (p[e] = expf(l[e] - mx));
        for (int64_t e = 0; e < E; e++) p[e] /= sum;
        MoeRoute *r = routes + t * k;
        float picked = 0.0f;
        for (int64_t j = 0; j < k; j++) { /* selection: highest remaining probability, lowest id on ties */
            int64_t best = -1;
            for (int64_t e = 0; e < E; e++) {
                bool taken = false;
                for (int64_t q = 0; q < j; q++) taken |= r[q].expert == e;
                if (!taken && (best < 0 || p[e] > p[best])) best = e;
            }
            r[j].expert = (int32_t)best;
            r[j].weight = p[best];
            picked += p[best];
        }
        if (renorm)
            for (int64_t j = 0; j < k; j++) r[j].weight /= picked;
    }
    free(p);
}

int64_t gk_capacity(double factor, int64_t T, int64_t k, int64_t E) {
    if (factor <= 0) return T;
    int64_t c = (int64_t)ceil(factor * (double)T * (double)k / (double)E);
    return c < 1 ? 1 : c > T ? T : c;
}

size_t gk_moe_scratch_bytes(const GkExperts *ex, int64_t T) {
    /* token list + weights, gathered x, gate, up, down outputs for at most T tokens of one expert */
    return (size_t)T * (sizeof(int64_t) + sizeof(float)) +
           sizeof(float) * (size_t)T * (size_t)(2 * ex->d_model + 2 * ex->d_ff) + 256;
}

void gk_moe_ffn(float *y, const float *x, const MoeRoute *routes, int64_t T, const GkExperts *ex, int64_t capacity,
                void *scratch, int64_t *dropped, int64_t *counts) {
    const int64_t H = ex->d_model, I = ex->d_ff, k = ex->top_k;
    int64_t *tok = scratch;
    float *wt = (float *)(tok + T);
    float *xs = wt + T, *g = xs + T * H, *u = g + T * I, *d = u + T * I;
    memset(y, 0, sizeof(float) * (size_t)(T * H));
    for (int64_t e = 0; e < ex->n_exp; e++) {
        int64_t n = 0;
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < k; j++)
                if (routes[t * k + j].expert == e) {
                    if (n < capacity) {
                        tok[n] = t;
                        wt[n++] = routes[t * k + j].weight;
                    } else if (dropped) {
                        (*dropped)++;
                    }
                }
        if (counts) counts[e] += n;
        if (n == 0) continue;
        for (int64_t i = 0; i < n; i++) memcpy(xs + i * H, x + tok[i] * H, sizeof(float) * (size_t)H);
        gk_matmul(g, xs, n, H, ex->gate[e], ex->gate_dt, I, NULL, DT_F32, ex->act);
        gk_matmul(u, xs, n, H, ex->up[e], ex->up_dt, I, NULL, DT_F32, ex->act);
        gk_swiglu(g, g, u, n * I);
        gk_matmul(d, g, n, I, ex->down[e], ex->down_dt, H, NULL, DT_F32, ex->act);
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < H; c++) y[tok[i] * H + c] += wt[i] * d[i * H + c];
    }
}
