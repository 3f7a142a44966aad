/* test_kld: the KL / top-1 / perplexity arithmetic of compiler/kld.c on hand-made logits whose
 * values are derived by hand (in the comments). */
#include <math.h>

#include "kld.h"
#include "test.h"

int main(void) {
    /* identical logits: every term is exactly 0 */
    {
        float x[5] = {0.5f, -2, 7, 3.25f, 7};
        KldRow r = kld_row(x, x, 5, 3);
        EXPECT_TRUE(r.kl == 0);
        EXPECT_TRUE(r.same_top1);
        EXPECT_NEAR(r.nll_ref, r.nll_quant, 0);
    }
    /* p = (1/2, 1/2), q = softmax(ln 3, 0) = (3/4, 1/4):
     * KL = 1/2 ln((1/2)/(3/4)) + 1/2 ln((1/2)/(1/4)) = 1/2 ln(4/3); next = 1: NLL ln 2 and ln 4;
     * argmax of p is 0 (the first of a tie), of q 0 */
    {
        float p[2] = {0, 0}, q[2] = {(float)log(3.0), 0};
        KldRow r = kld_row(p, q, 2, 1);
        EXPECT_NEAR(r.kl, 0.5 * log(4.0 / 3.0), 1e-7);
        EXPECT_NEAR(r.nll_ref, log(2.0), 1e-12);
        EXPECT_NEAR(r.nll_quant, log(4.0), 1e-7);
        EXPECT_TRUE(r.same_top1);
    }
    /* p = (1/4, 1/4, 1/4, 1/4), q = softmax(ln 2, 0, 0, 0) = (2/5, 1/5, 1/5, 1/5):
     * KL = 1/4 ln(5/8) + 3/4 ln(5/4) */
    {
        float p[4] = {0, 0, 0, 0}, q[4] = {(float)log(2.0), 0, 0, 0};
        EXPECT_NEAR(kld_row(p, q, 4, -1).kl, 0.25 * log(5.0 / 8) + 0.75 * log(5.0 / 4), 1e-7);
        EXPECT_NEAR(kld_row(p, q, 4, -1).nll_ref, 0, 0); /* no next token: no NLL */
    }
    /* swapped: p = softmax(1, 0) = (s, 1 - s) with s = sigma(1), q = (1 - s, s):
     * KL = (2s - 1) * ln(s / (1 - s)) = (2s - 1) * 1 = tanh(1/2); the argmaxes differ */
    {
        float p[2] = {1, 0}, q[2] = {0, 1};
        KldRow r = kld_row(p, q, 2, 0);
        EXPECT_NEAR(r.kl, tanh(0.5), 1e-12);
        EXPECT_TRUE(!r.same_top1);
        EXPECT_NEAR(r.nll_ref, log(1 + exp(-1.0)), 1e-12);
        EXPECT_NEAR(r.nll_quant, 1 + log(1 + exp(-1.0)), 1e-12);
    }
    /* numerically stable: logits near 1e4 (exp would overflow in float and double) give the
     * shifted answer. p = (1/2, 1/2), q = softmax(0, -1):
     * KL = -ln 2 - 1/2 (ln q0 + ln q1) = -ln 2 + ln(1 + e^-1) + 1/2 */
    {
        float p[2] = {10000, 10000}, q[2] = {10000, 9999};
        KldRow r = kld_row(p, q, 2, 1);
        EXPECT_NEAR(r.kl, -log(2.0) + log(1 + exp(-1.0)) + 0.5, 1e-12);
        EXPECT_TRUE(isfinite(r.nll_quant));
        EXPECT_NEAR(r.nll_quant, 1 + log(1 + exp(-1.0)), 1e-12);
        EXPECT_NEAR(kld_logsumexp(p, 2), 10000 + log(2.0), 1e-9);
    }
    /* percentiles: linear between the nearest ranks at p * (n - 1) */
    {
        double v[10];
        for (int i = 0; i < 10; i++) v[i] = i;
        EXPECT_NEAR(kld_percentile(v, 10, 0.99), 8.91, 1e-12);
        EXPECT_NEAR(kld_percentile(v, 10, 0.5), 4.5, 1e-12);
        EXPECT_NEAR(kld_percentile(v, 10, 1), 9, 0);
        EXPECT_NEAR(kld_percentile(v, 1, 0.99), 0, 0);
        EXPECT_NEAR(kld_percentile(v, 0, 0.5), 0, 0);
    }
    /* the summary of the (1/2,1/2) vs (3/4,1/4) row and the swapped row:
     * mean KL = (1/2 ln(4/3) + tanh(1/2)) / 2, top-1 1 of 2, PPL_ref = exp((ln 2 + ln(1 + e^-1)) / 2),
     * PPL_quant = exp((ln 4 + 1 + ln(1 + e^-1)) / 2) */
    {
        KldStats s = {0};
        float p1[2] = {0, 0}, q1[2] = {(float)log(3.0), 0}, p2[2] = {1, 0}, q2[2] = {0, 1};
        kld_stats_add(&s, kld_row(p2, q2, 2, 0));
        kld_stats_add(&s, kld_row(p1, q1, 2, 1));
        KldSummary m = kld_summarize(&s);
        double a = 0.5 * log(4.0 / 3.0), b = tanh(0.5);
        EXPECT_EQ(m.n, 2);
        EXPECT_NEAR(m.kl_mean, (a + b) / 2, 1e-7);
        EXPECT_NEAR(m.kl_max, b, 1e-12);
        EXPECT_NEAR(m.kl_median, (a + b) / 2, 1e-7);
        EXPECT_NEAR(m.kl_p99, a + 0.99 * (b - a), 1e-7);
        EXPECT_NEAR(m.kl_se, (b - a) / 2, 1e-7); /* sd of two values = |b - a| / sqrt 2, over sqrt 2 */
        EXPECT_NEAR(m.top1, 0.5, 0);
        EXPECT_NEAR(m.ppl_ref, exp((log(2.0) + log(1 + exp(-1.0))) / 2), 1e-9);
        EXPECT_NEAR(m.ppl_quant, exp((log(4.0) + 1 + log(1 + exp(-1.0))) / 2), 1e-6);
        kld_stats_free(&s);
    }
    /* many positions: the buffer grows past its first capacity */
    {
        KldStats s = {0};
        float x[3] = {1, 2, 3};
        for (int i = 0; i < 3000; i++) kld_stats_add(&s, kld_row(x, x, 3, 2));
        KldSummary m = kld_summarize(&s);
        EXPECT_EQ(m.n, 3000);
        EXPECT_NEAR(m.kl_mean, 0, 0);
        EXPECT_NEAR(m.top1, 1, 0);
        EXPECT_NEAR(m.ppl_ref, m.ppl_quant, 0);
        kld_stats_free(&s);
    }
    return test_done();
}
