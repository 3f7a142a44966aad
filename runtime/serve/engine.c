/* engine: see engine.h. One iteration of the engine thread:
 *
 *   lock:    end cancelled slots; admit queued requests into free slots; sleep when idle
 *   unlock:  prefill one chunk of one admitted request (round robin), sampling its first token
 *            when its prompt is done; one decode step over every generating slot, sampling each
 *   lock:    publish each slot's newly released text into its Req; end finished requests
 *            (expert statistics added, slot freed); wake the I/O thread
 *
 * Greedy text equals `OUT --prompt`'s: the same sampler on the same logits, stop at the
 * end-of-sequence token, the same streaming detokenizer (special tokens skipped). */
#define _GNU_SOURCE /* memmem */
#include "engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format.h"
#include "outfile.h"
#include "sampler.h"

struct Slot {
    Req *req;                /* NULL: free */
    int id;                  /* the model's slot */
    bool ended;              /* finished this iteration: publish, then free */
    int64_t prefilled;       /* prompt tokens fed */
    int32_t last;            /* the token to feed next (once the prompt is done) */
    int64_t n_gen;
    MoeSampler smp;
    void *scratch;           /* moe_sampler_scratch_bytes(vocab) */
    MoeTokStream *ts;
    char *text;              /* all generated text */
    size_t len, cap, sent;   /* sent: released into text so far */
    size_t published;        /* released and handed to the Req */
    const char *finish;
    char error[256];
};

/* ---- the model's slots ----------------------------------------------------------------------- */
/* Thin adapter over moe.h's slot calls, so that the scheduler reads the same whatever the batch. */

static int slots_count(MoeModel *m) { return moe_model_slots(m); }

static MoeStatus slot_start(MoeModel *m, int *slot) { return moe_slot_start(m, slot); }

static void slot_free(MoeModel *m, int slot) { moe_slot_free(m, slot); }

static MoeStatus slot_prefill(MoeModel *m, int slot, const int32_t *ids, int64_t n, const float **logits) {
    return moe_slot_prefill(m, slot, ids, n, NULL, NULL, logits);
}

static MoeStatus slots_decode(MoeModel *m, int n, const int *slots, const int32_t *ids, const float **logits) {
    return moe_slots_decode(m, n, slots, ids, logits);
}

static const int64_t *slot_stats(MoeModel *m, int slot) { return moe_slot_stats(m, slot); }

/* ---- stop strings ---------------------------------------------------------------------------- */

size_t engine_stop_scan(const char *text, size_t len, size_t sent, char *const *stop, int n_stop, bool final,
                        bool *hit) {
    *hit = false;
    size_t best = len;
    for (int i = 0; i < n_stop; i++) {
        size_t n = strlen(stop[i]);
        if (!n || n > len - sent) continue;
        const char *p = memmem(text + sent, len - sent, stop[i], n);
        if (p && (!*hit || (size_t)(p - text) < best)) {
            best = (size_t)(p - text);
            *hit = true;
        }
    }
    if (*hit || final) return best;
    size_t hold = 0;
    for (int i = 0; i < n_stop; i++) {
        size_t n = strlen(stop[i]);
        if (!n) continue;
        for (size_t k = n - 1; k > hold; k--) /* the longest proper prefix ending the text */
            if (k <= len - sent && !memcmp(text + len - k, stop[i], k)) {
                hold = k;
                break;
            }
    }
    return len - hold;
}

/* ---- requests -------------------------------------------------------------------------------- */

Req *engine_req_new(void) {
    Req *r = calloc(1, sizeof *r);
    if (r) r->refs = 1;
    return r;
}

void engine_unref_locked(Req *r) {
    if (--r->refs > 0) return;
    free(r->prompt);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->out);
    free(r);
}

bool engine_submit(Engine *e, Req *r) {
    pthread_mutex_lock(&e->mu);
    bool ok = !e->stop && e->q_len < e->q_max + (e->B - e->busy); /* free slots take the queue's head at once */
    if (ok) {
        r->refs++;
        r->queued = true;
        r->next = NULL;
        if (e->q_tail) e->q_tail->next = r;
        else e->q_head = r;
        e->q_tail = r;
        e->q_len++;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return ok;
}

void engine_cancel_locked(Engine *e, Req *r) {
    if (r->done) return;
    r->cancel = true;
    if (r->queued) { /* never started: out of the queue and done now */
        Req **pp = &e->q_head, *prev = NULL;
        while (*pp && *pp != r) prev = *pp, pp = &(*pp)->next;
        if (*pp) {
            *pp = r->next;
            if (e->q_tail == r) e->q_tail = prev;
            e->q_len--;
        }
        r->queued = false;
        r->done = true;
        e->st.requests_cancelled++;
        engine_unref_locked(r);
        return;
    }
    pthread_cond_signal(&e->cv);
}

/* ---- one slot's generation (engine thread, unlocked) ----------------------------------------- */

static void slot_fail(Slot *s, const char *msg) {
    snprintf(s->error, sizeof s->error, "%s", msg);
    s->finish = NULL;
    s->ended = true;
}

static bool text_add(Slot *s, const char *p, size_t n) {
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n + 1) cap *= 2;
        char *t = realloc(s->text, cap);
        if (!t) return false;
        s->text = t;
        s->cap = cap;
    }
    memcpy(s->text + s->len, p, n);
    s->len += n;
    return true;
}

/* Releases what the stop strings allow; ends the slot when one is hit or final. */
static void release(Slot *s, bool final, const char *finish) {
    bool hit;
    size_t end = engine_stop_scan(s->text, s->len, s->sent, s->req->stop, s->req->n_stop, final, &hit);
    s->sent = end;
    if (hit) {
        s->len = end;
        s->finish = "stop";
        s->ended = true;
    } else if (final) {
        s->finish = finish;
        s->ended = true;
    }
}

/* Takes the sampled token id of s. */
static void slot_token(Engine *e, Slot *s, int32_t id) {
    const char *p;
    size_t n = 0;
    if (id == e->eos) { /* the end, not part of the text (as `OUT --prompt`) */
        if (moe_tok_stream_flush(s->ts, &p, &n) != MOE_TOK_OK || !text_add(s, p, n)) return slot_fail(s, "out of memory");
        return release(s, true, "stop");
    }
    s->n_gen++;
    s->last = id;
    if (moe_tok_stream_feed(s->ts, id, &p, &n) != MOE_TOK_OK || !text_add(s, p, n)) return slot_fail(s, "out of memory");
    bool last = s->n_gen >= s->req->max_tokens;
    if (last && (moe_tok_stream_flush(s->ts, &p, &n) != MOE_TOK_OK || !text_add(s, p, n)))
        return slot_fail(s, "out of memory");
    release(s, last, "length");
}

static void slot_setup(Engine *e, Slot *s) {
    const Req *r = s->req;
    s->ended = false;
    s->prefilled = 0;
    s->n_gen = 0;
    s->len = s->sent = s->published = 0;
    s->finish = NULL;
    s->error[0] = 0;
    moe_sampler_init(&s->smp, e->vocab, r->temp, r->top_k, r->top_p, r->seed, s->scratch);
    moe_tok_stream_free(s->ts);
    if (!(s->ts = moe_tok_stream_new(e->tok, true))) slot_fail(s, "out of memory");
}

/* ---- the loop -------------------------------------------------------------------------------- */

static void wake(Engine *e) {
    char c = 1;
    while (write(e->wake_fd, &c, 1) < 0 && errno == EINTR) {
    }
}

/* Publishes s's released text into its Req and, when it ended, ends the request (mu held). */
static bool publish_locked(Engine *e, Slot *s) {
    Req *r = s->req;
    bool changed = false;
    if (s->sent > s->published && !r->cancel) {
        size_t n = s->sent - s->published;
        if (r->out_len + n > r->out_cap) {
            size_t cap = r->out_cap ? r->out_cap : 256;
            while (cap < r->out_len + n) cap *= 2;
            char *p = realloc(r->out, cap);
            if (!p) slot_fail(s, "out of memory");
            else r->out = p, r->out_cap = cap;
        }
        if (r->out_cap >= r->out_len + n) {
            memcpy(r->out + r->out_len, s->text + s->published, n);
            r->out_len += n;
            changed = true;
        }
        s->published = s->sent;
    }
    r->n_gen = s->n_gen;
    if (!s->ended && !r->cancel) return changed;
    /* the end: statistics, the slot back, the engine's reference dropped */
    const int64_t *st = slot_stats(e->m, s->id);
    for (int64_t i = 0; st && i < (int64_t)e->n_layers * (e->n_exp + 1); i++) e->st.experts[i] += st[i];
    slot_free(e->m, s->id);
    e->busy--;
    r->done = true;
    r->finish = s->ended ? s->finish : NULL;
    if (s->ended && s->error[0]) snprintf(r->error, sizeof r->error, "%s", s->error);
    if (r->cancel && !s->ended) e->st.requests_cancelled++;
    else if (r->error[0]) e->st.requests_failed++;
    else e->st.requests_done++;
    e->st.prompt_tokens += r->n_prompt;
    e->st.gen_tokens += s->n_gen;
    engine_unref_locked(r);
    s->req = NULL;
    return true;
}

static void *engine_main(void *arg) {
    Engine *e = arg;
    int rr = 0; /* the slot whose prefill goes first next time */
    int *pre_idx = e->scratch, *dec_idx = pre_idx + e->B, *dec_slot = dec_idx + e->B;
    int32_t *dec_ids = (int32_t *)(dec_slot + e->B);
    const float **logits = e->logits;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        bool changed = false;
        for (int i = 0; i < e->B; i++) /* cancelled requests free their slot at once */
            if (e->slots[i].req && (e->slots[i].req->cancel || e->stop)) {
                e->slots[i].req->cancel = true;
                changed |= publish_locked(e, &e->slots[i]);
            }
        if (changed) wake(e);
        if (e->stop) break;
        for (int i = 0; i < e->B && e->q_head; i++) {
            Slot *s = &e->slots[i];
            if (s->req) continue;
            Req *r = e->q_head;
            int id;
            if (slot_start(e->m, &id) != MOE_OK) break;
            e->q_head = r->next;
            if (!e->q_head) e->q_tail = NULL;
            e->q_len--;
            r->queued = false;
            s->req = r;
            s->id = id;
            slot_setup(e, s);
            e->busy++;
        }
        if (e->busy == 0) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);

        double t0 = moe_now_s();
        int n_pre = 0, n_dec = 0;
        for (int i = 0; i < e->B; i++) {
            Slot *s = &e->slots[i];
            if (!s->req || s->ended) continue;
            if (s->prefilled < s->req->n_prompt) pre_idx[n_pre++] = i;
            else dec_idx[n_dec] = i, dec_slot[n_dec] = s->id, dec_ids[n_dec++] = s->last;
        }
        /* decode first (the tokens sampled last iteration), then one prefill chunk */
        if (n_dec > 0) {
            if (slots_decode(e->m, n_dec, dec_slot, dec_ids, logits) != MOE_OK) {
                for (int k = 0; k < n_dec; k++) slot_fail(&e->slots[dec_idx[k]], moe_model_error(e->m));
            } else {
                for (int k = 0; k < n_dec; k++) {
                    Slot *s = &e->slots[dec_idx[k]];
                    slot_token(e, s, moe_sampler_sample(&s->smp, logits[k]));
                }
            }
        }
        if (n_pre > 0) {
            int pick = pre_idx[0];
            for (int k = 0; k < n_pre; k++) /* round robin over the prefilling slots */
                if (pre_idx[k] >= rr) {
                    pick = pre_idx[k];
                    break;
                }
            rr = pick + 1;
            Slot *s = &e->slots[pick];
            int64_t left = s->req->n_prompt - s->prefilled;
            int64_t n = n_dec ? (left < e->chunk ? left : e->chunk) : left; /* nobody waits: the whole prompt */
            const float *lg;
            if (slot_prefill(e->m, s->id, s->req->prompt + s->prefilled, n, &lg) != MOE_OK) {
                slot_fail(s, moe_model_error(e->m));
            } else {
                s->prefilled += n;
                if (s->prefilled == s->req->n_prompt) slot_token(e, s, moe_sampler_sample(&s->smp, lg));
            }
        }
        double dt = moe_now_s() - t0;

        pthread_mutex_lock(&e->mu);
        e->st.busy_s += dt;
        e->st.decode_steps += n_dec > 0;
        e->st.prefill_chunks += n_pre > 0;
        changed = false;
        for (int i = 0; i < e->B; i++)
            if (e->slots[i].req) changed |= publish_locked(e, &e->slots[i]);
        if (changed) wake(e);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

bool engine_start(Engine *e, MoeModel *m, const MoeTokenizer *tok, int queue_max, int wake_fd, char *err,
                  size_t errlen) {
    const MoeManifest *mf = moe_model_manifest(m);
    memset(e, 0, sizeof *e);
    e->m = m;
    e->tok = tok;
    e->eos = moe_tok_eos(tok) >= 0 ? moe_tok_eos(tok) : (int32_t)mf->eos_token_id;
    e->vocab = mf->vocab_size;
    e->context = mf->context;
    e->chunk = mf->prefill_chunk;
    e->n_layers = (int)mf->n_layers;
    e->n_exp = (int)mf->n_exp;
    e->B = slots_count(m);
    e->q_max = queue_max;
    e->wake_fd = wake_fd;
    e->slots = calloc((size_t)e->B, sizeof *e->slots);
    e->st.experts = calloc((size_t)e->n_layers * (size_t)(e->n_exp + 1), sizeof(int64_t));
    e->scratch = malloc(sizeof(int) * 4 * (size_t)e->B);
    e->logits = malloc(sizeof(float *) * (size_t)e->B);
    bool ok = e->slots && e->st.experts && e->scratch && e->logits;
    for (int i = 0; ok && i < e->B; i++) ok = (e->slots[i].scratch = malloc(moe_sampler_scratch_bytes(e->vocab)));
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (ok && pthread_create(&e->thread, NULL, engine_main, e) == 0) {
        e->started = true;
        return true;
    }
    snprintf(err, errlen, "%s", ok ? "cannot start the engine thread" : "out of memory");
    engine_stop(e);
    return false;
}

void engine_stop(Engine *e) {
    if (e->started) {
        pthread_mutex_lock(&e->mu);
        e->stop = true;
        while (e->q_head) engine_cancel_locked(e, e->q_head);
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
        e->started = false;
    }
    for (int i = 0; e->slots && i < e->B; i++) {
        free(e->slots[i].scratch);
        free(e->slots[i].text);
        moe_tok_stream_free(e->slots[i].ts);
    }
    free(e->slots);
    free(e->st.experts);
    free(e->scratch);
    free(e->logits);
    e->slots = NULL;
    e->st.experts = NULL;
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
}
