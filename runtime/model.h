/* model: libmoert's internals around the public MoeModel (include/moe.h), for the runtime's own
 * files and tests; not part of the public API. */
#ifndef MOERT_MODEL_H
#define MOERT_MODEL_H
#include <stdint.h>

#include "format.h"
#include "moe.h"

/* moe_model_load with the weights embedded in the executable at exe_path (moe_model_load(NULL)
 * uses /proc/self/exe): the file ends with a MoeTrailer whose header_offset, a multiple of
 * MOE_ALIGN, locates the MoeWeightsHeader. */
MoeStatus moert_model_load_embedded(MoeModel **out, const MoeProgram *prog, const char *exe_path, int n_threads,
                                    char *err, size_t errlen);
/* The same with a memory budget (MoeLoadOptions.memory_bytes, 0: none). */
MoeStatus moert_model_load_embedded_opts(MoeModel **out, const MoeProgram *prog, const char *exe_path, int n_threads,
                                         int64_t memory_bytes, char *err, size_t errlen);
/* The MOE_SECTION_TOKENIZER bytes (*bytes set), or NULL when the weights carry none. */
const void *moert_model_tokenizer(const MoeModel *m, uint64_t *bytes);
/* The MOE_SECTION_CHAT_TEMPLATE text, NUL-terminated (*bytes: its length without the NUL), or NULL
 * when the weights carry none (the model was compiled without a chat template). */
const char *moert_model_chat_template(const MoeModel *m, uint64_t *bytes);
/* The threads each step runs on. */
int moert_model_threads(const MoeModel *m);

#endif
