/* quantize.c: --quant specs, which matrix is of which class, the fallback rule, and the
 * quantisation itself (one tensor at a time, rows over OpenMP threads; the K quantisers take about
 * 60 us per 256 elements). */
#include "quantize.h"

#include <inttypes.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

static const char *const class_names[QC_COUNT] = {"experts", "attn", "shared", "embed", "head"};

const char *quantize_class_name(QuantClass c) { return (unsigned)c < QC_COUNT ? class_names[c] : "?"; }

/* ---------------------------------------------------------------- spec */

static bool parse_type(Diag *d, const char *s, size_t n, DType *out) {
    char buf[32];
    if (n >= sizeof buf) n = sizeof buf - 1;
    memcpy(buf, s, n);
    buf[n] = 0;
    *out = quant_type_from_name(buf);
    if (*out == DT_COUNT) {
        diag_error(d, "--quant: unknown type '%s'; expected q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, f16, bf16 "
                      "or f32", buf);
        return false;
    }
    return true;
}

bool quantize_spec_parse(Diag *d, const char *s, QuantSpec *spec) {
    DType def = DT_COUNT, cls[QC_COUNT];
    for (int c = 0; c < QC_COUNT; c++) cls[c] = DT_COUNT;
    spec->text = s;
    const char *p = s;
    for (;;) {
        size_t n = strcspn(p, ",");
        const char *eq = memchr(p, '=', n);
        if (n == 0) {
            diag_error(d, "--quant: empty item in '%s'; expected TYPE[,CLASS=TYPE...], e.g. q4_k,attn=q8_0", s);
            return false;
        }
        if (!eq) {
            DType t;
            if (!parse_type(d, p, n, &t)) return false;
            if (def != DT_COUNT) {
                diag_error(d, "--quant: a second default type '%.*s' in '%s'; expected one TYPE, then CLASS=TYPE items",
                           (int)n, p, s);
                return false;
            }
            def = t;
        } else {
            int c = 0;
            size_t cn = (size_t)(eq - p);
            while (c < QC_COUNT && !(strlen(class_names[c]) == cn && !strncmp(p, class_names[c], cn))) c++;
            if (c == QC_COUNT) {
                diag_error(d, "--quant: unknown class '%.*s'; expected experts, attn, shared, embed or head", (int)cn,
                           p);
                return false;
            }
            if (cls[c] != DT_COUNT) {
                diag_error(d, "--quant: class '%s' given twice in '%s'; expected each class at most once",
                           class_names[c], s);
                return false;
            }
            if (!parse_type(d, eq + 1, n - cn - 1, &cls[c])) return false;
        }
        if (!p[n]) break;
        p += n + 1;
    }
    for (int c = 0; c < QC_COUNT; c++) spec->type[c] = cls[c] != DT_COUNT ? cls[c] : def;
    return true;
}

/* ---------------------------------------------------------------- classes and fallback */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* cls[i] = the class of weight node i, or -1 when it is never quantised. A weight is classified by
 * the op that reads it: the embedding's table, the logits matmul (head; a tied table is read by
 * both and is the head), the expert FFN's stacks; a plain matmul's weight by its HF name
 * (self_attn.* is attn, *_proj.weight elsewhere is a shared expert or dense MLP matrix; the router
 * gate and the shared-expert gate are neither). */
static void classify(const Graph *g, int *cls) {
    for (uint32_t i = 0; i < g->n; i++) cls[i] = -1;
    const TensorInfo *head = NULL;
    for (uint32_t i = 0; i < g->n; i++) {
        const Node *n = &g->nodes[i];
        if (n->op == OP_EMBED) {
            cls[n->in[1].id] = QC_EMBED;
        } else if (n->op == OP_MOE_FFN) {
            for (int k = 2; k <= 4; k++) cls[n->in[k].id] = QC_EXPERTS;
        } else if (n->op == OP_MATMUL) {
            const Node *w = ir_node(g, n->in[1]);
            const char *name = w->a.weight.parts && w->a.weight.parts[0] ? w->a.weight.parts[0]->name : w->name;
            if (i == g->logits.id) {
                cls[n->in[1].id] = QC_HEAD;
                head = w->a.weight.parts ? w->a.weight.parts[0] : NULL;
            } else if (strstr(name, "self_attn.")) {
                cls[n->in[1].id] = QC_ATTN;
            } else if (ends_with(name, "_proj.weight")) {
                cls[n->in[1].id] = QC_SHARED;
            }
        }
    }
    for (uint32_t i = 0; head && i < g->n; i++)
        if (cls[i] == QC_EMBED && g->nodes[i].a.weight.parts && g->nodes[i].a.weight.parts[0] == head)
            cls[i] = QC_HEAD;
}

/* The type a matrix of rows of `cols` elements gets for want: want itself when its block divides
 * the row, else llama-quantize's fallback (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0), else
 * DT_COUNT (stays as stored). */
static DType fit_type(DType want, int64_t cols) {
    if (cols % dtype_block_elems(want) == 0) return want;
    DType f = want == DT_Q4_K ? DT_Q5_0 : want == DT_Q5_K ? DT_Q5_1 : want == DT_Q6_K ? DT_Q8_0 : DT_COUNT;
    return f != DT_COUNT && cols % dtype_block_elems(f) == 0 ? f : DT_COUNT;
}

/* ---------------------------------------------------------------- quantising */

/* Old TensorInfo -> its replacement (a tied table is one tensor read by two weight nodes). */
typedef struct TiMap {
    const TensorInfo **key, **val;
    size_t cap;
} TiMap;

static size_t ti_slot(const TiMap *m, const TensorInfo *k) {
    size_t h = (size_t)((uintptr_t)k >> 4) * 0x9e3779b97f4a7c15ull & (m->cap - 1);
    while (m->key[h] && m->key[h] != k) h = (h + 1) & (m->cap - 1);
    return h;
}

static int64_t tensor_rows(const TensorInfo *t) {
    int64_t r = 1;
    for (int i = 0; i < t->rank - 1; i++) r *= t->shape[i];
    return r;
}

/* An arena copy of s converted to type t (rows dequantised-widened then quantised in parallel). */
static const TensorInfo *quantize_tensor(Arena *a, const TensorInfo *s, DType t) {
    int64_t K = s->shape[s->rank - 1], rows = tensor_rows(s);
    size_t rb = quant_row_bytes(t, K), sb = quant_row_bytes(s->dtype, K);
    TensorInfo *q = arena_alloc(a, sizeof *q);
    *q = *s;
    q->dtype = t;
    q->nbytes = rb * (size_t)rows;
    char *dst = arena_alloc(a, q->nbytes);
    const char *src = s->data;
#pragma omp parallel
    {
        float *buf = xmalloc(sizeof(float) * (size_t)K);
#pragma omp for schedule(dynamic, 8)
        for (int64_t row = 0; row < rows; row++) {
            quant_dequant_row(s->dtype, src + (size_t)row * sb, buf, K);
            quant_quantize_row(t, buf, dst + (size_t)row * rb, K);
        }
        free(buf);
    }
    q->data = dst;
    return q;
}

bool quantize_model(Model *m, Arena *a, Diag *d, const QuantSpec *spec, bool plan_only, QuantReport *rep) {
    Graph *g = m->g;
    memset(rep, 0, sizeof *rep);
    int *cls = xmalloc(sizeof(int) * (g->n ? g->n : 1));
    classify(g, cls);
    size_t n_parts = 0;
    for (uint32_t i = 0; i < g->n; i++)
        if (g->nodes[i].op == OP_WEIGHT) n_parts += (size_t)g->nodes[i].a.weight.n_parts;
    TiMap map = {.cap = 16};
    while (map.cap < 2 * n_parts + 2) map.cap *= 2;
    map.key = xcalloc(map.cap, sizeof *map.key);
    map.val = xcalloc(map.cap, sizeof *map.val);
    rep->fallback = arena_alloc(a, sizeof(QuantFallback) * (g->n ? g->n : 1));
    for (uint32_t i = 0; i < g->n; i++) {
        Node *n = &g->nodes[i];
        if (n->op != OP_WEIGHT || !n->a.weight.parts) continue;
        /* a tensor seen before (a tied table) is counted and converted once */
        bool seen = n->a.weight.parts[0] && map.key[ti_slot(&map, n->a.weight.parts[0])];
        size_t before = 0;
        for (int p = 0; p < n->a.weight.n_parts; p++) before += n->a.weight.parts[p] ? n->a.weight.parts[p]->nbytes : 0;
        if (cls[i] < 0) {
            if (!seen) rep->bytes_other += before;
            if (n->a.weight.parts[0]) map.key[ti_slot(&map, n->a.weight.parts[0])] = n->a.weight.parts[0];
            continue;
        }
        QuantClass c = (QuantClass)cls[i];
        DType want = spec->type[c], got = want;
        int64_t cols = n->shape[n->rank - 1];
        if (want != DT_COUNT && dtype_is_quant(n->dtype)) { /* already a block type in the file */
            if (!seen) rep->n_skipped++;
            got = DT_COUNT;
        } else if (want != DT_COUNT) {
            got = fit_type(want, cols);
            if (got != want && !seen)
                rep->fallback[rep->n_fallback++] =
                    (QuantFallback){n->name, c, want, got == DT_COUNT ? n->dtype : got, cols};
        }
        if (got == n->dtype) got = DT_COUNT;
        size_t after = 0;
        for (int p = 0; p < n->a.weight.n_parts; p++) {
            const TensorInfo *t = n->a.weight.parts[p];
            if (!t) continue;
            size_t slot = ti_slot(&map, t);
            if (got == DT_COUNT) {
                after += t->nbytes;
                map.key[slot] = t;
                map.val[slot] = t;
                continue;
            }
            if (!map.key[slot]) {
                map.key[slot] = t;
                map.val[slot] = plan_only ? NULL : quantize_tensor(a, t, got);
            }
            after += quant_row_bytes(got, t->shape[t->rank - 1]) * (size_t)tensor_rows(t);
            if (!plan_only) n->a.weight.parts[p] = map.val[slot];
        }
        if (got != DT_COUNT && !plan_only) n->dtype = got;
        if (!seen) {
            rep->n_mats[c]++;
            rep->bytes_before[c] += before;
            rep->bytes_after[c] += after;
        }
    }
    free(map.key);
    free(map.val);
    free(cls);
    return plan_only || ir_verify(g, d);
}

/* ---------------------------------------------------------------- report */

static void human(char *buf, size_t n, double bytes) {
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
    snprintf(buf, n, "%.2f %s", bytes, unit[u]);
}

void quantize_report_summary(const QuantReport *rep, const QuantSpec *spec, FILE *f) {
    size_t before = rep->bytes_other, after = rep->bytes_other;
    int mats = 0;
    for (int c = 0; c < QC_COUNT; c++) {
        before += rep->bytes_before[c];
        after += rep->bytes_after[c];
        if (spec->type[c] != DT_COUNT) mats += rep->n_mats[c];
    }
    char b0[32], b1[32];
    human(b0, sizeof b0, (double)before);
    human(b1, sizeof b1, (double)after);
    fprintf(f, "moec: --quant %s: %d matrices, weights %s -> %s; %d fell back", spec->text, mats, b0, b1,
            rep->n_fallback);
    if (rep->n_skipped) fprintf(f, ", %d already block-quantised (kept)", rep->n_skipped);
    fputc('\n', f);
    /* one note per (class, wanted, got, row length) */
    for (int i = 0; i < rep->n_fallback; i++) {
        const QuantFallback *fb = &rep->fallback[i];
        bool first = true;
        for (int j = 0; j < i && first; j++)
            first = !(rep->fallback[j].cls == fb->cls && rep->fallback[j].want == fb->want &&
                      rep->fallback[j].got == fb->got && rep->fallback[j].cols == fb->cols);
        if (!first) continue;
        int count = 0;
        for (int j = i; j < rep->n_fallback; j++)
            count += rep->fallback[j].cls == fb->cls && rep->fallback[j].want == fb->want &&
                     rep->fallback[j].got == fb->got && rep->fallback[j].cols == fb->cols;
        fprintf(f, "moec: note: --quant: %d %s matri%s with rows of %" PRId64 " (not a multiple of %" PRId64
                   ") %s %s instead of %s, e.g. %s\n",
                count, quantize_class_name(fb->cls), count == 1 ? "x" : "ces", fb->cols, dtype_block_elems(fb->want),
                dtype_is_quant(fb->got) ? (count == 1 ? "takes" : "take") : (count == 1 ? "stays" : "stay"),
                dtype_name(fb->got), dtype_name(fb->want), fb->name);
    }
}
