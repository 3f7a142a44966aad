/* kld: KL divergence, top-1 agreement and perplexity from two models' logits (kld.h). */
#include "kld.h"

#include <math.h>
#include <stdlib.h>

#include "arena.h"

double kld_logsumexp(const float *x, int64_t V) {
    double mx = -INFINITY, s = 0;
    for (int64_t i = 0; i < V; i++)
        if (x[i] > mx) mx = x[i];
    for (int64_t i = 0; i < V; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

static int64_t argmax(const float *x, int64_t V) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

KldRow kld_row(const float *ref, const float *quant, int64_t V, int32_t next) {
    double lse_r = kld_logsumexp(ref, V), lse_q = kld_logsumexp(quant, V), kl = 0;
    for (int64_t i = 0; i < V; i++) {
        double lp_r = (double)ref[i] - lse_r, lp_q = (double)quant[i] - lse_q, p = exp(lp_r);
        if (p > 0) kl += p * (lp_r - lp_q); /* p == 0: the term is 0 whatever log p_quant is */
    }
    KldRow r = {.kl = kl, .same_top1 = argmax(ref, V) == argmax(quant, V)};
    if (next >= 0) {
        r.nll_ref = lse_r - (double)ref[next];
        r.nll_quant = lse_q - (double)quant[next];
    }
    return r;
}

void kld_stats_add(KldStats *s, KldRow r) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->kl = xrealloc(s->kl, sizeof(double) * (size_t)s->cap);
    }
    s->kl[s->n++] = r.kl;
    s->sum_kl += r.kl;
    s->sum_kl2 += r.kl * r.kl;
    s->sum_nll_ref += r.nll_ref;
    s->sum_nll_quant += r.nll_quant;
    s->same_top1 += r.same_top1;
}

void kld_stats_free(KldStats *s) {
    free(s->kl);
    *s = (KldStats){0};
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double kld_percentile(const double *sorted, int64_t n, double p) {
    if (n == 0) return 0;
    if (p <= 0) return sorted[0];
    if (p >= 1) return sorted[n - 1];
    double pos = p * (double)(n - 1), frac = pos - floor(pos);
    int64_t i = (int64_t)pos, j = i + 1 < n ? i + 1 : n - 1;
    return (1 - frac) * sorted[i] + frac * sorted[j];
}

KldSummary kld_summarize(KldStats *s) {
    KldSummary m = {.n = s->n};
    if (s->n == 0) return m;
    double n = (double)s->n;
    qsort(s->kl, (size_t)s->n, sizeof(double), cmp_double);
    m.kl_mean = s->sum_kl / n;
    if (s->n > 1) {
        double var = (s->sum_kl2 - n * m.kl_mean * m.kl_mean) / (n - 1);
        m.kl_se = var > 0 ? sqrt(var / n) : 0;
    }
    m.kl_median = kld_percentile(s->kl, s->n, 0.5);
    m.kl_p99 = kld_percentile(s->kl, s->n, 0.99);
    m.kl_max = s->kl[s->n - 1];
    m.top1 = (double)s->same_top1 / n;
    m.nll_ref = s->sum_nll_ref / n;
    m.nll_quant = s->sum_nll_quant / n;
    m.ppl_ref = exp(m.nll_ref);
    m.ppl_quant = exp(m.nll_quant);
    return m;
}
