/* kld: the numbers `moec kld` reports, from two models' logits over the same tokens: the KL
 * divergence KL(P_ref || P_quant) of the quantised model's next-token distribution from the
 * reference's, top-1 agreement, and each model's negative log-likelihood of the actual next token
 * (perplexity = exp(mean NLL)), as llama-perplexity --kl-divergence computes them. Everything in
 * double, in nats, from f32 logits through a max-shifted log-softmax. KldStats owns one malloc'd
 * array (the KL of every position, for the percentiles); kld_stats_free releases it. */
#ifndef MOEC_KLD_H
#define MOEC_KLD_H
#include <stdbool.h>
#include <stdint.h>

/* One scored position. */
typedef struct KldRow {
    double kl;                /* sum_i p_ref[i] * (log p_ref[i] - log p_quant[i]) */
    double nll_ref, nll_quant; /* -log p(next) under each model (0 when next < 0) */
    bool same_top1;           /* the argmaxes (first index of the maximum) are equal */
} KldRow;

typedef struct KldStats {
    int64_t n, cap;           /* positions added; capacity of kl */
    double *kl;               /* [n] per-position KL, malloc'd */
    double sum_kl, sum_kl2, sum_nll_ref, sum_nll_quant;
    int64_t same_top1;
} KldStats;

typedef struct KldSummary {
    int64_t n;                /* positions */
    double kl_mean, kl_se;    /* mean and its standard error (0 for n < 2) */
    double kl_median, kl_p99, kl_max;
    double top1;              /* share of positions with the same argmax */
    double nll_ref, nll_quant; /* mean NLL of the actual next token */
    double ppl_ref, ppl_quant; /* exp(mean NLL) */
} KldSummary;

/* log(sum_i exp(x[i])) over x[0..V), shifted by the maximum, in double. */
double kld_logsumexp(const float *x, int64_t V);
/* The position whose logits are ref[V] and quant[V]; next is the actual next token (< 0: none). */
KldRow kld_row(const float *ref, const float *quant, int64_t V, int32_t next);
/* Appends r to s (grows s->kl; aborts when memory runs out). */
void kld_stats_add(KldStats *s, KldRow r);
void kld_stats_free(KldStats *s);
/* Means, standard error, percentiles (sorts s->kl in place), top-1 share and perplexities. */
KldSummary kld_summarize(KldStats *s);
/* The p-quantile (0 <= p <= 1) of sorted[0..n), interpolated linearly between the two nearest
 * ranks as llama-perplexity does: position p * (n - 1). 0 when n == 0. */
double kld_percentile(const double *sorted, int64_t n, double p);

#endif
