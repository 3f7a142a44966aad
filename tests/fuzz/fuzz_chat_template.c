/* fuzz_chat_template: compiler/frontend/chat_template.c, where `moec compile` finds a model's chat
 * template: the bytes as the model folder's tokenizer_config.json (its "chat_template": a string,
 * null, or a list of {"name", "template"}), then as a --chat-template FILE; the template found goes
 * through the same check of the Jinja subset (runtime/jinja.c, fuzzed alone by fuzz_jinja). */
#include "chat_template.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_file("tokenizer_config.json", data, size);
    const char *tpl = fuzz_file("template.jinja", data, size);
    char override[512];
    snprintf(override, sizeof override, "%s", tpl);
    for (int k = 0; k < 2; k++) {
        Arena *a = arena_new();
        Diag d = {.quiet = true};
        const char *text;
        size_t len;
        (void)chat_template_load(a, &d, fuzz_dir(), k ? override : NULL, &text, &len);
        arena_destroy(a);
    }
    return 0;
}
