/* artifact: the files `moec compile` writes. The packed weights file (.moew, runtime/format.h),
 * with the model hash computed while it is written; linking the object with libmoert through the
 * system C compiler driver (for AArch64 from another machine: the cross driver and the AArch64
 * libmoert built beside moec); appending the weights to the executable (embedded mode). Every
 * output goes through a temporary name and is renamed into place only when complete. */
#ifndef MOEC_ARTIFACT_H
#define MOEC_ARTIFACT_H
#include <stdbool.h>
#include <stdint.h>

#include "diag.h"
#include "passes/passes.h"

/* The model hash (runtime/hash.h, seeded by the family) of the packed weights, without writing them. */
bool artifact_hash_weights(const PackTable *pt, const char *family, uint64_t *hash, bool progress);
/* Writes path (a .moew file) with the weights section, an optional tokenizer blob and an optional
 * chat template (its text; the section holds it and a NUL); *hash gets the model hash: seeded by the family, over the
 * weights, then the tokenizer bytes, then the chat template section (what moe_model_verify
 * recomputes). Shows a progress line on stderr when progress. */
bool artifact_write_weights(Diag *d, const char *path, const PackTable *pt, const char *family, const void *tok_blob,
                            size_t tok_len, const char *chat_template, size_t chat_len, uint64_t *hash, bool progress);
/* Whether an executable for triple (normalised; NULL: this machine) can be linked: its runtime
 * archives and linker driver are there (AArch64 Linux from another machine: the cross runtime and
 * driver). Otherwise one diag_error naming what to install. */
bool artifact_can_link(Diag *d, const char *triple);
/* Links obj with libmoert for triple into an executable at exe_path (written as given: the caller
 * renames). */
bool artifact_link(Diag *d, const char *obj_path, const char *exe_path, const char *triple);
/* Appends the .moew file's bytes to exe_path, 4096-aligned, followed by a MoeTrailer. */
bool artifact_embed(Diag *d, const char *exe_path, const char *weights_path);

#endif
