/* moec inspect: what a user needs to decide whether a model fits and what it costs per token. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "chat_template.h"
#include "cli.h"
#include "commands.h"
#include "frontend.h"
#include "quantize.h"

static const char inspect_usage[] =
    "usage: moec inspect MODEL_DIR [--quant SPEC]\n"
    "Prints the family, layers, experts, top-k, parameters (total and active per token), bytes\n"
    "of weights per dtype and KV-cache bytes per token of a Hugging Face MoE checkpoint.\n"
    "\n"
    "  --quant SPEC   also the bytes per class of matrix with the weights block-quantised as\n"
    "                 'moec run/compile --quant SPEC' would (TYPE[,CLASS=TYPE...]; classes experts,\n"
    "                 attn, shared, embed, head), and every matrix that falls back to another type\n";

typedef struct ParamCount {
    int64_t total, active;
} ParamCount;

/* Counts every weight node once (a tied head shares the embedding); an expert stack counts
 * top_k / n_exp of its parameters as active per token. */
static ParamCount count_params(const Graph *g, const ModelConfig *c) {
    ParamCount pc = {0, 0};
    for (uint32_t i = 0; i < g->n; i++) {
        const Node *n = &g->nodes[i];
        if (n->op != OP_WEIGHT) continue;
        bool dup = false;
        for (uint32_t j = 0; j < i && !dup; j++)
            dup = g->nodes[j].op == OP_WEIGHT && g->nodes[j].a.weight.parts[0] == n->a.weight.parts[0];
        if (dup) continue;
        int64_t e = 1;
        for (int k = 0; k < n->rank; k++) e *= n->shape[k];
        pc.total += e;
        pc.active += n->rank == 3 ? e / c->num_experts * c->num_experts_per_tok : e;
    }
    return pc;
}

static void human(char *buf, size_t n, double bytes) {
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
    snprintf(buf, n, "%.2f %s", bytes, unit[u]);
}

/* A GGUF file's tensor types per tensor class ("blk.N.ffn_down_exps.weight q6_k (1), q4_k (1)"),
 * the summary llama.cpp users read to tell a Q4_K_M file from a Q4_K_S one. */
static void print_gguf_types(const GgufFile *g) {
    enum { MAX_CLASSES = 64 };
    struct {
        char name[96];
        int count[DT_COUNT];
    } cls[MAX_CLASSES];
    int n = 0;
    for (int i = 0; i < g->n_tensors; i++) {
        const char *name = g->t[i].ti.name;
        char key[96];
        int layer, used = 0;
        if (sscanf(name, "blk.%d.%n", &layer, &used) == 1 && used > 0) snprintf(key, sizeof key, "blk.N.%s", name + used);
        else snprintf(key, sizeof key, "%s", name);
        int k = 0;
        while (k < n && strcmp(cls[k].name, key)) k++;
        if (k == n) {
            if (n == MAX_CLASSES) continue;
            memset(&cls[n], 0, sizeof cls[n]);
            snprintf(cls[n].name, sizeof cls[n].name, "%s", key);
            n++;
        }
        cls[k].count[g->t[i].ti.dtype]++;
    }
    for (int k = 0; k < n; k++) {
        printf("%-13s%-32s", k ? "" : "types", cls[k].name);
        bool first = true;
        for (int t = 0; t < DT_COUNT; t++) {
            if (!cls[k].count[t]) continue;
            printf("%s%s", first ? " " : ", ", dtype_name((DType)t));
            if (cls[k].count[t] > 1 || cls[k].name[0] == 'b') printf(" (%d)", cls[k].count[t]);
            first = false;
        }
        printf("\n");
    }
}

/* The --quant table: bytes per class at the spec, then each matrix that falls back. */
static void print_quant(const QuantReport *qr, const QuantSpec *spec) {
    char b0[32], b1[32];
    size_t before = qr->bytes_other, after = qr->bytes_other;
    printf("quant        %s (as run and compile would load it)\n", spec->text);
    for (int c = 0; c < QC_COUNT; c++) {
        if (!qr->n_mats[c]) continue;
        human(b0, sizeof b0, (double)qr->bytes_before[c]);
        human(b1, sizeof b1, (double)qr->bytes_after[c]);
        printf("  %-8s %4d matri%s  %-9s %12s -> %s\n", quantize_class_name((QuantClass)c), qr->n_mats[c],
               qr->n_mats[c] == 1 ? "x  " : "ces", spec->type[c] == DT_COUNT ? "as stored" : dtype_name(spec->type[c]),
               b0, b1);
        before += qr->bytes_before[c];
        after += qr->bytes_after[c];
    }
    human(b0, sizeof b0, (double)qr->bytes_other);
    printf("  %-8s %-15s %-9s %12s (router, norms, biases, gates)\n", "other", "", "as stored", b0);
    human(b0, sizeof b0, (double)before);
    human(b1, sizeof b1, (double)after);
    printf("  %-8s %-15s %-9s %12s -> %s\n", "total", "", "", b0, b1);
    if (qr->n_skipped) printf("  %d matrices already block-quantised in the file: kept\n", qr->n_skipped);
    for (int i = 0; i < qr->n_fallback; i++) {
        const QuantFallback *f = &qr->fallback[i];
        printf("fallback     %s (%s): rows of %" PRId64 ", not a multiple of %" PRId64 ": %s -> %s%s\n", f->name,
               quantize_class_name(f->cls), f->cols, dtype_block_elems(f->want), dtype_name(f->want),
               dtype_name(f->got), dtype_is_quant(f->got) ? "" : " (kept as stored)");
    }
}

int cmd_inspect(int argc, char **argv) {
    const char *dir = NULL;
    bool quant = false;
    QuantSpec spec;
    Diag d = {0};
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(inspect_usage, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--quant")) {
            if (!(v = cli_value(&d, argc, argv, &i)) || !quantize_spec_parse(&d, v, &spec)) return 2;
            quant = true;
        } else if (argv[i][0] == '-' || dir) {
            fputs(inspect_usage, stderr);
            return 2;
        } else {
            dir = argv[i];
        }
    }
    if (!dir) {
        fputs(inspect_usage, stderr);
        return 2;
    }
    Arena *a = arena_new();
    Model m;
    QuantReport qr;
    int rc = 1;
    if (!model_load(&m, a, &d, dir)) goto out;
    if (quant && !quantize_model(&m, a, &d, &spec, true, &qr)) goto out;
    const ModelConfig *c = &m.cfg;
    int n_moe = 0;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) n_moe += c->layer_is_moe[l];
    ParamCount pc = count_params(m.g, c);
    char buf[32];
    printf("model        %s\n", m.dir);
    printf("family       %s (%s)\n", m.arch->model_type, m.arch->hf_class);
    printf("layers       %" PRId64 " (%d MoE, %" PRId64 " dense)\n", c->num_hidden_layers, n_moe,
           c->num_hidden_layers - n_moe);
    printf("hidden       %" PRId64 ", vocab %" PRId64 ", heads %" PRId64 " (kv %" PRId64 ", head_dim %" PRId64 ")\n",
           c->hidden_size, c->vocab_size, c->num_attention_heads, c->num_key_value_heads, c->head_dim);
    printf("experts      %" PRId64 ", top-%" PRId64 " (%s), expert width %" PRId64, c->num_experts,
           c->num_experts_per_tok, c->norm_topk_prob ? "renormalised" : "not renormalised",
           c->expert_intermediate_size);
    if (c->shared_expert_intermediate_size) printf(", shared expert %" PRId64, c->shared_expert_intermediate_size);
    printf("\n");
    printf("context      max %" PRId64 " positions%s\n", c->max_position_embeddings,
           c->sliding_window ? ", sliding window" : "");
    if (c->sliding_window) printf("window       %" PRId64 "\n", c->sliding_window);
    printf("parameters   %" PRId64 " total (%.1f M), %" PRId64 " active per token (%.1f M)\n", pc.total,
           (double)pc.total / 1e6, pc.active, (double)pc.active / 1e6);
    printf("weights      ");
    bool first = true;
    for (int t = 0; t < DT_COUNT; t++) {
        size_t b = t == DT_I32 || t == DT_ROUTE ? 0 : st_bytes_of(&m.tt, (DType)t);
        if (!b) continue;
        human(buf, sizeof buf, (double)b);
        printf("%s%s %s", first ? "" : ", ", dtype_name((DType)t), buf);
        first = false;
    }
    int n_files = m.gguf_path ? m.gguf.n_parts : m.tt.n_shards;
    printf(" in %d %sfile%s\n", n_files, m.gguf_path ? "GGUF " : "", n_files == 1 ? "" : "s");
    if (m.gguf_path) print_gguf_types(&m.gguf);
    int64_t kv = 2 * c->num_hidden_layers * c->num_key_value_heads * c->head_dim * 4;
    human(buf, sizeof buf, (double)kv * (double)c->max_position_embeddings);
    printf("kv cache     %" PRId64 " bytes per token (f32 keys and values), %s at max context\n", kv, buf);
    Diag td = {.quiet = true}; /* the chat template moec compile would embed (frontend/chat_template.h) */
    const char *chat;
    size_t chat_len;
    if (!chat_template_load(a, &td, dir, NULL, &chat, &chat_len)) printf("chat         refused: %s\n", td.first);
    else if (chat) printf("chat         a template of %zu bytes, in the Jinja subset moec renders\n", chat_len);
    else printf("chat         no template (a compiled server refuses chat requests)\n");
    if (quant) print_quant(&qr, &spec);
    rc = 0;
out:
    diag_summary(&d);
    model_close(&m);
    arena_destroy(a);
    return rc;
}
