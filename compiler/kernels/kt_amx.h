/* kt_amx: the AMX form of the panel tile (x86 Advanced Matrix Extensions, bf16 tiles), used by the
 * prefill kernels when the target has amx-bf16. Their `amx` parameter is a constant bound by
 * `moec compile` (kernels.h): 0 folds every call below away, so no other target ever emits this code.
 * It is the one exception to the no-intrinsics rule of kernels.h; on other hosts it is a stub.
 *
 * Exactness. A tile multiplies bf16 by bf16 and accumulates in f32. The weights are bf16 already;
 * each f32 activation x is split into three bf16 "planes", hi = bf16(x), mid = bf16(x - hi),
 * lo = bf16(x - hi - mid), whose sum is x exactly (8 + 8 + 8 significant bits, each remainder exact
 * in f32) for every x the models produce (a plane below 2^-126 would be flushed). So each product is
 * exact and the result differs from the f32 FMA path only in the order of the f32 additions: the
 * goldens still hold to ~1e-6, where rounding the activations to bf16 alone would move logits by
 * 0.05-0.9 (../shared/goldens/README.md). It costs three tile products per weight tile, still
 * ~3x the f32 FMA rate per core on Sapphire Rapids (measured: 806 effective GFLOP/s/core streaming
 * weights, against an FMA peak of 245). `moec compile --amx-planes 2|1` trades exactness for speed:
 * with hi and mid only each activation keeps 16 bits (relative error <= 2^-17: golden logits within
 * ~3e-5; prefill +20% on the bench preset); with hi alone the activations are bf16.
 *
 * Layouts. Weights: the panel layout of kt_common.h, whose pairs are padded to a multiple of 16
 * (kt_kp): one K step of 16 pairs (32 columns) of one 16-row sub-panel is a 16 x 64-byte B tile at
 * a stride of 128 bytes, exactly AMX's pair-interleaved ("VNNI") form. Activations are packed by
 * kt_amx_pack into groups of 16 rows; a group is [step j][plane p][row 16][32 bf16], so every A tile
 * is 1 KiB contiguous. Rows and columns beyond the real ones are zero, so they add nothing (the
 * weights under them are finite: padding or another block's values).
 *
 * Tiles (all 16 rows x 64 bytes, one configuration for the kernel's whole call): 0-3 accumulate
 * C[group 0/1][sub-panel 0/1], 4-5 hold the sub-panels' B, 6-7 the groups' A. The thread must hold
 * AMX permission (the runtime asks the kernel once, at load: moert_enable_amx in runtime/exec.h). */
#ifndef MOEC_KT_AMX_H
#define MOEC_KT_AMX_H
#include <stdint.h>
#include <string.h>

#include "kt_common.h"

/* KT_AMX_PLANES: the most planes (np, the kernels' amx, is 1 to 3; buffers are sized for 3).
 * KT_AMX_MIN_ROWS: fewer rows than this go through the FMA tile (a 16-row tile product would be
 * mostly waste). KT_AMX_CHUNK_BYTES: the packed activations one pass over the weights reuses (in L2). */
enum { KT_AMX_PLANES = 3, KT_AMX_MIN_ROWS = 8, KT_AMX_CHUNK_BYTES = 768 * 1024, KT_AMX_PF = 4096 };

static inline int64_t kt_amx_steps(int64_t K) { return (K + 31) / 32; }

/* Tokens per packed chunk for rows of K columns: a multiple of 32, at least 32. */
static inline int64_t kt_amx_chunk(int64_t K) {
    int64_t c = KT_AMX_CHUNK_BYTES / (KT_AMX_PLANES * 2 * 32 * kt_amx_steps(K)) / 32 * 32;
    return c > 32 ? c : 32;
}

/* Bytes of one packed chunk of tc tokens over K columns. */
static inline int64_t kt_amx_pack_bytes(int64_t tc, int64_t K) {
    return (tc + 15) / 16 * kt_amx_steps(K) * KT_AMX_PLANES * 16 * 32 * 2;
}

/* Elements of one packed group of 16 rows in np planes. */
static inline int64_t kt_amx_group_elems(int64_t K, int np) { return kt_amx_steps(K) * np * 16 * 32; }

/* Packs m rows (m <= chunk) into dst, in ceil(m / 16) groups of np planes (the first np of hi, mid,
 * lo): row r is x + (toks ? toks[s0 + r] : s0 + r) * ld, its columns [0, K); rows m.. up to the
 * group's end and columns K.. up to the step's end are zero. */
static inline void kt_amx_pack(uint16_t *restrict dst, const float *restrict x, int64_t ld,
                               const int32_t *restrict toks, int64_t s0, int64_t m, int64_t K, int np) {
    const int64_t ns = kt_amx_steps(K), ng = (m + 15) / 16;
    for (int64_t g = 0; g < ng; g++)
        for (int64_t t = 0; t < 16; t++) {
            int64_t r = g * 16 + t;
            const float *row = r < m ? x + (toks ? toks[s0 + r] : s0 + r) * ld : 0; // [K]
            for (int64_t j = 0; j < ns; j++) {
                uint16_t *d = dst + ((g * ns + j) * np * 16 + t) * 32; // plane p at + p * 512
                for (int64_t c = 0; c < 32; c++) {
                    int64_t col = j * 32 + c;
                    float v = row && col < K ? row[col] : 0.0f;
                    uint16_t hi = kt_to_bf16(v);
                    float r1 = v - kt_bf16(hi);
                    uint16_t mid = kt_to_bf16(r1);
                    float r2 = r1 - kt_bf16(mid);
                    d[c] = hi;
                    if (np > 1) d[512 + c] = mid;
                    if (np > 2) d[1024 + c] = kt_to_bf16(r2);
                }
            }
        }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define KT_AMX_FN __attribute__((target("amx-tile,amx-bf16")))

/* Before the first tile and after the last of a kernel call, on the calling thread. */
KT_AMX_FN static inline void kt_amx_begin(void) {
    static const _Alignas(64) uint8_t config[64] = {
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* palette 1 */
        64, 0, 64, 0, 64, 0, 64, 0, 64, 0, 64, 0, 64, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0}; /* tiles 0-7: 16 rows of 64 bytes */
    _tile_loadconfig(config);
}
KT_AMX_FN static inline void kt_amx_end(void) { _tile_release(); }

/* out[16 g + t][16 s + l] = sum over the groups' packed rows (groups = 1 or 2: a0, then a1; np
 * planes) and ns K steps of A . B, B = sub-panel s of the 32-row weight block whose K step 0 starts
 * at w (bf16 elements). out: [32][32] f32 (rows of group 1 only when groups = 2). */
KT_AMX_FN static inline void kt_amx_tile(float *restrict out, const uint16_t *restrict a0,
                                         const uint16_t *restrict a1, const uint16_t *restrict w, int64_t ns,
                                         int groups, int np) {
    __asm__ volatile("" ::: "memory"); /* GCC's tile loads do not name the memory they read */
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t j = 0; j < ns; j++) {
        const uint16_t *wj = w + j * 16 * 64, *x0 = a0 + j * np * 512, *x1 = a1 + j * np * 512;
        for (int64_t line = 0; line < 16 * 64 * 2; line += 64) /* this step's 2 KiB of weights, KT_AMX_PF ahead */
            __builtin_prefetch((const char *)wj + KT_AMX_PF + line);
        _tile_loadd(4, wj, 128);
        _tile_loadd(5, wj + 32, 128);
        for (int p = 0; p < np; p++) {
            _tile_loadd(6, x0 + p * 512, 64);
            _tile_dpbf16ps(0, 6, 4);
            _tile_dpbf16ps(1, 6, 5);
            if (groups == 2) {
                _tile_loadd(7, x1 + p * 512, 64);
                _tile_dpbf16ps(2, 7, 4);
                _tile_dpbf16ps(3, 7, 5);
            }
        }
    }
    _tile_stored(0, out, 128);
    _tile_stored(1, out + 16, 128);
    if (groups == 2) {
        _tile_stored(2, out + 16 * 32, 128);
        _tile_stored(3, out + 16 * 32 + 16, 128);
    }
    __asm__ volatile("" ::: "memory");
}
#else
/* Never called off x86: every caller's amx is 0 there. */
static inline void kt_amx_begin(void) {}
static inline void kt_amx_end(void) {}
static inline void kt_amx_tile(float *restrict out, const uint16_t *restrict a0, const uint16_t *restrict a1,
                               const uint16_t *restrict w, int64_t ns, int groups, int np) {
    (void)out, (void)a0, (void)a1, (void)w, (void)ns, (void)groups, (void)np;
}
#endif

/* kt_amx_tile over packed groups g and g + 1 of abuf (ge elements each) when row 16 (g + 1) is
 * still below m, else group g alone; returns the real rows of out, at most 32. */
static inline int64_t kt_amx_pair(float *restrict out, const uint16_t *restrict abuf, int64_t ge, int64_t g,
                                  int64_t m, const uint16_t *restrict w, int64_t ns, int np) {
    int groups = (g + 1) * 16 < m ? 2 : 1;
    kt_amx_tile(out, abuf + g * ge, abuf + (g + groups - 1) * ge, w, ns, groups, np);
    return m - g * 16 < 16 * groups ? m - g * 16 : 16 * groups;
}

#endif
