/* batchgen: continuous batching over an engine's slots (batchgen.h). */
#include "batchgen.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outfile.h"
#include "sampler.h"
#include "textio.h"

/* Takes the next token of seq from logits; true when seq has ended. */
static bool take(MoeGenSeq *q, MoeSampler *s, const float *logits, const MoeGenParams *p) {
    int32_t id = moe_sampler_sample(s, logits);
    q->out[q->n_out++] = id;
    return q->n_out >= p->n_gen || (p->stop_at_eos && id == p->eos);
}

bool moe_batch_generate(const MoeGenEngine *e, MoeGenSeq *seqs, int n_seqs, const MoeGenParams *p, MoeGenStats *st,
                        char *err, size_t errlen) {
    const int B = e->slots;
    const size_t sb = moe_sampler_scratch_bytes(e->vocab);
    int *seq_of = malloc(sizeof(int) * (size_t)B);            /* [B] the sequence a slot runs, -1: free */
    int *slots = malloc(sizeof(int) * (size_t)B);             /* [B] a decode step's slots */
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)B);       /* [B] a decode step's ids */
    const float **lg = malloc(sizeof(float *) * (size_t)B);   /* [B] its logits */
    MoeSampler *smp = malloc(sizeof(MoeSampler) * (size_t)B); /* [B] per slot */
    char *scratch = malloc(sb * (size_t)B);
    MoeGenStats g = {0};
    bool ok = seq_of && slots && ids && lg && smp && scratch;
    if (!ok) snprintf(err, errlen, "batch generation: out of memory");
    for (int s = 0; ok && s < B; s++) seq_of[s] = -1;
    for (int i = 0; i < n_seqs; i++) seqs[i].n_out = 0;
    int next = 0, live = 0;
    while (ok) {
        /* admit waiting prompts into free slots: prefill, then their first token */
        while (ok && next < n_seqs && live < B) {
            int s;
            if (!(ok = e->start(e->user, &s, err, errlen))) break;
            MoeGenSeq *q = &seqs[next];
            seq_of[s] = next++;
            live++;
            moe_sampler_init(&smp[s], e->vocab, p->temp, p->top_k, p->top_p, p->seed, scratch + (size_t)s * sb);
            const float *logits;
            double t0 = moe_now_s();
            if (!(ok = e->prefill(e->user, s, q->prompt, q->n_prompt, &logits, err, errlen))) break;
            g.prefill_s += moe_now_s() - t0;
            g.prefill_tokens += q->n_prompt;
            if (take(q, &smp[s], logits, p)) {
                e->finish(e->user, s, seq_of[s]);
                seq_of[s] = -1;
                live--;
            }
        }
        if (!ok || live == 0) break;
        /* one decode step over every live slot, in slot order */
        int n = 0;
        for (int s = 0; s < B; s++)
            if (seq_of[s] >= 0) {
                const MoeGenSeq *q = &seqs[seq_of[s]];
                slots[n] = s;
                ids[n++] = q->out[q->n_out - 1];
            }
        double t0 = moe_now_s();
        if (!(ok = e->decode(e->user, n, slots, ids, lg, err, errlen))) break;
        g.decode_s += moe_now_s() - t0;
        g.steps++;
        g.rows += n;
        for (int i = 0; i < n; i++) {
            int s = slots[i];
            if (take(&seqs[seq_of[s]], &smp[s], lg[i], p)) {
                e->finish(e->user, s, seq_of[s]);
                seq_of[s] = -1;
                live--;
            }
        }
    }
    for (int s = 0; seq_of && s < B; s++) /* after a failure: end what still runs */
        if (seq_of[s] >= 0) e->finish(e->user, s, seq_of[s]);
    if (st) *st = g;
    free(seq_of);
    free(slots);
    free(ids);
    free(lg);
    free(smp);
    free(scratch);
    return ok;
}

/* ---- prompts and results of the CLIs ------------------------------------------------------ */

void moe_batch_free(MoeGenSeq *seqs, int n) {
    for (int i = 0; seqs && i < n; i++) {
        free((int32_t *)seqs[i].prompt);
        free(seqs[i].out);
    }
    free(seqs);
}

/* The prompt src[0, len) into q: encoded (tok) or parsed as ids; false with err set. */
static bool one_prompt(const char *src, size_t len, const MoeTokenizer *tok, int64_t n_gen, int index, MoeGenSeq *q,
                       char *err, size_t errlen) {
    char *part = malloc(len + 1);
    if (!part) {
        snprintf(err, errlen, "batch prompts: out of memory");
        return false;
    }
    memcpy(part, src, len);
    part[len] = 0;
    int32_t *ids = NULL;
    int64_t n = 0;
    bool ok = true;
    if (tok) {
        size_t nn = 0;
        ok = moe_tok_encode(tok, part, len, true, &ids, &nn) == MOE_TOK_OK && nn > 0;
        n = (int64_t)nn;
        if (!ok) snprintf(err, errlen, "prompt %d: the text encodes to no tokens; expected at least one", index + 1);
    } else {
        int st = moe_parse_ids(part, &ids, &n);
        ok = st == MOE_IDS_OK;
        if (!ok) snprintf(err, errlen, "prompt %d: %s; got '%.60s'", index + 1, moe_parse_ids_error(st), part);
    }
    free(part);
    q->prompt = ids;
    q->n_prompt = n;
    q->out = ok ? malloc(sizeof(int32_t) * (size_t)n_gen) : NULL;
    if (ok && !q->out) {
        snprintf(err, errlen, "batch prompts: out of memory");
        ok = false;
    }
    return ok;
}

bool moe_batch_prompts(const char *src, const MoeTokenizer *tok, int64_t n_gen, MoeGenSeq **seqs, int *n, char *err,
                       size_t errlen) {
    const char sep = tok ? '\n' : ';';
    int cap = 0, count = 0;
    MoeGenSeq *v = NULL;
    bool ok = true;
    for (const char *p = src; ok && *p;) {
        const char *end = strchr(p, sep);
        size_t len = end ? (size_t)(end - p) : strlen(p);
        size_t blank = 0; /* a line of only white space is no prompt */
        while (blank < len && (p[blank] == ' ' || p[blank] == '\t' || p[blank] == '\r')) blank++;
        if (blank < len) {
            if (count == cap) {
                MoeGenSeq *w = realloc(v, sizeof *v * (size_t)(cap = cap ? 2 * cap : 8));
                if (!w) {
                    snprintf(err, errlen, "batch prompts: out of memory");
                    ok = false;
                    break;
                }
                v = w;
            }
            memset(&v[count], 0, sizeof v[count]);
            ok = one_prompt(p, len, tok, n_gen, count, &v[count], err, errlen);
            count++;
        }
        p += len + (end ? 1 : 0);
    }
    if (ok && count == 0) {
        snprintf(err, errlen, "batch prompts: no prompt; expected %s", tok ? "one per line" : "id lists separated by ';'");
        ok = false;
    }
    if (!ok) {
        moe_batch_free(v, count);
        return false;
    }
    *seqs = v;
    *n = count;
    return true;
}

bool moe_batch_check(const MoeGenSeq *seqs, int n, int64_t vocab, int64_t max_pos, const char *limit_name,
                     int64_t n_gen, int64_t *need, int64_t *longest, char *err, size_t errlen) {
    int64_t most = 0, len = 0;
    for (int i = 0; i < n; i++) {
        const MoeGenSeq *q = &seqs[i];
        for (int64_t t = 0; t < q->n_prompt; t++)
            if (q->prompt[t] >= vocab) {
                snprintf(err, errlen, "prompt %d: token id %d at position %" PRId64 ": must be < vocab_size (%" PRId64 ")",
                         i + 1, q->prompt[t], t, vocab);
                return false;
            }
        int64_t pos = q->n_prompt + n_gen - 1; /* the last generated token is never fed */
        if (pos > max_pos) {
            snprintf(err, errlen, "prompt %d: %" PRId64 " tokens plus %" PRId64 " generated need %" PRId64
                                  " positions; expected at most %s (%" PRId64 ")",
                     i + 1, q->n_prompt, n_gen, pos, limit_name, max_pos);
            return false;
        }
        most = pos > most ? pos : most;
        len = q->n_prompt > len ? q->n_prompt : len;
    }
    if (need) *need = most;
    if (longest) *longest = len;
    return true;
}

void moe_batch_print(FILE *f, const MoeTokenizer *tok, int32_t eos, const MoeGenSeq *seqs, int n) {
    for (int i = 0; i < n; i++) {
        MoeTextOut t = {0};
        fprintf(f, "[%d] ", i + 1);
        if (!moe_text_begin(&t, tok, eos, f)) continue;
        int64_t k = 0;
        while (k < seqs[i].n_out && moe_text_token(&t, seqs[i].out[k])) k++;
        moe_text_end(&t, seqs[i].out, seqs[i].n_out);
    }
}

void moert_print_batch(FILE *f, int n_prompts, int slots, const MoeGenStats *st, double experts, int64_t n_exp) {
    fprintf(f, "batch: %d prompts on %d slots | %" PRId64 " decode steps of %.3f rows | %.3f of %" PRId64
               " experts per layer and step\n",
            n_prompts, slots, st->steps, st->steps ? (double)st->rows / (double)st->steps : 0.0, experts, n_exp);
}

bool moe_parse_batch(const char *line, double *rows_per_step, double *experts_per_step) {
    int n, b;
    long long steps, e;
    return sscanf(line, "batch: %d prompts on %d slots | %lld decode steps of %lf rows | %lf of %lld experts", &n, &b,
                  &steps, rows_per_step, experts_per_step, &e) == 6;
}
