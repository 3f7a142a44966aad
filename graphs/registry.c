/* registry: model_type -> family. Adding a family: one file in graphs/, one line here. */
#include <string.h>

#include "graphs.h"

extern const MoeNames mixtral_names, qwen_names, olmoe_names;
void mixtral_config(ConfigReader *r, ModelConfig *c);
void mixtral_build(GraphBuilder *b);
void qwen2_moe_config(ConfigReader *r, ModelConfig *c);
void qwen3_moe_config(ConfigReader *r, ModelConfig *c);
void qwen_moe_build(GraphBuilder *b);
void olmoe_config(ConfigReader *r, ModelConfig *c);
void olmoe_build(GraphBuilder *b);

static const Arch archs[] = {
    {"mixtral", "MixtralForCausalLM", &mixtral_names, mixtral_config, mixtral_build},
    {"qwen2_moe", "Qwen2MoeForCausalLM", &qwen_names, qwen2_moe_config, qwen_moe_build},
    {"qwen3_moe", "Qwen3MoeForCausalLM", &qwen_names, qwen3_moe_config, qwen_moe_build},
    {"olmoe", "OlmoeForCausalLM", &olmoe_names, olmoe_config, olmoe_build},
};

const Arch *arch_find(const char *model_type) {
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(archs[i].model_type, model_type) == 0) return &archs[i];
    return NULL;
}

const char *arch_names(void) { return "mixtral, qwen2_moe, qwen3_moe, olmoe"; }
