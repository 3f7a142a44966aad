/* kt_qkv_rope and kt_attention: the attention templates between the qkv projection and o_proj.
 *
 * kt_qkv_rope, units u = (t, j) for j < nh + nkv (q heads, then kv heads), split by kt_split:
 *   row = qkv[t]                                   // [(nh + 2 nkv) hd]: q heads, k heads, v heads
 *   p = pos[t]; c = rope[p][0 : hd/2]; s = rope[p][hd/2 : hd]
 *   j < nh  (q head):  dst = q_out[t][j hd : (j+1) hd]
 *   j >= nh (kv head): dst = kc[slot[t]][p][(j-nh) hd : ...], and v head j-nh copied (clipped) to
 *                      vc[slot[t]][p][...]
 *   dst = src * inv * nw  with inv = 1/rms(src) (qk_norm 1, nw = qn|kn [hd]) or 1/rms(whole q|k row)
 *                         (qk_norm 2, nw = qn|kn at this head's offset); else dst = src
 *   if clip > 0: dst = clamp(dst, -clip, clip)
 *   for i < hd/2: (dst[i], dst[i+hd/2]) = (dst[i] c[i] - dst[i+hd/2] s[i], dst[i+hd/2] c[i] + dst[i] s[i])
 *
 * kt_attention, units u = (t, g, part) for kv head g, its group of nh / nkv query heads split into
 * parts only when there are fewer (t, g) than threads; unit u goes to thread u mod nth, so each thread
 * gets every nth token of a causal prefill and the same share of its growing cost (contiguous runs
 * gave one of 2 threads 3/4 of a 512-token chunk's keys while the other waited;
 * Qwen3-MoE bench preset, 2 threads: 512-token prefill +3%, 2048 tokens +6%). Each key and value row
 * is loaded once for all the unit's query heads (GQA); online softmax over key blocks of KB, so no
 * score buffer beyond KB floats per head on the stack:
 *   i = pos[t]; j0 = window > 0 ? max(0, i - window + 1) : 0; keys and values of slot[t]
 *   for each query head h of the unit: o_h = out[t][h hd : (h+1) hd] = 0; m_h, l_h
 *   for jb in floor(j0 / KB) KB .. i step KB:
 *     sc[h][b] = q[t][h] . k[jb+b] / sqrt(hd), -inf outside [j0, i]   // vectorised over 16 keys
 *     m' = max(m_h, max_b sc[h][b]); o_h *= exp(m_h - m'); l_h *= exp(m_h - m')
 *     p[h][b] = exp(sc[h][b] - m')                             // kt_exp, vectorised over b
 *     for b in [j0, i]: l_h += p[h][b]; o_h += p[h][b] v[jb+b]  // vectorised over hd
 * The KV layout (kernels.h) keeps 16 keys side by side: a score tile is hd broadcast FMAs per
 * query head, with no horizontal sums (prefill of 2048 tokens: 650-880 -> 990-1140 tok/s). The
 * next block's keys and values are prefetched one line per line read (decode at 2048: +3%).
 *   o_h /= l_h
 *
 * Specialised: T, nh, nkv, hd, S, eps, qk_norm, clip and window are constants (hd-long loops get
 * constant trip counts; the norm, clip and window branches fold); pos and slot are runtime arrays.
 * A slot's keys (and values) are nkv S hd floats: kc + slot * nkv S hd is that slot's cache.
 * hd <= KT_MAX_HEAD_DIM (the fuse pass checks). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "kt_common.h"

/* Keys per online-softmax block of kt_attention (a multiple of 16: whole key tiles). */
enum { ATT_KB = 32 };

/* dst[n] = clamp(src[n] * inv * (nw ? nw : 1), -clip, clip) (no clamp when clip <= 0). */
static inline void qk_norm_clip(float *restrict dst, const float *restrict src, const float *restrict nw, float inv,
                                int64_t n, float clip) {
    for (int64_t i = 0; i < n; i++) {
        float v = nw ? src[i] * inv * nw[i] : src[i];
        if (clip > 0.0f) v = v < -clip ? -clip : v > clip ? clip : v;
        dst[i] = v;
    }
}

/* Half-split RoPE of one head in place: x[hd], cs = rope row [hd] (cos[hd/2] then sin[hd/2]). */
static inline void rope_head(float *restrict x, const float *restrict cs, int64_t hd) {
    int64_t half = hd / 2;
    for (int64_t i = 0; i < half; i++) {
        float a = x[i], b = x[i + half], c = cs[i], s = cs[half + i];
        x[i] = a * c - b * s;
        x[i + half] = b * c + a * s;
    }
}

void kt_qkv_rope(float *restrict q_out, float *restrict kc, float *restrict vc, const float *restrict qkv,
                 const float *restrict qn, const float *restrict kn, const float *restrict rope,
                 const int64_t *restrict pos, const int32_t *restrict slot, int64_t T, int64_t nh, int64_t nkv, int64_t hd, int64_t S, float eps, int32_t qk_norm, float clip,
                 int64_t n, int32_t ith, int32_t nth) {
    int64_t heads = nh + nkv, width = (nh + 2 * nkv) * hd, kvw = nkv * hd;
    int64_t lo, hi;
    kt_split(n * heads, ith, nth, &lo, &hi);
    for (int64_t u = lo; u < hi; u++) {
        int64_t t = u / heads, j = u % heads, p = pos[t], sl = (int64_t)slot[t] * kvw * S;
        const float *row = qkv + t * width;  // [(nh + 2 nkv) hd]
        const float *cs = rope + p * hd;     // [hd]: cos, then sin
        int is_q = j < nh;
        int64_t hj = is_q ? j : j - nh;      // head index within q or within k
        const float *src = row + j * hd;     // [hd]
        const float *whole = is_q ? row : row + nh * hd;  // [nh hd] or [nkv hd]
        int64_t whole_n = is_q ? nh * hd : kvw;
        const float *nw = NULL;              // [hd] norm weight of this head
        float inv = 1.0f;
        if (qk_norm == 1) {
            nw = is_q ? qn : kn;
            inv = kt_rms_inv(src, hd, eps);
        } else if (qk_norm == 2) {
            nw = (is_q ? qn : kn) + hj * hd;
            inv = kt_rms_inv(whole, whole_n, eps);
        }
        float kr[KT_MAX_HEAD_DIM];                                           // [hd]
        float *dst = is_q ? q_out + t * nh * hd + hj * hd : kr;             // [hd]
        qk_norm_clip(dst, src, nw, inv, hd, clip);
        rope_head(dst, cs, hd);
        if (!is_q) {
            for (int64_t d = 0; d < hd; d++) kc[sl + kt_k_index(p, hj, d, S, hd)] = kr[d];
            qk_norm_clip(vc + sl + kt_v_index(p, hj, 0, S, hd), row + (nh + nkv + hj) * hd, NULL, 1.0f, hd, clip);
        }
    }
}

/* Query heads per pass of kt_attention (their scores live on the stack: ATT_HG x ATT_KB floats). */
enum { ATT_HG = 8 };

/* Query heads h0 .. h0 + nq - 1 (nq <= ATT_HG, all of kv head g) of token t at position i, keys
 * j0 .. i. kg, vg: kv head g's keys and values (kernels.h layout). Blocks of ATT_KB keys start at
 * multiples of ATT_KB; positions outside [j0, i] in a block get score -inf (weight 0). */
static inline void att_heads(float *restrict out, const float *restrict q, const float *restrict kg,
                             const float *restrict vg, int64_t t, int64_t h0, int nq, int64_t i, int64_t j0,
                             int64_t nh, int64_t hd, float scale) {
    const float *qv[ATT_HG]; // [nq] x [hd]
    float *o[ATT_HG];        // [nq] x [hd], the running sums of p v
    float m[ATT_HG], l[ATT_HG];
    for (int h = 0; h < nq; h++) {
        qv[h] = q + (t * nh + h0 + h) * hd;
        o[h] = out + (t * nh + h0 + h) * hd;
        for (int64_t d = 0; d < hd; d++) o[h][d] = 0.0f;
        l[h] = 0.0f;
        m[h] = -INFINITY;
    }
    for (int64_t jb = j0 / ATT_KB * ATT_KB; jb <= i; jb += ATT_KB) {
        float sc[ATT_HG][ATT_KB]; // [nq][ATT_KB] scores, then probabilities, of this block
        for (int64_t k16 = 0; k16 < ATT_KB; k16 += 16) {
            if (jb + k16 > i) { /* a tile wholly after i: nothing to read (it may be past S) */
                for (int h = 0; h < nq; h++)
                    for (int b = 0; b < 16; b++) sc[h][k16 + b] = -INFINITY;
                continue;
            }
            const float *kb = kg + (jb + k16) * hd; // [hd][16]: keys jb + k16 .. + 15
            kt_vf acc[ATT_HG];
            for (int h = 0; h < nq; h++) acc[h] = (kt_vf){0};
            for (int64_t d = 0; d < hd; d++) {
                __builtin_prefetch(kb + ATT_KB * hd + d * 16); /* the next block's tile, one line per line */
                kt_vf kv = kt_ldv(kb + d * 16);
                for (int h = 0; h < nq; h++) acc[h] += kv * qv[h][d];
            }
            for (int h = 0; h < nq; h++)
                for (int b = 0; b < 16; b++) {
                    int64_t j = jb + k16 + b;
                    sc[h][k16 + b] = j >= j0 && j <= i ? acc[h][b] * scale : -INFINITY;
                }
        }
        for (int h = 0; h < nq; h++) {
            float bm = m[h];
            for (int b = 0; b < ATT_KB; b++) bm = sc[h][b] > bm ? sc[h][b] : bm;
            if (bm > m[h]) {
                float corr = kt_exp(m[h] - bm); /* 0 on the first block: m = -inf */
                l[h] *= corr;
                for (int64_t d = 0; d < hd; d++) o[h][d] *= corr;
                m[h] = bm;
            }
            for (int b = 0; b < ATT_KB; b++) sc[h][b] = kt_exp(sc[h][b] - bm); /* -inf -> 0 */
        }
        int64_t b0 = j0 > jb ? j0 - jb : 0, b1 = i + 1 - jb < ATT_KB ? i + 1 - jb : ATT_KB;
        for (int64_t b = b0; b < b1; b++) {
            const float *vr = vg + (jb + b) * hd; // [hd]
            for (int64_t d = 0; d < hd; d += 16) __builtin_prefetch(vr + ATT_KB * hd + d); /* next block's row */
            for (int h = 0; h < nq; h++) {
                float p = sc[h][b];
                l[h] += p;
                for (int64_t d = 0; d < hd; d++) o[h][d] += p * vr[d];
            }
        }
    }
    for (int h = 0; h < nq; h++) {
        float rl = 1.0f / l[h];
        for (int64_t d = 0; d < hd; d++) o[h][d] *= rl;
    }
}

void kt_attention(float *restrict out, const float *restrict q, const float *restrict kc,
                  const float *restrict vc, const int64_t *restrict pos, const int32_t *restrict slot,
                  int64_t T, int64_t nh, int64_t nkv, int64_t hd,
                  int64_t S, int64_t window, int64_t n, int32_t ith, int32_t nth) {
    int64_t group = nh / nkv, parts = 1;
    while (n * nkv * parts < nth && parts < group) parts++; /* idle threads: split the groups */
    int64_t per = (group + parts - 1) / parts;               /* query heads per unit */
    float scale = 1.0f / sqrtf((float)hd);
    for (int64_t u = ith; u < n * nkv * parts; u += nth) {
        int64_t t = u / (nkv * parts), g = u / parts % nkv, part = u % parts, i = pos[t];
        int64_t sl = (int64_t)slot[t] * nkv * hd * S;
        int64_t j0 = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
        int64_t h1 = (part + 1) * per < group ? (part + 1) * per : group;
        const float *kg = kc + sl + kt_k_index(0, g, 0, S, hd), *vg = vc + sl + kt_v_index(0, g, 0, S, hd);
        if (parts == 1) /* every head of the group: nq a constant once specialised */
            for (int64_t h = 0; h < group; h += ATT_HG)
                att_heads(out, q, kg, vg, t, g * group + h, (int)(group - h < ATT_HG ? group - h : ATT_HG), i, j0,
                          nh, hd, scale);
        else
            for (int64_t h = part * per; h < h1; h += ATT_HG)
                att_heads(out, q, kg, vg, t, g * group + h, (int)(h1 - h < ATT_HG ? h1 - h : ATT_HG), i, j0, nh,
                          hd, scale);
    }
}
