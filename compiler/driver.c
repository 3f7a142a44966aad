/* The compile pipeline:
 *   model_load            config.json + safetensors -> graph (T symbolic)
 *   chat_template_load    the chat template, checked against the runtime's Jinja subset
 *   quantize_model        --quant: weight matrices block-quantised (frontend/quantize.h)
 *   pass_specialize x2    prefill (T = P) and decode (T = B), capacity bound
 *   pass_fuse x2          fused kernel graphs, packed weight nodes
 *   pass_pack             one weights layout for both
 *   pass_plan x2          static arena offsets
 *   weights               packed into OUT.moew (hash computed on the way)
 *   program_emit          LLVM: specialised kernels + step functions + manifest
 *   cg_optimize, cg_emit  O3 for the target, object / asm / IR
 *   artifact_link/embed   executable = object + libmoert (+ weights appended) */
#include "driver.h"

#include <inttypes.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifact.h"
#include "backend/program.h"
#include "chat_template.h"
#include "cli.h"
#include "outfile.h"
#include "frontend.h"
#include "gguf_tok.h"
#include "kernels/kt_quant.h"
#include "passes/passes.h"
#include "quantize.h"
#include "tokjson.h"

static void dump(const CompileOptions *o, const char *pass, const char *what, const Graph *g) {
    if (!o->dump_after || strcmp(o->dump_after, pass) != 0) return;
    printf("# after %s (%s)\n", pass, what);
    ir_print(g, stdout);
}

static bool known_pass(const char *p) {
    return !strcmp(p, "build") || !strcmp(p, "specialize") || !strcmp(p, "fuse") || !strcmp(p, "pack") ||
           !strcmp(p, "plan");
}

static void fill_manifest(MoeManifest *m, const Model *md, const CompileOptions *o, const Graph *fp, const Graph *fd,
                          const KvLayout *kv, const PackTable *pt, Codegen *cg, int64_t S, int64_t P, int64_t threads) {
    const ModelConfig *c = &md->cfg;
    memset(m, 0, sizeof *m);
    m->format_version = MOE_FORMAT_VERSION;
    m->n_layers = (uint32_t)c->num_hidden_layers;
    snprintf(m->family, sizeof m->family, "%s", md->arch->model_type);
    snprintf(m->target, sizeof m->target, "%s", cg_triple(cg));
    snprintf(m->cpu, sizeof m->cpu, "%s", cg_cpu(cg));
    m->vocab_size = c->vocab_size;
    m->n_exp = c->num_experts;
    m->top_k = c->num_experts_per_tok;
    m->batch = o->batch;
    m->context = S;
    m->prefill_chunk = P;
    m->arena_bytes = fp->arena_bytes > fd->arena_bytes ? fp->arena_bytes : fd->arena_bytes;
    m->kv_bytes = kv->total;
    m->weights_bytes = pt->total;
    m->logits_prefill = ir_node(fp, fp->logits)->offset;
    m->logits_decode = ir_node(fd, fd->logits)->offset;
    for (int l = 0; l < MOE_MAX_LAYERS; l++) m->routes_prefill[l] = m->routes_decode[l] = -1;
    for (int pass = 0; pass < 2; pass++) {
        const Graph *g = pass ? fd : fp;
        for (uint32_t i = 0; i < g->n; i++) {
            const Node *n = &g->nodes[i];
            if (n->op != OP_FROUTER) continue;
            (pass ? m->routes_decode : m->routes_prefill)[n->a.ffn.layer] = n->offset;
            (pass ? &m->capacity_decode : &m->capacity_prefill)[0] = n->a.ffn.capacity;
        }
    }
    /* where each MoE layer's routed experts sit in the weights (the runtime's expert table and pool) */
    for (int l = 0; l < MOE_MAX_LAYERS; l++) m->experts[l] = (MoeExpertLoc){-1, 0, -1, 0};
    for (uint32_t i = 0; i < fp->n; i++) {
        const Node *n = &fp->nodes[i];
        int gu = n->op == OP_FEXPERTS || n->op == OP_FEXPERTS_ACT ? 3 : -1;
        int dn = n->op == OP_FEXPERTS ? 4 : n->op == OP_FEXPERTS_DOWN ? 3 : -1;
        if ((gu < 0 && dn < 0) || n->a.ffn.n_exp == 0) continue;
        MoeExpertLoc *xl = &m->experts[n->a.ffn.layer];
        for (int w = 0; w < 2; w++) {
            int k = w ? dn : gu;
            if (k < 0) continue;
            int64_t off = ir_node(fp, n->in[k])->a.weight.offset, bytes = -1;
            for (int j = 0; j < pt->n; j++)
                if (pt->e[j].offset == off) bytes = pt->e[j].bytes;
            MOE_ASSERT(bytes > 0 && bytes % n->a.ffn.n_exp == 0);
            if (w) xl->down = off, xl->down_bytes = bytes / n->a.ffn.n_exp;
            else xl->gate_up = off, xl->gate_up_bytes = bytes / n->a.ffn.n_exp;
        }
    }
    m->bos_token_id = c->bos_token_id;
    m->eos_token_id = c->eos_token_id;
    m->weight_dtype = DT_F32;
    for (int i = 0; i < pt->n; i++)
        if (pt->e[i].dtype == DT_BF16) m->weight_dtype = DT_BF16;
    m->max_threads = threads;
    for (int pass = 0; pass < 2; pass++) {
        const Graph *g = pass ? fd : fp;
        for (uint32_t i = 0; i < g->n; i++)
            if ((g->nodes[i].op == OP_FNORM_MATMUL && g->nodes[i].a.norm.amx) ||
                (g->nodes[i].op == OP_FEXPERTS && g->nodes[i].a.ffn.amx))
                m->needs |= MOE_NEED_AMX;
    }
}

/* The model folder's tokenizer.json (or a GGUF model's tokenizer), serialised for the runtime,
 * when there is one it supports; otherwise the executable works with --tokens only (a note says
 * why). */
static void load_tokenizer(Arena *a, const CompileOptions *o, void **blob, size_t *len) {
    char *path = arena_printf(a, "%s/tokenizer.json", o->model_dir);
    Diag td = {.quiet = true};
    bool is_gguf, ok = gguf_tokenizer_load(a, &td, o->model_dir, &is_gguf, blob, len);
    if (ok && !is_gguf) {
        if (access(path, R_OK) != 0) return;
        ok = tokjson_load(a, &td, path, blob, len);
    }
    if (!ok) {
        *blob = NULL;
        *len = 0;
        fprintf(stderr, "moec: note: tokenizer not embedded (the executable takes --tokens only): %s\n", td.first);
    }
}

/* Default tokens per prefill step: enough that an expert sees about 128 tokens of a full chunk
 * (P k / E >= 128: each expert's weights, read from memory once per chunk, feed several register or
 * AMX tile passes), a power of two in [128, 512], at most the context. A partial chunk costs only
 * its real rows, so a larger P does not slow short prompts much. Mixtral (8 experts, top-2) and
 * Qwen3-MoE (128, top-8): 512. Measured: Mixtral bench, 512-token prompt, AMX 929 -> 1460 tok/s
 * against a 128-token chunk; Zen 5 without AMX 620 -> 755 (exact) and 1150 -> 1380 (bf16 mode), a
 * 128-token prompt within ~5% either way. */
static int64_t default_prefill_chunk(const ModelConfig *c, int64_t S) {
    int64_t P = 128, want = c->num_experts_per_tok > 0 ? 128 * c->num_experts / c->num_experts_per_tok : 128;
    while (P < want && P < 512) P *= 2;
    return P < S ? P : S;
}

/* The compile summary's note on the activation mode (empty: exact). */
static const char *act_note(int32_t bits) {
    if (bits & KT_ACT_I8) return bits & KT_DP_VNNI ? " (int8 activations, VNNI)" : " (int8 activations)";
    if (bits & KT_ACT_BF16) return bits & KT_DP_BF16 ? " (bf16 activations, AVX512_BF16)" : " (bf16 activations)";
    return "";
}

int compile_model(const CompileOptions *o, Diag *d) {
    double t0 = moe_now_s();
    if (o->dump_after && !known_pass(o->dump_after)) {
        diag_error(d, "--dump-after: unknown pass '%s'; expected build, specialize, fuse, pack or plan", o->dump_after);
        return 2;
    }
    Arena *a = arena_new();
    Model md;
    Codegen *cg = NULL;
    int rc = 1;
    char *wtmp = NULL, *otmp = NULL, *etmp = NULL;
    if (!model_load(&md, a, d, o->model_dir)) goto out;
    const char *chat = NULL; /* embedded for the server (runtime/jinja.h); refused here if unsupported */
    size_t chat_len = 0;
    if (!o->no_chat_template && !chat_template_load(a, d, o->model_dir, o->chat_template, &chat, &chat_len)) goto out;
    if (o->quant) {
        QuantReport qr;
        if (!quantize_model(&md, a, d, o->quant, false, &qr)) goto out;
        if (!o->quiet) quantize_report_summary(&qr, o->quant, stderr);
    }
    const ModelConfig *c = &md.cfg;
    if (md.cfg.num_hidden_layers > MOE_MAX_LAYERS) {
        diag_error(d, "%s: %" PRId64 " layers; moec supports at most %d", o->model_dir, c->num_hidden_layers,
                   MOE_MAX_LAYERS);
        goto out;
    }
    dump(o, "build", "graph", md.g);
    /* shapes */
    int64_t S = o->context ? o->context : (c->max_position_embeddings < 4096 ? c->max_position_embeddings : 4096);
    if (S > c->max_position_embeddings) {
        diag_error(d, "--context: %" PRId64 " positions; expected at most max_position_embeddings (%" PRId64 ")", S,
                   c->max_position_embeddings);
        goto out;
    }
    if (!(cg = cg_new(d, &(CgTarget){o->triple, o->cpu, o->features, 3}))) goto out;
    if (o->emit == EMIT_EXE && !artifact_can_link(d, cg_triple(cg))) goto out; /* before the work */
    /* AMX tiles where the target has them ("--features -amx-bf16" turns them off), 3 planes unless asked */
    /* (--act bf16: one plane, the activations rounded to bf16 as the other tiles round them) */
    int amx = !cg_has_feature(cg, "amx-tile") || !cg_has_feature(cg, "amx-bf16") ? 0
              : o->amx_planes                                                  ? o->amx_planes
              : o->act == GK_ACT_BF16                                          ? 1
                                                                               : 3;
    if (o->amx_planes && !amx && !o->quiet)
        fprintf(stderr, "moec: note: --amx-planes: target %s/%s has no AMX-BF16 tiles; prefill uses the FMA tile\n",
                cg_triple(cg), cg_cpu(cg));
    int64_t P = o->prefill_chunk ? o->prefill_chunk : default_prefill_chunk(c, S);
    if (P > S) {
        diag_error(d, "--prefill-chunk: %" PRId64 " tokens; expected at most the context (%" PRId64 ")", P, S);
        goto out;
    }
    int64_t threads = o->threads ? o->threads : omp_get_num_procs();

    Graph *sp = pass_specialize(a, md.g, P, o->capacity_factor);
    Graph *sd = pass_specialize(a, md.g, o->batch, o->capacity_factor);
    /* --act int8: vpdpbusd where the target has AVX512-VNNI; --act bf16: vdpbf16ps where it has
     * AVX512_BF16; else the kernels' portable code. Narrower vectors than AVX-512's: narrow tiles. */
    sp->act_bits = sd->act_bits =
        (o->act == GK_ACT_INT8   ? KT_ACT_I8 | (cg_has_feature(cg, "avx512vnni") ? KT_DP_VNNI : 0)
         : o->act == GK_ACT_BF16 ? KT_ACT_BF16 | (cg_has_feature(cg, "avx512bf16") ? KT_DP_BF16 : 0)
                                 : 0) |
        (cg_has_feature(cg, "avx512f") ? 0 : KT_NARROW);
    dump(o, "specialize", "prefill", sp);
    dump(o, "specialize", "decode", sd);
    if (!ir_verify(sp, d) || !ir_verify(sd, d)) goto out;
    Graph *fp = pass_fuse(a, sp, threads, S, amx, d), *fd = fp ? pass_fuse(a, sd, threads, S, amx, d) : NULL;
    if (!fd) goto out;
    dump(o, "fuse", "prefill", fp);
    dump(o, "fuse", "decode", fd);
    if (!ir_verify(fp, d) || !ir_verify(fd, d)) goto out;
    PackTable pt = {0};
    pass_pack(a, &pt, fp);
    pass_pack(a, &pt, fd);
    for (int t = 0; t < DT_COUNT; t++)
        if ((pt.dequantised >> t & 1) && !o->quiet)
            fprintf(stderr, "moec: note: %s matrices run dequantised to f32 (%s)\n", dtype_name((DType)t),
                    kt_is_q(t) ? "stacked with another type" : "no kernel for it");
    dump(o, "pack", "prefill", fp);
    dump(o, "pack", "decode", fd);
    pass_plan(fp);
    pass_plan(fd);
    dump(o, "plan", "prefill", fp);
    dump(o, "plan", "decode", fd);
    if (o->dump_after) {
        rc = 0;
        goto out;
    }
    KvLayout kv;
    program_kv_layout(fp, S, o->batch, &kv); /* a partial chunk writes the KV of its real rows only */

    /* weights first: the manifest carries their hash */
    uint64_t hash;
    bool progress = !o->quiet && isatty(2);
    /* an executable's weights, or an object's when asked for beside it (to link into a C program) */
    if (o->emit == EMIT_EXE || (o->emit == EMIT_OBJ && o->sidecar)) {
        void *tok = NULL;
        size_t tok_len = 0;
        load_tokenizer(a, o, &tok, &tok_len);
        wtmp = arena_printf(a, "%s%s.tmp.%d", o->out, o->sidecar ? ".moew" : ".weights", (int)getpid());
        if (!artifact_write_weights(d, wtmp, &pt, md.arch->model_type, tok, tok_len, chat, chat_len, &hash, progress))
            goto out;
    } else if (!artifact_hash_weights(&pt, md.arch->model_type, &hash, progress)) {
        diag_error(d, "%s: cannot read the weights", o->model_dir);
        goto out;
    }
    MoeManifest man;
    fill_manifest(&man, &md, o, fp, fd, &kv, &pt, cg, S, P, threads);
    man.model_hash = hash;
    if (!program_emit(cg, fp, fd, &kv, &man, d) || !cg_optimize(cg)) goto out;

    if (o->emit != EMIT_EXE) {
        CgEmitKind k = o->emit == EMIT_OBJ ? CG_EMIT_OBJ : o->emit == EMIT_ASM ? CG_EMIT_ASM : CG_EMIT_LLVM;
        if (!cg_emit(cg, k, o->out)) goto out;
        if (wtmp) {
            char *side = arena_printf(a, "%s.moew", o->out);
            if (rename(wtmp, side) != 0) {
                diag_error(d, "%s: cannot rename into place", side);
                goto out;
            }
            wtmp = NULL;
        }
    } else {
        otmp = arena_printf(a, "%s.o.tmp.%d", o->out, (int)getpid());
        etmp = arena_printf(a, "%s.tmp.%d", o->out, (int)getpid());
        if (!cg_emit(cg, CG_EMIT_OBJ, otmp) || !artifact_link(d, otmp, etmp, cg_triple(cg))) goto out;
        if (!o->sidecar && !artifact_embed(d, etmp, wtmp)) goto out;
        if (o->sidecar) {
            char *side = arena_printf(a, "%s.moew", o->out);
            if (rename(wtmp, side) != 0) {
                diag_error(d, "%s: cannot rename into place", side);
                goto out;
            }
            wtmp = NULL;
        }
        if (rename(etmp, o->out) != 0) {
            diag_error(d, "%s: cannot rename into place", o->out);
            goto out;
        }
        etmp = NULL;
    }
    if (o->manifest_out) *o->manifest_out = man;
    if (!o->quiet)
        fprintf(stderr, "moec: compiled %s (%s, %" PRId64 " layers) for %s/%s%s%s in %.2f s -> %s\n", o->model_dir,
                md.arch->model_type, c->num_hidden_layers, cg_triple(cg), cg_cpu(cg),
                man.needs & MOE_NEED_AMX ? " (prefill on AMX tiles)" : "",
                act_note(sp->act_bits),
                moe_now_s() - t0, o->out);
    rc = 0;
out:
    if (wtmp) unlink(wtmp);
    if (otmp) unlink(otmp);
    if (etmp) unlink(etmp);
    if (cg) cg_free(cg);
    model_close(&md);
    arena_destroy(a);
    return rc;
}
