/* kt_common: inline helpers shared by the kernel templates in compiler/kernels: weight widening,
 * RMSNorm rows, SiLU, and kt_tile, the register-tiled dot product every matmul-like kernel is built
 * from. Header-only (static inline) so each template stays one self-contained bitcode module, and so
 * a test can #include several templates into one translation unit. Same rules as kernels.h. */
#ifndef MOEC_KT_COMMON_H
#define MOEC_KT_COMMON_H
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Register tile of kt_tile: at most KT_RB weight rows by KT_TB token rows per pass (4 x 4 = 16
 * accumulators: half the vector registers of AVX-512 or SVE/NEON). KT_CHUNK_FLOATS: the activation
 * rows one pass over a weight slice reuses are kept to about 512 KiB, so they stay in L2. */
enum { KT_RB = 4, KT_TB = 4, KT_CHUNK_FLOATS = 128 * 1024 };

/* Tokens per L2 chunk for activation rows of n floats: a multiple of KT_TB, at least KT_TB. */
static inline int64_t kt_chunk(int64_t n) {
    int64_t c = KT_CHUNK_FLOATS / (n > 0 ? n : 1) / KT_TB * KT_TB;
    return c > KT_TB ? c : KT_TB;
}

static inline float kt_bf16(uint16_t v) {
    uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Element i of a weight tensor of dtype wdt (0 f32, 2 bf16) widened to f32. wdt is a constant in
 * every specialised kernel, so the branch folds. */
static inline float kt_wload(const void *w, int64_t i, int32_t wdt) {
    return wdt == 2 ? kt_bf16(((const uint16_t *)w)[i]) : ((const float *)w)[i];
}

static inline float kt_silu(float a) { return a / (1.0f + expf(-a)); }

static inline float kt_sigmoid(float a) { return 1.0f / (1.0f + expf(-a)); }

/* 1 / sqrt(mean(x[n]^2) + eps) */
static inline float kt_rms_inv(const float *restrict x, int64_t n, float eps) {
    float ss = 0.0f;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    return 1.0f / sqrtf(ss / (float)n + eps);
}

/* y[T, K] = w[K] * x[T, K] / sqrt(mean(x[t]^2) + eps), row by row. */
static inline void kt_rmsnorm_rows(float *restrict y, const float *restrict x, const float *restrict w, int64_t T,
                                   int64_t K, float eps) {
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * K; // [K]
        float *yr = y + t * K;       // [K]
        float inv = kt_rms_inv(xr, K, eps);
        for (int64_t i = 0; i < K; i++) yr[i] = w[i] * (xr[i] * inv);
    }
}

/* acc[r][t] = sum_{k < K} w[w0 + r ws + k] * xs[t][k]   for r < rb, t < tb (rb <= 4, tb <= 4).
 * rb and tb are literal constants at every call site: once inlined, the r and t loops unroll and the
 * k loop vectorises with rb * tb independent accumulators, each weight element loaded (and widened)
 * once per tile and each activation element once per tile. w is in dtype wdt, indices in elements. */
static inline void kt_tile(float acc[KT_RB][KT_TB], int rb, int tb, const void *restrict w, int64_t w0, int64_t ws,
                           const float *const xs[KT_TB], int64_t K, int32_t wdt) {
    float a[KT_RB][KT_TB] = {{0}};
    for (int64_t k = 0; k < K; k++)
        for (int r = 0; r < rb; r++) {
            float wv = kt_wload(w, w0 + r * ws + k, wdt);
            for (int t = 0; t < tb; t++) a[r][t] += wv * xs[t][k];
        }
    for (int r = 0; r < rb; r++)
        for (int t = 0; t < tb; t++) acc[r][t] = a[r][t];
}

#endif
