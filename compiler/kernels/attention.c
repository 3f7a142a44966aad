/* kt_qkv_rope and kt_attention: the attention templates between the qkv projection and o_proj.
 *
 * kt_qkv_rope, units u = (t, j) for j < nh + nkv (q heads, then kv heads), split by kt_split:
 *   row = qkv[t]                                   // [(nh + 2 nkv) hd]: q heads, k heads, v heads
 *   p = pos0 + t; c = rope[p][0 : hd/2]; s = rope[p][hd/2 : hd]
 *   j < nh  (q head):  dst = q_out[t][j hd : (j+1) hd]
 *   j >= nh (kv head): dst = kc[p][(j-nh) hd : ...], and v head j-nh copied (clipped) to vc[p][...]
 *   dst = src * inv * nw  with inv = 1/rms(src) (qk_norm 1, nw = qn|kn [hd]) or 1/rms(whole q|k row)
 *                         (qk_norm 2, nw = qn|kn at this head's offset); else dst = src
 *   if clip > 0: dst = clamp(dst, -clip, clip)
 *   for i < hd/2: (dst[i], dst[i+hd/2]) = (dst[i] c[i] - dst[i+hd/2] s[i], dst[i+hd/2] c[i] + dst[i] s[i])
 *
 * kt_attention, units u = (t, h) for h < nh, split by kt_split; online softmax over key blocks of
 * KB, so no score buffer beyond KB floats on the stack:
 *   i = pos0 + t; g = h / (nh / nkv); j0 = window > 0 ? max(0, i - window + 1) : 0
 *   o = out[t][h hd : (h+1) hd] = 0; m = max so far; l = sum so far
 *   for jb in j0..i step KB:
 *     sc[b] = q[t][h] . kc[jb+b][g] / sqrt(hd)                 // vectorised over hd
 *     m' = max(m, max_b sc[b]); o *= exp(m - m'); l *= exp(m - m')
 *     for b: p = exp(sc[b] - m'); l += p; o += p vc[jb+b][g]   // vectorised over hd
 *   o /= l
 *
 * Specialised: T, nh, nkv, hd, S, eps, qk_norm, clip and window are constants (hd-long loops get
 * constant trip counts; the norm, clip and window branches fold); pos0 stays a runtime value. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "kt_common.h"

/* Keys per online-softmax block of kt_attention. */
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
                 const float *restrict qn, const float *restrict kn, const float *restrict rope, int64_t pos0,
                 int64_t T, int64_t nh, int64_t nkv, int64_t hd, int64_t S, float eps, int32_t qk_norm, float clip,
                 int32_t ith, int32_t nth) {
    int64_t heads = nh + nkv, width = (nh + 2 * nkv) * hd, kvw = nkv * hd;
    int64_t lo, hi;
    kt_split(T * heads, ith, nth, &lo, &hi);
    for (int64_t u = lo; u < hi; u++) {
        int64_t t = u / heads, j = u % heads, p = pos0 + t;
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
        float *dst = is_q ? q_out + t * nh * hd + hj * hd : kc + p * kvw + hj * hd;  // [hd]
        qk_norm_clip(dst, src, nw, inv, hd, clip);
        rope_head(dst, cs, hd);
        if (!is_q) qk_norm_clip(vc + p * kvw + hj * hd, row + (nh + nkv + hj) * hd, NULL, 1.0f, hd, clip);
    }
    (void)S;
}

void kt_attention(float *restrict out, const float *restrict q, const float *restrict kc,
                  const float *restrict vc, int64_t pos0, int64_t T, int64_t nh, int64_t nkv, int64_t hd,
                  int64_t S, int64_t window, int32_t ith, int32_t nth) {
    int64_t kvw = nkv * hd, group = nh / nkv;
    float scale = 1.0f / sqrtf((float)hd);
    int64_t lo, hi;
    kt_split(T * nh, ith, nth, &lo, &hi);
    for (int64_t u = lo; u < hi; u++) {
        int64_t t = u / nh, h = u % nh, i = pos0 + t, g = h / group;
        int64_t j0 = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
        const float *qv = q + u * hd;        // [hd]
        float *o = out + u * hd;             // [hd], the running sum of p v
        const float *kg = kc + g * hd;       // [S, nkv hd] at kv head g
        const float *vg = vc + g * hd;       // [S, nkv hd] at kv head g
        for (int64_t d = 0; d < hd; d++) o[d] = 0.0f;
        float m = 0.0f, l = 0.0f;
        for (int64_t jb = j0; jb <= i; jb += ATT_KB) {
            int64_t nb = i + 1 - jb < ATT_KB ? i + 1 - jb : ATT_KB;
            float sc[ATT_KB]; // [nb] scores of this block
            float bm = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const float *kr = kg + (jb + b) * kvw; // [hd]
                float s = 0.0f;
                for (int64_t d = 0; d < hd; d++) s += qv[d] * kr[d];
                sc[b] = s * scale;
                bm = b == 0 || sc[b] > bm ? sc[b] : bm;
            }
            if (jb == j0) {
                m = bm;
            } else if (bm > m) {
                float corr = expf(m - bm);
                l *= corr;
                for (int64_t d = 0; d < hd; d++) o[d] *= corr;
                m = bm;
            }
            for (int64_t b = 0; b < nb; b++) {
                const float *vr = vg + (jb + b) * kvw; // [hd]
                float p = expf(sc[b] - m);
                l += p;
                for (int64_t d = 0; d < hd; d++) o[d] += p * vr[d];
            }
        }
        float rl = 1.0f / l;
        for (int64_t d = 0; d < hd; d++) o[d] *= rl;
    }
    (void)S;
}
