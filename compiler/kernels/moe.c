/* kt_router, kt_experts and kt_reduce: the MoE FFN templates of one layer.
 *
 * kt_router (thread 0 only; a prefill step runs its passes as kt_router_routes, rows split between
 * threads, and after a barrier kt_router_lists, thread 0):
 *   for t < T:                                        // pass 1: routes
 *     inv = 1/rms(x[t]); p[e] = inv (x[t] * norm_w) . gate_w[e]     for e < E (4 experts per pass,
 *                                                                    the last pass overlapping)
 *     p = softmax(p) over all E; pick k times the largest p (lowest id on ties), mark it taken
 *     routes[t][j] = (e_j, p[e_j] / (renorm ? sum_j p[e_j] : 1))
 *   for t < T: for j < k: e = routes[t][j].expert   // pass 2: dispatch lists in token order
 *     if count[e] < C: tok[e][count[e]] = t, wt[e][count[e]++] = routes[t][j].weight else dropped++
 *     (kept and dropped counted in the stats of row t's slot)
 *   p[E] lives in the (not yet written) tok/wt area of the dispatch, so C >= 1 is required; the
 *   threads of kt_router_routes each have their own there when 2 C >= nth (else thread 0 routes all).
 *
 * kt_experts (thread ith of nth; every weight byte is read by exactly one thread):
 *   h = rmsnorm(x) into scratch                       // [T, H], every thread normalises all T rows
 *   part = partials[ith] = 0                          // [T, H]
 *   ffn(Iw, list):                                    // one expert of width Iw over its token list
 *     [blo, bhi) = 2 kt_split(ceil(Iw / 32))          // this thread's 16-row gate/up blocks, in pairs
 *     for chunk in list step kt_chunk(H):             // tokens whose h rows fit in L2
 *       for b in blo..bhi:                            // 16 gate + 16 up rows, one forward stream
 *         for tiles of 8 tokens (then 4, 2, 1):
 *           g, u = kt_panel_tile(gate_up block b, h[tok[s]])
 *           act[s][16 (b - blo) + lane] = silu(g) u wt[s]        // zero for padded rows >= Iw
 *     for chunk in list step kt_chunk(16 (bhi - blo)):  // tokens whose act rows fit in L2
 *       for c in 32-row blocks of down:               // columns [16 blo, min(16 bhi, Iw)) only
 *         for tiles of 8 tokens (then 4, 2, 1):
 *           part[tok[s]][32 c + 16 s + lane] += kt_panel_tile(down block c, act[s])
 *   shared_kind 1|2: ffn(sh_*, SI, all T tokens, weight 1), then (kind 1) each
 *                    part[t] *= sigmoid(h[t] . sg_w) -- linear, so the thread partials still add up
 *   for e < E with count[e] > 0: ffn(expert e, I, tok[e][0:count[e]], wt[e])
 *   With amx (bf16, a list of KT_AMX_MIN_ROWS tokens or more) ffn is ex_ffn_amx: the same two
 *   phases over chunks of kt_amx_chunk tokens packed into bf16 planes, 32 tokens x 32 rows per
 *   kt_amx_tile (kt_amx.h).
 *
 * kt_reduce: y = resid + partials[0] + ... + partials[nth-1], the flat T H elements split by thread.
 *
 * The decode form (steps of fewer than 16 tokens; kernels.h), a barrier between the two:
 *   kt_experts_act:  h = rmsnorm(x); act[e][s][rows of this thread's units] as in ffn's first phase
 *                    (the shared expert's with weight sigmoid(h . sg_w) per token)
 *   kt_experts_down: [clo, chi) = kt_split(ceil(H / 32)); y[t][those rows] = x[t][those rows];
 *                    for each expert e, for c in clo..chi: y[tok[s]][32 c ..] += down_e block c . act[e][s]
 *                    (all of I: one forward stream per expert and thread)
 *
 * Block-type weights (kt_quant.h; each of gate_up, down, sh_gate_up and sh_down has its own wdt, as
 * GGUF mixtures such as Q4_K_M give down another type): the same loops on the quantised panels. A
 * tile of the decode form, or of a list shorter than KT_Q_DEQ_ROWS tokens, dequantises each column of
 * 16 rows in registers (kt_qpanel_tile); a longer list dequantises each 32-row block of its slice
 * once per token chunk into f32 scratch (kt_qpanel_dequant) and runs kt_panel_tile on it.
 *
 * Specialised: T, H, I, E, k, C, SI, shared_kind, eps, renorm and the wdts are constants. The block
 * bounds depend on ith (runtime), so the down dot products have a runtime trip count. Weights:
 * gate_up [E] x (PACK_GATE_UP panels of ceil(I/16) blocks over H), down [E] x (panels of H rows
 * over I): see kt_common.h and kt_quant.h. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "kt_common.h"
#include "kt_quant.h"

/* One routing choice, laid out as runtime/dtype.h's MoeRoute: 8 bytes. */
typedef struct KtRoute {
    int32_t expert;
    float weight;
} KtRoute;

/* ---- kt_router ---- */

/* p[e0 + r] = inv (x * nw) . gate_w[e0 + r] for r < rb (rb <= 4, a constant at each call site). */
static inline void router_logits(float *restrict p, const float *restrict xr, const float *restrict nw,
                                 const void *restrict gate_w, int rb, int64_t e0, int64_t H, float inv, int32_t wdt) {
    float a[4] = {0};
    for (int64_t c = 0; c < H; c++) {
        float hv = xr[c] * nw[c];
        for (int r = 0; r < rb; r++) a[r] += hv * kt_wload(gate_w, (e0 + r) * H + c, wdt);
    }
    for (int r = 0; r < rb; r++) p[e0 + r] = a[r] * inv;
}

/* Routes of rows [lo, hi) (pass 1), p[E] the scratch of one thread. */
static void router_rows(KtRoute *restrict routes, float *restrict p, const float *restrict x,
                        const float *restrict norm_w, const void *restrict gate_w, int64_t H, int64_t E, int64_t k,
                        float eps, int32_t renorm, int32_t wdt, int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; t++) {
        const float *xr = x + t * H; // [H]
        float inv = kt_rms_inv(xr, H, eps);
        /* Every logit takes the same 4-row path (the last block overlaps the one before it when
         * E % 4 != 0), so experts with equal gate rows get bit-equal logits: ties stay ties. */
        int64_t e = 0;
        if (E >= 4)
            for (int64_t e0 = 0; e0 < E; e0 += 4)
                router_logits(p, xr, norm_w, gate_w, 4, e0 + 4 <= E ? e0 : E - 4, H, inv, wdt);
        else
            for (; e < E; e++) router_logits(p, xr, norm_w, gate_w, 1, e, H, inv, wdt);
        float mx = p[0], sum = 0.0f, picked = 0.0f;
        for (e = 1; e < E; e++) mx = p[e] > mx ? p[e] : mx;
        for (e = 0; e < E; e++) sum += (p[e] = expf(p[e] - mx));
        float rs = 1.0f / sum;
        for (int64_t j = 0; j < k; j++) {
            int64_t best = -1;
            for (e = 0; e < E; e++)
                if (p[e] >= 0.0f && (best < 0 || p[e] > p[best])) best = e;
            float w = p[best] * rs;
            routes[t * k + j].expert = (int32_t)best;
            routes[t * k + j].weight = w;
            picked += w;
            p[best] = -1.0f; /* taken */
        }
        if (renorm) {
            float rp = 1.0f / picked;
            for (int64_t j = 0; j < k; j++) routes[t * k + j].weight *= rp;
        }
    }
}

void kt_router_routes(char *restrict dispatch, const float *restrict x, const float *restrict norm_w,
                      const void *restrict gate_w, int64_t *restrict stats, const int32_t *restrict slot,
                      int64_t stats_stride, int64_t T, int64_t H, int64_t E, int64_t k, int64_t C, float eps,
                      int32_t renorm, int32_t wdt, int64_t n, int32_t ith, int32_t nth) {
    (void)stats, (void)slot, (void)stats_stride;
    /* thread j's p[E] at tok + j E: the tok/wt area holds 2 E C floats */
    const int split = 2 * C >= nth;
    if (!split && ith != 0) return;
    int64_t lo = 0, hi = n;
    if (split) kt_split(n, ith, nth, &lo, &hi);
    float *p = (float *)(dispatch + 8 * T * k + 4 * E) + (split ? ith : 0) * E; // [E]
    router_rows((KtRoute *)dispatch, p, x, norm_w, gate_w, H, E, k, eps, renorm, wdt, lo, hi);
}

void kt_router_lists(char *restrict dispatch, const float *restrict x, const float *restrict norm_w,
                     const void *restrict gate_w, int64_t *restrict stats, const int32_t *restrict slot,
                     int64_t stats_stride, int64_t T, int64_t H, int64_t E, int64_t k, int64_t C, float eps,
                     int32_t renorm, int32_t wdt, int64_t n, int32_t ith, int32_t nth) {
    (void)x, (void)norm_w, (void)gate_w, (void)H, (void)eps, (void)renorm, (void)wdt, (void)nth;
    if (ith != 0) return;
    const KtRoute *routes = (const KtRoute *)dispatch;      // [T, k]
    int32_t *count = (int32_t *)(dispatch + 8 * T * k);     // [E]
    int32_t *tok = count + E;                               // [E, C]
    float *wt = (float *)(tok + E * C);                     // [E, C]
    memset(count, 0, sizeof(int32_t) * (size_t)E);
    for (int64_t t = 0; t < n; t++) {
        int64_t *st = stats ? stats + slot[t] * stats_stride : NULL; // [E + 1] of row t's slot
        for (int64_t j = 0; j < k; j++) {
            int64_t e = routes[t * k + j].expert;
            if (count[e] >= C) {
                if (st) st[E]++;
                continue;
            }
            tok[e * C + count[e]] = (int32_t)t;
            wt[e * C + count[e]] = routes[t * k + j].weight;
            count[e]++;
            if (st) st[e]++;
        }
    }
    int32_t *live = (int32_t *)(wt + E * C);                          // [E]
    int32_t nl = 0;
    for (int64_t e = 0; e < E; e++)
        if (count[e] > 0) live[nl++] = (int32_t)e;
    *(int64_t *)(dispatch + kt_dispatch_nlive(T, k, E, C)) = nl;
}

void kt_router(char *restrict dispatch, const float *restrict x, const float *restrict norm_w,
               const void *restrict gate_w, int64_t *restrict stats, const int32_t *restrict slot,
               int64_t stats_stride, int64_t T, int64_t H, int64_t E,
               int64_t k, int64_t C, float eps, int32_t renorm, int32_t wdt, int64_t n, int32_t ith, int32_t nth) {
    (void)nth;
    if (ith != 0) return;
    kt_router_routes(dispatch, x, norm_w, gate_w, stats, slot, stats_stride, T, H, E, k, C, eps, renorm, wdt, n, 0,
                     1);
    kt_router_lists(dispatch, x, norm_w, gate_w, stats, slot, stats_stride, T, H, E, k, C, eps, renorm, wdt, n, 0, 1);
}

/* ---- kt_experts ---- */

/* Lists of at least this many tokens run an expert's block-type weights through a dequantised f32
 * block per token chunk (kt_qpanel_dequant) instead of dequantising every token tile in registers. */
enum { KT_Q_DEQ_ROWS = 8 };

/* Size of one packed matrix of R rows over K columns in the units its offsets count: elements (f32,
 * bf16) or bytes (block types). */
static inline int64_t ex_mat_size(int64_t R, int64_t K, int32_t wdt) {
    return kt_is_q(wdt) ? kt_q_panel_bytes(R, K, wdt) : kt_panel_elems(R, K);
}

/* The read side of kt_router's dispatch buffer (kernels.h), and each expert's packed weights. */
typedef struct ExLists {
    const int32_t *count; // [E] tokens kept per expert
    const int32_t *tok;   // [E, C] their indices; expert e's list at tok + e C
    const float *wt;      // [E, C] their routing weights
    const int32_t *live;  // [nlive] the experts with tokens, in id order
    int64_t nlive, cap;   // cap: min(T, C), the most tokens a list holds (ex_count)
    int64_t gu_elems, dn_elems; // size of one expert's packed gate_up and down (ex_mat_size units)
} ExLists;

static inline ExLists ex_lists(const char *restrict dispatch, int64_t T, int64_t H, int64_t I, int64_t E, int64_t k,
                               int64_t C, int32_t wgu, int32_t wdn) {
    ExLists l;
    l.count = (const int32_t *)(dispatch + 8 * T * k);
    l.tok = l.count + E;
    l.wt = (const float *)(l.tok + E * C);
    l.live = (const int32_t *)(l.wt + E * C);
    l.nlive = *(const int64_t *)(dispatch + kt_dispatch_nlive(T, k, E, C));
    l.cap = T < C ? T : C;
    l.gu_elems = ex_mat_size(kt_round16(I) * 2, H, wgu);
    l.dn_elems = ex_mat_size(H, I, wdn);
    return l;
}

/* Tokens in expert e's list. Clamped to what a list can hold (a no-op): with T and C constants,
 * LLVM then knows a decode step's lists hold one token (T = 1) and drops the kernels' tiles of more,
 * a third of a decode executable's expert code. */
static inline int64_t ex_count(const ExLists *l, int64_t e) { return l->count[e] < l->cap ? l->count[e] : l->cap; }

/* The qwen2 shared expert's gate of one token: sigmoid(h . sg_w), sg_w f32 like every vector. */
static inline float ex_shared_gate(const float *restrict hr, const void *restrict sg_w, int64_t H) {
    float s = 0.0f;
    for (int64_t c = 0; c < H; c++) s += hr[c] * ((const float *)sg_w)[c];
    return kt_sigmoid(s);
}

/* Token s of a list: toks[s], or s itself for the dense/shared expert (toks NULL). */
static inline int64_t ex_tok(const int32_t *restrict toks, int64_t s) { return toks ? toks[s] : s; }

/* act[s][16 (b - blo) + lane] = silu(g) u wt[s] (wts NULL: 1) for the 16 rows of gate/up block b,
 * tokens s in [s0, s0 + tb). gu0: offset of this expert's packed gate_up (ex_mat_size units); sl: act
 * row length. dq: block b dequantised to f32 (kt_qpanel_dequant), read instead of gate_up; NULL: none.
 * qh: the h rows converted (int8 or bf16 mode, as wdt says), or NULL. */
static inline void ex_gate_up(float *restrict act, const float *restrict h, const void *restrict gate_up, int64_t gu0,
                              const int32_t *restrict toks, const float *restrict wts, int tb, int64_t b,
                              int64_t blo, int64_t s0, int64_t sl, int64_t H, int32_t wdt, const float *restrict dq,
                              const void *restrict qh) {
    const float *xs[KT_TB]; // KT_TB x [H]
    for (int t = 0; t < KT_TB; t++) xs[t] = h + ex_tok(toks, s0 + (t < tb ? t : 0)) * H;
    kt_vf acc[2][KT_TB]; // gate, up: [tb] vectors of 16 rows
    if (qh && kt_bfa(wdt)) {
        const uint32_t *xw[KT_TB]; // KT_TB x [kt_bf_words(H)]
        for (int t = 0; t < KT_TB; t++) xw[t] = kt_bf_at(qh, ex_tok(toks, s0 + (t < tb ? t : 0)), H);
        kt_panel_tile_bf(acc, tb, gate_up, gu0 + b * kt_kp(H) * 64, xw, (H + 1) / 2, wdt);
    } else if (qh) {
        KtQa xa[KT_TB];
        for (int t = 0; t < KT_TB; t++) xa[t] = kt_qa_at(qh, ex_tok(toks, s0 + (t < tb ? t : 0)), H, 0);
        kt_qpanel_tile_i8(acc, tb, gate_up, gu0 + b * kt_q_block_bytes(H, wdt), xa, 0, H / 32, wdt);
    } else if (dq) kt_panel_tile(acc, tb, dq, 0, xs, H / 2, 0, kt_tgt(wdt));
    else if (kt_is_q(wdt))
        kt_qpanel_tile(acc, tb, gate_up, gu0 + b * kt_q_block_bytes(H, wdt), xs, 0, H / 32, wdt);
    else kt_panel_tile(acc, tb, gate_up, gu0 + b * kt_kp(H) * 64, xs, H / 2, (int)(H % 2), wdt);
    for (int t = 0; t < tb; t++) {
        float w = wts ? wts[s0 + t] : 1.0f, *ar = act + (s0 + t) * sl + (b - blo) * 16; // [16]
        kt_stv(ar, kt_silu_v(acc[0][t]) * acc[1][t] * w);
    }
}

/* part[tok s][32 c + 16 q + lane] += (wts[s] times, wts NULL: 1) down block c . act[s] over pairs
 * [p0, p0 + n2) (+ half), tokens s in [s0, s0 + tb). dn0: offset of this expert's packed down
 * (ex_mat_size units). Block types: p0 and n2 are multiples of 16 (whole groups of 32 columns); dq as in
 * ex_gate_up (those pairs only); qa: the act rows converted (rows of sl columns, int8 or bf16 as
 * wdt says), or NULL. */
static inline void ex_down(float *restrict part, const float *restrict act, const void *restrict down, int64_t dn0,
                           const int32_t *restrict toks, int tb, int64_t c, int64_t s0, int64_t sl, int64_t p0,
                           int64_t n2, int half, int64_t H, int64_t Iw, int32_t wdt, const float *restrict dq,
                           const void *restrict qa, const float *restrict wts) {
    const float *xs[KT_TB]; // KT_TB x [sl]
    for (int t = 0; t < KT_TB; t++) xs[t] = act + (s0 + (t < tb ? t : 0)) * sl;
    kt_vf acc[2][KT_TB];
    if (qa && kt_bfa(wdt)) {
        const uint32_t *xw[KT_TB]; // KT_TB x [kt_bf_words(sl)]
        for (int t = 0; t < KT_TB; t++) xw[t] = kt_bf_at(qa, s0 + (t < tb ? t : 0), sl);
        kt_panel_tile_bf(acc, tb, down, dn0 + (c * kt_kp(Iw) + p0) * 64, xw, n2 + half, wdt);
    } else if (qa) {
        KtQa xa[KT_TB];
        for (int t = 0; t < KT_TB; t++) xa[t] = kt_qa_at(qa, s0 + (t < tb ? t : 0), sl, 0);
        kt_qpanel_tile_i8(acc, tb, down, dn0 + c * kt_q_block_bytes(Iw, wdt), xa, p0 / 16, n2 / 16, wdt);
    } else if (dq) kt_panel_tile(acc, tb, dq, 0, xs, n2, 0, kt_tgt(wdt));
    else if (kt_is_q(wdt))
        kt_qpanel_tile(acc, tb, down, dn0 + c * kt_q_block_bytes(Iw, wdt), xs, p0 / 16, n2 / 16, wdt);
    else kt_panel_tile(acc, tb, down, dn0 + (c * kt_kp(Iw) + p0) * 64, xs, n2, half, wdt);
    for (int t = 0; t < tb; t++) {
        float *pr = part + ex_tok(toks, s0 + t) * H; // [H]
        if (wts)
            for (int q = 0; q < 2; q++) acc[q][t] *= wts[s0 + t];
        for (int q = 0; q < 2; q++) {
            int64_t r0 = c * 32 + q * 16;
            if (r0 + 16 <= H) kt_stv(pr + r0, kt_ldv(pr + r0) + acc[q][t]);
            else
                for (int64_t l = 0; l < H - r0; l++) pr[r0 + l] += acc[q][t][l];
        }
    }
}

/* ex_ffn (below) through AMX tiles (kt_amx.h) with np activation planes, the same contract plus
 * abuf (packed activations of one chunk) and tile (a [32][32] f32 output tile); bf16 weights. blo
 * is even (units of 32 rows), so the down columns of this thread start on a K step; a last step past
 * them reads zero act columns. */
static void ex_ffn_amx(float *restrict part, const float *restrict h, float *restrict act,
                       const uint16_t *restrict gate_up, int64_t gu0, const uint16_t *restrict down, int64_t dn0,
                       const int32_t *restrict toks, const float *restrict wts, int64_t n, int64_t blo, int64_t bhi,
                       int64_t H, int64_t Iw, uint16_t *restrict abuf, float *restrict tile, int np) {
    int64_t sl = (bhi - blo) * 16;
    if (sl <= 0 || n <= 0) return;
    const int64_t tc = kt_amx_chunk(H), gh = kt_amx_group_elems(H, np);
    for (int64_t c0 = 0; c0 < n; c0 += tc) { /* gate/up over h rows */
        int64_t m = n - c0 < tc ? n - c0 : tc;
        kt_amx_pack(abuf, h, H, toks, c0, m, H, np);
        for (int64_t b = blo; b < bhi; b++)
            for (int64_t g = 0; g * 16 < m; g += 2) {
                int64_t rows = kt_amx_pair(tile, abuf, gh, g, m, gate_up + gu0 + b * kt_kp(H) * 64, kt_amx_steps(H), np);
                for (int64_t t = 0; t < rows; t++) {
                    int64_t s = c0 + g * 16 + t;
                    float w = wts ? wts[s] : 1.0f, *ar = act + s * sl + (b - blo) * 16; // [16]
                    kt_stv(ar, kt_silu_v(kt_ldv(tile + t * 32)) * kt_ldv(tile + t * 32 + 16) * w);
                }
            }
    }
    const int64_t tc2 = kt_amx_chunk(sl), ga = kt_amx_group_elems(sl, np), p0 = blo * 8;
    for (int64_t c0 = 0; c0 < n; c0 += tc2) { /* down over act rows */
        int64_t m = n - c0 < tc2 ? n - c0 : tc2;
        kt_amx_pack(abuf, act, sl, NULL, c0, m, sl, np);
        for (int64_t c = 0; c < (H + 31) / 32; c++)
            for (int64_t g = 0; g * 16 < m; g += 2) {
                int64_t rows = kt_amx_pair(tile, abuf, ga, g, m, down + dn0 + (c * kt_kp(Iw) + p0) * 64,
                                           kt_amx_steps(sl), np);
                int64_t r0 = c * 32, nr = H - r0 < 32 ? H - r0 : 32;
                for (int64_t t = 0; t < rows; t++) {
                    float *pr = part + ex_tok(toks, c0 + g * 16 + t) * H + r0; // [nr]
                    for (int64_t l = 0; l < nr; l++) pr[l] += tile[t * 32 + l];
                }
            }
    }
}

/* One expert (routed, or the shared/dense one) of width Iw over its n listed tokens, this thread's
 * blocks [blo, bhi) of its rows, accumulated into part[T, H]. act: [n, 16 (bhi - blo)] work space.
 * wgu, wdn: the dtypes of gate_up and down. amx > 0 (both bf16): through ex_ffn_amx with amx planes
 * when the list fills enough of a tile (abuf and tile its work space). dq: kt_dq_scratch(max(H, slice))
 * floats for a dequantised block (block-type weights in the exact mode and n >= KT_Q_DEQ_ROWS).
 * Int8 or bf16 mode: qh, the h rows converted (gate_up kt_cv), and qact, room for the n act rows
 * converted (down kt_cv: act then holds silu(g) u and wts[s] multiplies down's output, as the
 * generic path). */
static void ex_ffn(float *restrict part, const float *restrict h, float *restrict act, const void *restrict gate_up,
                   int64_t gu0, const void *restrict down, int64_t dn0, const int32_t *restrict toks,
                   const float *restrict wts, int64_t n, int64_t blo, int64_t bhi, int64_t H, int64_t Iw,
                   int32_t wgu, int32_t wdn, int amx, uint16_t *restrict abuf, float *restrict tile,
                   float *restrict dq, const void *restrict qh, char *restrict qact) {
    if (amx && kt_wt(wgu) == 2 && kt_wt(wdn) == 2 && n >= KT_AMX_MIN_ROWS) {
        ex_ffn_amx(part, h, act, (const uint16_t *)gate_up, gu0, (const uint16_t *)down, dn0, toks, wts, n, blo, bhi,
                   H, Iw, abuf, tile, amx);
        return;
    }
    int64_t sl = (bhi - blo) * 16;
    if (sl <= 0 || n <= 0) return;
    /* exact mode, block types and a list of KT_Q_DEQ_ROWS tokens or more: each block dequantised once per chunk */
    const int deq = n >= KT_Q_DEQ_ROWS;
    float *gdq = kt_q_scratch_kind(wgu) == 1 && deq ? dq : NULL, *ddq = kt_q_scratch_kind(wdn) == 1 && deq ? dq : NULL;
    const void *gqh = kt_cv(wgu) ? qh : NULL;
    const float *gwts = kt_cv(wdn) ? NULL : wts; /* converted down input: the weights come after it */
#define GU_TILE(tb) ex_gate_up(act, h, gate_up, gu0, toks, gwts, tb, b, blo, s0, sl, H, wgu, gdq, gqh)
    if (gdq) {
#define GU_BLOCK(b) kt_qpanel_dequant(gdq, gate_up, gu0 + (b) * kt_q_block_bytes(H, wgu), 0, H / 32, wgu)
        KT_FOR_TILES_AT(n, kt_chunk(H), b, blo, bhi, s0, GU_BLOCK, GU_TILE)
#undef GU_BLOCK
    } else {
        KT_FOR_TILES(n, kt_chunk(H), b, blo, bhi, s0, GU_TILE) /* h rows of a chunk stay in L2 */
    }
#undef GU_TILE
    /* down reads columns [16 blo, min(16 bhi, Iw)) of its rows: pairs from 8 blo, the last one
     * half when Iw is odd and this thread holds it */
    int64_t k1 = bhi * 16 < Iw ? bhi * 16 : Iw, p0 = blo * 8, n2 = k1 / 2 - p0;
    int half = (int)(k1 % 2);
    const char *dqa = NULL;
    if (kt_cv(wdn)) { /* the act rows converted: sl is whole units of 32 (blo and bhi even) */
        for (int64_t s = 0; s < n; s++)
            kt_x_convert(qact + s * kt_qa_row_bytes(sl), act + s * sl, sl, 0, (sl + 31) / 32, wdn);
        dqa = qact;
    }
    const float *dwts = kt_cv(wdn) ? wts : NULL;
#define DN_TILE(tb) ex_down(part, act, down, dn0, toks, tb, c, s0, sl, p0, n2, half, H, Iw, wdn, ddq, dqa, dwts)
    if (ddq) {
#define DN_BLOCK(c) kt_qpanel_dequant(ddq, down, dn0 + (c) * kt_q_block_bytes(Iw, wdn), p0 / 16, n2 / 16, wdn)
        KT_FOR_TILES_AT(n, kt_chunk(sl), c, 0, (H + 31) / 32, s0, DN_BLOCK, DN_TILE)
#undef DN_BLOCK
    } else {
        KT_FOR_TILES(n, kt_chunk(sl), c, 0, (H + 31) / 32, s0, DN_TILE) /* act rows of a chunk stay in L2 */
    }
#undef DN_TILE
}

/* This thread's 16-row gate/up blocks [blo, bhi) of an expert of width W: units of two blocks. */
static inline void ex_blocks(int64_t W, int32_t ith, int32_t nth, int64_t *blo, int64_t *bhi) {
    int64_t ulo, uhi, nb = (W + 15) / 16;
    kt_split((W + 31) / 32, ith, nth, &ulo, &uhi);
    *blo = 2 * ulo < nb ? 2 * ulo : nb;
    *bhi = 2 * uhi < nb ? 2 * uhi : nb;
}

/* Whether kt_experts gives each thread whole experts (a contiguous run of the live ones, all their
 * rows) instead of its share of every expert's rows: for short lists (at most EX_WHOLE_ROWS tokens
 * per live expert on average, at least 4 nth live experts) of bf16 or f32 weights without AMX, when
 * every list's act rows fit the thread's work space (T rows of sl). A many-expert model's prefill
 * (Qwen3-MoE: 128 experts, ~8 tokens each for a 128-token prompt) then streams each down matrix
 * whole instead of in runs of sl columns per 32-row block, and the threads do not share every
 * expert's rows. Deterministic: which thread takes an expert depends on the dispatch and nth only. */
enum { EX_WHOLE_ROWS = 32 };
static inline int ex_whole_experts(const ExLists *l, int64_t T, int64_t I, int64_t sl, int32_t nth, int32_t wgu,
                                   int32_t wdn, int use_amx) {
    if (use_amx || kt_is_q(wgu) || kt_is_q(wdn) || l->nlive < 4 * nth) return 0;
    int64_t sum = 0, mx = 0;
    for (int64_t li = 0; li < l->nlive; li++) {
        int64_t c = ex_count(l, l->live[li]);
        sum += c, mx = c > mx ? c : mx;
    }
    const int64_t IP = kt_round16(I);
    return sum <= EX_WHOLE_ROWS * l->nlive && mx * IP <= T * sl &&
           (!kt_cv(wdn) || mx * kt_qa_row_bytes(IP) <= T * kt_qa_row_bytes(sl));
}

void kt_experts(float *restrict partials, const float *restrict x, const float *restrict norm_w,
                const char *restrict dispatch, const void *restrict gate_up, const void *restrict down,
                const void *restrict sh_gate_up, const void *restrict sh_down, const void *restrict sg_w,
                float *restrict scratch, const void *const *restrict xtab, int64_t T, int64_t H, int64_t I,
                int64_t E, int64_t k, int64_t C, int64_t SI, int32_t shared_kind, float eps,
                int64_t scratch_per_thread, int32_t wgu, int32_t wdn, int32_t wsgu, int32_t wsdn, int32_t amx,
                int64_t n, int32_t ith, int32_t nth) {
    const int64_t sl = kt_experts_slice(I > SI ? I : SI, nth);
    int32_t q = kt_q_scratch_kind(wgu), qd = kt_q_scratch_kind(wdn), qs = kt_q_scratch_kind(wsgu);
    int32_t qsd = kt_q_scratch_kind(wsdn);
    q = q > qd ? q : qd, q = q > qs ? q : qs, q = q > qsd ? q : qsd; /* as kt_experts_scratch was given */
    float *part = partials + (int64_t)ith * T * H;         // [T, H]
    float *h = scratch + (int64_t)ith * scratch_per_thread; // [T, H]
    float *act = h + T * H;                                 // [T, slice]
    float *dq = act + T * sl;                               // a dequantised block (exact mode)
    char *qh = (char *)dq, *qact = qh + T * kt_qa_row_bytes(H); /* int8 mode: [T] rows of H, of the slice */
    const int64_t qbytes = T * (kt_qa_row_bytes(H) + kt_qa_row_bytes(sl));
    float *tile = dq + (q == 1 ? kt_dq_scratch(H > sl ? H : sl) : q == 2 ? qbytes / 4 : 0); // [32, 32] (amx)
    uint16_t *abuf = (uint16_t *)(tile + 32 * 32);           // packed chunk (amx)
    const int use_amx = amx && ((kt_wt(wgu) == 2 && kt_wt(wdn) == 2) || (kt_wt(wsgu) == 2 && kt_wt(wsdn) == 2));
    memset(part, 0, sizeof(float) * (size_t)(n * H));
    kt_rmsnorm_rows(h, x, norm_w, n, H, eps);
    if (kt_cv(wgu) || kt_cv(wsgu))
        for (int64_t t = 0; t < n; t++)
            kt_x_convert(qh + t * kt_qa_row_bytes(H), h + t * H, H, 0, (H + 31) / 32, kt_cv(wgu) ? wgu : wsgu);
    if (use_amx) kt_amx_begin();
    int64_t blo, bhi;
    if (shared_kind != 0) {
        ex_blocks(SI, ith, nth, &blo, &bhi);
        ex_ffn(part, h, act, sh_gate_up, 0, sh_down, 0, NULL, NULL, n, blo, bhi, H, SI, wsgu, wsdn, use_amx ? amx : 0,
               abuf, tile, dq, qh, qact);
        if (shared_kind == 1 && bhi > blo)
            for (int64_t t = 0; t < n; t++) {
                float g = ex_shared_gate(h + t * H, sg_w, H), *pr = part + t * H; // [H]
                for (int64_t c = 0; c < H; c++) pr[c] *= g;
            }
    }
    if (E > 0) {
        const ExLists l = ex_lists(dispatch, T, H, I, E, k, C, wgu, wdn);
        /* the live experts [lo, hi), blocks [blo, bhi) of each: all of them and this thread's rows,
         * or this thread's whole experts */
        int64_t lo = 0, hi = l.nlive;
        if (ex_whole_experts(&l, T, I, sl, nth, wgu, wdn, use_amx)) {
            kt_split(l.nlive, ith, nth, &lo, &hi);
            blo = 0, bhi = (I + 15) / 16;
        } else {
            ex_blocks(I, ith, nth, &blo, &bhi);
        }
        for (int64_t li = lo; li < hi; li++) {
            const int64_t e = l.live[li];
            ex_ffn(part, h, act, xtab ? xtab[e] : gate_up, xtab ? 0 : e * l.gu_elems, xtab ? xtab[E + e] : down,
                   xtab ? 0 : e * l.dn_elems, l.tok + e * C, l.wt + e * C, ex_count(&l, e), blo, bhi, H, I, wgu, wdn,
                   use_amx ? amx : 0, abuf, tile, dq, qh, qact);
        }
    }
    if (use_amx) kt_amx_end();
}

/* ---- kt_experts_act and kt_experts_down: the decode form ---- */

/* A wdt whose kt_x_convert form is that of the act rows q8 asks for (kernels.h). */
static inline int32_t ex_cv_form(int32_t q8) { return q8 & KT_ACT_BF16 ? KT_ACT_BF16 | 2 : KT_ACT_I8; }

void kt_experts_act(float *restrict act, const float *restrict x, const float *restrict norm_w,
                    char *restrict dispatch, const void *restrict gate_up, const void *restrict sh_gate_up,
                    const void *restrict sg_w, float *restrict scratch, const void *const *restrict xtab, int64_t T,
                    int64_t H, int64_t I, int64_t E, int64_t k, int64_t C, int64_t SI, int32_t shared_kind, float eps,
                    int32_t wgu, int32_t wsgu, int32_t q8, int64_t n, int32_t ith, int32_t nth) {
    const int32_t q8h = kt_cv(wgu) || kt_cv(wsgu);
    float *h = scratch + (int64_t)ith * kt_experts_act_scratch(T, H, q8h); // [T, H]
    float *gate = h + T * H;                                               // [T] shared-expert gates
    char *qh = q8h ? (char *)(gate + T) : NULL;                            // [T] rows of H, converted
    const int64_t IP = kt_round16(I), SIP = kt_round16(SI);
    kt_rmsnorm_rows(h, x, norm_w, n, H, eps);
    if (q8h)
        for (int64_t t = 0; t < n; t++)
            kt_x_convert(qh + t * kt_qa_row_bytes(H), h + t * H, H, 0, (H + 31) / 32, kt_cv(wgu) ? wgu : wsgu);
    /* the shared expert's gates, its act rows, and with q8 & 2 where they go instead (kt_experts_down) */
    float *ash = act + E * C * IP; // [T, SIP]
    const float *gw = gate;
    if (shared_kind != 0) {
        for (int64_t t = 0; t < n; t++) /* kind 1: sigmoid(h . sg_w), folded into act (linear) */
            gate[t] = shared_kind == 1 ? ex_shared_gate(h + t * H, sg_w, H) : 1.0f;
        if (q8 & 2) { /* converted down input: the gates go to kt_experts_down, the rows converted */
            float *gates = act + kt_experts_act_gates(T, E, C, I, SI); // [T]
            if (ith == 0) memcpy(gates, gate, sizeof(float) * (size_t)n);
            gw = NULL;
        }
    }
    char *qsh = (char *)(act + kt_experts_act_qshared(T, E, C, I, SI, q8)); // [T] rows of SIP (q8 & 2)
    char *qr = (char *)(act + kt_experts_act_qrows(T, E, C, I, SI));        // [E][C] rows of IP (q8 & 1)
    const ExLists l = E > 0 ? ex_lists(dispatch, T, H, I, E, k, C, wgu, 0) : (ExLists){0};
    /* units: the shared expert's 32-row units, then each live expert's */
    const int64_t us = shared_kind != 0 ? (SI + 31) / 32 : 0, ur = (I + 31) / 32;
    const int64_t nbs = (SI + 15) / 16, nbr = (I + 15) / 16;
    KtWork w = kt_work(us + l.nlive * ur, kt_work_counter(), ith, nth);
    for (int64_t lo, hi; kt_take(&w, &lo, &hi);)
        for (int64_t u = lo; u < hi;) {
            if (u < us) { /* the shared expert's units [u, v) */
                int64_t v = hi < us ? hi : us, blo = 2 * u, bhi = 2 * v < nbs ? 2 * v : nbs;
                const void *sqh = kt_cv(wsgu) ? qh : NULL;
#define SH_TILE(tb) ex_gate_up(ash, h, sh_gate_up, 0, NULL, gw, tb, b, 0, s0, SIP, H, wsgu, NULL, sqh)
                KT_FOR_TILES(n, kt_chunk(H), b, blo, bhi, s0, SH_TILE)
#undef SH_TILE
                if (q8 & 2)
                    for (int64_t t = 0; t < n; t++)
                        kt_x_convert(qsh + t * kt_qa_row_bytes(SIP), ash + t * SIP, SIP, u, v, ex_cv_form(q8));
                u = v;
                continue;
            }
            /* units [j0, j1) of live expert li */
            const int64_t li = (u - us) / ur, j0 = u - us - li * ur;
            const int64_t v = hi < us + (li + 1) * ur ? hi : us + (li + 1) * ur, j1 = j0 + v - u;
            const int64_t e = l.live[li], blo = 2 * j0, bhi = 2 * j1 < nbr ? 2 * j1 : nbr;
            float *ae = act + e * C * IP; // [C, IP]
            const void *gu = xtab ? xtab[e] : gate_up, *eqh = kt_cv(wgu) ? qh : NULL;
            const int64_t gu0 = xtab ? 0 : e * l.gu_elems, ne = ex_count(&l, e);
            const float *wts = q8 & 1 ? NULL : l.wt + e * C; /* converted down input: weights after it */
#define EX_TILE(tb) ex_gate_up(ae, h, gu, gu0, l.tok + e * C, wts, tb, b, 0, s0, IP, H, wgu, NULL, eqh)
            KT_FOR_TILES(ne, kt_chunk(H), b, blo, bhi, s0, EX_TILE)
#undef EX_TILE
            if (q8 & 1)
                for (int64_t s = 0; s < ne; s++)
                    kt_x_convert(qr + (e * C + s) * kt_qa_row_bytes(IP), ae + s * IP, IP, j0, j1, ex_cv_form(q8));
            u = v;
        }
}

void kt_experts_down(float *restrict y, const float *restrict x, char *restrict dispatch,
                     const float *restrict act, const void *restrict down, const void *restrict sh_down,
                     const void *const *restrict xtab, int64_t T, int64_t H, int64_t I, int64_t E, int64_t k,
                     int64_t C, int64_t SI, int32_t shared_kind, int32_t wdn, int32_t wsdn, int64_t n, int32_t ith,
                     int32_t nth) {
    const int64_t IP = kt_round16(I), SIP = kt_round16(SI);
    const int32_t q8 = (kt_cv(wdn) ? 1 : 0) | (kt_cv(wsdn) ? 2 : 0); /* as kt_experts_act was given (sizes) */
    const float *ash = act + E * C * IP; // [T, SIP]
    const void *qsh = q8 & 2 ? (const void *)(act + kt_experts_act_qshared(T, E, C, I, SI, q8)) : NULL;
    const float *gates = q8 & 2 ? act + kt_experts_act_gates(T, E, C, I, SI) : NULL;
    const char *qr = (const char *)(act + kt_experts_act_qrows(T, E, C, I, SI)); // [E][C] rows (q8 & 1)
    const ExLists l = E > 0 ? ex_lists(dispatch, T, H, I, E, k, C, 0, wdn) : (ExLists){0};
    KtWork w = kt_work((H + 31) / 32, kt_work_counter(), ith, nth);
    for (int64_t clo, chi; kt_take(&w, &clo, &chi);) { /* rows [r0, r1): y = x, + shared, + each expert */
        int64_t r0 = clo * 32, r1 = chi * 32 < H ? chi * 32 : H;
        for (int64_t t = 0; t < n; t++)
            for (int64_t r = r0; r < r1; r++) y[t * H + r] = x[t * H + r];
        if (shared_kind != 0) {
#define SH_TILE(tb)                                                                                               \
    ex_down(y, ash, sh_down, 0, NULL, tb, c, s0, SIP, 0, SI / 2, (int)(SI % 2), H, SI, wsdn, NULL, qsh, gates)
            KT_FOR_TILES(n, kt_chunk(SIP), c, clo, chi, s0, SH_TILE)
#undef SH_TILE
        }
        for (int64_t li = 0; li < l.nlive; li++) { /* rows [r0, r1) of expert e's down: one forward stream */
            const int64_t e = l.live[li];
            const void *dn = xtab ? xtab[E + e] : down;
            const int64_t dn0 = xtab ? 0 : e * l.dn_elems;
            const void *qa = q8 & 1 ? qr + e * C * kt_qa_row_bytes(IP) : NULL;
            const float *wts = q8 & 1 ? l.wt + e * C : NULL;
#define EX_TILE(tb)                                                                                               \
    ex_down(y, act + e * C * IP, dn, dn0, l.tok + e * C, tb, c, s0, IP, 0, I / 2, (int)(I % 2), H, I, wdn, NULL, qa, \
            wts)
            KT_FOR_TILES(ex_count(&l, e), kt_chunk(IP), c, clo, chi, s0, EX_TILE)
#undef EX_TILE
        }
    }
}

/* ---- kt_reduce ---- */

void kt_reduce(float *restrict y, const float *restrict resid, const float *restrict partials, int64_t T,
               int64_t H, int64_t n, int32_t ith, int32_t nth) {
    int64_t all = T * H, lo, hi;
    kt_split(n * H, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) y[i] = resid[i];
    for (int32_t j = 0; j < nth; j++) {
        const float *pj = partials + (int64_t)j * all; // [T, H]
        for (int64_t i = lo; i < hi; i++) y[i] += pj[i];
    }
}
