/* fuzz_safetensors: a safetensors file (first byte even) or a model.safetensors.index.json (odd)
 * through st_open_dir, as `moec run DIR` opens them. The index is fuzzed beside two real shards
 * (written once) so that its names can point at files that exist. Every tensor st_open_dir
 * accepts is read to its last byte: a range it let through outside the mapping would fault. */
#include "fuzz_util.h"
#include "safetensors.h"

static void write_shards(void) {
    static const uint16_t a[6] = {1, 2, 3, 4, 5, 6};
    static const float b[4] = {1, 2, 3, 4};
    StWriteTensor ta = {"model.a", DT_BF16, 2, {2, 3}, a}, tb = {"model.b", DT_F32, 1, {4}, b};
    Diag d = {.quiet = true};
    char path[512];
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", fuzz_dir());
    if (!st_write_file(&d, path, &ta, 1)) abort();
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", fuzz_dir());
    if (!st_write_file(&d, path, &tb, 1)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init++) write_shards();
    if (size < 1) return 0;
    char index[512], single[512];
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", fuzz_dir());
    snprintf(single, sizeof single, "%s/model.safetensors", fuzz_dir());
    unlink(index);
    unlink(single);
    fuzz_file(data[0] & 1 ? "model.safetensors.index.json" : "model.safetensors", data + 1, size - 1);
    Arena *a = arena_new();
    Diag d = {.quiet = true};
    TensorTable tt = {0};
    if (st_open_dir(&tt, a, &d, fuzz_dir())) {
        volatile unsigned sum = 0;
        for (int i = 0; i < tt.n; i++)
            for (size_t j = 0; j < tt.t[i].nbytes; j++) sum += ((const unsigned char *)tt.t[i].data)[j];
        (void)st_find(&tt, "model.a");
    }
    st_close(&tt);
    arena_destroy(a);
    return 0;
}
