/* quant: ggml's GGUF block-quantised weight formats (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K), a row
 * at a time. Dequantisation is bit-identical to ggml's dequantize_row_*; the Q*_0/Q*_1 quantisers write
 * the bytes ggml's reference quantisers write; the K quantisers search their scales their own way.
 * The two dot products are the plain-C references the compiled kernels must reproduce. Nothing here
 * allocates: the caller owns every buffer. Rows are little-endian bytes, n a multiple of the block.
 *
 * Block layouts (byte offsets; f16 = IEEE half; "nibble j" = low 4 bits of qs[j] for element j,
 * high 4 bits for element j + 16, unless stated):
 *   Q4_0  18 B / 32: f16 d @0, qs[16] @2.              x = d * (nib - 8)
 *   Q4_1  20 B / 32: f16 d @0, f16 m @2, qs[16] @4.    x = d * nib + m
 *   Q5_0  22 B / 32: f16 d @0, qh u32 @2, qs[16] @6.   x = d * (q - 16), q = nib | bit i of qh << 4
 *   Q5_1  24 B / 32: f16 d, f16 m, qh u32, qs[16].     x = d * q + m
 *   Q8_0  34 B / 32: f16 d @0, int8 qs[32] @2.          x = d * qs[i]
 *   Q4_K 144 B / 256: f16 d @0, f16 dmin @2, scales[12] @4 (8 six-bit scales sc and mins m), qs[128] @16.
 *         Sub-block j (32 elements) x = (d * sc[j]) * q - dmin * m[j]. Chunk c of 64 elements: element
 *         64c + l is the low nibble of qs[32c + l], element 64c + 32 + l its high nibble.
 *   Q5_K 176 B / 256: as Q4_K with qh[32] @16 and qs[128] @48; bit 2c of qh[l] adds 16 to element
 *         64c + l, bit 2c + 1 to element 64c + 32 + l.
 *   Q6_K 210 B / 256: ql[128] @0, qh[64] @128, int8 scales[16] @192, f16 d @208. Sub-block g (16 elements)
 *         x = (d * scales[g]) * (q - 32), q six bits: for half h (128 elements) and l < 32, the four
 *         elements 128h + 32k + l (k = 0..3) take the low nibble of ql[64h + l], of ql[64h + 32 + l],
 *         the high nibble of ql[64h + l], of ql[64h + 32 + l], and bits 2k..2k+1 of qh[32h + l] on top. */
#ifndef MOE_QUANT_H
#define MOE_QUANT_H
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

/* Bytes of a row of n elements of type t (F32, F16, BF16 or a block type; n a multiple of the block). */
size_t quant_row_bytes(DType t, int64_t n);

/* dst[0..n) = the row src of type t widened to f32; for block types bit-identical to ggml's
 * dequantize_row_<t> (every product of a scale and a level is exact in f32, so the order is ggml's). */
void quant_dequant_row(DType t, const void *src, float *dst, int64_t n);

/* Writes the row src[0..n) as type t into dst (quant_row_bytes(t, n) bytes). Q8_0, Q4_0, Q4_1, Q5_0,
 * Q5_1: round to nearest with ggml's scale rules, the bytes of ggml's quantize_row_<t>_ref. Q4_K, Q5_K,
 * Q6_K: a least-squares scale (and min) search per sub-block, then the 6/8-bit sub-block scales
 * chosen against the f16 super-block scales by the squared error they actually give.
 * F32/F16/BF16: a (rounding) copy. */
void quant_quantize_row(DType t, const float *src, void *dst, int64_t n);

/* The "exact" activation mode: sum over i of dequant(w)[i] * x[i] in f32, in order of i, each step
 * acc = fmaf(w[i], x[i], acc) from acc = 0 (one block at a time is dequantised into a stack buffer). */
float quant_dot_exact(DType t, const void *w, const float *x, int64_t n);

/* The "int8" activation mode. An activation row is quantised in blocks of QUANT_ACT_BLOCK elements:
 *   d[b] = amax_b / 127 (f32), q[i] = (int8) roundf(x[i] * (d[b] ? 1 / d[b] : 0)), sum[b] = sum of q in b.
 * quant_dot_int8 then walks the activation blocks b in order, from acc = 0.0f:
 *   isum_b = sum over the 32 elements of  sc_i * lev_i * q[i]    (int32, exact)
 *   acc    = fmaf(D * d[b], (float)isum_b, acc)
 *   and for types with a min:  acc = fmaf(M * d[b], (float)(mn_b * sum[b]), acc)
 * where lev is the weight's integer level as the dequantiser uses it (Q4_0 nib - 8, Q5_0 q - 16,
 * Q8_0 qs, Q6_K q - 32, Q4_1/Q5_1/Q4_K/Q5_K the unsigned q), sc its integer sub-block scale (Q4_K/Q5_K
 * sc[j], Q6_K scales[g], else 1), D the f16 block scale d, and for the types with a min
 * M = m, mn_b = 1 (Q4_1, Q5_1) or M = -dmin, mn_b = m[j] (Q4_K, Q5_K). Every product D * d[b] and
 * M * d[b] is one f32 rounding; |isum_b| < 2^24, so (float)isum_b is exact. */
#define QUANT_ACT_BLOCK 32
typedef struct QuantAct {
    int64_t n;    /* elements, a multiple of QUANT_ACT_BLOCK */
    float *d;     /* [n/32] block scales */
    int32_t *sum; /* [n/32] sums of the block's q */
    int8_t *q;    /* [n] */
} QuantAct;

/* Bytes a QuantAct of n elements needs (its d, sum and q arrays, in that order). */
size_t quant_act_bytes(int64_t n);
/* A QuantAct of n elements whose arrays lie in buf (quant_act_bytes(n) bytes, 4-byte aligned). */
QuantAct quant_act_view(void *buf, int64_t n);
/* Quantises x[0..out->n) into out (arithmetic above). */
void quant_act_q8(const float *x, QuantAct *out);
/* The int8-mode dot product of the block-type row w (n elements, n == xa->n) with xa (arithmetic above). */
float quant_dot_int8(DType t, const void *w, const QuantAct *xa, int64_t n);

/* "q8_0", "Q4_K", ... (any case; also f32/f16/bf16) -> its DType; DT_COUNT when unknown. */
DType quant_type_from_name(const char *s);

#endif
