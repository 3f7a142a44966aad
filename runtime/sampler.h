/* sampler: picks the next token from a row of logits, in this order: temperature (temp <= 0 is
 * greedy), then top-k (keep the k highest logits), then top-p (keep the fewest most probable tokens
 * whose probability sums to >= top_p), then a draw from what is left in proportion to softmax.
 * Ties go to the lower token id. Its own PRNG (splitmix64) makes a seed give the same draws on
 * every machine. The caller owns the scratch (moe_sampler_scratch_bytes); no call allocates. */
#ifndef MOE_SAMPLER_H
#define MOE_SAMPLER_H
#include <stddef.h>
#include <stdint.h>

typedef struct MoeSamplerCand {
    int32_t id;
    double w;                /* exp((logit - max) / temp) */
} MoeSamplerCand;

typedef struct MoeSampler {
    int64_t vocab;
    double temp;             /* <= 0: greedy */
    int64_t top_k;           /* <= 0 or >= vocab: off; 1: greedy */
    double top_p;            /* >= 1: off */
    uint64_t state;          /* PRNG */
    MoeSamplerCand *cand;    /* [vocab] scratch */
} MoeSampler;

/* Bytes of scratch a sampler over vocab tokens needs (aligned like malloc's). */
size_t moe_sampler_scratch_bytes(int64_t vocab);
/* Sets up s; scratch (moe_sampler_scratch_bytes(vocab), suitably aligned) lives as long as s. */
void moe_sampler_init(MoeSampler *s, int64_t vocab, double temp, int64_t top_k, double top_p, uint64_t seed,
                      void *scratch);
/* The next token for logits [vocab]; advances the PRNG only when it draws. */
int32_t moe_sampler_sample(MoeSampler *s, const float *logits);
/* The first index of the largest of v[n] (greedy decoding, as `moec run`). */
int32_t moe_sampler_argmax(const float *v, int64_t n);
/* A uniform double in [0, 1) from s's PRNG. */
double moe_sampler_uniform(MoeSampler *s);

#endif
