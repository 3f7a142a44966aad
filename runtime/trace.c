#include "trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outfile.h"

typedef struct I32Vec {
    int32_t *v;
    int64_t n, cap;
} I32Vec;

typedef struct RouteVec {
    MoeRoute *v;
    int64_t n, cap; /* in MoeRoute entries */
} RouteVec;

struct MoeTrace {
    int n_layers, top_k;
    bool *is_moe;
    I32Vec prompt, gen;
    RouteVec *routes; /* [n_layers] */
    int64_t positions;
};

static void i32_push(I32Vec *a, int32_t x) {
    if (a->n == a->cap) {
        int64_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, sizeof(int32_t) * (size_t)cap);
        if (!v) return;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

MoeTrace *moe_trace_new(int n_layers, int top_k, const bool *layer_is_moe) {
    MoeTrace *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->n_layers = n_layers;
    t->top_k = top_k;
    t->is_moe = calloc((size_t)n_layers + 1, sizeof(bool));
    t->routes = calloc((size_t)n_layers + 1, sizeof(RouteVec));
    if (!t->is_moe || !t->routes) {
        moe_trace_free(t);
        return NULL;
    }
    memcpy(t->is_moe, layer_is_moe, sizeof(bool) * (size_t)n_layers);
    return t;
}

void moe_trace_free(MoeTrace *t) {
    if (!t) return;
    for (int l = 0; t->routes && l < t->n_layers; l++) free(t->routes[l].v);
    free(t->routes);
    free(t->is_moe);
    free(t->prompt.v);
    free(t->gen.v);
    free(t);
}

void moe_trace_add_prompt(MoeTrace *t, const int32_t *ids, int64_t n) {
    for (int64_t i = 0; i < n; i++) i32_push(&t->prompt, ids[i]);
}

void moe_trace_add_generated(MoeTrace *t, int32_t id) { i32_push(&t->gen, id); }

void moe_trace_add_routes(MoeTrace *t, int layer, const MoeRoute *routes, int64_t T) {
    RouteVec *r = &t->routes[layer];
    int64_t need = r->n + T * t->top_k;
    if (need > r->cap) {
        int64_t cap = r->cap ? r->cap : 256;
        while (cap < need) cap *= 2;
        MoeRoute *v = realloc(r->v, sizeof(MoeRoute) * (size_t)cap);
        if (!v) return;
        r->v = v;
        r->cap = cap;
    }
    memcpy(r->v + r->n, routes, sizeof(MoeRoute) * (size_t)(T * t->top_k));
    r->n = need;
}

static void put(MoeOutFile *o, const char *s) { moe_out_write(o, s, strlen(s)); }

static void put_ids(MoeOutFile *o, const I32Vec *a) {
    char buf[32];
    put(o, "[");
    for (int64_t i = 0; i < a->n; i++) {
        snprintf(buf, sizeof buf, "%s%d", i ? ", " : "", a->v[i]);
        put(o, buf);
    }
    put(o, "]");
}

static void put_routes(MoeOutFile *o, const MoeTrace *t, int64_t positions, bool weights) {
    char buf[48];
    put(o, "[");
    for (int l = 0; l < t->n_layers; l++) {
        put(o, l ? ",\n    [" : "\n    [");
        for (int64_t p = 0; p < positions; p++) {
            if (p) put(o, ", ");
            if (!t->is_moe[l]) {
                put(o, "null");
                continue;
            }
            put(o, "[");
            for (int j = 0; j < t->top_k; j++) {
                const MoeRoute *r = &t->routes[l].v[p * t->top_k + j];
                if (weights) snprintf(buf, sizeof buf, "%s%.9g", j ? ", " : "", (double)r->weight);
                else snprintf(buf, sizeof buf, "%s%d", j ? ", " : "", r->expert);
                put(o, buf);
            }
            put(o, "]");
        }
        put(o, "]");
    }
    put(o, "]");
}

bool moe_trace_write(const MoeTrace *t, const char *path) {
    MoeOutFile o;
    if (!moe_out_open(&o, path)) return false;
    int64_t positions = -1;
    for (int l = 0; l < t->n_layers; l++)
        if (t->is_moe[l]) positions = t->routes[l].n / (t->top_k ? t->top_k : 1);
    if (positions < 0) positions = t->prompt.n + (t->gen.n > 0 ? t->gen.n - 1 : 0);
    put(&o, "{\n  \"prompt_ids\": ");
    put_ids(&o, &t->prompt);
    put(&o, ",\n  \"generated_ids\": ");
    put_ids(&o, &t->gen);
    put(&o, ",\n  \"router_topk\": ");
    put_routes(&o, t, positions, false);
    put(&o, ",\n  \"router_weights\": ");
    put_routes(&o, t, positions, true);
    put(&o, "\n}\n");
    return moe_out_commit(&o);
}
