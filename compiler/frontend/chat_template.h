/* chat_template: the model's chat template, found where Hugging Face and llama.cpp keep it, and
 * checked against the Jinja subset the runtime renders (runtime/jinja.h) before it is embedded.
 * Where it comes from, first found wins:
 *   --chat-template FILE        the whole file is the template
 *   a GGUF model                its tokenizer.chat_template key
 *   chat_template.jinja         beside config.json (how newer transformers save it)
 *   tokenizer_config.json       its "chat_template": a string, or a list of {"name", "template"}
 *                               from which the one named "default" is taken
 * The text is copied into the caller's Arena. */
#ifndef MOEC_CHAT_TEMPLATE_H
#define MOEC_CHAT_TEMPLATE_H
#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "diag.h"

/* The template of the model at model_path (a Hugging Face folder or a GGUF model), or the file
 * override when not NULL: *text and *len set (*text NULL when the model has none, which is no
 * error). False after one diag_error naming the file when the template cannot be read or uses
 * anything outside the subset ("FILE: chat template: line 3: filter 'wordcount' is not
 * supported"). */
bool chat_template_load(Arena *a, Diag *d, const char *model_path, const char *override, const char **text,
                        size_t *len);

#endif
