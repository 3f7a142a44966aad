/* fuzz_config: config.json through model_load_config, so every family's config reader
 * (graphs/<arch>.c) and the shared validation (hfconfig.c, graphs/blocks.c) see the bytes. */
#include "frontend.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_file("config.json", data, size);
    Arena *a = arena_new();
    Diag d = {.quiet = true};
    Model m;
    model_load_config(&m, a, &d, fuzz_dir());
    arena_destroy(a);
    return 0;
}
