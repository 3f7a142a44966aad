/* The compiled path's kernel templates (the .c files of compiler/kernels), compiled natively into this test,
 * against compositions of their reference twins (tests/ref/ref_ops.c). Every kernel runs with
 * nth = 1, 2 and 3, calling it once per ith in turn (simulating the threads) and then kt_reduce
 * where it has partials. NMSE <= 1e-6 for f32 and bf16 weights (the reference reads the same bf16
 * values, widened exactly); expert ids, dispatch lists and dropped counts exact. */
#include <stdlib.h>

#include "../../compiler/kernels/attention.c"
#include "../../compiler/kernels/embed.c"
#include "../../compiler/kernels/moe.c"
#include "../../compiler/kernels/norm_matmul.c"
#include "../../runtime/exec.h"
#include "ref/ref_ops.h"
#include "test.h"

#define NMSE_TOL 1e-6
/* With one AMX plane the activations are rounded to bf16: relative error <= 2^-9 each, so a dot
 * product's NMSE is about 2^-18 / 3; a MoE FFN chains two of them (and SiLU), hence 2^-16. */
#define NMSE_TOL_BF16 (1.0 / 65536)

/* The amx values the matmul kernels run with: 0 (the FMA tile), then, when this CPU and kernel run
 * AMX tiles, 3, 2 and 1 planes (bf16 weights go through kt_amx.h); n_amx = 1 otherwise (a note
 * says the AMX runs were skipped). */
static const int amx_values[4] = {0, 3, 2, 1};
static int n_amx = 1;
static double amx_tol(int amx) { return amx == 1 ? NMSE_TOL_BF16 : NMSE_TOL; }

static void round_all_bf16(float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++) v[i] = ref_round_bf16(v[i]);
}

/* The bf16 activation mode bits bf16 weights run with (kt_common.h), set by main: 0 (exact), then
 * KT_ACT_BF16 (portable), then with KT_DP_BF16 where this CPU has AVX512_BF16. In the bf16 mode the
 * twins round the activations as the kernels must (ref_round_bf16), so the tolerance stays NMSE_TOL: the
 * two differ only where an f32-rounding difference of a value tips its bf16 rounding (rare); the
 * AMX runs are left to the exact mode (their rounding is kt_amx.h's, tested above). */
static int32_t g_bf;
/* The target bits every weight carries (kt_common.h), set by main: 0, then KT_NARROW (the tiles of a
 * target with narrower vectors than AVX-512's; correct on any CPU, so both run everywhere). */
static int32_t g_tgt;
static int32_t bf_wdt(DType dt) { return (dt == DT_BF16 ? (int32_t)dt | g_bf : (int32_t)dt) | g_tgt; }

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}
static float *randv(int64_t n, float scale, float offset) {
    float *v = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = offset + frand() * scale;
    return v;
}
/* Weights [n] in dtype dt (returned) and their exact f32 values (in *wf). */
static void *randw(int64_t n, DType dt, float scale, float **wf) {
    float *f = randv(n, scale, 0);
    void *w = malloc(dtype_size(dt) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        if (dt == DT_BF16) ((uint16_t *)w)[i] = f32_to_bf16(f[i]);
        else ((float *)w)[i] = f[i];
        f[i] = dtype_load_f32(dt, w, (size_t)i);
    }
    *wf = f;
    return w;
}
static float *zeros(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

/* Every kernel runs twice: as a step of exactly T tokens, and as a step laid out for T + PAD
 * tokens of which only the first T are real (n = T < T + PAD, a partial prefill chunk): outputs
 * get PAD extra rows holding SENTINEL, which must survive, and reads past row T would be out of
 * bounds (the inputs have T rows; the sanitizer run catches them). */
enum { PAD = 3 };
#define SENTINEL 12345.0f
static void fill_sentinels(float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++) v[i] = SENTINEL;
}
static float *sentinels(int64_t n) {
    float *v = zeros(n);
    fill_sentinels(v, n);
    return v;
}
static void sentinels_ok(const float *v, int64_t from, int64_t to, const char *what) {
    int ok = 1;
    for (int64_t i = from; i < to; i++) ok &= v[i] == SENTINEL;
    if (!ok) fprintf(stderr, "%s: a padding row was written\n", what);
    EXPECT_TRUE(ok);
}

static void nmse_tol_ok(const float *got, const float *want, int64_t n, const char *what, int nth, double tol) {
    double e = test_nmse(got, want, (size_t)n);
    if (!(e <= tol)) fprintf(stderr, "%s (nth %d): nmse %.3g\n", what, nth, e);
    EXPECT_TRUE(e <= tol);
}
static void nmse_ok(const float *got, const float *want, int64_t n, const char *what, int nth) {
    nmse_tol_ok(got, want, n, what, nth, NMSE_TOL);
}

/* n_mat matrices [R][K] in dtype dt (row-major, back to back) -> the panel layout of kt_common.h,
 * each padded to its own kt_panel_elems; element by element through kt_panel_index. */
static void *panelize(const void *w, int64_t n_mat, int64_t R, int64_t K, DType dt) {
    size_t es = dtype_size(dt), per = (size_t)kt_panel_elems(R, K);
    char *p = calloc(per * (size_t)(n_mat > 0 ? n_mat : 1), es);
    for (int64_t m = 0; m < n_mat; m++)
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < K; c++)
                memcpy(p + ((size_t)m * per + (size_t)kt_panel_index(r, c, K, dt == DT_BF16 ? 2 : 0)) * es,
                       (const char *)w + (size_t)((m * R + r) * K + c) * es, es);
    return p;
}

/* ---- kt_norm_matmul ---- */

/* Called by every thread of a step run through moert_exec, after a barrier that follows its kernels:
 * thread 0 notes whether the step had the runtime's counters (kernels.h: kt_work) and whether the
 * kernels left them zero for the next one. */
static void counters_after(int32_t ith, int32_t *had, int32_t *zero) {
    const int64_t *w = moert_work();
    if (ith == 0) *had = w != NULL, *zero = w && w[0] == 0 && w[1] == 0;
}

/* One kt_norm_matmul call run on real threads by the runtime (moert_exec): its blocks are then shared
 * out through the runtime's counters (kernels.h: kt_work), which thread 0 checks are left zero. */
static struct {
    float *y, *scratch, eps;
    const float *x, *nw, *bias, *resid;
    const void *wp;
    int64_t TL, K, N, T;
    int32_t has_norm, has_bias, has_resid, wdt, amx, left_zero, had_ctr;
} g_nm;
static void nm_step(const MoeStepArgs *a, int32_t ith, int32_t nth) {
    (void)a;
    kt_norm_matmul(g_nm.y, g_nm.x, g_nm.nw, g_nm.wp, g_nm.bias, g_nm.resid, g_nm.scratch, g_nm.TL, g_nm.K, g_nm.N,
                   g_nm.eps, g_nm.has_norm, g_nm.has_bias, g_nm.has_resid, g_nm.wdt, g_nm.wdt, g_nm.N, g_nm.amx, g_nm.T,
                   ith, nth);
    moert_barrier();
    counters_after(ith, &g_nm.had_ctr, &g_nm.left_zero);
}

static void t_norm_matmul(int64_t T, int64_t K, int64_t N, DType dt, int has_norm, int has_bias, int has_resid) {
    if (g_bf && dt != DT_BF16) return; /* the mode changes bf16 weights only: run once */
    float eps = 1e-5f, *wf;
    float *x = randv(T * K, 2, 0), *nw = randv(K, 0.3f, 1), *bias = randv(N, 1, 0), *resid = randv(T * N, 1, 0);
    void *w = randw(N * K, dt, 0.5f, &wf);
    float *h = zeros(T * K), *r = zeros(T * N);
    if (has_norm) ref_rmsnorm(h, x, T, K, nw, K, eps);
    else memcpy(h, x, sizeof(float) * (size_t)(T * K));
    const int32_t wdt = bf_wdt(dt), q = kt_q_scratch_kind(wdt);
    if (kt_bfa(wdt)) round_all_bf16(h, T * K);
    ref_matmul(r, h, T, K, w, dt, N, has_bias ? bias : NULL);
    if (has_resid)
        for (int64_t i = 0; i < T * N; i++) r[i] += resid[i];
    void *wp = panelize(w, 1, N, K, dt);
    for (int ai = 0; ai < (kt_bfa(wdt) ? 1 : n_amx); ai++)
        for (int pad = 0; pad <= PAD; pad += PAD)
            for (int run = 0; run < 5; run++) { /* nth 1..3 one after another, then 2 and 3 threads */
                int amx = amx_values[ai], nth = run < 3 ? run + 1 : run - 1;
                int64_t TL = T + pad; /* layout rows */
                float *y = sentinels(TL * N), *scratch = zeros(nth * kt_norm_matmul_scratch(TL, K, has_norm, amx, q));
                if (run < 3) {
                    for (int ith = 0; ith < nth; ith++)
                        kt_norm_matmul(y, x, nw, wp, bias, resid, scratch, TL, K, N, eps, has_norm, has_bias,
                                       has_resid, wdt, wdt, N, amx, T, ith, nth);
                } else {
                    g_nm.y = y, g_nm.scratch = scratch, g_nm.eps = eps, g_nm.x = x, g_nm.nw = nw, g_nm.bias = bias;
                    g_nm.resid = resid, g_nm.wp = wp, g_nm.TL = TL, g_nm.K = K, g_nm.N = N, g_nm.T = T;
                    g_nm.has_norm = has_norm, g_nm.has_bias = has_bias, g_nm.has_resid = has_resid, g_nm.wdt = wdt;
                    g_nm.amx = amx, g_nm.left_zero = g_nm.had_ctr = 0;
                    MoeStepArgs args = {0};
                    moert_exec(nm_step, &args, nth);
                    EXPECT_TRUE(g_nm.had_ctr && g_nm.left_zero); /* zero again for the next kernel */
                }
                nmse_tol_ok(y, r, T * N, amx ? "norm_matmul (amx)" : "norm_matmul", nth, amx_tol(amx));
                sentinels_ok(y, T * N, TL * N, "norm_matmul");
                free(y), free(scratch);
            }
    free(x), free(nw), free(bias), free(resid), free(w), free(wp), free(wf), free(h), free(r);
}

/* ---- the KV cache layout (kernels.h): row-major k, v [S][nkv hd] <-> kc, vc of SP positions ---- */

static void kv_to_cache(float *kc, float *vc, const float *k, const float *v, int64_t S, int64_t SP, int64_t nkv,
                        int64_t hd) {
    for (int64_t p = 0; p < S; p++)
        for (int64_t g = 0; g < nkv; g++)
            for (int64_t d = 0; d < hd; d++) {
                kc[kt_k_index(p, g, d, SP, hd)] = k[(p * nkv + g) * hd + d];
                vc[kt_v_index(p, g, d, SP, hd)] = v[(p * nkv + g) * hd + d];
            }
}

static void kv_from_cache(float *k, float *v, const float *kc, const float *vc, int64_t S, int64_t SP, int64_t nkv,
                          int64_t hd) {
    for (int64_t p = 0; p < S; p++)
        for (int64_t g = 0; g < nkv; g++)
            for (int64_t d = 0; d < hd; d++) {
                k[(p * nkv + g) * hd + d] = kc[kt_k_index(p, g, d, SP, hd)];
                v[(p * nkv + g) * hd + d] = vc[kt_v_index(p, g, d, SP, hd)];
            }
}

/* ---- kt_qkv_rope ---- */

/* Rows' positions pos0, pos0 + 1, ... and slots (all `slot`), as a prefill step of one slot has them. */
static int64_t *row_positions(int64_t n, int64_t pos0) {
    int64_t *p = malloc(sizeof(int64_t) * (size_t)n);
    for (int64_t t = 0; t < n; t++) p[t] = pos0 + t;
    return p;
}
static int32_t *row_slots(int64_t n, int32_t slot) {
    int32_t *s = malloc(sizeof(int32_t) * (size_t)n);
    for (int64_t t = 0; t < n; t++) s[t] = slot;
    return s;
}

/* rope[S][hd] = cos(p inv_freq[i]) then sin(...), the angle rounded to f32 as ref_rope does. */
static float *rope_table(int64_t S, int64_t hd, const float *inv_freq) {
    float *rope = zeros(S * hd);
    for (int64_t p = 0; p < S; p++)
        for (int64_t i = 0; i < hd / 2; i++) {
            double ang = (double)(float)((float)p * inv_freq[i]);
            rope[p * hd + i] = (float)cos(ang);
            rope[p * hd + hd / 2 + i] = (float)sin(ang);
        }
    return rope;
}

static void clamp_all(float *v, int64_t n, float c) {
    if (c > 0)
        for (int64_t i = 0; i < n; i++) v[i] = v[i] < -c ? -c : v[i] > c ? c : v[i];
}

static void t_qkv_rope(int64_t T, int64_t nh, int64_t nkv, int64_t hd, int64_t pos0, int32_t qk_norm, float clip) {
    int64_t S = pos0 + T + 2, qw = nh * hd, kvw = nkv * hd, width = qw + 2 * kvw;
    float eps = 1e-6f, inv_freq[128];
    for (int64_t i = 0; i < hd / 2; i++) inv_freq[i] = 1.0f / powf(10000.0f, (float)(2 * i) / (float)hd);
    float *rope = rope_table(S, hd, inv_freq);
    float *qkv = randv(T * width, 2, 0);
    int64_t qn_n = qk_norm == 2 ? qw : hd, kn_n = qk_norm == 2 ? kvw : hd;
    float *qn = randv(qn_n, 0.3f, 1), *kn = randv(kn_n, 0.3f, 1);
    /* reference: split, norm, clip, rope */
    float *q = zeros(T * qw), *k = zeros(T * kvw), *v = zeros(T * kvw);
    for (int64_t t = 0; t < T; t++) {
        memcpy(q + t * qw, qkv + t * width, sizeof(float) * (size_t)qw);
        memcpy(k + t * kvw, qkv + t * width + qw, sizeof(float) * (size_t)kvw);
        memcpy(v + t * kvw, qkv + t * width + qw + kvw, sizeof(float) * (size_t)kvw);
    }
    if (qk_norm) {
        float *qq = zeros(T * qw), *kk = zeros(T * kvw);
        ref_rmsnorm(qq, q, T, qw, qn, qn_n, eps);
        ref_rmsnorm(kk, k, T, kvw, kn, kn_n, eps);
        free(q), free(k);
        q = qq, k = kk;
    }
    clamp_all(q, T * qw, clip), clamp_all(k, T * kvw, clip), clamp_all(v, T * kvw, clip);
    float *rq = zeros(T * qw), *rk = zeros(T * kvw);
    ref_rope(rq, q, T, nh, hd, inv_freq, 1.0f, pos0);
    ref_rope(rk, k, T, nkv, hd, inv_freq, 1.0f, pos0);
    int64_t *pos = row_positions(T, pos0);
    int32_t *slot = row_slots(T, 1); /* the rows are slot 1's of two: slot 0's cache stays untouched */
    for (int run = 0; run < 6; run++) { /* nth 1..3, then again laid out for PAD more rows */
        int nth = run % 3 + 1;
        int64_t TL = T + (run >= 3 ? PAD : 0);
        int64_t SP = kt_kv_positions(S);
        float *qo = sentinels(TL * qw), *kc = zeros(2 * SP * kvw), *vc = zeros(2 * SP * kvw);
        float *k_all = zeros(SP * kvw), *v_all = zeros(SP * kvw); /* row-major views of slot 1's cache */
        for (int64_t i = 0; i < 2 * SP * kvw; i++) kc[i] = vc[i] = 7.0f; /* untouched outside pos0..pos0+T */
        for (int ith = 0; ith < nth; ith++)
            kt_qkv_rope(qo, kc, vc, qkv, qn, kn, rope, pos, slot, TL, nh, nkv, hd, SP, eps, qk_norm, clip, T, ith, nth);
        for (int64_t i = 0; i < SP * kvw; i++)
            if (kc[i] != 7.0f || vc[i] != 7.0f) {
                EXPECT_TRUE(!"qkv_rope wrote into another slot's cache");
                break;
            }
        kv_from_cache(k_all, v_all, kc + SP * kvw, vc + SP * kvw, SP, SP, nkv, hd);
        sentinels_ok(qo, T * qw, TL * qw, "qkv_rope");
        nmse_ok(qo, rq, T * qw, "qkv_rope q", nth);
        nmse_ok(k_all + pos0 * kvw, rk, T * kvw, "qkv_rope k", nth);
        nmse_ok(v_all + pos0 * kvw, v, T * kvw, "qkv_rope v", nth);
        int untouched = 1;
        for (int64_t i = 0; i < SP * kvw; i++)
            if ((i < pos0 * kvw || i >= (pos0 + T) * kvw) && (k_all[i] != 7.0f || v_all[i] != 7.0f)) untouched = 0;
        EXPECT_TRUE(untouched);
        free(qo), free(kc), free(vc), free(k_all), free(v_all);
    }
    free(rope), free(qkv), free(qn), free(kn), free(q), free(k), free(v), free(rq), free(rk), free(pos), free(slot);
}

/* ---- kt_attention ---- */

static void t_attention(int64_t T, int64_t nh, int64_t nkv, int64_t hd, int64_t pos0, int64_t window) {
    int64_t S = pos0 + T + 3, kvw = nkv * hd, SP = kt_kv_positions(S);
    float *q = randv(T * nh * hd, 1.5f, 0), *k = randv(S * kvw, 1.5f, 0), *v = randv(S * kvw, 1, 0);
    float *r = zeros(T * nh * hd), *kc = zeros(SP * kvw), *vc = zeros(SP * kvw);
    for (int64_t i = 0; i < SP * kvw; i++) kc[i] = vc[i] = NAN; /* positions never written: masked, never used */
    kv_to_cache(kc, vc, k, v, S, SP, nkv, hd);
    ref_attention(r, q, k, v, T, nh, nkv, hd, window, pos0);
    int64_t *pos = row_positions(T + PAD, pos0);
    int32_t *slot = row_slots(T + PAD, 0);
    for (int pad = 0; pad <= PAD; pad += PAD)
        for (int nth = 1; nth <= 3; nth++) {
            int64_t TL = T + pad;
            float *y = sentinels(TL * nh * hd);
            for (int ith = 0; ith < nth; ith++)
                kt_attention(y, q, kc, vc, pos, slot, TL, nh, nkv, hd, SP, window, T, ith, nth);
            nmse_ok(y, r, T * nh * hd, "attention", nth);
            sentinels_ok(y, T * nh * hd, TL * nh * hd, "attention");
            free(y);
        }
    free(q), free(k), free(v), free(kc), free(vc), free(r), free(pos), free(slot);
}

/* A decode step of a batch: row t is slot slot[t]'s token at its own position pos[t]; each slot's
 * cache holds its own keys and values. Each row against ref_attention over its slot alone. */
static void t_attention_slots(int64_t B, int64_t nh, int64_t nkv, int64_t hd, int64_t window) {
    int64_t S = 90, kvw = nkv * hd, SP = kt_kv_positions(S), n = B - 1; /* one slot idle */
    float *kc = zeros(B * SP * kvw), *vc = zeros(B * SP * kvw), *q = randv(B * nh * hd, 1.5f, 0);
    float **k = malloc(sizeof(float *) * (size_t)B), **v = malloc(sizeof(float *) * (size_t)B);
    int64_t pos[8];
    int32_t slot[8];
    for (int64_t b = 0; b < B; b++) {
        k[b] = randv(S * kvw, 1.5f, 0), v[b] = randv(S * kvw, 1, 0);
        kv_to_cache(kc + b * SP * kvw, vc + b * SP * kvw, k[b], v[b], S, SP, nkv, hd);
    }
    for (int64_t t = 0; t < n; t++) {      /* rows: slots 0, 2, 3, ... (slot 1 idle), ragged positions */
        slot[t] = (int32_t)(t == 0 ? 0 : t + 1);
        pos[t] = (t * 37 + 5) % S;
    }
    float *r = zeros(n * nh * hd);
    for (int64_t t = 0; t < n; t++)
        ref_attention(r + t * nh * hd, q + t * nh * hd, k[slot[t]], v[slot[t]], 1, nh, nkv, hd, window, pos[t]);
    for (int nth = 1; nth <= 3; nth++) {
        float *y = sentinels(B * nh * hd);
        for (int ith = 0; ith < nth; ith++)
            kt_attention(y, q, kc, vc, pos, slot, B, nh, nkv, hd, SP, window, n, ith, nth);
        nmse_ok(y, r, n * nh * hd, "attention slots", nth);
        sentinels_ok(y, n * nh * hd, B * nh * hd, "attention slots");
        free(y);
    }
    for (int64_t b = 0; b < B; b++) free(k[b]), free(v[b]);
    free(k), free(v), free(kc), free(vc), free(q), free(r);
}

/* ---- kt_exp against libm's exp in double ---- */

static void t_exp(void) {
    double worst = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f + 175.0f * (float)i / 200000.0f;
        double want = exp((double)x), got = kt_exp(x);
        double rel = fabs(got - want) / want;
        worst = rel > worst ? rel : worst;
    }
    if (!(worst <= 3.6e-7)) fprintf(stderr, "kt_exp: worst relative error %.3g\n", worst); /* 3 ulp */
    EXPECT_TRUE(worst <= 3.6e-7);
    double worst_v = 0; /* kt_exp_v, 16 lanes at a time, with lanes below -87 and above 88 */
    for (int i = 0; i <= 200000; i += 16) {
        kt_vf x, y;
        for (int l = 0; l < 16; l++) x[l] = -87.0f + 175.0f * (float)(i + l < 200000 ? i + l : 200000) / 200000.0f;
        y = kt_exp_v(x);
        for (int l = 0; l < 16; l++) {
            double want = exp((double)x[l]), rel = fabs(y[l] - want) / want;
            worst_v = rel > worst_v ? rel : worst_v;
        }
    }
    if (!(worst_v <= 3.6e-7)) fprintf(stderr, "kt_exp_v: worst relative error %.3g\n", worst_v);
    EXPECT_TRUE(worst_v <= 3.6e-7);
    kt_vf e = {-INFINITY, -100.0f, 0.0f, 100.0f, -87.5f, 1.0f, -1.0f, 0.5f, -0.5f, 20.0f};
    kt_vf ev = kt_exp_v(e);
    EXPECT_TRUE(ev[0] == 0.0f && ev[1] == 0.0f && ev[2] == 1.0f && ev[4] == 0.0f);
    EXPECT_TRUE(ev[3] == kt_exp(88.0f)); /* clamped, as kt_exp */
    for (int l = 5; l < 10; l++) EXPECT_TRUE(fabs(ev[l] - exp((double)e[l])) <= 3.6e-7 * exp((double)e[l]));
    kt_vf sv = kt_silu_v(e);
    EXPECT_TRUE(sv[2] == 0.0f && fabsf(sv[5] - 0.7310586f) <= 1e-6f && fabsf(sv[1]) < 1e-30f);
    EXPECT_TRUE(kt_exp(-INFINITY) == 0.0f);
    EXPECT_TRUE(kt_exp(-100.0f) == 0.0f);
    EXPECT_TRUE(kt_exp(0.0f) == 1.0f);
}

/* ---- kt_router + kt_experts + kt_reduce ---- */

typedef struct MoeCase {
    int64_t T, H, I, E, k, C, SI;
    int32_t shared_kind, renorm;
    DType dt;
    const char *name;
    int ties; /* gate_w rows E/2 and E-1 copy row 0: exact probability ties (lowest id first) */
} MoeCase;

/* y[T, H] += gate[t] * mlp(h) with the SiLU-gated MLP g[SI, H], u[SI, H], d[H, SI] (f32 values);
 * bf: h and the act rows rounded to bf16 before their matmuls (the bf16 activation mode). */
static void ref_dense_mlp(float *y, const float *h, const float *gate, int64_t T, int64_t H, int64_t SI,
                          const void *g, const void *u, const void *d, DType dt, int bf) {
    float *gv = zeros(T * SI), *uv = zeros(T * SI), *o = zeros(T * H), *hb = zeros(T * H);
    memcpy(hb, h, sizeof(float) * (size_t)(T * H));
    if (bf) round_all_bf16(hb, T * H);
    ref_matmul(gv, hb, T, H, g, dt, SI, NULL);
    ref_matmul(uv, hb, T, H, u, dt, SI, NULL);
    for (int64_t i = 0; i < T * SI; i++) gv[i] = (float)((double)gv[i] / (1 + exp(-(double)gv[i])) * uv[i]);
    if (bf) round_all_bf16(gv, T * SI);
    ref_matmul(o, gv, T, SI, d, dt, H, NULL);
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < H; c++) y[t * H + c] += gate[t] * o[t * H + c];
    free(gv), free(uv), free(o), free(hb);
}

/* Per expert, gate g[n][I][H] and up u[n][I][H] as one panel matrix whose block b holds gate rows
 * 16b.. then up rows 16b.. (PACK_GATE_UP). */
static void *gate_up_panels(const void *g, const void *u, int64_t n, int64_t I, int64_t H, DType dt) {
    size_t es = dtype_size(dt), row = (size_t)H * es;
    int64_t R = (I + 15) / 16 * 32;
    char *m = calloc((size_t)(n > 0 ? n : 1) * (size_t)R, row);
    for (int64_t e = 0; e < n; e++)
        for (int64_t i = 0; i < I; i++) {
            memcpy(m + (size_t)(e * R + i / 16 * 32 + i % 16) * row, (const char *)g + (size_t)(e * I + i) * row, row);
            memcpy(m + (size_t)(e * R + i / 16 * 32 + 16 + i % 16) * row, (const char *)u + (size_t)(e * I + i) * row,
                   row);
        }
    void *p = panelize(m, n, R, H, dt);
    free(m);
    return p;
}

/* The decode form's two kernels (kt_experts_act, then kt_experts_down) as one call, for thread ith of
 * nth: called for each ith in turn (the runtime's counters are NULL: a static split), or by ex_step on
 * real threads through moert_exec, where the last units are claimed through the runtime's counters,
 * which thread 0 checks are left zero. */
static struct ExCall {
    float *act, *ascr, *y2;
    const float *x, *nw, *resid;
    char *dispatch;
    const void *sh_gate_up, *sgwf, *sdp, *const *xtab;
    int64_t TL, H, I, E, k, C, SI, T;
    float eps;
    int32_t shared_kind, wdt, q8, left_zero, had_ctr;
} g_ex;
static void ex_act(int32_t ith, int32_t nth) {
    const struct ExCall *c = &g_ex;
    kt_experts_act(c->act, c->x, c->nw, c->dispatch, NULL, c->sh_gate_up, c->sgwf, c->ascr, c->xtab, c->TL, c->H, c->I,
                   c->E, c->k, c->C, c->SI, c->shared_kind, c->eps, c->wdt, c->wdt, c->q8, c->T, ith, nth);
}
static void ex_down_call(int32_t ith, int32_t nth) {
    const struct ExCall *c = &g_ex;
    kt_experts_down(c->y2, c->resid, c->dispatch, c->act, NULL, c->sdp, c->xtab, c->TL, c->H, c->I, c->E, c->k, c->C,
                    c->SI, c->shared_kind, c->wdt, c->wdt, c->T, ith, nth);
}
static void ex_step(const MoeStepArgs *a, int32_t ith, int32_t nth) {
    (void)a;
    ex_act(ith, nth);
    moert_barrier();
    ex_down_call(ith, nth);
    moert_barrier();
    counters_after(ith, &g_ex.had_ctr, &g_ex.left_zero);
}

static void t_moe(MoeCase mc) {
    if (g_bf && mc.dt != DT_BF16) return; /* the mode changes bf16 weights only: run once */
    int64_t T = mc.T, H = mc.H, I = mc.I, E = mc.E, k = mc.k, C = mc.C, SI = mc.SI;
    DType dt = mc.dt;
    const int32_t wdt = bf_wdt(dt), bf = kt_bfa(wdt), q = kt_q_scratch_kind(wdt);
    float eps = 1e-5f, *gwf, *gf, *uf, *df, *sgf, *suf, *sdf, *sgwf;
    float *x = randv(T * H, 2, 0), *nw = randv(H, 0.3f, 1), *resid = randv(T * H, 1, 0);
    void *gate_w = randw(E * H, dt, 3.0f / sqrtf((float)(H > 0 ? H : 1)), &gwf); /* logits O(1), no f32 underflow */
    if (mc.ties) {
        size_t row = dtype_size(dt) * (size_t)H;
        memcpy((char *)gate_w + (size_t)(E / 2) * row, gate_w, row);
        memcpy((char *)gate_w + (size_t)(E - 1) * row, gate_w, row);
    }
    void *g = randw(E * I * H, dt, 0.3f, &gf), *u = randw(E * I * H, dt, 0.3f, &uf);
    void *d = randw(E * H * I, dt, 0.3f, &df);
    void *sg = randw(SI * H, dt, 0.3f, &sgf), *su = randw(SI * H, dt, 0.3f, &suf), *sd = randw(H * SI, dt, 0.3f, &sdf);
    void *sg_w = randw(H, DT_F32, 0.5f, &sgwf); /* f32 like every vector (kernels.h) */
    void *gate_up = gate_up_panels(g, u, E, I, H, dt), *sh_gate_up = gate_up_panels(sg, su, 1, SI, H, dt);
    void *dp = panelize(d, E, H, I, dt), *sdp = panelize(sd, 1, H, SI, dt);

    /* reference: rmsnorm, router matmul, ref_router, ref_moe_ffn, shared/dense MLP, residual */
    float *h = zeros(T * H), *r = zeros(T * H), *logits = zeros(T * E), *sgate = zeros(T);
    MoeRoute *routes = malloc(sizeof(MoeRoute) * (size_t)(T * k > 0 ? T * k : 1));
    int64_t dropped = 0, kept[64] = {0};
    ref_rmsnorm(h, x, T, H, nw, H, eps);
    if (E > 0) {
        ref_matmul(logits, h, T, H, gate_w, dt, E, NULL);
        ref_router(routes, logits, T, E, k, mc.renorm);
        ref_moe_ffn(r, h, routes, T, E, k, H, I, gf, uf, df, C, &dropped);
        int64_t dropped_bf = 0; /* the same lists, rounded */
        if (bf) ref_moe_ffn_act_bf16(r, h, routes, T, E, k, H, I, gf, uf, df, C, &dropped_bf);
        for (int64_t i = 0; i < T * k; i++) kept[routes[i].expert]++;
        for (int64_t e = 0; e < E; e++) kept[e] = kept[e] < C ? kept[e] : C;
    }
    if (mc.shared_kind) {
        for (int64_t t = 0; t < T; t++) sgate[t] = 1.0f;
        if (mc.shared_kind == 1) {
            ref_matmul(sgate, h, T, H, sg_w, DT_F32, 1, NULL);
            for (int64_t t = 0; t < T; t++) sgate[t] = (float)(1 / (1 + exp(-(double)sgate[t])));
        }
        ref_dense_mlp(r, h, sgate, T, H, SI, sg, su, sd, dt, bf);
    }
    for (int64_t i = 0; i < T * H; i++) r[i] += resid[i];

    for (int run = 0; run < 6 * (bf ? 1 : n_amx); run++) { /* nth 1..3, again laid out for PAD more rows, per amx */
        int nth = run % 3 + 1, amx = amx_values[run / 6];
        int64_t TL = T + (run % 6 >= 3 ? PAD : 0);
        int64_t spt = kt_experts_scratch(TL, H, I > SI ? I : SI, nth, amx, q);
        char *dispatch = E > 0 ? malloc((size_t)kt_dispatch_bytes(TL, k, E, C)) : NULL;
        int64_t stats[2 * 65] = {0}; /* two slots' [E + 1]: rows alternate between them */
        int32_t *rslot = malloc(sizeof(int32_t) * (size_t)TL);
        for (int64_t t = 0; t < TL; t++) rslot[t] = (int32_t)(t % 2);
        float *y = sentinels(TL * H), *partials = zeros(nth * TL * H), *scratch = zeros(nth * spt);
        if (E > 0) {
            if (run % 2 == 0) /* the decode step's one kernel, or a prefill step's two (routes split) */
                for (int ith = 0; ith < nth; ith++)
                    kt_router(dispatch, x, nw, gate_w, stats, rslot, E + 1, TL, H, E, k, C, eps, mc.renorm, wdt, T, ith,
                              nth);
            else {
                for (int ith = nth - 1; ith >= 0; ith--) /* any order: the threads' rows are disjoint */
                    kt_router_routes(dispatch, x, nw, gate_w, stats, rslot, E + 1, TL, H, E, k, C, eps, mc.renorm, wdt, T,
                                     ith, nth);
                for (int ith = 0; ith < nth; ith++)
                    kt_router_lists(dispatch, x, nw, gate_w, stats, rslot, E + 1, TL, H, E, k, C, eps, mc.renorm, wdt, T,
                                    ith, nth);
            }
            const MoeRoute *kr = (const MoeRoute *)dispatch;
            const int32_t *count = (const int32_t *)(dispatch + 8 * TL * k), *tok = count + E;
            int ids_ok = 1, wts_ok = 1, lists_ok = 1;
            for (int64_t i = 0; i < T * k; i++) {
                ids_ok &= kr[i].expert == routes[i].expert;
                wts_ok &= fabsf(kr[i].weight - routes[i].weight) <= 1e-5f;
            }
            int64_t used[64] = {0}, want_stats[2 * 65] = {0}; /* kept per expert, then dropped, per slot */
            for (int64_t i = 0; i < T * k; i++) {
                int64_t e = routes[i].expert, *ws = want_stats + (i / k % 2) * (E + 1);
                if (used[e] < C) lists_ok &= tok[e * C + used[e]] == (int32_t)(i / k);
                ws[used[e] < C ? e : E]++;
                used[e]++;
            }
            EXPECT_TRUE(ids_ok);
            EXPECT_TRUE(wts_ok);
            EXPECT_TRUE(lists_ok);
            for (int64_t e = 0; e < E; e++) {
                EXPECT_EQ(count[e], kept[e]);
                EXPECT_EQ(stats[e] + stats[E + 1 + e], kept[e]);
            }
            EXPECT_EQ(stats[E] + stats[2 * E + 1], dropped);
            for (int64_t i = 0; i < 2 * (E + 1); i++) EXPECT_EQ(stats[i], want_stats[i]);
        }
        for (int ith = 0; ith < nth; ith++)
            kt_experts(partials, x, nw, dispatch, gate_up, dp, sh_gate_up, sdp, sgwf, scratch, NULL, TL, H, I, E, k, C, SI,
                       mc.shared_kind, eps, spt, wdt, wdt, wdt, wdt, amx, T, ith, nth);
        for (int ith = 0; ith < nth; ith++) kt_reduce(y, resid, partials, TL, H, T, ith, nth);
        nmse_tol_ok(y, r, T * H, amx ? "moe (amx)" : mc.name, nth, amx_tol(amx));
        if (amx && !(test_nmse(y, r, (size_t)(T * H)) <= amx_tol(amx)))
            fprintf(stderr, "  that is: %s, %d planes\n", mc.name, amx);
        if (!amx) { /* the decode form: act, then down, the same sums; the experts through a table */
            /* bf16 mode: both downs take converted rows (fuse.c's q8), the h rows converted too */
            const int32_t q8 = bf ? (E > 0 ? 1 : 0) | (mc.shared_kind ? 2 : 0) | KT_ACT_BF16 : 0;
            float *act = zeros(kt_experts_act_floats(TL, E, C, I, SI, q8));
            float *ascr = zeros(nth * kt_experts_act_scratch(TL, H, bf));
            float *y2 = sentinels(TL * H);
            const void *xtab[2 * 64];
            const int64_t esz = dt == 2 ? 2 : 4;
            for (int64_t e = 0; e < E; e++) {
                xtab[e] = (const char *)gate_up + e * kt_panel_elems(kt_round16(I) * 2, H) * esz;
                xtab[E + e] = (const char *)dp + e * kt_panel_elems(H, I) * esz;
            }
            for (int real = 0; real <= (nth > 1); real++) { /* threads in turn, then real ones (claimed tail) */
                g_ex = (struct ExCall){act, ascr, y2, x, nw, resid, dispatch, sh_gate_up, sgwf, sdp,
                                       E > 0 ? xtab : NULL, TL, H, I, E, k, C, SI, T, eps, mc.shared_kind, wdt, q8, 0, 0};
                if (real) {
                    MoeStepArgs args = {0};
                    moert_exec(ex_step, &args, nth);
                    EXPECT_TRUE(g_ex.had_ctr && g_ex.left_zero); /* zero again for the next kernel */
                } else {
                    for (int ith = 0; ith < nth; ith++) ex_act(ith, nth);
                    for (int ith = 0; ith < nth; ith++) ex_down_call(ith, nth);
                }
                nmse_ok(y2, r, T * H, real ? "moe decode form (threads)" : "moe decode form", nth);
                if (!(test_nmse(y2, r, (size_t)(T * H)) <= NMSE_TOL)) fprintf(stderr, "  that is: %s\n", mc.name);
                sentinels_ok(y2, T * H, TL * H, "moe decode form");
                fill_sentinels(y2, TL * H); /* and act zero again: the next run must write all of it */
                memset(act, 0, sizeof(float) * (size_t)kt_experts_act_floats(TL, E, C, I, SI, q8));
            }
            free(act), free(ascr), free(y2);
        }
        sentinels_ok(y, T * H, TL * H, mc.name);
        free(dispatch), free(y), free(partials), free(scratch), free(rslot);
    }
    if (C < T * k && E > 0 && T * k > E * C) EXPECT_TRUE(dropped > 0);
    free(x), free(nw), free(resid), free(gate_w), free(gwf), free(g), free(gf), free(u), free(uf), free(d), free(df);
    free(sg), free(sgf), free(su), free(suf), free(sd), free(sdf), free(sg_w), free(sgwf), free(gate_up);
    free(sh_gate_up), free(dp), free(sdp), free(h), free(r), free(logits), free(sgate), free(routes);
}

/* ---- kt_embed ---- */

static void t_embed(DType dt, int64_t T, int64_t H) {
    float *tf;
    void *table = randw(50 * H, dt, 1, &tf);
    int32_t ids[8] = {3, 0, 49, 3, 17, 8, 44, 1};
    float *r = zeros(T * H);
    ref_embed(r, ids, T, table, dt, H);
    for (int run = 0; run < 6; run++) { /* nth 1..3, then again laid out for PAD more rows */
        int nth = run % 3 + 1;
        int64_t TL = T + (run >= 3 ? PAD : 0);
        float *y = sentinels(TL * H);
        for (int ith = 0; ith < nth; ith++) kt_embed(y, ids, table, TL, H, dt, T, ith, nth);
        EXPECT_TRUE(memcmp(y, r, sizeof(float) * (size_t)(T * H)) == 0);
        sentinels_ok(y, T * H, TL * H, "embed");
        free(y);
    }
    free(table), free(tf), free(r);
}

/* ---- kt_amx_pack: the three bf16 planes add up to the f32 value exactly ---- */

static void t_amx_split(void) {
    enum { M = 21, K = 70 }; /* 2 groups (the second partial), 3 K steps (the last partial) */
    float *x = zeros(M * K);
    for (int64_t i = 0; i < M * K; i++) x[i] = ldexpf(frand(), (int)(i % 61) - 30); /* 2^-31 .. 2^30 */
    x[5] = 0.0f, x[6] = -1.0f / 3.0f, x[7] = 16777215.0f, x[8] = 1.17549435e-38f * 3.0f;
    uint16_t *a = calloc((size_t)kt_amx_pack_bytes(32, K), 1);
    kt_amx_pack(a, x, K, NULL, 0, M, K, 3);
    int exact = 1, zero_pad = 1;
    for (int64_t g = 0; g < 2; g++)
        for (int64_t t = 0; t < 16; t++)
            for (int64_t col = 0; col < kt_amx_steps(K) * 32; col++) {
                const uint16_t *d = a + g * kt_amx_group_elems(K, 3) + ((col / 32) * 3 * 16 + t) * 32 + col % 32;
                double sum = (double)kt_bf16(d[0]) + kt_bf16(d[512]) + kt_bf16(d[1024]);
                int64_t r = g * 16 + t;
                if (r < M && col < K) exact &= sum == (double)x[r * K + col];
                else zero_pad &= d[0] == 0 && d[512] == 0 && d[1024] == 0;
            }
    EXPECT_TRUE(exact);
    EXPECT_TRUE(zero_pad);
    free(x), free(a);
}

/* kt_bf_row: each half of each word is the twin's bf16 of its column, bit for bit (ties to even:
 * 1 + 2^-8 goes down to 1, 1 + 3 2^-8 up to 1 + 2^-6; and random values); an odd K's last word has a
 * zero high half; only the words of [c0, c1) are written. */
static void t_bf_row(void) {
    enum { K = 67 };
    float x[K];
    for (int c = 0; c < K; c++) x[c] = frand() * (c % 7 == 3 ? 300.0f : 1.0f);
    x[0] = 1.0f + 0x1p-8f, x[1] = 1.0f + 3 * 0x1p-8f, x[2] = -(1.0f + 0x1p-8f), x[3] = 0x1.fffffep0f;
    uint32_t w[40];
    for (int i = 0; i < 40; i++) w[i] = 0xdeadbeefu;
    kt_bf_row(w, x, 0, K, K);
    int ok = 1;
    for (int c = 0; c < K; c++) {
        uint32_t u = (c % 2 ? w[c / 2] & 0xffff0000u : w[c / 2] << 16);
        float got;
        memcpy(&got, &u, 4);
        ok &= got == ref_round_bf16(x[c]);
    }
    EXPECT_TRUE(ok);
    EXPECT_EQ(w[K / 2] >> 16, 0u);
    EXPECT_EQ(w[K / 2 + 1], 0xdeadbeefu);
    EXPECT_EQ(w[0] & 0xffffu, 0x3f80u);     /* 1 + 2^-8: a tie, down to the even 1 */
    EXPECT_EQ(w[0] >> 16, 0x3f82u);         /* 1 + 3 2^-8: a tie, up to the even 1 + 2^-6 */
    uint32_t v[40];
    for (int i = 0; i < 40; i++) v[i] = 0xdeadbeefu;
    kt_bf_row(v, x, 32, 64, K); /* one thread's unit: words 16-31 */
    EXPECT_EQ(v[15], 0xdeadbeefu);
    EXPECT_EQ(v[32], 0xdeadbeefu);
    EXPECT_TRUE(memcmp(v + 16, w + 16, 16 * 4) == 0);
}

/* Every case runs once per bf16 activation mode (main); f32 cases only in the exact one. */
static void matmul_cases(void) {
    /*            T    K    N   dt       norm bias resid */
    t_norm_matmul(1, 64, 96, DT_BF16, 1, 0, 1);   /* decode */
    t_norm_matmul(5, 37, 23, DT_F32, 1, 1, 1);    /* ragged */
    t_norm_matmul(9, 128, 40, DT_BF16, 0, 1, 0);  /* prefill, no norm */
    t_norm_matmul(8, 48, 13, DT_F32, 1, 0, 0);    /* full token blocks, ragged rows */
    t_norm_matmul(3, 16, 2, DT_BF16, 0, 0, 1);    /* fewer rows than threads */
    t_norm_matmul(11, 40000, 6, DT_BF16, 1, 1, 1);/* K so long that a token chunk is 8 tokens */
    t_norm_matmul(31, 67, 70, DT_BF16, 1, 1, 1);  /* tiles of 8 and a tail of 7 tokens, odd K, 3 blocks */
    t_norm_matmul(15, 66, 64, DT_F32, 1, 0, 1);   /* tiles of 8 and a tail of 7 tokens, full blocks */
    t_norm_matmul(40, 96, 70, DT_BF16, 1, 1, 1);  /* amx: 2 + 1 groups (the last partial), ragged blocks */
    t_norm_matmul(100, 2100, 40, DT_BF16, 0, 0, 1);/* amx: chunks of 32 tokens, the last of 4; K % 32 != 0 */
}

static void moe_cases(void) {
    /*              T   H   I   E  k  C  SI kind renorm dt                        ties */
    t_moe((MoeCase){1, 64, 48, 8, 2, 1, 0, 0, 1, DT_BF16, "moe decode (mixtral)", 0});
    t_moe((MoeCase){5, 37, 23, 6, 2, 5, 0, 0, 0, DT_F32, "moe ragged", 0});
    t_moe((MoeCase){9, 32, 16, 4, 1, 9, 0, 0, 0, DT_BF16, "moe top_k 1", 0});
    t_moe((MoeCase){16, 32, 24, 4, 2, 5, 0, 0, 1, DT_F32, "moe capacity drops", 0});
    t_moe((MoeCase){6, 40, 12, 6, 4, 6, 20, 1, 0, DT_BF16, "moe qwen2 shared", 0});
    t_moe((MoeCase){1, 40, 12, 6, 4, 1, 20, 1, 0, DT_F32, "moe qwen2 shared decode", 0});
    t_moe((MoeCase){3, 36, 0, 0, 0, 0, 50, 2, 0, DT_F32, "dense layer", 0});
    t_moe((MoeCase){1, 48, 0, 0, 0, 0, 33, 2, 0, DT_BF16, "dense layer decode", 0});
    t_moe((MoeCase){9, 33, 0, 0, 0, 0, 37, 2, 0, DT_BF16, "dense layer prefill, ragged", 0});
    t_moe((MoeCase){12, 20, 21, 2, 2, 12, 0, 0, 1, DT_F32, "moe every expert full", 0});
    t_moe((MoeCase){11, 36000, 5, 3, 2, 11, 0, 0, 1, DT_BF16, "moe long rows: token chunks of 4", 0});
    t_moe((MoeCase){13, 8, 40000, 2, 1, 13, 0, 0, 0, DT_BF16, "moe long slices: down chunks", 0});
    t_moe((MoeCase){47, 70, 50, 4, 2, 47, 0, 0, 1, DT_BF16, "moe token tiles of 8 and a tail of 7", 0});
    t_moe((MoeCase){29, 64, 33, 3, 2, 29, 40, 1, 0, DT_F32, "moe f32 tiles, odd I, shared", 0});
    t_moe((MoeCase){2, 24, 2, 16, 8, 2, 0, 0, 1, DT_BF16, "moe qwen3-like, I < nth", 0});
    /* short lists over many experts: whole experts per thread (moe.c's ex_whole_experts) */
    t_moe((MoeCase){40, 64, 50, 16, 4, 40, 0, 0, 1, DT_BF16, "moe whole experts per thread, odd I", 0});
    t_moe((MoeCase){33, 48, 24, 16, 2, 33, 20, 1, 0, DT_F32, "moe whole experts per thread, shared", 0});
    t_moe((MoeCase){4, 16, 8, 6, 3, 4, 0, 0, 1, DT_F32, "moe router ties", 1});
    t_moe((MoeCase){70, 64, 96, 4, 2, 70, 40, 1, 1, DT_BF16, "moe amx groups, shared of 3 blocks", 0});
    t_moe((MoeCase){37, 72, 50, 8, 2, 37, 0, 0, 0, DT_BF16, "moe amx and fma experts, odd I", 0});
    t_moe((MoeCase){40, 64, 96, 4, 2, 12, 0, 0, 1, DT_BF16, "moe amx with capacity drops", 0});
}

int main(void) {
    char why[160];
    if (moert_enable_amx(why, sizeof why)) n_amx = 4;
    else fprintf(stderr, "note: the AMX runs of the matmul kernels are skipped: %s\n", why);
    t_amx_split();

    /*         T  nh nkv hd  pos0 qk_norm clip */
    t_qkv_rope(1, 4, 2, 16, 9, 0, 0);             /* decode, GQA */
    t_qkv_rope(5, 4, 1, 8, 3, 1, 0);              /* prefill at pos0 > 0, per-head norm (qwen3) */
    t_qkv_rope(4, 3, 3, 6, 0, 2, 0.8f);           /* ragged, whole-row norm + clip (olmoe) */
    t_qkv_rope(1, 2, 2, 32, 40, 2, 0.5f);         /* decode, olmoe */
    t_qkv_rope(3, 4, 2, 10, 6, 0, 1.0f);          /* clip without norm */

    /*          T  nh nkv hd pos0 window */
    t_attention(1, 4, 2, 16, 9, 0);               /* decode */
    t_attention(5, 4, 1, 8, 70, 0);               /* prefill at pos0 > 0, MQA, several key blocks */
    t_attention(7, 3, 3, 6, 0, 0);                /* ragged, first prompt */
    t_attention(6, 4, 2, 16, 60, 37);             /* window across key blocks */
    t_attention(1, 2, 1, 32, 100, 5);             /* decode, small window */
    t_attention(2, 16, 2, 64, 300, 0);            /* groups of 8 heads, many key blocks */
    t_attention(1, 20, 2, 16, 50, 0);             /* groups of 10: more than one pass of heads */
    t_attention(1, 12, 1, 16, 40, 0);             /* one kv head: groups split between threads */
    t_attention_slots(4, 4, 2, 16, 0);            /* batch decode: 3 live slots of 4, own positions */
    t_attention_slots(8, 8, 8, 8, 20);            /* 7 of 8 slots, windowed */

    t_exp();

    t_bf_row();
    __builtin_cpu_init();
    const int32_t bf_modes[3] = {0, KT_ACT_BF16, KT_ACT_BF16 | KT_DP_BF16};
    for (g_tgt = 0; g_tgt <= KT_NARROW; g_tgt += KT_NARROW)
        for (int m = 0; m < (__builtin_cpu_supports("avx512bf16") ? 3 : 2); m++) {
            g_bf = bf_modes[m];
            matmul_cases();
            moe_cases();
        }
    g_bf = g_tgt = 0;

    t_embed(DT_BF16, 5, 24);
    t_embed(DT_F32, 8, 37);
    t_embed(DT_BF16, 1, 16);
    return test_done();
}
