/* jinja: a small Jinja2 subset for chat templates (see jinja.h for what and why).
 *
 *   lex     source -> tokens: TEXT, tag delimiters, names, strings, ints, operators; then the
 *           whitespace rules on each TEXT token: {%- / -%} strip all whitespace on that side,
 *           trim_blocks drops the first newline after a block tag or comment, lstrip_blocks drops
 *           spaces and tabs between the start of a line and a block tag or comment.
 *   parse   recursive descent with Jinja2's precedence (or, and, not, compare/in, + -, ~, * // %,
 *           unary -, postfix . [] () | is); every filter, test, method, global function and tag
 *           is checked against the tables below here, so an unsupported one is refused by name.
 *   render  a tree walk; values live in a per-render pool freed at the end; errors longjmp out.
 *
 * Scoping follows Jinja2: a for loop's body runs in a fresh scope per iteration (a set inside a
 * loop does not leak out of it), if blocks share the enclosing scope, namespace() objects are the
 * way to carry state out of a loop. Undefined values print as "", are false, iterate as empty and
 * have length 0; reading an attribute of one or computing with one is an error, as in Jinja2. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem: linear substring search, so no input makes a search quadratic */
#endif
#include "jinja.h"

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the supported names ---------------------------------------------------------------- */

static const char *const FILTERS[] = {"length", "count", "trim", "string", "tojson", "default", "d",
                                      "join", "first", "last", NULL};
static const char *const TESTS[] = {"defined", "undefined", "none", "string", "number", "integer", "boolean",
                                    "mapping", "sequence", "iterable", "true", "false", "even", "odd", NULL};
static const char *const METHODS[] = {"startswith", "endswith", "split", "strip", "lstrip", "rstrip",
                                      "replace", "get", NULL};
static const char *const FUNCTIONS[] = {"raise_exception", "namespace", NULL};

static bool listed(const char *const *names, const char *s, size_t n) {
    for (; *names; names++)
        if (strlen(*names) == n && !memcmp(*names, s, n)) return true;
    return false;
}

/* ---- memory: a pool of chunks, freed at once --------------------------------------------- */

typedef struct Chunk {
    struct Chunk *next;
    size_t used, cap, pad; /* 32 bytes: the data after it stays 16-aligned */
} Chunk;

typedef struct Pool {
    Chunk *head;
    size_t total, limit;
} Pool;

static void *pool_alloc(Pool *p, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!p->head || p->head->cap - p->head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (n > p->limit || p->total > p->limit - cap) return NULL;
        Chunk *c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        *c = (Chunk){p->head, 0, cap, 0};
        p->head = c;
        p->total += cap;
    }
    void *r = (char *)(p->head + 1) + p->head->used;
    p->head->used += n;
    return r;
}

static void pool_free(Pool *p) {
    for (Chunk *c = p->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    p->head = NULL;
    p->total = 0;
}

/* ---- values ------------------------------------------------------------------------------ */

typedef enum VType { V_UNDEF, V_NONE, V_BOOL, V_INT, V_STR, V_LIST, V_DICT, V_NS, V_LOOP } VType;

typedef struct Obj Obj;
typedef struct Val {
    VType t;
    int64_t i;     /* bool, int; loop: index0 */
    const char *s; /* string bytes; undefined: the name that was missing (for messages) */
    size_t n;      /* string bytes; loop: length */
    Obj *o;        /* list, dict, namespace */
} Val;

struct Obj {
    size_t n, cap; /* items; a dict or namespace holds n (key, value) pairs in v[2i], v[2i+1] */
    Val *v;
};

static const char *type_name(VType t) {
    static const char *const names[] = {"undefined", "none", "bool", "int", "string", "list", "dict", "namespace",
                                        "loop"};
    return names[t];
}

/* ---- the tree ---------------------------------------------------------------------------- */

typedef enum Kind {
    E_LIT, E_NAME, E_ATTR, E_INDEX, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NOT, E_NEG, E_BIN, E_AND, E_OR,
    E_COND, E_LIST, E_DICT,
    S_TEXT, S_OUT, S_IF, S_FOR, S_SET
} Kind;

typedef struct Node Node;
struct Node {
    Kind kind;
    int op;          /* E_BIN: operator (OP_*); E_TEST: negated; E_NEG: 1 for unary + */
    int line;
    Node *a, *b, *c, *d; /* operands; E_SLICE: a[b:c:d]; E_COND: b if a else c; S_FOR: var in a if b */
    Node *list;      /* args, items, or the body of a block */
    Node *list2;     /* S_IF, S_FOR: the else body */
    Node *next;      /* the next argument or statement */
    const char *name; /* E_NAME, E_ATTR, E_CALL (method or function), E_FILTER, E_TEST, S_FOR, S_SET */
    size_t len;
    const char *attr; /* S_SET of a namespace attribute; E_* argument: its keyword */
    size_t attr_len;
    Val lit;          /* E_LIT; S_TEXT: the text */
};

enum { OP_ADD, OP_SUB, OP_MUL, OP_FLOORDIV, OP_MOD, OP_CAT, OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE,
       OP_IN, OP_NOTIN };

struct MoeJinja {
    Pool pool;
    Node *body;
};

/* ---- lexer ------------------------------------------------------------------------------- */

typedef enum TokKind { T_EOF, T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_COMMENT, T_NAME,
                       T_STR, T_INT, T_OP } TokKind;

typedef struct Tok {
    TokKind k;
    int line;
    const char *s; /* text, name, operator, or decoded string */
    size_t n;
    int64_t ival;
    bool strip_l, strip_r; /* '-' after the opener / before the closer; T_COMMENT has both sides */
    bool plus;             /* '{%+': no lstrip_blocks */
} Tok;

typedef struct Parser {
    Pool *pool;
    const char *src;
    Tok *tok;
    size_t n_tok, cap_tok, i;
    int depth, links;  /* nesting (blocks, parentheses, unary), chain links open */
    char *err;
    size_t errlen;
    jmp_buf jb;
} Parser;

static _Noreturn void perr(Parser *p, int line, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->err && p->errlen) snprintf(p->err, p->errlen, "chat template: line %d: %s", line, msg);
    longjmp(p->jb, 1);
}

static void *palloc(Parser *p, size_t n) {
    void *r = pool_alloc(p->pool, n);
    if (!r) perr(p, 1, "template too large");
    memset(r, 0, n);
    return r;
}

static Tok *push_tok(Parser *p, TokKind k, int line, const char *s, size_t n) {
    if (p->n_tok == p->cap_tok) {
        size_t cap = p->cap_tok ? 2 * p->cap_tok : 256;
        Tok *t = realloc(p->tok, cap * sizeof *t);
        if (!t) perr(p, line, "out of memory");
        p->tok = t;
        p->cap_tok = cap;
    }
    Tok *t = &p->tok[p->n_tok++];
    *t = (Tok){.k = k, .line = line, .s = s, .n = n};
    return t;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static bool is_ident(char c, bool first) {
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9');
}

/* The value of up to max hex digits at s (*n: how many there were). */
static uint32_t hex(const char *s, int max, int *n) {
    uint32_t v = 0;
    for (*n = 0; *n < max; (*n)++, s++) {
        int d = *s >= '0' && *s <= '9' ? *s - '0' : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
              : *s >= 'A' && *s <= 'F' ? *s - 'A' + 10 : -1;
        if (d < 0) break;
        v = v * 16 + (uint32_t)d;
    }
    return v;
}

/* A quoted string at *pp, with Python's escapes (\n \t \xHH \uHHHH \U..., octal; an unknown
 * escape is kept as written, as Python keeps it). */
static char *put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 63));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | cp >> 12);
        *o++ = (char)(0x80 | (cp >> 6 & 63));
        *o++ = (char)(0x80 | (cp & 63));
    } else {
        *o++ = (char)(0xF0 | cp >> 18);
        *o++ = (char)(0x80 | (cp >> 12 & 63));
        *o++ = (char)(0x80 | (cp >> 6 & 63));
        *o++ = (char)(0x80 | (cp & 63));
    }
    return o;
}

static void lex_string(Parser *p, const char **pp, int *line) {
    static const char simple[] = "n\nt\tr\rb\bf\fv\va\a\\\\''\"\""; /* pairs: escape letter, character */
    const char *s = *pp;
    char q = *s++;
    const char *start = s;
    while (*s && *s != q) {
        if (*s == '\\' && s[1]) s++;
        if (*s == '\n') (*line)++;
        s++;
    }
    if (!*s) perr(p, *line, "unterminated string");
    char *out = palloc(p, (size_t)(s - start) + 1), *o = out; /* no escape is longer than written */
    for (const char *c = start; c < s; c++) {
        if (*c != '\\') {
            *o++ = *c;
            continue;
        }
        int k = 0, len = *++c == 'x' ? 2 : *c == 'u' ? 4 : *c == 'U' ? 8 : 0, got;
        while (simple[k] && simple[k] != *c) k += 2;
        if (*c == '\n') {
            continue; /* a backslash-newline joins the lines */
        } else if (simple[k]) {
            *o++ = simple[k + 1];
        } else if (*c >= '0' && *c <= '7') {
            uint32_t v = 0;
            for (k = 0; k < 3 && c < s && *c >= '0' && *c <= '7'; k++) v = v * 8 + (uint32_t)(*c++ - '0');
            c--;
            o = put_utf8(o, v);
        } else if (len) {
            uint32_t cp = hex(c + 1, len, &got);
            if (got < len || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000))
                perr(p, *line, "bad \\%c escape in a string", *c);
            c += len;
            o = put_utf8(o, cp);
        } else {
            *o++ = '\\', *o++ = *c; /* unknown: kept as written */
        }
    }
    push_tok(p, T_STR, *line, out, (size_t)(o - out));
    *pp = s + 1;
}

/* The tokens of one tag body, up to and including its closer ("}}" or "%}"), which counts only
 * outside brackets (as in Jinja2: {{ {'a': {'b': 1}} }}). */
static void lex_tag(Parser *p, const char **pp, int *line, char closer, TokKind end_kind) {
    const char *s = *pp;
    int open_line = *line, brackets = 0;
    for (;;) {
        while (is_ws(*s)) *line += *s++ == '\n';
        if (!*s) perr(p, open_line, "unterminated '%s' tag", closer == '}' ? "{{" : "{%");
        bool strip = !brackets && *s == '-' && s[1] == closer && s[2] == '}';
        if ((!brackets && *s == closer && s[1] == '}') || strip) {
            Tok *t = push_tok(p, end_kind, *line, s, 0);
            t->strip_r = strip;
            *pp = s + (strip ? 3 : 2);
            return;
        }
        if (*s == '\'' || *s == '"') {
            lex_string(p, &s, line);
        } else if (is_ident(*s, true)) {
            const char *b = s;
            while (is_ident(*s, false)) s++;
            push_tok(p, T_NAME, *line, b, (size_t)(s - b));
        } else if (*s >= '0' && *s <= '9') {
            int64_t v = 0;
            const char *b = s;
            for (; (*s >= '0' && *s <= '9') || *s == '_'; s++) {
                if (*s == '_') continue;
                if (v > (INT64_MAX - (*s - '0')) / 10) perr(p, *line, "integer literal too large");
                v = v * 10 + (*s - '0');
            }
            if ((*s == '.' || *s == 'e' || *s == 'E') && s[1] >= '0' && s[1] <= '9')
                perr(p, *line, "float literals are not supported");
            push_tok(p, T_INT, *line, b, (size_t)(s - b))->ival = v;
        } else {
            static const char *const two[] = {"==", "!=", "<=", ">=", "//", "**", NULL};
            size_t n = 1;
            for (int k = 0; two[k]; k++)
                if (s[0] == two[k][0] && s[1] == two[k][1]) n = 2;
            if (n == 1 && !strchr("()[]{}.,:|~+-*/%<>=", *s))
                perr(p, *line, "unexpected character '%c'", *s);
            brackets += strchr("([{", *s) ? 1 : strchr(")]}", *s) && brackets > 0 ? -1 : 0;
            push_tok(p, T_OP, *line, s, n);
            s += n;
        }
    }
}

static void lex(Parser *p) {
    const char *s = p->src;
    int line = 1;
    while (*s) {
        const char *b = s;
        int text_line = line;
        while (*s && !(s[0] == '{' && (s[1] == '{' || s[1] == '%' || s[1] == '#'))) line += *s++ == '\n';
        if (s > b) push_tok(p, T_TEXT, text_line, b, (size_t)(s - b));
        if (!*s) break;
        char kind = s[1];
        s += 2;
        bool strip = *s == '-', plus = *s == '+';
        if (strip || plus) s++;
        if (kind == '#') {
            Tok *t = push_tok(p, T_COMMENT, line, s, 0);
            t->strip_l = strip;
            t->plus = plus;
            while (*s && !(s[0] == '#' && s[1] == '}')) line += *s++ == '\n';
            if (!*s) perr(p, t->line, "unterminated comment");
            t->strip_r = s[-1] == '-' && s - 1 >= t->s;
            s += 2;
            continue;
        }
        Tok *t = push_tok(p, kind == '{' ? T_VAR_BEGIN : T_BLOCK_BEGIN, line, s, 0);
        t->strip_l = strip;
        t->plus = plus;
        lex_tag(p, &s, &line, kind == '{' ? '}' : '%', kind == '{' ? T_VAR_END : T_BLOCK_END);
    }
    push_tok(p, T_EOF, line, s, 0);
    /* whitespace control on the text between tags */
    for (size_t i = 0; i < p->n_tok; i++) {
        Tok *t = &p->tok[i];
        if (t->k != T_TEXT) continue;
        const char *b = t->s, *e = t->s + t->n;
        const Tok *prev = i ? &p->tok[i - 1] : NULL, *next = &p->tok[i + 1];
        if (prev && prev->strip_r && prev->k != T_VAR_BEGIN && prev->k != T_BLOCK_BEGIN) {
            while (b < e && is_ws(*b)) b++;
        } else if (prev && (prev->k == T_BLOCK_END || prev->k == T_COMMENT)) { /* trim_blocks */
            if (b < e && *b == '\n') b++;
        }
        if (next->strip_l) {
            while (e > b && is_ws(e[-1])) e--;
        } else if ((next->k == T_BLOCK_BEGIN || next->k == T_COMMENT) && !next->plus) { /* lstrip_blocks */
            const char *j = t->s + t->n;
            while (j > t->s && (j[-1] == ' ' || j[-1] == '\t')) j--;
            if ((j > t->s && j[-1] == '\n') || (j == t->s && i == 0)) e = j > b ? j : b;
        }
        t->s = b;
        t->n = (size_t)(e - b);
    }
}

/* ---- parser ------------------------------------------------------------------------------ */

static Tok *cur(Parser *p) { return &p->tok[p->i]; }
static bool is_name(const Tok *t, const char *name) {
    return t->k == T_NAME && t->n == strlen(name) && !memcmp(t->s, name, t->n);
}
static bool is_op(const Tok *t, const char *op) {
    return t->k == T_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n);
}
static bool accept_op(Parser *p, const char *op) {
    if (!is_op(cur(p), op)) return false;
    p->i++;
    return true;
}
static const char *tok_text(const Tok *t) {
    switch (t->k) {
    case T_EOF: return "end of template";
    case T_TEXT: return "text";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_END: return "'%}'";
    case T_STR: return "a string";
    case T_INT: return "an integer";
    default: return "a token";
    }
}
static _Noreturn void unexpected(Parser *p, const char *expected) {
    Tok *t = cur(p);
    if (t->k == T_NAME || t->k == T_OP) perr(p, t->line, "expected %s; got '%.*s'", expected, (int)t->n, t->s);
    perr(p, t->line, "expected %s; got %s", expected, tok_text(t));
}
static void expect_op(Parser *p, const char *op) {
    if (!accept_op(p, op)) {
        char want[8];
        snprintf(want, sizeof want, "'%s'", op);
        unexpected(p, want);
    }
}
static Tok *expect_name(Parser *p) {
    if (cur(p)->k != T_NAME) unexpected(p, "a name");
    return &p->tok[p->i++];
}

static Node *node(Parser *p, Kind k, int line) {
    Node *n = palloc(p, sizeof *n);
    n->kind = k;
    n->line = line;
    return n;
}

static void enter(Parser *p) {
    if (++p->depth > MOE_JINJA_MAX_DEPTH)
        perr(p, cur(p)->line, "nested more than %d levels deep", MOE_JINJA_MAX_DEPTH);
}

static Node *p_expr(Parser *p);
static Node *p_logic(Parser *p, bool is_or);
static Node *p_unary(Parser *p, bool with_filter);

/* '(' [arg {',' arg}] ')' with keyword arguments name=expr; the opening '(' is consumed. */
static Node *p_args(Parser *p) {
    Node *first = NULL, **tail = &first;
    while (!accept_op(p, ")")) {
        if (first) expect_op(p, ",");
        if (accept_op(p, ")")) break;
        const char *kw = NULL;
        size_t kw_len = 0;
        if (cur(p)->k == T_NAME && is_op(&p->tok[p->i + 1], "=")) {
            kw = cur(p)->s;
            kw_len = cur(p)->n;
            p->i += 2;
        }
        Node *a = p_expr(p);
        a->attr = kw;
        a->attr_len = kw_len;
        *tail = a;
        tail = &a->next;
    }
    return first;
}

static Node *p_primary(Parser *p) {
    Tok *t = cur(p);
    Node *n;
    if (t->k == T_NAME) {
        p->i++;
        static const char *const lits[] = {"true", "True", "false", "False", "none", "None", NULL};
        for (int k = 0; lits[k]; k++)
            if (is_name(t, lits[k])) {
                n = node(p, E_LIT, t->line);
                n->lit = k < 4 ? (Val){.t = V_BOOL, .i = k < 2} : (Val){.t = V_NONE};
                return n;
            }
        n = node(p, E_NAME, t->line);
        n->name = t->s;
        n->len = t->n;
        return n;
    }
    if (t->k == T_STR) { /* adjacent literals concatenate */
        size_t len = 0, k = p->i;
        for (; p->tok[k].k == T_STR; k++) len += p->tok[k].n;
        char *s = palloc(p, len + 1), *o = s;
        for (; p->i < k; p->i++) memcpy(o, p->tok[p->i].s, p->tok[p->i].n), o += p->tok[p->i].n;
        n = node(p, E_LIT, t->line);
        n->lit = (Val){.t = V_STR, .s = s, .n = len};
        return n;
    }
    if (t->k == T_INT) {
        p->i++;
        n = node(p, E_LIT, t->line);
        n->lit = (Val){.t = V_INT, .i = t->ival};
        return n;
    }
    if (accept_op(p, "(")) {
        n = p_expr(p);
        if (is_op(cur(p), ",")) perr(p, cur(p)->line, "tuples are not supported");
        expect_op(p, ")");
        return n;
    }
    if (accept_op(p, "[") || accept_op(p, "{")) {
        bool dict = p->tok[p->i - 1].s[0] == '{';
        n = node(p, dict ? E_DICT : E_LIST, t->line);
        Node **tail = &n->list;
        while (!accept_op(p, dict ? "}" : "]")) {
            if (n->list) expect_op(p, ",");
            if (accept_op(p, dict ? "}" : "]")) break;
            *tail = p_expr(p);
            tail = &(*tail)->next;
            if (dict) {
                expect_op(p, ":");
                *tail = p_expr(p);
                tail = &(*tail)->next;
            }
        }
        return n;
    }
    unexpected(p, "an expression");
}

/* '[' index or slice ']'; the '[' is consumed. */
static Node *p_subscript(Parser *p, Node *obj, int line) {
    Node *parts[3] = {NULL, NULL, NULL};
    int k = 0;
    while (!accept_op(p, "]")) {
        if (accept_op(p, ":")) {
            if (++k > 2) unexpected(p, "']'");
        } else {
            if (parts[k]) unexpected(p, "':' or ']'");
            parts[k] = p_expr(p);
        }
    }
    Node *n = node(p, k ? E_SLICE : E_INDEX, line);
    n->a = obj;
    n->b = parts[0];
    if (!k && !n->b) perr(p, line, "empty subscript");
    n->c = parts[1];
    n->d = parts[2];
    return n;
}

/* Each link of a chain (a.b.c, x|f|g, a + b + c, ...) nests the tree one level deeper (and the
 * render recursion with it): links are bounded too; leave() gives a chain's links back. */
static void link(Parser *p) {
    if (++p->links > MOE_JINJA_MAX_LINKS)
        perr(p, cur(p)->line, "an expression chains more than %d operations", MOE_JINJA_MAX_LINKS);
}
static Node *leave(Parser *p, Node *n, int levels) {
    p->links -= levels;
    return n;
}

static Node *p_postfix(Parser *p, Node *n) {
    for (int k = 0;; k++) {
        int line = cur(p)->line;
        link(p);
        if (accept_op(p, ".")) {
            Tok *t = expect_name(p);
            Node *a = node(p, E_ATTR, line);
            a->a = n;
            a->name = t->s;
            a->len = t->n;
            n = a;
        } else if (accept_op(p, "[")) {
            n = p_subscript(p, n, line);
        } else if (accept_op(p, "(")) {
            Node *c = node(p, E_CALL, line);
            if (n->kind == E_NAME) {
                if (!listed(FUNCTIONS, n->name, n->len))
                    perr(p, line, "function '%.*s' is not supported", (int)n->len, n->name);
            } else if (n->kind == E_ATTR) {
                if (!listed(METHODS, n->name, n->len))
                    perr(p, line, "method '%.*s' is not supported", (int)n->len, n->name);
                c->a = n->a;
            } else {
                perr(p, line, "only named functions and methods can be called");
            }
            c->name = n->name;
            c->len = n->len;
            c->list = p_args(p);
            n = c;
        } else {
            return leave(p, n, k + 1);
        }
    }
}

static Node *p_filters(Parser *p, Node *n) {
    for (int k = 0;; k++) {
        int line = cur(p)->line;
        link(p);
        if (accept_op(p, "|")) {
            Tok *t = expect_name(p);
            if (!listed(FILTERS, t->s, t->n)) perr(p, line, "filter '%.*s' is not supported", (int)t->n, t->s);
            Node *f = node(p, E_FILTER, line);
            f->a = n;
            f->name = t->s;
            f->len = t->n;
            if (accept_op(p, "(")) f->list = p_args(p);
            n = f;
        } else if (is_name(cur(p), "is")) {
            p->i++;
            Node *f = node(p, E_TEST, line);
            if (is_name(cur(p), "not")) f->op = 1, p->i++;
            Tok *t = expect_name(p);
            if (!listed(TESTS, t->s, t->n)) perr(p, line, "test '%.*s' is not supported", (int)t->n, t->s);
            /* Jinja2 takes a following name (but else, or, and), literal or bracket as the test's
             * argument; the supported tests take none */
            Tok *arg = cur(p);
            if ((arg->k == T_NAME && !is_name(arg, "else") && !is_name(arg, "or") && !is_name(arg, "and")) ||
                arg->k == T_STR || arg->k == T_INT || is_op(arg, "(") || is_op(arg, "[") || is_op(arg, "{"))
                perr(p, line, "test '%.*s' takes no argument", (int)t->n, t->s);
            f->a = n;
            f->name = t->s;
            f->len = t->n;
            n = f;
        } else {
            return leave(p, n, k + 1);
        }
    }
}

static Node *p_unary(Parser *p, bool with_filter) {
    enter(p);
    int line = cur(p)->line;
    Node *n;
    if (accept_op(p, "-")) {
        n = node(p, E_NEG, line);
        n->a = p_unary(p, false);
    } else if (accept_op(p, "+")) {
        n = node(p, E_NEG, line);
        n->op = 1; /* unary +: a number, as it is */
        n->a = p_unary(p, false);
    } else {
        n = p_postfix(p, p_primary(p));
    }
    if (with_filter) n = p_filters(p, n);
    p->depth--;
    return n;
}

static Node *bin(Parser *p, int op, Node *a, Node *b, int line) {
    Node *n = node(p, E_BIN, line);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

/* The binary levels under the comparisons, loosest first: + -, then ~, then * // %; their
 * operands at level 3 are unary expressions. */
static Node *p_arith(Parser *p, int level) {
    static const char *const ops[3][4] = {{"+", "-"}, {"~"}, {"*", "//", "%"}};
    static const int codes[3][3] = {{OP_ADD, OP_SUB}, {OP_CAT}, {OP_MUL, OP_FLOORDIV, OP_MOD}};
    if (level == 3) return p_unary(p, true);
    Node *n = p_arith(p, level + 1);
    for (int k = 0;; k++) {
        int line = cur(p)->line, op = -1;
        if (is_op(cur(p), "/")) perr(p, line, "operator '/' is not supported (it makes a float)");
        if (is_op(cur(p), "**")) perr(p, line, "operator '**' is not supported");
        for (int j = 0; ops[level][j] && op < 0; j++)
            if (accept_op(p, ops[level][j])) op = codes[level][j];
        if (op < 0) return leave(p, n, k);
        link(p);
        n = bin(p, op, n, p_arith(p, level + 1), line);
    }
}

/* a OP b [OP c ...]: chained comparisons as Python: (a OP b) and (b OP c) */
static Node *p_compare(Parser *p) {
    Node *left = p_arith(p, 0), *result = NULL;
    for (int k = 0;; k++) {
        static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">=", NULL};
        int line = cur(p)->line, op = -1;
        for (int j = 0; ops[j] && op < 0; j++)
            if (accept_op(p, ops[j])) op = OP_EQ + j;
        if (op < 0 && is_name(cur(p), "in")) op = OP_IN, p->i++;
        if (op < 0 && is_name(cur(p), "not") && is_name(&p->tok[p->i + 1], "in")) op = OP_NOTIN, p->i += 2;
        if (op < 0) return leave(p, result ? result : left, k);
        link(p);
        Node *right = p_arith(p, 0), *cmp = bin(p, op, left, right, line);
        if (result) {
            Node *a = node(p, E_AND, line);
            a->a = result;
            a->b = cmp;
            cmp = a;
        }
        result = cmp;
        left = right;
    }
}

static Node *p_not(Parser *p) {
    if (!is_name(cur(p), "not")) return p_compare(p);
    enter(p);
    Node *n = node(p, E_NOT, cur(p)->line);
    p->i++;
    n->a = p_not(p);
    p->depth--;
    return n;
}

/* and binds tighter than or */
static Node *p_logic(Parser *p, bool is_or) {
    Node *n = is_or ? p_logic(p, false) : p_not(p);
    int k = 0;
    for (; is_name(cur(p), is_or ? "or" : "and"); k++) {
        link(p);
        Node *a = node(p, is_or ? E_OR : E_AND, cur(p)->line);
        p->i++;
        a->a = n;
        a->b = is_or ? p_logic(p, false) : p_not(p);
        n = a;
    }
    return leave(p, n, k);
}

/* or_expr ['if' or_expr ['else' expr]] */
static Node *p_expr(Parser *p) {
    enter(p);
    Node *n = p_logic(p, true);
    if (is_name(cur(p), "if")) {
        Node *c = node(p, E_COND, cur(p)->line);
        p->i++;
        c->b = n;
        c->a = p_logic(p, true);
        if (is_name(cur(p), "else")) {
            p->i++;
            c->c = p_expr(p);
        }
        n = c;
    }
    p->depth--;
    return n;
}

static void expect_block_end(Parser *p) {
    if (cur(p)->k != T_BLOCK_END) unexpected(p, "'%}'");
    p->i++;
}

/* Statements up to a block tag named in ends (left unconsumed: p->i at its '{%'), or to the end
 * of the template when ends is NULL. */
static Node *p_body(Parser *p, const char *const *ends, const char *opener, int open_line);

/* {% if %}...{% elif %}...{% else %}...{% endif %}; p->i after 'if' or 'elif' */
static Node *p_if(Parser *p, int line) {
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    Node *n = node(p, S_IF, line);
    n->a = p_logic(p, true); /* as Jinja2: no inline 'a if b else c' in the condition */
    expect_block_end(p);
    n->list = p_body(p, ends, "if", line);
    p->i++; /* '{%' */
    Tok *t = expect_name(p);
    if (is_name(t, "elif")) {
        n->list2 = p_if(p, t->line);
        return n;
    }
    if (is_name(t, "else")) {
        static const char *const endif[] = {"endif", NULL};
        expect_block_end(p);
        n->list2 = p_body(p, endif, "if", line);
        p->i += 2;
    }
    expect_block_end(p);
    return n;
}

static Node *p_for(Parser *p, int line) {
    static const char *const ends[] = {"else", "endfor", NULL};
    Node *n = node(p, S_FOR, line);
    Tok *v = expect_name(p);
    n->name = v->s;
    n->len = v->n;
    if (is_op(cur(p), ",")) perr(p, line, "for with several loop variables is not supported");
    if (!is_name(cur(p), "in")) unexpected(p, "'in'");
    p->i++;
    n->a = p_logic(p, true);
    if (is_name(cur(p), "if")) {
        p->i++;
        n->b = p_logic(p, true);
    }
    if (is_name(cur(p), "recursive")) perr(p, line, "recursive for loops are not supported");
    expect_block_end(p);
    n->list = p_body(p, ends, "for", line);
    p->i++;
    if (is_name(expect_name(p), "else")) {
        static const char *const endfor[] = {"endfor", NULL};
        expect_block_end(p);
        n->list2 = p_body(p, endfor, "for", line);
        p->i += 2;
    }
    expect_block_end(p);
    return n;
}

static Node *p_set(Parser *p, int line) {
    Node *n = node(p, S_SET, line);
    Tok *v = expect_name(p);
    n->name = v->s;
    n->len = v->n;
    if (accept_op(p, ".")) {
        Tok *a = expect_name(p);
        n->attr = a->s;
        n->attr_len = a->n;
    }
    if (is_op(cur(p), ",")) perr(p, line, "set with several targets is not supported");
    if (cur(p)->k == T_BLOCK_END) perr(p, line, "block set ({%% set x %%}...{%% endset %%}) is not supported");
    expect_op(p, "=");
    n->a = p_expr(p);
    expect_block_end(p);
    return n;
}

static Node *p_body(Parser *p, const char *const *ends, const char *opener, int open_line) {
    enter(p);
    Node *first = NULL, **tail = &first;
    for (;;) {
        Tok *t = cur(p);
        Node *n = NULL;
        if (t->k == T_EOF) {
            if (ends) perr(p, open_line, "'%s' is never closed; expected 'end%s'", opener, opener);
            break;
        } else if (t->k == T_COMMENT) {
            p->i++;
        } else if (t->k == T_TEXT) {
            p->i++;
            if (t->n) {
                n = node(p, S_TEXT, t->line);
                n->lit = (Val){.t = V_STR, .s = t->s, .n = t->n};
            }
        } else if (t->k == T_VAR_BEGIN) {
            p->i++;
            n = node(p, S_OUT, t->line);
            n->a = p_expr(p);
            if (cur(p)->k != T_VAR_END) unexpected(p, "'}}'");
            p->i++;
        } else if (t->k == T_BLOCK_BEGIN) {
            Tok *name = &p->tok[p->i + 1];
            if (name->k != T_NAME) perr(p, t->line, "expected a tag name after '{%%'");
            bool is_end = false;
            for (int k = 0; ends && ends[k]; k++) is_end |= is_name(name, ends[k]);
            if (is_end) break;
            p->i += 2;
            if (is_name(name, "if")) n = p_if(p, t->line);
            else if (is_name(name, "for")) n = p_for(p, t->line);
            else if (is_name(name, "set")) n = p_set(p, t->line);
            else if (is_name(name, "elif") || is_name(name, "else") || is_name(name, "endif") ||
                     is_name(name, "endfor"))
                perr(p, t->line, "unexpected '%.*s'", (int)name->n, name->s);
            else perr(p, t->line, "tag '%.*s' is not supported", (int)name->n, name->s);
        } else {
            unexpected(p, "text or a tag");
        }
        if (n) {
            *tail = n;
            tail = &n->next;
        }
    }
    p->depth--;
    return first;
}

/* setjmp in a function of its own: nothing it modifies is read after a longjmp */
static bool parse_run(Parser *p, MoeJinja *t) {
    if (setjmp(p->jb)) return false;
    /* as Jinja2 reads a source: newlines as \n, one trailing newline dropped */
    size_t n = strlen(p->src);
    char *src = palloc(p, n + 1), *o = src;
    for (const char *c = p->src; *c; c++) {
        if (*c == '\r' && c[1] == '\n') continue;
        *o++ = *c == '\r' ? '\n' : *c;
    }
    if (o > src && o[-1] == '\n') o--;
    *o = 0;
    p->src = src;
    lex(p);
    t->body = p_body(p, NULL, NULL, 0);
    return true;
}

MoeJinja *moe_jinja_parse(const char *src, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    MoeJinja *t = calloc(1, sizeof *t);
    if (!t || !src) {
        if (err && errlen) snprintf(err, errlen, "chat template: %s", t ? "no template" : "out of memory");
        free(t);
        return NULL;
    }
    t->pool.limit = 64u << 20;
    Parser p = {.pool = &t->pool, .src = src, .err = err, .errlen = errlen};
    bool ok = parse_run(&p, t);
    free(p.tok);
    if (!ok) {
        moe_jinja_free(t);
        return NULL;
    }
    return t;
}

void moe_jinja_free(MoeJinja *t) {
    if (!t) return;
    pool_free(&t->pool);
    free(t);
}

/* ---- render ------------------------------------------------------------------------------ */

typedef struct Binding {
    const char *name;
    size_t len;
    Val v;
} Binding;

typedef struct Buf {
    char *p;
    size_t n, cap;
} Buf;

typedef struct Render {
    Pool pool;
    Binding *vars;           /* scopes: vars[frame..n_vars) is the innermost */
    size_t n_vars, cap_vars, frame;
    Buf out;
    int64_t steps;
    char *err;
    size_t errlen;
    jmp_buf jb;
} Render;

static _Noreturn void rerr(Render *r, int line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->err && r->errlen) {
        if (line > 0) snprintf(r->err, r->errlen, "chat template: line %d: %s", line, msg);
        else snprintf(r->err, r->errlen, "chat template: %s", msg);
    }
    longjmp(r->jb, 1);
}

static void step(Render *r, int line) {
    if (++r->steps > MOE_JINJA_MAX_STEPS) rerr(r, line, "rendering takes more than %d steps", MOE_JINJA_MAX_STEPS);
}

/* A step, plus one per 64 bytes an operation reads without allocating (comparing, searching,
 * stripping), so no loop over such operations on big strings escapes the step bound. */
static void charge(Render *r, size_t bytes, int line) {
    r->steps += (int64_t)(bytes >> 6);
    step(r, line);
}

static void *ralloc(Render *r, size_t n) {
    void *p = pool_alloc(&r->pool, n);
    if (!p) rerr(r, 0, "rendering needs more than %d MiB of memory", MOE_JINJA_MAX_MEM >> 20);
    return p;
}

static void buf_put(Render *r, Buf *b, const char *s, size_t n) {
    if (b->cap - b->n <= n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n <= n) {
            if (cap > (size_t)MOE_JINJA_MAX_MEM)
                rerr(r, 0, "rendering needs more than %d MiB of memory", MOE_JINJA_MAX_MEM >> 20);
            cap *= 2;
        }
        char *q = ralloc(r, cap);
        if (b->n) memcpy(q, b->p, b->n);
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void buf_puts(Render *r, Buf *b, const char *s) { buf_put(r, b, s, strlen(s)); }

static Val str_val(const char *s, size_t n) { return (Val){.t = V_STR, .s = s, .n = n}; }
static Val int_val(int64_t i) { return (Val){.t = V_INT, .i = i}; }
static Val bool_val(bool b) { return (Val){.t = V_BOOL, .i = b}; }
static Val undef_val(const char *name, size_t n) { return (Val){.t = V_UNDEF, .s = name, .n = n}; }
static Val buf_val(const Buf *b) { return b->n ? str_val(b->p, b->n) : str_val("", 0); }

static Obj *new_obj(Render *r, size_t cap) {
    Obj *o = ralloc(r, sizeof *o);
    o->n = 0;
    o->cap = cap;
    o->v = cap ? ralloc(r, cap * sizeof(Val)) : NULL;
    return o;
}
static void obj_push(Render *r, Obj *o, Val v) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 4;
        Val *nv = ralloc(r, cap * sizeof *nv);
        if (o->n) memcpy(nv, o->v, o->n * sizeof *nv);
        o->v = nv;
        o->cap = cap;
    }
    o->v[o->n++] = v;
}

static bool is_num(Val v) { return v.t == V_INT || v.t == V_BOOL; }

static bool truthy(Val v) {
    switch (v.t) {
    case V_BOOL: case V_INT: return v.i != 0;
    case V_STR: return v.n > 0;
    case V_LIST: return v.o->n > 0;
    case V_DICT: return v.o->n > 0;
    case V_NS: case V_LOOP: return true;
    default: return false;
    }
}

static _Noreturn void undefined_err(Render *r, int line, Val v) {
    rerr(r, line, "'%.*s' is undefined", (int)(v.n > 200 ? 200 : v.n), v.s ? v.s : "");
}

static void dump(Render *r, Buf *b, Val v, bool json, int depth, int line);

/* str(v) as Python/Jinja2 print it */
static Val to_str(Render *r, Val v, int line) {
    char tmp[32];
    switch (v.t) {
    case V_STR: return v;
    case V_UNDEF: return str_val("", 0);
    case V_NONE: return str_val("None", 4);
    case V_BOOL: return v.i ? str_val("True", 4) : str_val("False", 5);
    case V_INT: {
        int k = snprintf(tmp, sizeof tmp, "%" PRId64, v.i);
        char *s = ralloc(r, (size_t)k + 1);
        memcpy(s, tmp, (size_t)k + 1);
        return str_val(s, (size_t)k);
    }
    default: {
        Buf b = {0};
        dump(r, &b, v, false, 0, line);
        return buf_val(&b);
    }
    }
}

/* Python's repr(v) (json false), or json.dumps(v, ensure_ascii=False) as transformers' tojson
 * filter calls it (json true), into b. */
static void dump(Render *r, Buf *b, Val v, bool json, int depth, int line) {
    if (depth > MOE_JINJA_MAX_DEPTH) rerr(r, line, "value nested more than %d levels deep", MOE_JINJA_MAX_DEPTH);
    if (json && (v.t == V_UNDEF || v.t == V_NS || v.t == V_LOOP)) {
        if (v.t == V_UNDEF) undefined_err(r, line, v);
        rerr(r, line, "tojson: a %s is not JSON serialisable", type_name(v.t));
    }
    switch (v.t) {
    case V_STR: { /* repr quotes with ' unless the text has ' and no " */
        char q = json || !memchr(v.s, '\'', v.n) || memchr(v.s, '"', v.n) ? (json ? '"' : '\'') : '"';
        buf_put(r, b, &q, 1);
        for (size_t i = 0; i < v.n; i++) {
            unsigned char c = (unsigned char)v.s[i];
            char tmp[8] = {'\\', (char)c, 0};
            const char *esc = c == '\\' || c == (unsigned char)q ? tmp : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                            : c == '\t' ? "\\t" : json && c == '\b' ? "\\b" : json && c == '\f' ? "\\f" : NULL;
            if (!esc && (c < 0x20 || (!json && c == 0x7f)))
                snprintf(tmp, sizeof tmp, json ? "\\u%04x" : "\\x%02x", c), esc = tmp;
            if (esc) buf_puts(r, b, esc);
            else buf_put(r, b, (const char *)&c, 1);
        }
        buf_put(r, b, &q, 1);
        break;
    }
    case V_NS: buf_puts(r, b, "<Namespace "); /* then its attributes as a dict */ /* fall through */
    case V_LIST: case V_DICT: {
        bool dict = v.t != V_LIST;
        buf_puts(r, b, dict ? "{" : "[");
        for (size_t i = 0; i < v.o->n; i++) {
            if (i) buf_puts(r, b, ", ");
            if (dict) {
                Val k = v.o->v[2 * i];
                if (json && k.t != V_STR) { /* json.dumps turns 1, true, none keys into "1", "true", "null" */
                    Buf kb = {0};
                    dump(r, &kb, k, true, depth + 1, line);
                    k = buf_val(&kb);
                }
                dump(r, b, k, json, depth + 1, line);
                buf_puts(r, b, ": ");
            }
            dump(r, b, v.o->v[dict ? 2 * i + 1 : i], json, depth + 1, line);
        }
        buf_puts(r, b, dict ? "}" : "]");
        if (v.t == V_NS) buf_puts(r, b, ">");
        break;
    }
    case V_LOOP: buf_puts(r, b, "<LoopContext>"); break;
    case V_UNDEF: buf_puts(r, b, "Undefined"); break;
    case V_NONE: buf_puts(r, b, json ? "null" : "None"); break;
    case V_BOOL: buf_puts(r, b, v.i ? (json ? "true" : "True") : (json ? "false" : "False")); break;
    case V_INT: {
        Val s = to_str(r, v, line);
        buf_put(r, b, s.s, s.n);
        break;
    }
    }
}

static bool eq(Render *r, Val a, Val b, int depth, int line) {
    if (depth > MOE_JINJA_MAX_DEPTH) rerr(r, line, "value nested more than %d levels deep", MOE_JINJA_MAX_DEPTH);
    charge(r, a.t == V_STR ? a.n : 0, line);
    if (is_num(a) && is_num(b)) return a.i == b.i;
    if (a.t != b.t) return false;
    switch (a.t) {
    case V_UNDEF: case V_NONE: return true;
    case V_STR: return a.n == b.n && !memcmp(a.s, b.s, a.n);
    case V_LIST:
        if (a.o->n != b.o->n) return false;
        for (size_t i = 0; i < a.o->n; i++)
            if (!eq(r, a.o->v[i], b.o->v[i], depth + 1, line)) return false;
        return true;
    case V_DICT:
        if (a.o->n != b.o->n) return false;
        for (size_t i = 0; i < a.o->n; i++) {
            bool found = false;
            for (size_t j = 0; j < b.o->n && !found; j++)
                found = eq(r, a.o->v[2 * i], b.o->v[2 * j], depth + 1, line) &&
                        eq(r, a.o->v[2 * i + 1], b.o->v[2 * j + 1], depth + 1, line);
            if (!found) return false;
        }
        return true;
    case V_NS: return a.o == b.o;
    default: return false;
    }
}

/* the index of key in a dict or namespace, or -1 (a step per key: a big dict literal is
 * quadratic to build) */
static int64_t dict_find(Render *r, const Obj *o, Val key, int line) {
    for (size_t i = 0; i < o->n; i++) {
        step(r, line);
        if (eq(r, o->v[2 * i], key, 0, line)) return (int64_t)i;
    }
    return -1;
}

/* d[key] = v in a dict or namespace (an existing key keeps its place, as in Python) */
static void dict_set(Render *r, Obj *o, Val key, Val v, int line) {
    int64_t i = dict_find(r, o, key, line);
    if (i >= 0) {
        o->v[2 * i + 1] = v;
        return;
    }
    o->n *= 2; /* pairs as flat items while growing */
    obj_push(r, o, key);
    obj_push(r, o, v);
    o->n /= 2;
}

/* Code points of a UTF-8 string: offsets[0..count], offsets[count] = n. */
static size_t *cp_offsets(Render *r, Val s, size_t *count) {
    size_t k = 0;
    for (size_t i = 0; i < s.n; i++) k += ((unsigned char)s.s[i] & 0xC0) != 0x80;
    size_t *off = ralloc(r, (k + 1) * sizeof *off), j = 0;
    for (size_t i = 0; i < s.n; i++)
        if (((unsigned char)s.s[i] & 0xC0) != 0x80) off[j++] = i;
    off[k] = s.n;
    *count = k;
    return off;
}

/* The code points of a UTF-8 string (a step per 64 bytes), and the byte offset of the i-th. */
static size_t cp_count(Render *r, Val s, int line) {
    size_t k = 0;
    charge(r, s.n, line);
    for (size_t i = 0; i < s.n; i++) k += ((unsigned char)s.s[i] & 0xC0) != 0x80;
    return k;
}
static size_t cp_at(Val s, size_t i) {
    for (size_t b = 0, k = 0; b < s.n; b++)
        if (((unsigned char)s.s[b] & 0xC0) != 0x80 && k++ == i) return b;
    return s.n;
}

static Val get_item(Render *r, Val obj, Val key, int line) {
    if (obj.t == V_UNDEF) undefined_err(r, line, obj);
    Val missing = key.t == V_STR ? undef_val(key.s, key.n) : undef_val("item", 4);
    if ((obj.t == V_LIST || obj.t == V_STR) && is_num(key)) {
        size_t len = obj.t == V_LIST ? obj.o->n : cp_count(r, obj, line);
        int64_t i = key.i < 0 ? key.i + (int64_t)len : key.i;
        if (i < 0 || i >= (int64_t)len) return missing;
        if (obj.t == V_LIST) return obj.o->v[i];
        size_t b = cp_at(obj, (size_t)i), e = cp_at(obj, (size_t)i + 1);
        return str_val(obj.s + b, e - b);
    }
    if (obj.t == V_DICT || obj.t == V_NS) {
        int64_t i = dict_find(r, obj.o, key, line);
        return i < 0 ? missing : obj.o->v[2 * i + 1];
    }
    if (obj.t == V_LOOP && key.t == V_STR) {
        static const char *const attrs[] = {"index0", "index", "revindex0", "revindex", "first", "last", "length",
                                            NULL};
        int64_t i = obj.i, n = (int64_t)obj.n;
        int64_t vals[] = {i, i + 1, n - i - 1, n - i, i == 0, i == n - 1, n};
        for (int k = 0; attrs[k]; k++)
            if (strlen(attrs[k]) == key.n && !memcmp(attrs[k], key.s, key.n))
                return k == 4 || k == 5 ? bool_val(vals[k]) : int_val(vals[k]);
    }
    return missing;
}

static int64_t slice_bound(Render *r, Val v, int64_t len, int64_t step, bool is_start, int line) {
    if (v.t == V_NONE || v.t == V_UNDEF) return is_start ? (step < 0 ? len - 1 : 0) : (step < 0 ? -1 : len);
    if (!is_num(v)) rerr(r, line, "slice indices must be integers; got a %s", type_name(v.t));
    int64_t i = v.i;
    if (i < 0) {
        i = i < -len ? -1 : i + len;
        if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= len) {
        i = step < 0 ? len - 1 : len;
    }
    return i;
}

static Val eval(Render *r, const Node *n);

static Val slice(Render *r, const Node *n) {
    Val obj = eval(r, n->a);
    Val vstep = n->d ? eval(r, n->d) : (Val){.t = V_NONE};
    int64_t step = vstep.t == V_NONE ? 1 : is_num(vstep) ? vstep.i : 0;
    if (!step || (vstep.t != V_NONE && !is_num(vstep))) rerr(r, n->line, "slice step must be a non-zero integer");
    if (step == INT64_MIN) step = -INT64_MAX;
    size_t len = 0, *off = NULL;
    if (obj.t == V_LIST) len = obj.o->n;
    else if (obj.t == V_STR) off = cp_offsets(r, obj, &len);
    else if (obj.t == V_UNDEF) undefined_err(r, n->line, obj);
    else return undef_val("slice", 5); /* as Jinja2's getitem when the object has none */
    int64_t start = slice_bound(r, n->b ? eval(r, n->b) : (Val){.t = V_NONE}, (int64_t)len, step, true, n->line);
    int64_t stop = slice_bound(r, n->c ? eval(r, n->c) : (Val){.t = V_NONE}, (int64_t)len, step, false, n->line);
    int64_t count = step > 0 ? (start < stop ? (stop - start - 1) / step + 1 : 0)
                             : (stop < start ? (start - stop - 1) / -step + 1 : 0);
    if (obj.t == V_LIST) {
        Obj *o = new_obj(r, (size_t)count);
        for (int64_t k = 0, i = start; k < count; k++, i += step) o->v[o->n++] = obj.o->v[i];
        return (Val){.t = V_LIST, .o = o};
    }
    Buf b = {0};
    for (int64_t k = 0, i = start; k < count; k++, i += step) buf_put(r, &b, obj.s + off[i], off[i + 1] - off[i]);
    return buf_val(&b);
}

/* Binds a call's arguments to params (NULL-terminated) in out[]; missing ones are undefined. */
static void bind_args(Render *r, const Node *call, const char *what, const char *const *params, Val *out) {
    int np = 0, k = 0;
    while (params[np]) out[np] = (Val){.t = V_UNDEF}, np++;
    for (const Node *a = call->list; a; a = a->next) {
        int slot = -1;
        if (a->attr) {
            for (int i = 0; i < np; i++)
                if (strlen(params[i]) == a->attr_len && !memcmp(params[i], a->attr, a->attr_len)) slot = i;
            if (slot < 0) rerr(r, a->line, "%s has no argument '%.*s'", what, (int)a->attr_len, a->attr);
        } else if ((slot = k++) >= np) {
            rerr(r, a->line, "%s takes at most %d argument%s", what, np, np == 1 ? "" : "s");
        }
        out[slot] = eval(r, a);
    }
}

static Val want_str(Render *r, Val v, const char *what, int line) {
    if (v.t == V_UNDEF) undefined_err(r, line, v);
    if (v.t != V_STR) rerr(r, line, "%s expects a string; got a %s", what, type_name(v.t));
    return v;
}

static bool in_set(char c, Val chars) {
    return chars.t == V_STR ? memchr(chars.s, c, chars.n) != NULL : is_ws(c);
}

/* str.strip / lstrip / rstrip (chars: a string, or none/undefined for whitespace) */
static Val strip(Val s, Val chars, bool left, bool right) {
    size_t b = 0, e = s.n;
    while (left && b < e && in_set(s.s[b], chars)) b++;
    while (right && e > b && in_set(s.s[e - 1], chars)) e--;
    return str_val(s.s + b, e - b);
}

static Val split(Render *r, Val s, Val sep, Val maxsplit, int line) {
    int64_t max = maxsplit.t == V_UNDEF || maxsplit.t == V_NONE ? -1 : is_num(maxsplit) ? maxsplit.i : -1;
    Obj *o = new_obj(r, 4);
    size_t i = 0;
    if (sep.t == V_UNDEF || sep.t == V_NONE) { /* runs of whitespace, no empty pieces */
        for (;;) {
            while (i < s.n && is_ws(s.s[i])) i++;
            if (i == s.n) break;
            size_t b = i;
            if (max >= 0 && (int64_t)o->n == max) i = s.n;
            else
                while (i < s.n && !is_ws(s.s[i])) i++;
            obj_push(r, o, str_val(s.s + b, i - b));
        }
        return (Val){.t = V_LIST, .o = o};
    }
    want_str(r, sep, "split", line);
    if (!sep.n) rerr(r, line, "split: empty separator");
    for (;;) {
        const char *hit = max < 0 || (int64_t)o->n < max ? memmem(s.s + i, s.n - i, sep.s, sep.n) : NULL;
        if (!hit) break;
        obj_push(r, o, str_val(s.s + i, (size_t)(hit - s.s) - i));
        i = (size_t)(hit - s.s) + sep.n;
    }
    obj_push(r, o, str_val(s.s + i, s.n - i));
    return (Val){.t = V_LIST, .o = o};
}

/* What iterating v gives, as a list: a list's items, a dict's keys, a string's characters,
 * nothing for undefined; anything else is an error. */
static Obj *iter_items(Render *r, Val v, int line) {
    if (v.t == V_LIST) return v.o;
    Obj *items;
    if (v.t == V_DICT) {
        items = new_obj(r, v.o->n);
        for (size_t i = 0; i < v.o->n; i++) items->v[items->n++] = v.o->v[2 * i];
    } else if (v.t == V_STR) {
        size_t len, *off = cp_offsets(r, v, &len);
        items = new_obj(r, len);
        for (size_t i = 0; i < len; i++) items->v[items->n++] = str_val(v.s + off[i], off[i + 1] - off[i]);
    } else if (v.t == V_UNDEF) {
        items = new_obj(r, 0);
    } else {
        rerr(r, line, "a %s is not iterable", type_name(v.t));
    }
    return items;
}

static Val call(Render *r, const Node *n) {
#define IS(lit) (n->len == sizeof lit - 1 && !memcmp(n->name, lit, n->len))
    Val a[4];
    if (!n->a) { /* a global function */
        if (IS("raise_exception")) {
            bind_args(r, n, "raise_exception", (const char *const[]){"message", NULL}, a);
            Val msg = to_str(r, a[0], n->line);
            rerr(r, 0, "%.*s", (int)(msg.n > 400 ? 400 : msg.n), msg.s);
        }
        /* namespace(name=value, ...) */
        Obj *o = new_obj(r, 8);
        for (const Node *arg = n->list; arg; arg = arg->next) {
            if (!arg->attr) rerr(r, arg->line, "namespace() takes keyword arguments only");
            dict_set(r, o, str_val(arg->attr, arg->attr_len), eval(r, arg), arg->line);
        }
        return (Val){.t = V_NS, .o = o};
    }
    Val self = eval(r, n->a);
    if (self.t == V_UNDEF) undefined_err(r, n->line, self);
    if (IS("get") && self.t == V_DICT) {
        bind_args(r, n, "get", (const char *const[]){"key", "default", NULL}, a);
        Val v = get_item(r, self, a[0], n->line);
        return v.t == V_UNDEF ? (a[1].t == V_UNDEF ? (Val){.t = V_NONE} : a[1]) : v;
    }
    if (self.t != V_STR) rerr(r, n->line, "a %s has no method '%.*s'", type_name(self.t), (int)n->len, n->name);
    charge(r, self.n, n->line);
    if (IS("startswith") || IS("endswith")) {
        bind_args(r, n, "startswith", (const char *const[]){"prefix", NULL}, a);
        Val x = want_str(r, a[0], IS("startswith") ? "startswith" : "endswith", n->line);
        if (x.n > self.n) return bool_val(false);
        return bool_val(!memcmp(IS("startswith") ? self.s : self.s + self.n - x.n, x.s, x.n));
    }
    if (IS("strip") || IS("lstrip") || IS("rstrip")) {
        bind_args(r, n, "strip", (const char *const[]){"chars", NULL}, a);
        if (a[0].t != V_UNDEF && a[0].t != V_NONE) want_str(r, a[0], "strip", n->line);
        return strip(self, a[0], !IS("rstrip"), !IS("lstrip"));
    }
    if (IS("split")) {
        bind_args(r, n, "split", (const char *const[]){"sep", "maxsplit", NULL}, a);
        return split(r, self, a[0], a[1], n->line);
    }
    if (IS("replace")) {
        bind_args(r, n, "replace", (const char *const[]){"old", "new", "count", NULL}, a);
        Val from = want_str(r, a[0], "replace", n->line), to = want_str(r, a[1], "replace", n->line);
        int64_t max = is_num(a[2]) ? a[2].i : -1;
        Buf b = {0};
        if (!from.n) { /* '' matches before each character and at the end */
            size_t cps, *off = cp_offsets(r, self, &cps);
            for (size_t k = 0; k <= cps; k++) {
                if (max < 0 || (int64_t)k < max) buf_put(r, &b, to.s, to.n);
                if (k < cps) buf_put(r, &b, self.s + off[k], off[k + 1] - off[k]);
            }
            return buf_val(&b);
        }
        size_t i = 0;
        for (int64_t done = 0; max < 0 || done < max; done++) {
            const char *hit = memmem(self.s + i, self.n - i, from.s, from.n);
            if (!hit) break;
            buf_put(r, &b, self.s + i, (size_t)(hit - self.s) - i);
            buf_put(r, &b, to.s, to.n);
            i = (size_t)(hit - self.s) + from.n;
        }
        buf_put(r, &b, self.s + i, self.n - i);
        return buf_val(&b);
    }
    rerr(r, n->line, "a string has no method '%.*s'", (int)n->len, n->name);
}

static Val filter(Render *r, const Node *n) {
    Val v = eval(r, n->a), a[2];
    if (IS("length") || IS("count")) {
        bind_args(r, n, "length", (const char *const[]){NULL}, a);
        size_t len = 0;
        if (v.t == V_STR) len = cp_count(r, v, n->line);
        else if (v.t == V_LIST || v.t == V_DICT) len = v.o->n;
        else if (v.t != V_UNDEF) rerr(r, n->line, "a %s has no length", type_name(v.t));
        return int_val((int64_t)len);
    }
    if (IS("trim")) {
        bind_args(r, n, "trim", (const char *const[]){"chars", NULL}, a);
        if (a[0].t != V_UNDEF && a[0].t != V_NONE) want_str(r, a[0], "trim", n->line);
        charge(r, v.t == V_STR ? v.n : 0, n->line);
        return strip(to_str(r, v, n->line), a[0], true, true);
    }
    if (IS("string")) {
        bind_args(r, n, "string", (const char *const[]){NULL}, a);
        return to_str(r, v, n->line);
    }
    if (IS("tojson")) {
        bind_args(r, n, "tojson", (const char *const[]){"indent", NULL}, a);
        if (a[0].t != V_UNDEF && a[0].t != V_NONE) rerr(r, n->line, "tojson: indent is not supported");
        Buf b = {0};
        dump(r, &b, v, true, 0, n->line);
        return buf_val(&b);
    }
    if (IS("default") || IS("d")) {
        bind_args(r, n, "default", (const char *const[]){"default_value", "boolean", NULL}, a);
        bool use = v.t == V_UNDEF || (truthy(a[1]) && !truthy(v));
        return use ? (a[0].t == V_UNDEF ? str_val("", 0) : a[0]) : v;
    }
    if (IS("join")) {
        bind_args(r, n, "join", (const char *const[]){"d", NULL}, a);
        Val sep = a[0].t == V_UNDEF ? str_val("", 0) : to_str(r, a[0], n->line);
        Obj *items = iter_items(r, v, n->line);
        Buf b = {0};
        for (size_t i = 0; i < items->n; i++) {
            if (i) buf_put(r, &b, sep.s, sep.n);
            Val s = to_str(r, items->v[i], n->line);
            buf_put(r, &b, s.s, s.n);
        }
        return buf_val(&b);
    }
    /* first, last */
    bind_args(r, n, "first", (const char *const[]){NULL}, a);
    Obj *items = iter_items(r, v, n->line);
    if (!items->n) return undef_val("item", 4);
    return items->v[IS("first") ? 0 : items->n - 1];
}

static bool test(Render *r, const Node *n) {
    Val v = eval(r, n->a);
    if (IS("defined")) return v.t != V_UNDEF;
    if (IS("undefined")) return v.t == V_UNDEF;
    if (IS("none")) return v.t == V_NONE;
    if (IS("string")) return v.t == V_STR;
    if (IS("number")) return is_num(v);
    if (IS("integer")) return v.t == V_INT;
    if (IS("boolean")) return v.t == V_BOOL;
    if (IS("mapping")) return v.t == V_DICT;
    if (IS("sequence") || IS("iterable")) return v.t == V_STR || v.t == V_LIST || v.t == V_DICT || v.t == V_UNDEF;
    if (IS("true")) return v.t == V_BOOL && v.i;
    if (IS("false")) return v.t == V_BOOL && !v.i;
    /* even, odd */
    if (v.t == V_UNDEF) undefined_err(r, n->line, v);
    if (!is_num(v)) rerr(r, n->line, "%.*s expects an integer; got a %s", (int)n->len, n->name, type_name(v.t));
    return (v.i % 2 != 0) == IS("odd");
#undef IS
}

static bool contains(Render *r, Val hay, Val x, int line) {
    if (hay.t == V_STR) {
        x = want_str(r, x, "'in' on a string", line);
        charge(r, hay.n, line);
        return !x.n || memmem(hay.s, hay.n, x.s, x.n);
    }
    if (hay.t == V_LIST) {
        for (size_t i = 0; i < hay.o->n; i++)
            if (eq(r, hay.o->v[i], x, 0, line)) return true;
        return false;
    }
    if (hay.t == V_DICT) return dict_find(r, hay.o, x, line) >= 0;
    if (hay.t == V_UNDEF) return false;
    rerr(r, line, "'in' needs a string, list or dict on the right; got a %s", type_name(hay.t));
}

static Val binop(Render *r, const Node *n) {
    Val a = eval(r, n->a), b = eval(r, n->b);
    int op = n->op;
    if (op == OP_EQ || op == OP_NE) return bool_val(eq(r, a, b, 0, n->line) == (op == OP_EQ));
    if (op == OP_IN || op == OP_NOTIN) return bool_val(contains(r, b, a, n->line) == (op == OP_IN));
    if (op == OP_CAT) {
        Val x = to_str(r, a, n->line), y = to_str(r, b, n->line);
        Buf buf = {0};
        buf_put(r, &buf, x.s, x.n);
        buf_put(r, &buf, y.s, y.n);
        return buf_val(&buf);
    }
    if (a.t == V_UNDEF) undefined_err(r, n->line, a);
    if (b.t == V_UNDEF) undefined_err(r, n->line, b);
    static const char *const names[] = {"+", "-", "*", "//", "%", "~", "==", "!=", "<", "<=", ">", ">="};
    if (op >= OP_LT && op <= OP_GE) {
        int c;
        if (is_num(a) && is_num(b)) c = a.i < b.i ? -1 : a.i > b.i;
        else if (a.t == V_STR && b.t == V_STR) {
            charge(r, a.n < b.n ? a.n : b.n, n->line);
            c = memcmp(a.s, b.s, a.n < b.n ? a.n : b.n);
            if (!c) c = a.n < b.n ? -1 : a.n > b.n;
        } else rerr(r, n->line, "cannot compare a %s with a %s using '%s'", type_name(a.t), type_name(b.t), names[op]);
        return bool_val(op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0);
    }
    if (op == OP_ADD && a.t == b.t && (a.t == V_STR || a.t == V_LIST)) {
        if (a.t == V_STR) {
            Buf buf = {0};
            buf_put(r, &buf, a.s, a.n);
            buf_put(r, &buf, b.s, b.n);
            return buf_val(&buf);
        }
        Obj *o = new_obj(r, a.o->n + b.o->n);
        for (size_t i = 0; i < a.o->n; i++) o->v[o->n++] = a.o->v[i];
        for (size_t i = 0; i < b.o->n; i++) o->v[o->n++] = b.o->v[i];
        return (Val){.t = V_LIST, .o = o};
    }
    if (op == OP_MUL && is_num(a) && (b.t == V_STR || b.t == V_LIST)) { /* 3 * 'ab' */
        Val t = a;
        a = b;
        b = t;
    }
    if (op == OP_MUL && (a.t == V_STR || a.t == V_LIST) && is_num(b)) { /* 'ab' * 3, [x] * 3 */
        Buf buf = {0};
        Obj *o = a.t == V_LIST ? new_obj(r, 0) : NULL;
        for (int64_t k = 0; k < b.i && (o ? a.o->n : a.n); k++) {
            if (!o) buf_put(r, &buf, a.s, a.n);
            for (size_t i = 0; o && i < a.o->n; i++) obj_push(r, o, a.o->v[i]);
        }
        return o ? (Val){.t = V_LIST, .o = o} : buf_val(&buf);
    }
    if (!is_num(a) || !is_num(b))
        rerr(r, n->line, "unsupported operand types for %s: %s and %s", names[op], type_name(a.t), type_name(b.t));
    int64_t x = a.i, y = b.i, z = 0;
    bool overflow = false;
    switch (op) {
    case OP_ADD: overflow = __builtin_add_overflow(x, y, &z); break;
    case OP_SUB: overflow = __builtin_sub_overflow(x, y, &z); break;
    case OP_MUL: overflow = __builtin_mul_overflow(x, y, &z); break;
    default:
        if (!y) rerr(r, n->line, "division by zero");
        if (x == INT64_MIN && y == -1) overflow = true;
        else { /* Python: floor division, the remainder takes the divisor's sign */
            int64_t q = x / y, m = x % y;
            if (m && ((m < 0) != (y < 0))) q--, m += y;
            z = op == OP_MOD ? m : q;
        }
    }
    if (overflow) rerr(r, n->line, "integer overflow in '%s'", names[op]);
    return int_val(z);
}

static Val lookup(Render *r, const char *name, size_t len) {
    for (size_t i = r->n_vars; i-- > 0;)
        if (r->vars[i].len == len && !memcmp(r->vars[i].name, name, len)) return r->vars[i].v;
    return undef_val(name, len);
}

static void set_var(Render *r, const char *name, size_t len, Val v) {
    for (size_t i = r->frame; i < r->n_vars; i++)
        if (r->vars[i].len == len && !memcmp(r->vars[i].name, name, len)) {
            r->vars[i].v = v;
            return;
        }
    if (r->n_vars == r->cap_vars) {
        size_t cap = r->cap_vars ? 2 * r->cap_vars : 32;
        Binding *b = ralloc(r, cap * sizeof *b);
        if (r->n_vars) memcpy(b, r->vars, r->n_vars * sizeof *b);
        r->vars = b;
        r->cap_vars = cap;
    }
    r->vars[r->n_vars++] = (Binding){name, len, v};
}

static Val eval(Render *r, const Node *n) {
    step(r, n->line);
    switch (n->kind) {
    case E_LIT: return n->lit;
    case E_NAME: return lookup(r, n->name, n->len);
    case E_ATTR: return get_item(r, eval(r, n->a), str_val(n->name, n->len), n->line);
    case E_INDEX: {
        Val obj = eval(r, n->a);
        return get_item(r, obj, eval(r, n->b), n->line);
    }
    case E_SLICE: return slice(r, n);
    case E_CALL: return call(r, n);
    case E_FILTER: return filter(r, n);
    case E_TEST: return bool_val(test(r, n) != (n->op != 0));
    case E_NOT: return bool_val(!truthy(eval(r, n->a)));
    case E_NEG: {
        Val v = eval(r, n->a);
        if (v.t == V_UNDEF) undefined_err(r, n->line, v);
        if (!is_num(v)) rerr(r, n->line, "bad operand type for unary %c: %s", n->op ? '+' : '-', type_name(v.t));
        if (n->op) return int_val(v.i);
        if (v.i == INT64_MIN) rerr(r, n->line, "integer overflow in unary -");
        return int_val(-v.i);
    }
    case E_BIN: return binop(r, n);
    case E_AND: {
        Val a = eval(r, n->a);
        return truthy(a) ? eval(r, n->b) : a;
    }
    case E_OR: {
        Val a = eval(r, n->a);
        return truthy(a) ? a : eval(r, n->b);
    }
    case E_COND: return truthy(eval(r, n->a)) ? eval(r, n->b) : n->c ? eval(r, n->c) : undef_val("else", 4);
    case E_LIST: case E_DICT: {
        Obj *o = new_obj(r, 4);
        for (const Node *i = n->list; i; i = i->next) {
            if (n->kind == E_LIST) {
                obj_push(r, o, eval(r, i));
                continue;
            }
            Val key = eval(r, i);
            i = i->next;
            dict_set(r, o, key, eval(r, i), n->line);
        }
        return (Val){.t = n->kind == E_LIST ? V_LIST : V_DICT, .o = o};
    }
    default: rerr(r, n->line, "internal error: statement in an expression");
    }
}

static void out_put(Render *r, Val s, int line) {
    if (r->out.n + s.n > (size_t)MOE_JINJA_MAX_OUT)
        rerr(r, line, "the output is larger than %d MiB", MOE_JINJA_MAX_OUT >> 20);
    buf_put(r, &r->out, s.s, s.n);
}

static void exec(Render *r, const Node *n);

/* the body in a fresh scope with name bound to v and loop to (index0, length) */
static void run_iteration(Render *r, const Node *f, const Node *body, Val v, int64_t index0, int64_t length) {
    size_t saved_n = r->n_vars, saved_frame = r->frame;
    r->frame = r->n_vars;
    set_var(r, f->name, f->len, v);
    set_var(r, "loop", 4, (Val){.t = V_LOOP, .i = index0, .n = (size_t)length});
    exec(r, body);
    r->n_vars = saved_n;
    r->frame = saved_frame;
}

static void exec_for(Render *r, const Node *f) {
    Obj *items = iter_items(r, eval(r, f->a), f->line);
    if (f->b) { /* for x in seq if cond: loop.* count the kept items only */
        Obj *kept = new_obj(r, items->n);
        for (size_t i = 0; i < items->n; i++) {
            size_t saved_n = r->n_vars, saved_frame = r->frame;
            r->frame = r->n_vars;
            set_var(r, f->name, f->len, items->v[i]);
            if (truthy(eval(r, f->b))) kept->v[kept->n++] = items->v[i];
            r->n_vars = saved_n;
            r->frame = saved_frame;
        }
        items = kept;
    }
    if (!items->n) exec(r, f->list2);
    Val *v = items->v; /* a snapshot: the body cannot change a list */
    for (size_t i = 0, n = items->n; i < n; i++) run_iteration(r, f, f->list, v[i], (int64_t)i, (int64_t)n);
}

static void exec(Render *r, const Node *n) {
    for (; n; n = n->next) {
        step(r, n->line);
        switch (n->kind) {
        case S_TEXT: out_put(r, n->lit, n->line); break;
        case S_OUT: out_put(r, to_str(r, eval(r, n->a), n->line), n->line); break;
        case S_IF: exec(r, truthy(eval(r, n->a)) ? n->list : n->list2); break;
        case S_FOR: exec_for(r, n); break;
        case S_SET: {
            Val v = eval(r, n->a);
            if (!n->attr) {
                set_var(r, n->name, n->len, v);
                break;
            }
            Val ns = lookup(r, n->name, n->len);
            if (ns.t != V_NS)
                rerr(r, n->line, "cannot set attribute '%.*s' of '%.*s': a %s, not a namespace", (int)n->attr_len,
                     n->attr, (int)n->len, n->name, type_name(ns.t));
            dict_set(r, ns.o, str_val(n->attr, n->attr_len), v, n->line);
            break;
        }
        default: rerr(r, n->line, "internal error: expression as a statement");
        }
    }
}

/* setjmp in a function of its own: nothing it modifies is read after a longjmp */
static int render_run(Render *r, const MoeJinja *t, const MoeChatMessage *msgs, int n, bool add_generation_prompt,
                      const char *bos_token, const char *eos_token, char **out) {
    if (setjmp(r->jb)) return -1;
    Obj *list = new_obj(r, (size_t)n);
    for (int i = 0; i < n; i++) {
        Obj *m = new_obj(r, 4);
        const char *fields[2] = {msgs[i].role, msgs[i].content};
        for (int k = 0; k < 2; k++) {
            m->v[2 * k] = k ? str_val("content", 7) : str_val("role", 4);
            m->v[2 * k + 1] = fields[k] ? str_val(fields[k], strlen(fields[k])) : (Val){.t = V_NONE};
        }
        m->n = 2;
        list->v[list->n++] = (Val){.t = V_DICT, .o = m};
    }
    set_var(r, "messages", 8, (Val){.t = V_LIST, .o = list});
    set_var(r, "add_generation_prompt", 21, bool_val(add_generation_prompt));
    set_var(r, "bos_token", 9, str_val(bos_token ? bos_token : "", bos_token ? strlen(bos_token) : 0));
    set_var(r, "eos_token", 9, str_val(eos_token ? eos_token : "", eos_token ? strlen(eos_token) : 0));
    set_var(r, "tools", 5, (Val){.t = V_NONE});
    set_var(r, "documents", 9, (Val){.t = V_NONE});
    exec(r, t->body);
    char *s = malloc(r->out.n + 1);
    if (!s) rerr(r, 0, "out of memory");
    if (r->out.n) memcpy(s, r->out.p, r->out.n);
    s[r->out.n] = 0;
    *out = s;
    return 0;
}

int moe_chat_render(const MoeJinja *t, const MoeChatMessage *msgs, int n, bool add_generation_prompt,
                    const char *bos_token, const char *eos_token, char **out, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (out) *out = NULL;
    if (!t || !out || n < 0 || (n && !msgs)) {
        if (err && errlen) snprintf(err, errlen, "chat template: bad arguments to moe_chat_render");
        return -1;
    }
    Render r = {.pool = {.limit = MOE_JINJA_MAX_MEM}, .err = err, .errlen = errlen};
    int rc = render_run(&r, t, msgs, n, add_generation_prompt, bos_token, eos_token, out);
    pool_free(&r.pool);
    return rc;
}
