/* kt_common: inline helpers shared by the kernel templates in compiler/kernels: weight widening,
 * RMSNorm rows, SiLU, a vectorisable exp, and the panel weight layout with kt_panel_tile, the
 * register tile every matmul-like kernel is built from (pack.c writes the layout through
 * kt_panel_index, so the two cannot drift apart). Vectors are GNU vector types (kt_vf), which
 * LLVM lowers for any target: 16 floats are one AVX-512 register or four NEON ones. Header-only (static inline) so each template stays one self-contained bitcode module, and so
 * a test can #include several templates into one translation unit. Same rules as kernels.h. */
#ifndef MOEC_KT_COMMON_H
#define MOEC_KT_COMMON_H
#include <math.h>
#include <stdint.h>
#include <string.h>

/* KT_TB: token rows per register tile of kt_panel_tile. KT_CHUNK_FLOATS: the activation rows one
 * pass over a weight block reuses are kept to about 512 KiB, so they stay in L2. */
enum { KT_TB = 8, KT_CHUNK_FLOATS = 128 * 1024 };

/* The loop nest of every matmul-like kernel: the tokens [0, n) in chunks of tc (their activation
 * rows stay in L2), in each chunk every weight block b of [b0, b1) (read once per chunk), and over
 * it the chunk's tokens in tiles: TILE(tb) with s the tile's first token, tb = KT_TB, then one tile
 * of the 1 to KT_TB - 1 tokens left (one pass over the block: tiles of 4, 2 and 1 read it up to three
 * times; batch-8 decode, Mixtral bench, 2 threads: +8%). b and s are the caller's names for the loop
 * variables; TILE is a macro of the caller, and tb a literal at each expansion, so every tile's loops
 * unroll. The tile of the tokens left is the last to read block b in this chunk, and at decode the
 * only one: it prefetches the block non-temporally (kt_pf). */
#define KT_FOR_TILES(n, tc, b, b0, b1, s, TILE) KT_FOR_TILES_AT(n, tc, b, b0, b1, s, KT_NO_BLOCK, TILE)
/* The same with BLOCK(b) run once per block and chunk before its tiles (kt_quant.h: dequantise it). */
#define KT_NO_BLOCK(b) (void)0
#define KT_FOR_TILES_AT(n, tc, b, b0, b1, s, BLOCK, TILE)                                                  \
    for (int64_t kt_c0 = 0; kt_c0 < (n); kt_c0 += (tc)) {                                                  \
        int64_t kt_c1 = kt_c0 + (tc) < (n) ? kt_c0 + (tc) : (n);                                            \
        for (int64_t b = (b0); b < (b1); b++) {                                                            \
            int64_t s = kt_c0;                                                                             \
            BLOCK(b);                                                                                      \
            for (; s + KT_TB <= kt_c1; s += KT_TB) TILE(KT_TB);                                            \
            switch (kt_c1 - s) {                                                                           \
            case 7: TILE(7); break;                                                                        \
            case 6: TILE(6); break;                                                                        \
            case 5: TILE(5); break;                                                                        \
            case 4: TILE(4); break;                                                                        \
            case 3: TILE(3); break;                                                                        \
            case 2: TILE(2); break;                                                                        \
            case 1: TILE(1); break;                                                                        \
            default: break;                                                                                \
            }                                                                                              \
        }                                                                                                  \
    }

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

/* bf16 of x, rounded to nearest even (x finite). */
static inline uint16_t kt_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* A kernel's wdt: the weight's dtype (runtime/dtype.h) in the low byte, kt_wt, and above it how the
 * weight meets the activations (bound by `moec compile --act`; kt_quant.h has the block types' bits):
 *   KT_ACT_BF16  (bf16 weights only) the bf16 activation mode: each activation row is rounded to
 *                bf16 once (kt_bf_row) and the tile adds the exact products of bf16 pairs in f32
 *                (kt_panel_tile_bf); without it, f32 activations times the widened weights (exact)
 *   KT_DP_BF16   with it, the target has AVX512_BF16: a pair product is one vdpbf16ps (the one
 *                further exception to the no-intrinsics rule; else portable vector code). */
enum { KT_WT_MASK = 0xff, KT_ACT_BF16 = 0x400, KT_DP_BF16 = 0x800 };
static inline int32_t kt_wt(int32_t wdt) { return wdt & KT_WT_MASK; }
static inline int kt_bfa(int32_t wdt) { return (wdt & KT_ACT_BF16) != 0; }
/* One bit of a wdt describes the target, not the weight, and every kernel's weights carry it (bound
 * by moec compile from the target's features, whatever --act says):
 *   KT_NARROW  the target's vector registers hold less than AVX-512's 32 x 64 bytes (AVX2: 16 x 32,
 *              NEON: 32 x 16), so a tile's accumulators must be fewer (kt_panel_tile).
 * kt_tgt(wdt) is the target bits alone: the wdt of a weight that is f32 for this kernel only (the
 * dequantised scratch of kt_quant.h). */
enum { KT_NARROW = 0x1000 };
static inline int kt_narrow(int32_t wdt) { return (wdt & KT_NARROW) != 0; }
static inline int32_t kt_tgt(int32_t wdt) { return wdt & KT_NARROW; }

/* Element i of a weight tensor of dtype kt_wt(wdt) (0 f32, 2 bf16) widened to f32. wdt is a constant
 * in every specialised kernel, so the branch folds. */
static inline float kt_wload(const void *w, int64_t i, int32_t wdt) {
    return kt_wt(wdt) == 2 ? kt_bf16(((const uint16_t *)w)[i]) : ((const float *)w)[i];
}

/* exp(r) for |r| <= ln2/2: its degree-7 Taylor polynomial by Horner's rule, for r a float or a kt_vf. */
#define KT_EXP_POLY(r)                                                                                     \
    (((((((1.98412698e-4f * (r) + 1.38888889e-3f) * (r) + 8.33333333e-3f) * (r) + 4.16666667e-2f) * (r) +  \
        1.66666667e-1f) * (r) + 0.5f) * (r) + 1.0f) * (r) + 1.0f)

/* exp(x) from arithmetic only, so loops over it vectorise (libm's expf is a call per element):
 * x = n ln2 + r with n = rint(x log2 e), |r| <= ln2/2 (ln2 split in two for an exact n ln2), exp(r)
 * by its degree-7 Taylor polynomial (truncation < 2e-9 relative), times 2^n built in the exponent
 * bits. For x below -87 it gives 0 (as exp underflows there),
 * -INFINITY included; x above 88 is clamped (no model here gets near: scores and logits are
 * max-subtracted first). Tested against exp: within 3 ulp. */
static inline float kt_exp(float x) {
    float xc = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    float n = __builtin_rintf(xc * 1.44269504088896341f);
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f, p = KT_EXP_POLY(r);
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return x < -87.0f ? 0.0f : p * scale;
}

typedef float kt_vf __attribute__((vector_size(64)));     // 16 x f32
typedef uint32_t kt_vu __attribute__((vector_size(64)));  // 16 x u32
typedef int32_t kt_vi __attribute__((vector_size(64)));   // 16 x i32

/* Lanes of a where m (a comparison's all-ones lanes), else of b. */
static inline kt_vf kt_vsel(kt_vi m, kt_vf a, kt_vf b) {
    kt_vi ai, bi, r;
    memcpy(&ai, &a, 64), memcpy(&bi, &b, 64);
    r = (ai & m) | (bi & ~m);
    memcpy(&a, &r, 64);
    return a;
}

/* kt_exp on 16 lanes in vector code, for SiLU (expf was a libm call per element, 5% of a prefill
 * step; a loop over scalar kt_exp then stayed scalar code, 15% of a bf16-mode prefill step). The
 * same range reduction and polynomial; n is rounded half away from zero instead of to even (only at
 * an exact tie, where r = +-ln2/2 either way). */
static inline kt_vf kt_exp_v(kt_vf x) {
    const kt_vf lo = (kt_vf){0} - 87.0f, hi = (kt_vf){0} + 88.0f, zero = {0};
    kt_vf xc = kt_vsel(x < lo, lo, kt_vsel(x > hi, hi, x)), v = xc * 1.44269504088896341f;
    kt_vi ni = __builtin_convertvector(v + kt_vsel(v < zero, zero - 0.5f, zero + 0.5f), kt_vi);
    kt_vf n = __builtin_convertvector(ni, kt_vf);
    kt_vf r = xc - n * 0.693359375f + n * 2.12194440e-4f, p = KT_EXP_POLY(r);
    kt_vi bits = (ni + 127) << 23;
    kt_vf scale;
    memcpy(&scale, &bits, 64);
    return kt_vsel(x < lo, zero, p * scale);
}

/* SiLU, a / (1 + exp(-a)), on 16 lanes. */
static inline kt_vf kt_silu_v(kt_vf a) { return a / (1.0f + kt_exp_v(-a)); }

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

/* ---- the panel layout (PACK_PANEL, PACK_PANEL_EACH, PACK_GATE_UP) and its register tile ----
 *
 * A matrix W[R][K] read by kt_panel_tile is stored in blocks of 32 rows (R padded with zero rows to a
 * multiple of 32) and, inside a block, in column pairs (K padded with zero columns to a multiple of
 * 32, KP = kt_kp(K) pairs): block b, pair q holds 64 elements, sub-panel s (rows b*32 + s*16 + lane,
 * lane < 16) then s + 1, each 32 elements:
 *   bf16: lane-major, the pair of a row side by side: [lane][2] = W[row][2q], W[row][2q + 1]
 *   f32:  column-major: [2][lane] = W[.][2q] for the 16 rows, then W[.][2q + 1]
 * so one 64-byte load of a bf16 sub-panel pair gives both columns of 16 rows as two f32 vectors with
 * one shift and one mask (no shuffles), and a block is one contiguous forward stream.
 * PACK_GATE_UP uses the same layout with sub-panel 0 = gate rows b*16 + lane, 1 = up rows. */
/* Pairs stored per block row: ceil(K / 2) rounded up to 16 (one AMX K step, kt_amx.h; the pairs
 * added are zero and the FMA tile never reads them). */
static inline int64_t kt_kp(int64_t K) { return (K + 31) / 32 * 16; }

/* Elements of one packed matrix of R rows and K columns. */
static inline int64_t kt_panel_elems(int64_t R, int64_t K) { return (R + 31) / 32 * kt_kp(K) * 64; }

/* Index in the packed matrix of W[r][c] (r < R rounded up to 32, c < 2 KP). */
static inline int64_t kt_panel_index(int64_t r, int64_t c, int64_t K, int32_t wdt) {
    int64_t base = ((r / 32 * kt_kp(K) + c / 2) * 2 + r / 16 % 2) * 32;
    return base + (wdt == 2 ? r % 16 * 2 + c % 2 : c % 2 * 16 + r % 16);
}

static inline kt_vf kt_ldv(const float *p) {
    kt_vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void kt_stv(float *p, kt_vf v) { memcpy(p, &v, sizeof v); }

/* The 16 rows of one sub-panel at element offset o: column 2q in *ev, column 2q + 1 in *od. */
static inline void kt_wpair(const void *restrict w, int64_t o, int32_t wdt, kt_vf *ev, kt_vf *od) {
    if (kt_wt(wdt) == 2) {
        kt_vu u, e, m;
        memcpy(&u, (const uint16_t *)w + o, sizeof u);
        e = u << 16;
        m = u & 0xffff0000u;
        memcpy(ev, &e, sizeof e);
        memcpy(od, &m, sizeof m);
    } else {
        *ev = kt_ldv((const float *)w + o);
        *od = kt_ldv((const float *)w + o + 16);
    }
}

/* acc[s][t] = sum over pairs q < n2 of W[32 rows of the block][2q, 2q + 1] . xs[t][2q, 2q + 1], plus,
 * when half, the even column of pair n2 alone (an odd K). w0: element offset of the block's first
 * pair to read; xs[t]: token t's activations from that pair's first column. tb <= KT_TB is a
 * literal constant at every call site: once inlined the s and t loops unroll into 2 tb vector
 * accumulators (tb <= 2: even and odd columns in separate ones, so the chains stay short; on a
 * KT_NARROW target tb = 2 keeps one chain per accumulator, which its 16 registers hold), each
 * weight vector loaded and widened once per tile, each activation broadcast once per tile. On a
 * KT_NARROW target a tile of KT_NARROW_TB tokens or more runs instead as passes over one sub-panel
 * and up to KT_TN tokens (kt_panel_pass), each sub-panel's weights read once per pass. The
 * block is read as one forward stream, prefetched KT_PF_BYTES ahead (kt_pf). Tuned on the Mixtral bench
 * preset, first (older kernels, Sapphire Rapids): none 51 tok/s decode, 512-1024 bytes 64-65, 2048 62;
 * then (Zen 5 VM, 2 threads, interleaved rounds): 768 -> 2048 bytes took decode from 84-92 to 108-110
 * tok/s, batch-8 decode from 190-201 to 235-238, prefill of 128 tokens from 728-771 to 748-810,
 * Q4_0 int8 decode from 213-265 to 234-292 (the quantised tiles keep 2048: KT_PF_Q_BYTES). Until
 * then only the first line of each bf16 pair (two of an f32 pair's four) was prefetched. With every
 * line prefetched, wide tiles stream far better (one thread, a tile of 8 tokens over 500 MB: 8.5 ->
 * 18 GB/s), and the distance was tuned again (Zen 5 VM, batch-8 executable, 4 interleaved rounds, 8
 * equal prompts / 8 different / one, tok/s): 2048 516 / 208 / 82, 4096 535 / 223 / 86, 8192 598 /
 * 234 / 88, 16384 no better; B = 1 decode and prefill of 128 and 512 tokens unchanged (within 3%).
 * The bf16-mode tile (KT_PF_BF_BYTES, both lines always prefetched), 3 rounds: 768 471 / 204 / 89,
 * 2048 582 / 239 / 91, 8192 577 / 216 / 81; prefill unchanged (768 had won the older B = 1 runs). */
enum { KT_PF_BYTES = 8192, KT_PF_BF_BYTES = 2048, KT_PF_Q_BYTES = 2048 };

/* The prefetch of a weight line a tile of tb tokens will read. A tile of fewer than KT_TB tokens is
 * the last to read its block in this chunk (KT_FOR_TILES), so its lines stream through L1 with
 * prefetchnta, without displacing what the caches hold for reuse (activations, the KV cache); a full
 * tile's block is read by further tiles, so its lines go to every level. tb is a constant in every
 * unrolled tile, so the choice costs nothing. Zen 5 VM, 2 threads, interleaved rounds, tok/s, t0 ->
 * nta for partial tiles (session 17): decode Mixtral bench 88.7 -> 101.0, Qwen3-MoE bench 138.9 ->
 * 158.4 (1 thread 62.4 -> 70.4), its --act bf16 121.6 -> 137.8, Q4_0 --act int8 438.6 -> 496.5, Q4_K
 * --act int8 292.5 -> 401.9; prefill of 128 / 512 tokens unchanged. A full tile alone in its chunk
 * (8 tokens) streaming too gained nothing at batch 8 (261 -> 270 Mixtral, 217 -> 214 Qwen3-MoE) and
 * took a second copy of every full tile's loop (moec compile 60% slower), so it does not. prefetchnta
 * in full tiles too: prefill of 128 tokens 1182 -> 1119; prefetcht2 instead of nta: decode 135.8 ->
 * 121.2. */
static inline void kt_pf(const void *a, int tb) {
    if (tb < KT_TB) __builtin_prefetch(a, 0, 0);
    else __builtin_prefetch(a, 0, 3);
}

/* Tokens at most in one pass of a narrow tile (kt_panel_pass). */
enum { KT_TN = 4 };

/* One pass of a narrow tile: acc[t] = the 16 rows of the sub-panel whose pairs start at element
 * offset w0 (+ 64 q) dotted with xs[t], for nt <= KT_TN tokens (kt_panel_tile's sums, one sub-panel).
 * At most 4 vector accumulators of 16 lanes (8 AVX2 registers, with 2 weight vectors and the
 * broadcasts: 14 of 16): one chain per token of 3 or 4, two (even and odd columns) for 1 or 2, so 8
 * FMA chains cover the FMA latency where they can. Each pass prefetches only its own lines
 * (KT_PF_BYTES ahead), with the hint a tile of pf_tb tokens gives (kt_pf). */
static inline void kt_panel_pass(kt_vf *restrict acc, int nt, int pf_tb, const void *restrict w, int64_t w0,
                                 const float *const *xs, int64_t n2, int half, int32_t wdt) {
    kt_vf a[KT_TN], b[KT_TN];
    for (int t = 0; t < nt; t++) a[t] = b[t] = (kt_vf){0};
    const int64_t es = kt_wt(wdt) == 2 ? 2 : 4;
    for (int64_t q = 0; q < n2; q++) {
        int64_t o = w0 + q * 64;
        for (int64_t line = 0; line < es * 32; line += 64) /* the 1 (bf16) or 2 (f32) lines of this sub-panel pair */
            kt_pf((const char *)w + o * es + KT_PF_BYTES + line, pf_tb);
        kt_vf we, wo;
        kt_wpair(w, o, wdt, &we, &wo);
        for (int t = 0; t < nt; t++) {
            if (nt <= 2) {
                a[t] += we * xs[t][2 * q];
                b[t] += wo * xs[t][2 * q + 1];
            } else {
                a[t] += we * xs[t][2 * q] + wo * xs[t][2 * q + 1];
            }
        }
    }
    if (half) {
        kt_vf we, wo;
        kt_wpair(w, w0 + n2 * 64, wdt, &we, &wo);
        for (int t = 0; t < nt; t++) a[t] += we * xs[t][2 * n2];
    }
    for (int t = 0; t < nt; t++) acc[t] = a[t] + b[t];
}

/* Tile sizes from which a narrow target's kt_panel_tile runs in passes. Not below 3: a tile of 1 or
 * 2 tokens is the only reader of its block at decode, and two passes read each block's lines as two
 * interleaved streams (Zen 3, AVX2, 2 threads, 4 interleaved rounds, tok/s, from 3 to 1: decode
 * Mixtral bench 76.2 -> 62.2, Qwen3-MoE bench 132.0 -> 102.7, batch 8 156.6 -> 144.8 and 211.4 ->
 * 179.9; prefill of 512 tokens, Mixtral, 392.5 -> 402.0). */
enum { KT_NARROW_TB = 3 };

/* Puts what p points to in memory here and forgets it (an empty asm that takes p and clobbers memory;
 * no instruction on any target). After each narrow pass: else LLVM keeps the finished passes' sums in
 * registers and spills the next pass's accumulators inside its loop instead (AVX2, Mixtral bench
 * logits kernel: 91 stack moves in its FMA loops -> 19; decode 73.0 -> 76.2 tok/s, batch 8 154.3 ->
 * 156.6, prefill of 512 tokens 390.2 -> 392.5: same runs as KT_NARROW_TB's). */
static inline void kt_to_memory(const void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

/* The passes of a narrow tile of tb tokens into acc[2][KT_TB]: per sub-panel s, the tokens in np
 * passes of at most KT_TN, split evenly (5 = 2 + 3, not 4 + 1, so each pass keeps its chains);
 * PASS(s, t0, nt, pf_tb) sums tokens [t0, t0 + nt) of sub-panel s into acc[s][t0 ..], pf_tb being
 * the prefetch hint's tile size (the tile's own for the last pass over a sub-panel, else KT_TB); the
 * sums go to memory after each pass (kt_to_memory). */
#define KT_NARROW_PASSES(acc, tb, PASS)                                                                    \
    do {                                                                                                   \
        const int kt_np = ((tb) + KT_TN - 1) / KT_TN;                                                      \
        for (int kt_s = 0; kt_s < 2; kt_s++)                                                               \
            for (int kt_p = 0; kt_p < kt_np; kt_p++) {                                                     \
                const int kt_t0 = kt_p * (tb) / kt_np, kt_nt = (kt_p + 1) * (tb) / kt_np - kt_t0;          \
                PASS(kt_s, kt_t0, kt_nt, kt_p == kt_np - 1 ? (tb) : KT_TB);                                \
                kt_to_memory(acc);                                                                         \
            }                                                                                              \
    } while (0)

static inline void kt_panel_tile(kt_vf acc[2][KT_TB], int tb, const void *restrict w, int64_t w0,
                                 const float *const xs[KT_TB], int64_t n2, int half, int32_t wdt) {
    if (kt_narrow(wdt) && tb >= KT_NARROW_TB) {
#define KT_PANEL_PASS(s, t0, nt, pf_tb) kt_panel_pass(&acc[s][t0], nt, pf_tb, w, w0 + 32 * (s), xs + (t0), n2, half, wdt)
        KT_NARROW_PASSES(acc, tb, KT_PANEL_PASS);
#undef KT_PANEL_PASS
        return;
    }
    kt_vf a[2][KT_TB], b[2][KT_TB];
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < tb; t++) a[s][t] = b[s][t] = (kt_vf){0};
    const int64_t es = kt_wt(wdt) == 2 ? 2 : 4;
    for (int64_t q = 0; q < n2; q++) {
        int64_t o = w0 + q * 64;
        for (int64_t line = 0; line < es * 64; line += 64) /* the 2 (bf16) or 4 (f32) lines of this pair */
            kt_pf((const char *)w + o * es + KT_PF_BYTES + line, tb);
        if (kt_narrow(wdt) && tb == 2) { /* one chain per row vector, one sub-panel's weights live at a
                                          * time: 8 + 4 of 16 AVX2 registers (split chains: 24) */
            for (int s = 0; s < 2; s++) {
                kt_vf we, wo;
                kt_wpair(w, o + 32 * s, wdt, &we, &wo);
                for (int t = 0; t < 2; t++) a[s][t] += we * xs[t][2 * q] + wo * xs[t][2 * q + 1];
            }
            continue;
        }
        kt_vf we[2], wo[2];
        kt_wpair(w, o, wdt, &we[0], &wo[0]);
        kt_wpair(w, o + 32, wdt, &we[1], &wo[1]);
        for (int t = 0; t < tb; t++) {
            float xe = xs[t][2 * q], xo = xs[t][2 * q + 1];
            for (int s = 0; s < 2; s++) {
                if (tb <= 2) {
                    a[s][t] += we[s] * xe;
                    b[s][t] += wo[s] * xo;
                } else {
                    a[s][t] += we[s] * xe + wo[s] * xo;
                }
            }
        }
    }
    if (half) {
        kt_vf we[2], wo[2];
        kt_wpair(w, w0 + n2 * 64, wdt, &we[0], &wo[0]);
        kt_wpair(w, w0 + n2 * 64 + 32, wdt, &we[1], &wo[1]);
        for (int t = 0; t < tb; t++)
            for (int s = 0; s < 2; s++) a[s][t] += we[s] * xs[t][2 * n2];
    }
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < tb; t++) acc[s][t] = tb <= 2 ? a[s][t] + b[s][t] : a[s][t];
}

/* ---- the bf16 activation mode (KT_ACT_BF16) ----
 *
 * An activation row of K columns becomes kt_bf_words(K) 32-bit words, word q = bf16(x[2q]) in the low
 * half and bf16(x[2q + 1]) in the high half (a column >= K gives 0): exactly a bf16 panel pair's
 * layout, so one broadcast word times one 64-byte sub-panel load is 16 rows' sums over two columns. */
static inline int64_t kt_bf_words(int64_t K) { return kt_kp(K); }

/* dst[q] for the pairs q of columns [c0, c1) (c0 even): rounded to nearest even, as vcvtne2ps2bf16. */
static inline void kt_bf_row(uint32_t *restrict dst, const float *restrict src, int64_t c0, int64_t c1, int64_t K) {
    for (int64_t q = c0 / 2; 2 * q < c1; q++) {
        uint32_t lo = kt_to_bf16(src[2 * q]), hi = 2 * q + 1 < K ? kt_to_bf16(src[2 * q + 1]) : 0;
        dst[q] = lo | hi << 16;
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
/* *acc += the pair products of w's and x's bf16 halves, one vdpbf16ps (through pointers: callers need
 * not enable AVX-512). */
__attribute__((target("avx512f,avx512bf16"))) static inline void kt_dpbf_x86(kt_vf *acc, const kt_vu *w, uint32_t x) {
    __m512 a;
    __m512i b, c = _mm512_set1_epi32((int)x);
    memcpy(&a, acc, 64), memcpy(&b, w, 64);
    a = _mm512_dpbf16_ps(a, (__m512bh)b, (__m512bh)c);
    memcpy(acc, &a, 64);
}
#else
/* Never called off x86: KT_DP_BF16 is bound only for an x86 target with AVX512_BF16. */
static inline void kt_dpbf_x86(kt_vf *acc, const kt_vu *w, uint32_t x) { (void)acc, (void)w, (void)x; }
#endif

/* acc + for each lane l: w's high bf16 times x's high bf16, plus w's low times x's low (each product
 * exact in f32; vdpbf16ps adds the high one first, and flushes subnormal inputs and results). */
static inline kt_vf kt_dpbf(kt_vf acc, kt_vu w, uint32_t x, int32_t wdt) {
    if (wdt & KT_DP_BF16) {
        kt_dpbf_x86(&acc, &w, x);
        return acc;
    }
    kt_vu we = w << 16, wo = w & 0xffff0000u;
    uint32_t xe = x << 16, xo = x & 0xffff0000u;
    float fe, fo;
    memcpy(&fe, &xe, 4), memcpy(&fo, &xo, 4);
    kt_vf vfe, vfo;
    memcpy(&vfe, &we, 64), memcpy(&vfo, &wo, 64);
    return acc + vfo * fo + vfe * fe;
}

/* One pair q of kt_panel_tile_bf into acc. */
static inline void kt_bf_step(kt_vf acc[2][KT_TB], int tb, const void *restrict w, int64_t o,
                              const uint32_t *const xs[KT_TB], int64_t q, int32_t wdt) {
    kt_pf((const char *)w + o * 2 + KT_PF_BF_BYTES, tb);
    kt_pf((const char *)w + o * 2 + KT_PF_BF_BYTES + 64, tb);
    kt_vu wv[2];
    memcpy(&wv[0], (const uint16_t *)w + o, 64);
    memcpy(&wv[1], (const uint16_t *)w + o + 32, 64);
    for (int t = 0; t < tb; t++) {
        uint32_t x = xs[t][q];
        for (int s = 0; s < 2; s++) acc[s][t] = kt_dpbf(acc[s][t], wv[s], x, wdt);
    }
}

/* kt_panel_tile for bf16 weights in the bf16 activation mode: acc[s][t] = sum over pairs q < n2 of the
 * block's 32 rows . xs[t][q] (bf16 pair words, kt_bf_row; n2 = ceil(K / 2): an odd K's last pair
 * has a zero high half on both sides). tb <= 2 alternates two accumulator sets between pairs, so
 * the dependency chains stay short. */
static inline void kt_panel_tile_bf(kt_vf acc[2][KT_TB], int tb, const void *restrict w, int64_t w0,
                                    const uint32_t *const xs[KT_TB], int64_t n2, int32_t wdt) {
    kt_vf a[2][KT_TB], b[2][KT_TB];
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < tb; t++) a[s][t] = b[s][t] = (kt_vf){0};
    int64_t q = 0;
    if (tb <= 2)
        for (; q + 2 <= n2; q += 2) {
            kt_bf_step(a, tb, w, w0 + q * 64, xs, q, wdt);
            kt_bf_step(b, tb, w, w0 + q * 64 + 64, xs, q + 1, wdt);
        }
    for (; q < n2; q++) kt_bf_step(a, tb, w, w0 + q * 64, xs, q, wdt);
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < tb; t++) acc[s][t] = a[s][t] + b[s][t];
}

#endif
