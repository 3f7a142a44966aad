#include "ref_ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_embed(float *y, const int32_t *ids, int64_t T, const void *table, DType dt, int64_t H) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < H; i++) y[t * H + i] = dtype_load_f32(dt, table, (size_t)(ids[t] * H + i));
}

void ref_rmsnorm(float *y, const float *x, int64_t T, int64_t N, const float *w, int64_t G, float eps) {
    for (int64_t r = 0; r < T * (N / G); r++) {
        double ss = 0;
        for (int64_t i = 0; i < G; i++) ss += (double)x[r * G + i] * x[r * G + i];
        double inv = 1.0 / sqrt(ss / (double)G + eps);
        for (int64_t i = 0; i < G; i++) y[r * G + i] = (float)(w[i] * (x[r * G + i] * inv));
    }
}

void ref_matmul(float *y, const float *x, int64_t T, int64_t K, const void *w, DType wdt, int64_t N, const float *bias) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            double s = bias ? bias[n] : 0.0;
            for (int64_t k = 0; k < K; k++) s += (double)x[t * K + k] * dtype_load_f32(wdt, w, (size_t)(n * K + k));
            y[t * N + n] = (float)s;
        }
}

float ref_round_bf16(float x) {
    if (x == 0 || !isfinite(x)) return x;
    int e;
    frexp(x, &e);                       /* 2^(e-1) <= |x| < 2^e */
    int q = e - 8 < -133 ? -133 : e - 8; /* bf16: 8 significant bits; subnormals spaced 2^-133 */
    return (float)ldexp(nearbyint(ldexp(x, -q)), q); /* the default rounding mode: ties to even */
}

void ref_matmul_act_bf16(float *y, const float *x, int64_t T, int64_t K, const void *w, DType wdt, int64_t N,
                         const float *bias) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            double s = bias ? bias[n] : 0.0;
            for (int64_t k = 0; k < K; k++)
                s += (double)ref_round_bf16(x[t * K + k]) * dtype_load_f32(wdt, w, (size_t)(n * K + k));
            y[t * N + n] = (float)s;
        }
}

void ref_rope(float *y, const float *x, int64_t T, int64_t heads, int64_t hd, const float *inv_freq, float mscale,
              int64_t pos0) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t i = 0; i < hd / 2; i++) {
                double ang = (double)(float)((float)(pos0 + t) * inv_freq[i]);
                double c = cos(ang) * mscale, s = sin(ang) * mscale;
                const float *xh = x + (t * heads + h) * hd;
                y[(t * heads + h) * hd + i] = (float)(xh[i] * c - xh[i + hd / 2] * s);
                y[(t * heads + h) * hd + i + hd / 2] = (float)(xh[i + hd / 2] * c + xh[i] * s);
            }
}

void ref_attention(float *out, const float *q, const float *keys, const float *vals, int64_t T, int64_t nh,
                   int64_t nkv, int64_t hd, int64_t window, int64_t pos0) {
    double *p = malloc(sizeof(double) * (size_t)(pos0 + T));
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nh; h++) {
            int64_t i = pos0 + t, kvh = h / (nh / nkv);
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j <= i; j++) {
                bool visible = window <= 0 || i - j < window;
                double s = 0;
                for (int64_t d = 0; d < hd; d++) s += (double)q[(t * nh + h) * hd + d] * keys[(j * nkv + kvh) * hd + d];
                p[j] = visible ? s / sqrt((double)hd) : -INFINITY;
                if (p[j] > mx) mx = p[j];
            }
            for (int64_t j = 0; j <= i; j++) sum += (p[j] = exp(p[j] - mx));
            for (int64_t d = 0; d < hd; d++) {
                double o = 0;
                for (int64_t j = 0; j <= i; j++) o += p[j] / sum * vals[(j * nkv + kvh) * hd + d];
                out[(t * nh + h) * hd + d] = (float)o;
            }
        }
    free(p);
}

void ref_router(MoeRoute *routes, const float *logits, int64_t T, int64_t E, int64_t k, bool renorm) {
    double *p = malloc(sizeof(double) * (size_t)E);
    for (int64_t t = 0; t < T; t++) {
        double mx = -INFINITY, sum = 0, picked = 0;
        for (int64_t e = 0; e < E; e++) mx = fmax(mx, logits[t * E + e]);
        for (int64_t e = 0; e < E; e++) sum += (p[e] = exp(logits[t * E + e] - mx));
        for (int64_t j = 0; j < k; j++) {
            int64_t best = -1;
            for (int64_t e = 0; e < E; e++)
                if (p[e] >= 0 && (best < 0 || p[e] > p[best])) best = e;
            routes[t * k + j].expert = (int32_t)best;
            routes[t * k + j].weight = (float)(p[best] / sum);
            picked += p[best] / sum;
            p[best] = -1; /* taken */
        }
        if (renorm)
            for (int64_t j = 0; j < k; j++) routes[t * k + j].weight = (float)(routes[t * k + j].weight / picked);
    }
    free(p);
}

/* bf16: the matrices' inputs (x, and silu(g) * u rounded through f32) rounded by ref_round_bf16. */
static void moe_ffn(float *y, const float *x, const MoeRoute *routes, int64_t T, int64_t E, int64_t k, int64_t H,
                    int64_t I, const float *gate, const float *up, const float *down, int64_t capacity,
                    int64_t *dropped, bool bf16) {
    int64_t *used = calloc((size_t)E, sizeof(int64_t));
    double *act = malloc(sizeof(double) * (size_t)I);
    memset(y, 0, sizeof(float) * (size_t)(T * H));
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < k; j++) {
            int64_t e = routes[t * k + j].expert;
            if (used[e]++ >= capacity) {
                (*dropped)++;
                continue;
            }
            for (int64_t i = 0; i < I; i++) {
                double g = 0, u = 0;
                for (int64_t c = 0; c < H; c++) {
                    double xc = bf16 ? ref_round_bf16(x[t * H + c]) : x[t * H + c];
                    g += (double)gate[(e * I + i) * H + c] * xc;
                    u += (double)up[(e * I + i) * H + c] * xc;
                }
                act[i] = g / (1 + exp(-g)) * u;
                if (bf16) act[i] = ref_round_bf16((float)act[i]);
            }
            for (int64_t c = 0; c < H; c++) {
                double s = 0;
                for (int64_t i = 0; i < I; i++) s += (double)down[(e * H + c) * I + i] * act[i];
                y[t * H + c] += (float)(routes[t * k + j].weight * s);
            }
        }
    free(used);
    free(act);
}

void ref_moe_ffn(float *y, const float *x, const MoeRoute *routes, int64_t T, int64_t E, int64_t k, int64_t H,
                 int64_t I, const float *gate, const float *up, const float *down, int64_t capacity, int64_t *dropped) {
    moe_ffn(y, x, routes, T, E, k, H, I, gate, up, down, capacity, dropped, false);
}

void ref_moe_ffn_act_bf16(float *y, const float *x, const MoeRoute *routes, int64_t T, int64_t E, int64_t k,
                          int64_t H, int64_t I, const float *gate, const float *up, const float *down,
                          int64_t capacity, int64_t *dropped) {
    moe_ffn(y, x, routes, T, E, k, H, I, gate, up, down, capacity, dropped, true);
}
