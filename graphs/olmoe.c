/* olmoe: OlmoeForCausalLM (SEMANTICS.md §1-§10). Every layer MoE; full-width q/k RMSNorm before the
 * head split; clip_qkv clamps q, k and v after the norms; renormalise iff norm_topk_prob. */
#include "graphs.h"

const MoeNames olmoe_names = {"mlp.", "gate_proj", "up_proj", "down_proj"};

void olmoe_config(ConfigReader *r, ModelConfig *c) {
    static const ConfigDefaults def = {.num_key_value_heads = 0, .num_experts_per_tok = 8, .rms_norm_eps = 1e-5,
                                       .rope_theta = 1e4, .max_position_embeddings = 4096};
    gb_read_common(r, c, &def);
    if (cfg_has(r, "head_dim"))
        cfg_check(r, cfg_int(r, "head_dim", 0) == c->head_dim, "head_dim", "hidden_size / num_attention_heads for olmoe",
                  cfg_int(r, "head_dim", 0));
    c->num_experts = cfg_int_req(r, "num_experts");
    c->expert_intermediate_size = cfg_int_req(r, "intermediate_size");
    c->norm_topk_prob = cfg_bool(r, "norm_topk_prob", false);
    c->qkv_bias = c->o_bias = cfg_bool(r, "attention_bias", false);
    c->qk_norm = QK_NORM_FULL;
    c->clip_qkv = cfg_num(r, "clip_qkv", 0);
    if (cfg_has(r, "clip_qkv") && !(c->clip_qkv > 0))
        diag_error(r->d, "%s: key '%s': must be > 0 or null; got %g", r->file, cfg_key(r, "clip_qkv"), c->clip_qkv);
    gb_check_config(r, c);
}

void olmoe_build(GraphBuilder *b) { gb_decoder(b, &olmoe_names); }
