#include "ref/ref_bf16.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float ref_bf16_round(float x) {
    if (x == 0.0f) return x;
    int e;
    double m = frexp((double)x, &e); /* |m| in [0.5, 1): 8 significant bits are m * 2^8 */
    return (float)ldexp(nearbyint(m * 256.0), e - 8); /* nearbyint: the current mode, to nearest even */
}

void ref_bf16_round_all(float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++) v[i] = ref_bf16_round(v[i]);
}

void ref_moe_ffn_bf16(float *y, const float *x, const MoeRoute *routes, int64_t T, int64_t E, int64_t k, int64_t H,
                      int64_t I, const float *gate, const float *up, const float *down, int64_t capacity) {
    int64_t *used = calloc((size_t)(E > 0 ? E : 1), sizeof(int64_t));
    float *xb = malloc(sizeof(float) * (size_t)(H > 0 ? H : 1)), *act = malloc(sizeof(float) * (size_t)(I > 0 ? I : 1));
    memset(y, 0, sizeof(float) * (size_t)(T * H));
    for (int64_t t = 0; t < T; t++) {
        for (int64_t c = 0; c < H; c++) xb[c] = ref_bf16_round(x[t * H + c]);
        for (int64_t j = 0; j < k; j++) {
            int64_t e = routes[t * k + j].expert;
            if (used[e]++ >= capacity) continue;
            for (int64_t i = 0; i < I; i++) {
                double g = 0, u = 0;
                for (int64_t c = 0; c < H; c++) {
                    g += (double)gate[(e * I + i) * H + c] * xb[c];
                    u += (double)up[(e * I + i) * H + c] * xb[c];
                }
                act[i] = ref_bf16_round((float)(g / (1 + exp(-g)) * u));
            }
            for (int64_t c = 0; c < H; c++) {
                double s = 0;
                for (int64_t i = 0; i < I; i++) s += (double)down[(e * H + c) * I + i] * act[i];
                y[t * H + c] += (float)(routes[t * k + j].weight * s);
            }
        }
    }
    free(used), free(xb), free(act);
}
