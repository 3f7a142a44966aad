/* jinja: the subset of Jinja2 that the chat templates of the supported model families use
 * (Mixtral, Qwen1.5-MoE, Qwen3-MoE, OLMoE instruct models), parsed once into a tree and rendered
 * with a list of chat messages, as Hugging Face's apply_chat_template renders them (trim_blocks
 * and lstrip_blocks on). Anything outside the subset is refused at parse time by name; a template
 * that parses renders to Jinja2's text or fails with a one-line message (a raise_exception in the
 * template, or an error such as an attribute of an undefined value). Checked against jinja2 3.1.6
 * on a few thousand generated and fuzzed templates: no output text differed; what differs is, in
 * odd corners, an error on one side only (a slice of an int tested with `is defined`, a dict used
 * as a dict key), and calling `not(...)` or indexing with a tuple, which Jinja2 parses and this
 * refuses.
 *
 * Supported: {{ }}, {% if/elif/else %}, {% for x in seq [if cond] %} with {% else %} and loop.index,
 * index0, revindex, revindex0, first, last, length; {% set x = e %} and {% set ns.attr = e %};
 * comments; whitespace control ({%- -%} {{- -}}); literals (strings, integers, true/false/none,
 * lists, dicts); subscripts, slices ([::-1]), attributes; + - * // % ~, comparisons, and/or/not,
 * in/not in, `a if c else b`; the filters, tests, methods and globals listed in jinja.c.
 * Values are none, bool, int, string, list, dict and namespace() objects; there are no floats.
 *
 * Bounds: nesting depth and chain length (so the tree, and the recursion over it, stays shallow),
 * and output size, memory and evaluation steps per render are limited, each with a clear error,
 * so a hostile template cannot recurse or loop without end. The parsed template owns all its
 * memory; a render allocates only its own pool, released before it returns, and the malloc'd
 * output. */
#ifndef MOERT_JINJA_H
#define MOERT_JINJA_H
#include <stdbool.h>
#include <stddef.h>

enum {
    MOE_JINJA_MAX_DEPTH = 64,          /* nesting of blocks, parentheses and unary operators */
    MOE_JINJA_MAX_LINKS = 1024,        /* chained operations open at once (a.b.c, x|f|g, a + b + c) */
    MOE_JINJA_MAX_OUT = 32 << 20,      /* bytes of rendered output */
    MOE_JINJA_MAX_MEM = 256 << 20,     /* bytes a render may allocate */
    MOE_JINJA_MAX_STEPS = 20 * 1000000 /* expression and statement evaluations per render */
};

typedef struct MoeJinja MoeJinja;

typedef struct MoeChatMessage {
    const char *role;
    const char *content; /* NULL renders as none */
} MoeChatMessage;

/* Parses the NUL-terminated template src; NULL with a one-line message in err ("chat template:
 * line 12: filter 'wordcount' is not supported") when it is malformed or uses anything outside
 * the subset. */
MoeJinja *moe_jinja_parse(const char *src, char *err, size_t errlen);

/* Renders the template with messages[n] (dicts with role and content), add_generation_prompt,
 * bos_token, eos_token (may be ""), tools and documents (none), into a malloc'd NUL-terminated
 * *out. Returns 0, or -1 with a one-line message in err (a raise_exception message is given as
 * "chat template: MESSAGE"). The template is only read: several threads may render it at once. */
int moe_chat_render(const MoeJinja *t, const MoeChatMessage *msgs, int n, bool add_generation_prompt,
                    const char *bos_token, const char *eos_token, char **out, char *err, size_t errlen);

/* Frees a parsed template (NULL is fine). */
void moe_jinja_free(MoeJinja *t);

#endif
