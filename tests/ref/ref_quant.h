/* ref_quant: naive reference dequantisers of ggml's block formats, in llama2.c style: one function
 * per type giving element i of a block straight from the block formula, its own f16 decoding, no
 * code shared with runtime/quant.c. The test oracle of quant.c. */
#ifndef MOEC_REF_QUANT_H
#define MOEC_REF_QUANT_H
#include <stdint.h>

#include "dtype.h"

/* Element i of a block, as its formula names the parts: x = (d * sc) * q  [+ m * mn when has_min]. */
typedef struct RefQElem {
    float d, m;  /* f32 values of the f16 fields (m is -dmin for Q4_K/Q5_K, the f16 m for Q4_1/Q5_1) */
    int sc, q, mn; /* integer sub-scale (1 if none), level, integer min (1 if none) */
    int has_min;
} RefQElem;

RefQElem ref_q4_0(const uint8_t *b, int i);
RefQElem ref_q4_1(const uint8_t *b, int i);
RefQElem ref_q5_0(const uint8_t *b, int i);
RefQElem ref_q5_1(const uint8_t *b, int i);
RefQElem ref_q8_0(const uint8_t *b, int i);
RefQElem ref_q4_k(const uint8_t *b, int i);
RefQElem ref_q5_k(const uint8_t *b, int i);
RefQElem ref_q6_k(const uint8_t *b, int i);
/* Element i (0 .. block elems) of the block at b of block type t. */
RefQElem ref_qelem(DType t, const uint8_t *b, int i);
/* y[0..n) = the row src of block type t, each element (d * sc) * q [+ m * mn] in f32 as ggml does. */
void ref_dequant(DType t, const void *src, float *y, int64_t n);

#endif
