/* sampler: temperature, top-k, top-p, draw (see sampler.h). Top-k keeps a min-heap of the k best
 * candidates (O(V log k)); top-p sorts only the candidates that can be in the nucleus: with n
 * candidates, any one whose probability is below (1 - top_p) / (n - 1) cannot be (llama2.c's
 * trick), as long as the most probable one is always kept. */
#include "sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

size_t moe_sampler_scratch_bytes(int64_t vocab) { return sizeof(MoeSamplerCand) * (size_t)(vocab > 0 ? vocab : 1); }

void moe_sampler_init(MoeSampler *s, int64_t vocab, double temp, int64_t top_k, double top_p, uint64_t seed,
                      void *scratch) {
    s->vocab = vocab;
    s->temp = temp;
    s->top_k = top_k;
    s->top_p = top_p;
    s->state = seed;
    s->cand = scratch;
}

double moe_sampler_uniform(MoeSampler *s) {
    uint64_t z = (s->state += 0x9e3779b97f4a7c15ull); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

int32_t moe_sampler_argmax(const float *v, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return (int32_t)best;
}

/* a ranks before b: higher logit, then lower id. */
static bool better(float la, int32_t a, float lb, int32_t b) { return la > lb || (la == lb && a < b); }

/* Min-heap on "better": the worst kept candidate at the root. w holds the logit while selecting. */
static void sift_down(MoeSamplerCand *h, int64_t n, int64_t i) {
    for (;;) {
        int64_t c = 2 * i + 1, worst = i;
        if (c < n && better((float)h[worst].w, h[worst].id, (float)h[c].w, h[c].id)) worst = c;
        if (c + 1 < n && better((float)h[worst].w, h[worst].id, (float)h[c + 1].w, h[c + 1].id)) worst = c + 1;
        if (worst == i) return;
        MoeSamplerCand t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

/* Higher w first, then lower id: a total order, so qsort's result is fixed. */
static int by_w_desc(const void *pa, const void *pb) {
    const MoeSamplerCand *a = pa, *b = pb;
    if (a->w != b->w) return a->w > b->w ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

int32_t moe_sampler_sample(MoeSampler *s, const float *logits) {
    const int64_t V = s->vocab;
    if (s->temp <= 0 || s->top_k == 1 || V == 1) return moe_sampler_argmax(logits, V);
    MoeSamplerCand *c = s->cand;
    int64_t n = 0;
    bool sorted = false;
    if (s->top_k > 1 && s->top_k < V) { /* top-k: heap of the k best, then sorted best first */
        const int64_t k = s->top_k;
        for (int64_t i = 0; i < V; i++) {
            MoeSamplerCand x = {(int32_t)i, logits[i]};
            if (n < k) {
                c[n++] = x;
                if (n == k)
                    for (int64_t j = k / 2 - 1; j >= 0; j--) sift_down(c, k, j);
            } else if (better(logits[i], (int32_t)i, (float)c[0].w, c[0].id)) {
                c[0] = x;
                sift_down(c, k, 0);
            }
        }
        for (int64_t end = n - 1; end > 0; end--) { /* heap sort: worst to the back */
            MoeSamplerCand t = c[0];
            c[0] = c[end];
            c[end] = t;
            sift_down(c, end, 0);
        }
        sorted = true;
    } else {
        for (int64_t i = 0; i < V; i++) c[n++] = (MoeSamplerCand){(int32_t)i, logits[i]};
    }
    /* temperature and softmax weights, relative to the best logit */
    double mx = -INFINITY, sum = 0;
    for (int64_t i = 0; i < n; i++)
        if (c[i].w > mx) mx = c[i].w;
    for (int64_t i = 0; i < n; i++) sum += (c[i].w = exp((c[i].w - mx) / s->temp));
    if (s->top_p < 1 && n > 1) {
        if (!sorted) { /* drop what cannot be in the nucleus, keeping the best (w == 1) */
            double cutoff = (1 - s->top_p) / (double)(n - 1) * sum;
            int64_t kept = 0;
            for (int64_t i = 0; i < n; i++)
                if (c[i].w >= cutoff || c[i].w >= 1) c[kept++] = c[i];
            n = kept;
            qsort(c, (size_t)n, sizeof *c, by_w_desc);
        }
        double target = s->top_p * sum, cum = 0;
        int64_t i = 0;
        do cum += c[i++].w;
        while (i < n && cum < target);
        n = i;
        sum = cum;
    }
    double r = moe_sampler_uniform(s) * sum, acc = 0;
    for (int64_t i = 0; i < n; i++)
        if (r < (acc += c[i].w)) return c[i].id;
    return c[n - 1].id; /* r rounded up to sum */
}
