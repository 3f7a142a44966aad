/* arena: a bump allocator that owns every object of one compilation.
 * Nothing allocated from an Arena is freed on its own; arena_destroy frees it all.
 * Allocation failure is fatal (prints and exits 70): the compiler has no recovery path for OOM. */
#ifndef MOEC_ARENA_H
#define MOEC_ARENA_H
#include <stddef.h>
#include <stdint.h>

typedef struct Arena Arena;

Arena *arena_new(void);                                  /* a new, empty arena */
void arena_destroy(Arena *a);                            /* frees every block; a may be NULL */
void *arena_alloc(Arena *a, size_t size);                /* zeroed, 16-byte aligned */
char *arena_strdup(Arena *a, const char *s);             /* copy of s (NUL-terminated) */
char *arena_strndup(Arena *a, const char *s, size_t n);  /* copy of n bytes of s + NUL */
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fatal out-of-memory for plain malloc calls outside an arena. */
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);

#endif
