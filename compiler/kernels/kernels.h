/* kernels: the compiled path's kernel templates (plain C11, compiled to LLVM bitcode at build time
 * and specialised by `moec compile`: every int64/int32/float parameter except n, ith and nth is
 * bound to a constant, so the emitted functions take only pointers, n and (ith, nth)).
 * They are also ordinary C, so tests compile them natively against tests/ref/ref_ops.c.
 *
 * Rules: no allocation, no libc except expf/sqrtf/memset/memcpy, no target intrinsics (templates
 * must retarget to AArch64; GNU vector types and target-independent builtins such as
 * __builtin_prefetch are fine; the one exception, kt_amx.h, is reached only when amx is bound > 0),
 * restrict pointers, loops LLVM can vectorise once shapes are constants.
 * Every kernel splits its independent rows by (ith, nth) with kt_split; it never waits for another
 * thread — the step program puts a barrier between dependent kernels. (Memory-bound kernels hand out
 * their last units through an atomic counter, kt_work: a claim, never a wait.)
 * Weight dtypes (wdt): 0 = f32, 2 = bf16, and the GGUF block types with kernels (kt_quant.h: Q4_0 5,
 * Q8_0 9, Q4_K 10, Q5_K 11, Q6_K 12, in the quantised panel layout; runtime/dtype.h values).
 * Activations are f32; block-type weights are dequantised exactly (ggml's values) in registers, or for
 * a prefill tile into f32 scratch; or, when their wdt carries KT_ACT_I8 (kt_quant.h: the int8 mode),
 * meet the activations quantised per 32 columns in integer dot products (the *_scratch helpers below
 * take q = kt_q_scratch_kind of the kernel's weights).
 * amx (kt_norm_matmul, kt_experts): 0, or when the target has AMX-BF16 and the step has T >= 16
 * tokens the activation planes, 1 to 3 (3, the default, is exact): bf16 weight tiles of enough
 * rows then go through kt_amx.h's tile products (the thread's scratch must then include the packed
 * activations: the *_scratch helpers below).
 * Shapes outermost first; T = tokens of the step (a constant: it sets every buffer's layout);
 * n <= T = the rows that are real tokens (a runtime value in a prefill step, whose last chunk is
 * partial): every kernel reads and writes rows [0, n) only, so padding costs nothing and never
 * reaches the router's dispatch lists, the stats or the KV cache. */
#ifndef MOEC_KERNELS_H
#define MOEC_KERNELS_H
#include <stdint.h>

#include "kt_amx.h"
#include "kt_quant.h"

/* Dispatch produced by kt_router for one MoE layer, laid out in one buffer (64-byte aligned):
 *   MoeRoute routes[T * k]      (expert id, weight) per token, highest probability first
 *   int32_t  count[E]           tokens kept per expert (<= C)
 *   int32_t  tok[E * C]         their token indices, in token order
 *   float    wt[E * C]          their routing weights
 *   int32_t  live[E]            the experts with tokens (count > 0), in id order
 *   int64_t  nlive              at the next multiple of 64 bytes (kt_dispatch_nlive): the number of
 *                               live experts
 * kt_dispatch_bytes gives the size. */
static inline int64_t kt_dispatch_nlive(int64_t T, int64_t k, int64_t E, int64_t C) {
    return (8 * T * k + 4 * E + 8 * E * C + 4 * E + 63) / 64 * 64;
}
static inline int64_t kt_dispatch_bytes(int64_t T, int64_t k, int64_t E, int64_t C) {
    return kt_dispatch_nlive(T, k, E, C) + 64;
}

/* y[T, N] = (resid[T, N] +) rmsnorm(x)[T, K] w[N, K]^T (+ bias[N]). split <= N: rows [split, N) of w
 * are a second panel matrix of dtype wdt2 right after the first (a multiple of 32; N: none).
 * has_norm: x is normalised first with norm_w[K] and eps (each thread normalises all T rows
 * into its own scratch region, scratch + ith * kt_norm_matmul_scratch(T, K, has_norm, amx, q) floats;
 * scratch may be NULL when that is 0). Output rows n split between threads. */
void kt_norm_matmul(float *restrict y, const float *restrict x, const float *restrict norm_w,
                    const void *restrict w, const float *restrict bias, const float *restrict resid,
                    float *restrict scratch, int64_t T, int64_t K, int64_t N, float eps, int32_t has_norm,
                    int32_t has_bias, int32_t has_resid, int32_t wdt, int32_t wdt2, int64_t split, int32_t amx,
                    int64_t n, int32_t ith, int32_t nth);

/* The KV cache of one layer and one slot (kc, then vc; the slots' caches follow each other, nkv S hd
 * floats apart), for S positions (a multiple of 16: kt_kv_positions):
 *   keys   kc[nkv][S / 16][hd][16]: 16 positions side by side, so a block of 16 keys is hd vectors
 *          and attention scores vectorise over keys (no horizontal sums)
 *   values vc[nkv][S][hd]: each kv head's values one forward stream */
enum { KT_MAX_HEAD_DIM = 512 };
static inline int64_t kt_round16(int64_t n) { return (n + 15) / 16 * 16; }
static inline int64_t kt_kv_positions(int64_t S) { return kt_round16(S); }
static inline int64_t kt_k_index(int64_t p, int64_t g, int64_t d, int64_t S, int64_t hd) {
    return ((g * (S / 16) + p / 16) * hd + d) * 16 + p % 16;
}
static inline int64_t kt_v_index(int64_t p, int64_t g, int64_t d, int64_t S, int64_t hd) {
    return (g * S + p) * hd + d;
}

/* From qkv[T, (nh + 2 nkv) hd] (q heads, then k heads, then v heads): optional q/k RMSNorm
 * (qk_norm 1: per head with qn[hd], kn[hd]; 2: over the whole q row with qn[nh hd] and the whole k
 * row with kn[nkv hd]), optional clamp of q, k, v to [-clip, clip] (clip > 0), then half-split RoPE
 * of q and k at position pos[t] using rope[S][hd] = cos[hd/2] then sin[hd/2] per position
 * (attention factor already multiplied in); writes q_out[T, nh hd] and k and v at position pos[t]
 * of slot slot[t]'s KV cache in kc, vc (layout above). Units (t, head) split between threads. */
void kt_qkv_rope(float *restrict q_out, float *restrict kc, float *restrict vc, const float *restrict qkv,
                 const float *restrict qn, const float *restrict kn, const float *restrict rope,
                 const int64_t *restrict pos, const int32_t *restrict slot, int64_t T, int64_t nh, int64_t nkv, int64_t hd, int64_t S, float eps, int32_t qk_norm, float clip,
                 int64_t n, int32_t ith, int32_t nth);

/* out[T, nh hd] = softmax(q k^T / sqrt(hd)) v over slot slot[t]'s cached keys j <= pos[t] (and
 * pos[t] - j < window when window > 0); query head h reads kv head h / (nh / nkv).
 * Units (t, kv head) dealt to the threads in turn (u mod nth), which balances a causal prefill. */
void kt_attention(float *restrict out, const float *restrict q, const float *restrict kc,
                  const float *restrict vc, const int64_t *restrict pos, const int32_t *restrict slot, int64_t T, int64_t nh, int64_t nkv, int64_t hd,
                  int64_t S, int64_t window, int64_t n, int32_t ith, int32_t nth);

/* Router of one MoE layer: h = rmsnorm(x) with norm_w[H]; logits = h gate_w[E, H]^T; softmax over
 * all E; top k (descending probability, lowest id on ties); weights renormalised when renorm;
 * dispatch lists with capacity C per expert in token order (assignments beyond C dropped).
 * stats[slot[t] stats_stride + e] += 1 per kept assignment of row t to expert e, and
 * stats[slot[t] stats_stride + E] += 1 per dropped one (stats may be NULL).
 * Runs on thread 0 only (tiny); the others return at once. */
void kt_router(char *restrict dispatch, const float *restrict x, const float *restrict norm_w,
               const void *restrict gate_w, int64_t *restrict stats, const int32_t *restrict slot,
               int64_t stats_stride, int64_t T, int64_t H, int64_t E,
               int64_t k, int64_t C, float eps, int32_t renorm, int32_t wdt, int64_t n, int32_t ith, int32_t nth);
/* kt_router in two kernels with kt_router's arguments and a barrier between, for a prefill step (its
 * rows' routes took 4% of a 512-token Qwen3-MoE chunk on thread 0 while the others waited):
 * kt_router_routes writes routes[t] of this thread's rows (split by kt_split when 2 C >= nth, else all
 * on thread 0); kt_router_lists (thread 0) builds the dispatch lists, stats, live list and counters
 * from them. */
void kt_router_routes(char *restrict dispatch, const float *restrict x, const float *restrict norm_w,
                      const void *restrict gate_w, int64_t *restrict stats, const int32_t *restrict slot,
                      int64_t stats_stride, int64_t T, int64_t H, int64_t E, int64_t k, int64_t C, float eps,
                      int32_t renorm, int32_t wdt, int64_t n, int32_t ith, int32_t nth);
void kt_router_lists(char *restrict dispatch, const float *restrict x, const float *restrict norm_w,
                     const void *restrict gate_w, int64_t *restrict stats, const int32_t *restrict slot,
                     int64_t stats_stride, int64_t T, int64_t H, int64_t E, int64_t k, int64_t C, float eps,
                     int32_t renorm, int32_t wdt, int64_t n, int32_t ith, int32_t nth);

/* The expert FFN of one layer, fused: h = rmsnorm(x) with norm_w (each thread normalises all T
 * rows into scratch); for each expert e with tokens in the dispatch lists:
 *   act[s, i] = silu(h[tok] . gate_e[i]) * (h[tok] . up_e[i])   for i in this thread's 16-row blocks
 *   part[tok, :] += wt[s] * down_e[:, those i] act[s, those i]
 * gate_up: per expert a PACK_GATE_UP panel matrix (16 gate + 16 up rows per block, so one pass reads
 * both); down: per expert a panel matrix of H rows over I columns (kt_common.h). Then the optional
 * ungated/sigmoid-gated dense expert (shared_kind 0: none; 1: qwen2 shared expert gated by
 * sigmoid(h . sg_w[H]), sg_w f32 like every vector; 2: a dense MLP layer, weight 1) of width SI with
 * sh_gate_up and sh_down in the same layouts, over every token. E = 0 means no routed experts.
 * part = partials + ith * T * H is this thread's [T, H] partial sum (zeroed here); kt_reduce adds
 * them up. scratch + ith * scratch_per_thread floats is this thread's work space, needing
 * kt_experts_scratch(T, H, max(I, SI), nth, amx, q) floats. Threads split the I (or SI) rows in units
 * of 32 (two gate/up blocks), so each thread's down columns start on an AMX K step (and on a group of
 * 32 columns of a block type). wgu, wdn, wsgu, wsdn: the dtypes of gate_up, down, sh_gate_up, sh_down
 * (a GGUF mixture may give each its own).
 * xtab: NULL, or the routed experts' matrices one by one, [2][E]: expert e's packed gate_up at
 * xtab[e] and its down at xtab[E + e] (each the layout of one expert of gate_up and down, which are
 * then not read); the runtime's expert table (MoeStepArgs.experts), so that the experts of a
 * memory budget can live in a pool. Same for kt_experts_act (gate_up) and kt_experts_down (down). */
void kt_experts(float *restrict partials, const float *restrict x, const float *restrict norm_w,
                const char *restrict dispatch, const void *restrict gate_up, const void *restrict down,
                const void *restrict sh_gate_up, const void *restrict sh_down, const void *restrict sg_w,
                float *restrict scratch, const void *const *restrict xtab, int64_t T, int64_t H, int64_t I,
                int64_t E, int64_t k, int64_t C, int64_t SI, int32_t shared_kind, float eps,
                int64_t scratch_per_thread, int32_t wgu, int32_t wdn, int32_t wsgu, int32_t wsdn, int32_t amx,
                int64_t n, int32_t ith, int32_t nth);

/* Steps of fewer than KT_TILE_T tokens (decode) use the FMA tile and the decode form of kt_experts
 * below; steps of at least KT_TILE_T (prefill) the AMX tiles where the target has them (16 rows each)
 * and kt_experts with per-thread partials. The fuse pass decides by the step's T. */
enum { KT_TILE_T = 16 };

/* The decode form of kt_experts (steps of fewer than KT_TILE_T tokens), two kernels with a barrier between
 * them and no partials:
 * kt_experts_act: h = rmsnorm(x) (each thread all n rows, into scratch + ith *
 *   kt_experts_act_scratch(T, H, q8h) floats, q8h: gate_up or sh_gate_up int8); act[e][s][i] =
 *   silu(h[tok] . gate_e[i]) (h[tok] . up_e[i]) wt[s] for each expert's listed tokens, and act_sh[t][i]
 *   the same for the shared/dense expert over every token with weight sigmoid(h[t] . sg_w) (kind 1) or
 *   1; the work in units of 32 rows i of one expert (the shared one's first, then each live expert's).
 *   act: [E][C][round16(I)] then [T][round16(SI)], then the int8/bf16 modes' gates and converted rows
 *   (q8, below: kt_experts_act_floats).
 * kt_experts_down: y[t] = x[t] + sum over the experts listing t of down_e act[e][s] (+ the shared
 *   expert's), the work in units of 32 rows of H: a thread reads those rows of each expert's down
 *   matrix (a run of units: one forward stream per expert; in kt_experts a thread's columns of each
 *   32-row block are separate runs, short when I is small) and writes them of y.
 * Both share the units out as kt_work says: a static run per thread, the last quarter claimed
 * one at a time through the runtime's counters (kt_work_counter). Which thread
 * computes a unit changes no result: each unit's sums run in a fixed order. */
void kt_experts_act(float *restrict act, const float *restrict x, const float *restrict norm_w,
                    char *restrict dispatch, const void *restrict gate_up, const void *restrict sh_gate_up,
                    const void *restrict sg_w, float *restrict scratch, const void *const *restrict xtab, int64_t T,
                    int64_t H, int64_t I, int64_t E, int64_t k, int64_t C, int64_t SI, int32_t shared_kind, float eps,
                    int32_t wgu, int32_t wsgu, int32_t q8, int64_t n, int32_t ith, int32_t nth);
void kt_experts_down(float *restrict y, const float *restrict x, char *restrict dispatch,
                     const float *restrict act, const void *restrict down, const void *restrict sh_down,
                     const void *const *restrict xtab, int64_t T, int64_t H, int64_t I, int64_t E, int64_t k,
                     int64_t C, int64_t SI, int32_t shared_kind, int32_t wdn, int32_t wsdn, int64_t n, int32_t ith,
                     int32_t nth);
/* With converted activations for down (q8: its wdt has KT_ACT_I8 or KT_ACT_BF16, kt_quant.h's kt_cv)
 * the act rows hold silu(g) u alone, as the generic path multiplies them: the routing weight and the
 * shared expert's gate are applied to down's output, the gates kept after the act rows ([T] floats),
 * and the act rows follow converted (kt_qa_row_bytes rows: [E][C] of I columns, then [T] of SI), each
 * thread converting the 32-column units it computed: to bf16 pairs when q8 has KT_ACT_BF16, else int8.
 * kt_experts_act_scratch: h rows, the gates and with q8h (gate_up converted) the converted h rows. */
static inline int64_t kt_experts_act_gates(int64_t T, int64_t E, int64_t C, int64_t I, int64_t SI) {
    return E * C * kt_round16(I) + T * kt_round16(SI);
}
static inline int64_t kt_experts_act_qrows(int64_t T, int64_t E, int64_t C, int64_t I, int64_t SI) {
    return kt_experts_act_gates(T, E, C, I, SI) + T;
}
static inline int64_t kt_experts_act_qshared(int64_t T, int64_t E, int64_t C, int64_t I, int64_t SI, int32_t q8) {
    return kt_experts_act_qrows(T, E, C, I, SI) + (q8 & 1 ? E * C * kt_qa_row_bytes(I) / 4 : 0);
}
/* Floats of the act buffer; q8: bit 0 the routed experts' down takes converted rows, bit 1 the
 * shared one's (KT_ACT_BF16: in the bf16 form). */
static inline int64_t kt_experts_act_floats(int64_t T, int64_t E, int64_t C, int64_t I, int64_t SI, int32_t q8) {
    return kt_experts_act_qshared(T, E, C, I, SI, q8) + (q8 & 2 ? T * kt_qa_row_bytes(SI) / 4 : 0);
}
static inline int64_t kt_experts_act_scratch(int64_t T, int64_t H, int32_t q8h) {
    return T * H + T + (q8h ? T * kt_qa_row_bytes(H) / 4 : 0);
}

/* y[T, H] = resid[T, H] + sum over threads j < nth of partials[j][T, H]; rows split by thread. */
void kt_reduce(float *restrict y, const float *restrict resid, const float *restrict partials, int64_t T,
               int64_t H, int64_t n, int32_t ith, int32_t nth);

/* y[T, H] = table[ids[t]] widened to f32; tokens split by thread. */
void kt_embed(float *restrict y, const int32_t *restrict ids, const void *restrict table, int64_t T, int64_t H,
              int32_t wdt, int64_t n, int32_t ith, int32_t nth);

/* Columns of the act work space of kt_experts for width W: this thread's units of 32 rows, at most. */
static inline int64_t kt_experts_slice(int64_t W, int64_t nth) { return 32 * (((W + 31) / 32 + nth - 1) / nth); }

/* Floats of one thread's scratch for kt_norm_matmul (T rows of K) and kt_experts (T rows of H,
 * widest expert W): normalised rows, act rows; q = kt_q_scratch_kind of the weights (kt_quant.h):
 * 1 (exact mode) in a prefill step (T >= KT_TILE_T) one dequantised 32-row block, 2 (int8 or bf16
 * mode) the converted input rows (kt_experts: h rows and act rows); with amx the packed activations of one
 * chunk (kt_amx.h) and a 32 x 32 output tile. */
static inline int64_t kt_amx_scratch(int64_t K) { return kt_amx_pack_bytes(kt_amx_chunk(K), K) / 4; }
static inline int64_t kt_dq_scratch(int64_t K) { return 64 * ((K + 31) / 32 * 16); } /* 32 rows of K, f32 panel */
static inline int64_t kt_norm_matmul_scratch(int64_t T, int64_t K, int32_t has_norm, int32_t amx, int32_t q) {
    return (has_norm ? T * K : 0) + (amx ? kt_amx_scratch(K) + 32 * 32 : 0) +
           (q == 1 && T >= KT_TILE_T ? kt_dq_scratch(K) : 0) + (q == 2 ? T * kt_qa_row_bytes(K) / 4 : 0);
}
static inline int64_t kt_experts_scratch(int64_t T, int64_t H, int64_t W, int64_t nth, int32_t amx, int32_t q) {
    int64_t sl = kt_experts_slice(W, nth), a = kt_amx_scratch(H), b = kt_amx_scratch(sl);
    return T * H + T * sl + (q == 1 ? kt_dq_scratch(H > sl ? H : sl) : 0) +
           (q == 2 ? T * (kt_qa_row_bytes(H) + kt_qa_row_bytes(sl)) / 4 : 0) + (amx ? (a > b ? a : b) + 32 * 32 : 0);
}

/* [lo, hi) of n items for thread ith of nth (contiguous, balanced). */
static inline void kt_split(int64_t n, int32_t ith, int32_t nth, int64_t *lo, int64_t *hi) {
    int64_t base = n / nth, rem = n % nth;
    *lo = ith * base + (ith < rem ? ith : rem);
    *hi = *lo + base + (ith < rem ? 1 : 0);
}

/* How a memory-bound kernel shares out its U units of work. Thread ith first takes the static run
 * [ith s, (ith + 1) s), s = floor(3 U / (4 nth)), then the units from nth s on, one at a time, from a
 * counter ctr[0] all threads share; ctr[1] counts the threads that found no unit left, and the last of
 * them zeroes both (so they are zero again when the next kernel starts); ctr NULL, or one thread: all
 * U split statically (kt_split: a lone thread has no one to balance against, and its tail units one at
 * a time cut each expert's down into 24 KB runs on the Qwen3-MoE preset; its 1-thread decode, 2 x 4
 * interleaved rounds: 92.5 -> 94.4 and 85.1 -> 85.2 tok/s, within noise). Why: the cores' memory
 * streams finish microseconds apart, now one first, now the other; with a static split each thread
 * waited 7-13% of a decode step at barriers. The counters are the runtime's (kt_work_counter): every
 * kernel that shares out work uses the same two words, one kernel after another. */
typedef struct KtWork {
    int64_t next, end; // the static run left
    int64_t tail, U;   // the claimed units: [tail, U)
    int64_t *ctr;      // [2]: the next unit past tail, and the threads that found none left
    int64_t nth;
} KtWork;

static inline KtWork kt_work(int64_t U, int64_t *ctr, int32_t ith, int32_t nth) {
    KtWork w = {0, 0, U, U, ctr, nth};
    if (!ctr || nth == 1) {
        kt_split(U, ith, nth, &w.next, &w.end);
        return w;
    }
    int64_t s = 3 * U / (4 * nth);
    w.next = ith * s, w.end = w.next + s, w.tail = nth * s;
    return w;
}

/* The next run of units [*lo, *hi); 0 when no unit is left. */
static inline int kt_take(KtWork *w, int64_t *lo, int64_t *hi) {
    if (w->next < w->end) {
        *lo = w->next, *hi = w->end, w->next = w->end;
        return 1;
    }
    if (!w->ctr || w->tail >= w->U) return 0;
    int64_t u = w->tail + __atomic_fetch_add(w->ctr, 1, __ATOMIC_RELAXED);
    if (u >= w->U) { /* each thread once; the last leaves both words zero for the next kernel */
        if (__atomic_add_fetch(w->ctr + 1, 1, __ATOMIC_ACQ_REL) == w->nth)
            __atomic_store_n(w->ctr, 0, __ATOMIC_RELAXED), __atomic_store_n(w->ctr + 1, 0, __ATOMIC_RELAXED);
        return 0;
    }
    *lo = u, *hi = u + 1;
    return 1;
}

/* The runtime's counters for the kernel running now (runtime/format.h: moert_work), or NULL: outside a
 * compiled step (kernels called by tests) all work is split statically. */
extern int64_t *moert_work(void) __attribute__((weak));
static inline int64_t *kt_work_counter(void) { return moert_work ? moert_work() : (int64_t *)0; }

#endif
