/* textio: text in and text out for the generation CLIs (`moec run` and compiled executables).
 * Reading a prompt from a file or stdin, and streaming generated tokens as text: bytes are
 * written as soon as they are final, never splitting a UTF-8 character (runtime/tokenizer.h). */
#ifndef MOE_TEXTIO_H
#define MOE_TEXTIO_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tokenizer.h"

/* The whole file ("-": stdin) as a malloc'd NUL-terminated string; NULL (errno set) on failure. */
char *moe_read_text(const char *path, size_t *len);

typedef struct MoeTextOut {
    MoeTokStream *st;
    FILE *f;
} MoeTextOut;

/* Starts streaming decoded text to f; false when out of memory. */
bool moe_text_begin(MoeTextOut *o, const MoeTokenizer *t, FILE *f);
/* Writes what token id makes final (and flushes f). */
void moe_text_token(MoeTextOut *o, int32_t id);
/* Writes the rest, a newline, and frees the stream. */
void moe_text_end(MoeTextOut *o);

#endif
