#include "ref_qops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_quant.h"

static size_t row_bytes(DType t, int64_t n) { return (size_t)(n / dtype_block_elems(t)) * dtype_block_bytes(t); }

void ref_qembed(float *y, const int32_t *ids, int64_t T, const void *table, DType dt, int64_t H) {
    for (int64_t t = 0; t < T; t++) ref_dequant(dt, (const char *)table + (size_t)ids[t] * row_bytes(dt, H), y + t * H, H);
}

void ref_qmatmul(float *y, const float *x, int64_t T, int64_t K, const void *w, DType wdt, int64_t N,
                 const float *bias) {
    float *row = malloc(sizeof(float) * (size_t)K);
    for (int64_t n = 0; n < N; n++) {
        ref_dequant(wdt, (const char *)w + (size_t)n * row_bytes(wdt, K), row, K);
        for (int64_t t = 0; t < T; t++) {
            double s = bias ? bias[n] : 0.0;
            for (int64_t k = 0; k < K; k++) s += (double)x[t * K + k] * row[k];
            y[t * N + n] = (float)s;
        }
    }
    free(row);
}

/* One row's int8 dot: the activation block b (32 elements) has scale d = amax / 127 and levels
 * q = round(x / d); each weight element is (D * sc) * lev [+ M * mn]. Per activation block:
 * acc = fmaf(D * d, sum sc * lev * q, acc), then for a min acc = fmaf(M * d, mn * sum q, acc).
 * Within one activation block D, M and mn are constant (every block type's super scale and min
 * cover whole 32-element runs). */
static float dot_int8(DType t, const uint8_t *w, const float *x, int64_t K) {
    int64_t be = dtype_block_elems(t);
    float acc = 0.0f;
    for (int64_t b0 = 0; b0 < K; b0 += 32) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b0 + i]));
        float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
        int32_t isum = 0, qsum = 0;
        RefQElem e = {0};
        for (int i = 0; i < 32; i++) {
            int64_t el = b0 + i;
            int q = (int)roundf(x[el] * id);
            e = ref_qelem(t, w + (size_t)(el / be) * dtype_block_bytes(t), (int)(el % be));
            isum += e.sc * e.q * q;
            qsum += q;
        }
        acc = fmaf(e.d * d, (float)isum, acc);
        if (e.has_min) acc = fmaf(e.m * d, (float)(e.mn * qsum), acc);
    }
    return acc;
}

void ref_qmatmul_int8(float *y, const float *x, int64_t T, int64_t K, const void *w, DType wdt, int64_t N,
                      const float *bias) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t t = 0; t < T; t++)
            y[t * N + n] = dot_int8(wdt, (const uint8_t *)w + (size_t)n * row_bytes(wdt, K), x + t * K, K) +
                           (bias ? bias[n] : 0.0f);
}

void ref_qmoe_ffn(float *y, const float *x, const MoeRoute *routes, int64_t T, int64_t E, int64_t k, int64_t H,
                  int64_t I, const void *const *gate, DType gdt, const void *const *up, DType udt,
                  const void *const *down, DType ddt, int int8, int64_t capacity, int64_t *dropped) {
    void (*mm)(float *, const float *, int64_t, int64_t, const void *, DType, int64_t, const float *) =
        int8 ? ref_qmatmul_int8 : ref_qmatmul;
    int64_t *used = calloc((size_t)E, sizeof(int64_t));
    float *g = malloc(sizeof(float) * (size_t)I), *u = malloc(sizeof(float) * (size_t)I);
    float *d = malloc(sizeof(float) * (size_t)H);
    memset(y, 0, sizeof(float) * (size_t)(T * H));
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < k; j++) {
            int64_t e = routes[t * k + j].expert;
            if (used[e]++ >= capacity) {
                (*dropped)++;
                continue;
            }
            mm(g, x + t * H, 1, H, gate[e], gdt, I, NULL);
            mm(u, x + t * H, 1, H, up[e], udt, I, NULL);
            for (int64_t i = 0; i < I; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
            mm(d, g, 1, I, down[e], ddt, H, NULL);
            for (int64_t c = 0; c < H; c++) y[t * H + c] += routes[t * k + j].weight * d[c];
        }
    free(used), free(g), free(u), free(d);
}
