/* qwen2_moe and qwen3_moe: Qwen2MoeForCausalLM, Qwen3MoeForCausalLM (SEMANTICS.md §1-§10).
 * Dense SiLU MLP layers by decoder_sparse_step / mlp_only_layers; top-k renormalised iff
 * norm_topk_prob. qwen2_moe: q/k/v biases (qkv_bias), sigmoid-gated shared expert, head_dim = H/nh.
 * qwen3_moe: per-head q/k RMSNorm, explicit head_dim, biases iff attention_bias.
 * use_sliding_window true is refused (HF's eager and flash paths disagree on which layers window). */
#include <inttypes.h>

#include "graphs.h"

const MoeNames qwen_names = {"mlp.", "gate_proj", "up_proj", "down_proj"};

static void qwen_common(ConfigReader *r, ModelConfig *c, const ConfigDefaults *def) {
    gb_read_common(r, c, def);
    c->num_experts = cfg_int_req(r, "num_experts");
    c->expert_intermediate_size = cfg_int_req(r, "moe_intermediate_size");
    c->dense_intermediate_size = cfg_int(r, "intermediate_size", 0);
    c->norm_topk_prob = cfg_bool(r, "norm_topk_prob", false);
    if (cfg_bool(r, "use_sliding_window", false))
        diag_error(r->d, "%s: key 'use_sliding_window': true is not supported for %s; expected false", r->file,
                   c->model_type);
    int64_t step = cfg_int(r, "decoder_sparse_step", 1);
    int64_t *only;
    int n_only = cfg_int_list(r, "mlp_only_layers", &only);
    bool any_dense = false;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        bool listed = false;
        for (int i = 0; i < n_only; i++) listed |= only[i] == l;
        c->layer_is_moe[l] = !listed && c->num_experts > 0 && step > 0 && (l + 1) % step == 0;
        any_dense |= !c->layer_is_moe[l];
    }
    cfg_check(r, step >= 1, "decoder_sparse_step", ">= 1", step);
    if (any_dense) cfg_check(r, c->dense_intermediate_size > 0, "intermediate_size", "> 0 (dense layers need it)",
                             c->dense_intermediate_size);
}

void qwen2_moe_config(ConfigReader *r, ModelConfig *c) {
    static const ConfigDefaults def = {.num_key_value_heads = 16, .num_experts_per_tok = 4, .rms_norm_eps = 1e-6,
                                       .rope_theta = 1e4, .max_position_embeddings = 32768};
    qwen_common(r, c, &def);
    /* Attention always uses H/nh; a stated head_dim must agree (HF's RoPE reads it). */
    if (cfg_has(r, "head_dim"))
        cfg_check(r, cfg_int(r, "head_dim", 0) == c->head_dim, "head_dim",
                  "hidden_size / num_attention_heads for qwen2_moe", cfg_int(r, "head_dim", 0));
    c->qkv_bias = cfg_bool(r, "qkv_bias", true);
    c->shared_expert_intermediate_size = cfg_int(r, "shared_expert_intermediate_size", 5632);
    cfg_check(r, c->shared_expert_intermediate_size > 0, "shared_expert_intermediate_size", "> 0",
              c->shared_expert_intermediate_size);
    gb_check_config(r, c);
}

void qwen3_moe_config(ConfigReader *r, ModelConfig *c) {
    static const ConfigDefaults def = {.num_key_value_heads = 4, .num_experts_per_tok = 8, .rms_norm_eps = 1e-6,
                                       .rope_theta = 1e4, .max_position_embeddings = 32768};
    qwen_common(r, c, &def);
    c->head_dim = cfg_int(r, "head_dim", c->head_dim);
    c->qkv_bias = c->o_bias = cfg_bool(r, "attention_bias", false);
    c->qk_norm = QK_NORM_PER_HEAD;
    gb_check_config(r, c);
}

void qwen_moe_build(GraphBuilder *b) { gb_decoder(b, &qwen_names); }
