/* dtype: element types shared by the compiler and the runtime, and their conversions.
 * Header-only (static inline): the runtime and the compiler both include it. */
#ifndef MOE_DTYPE_H
#define MOE_DTYPE_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum DType {
    DT_F32 = 0,
    DT_F16 = 1,
    DT_BF16 = 2,
    DT_I32 = 3,    /* token ids */
    DT_ROUTE = 4,  /* one routing choice: {int32 expert; float weight}, 8 bytes */
    /* GGUF block-quantised weight types (ggml's block formulas; runtime/quant.h). A row of n
     * elements is n / dtype_block_elems blocks of dtype_block_bytes each. */
    DT_Q4_0 = 5,   /* 32 elems, 18 bytes: f16 d, 16 bytes of nibbles; x = d * (q - 8) */
    DT_Q4_1 = 6,   /* 32 elems, 20 bytes: f16 d, f16 m, nibbles; x = d * q + m */
    DT_Q5_0 = 7,   /* 32 elems, 22 bytes: f16 d, 32 high bits, nibbles; x = d * (q - 16) */
    DT_Q5_1 = 8,   /* 32 elems, 24 bytes: f16 d, f16 m, high bits, nibbles; x = d * q + m */
    DT_Q8_0 = 9,   /* 32 elems, 34 bytes: f16 d, 32 int8; x = d * q */
    DT_Q4_K = 10,  /* 256 elems, 144 bytes: super-block of 8 x 32 with 6-bit scales and mins */
    DT_Q5_K = 11,  /* 256 elems, 176 bytes */
    DT_Q6_K = 12,  /* 256 elems, 210 bytes: 16 x 16 with int8 scales */
    DT_COUNT
} DType;

/* Elements per block: 1 for plain types, 32 or 256 for quantised ones. */
static inline int64_t dtype_block_elems(DType t) {
    switch (t) {
    case DT_Q4_0: case DT_Q4_1: case DT_Q5_0: case DT_Q5_1: case DT_Q8_0: return 32;
    case DT_Q4_K: case DT_Q5_K: case DT_Q6_K: return 256;
    default: return 1;
    }
}

/* Bytes per block (for plain types, bytes per element). */
static inline size_t dtype_block_bytes(DType t) {
    switch (t) {
    case DT_F32: case DT_I32: return 4;
    case DT_F16: case DT_BF16: return 2;
    case DT_ROUTE: return 8;
    case DT_Q4_0: return 18;
    case DT_Q4_1: return 20;
    case DT_Q5_0: return 22;
    case DT_Q5_1: return 24;
    case DT_Q8_0: return 34;
    case DT_Q4_K: return 144;
    case DT_Q5_K: return 176;
    case DT_Q6_K: return 210;
    default: return 0;
    }
}

static inline int dtype_is_quant(DType t) { return dtype_block_elems(t) > 1; }

typedef struct MoeRoute {
    int32_t expert;
    float weight;
} MoeRoute;

static inline size_t dtype_size(DType t) {
    switch (t) {
    case DT_F32: return 4;
    case DT_F16: return 2;
    case DT_BF16: return 2;
    case DT_I32: return 4;
    case DT_ROUTE: return sizeof(MoeRoute);
    default: return 0; /* block types have no per-element size: dtype_block_bytes */
    }
}

static inline const char *dtype_name(DType t) {
    switch (t) {
    case DT_F32: return "f32";
    case DT_F16: return "f16";
    case DT_BF16: return "bf16";
    case DT_I32: return "i32";
    case DT_ROUTE: return "route";
    case DT_Q4_0: return "q4_0";
    case DT_Q4_1: return "q4_1";
    case DT_Q5_0: return "q5_0";
    case DT_Q5_1: return "q5_1";
    case DT_Q8_0: return "q8_0";
    case DT_Q4_K: return "q4_k";
    case DT_Q5_K: return "q5_k";
    case DT_Q6_K: return "q6_k";
    default: break;
    }
    return "?";
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even; NaN stays NaN. */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400u));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even, with overflow to inf and gradual underflow. */
static inline uint16_t f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520 -> inf */
    if (a < 0x38800000u) {                                   /* below the smallest normal */
        if (a < 0x33000000u) return (uint16_t)sign;
        uint32_t man = (a & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(a >> 23) + 14 - 1 + 1;        /* 113 - exp + 13 */
        shift = 113 - (int)(a >> 23) + 13;
        uint32_t half = 1u << (shift - 1);
        uint32_t r = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - 0x38000000u;
    return (uint16_t)(sign | (r >> 13));
}

/* Element i of a tensor of dtype t, widened to float (F32, F16, BF16 only). */
static inline float dtype_load_f32(DType t, const void *base, size_t i) {
    switch (t) {
    case DT_F32: return ((const float *)base)[i];
    case DT_F16: return f16_to_f32(((const uint16_t *)base)[i]);
    case DT_BF16: return bf16_to_f32(((const uint16_t *)base)[i]);
    default: return 0.0f;
    }
}

#endif
