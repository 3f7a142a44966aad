/* textio: text in and text out for the generation CLIs (`moec run` and compiled executables).
 * Reading a prompt from a file or stdin, and streaming generated tokens as text: bytes are
 * written as soon as they are final, never splitting a UTF-8 character (runtime/tokenizer.h). */
#ifndef MOE_TEXTIO_H
#define MOE_TEXTIO_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tokenizer.h"

/* Parses a --tokens value, "1,2,3" (ids in [0, INT32_MAX], comma-separated), into a malloc'd
 * array *ids of *n ids: MOE_IDS_OK, or why not (nothing allocated then). */
enum { MOE_IDS_OK, MOE_IDS_MALFORMED, MOE_IDS_EMPTY, MOE_IDS_NOMEM };
int moe_parse_ids(const char *s, int32_t **ids, int64_t *n);
/* The one-line reason for a moe_parse_ids status. */
const char *moe_parse_ids_error(int status);

/* The whole file ("-": stdin) as a malloc'd NUL-terminated string, its length in *len (may be
 * NULL); NULL (errno set) when it cannot be opened or read, or memory runs out. */
char *moe_read_text(const char *path, size_t *len);

/* The generated tokens of a generation CLI on f: as text streamed token by token (a tokenizer),
 * up to the end-of-sequence token; or (no tokenizer) as the ids, comma-separated, at the end. */
typedef struct MoeTextOut {
    MoeTokStream *st; /* NULL: ids mode */
    FILE *f;
    int32_t eos;      /* text mode: the id that ends generation */
} MoeTextOut;

/* Starts the output: text mode when t is not NULL, ending at t's end-of-sequence token or, when t
 * names none, at eos (the model's; -1: none). False when out of memory. */
bool moe_text_begin(MoeTextOut *o, const MoeTokenizer *t, int32_t eos, FILE *f);
/* Takes generated token id: in text mode writes what it makes final (and flushes f), or returns
 * false, writing nothing, when it is the end-of-sequence token; in ids mode returns true. */
bool moe_text_token(MoeTextOut *o, int32_t id);
/* Ends the output of the n tokens ids taken: the rest of the text, or the ids; then a newline.
 * Frees the stream. */
void moe_text_end(MoeTextOut *o, const int32_t *ids, int64_t n);
/* Frees the stream without writing (error paths); safe on a zeroed or ended MoeTextOut. */
void moe_text_free(MoeTextOut *o);

#endif
