/* fuzz_weights: a compiled model's weights file through moe_weights_verify (`moec verify`): the
 * .moew header, or an executable's MoeTrailer and the header it points to, the sections, the
 * mapping and the hash over them; the same locate/map code moe_model_load runs. */
#include "fuzz_util.h"
#include "moe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("model.moew", data, size);
    char err[512];
    uint64_t hash;
    moe_weights_verify(path, &hash, err, sizeof err);
    return 0;
}
