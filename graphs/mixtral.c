/* mixtral: MixtralForCausalLM (SEMANTICS.md §1-§10). Every layer MoE, top-k always renormalised,
 * optional sliding window on every layer, head_dim honoured, no biases, no q/k norms. */
#include "graphs.h"

const MoeNames mixtral_names = {"block_sparse_moe.", "w1", "w3", "w2"};

void mixtral_config(ConfigReader *r, ModelConfig *c) {
    static const ConfigDefaults def = {.num_key_value_heads = 8, .num_experts_per_tok = 2, .rms_norm_eps = 1e-5,
                                       .rope_theta = 1e6, .max_position_embeddings = 131072};
    gb_read_common(r, c, &def);
    c->head_dim = cfg_int(r, "head_dim", c->head_dim);
    c->num_experts = cfg_int_req(r, "num_local_experts");
    c->expert_intermediate_size = cfg_int_req(r, "intermediate_size");
    c->norm_topk_prob = true;
    c->sliding_window = cfg_int(r, "sliding_window", 0);
    if (cfg_has(r, "sliding_window")) cfg_check(r, c->sliding_window > 0, "sliding_window", "> 0 or null", c->sliding_window);
    gb_check_config(r, c);
}

void mixtral_build(GraphBuilder *b) { gb_decoder(b, &mixtral_names); }
