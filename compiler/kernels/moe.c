/* kt_router, kt_experts and kt_reduce: the MoE FFN templates of one layer.
 *
 * kt_router (thread 0 only):
 *   for t < T:                                        // pass 1: routes
 *     inv = 1/rms(x[t]); p[e] = inv (x[t] * norm_w) . gate_w[e]     for e < E (4 experts per pass,
 *                                                                    the last pass overlapping)
 *     p = softmax(p) over all E; pick k times the largest p (lowest id on ties), mark it taken
 *     routes[t][j] = (e_j, p[e_j] / (renorm ? sum_j p[e_j] : 1))
 *   for t < T: for j < k: e = routes[t][j].expert   // pass 2: dispatch lists in token order
 *     if count[e] < C: tok[e][count[e]] = t, wt[e][count[e]++] = routes[t][j].weight else dropped++
 *   p[E] lives in the (not yet written) tok/wt area of the dispatch, so C >= 1 is required.
 *
 * kt_experts (thread ith of nth; every weight byte is read by exactly one thread):
 *   h = rmsnorm(x) into scratch                       // [T, H], every thread normalises all T rows
 *   part = partials[ith] = 0                          // [T, H]
 *   ffn(rows, Iw, [lo, hi), list):                    // one expert, slice [lo, hi) of its Iw rows
 *     for chunk in list step kt_chunk(H):             // tokens whose h rows fit in L2
 *       for i in lo..hi step 4:                       // 4 rows of gate_up (tail: 1 at a time)
 *         for s0 in chunk step 4:                     // 4 tokens (tail: 1 at a time)
 *           g[4][4] = tile(gate_i..i+3, h[tok[s0..s0+4]])    // vectorised over H
 *           u[4][4] = tile(up_i..i+3, h[tok[s0..s0+4]])
 *           act[s][i + r - lo] = silu(g[r][s]) u[r][s] wt[s]
 *     for chunk in list step kt_chunk(hi - lo):       // tokens whose act rows fit in L2
 *       for c in 0..H step 4:                         // 4 rows of down (tail: 1 at a time)
 *         for s0 in chunk step 4:
 *           acc[4][4] = tile(down[c..c+4][lo:hi], act[s0..s0+4])  // vectorised over the slice
 *           part[tok[s]][c + r] += acc[r][s]
 *   shared_kind 1|2: ffn(sh_*, SI, kt_split(SI), all T tokens, weight 1), then (kind 1) each
 *                    part[t] *= sigmoid(h[t] . sg_w) — linear, so the thread partials still add up
 *   for e < E with count[e] > 0: ffn(expert e, I, kt_split(I), tok[e][0:count[e]], wt[e])
 *
 * kt_reduce: y = resid + partials[0] + ... + partials[nth-1], the flat T H elements split by thread.
 *
 * Specialised: T, H, I, E, k, C, SI, shared_kind, eps, renorm and wdt are constants. The slice
 * bounds depend on ith (runtime), so the down dot products have a runtime trip count.
 * Why gate rows, then up rows: the L2 streamer follows one forward stream per 4 KiB page, and a
 * row pair gate_i, up_i is contiguous (4 KiB at H = 1024 bf16); reading each pair front half then
 * back half, four pairs at a time, was 12-15% faster at decode than interleaving gate_i and up_i
 * (single thread, Mixtral shape, weights from DRAM). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "kt_common.h"

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

void kt_router(char *restrict dispatch, const float *restrict x, const float *restrict norm_w,
               const void *restrict gate_w, int64_t *restrict stats, int64_t T, int64_t H, int64_t E,
               int64_t k, int64_t C, float eps, int32_t renorm, int32_t wdt, int32_t ith, int32_t nth) {
    (void)nth;
    if (ith != 0) return;
    KtRoute *routes = (KtRoute *)dispatch;                  // [T, k]
    int32_t *count = (int32_t *)(dispatch + 8 * T * k);     // [E]
    int32_t *tok = count + E;                               // [E, C]
    float *wt = (float *)(tok + E * C);                     // [E, C]
    float *p = (float *)tok;                                // [E] scratch of pass 1 (tok/wt area, 2 E C floats)
    for (int64_t t = 0; t < T; t++) {
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
    int64_t dropped = 0;
    memset(count, 0, sizeof(int32_t) * (size_t)E);
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < k; j++) {
            int64_t e = routes[t * k + j].expert;
            if (count[e] >= C) {
                dropped++;
                continue;
            }
            tok[e * C + count[e]] = (int32_t)t;
            wt[e * C + count[e]] = routes[t * k + j].weight;
            count[e]++;
        }
    if (stats) {
        for (int64_t e = 0; e < E; e++) stats[e] += count[e];
        stats[E] += dropped;
    }
}

/* ---- kt_experts ---- */

/* Token s of a list: toks[s], or s itself for the dense/shared expert (toks NULL). */
static inline int64_t ex_tok(const int32_t *restrict toks, int64_t s) { return toks ? toks[s] : s; }

/* act[s][i - lo + q] = silu(gate_{i+q} . h[tok s]) (up_{i+q} . h[tok s]) wt[s] for q < ni (4 or 1),
 * tokens s in [s0, s0 + tb). gu0: element offset of this expert's gate_up [Iw][2][H]. */
static inline void ex_gate_up(float *restrict act, const float *restrict h, const void *restrict gate_up, int64_t gu0,
                              const int32_t *restrict toks, const float *restrict wts, int ni, int tb, int64_t i,
                              int64_t s0, int64_t lo, int64_t sl, int64_t H, int32_t wdt) {
    const float *xs[KT_TB]; // KT_TB x [H]
    for (int t = 0; t < KT_TB; t++) xs[t] = h + ex_tok(toks, s0 + (t < tb ? t : 0)) * H;
    float g[KT_RB][KT_TB], u[KT_RB][KT_TB]; // [ni, tb] each
    kt_tile(g, ni, tb, gate_up, gu0 + i * 2 * H, 2 * H, xs, H, wdt);     // gate rows i..i+ni-1
    kt_tile(u, ni, tb, gate_up, gu0 + i * 2 * H + H, 2 * H, xs, H, wdt); // up rows i..i+ni-1
    for (int t = 0; t < tb; t++) {
        float w = wts ? wts[s0 + t] : 1.0f;
        for (int q = 0; q < ni; q++) act[(s0 + t) * sl + i - lo + q] = kt_silu(g[q][t]) * u[q][t] * w;
    }
}

/* part[tok s][c + r] += down[c + r][lo:hi] . act[s] for r < rb, tokens s in [s0, s0 + tb).
 * dn0: element offset of this expert's down [H][Iw]. */
static inline void ex_down(float *restrict part, const float *restrict act, const void *restrict down, int64_t dn0,
                           const int32_t *restrict toks, int rb, int tb, int64_t c, int64_t s0, int64_t lo,
                           int64_t sl, int64_t H, int64_t Iw, int32_t wdt) {
    const float *xs[KT_TB]; // KT_TB x [sl]
    for (int t = 0; t < KT_TB; t++) xs[t] = act + (s0 + (t < tb ? t : 0)) * sl;
    float acc[KT_RB][KT_TB]; // [rb, tb]
    kt_tile(acc, rb, tb, down, dn0 + c * Iw + lo, Iw, xs, sl, wdt);
    for (int t = 0; t < tb; t++) {
        float *pr = part + ex_tok(toks, s0 + t) * H + c; // [rb]
        for (int r = 0; r < rb; r++) pr[r] += acc[r][t];
    }
}

/* One expert (routed, or the shared/dense one) over its n listed tokens, restricted to rows
 * [lo, hi) of its width Iw, accumulated into part[T, H]. act: [n, hi - lo] work space. */
static void ex_ffn(float *restrict part, const float *restrict h, float *restrict act, const void *restrict gate_up,
                   int64_t gu0, const void *restrict down, int64_t dn0, const int32_t *restrict toks,
                   const float *restrict wts, int64_t n, int64_t lo, int64_t hi, int64_t H, int64_t Iw, int32_t wdt) {
    int64_t sl = hi - lo;
    if (sl <= 0 || n <= 0) return;
    int64_t tc = kt_chunk(H); // tokens per chunk: their h rows stay in L2 while the rows stream
    for (int64_t c0 = 0; c0 < n; c0 += tc) {
        int64_t c1 = c0 + tc < n ? c0 + tc : n, i = lo, s0;
        for (; i + KT_RB <= hi; i += KT_RB) {
            for (s0 = c0; s0 + KT_TB <= c1; s0 += KT_TB)
                ex_gate_up(act, h, gate_up, gu0, toks, wts, 4, 4, i, s0, lo, sl, H, wdt);
            for (; s0 < c1; s0++) ex_gate_up(act, h, gate_up, gu0, toks, wts, 4, 1, i, s0, lo, sl, H, wdt);
        }
        for (; i < hi; i++) {
            for (s0 = c0; s0 + KT_TB <= c1; s0 += KT_TB)
                ex_gate_up(act, h, gate_up, gu0, toks, wts, 1, 4, i, s0, lo, sl, H, wdt);
            for (; s0 < c1; s0++) ex_gate_up(act, h, gate_up, gu0, toks, wts, 1, 1, i, s0, lo, sl, H, wdt);
        }
    }
    tc = kt_chunk(sl); // tokens per chunk: their act rows stay in L2 while down streams
    for (int64_t c0 = 0; c0 < n; c0 += tc) {
        int64_t c1 = c0 + tc < n ? c0 + tc : n, c = 0, s0;
        for (; c + KT_RB <= H; c += KT_RB) {
            for (s0 = c0; s0 + KT_TB <= c1; s0 += KT_TB)
                ex_down(part, act, down, dn0, toks, 4, 4, c, s0, lo, sl, H, Iw, wdt);
            for (; s0 < c1; s0++) ex_down(part, act, down, dn0, toks, 4, 1, c, s0, lo, sl, H, Iw, wdt);
        }
        for (; c < H; c++) {
            for (s0 = c0; s0 + KT_TB <= c1; s0 += KT_TB)
                ex_down(part, act, down, dn0, toks, 1, 4, c, s0, lo, sl, H, Iw, wdt);
            for (; s0 < c1; s0++) ex_down(part, act, down, dn0, toks, 1, 1, c, s0, lo, sl, H, Iw, wdt);
        }
    }
}

void kt_experts(float *restrict partials, const float *restrict x, const float *restrict norm_w,
                const char *restrict dispatch, const void *restrict gate_up, const void *restrict down,
                const void *restrict sh_gate_up, const void *restrict sh_down, const void *restrict sg_w,
                float *restrict scratch, int64_t T, int64_t H, int64_t I, int64_t E, int64_t k, int64_t C,
                int64_t SI, int32_t shared_kind, float eps, int64_t scratch_per_thread, int32_t wdt, int32_t ith,
                int32_t nth) {
    float *part = partials + (int64_t)ith * T * H;         // [T, H]
    float *h = scratch + (int64_t)ith * scratch_per_thread; // [T, H]
    float *act = h + T * H;                                 // [T, slice]
    memset(part, 0, sizeof(float) * (size_t)(T * H));
    kt_rmsnorm_rows(h, x, norm_w, T, H, eps);
    int64_t lo, hi;
    if (shared_kind != 0) {
        kt_split(SI, ith, nth, &lo, &hi);
        ex_ffn(part, h, act, sh_gate_up, 0, sh_down, 0, NULL, NULL, T, lo, hi, H, SI, wdt);
        if (shared_kind == 1 && hi > lo)
            for (int64_t t = 0; t < T; t++) {
                const float *hr = h + t * H; // [H]
                float *pr = part + t * H;    // [H]
                float s = 0.0f;
                for (int64_t c = 0; c < H; c++) s += hr[c] * ((const float *)sg_w)[c]; /* f32 vector */
                float g = kt_sigmoid(s);
                for (int64_t c = 0; c < H; c++) pr[c] *= g;
            }
    }
    if (E > 0) {
        const int32_t *count = (const int32_t *)(dispatch + 8 * T * k); // [E]
        const int32_t *tok = count + E;                                 // [E, C]
        const float *wt = (const float *)(tok + E * C);                 // [E, C]
        kt_split(I, ith, nth, &lo, &hi);
        for (int64_t e = 0; e < E; e++)
            ex_ffn(part, h, act, gate_up, e * I * 2 * H, down, e * H * I, tok + e * C, wt + e * C, count[e], lo, hi, H,
                   I, wdt);
    }
}

/* ---- kt_reduce ---- */

void kt_reduce(float *restrict y, const float *restrict resid, const float *restrict partials, int64_t T,
               int64_t H, int32_t ith, int32_t nth) {
    int64_t n = T * H, lo, hi;
    kt_split(n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) y[i] = resid[i];
    for (int32_t j = 0; j < nth; j++) {
        const float *pj = partials + (int64_t)j * n; // [T, H]
        for (int64_t i = lo; i < hi; i++) y[i] += pj[i];
    }
}
