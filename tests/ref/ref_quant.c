#include "ref_quant.h"

#include <math.h>

static float half(const uint8_t *p) { /* IEEE binary16, little-endian */
    int h = p[0] | p[1] << 8, e = (h >> 10) & 31, man = h & 1023;
    double v = e == 31 ? (man ? NAN : INFINITY) : e ? ldexp(1024 + man, e - 25) : ldexp(man, -24);
    return (float)((h & 0x8000) ? -v : v);
}
static RefQElem elem(float d, int sc, int q) { return (RefQElem){d, 0, sc, q, 1, 0}; }
static RefQElem elem_min(float d, int sc, int q, float m, int mn) { return (RefQElem){d, m, sc, q, mn, 1}; }

/* 32 per block: element i < 16 is the low nibble of qs[i], element i >= 16 the high nibble of qs[i-16]. */
static int nibble(const uint8_t *qs, int i) { return i < 16 ? qs[i] & 15 : qs[i - 16] >> 4; }
/* Q5_0/Q5_1: bit i of the 32-bit little-endian qh is element i's fifth bit. */
static int bit5(const uint8_t *qh, int i) { return (qh[i / 8] >> (i % 8)) & 1; }

RefQElem ref_q4_0(const uint8_t *b, int i) { return elem(half(b), 1, nibble(b + 2, i) - 8); }
RefQElem ref_q4_1(const uint8_t *b, int i) { return elem_min(half(b), 1, nibble(b + 4, i), half(b + 2), 1); }
RefQElem ref_q5_0(const uint8_t *b, int i) { return elem(half(b), 1, (nibble(b + 6, i) | bit5(b + 2, i) << 4) - 16); }
RefQElem ref_q5_1(const uint8_t *b, int i) {
    return elem_min(half(b), 1, nibble(b + 8, i) | bit5(b + 4, i) << 4, half(b + 2), 1);
}
RefQElem ref_q8_0(const uint8_t *b, int i) { return elem(half(b), 1, (int8_t)b[2 + i]); }

/* Q4_K/Q5_K sub-block j's 6-bit scale (want_min 0) or min (1) from the 12 bytes s. */
static int k_scale(const uint8_t *s, int j, int want_min) {
    if (j < 4) return s[j + 4 * want_min] & 63;
    int low = want_min ? s[j + 4] >> 4 : s[j + 4] & 15;
    int top = want_min ? s[j] >> 6 : s[j - 4] >> 6;
    return low | top << 4;
}
/* Element i of 256: chunk c = i / 64 uses qs[32c .. 32c+32): low nibbles for its first 32 elements,
 * high nibbles for the next 32. Q5_K: bit (2c + which half) of qh[i % 32] is the fifth bit. */
RefQElem ref_q4_k(const uint8_t *b, int i) {
    int c = i / 64, hi = (i % 64) >= 32, l = i % 32, j = i / 32;
    int q = hi ? b[16 + 32 * c + l] >> 4 : b[16 + 32 * c + l] & 15;
    return elem_min(half(b), k_scale(b + 4, j, 0), q, -half(b + 2), k_scale(b + 4, j, 1));
}
RefQElem ref_q5_k(const uint8_t *b, int i) {
    int c = i / 64, hi = (i % 64) >= 32, l = i % 32, j = i / 32;
    int q = hi ? b[48 + 32 * c + l] >> 4 : b[48 + 32 * c + l] & 15;
    q |= ((b[16 + l] >> (2 * c + hi)) & 1) << 4;
    return elem_min(half(b), k_scale(b + 4, j, 0), q, -half(b + 2), k_scale(b + 4, j, 1));
}
/* Element i of 256: half h = i / 128, quarter k = (i % 128) / 32, l = i % 32. Low 4 bits: ql[64h + l]
 * (k = 0, 2) or ql[64h + 32 + l] (k = 1, 3), low nibble for k < 2, high for k >= 2; top 2 bits:
 * bits 2k, 2k+1 of qh[32h + l]. Scale: int8 scales[i / 16]; d at byte 208. */
RefQElem ref_q6_k(const uint8_t *b, int i) {
    int h = i / 128, k = (i % 128) / 32, l = i % 32;
    int lowb = b[64 * h + 32 * (k & 1) + l];
    int low = k < 2 ? lowb & 15 : lowb >> 4;
    int top = (b[128 + 32 * h + l] >> (2 * k)) & 3;
    return elem(half(b + 208), (int8_t)b[192 + i / 16], (low | top << 4) - 32);
}

RefQElem ref_qelem(DType t, const uint8_t *b, int i) {
    switch (t) {
    case DT_Q4_0: return ref_q4_0(b, i);
    case DT_Q4_1: return ref_q4_1(b, i);
    case DT_Q5_0: return ref_q5_0(b, i);
    case DT_Q5_1: return ref_q5_1(b, i);
    case DT_Q8_0: return ref_q8_0(b, i);
    case DT_Q4_K: return ref_q4_k(b, i);
    case DT_Q5_K: return ref_q5_k(b, i);
    case DT_Q6_K: return ref_q6_k(b, i);
    default: return elem(NAN, 0, 0);
    }
}

void ref_dequant(DType t, const void *src, float *y, int64_t n) {
    int64_t be = dtype_block_elems(t);
    for (int64_t i = 0; i < n; i++) {
        RefQElem e = ref_qelem(t, (const uint8_t *)src + (i / be) * dtype_block_bytes(t), (int)(i % be));
        float v = (e.d * (float)e.sc) * (float)e.q;
        y[i] = e.has_min ? v + e.m * (float)e.mn : v;
    }
}
