/* test_interp: the generic path's driver (compiler/interp/interp.c) in the bf16 activation mode, on
 * the qwen2_moe golden checkpoint (bf16 weights, a sigmoid-gated shared expert; skipped (77) when
 * ../shared is absent). After one prefill step every MATMUL node's output is recomputed from the
 * interpreter's own input buffer: the router's logits and the shared-expert gate's logit must be
 * the exact mode's bits, every other bf16 matrix the bf16 mode's bits, and each of the kept-exact
 * ones must differ from what the bf16 mode would give (so the rule is seen to act). */
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "interp/interp.h"
#include "test.h"

static bool same_floats(const float *a, const float *b, int64_t n) { return !memcmp(a, b, sizeof(float) * (size_t)n); }

int main(void) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/goldens/qwen2_moe_tiny_bf16/model", MOEC_SHARED_DIR);
    FILE *f = fopen(dir, "r");
    if (!f) test_skip("goldens/qwen2_moe_tiny_bf16 absent");
    fclose(f);
    Arena *a = arena_new();
    Diag d = {0};
    Model m;
    EXPECT_TRUE(model_load(&m, a, &d, dir));
    const Graph *g = m.g;
    const int32_t ids[] = {296, 169, 102, 127, 9, 163, 277}; /* the golden's prompt 0 */
    const int64_t T = sizeof ids / sizeof ids[0];
    Interp *ip = interp_new(g, T, T, 1, 0, GK_ACT_BF16);
    EXPECT_TRUE(ip != NULL);
    interp_step(ip, ids, T);
    bool *kept = calloc(g->n, sizeof(bool)); /* the router's and the shared-expert gate's inputs */
    for (uint32_t i = 0; i < g->n; i++)
        if (g->nodes[i].op == OP_ROUTER || g->nodes[i].op == OP_SIGMOID_SCALE) kept[g->nodes[i].in[0].id] = true;
    int n_kept = 0, n_bf16 = 0;
    for (uint32_t i = 0; i < g->n; i++) {
        const Node *n = &g->nodes[i];
        if (n->op != OP_MATMUL) continue;
        const Node *w = ir_node(g, n->in[1]), *b = n->n_in > 2 ? ir_node(g, n->in[2]) : NULL;
        const int64_t K = ir_node(g, n->in[0])->shape[1], N = n->shape[1];
        const float *x = interp_value(ip, n->in[0]), *y = interp_value(ip, (ValueId){i});
        float *ex = malloc(sizeof(float) * (size_t)(T * N)), *bf = malloc(sizeof(float) * (size_t)(T * N));
        const void *bias = b ? b->a.weight.parts[0]->data : NULL;
        DType bdt = b ? b->dtype : DT_F32;
        gk_matmul(ex, x, T, K, w->a.weight.parts[0]->data, w->dtype, N, bias, bdt, GK_ACT_EXACT);
        gk_matmul(bf, x, T, K, w->a.weight.parts[0]->data, w->dtype, N, bias, bdt, GK_ACT_BF16);
        EXPECT_EQ(w->dtype, DT_BF16);
        if (kept[i]) {
            n_kept++;
            if (!same_floats(y, ex, T * N)) fprintf(stderr, "%s: not the exact mode's logits\n", n->name);
            EXPECT_TRUE(same_floats(y, ex, T * N));
            EXPECT_TRUE(!same_floats(ex, bf, T * N)); /* the bf16 mode would have moved them */
        } else {
            n_bf16++;
            if (!same_floats(y, bf, T * N)) fprintf(stderr, "%s: not the bf16 mode's output\n", n->name);
            EXPECT_TRUE(same_floats(y, bf, T * N));
        }
        free(ex), free(bf);
    }
    /* 2 MoE layers: 2 routers and 2 shared-expert gates; q, k, v, o, shared gate/up/down per layer
     * and the LM head in bf16 */
    EXPECT_EQ(n_kept, 4);
    EXPECT_EQ(n_bf16, 2 * 7 + 1);
    free(kept);
    interp_free(ip);
    model_close(&m);
    arena_destroy(a);
    return test_done();
}
