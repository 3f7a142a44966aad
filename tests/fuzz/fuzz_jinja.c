/* fuzz_jinja: a chat template, as `moec compile` reads one (tokenizer_config.json, a GGUF key or
 * --chat-template FILE), through moe_jinja_parse, then moe_chat_render with a fixed conversation
 * (system, user, assistant with a <think> block, tool, user), with and without the generation
 * prompt. The bounds of runtime/jinja.h (depth, output, memory, steps) must hold: no crash, no
 * leak, no input that runs past libFuzzer's timeout. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const MoeChatMessage msgs[] = {
        {"system", "You are terse."},
        {"user", "Hi \xc3\xa9\xe4\xb8\xad"},
        {"assistant", "<think>\nhmm\n</think>\n\nHello!"},
        {"tool", "<tool_response>42</tool_response>"},
        {"user", NULL},
    };
    char *src = malloc(size + 1);
    if (!src) return 0;
    memcpy(src, data, size);
    src[size] = 0;
    char err[256];
    MoeJinja *t = moe_jinja_parse(src, err, sizeof err);
    free(src);
    if (!t) return 0;
    for (int agp = 0; agp < 2; agp++) {
        char *out = NULL;
        if (moe_chat_render(t, msgs, 5, agp, "<s>", "</s>", &out, err, sizeof err) == 0) free(out);
    }
    moe_jinja_free(t);
    return 0;
}
