/* ir: the graph IR shared by the generic path (interp/) and the compiler passes.
 * A Graph owns an Arena; nodes live in one growable array, refer to each other by ValueId and are
 * only appended, so the array is in topological order. Dims are constants (>= 0) or symbols
 * (SYM_T: tokens in the step). A WEIGHT node carries TensorInfo pointers, never data.
 * ir_verify checks types and shapes; ir_print writes the text form (`%12 = matmul %3, %7 ...`). */
#ifndef MOEC_IR_H
#define MOEC_IR_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "arena.h"
#include "diag.h"
#include "dtype.h"
#include "safetensors.h"

typedef enum Op {
#define OP(name, min_in, max_in, doc) OP_##name,
#include "ops.def"
#undef OP
    OP_COUNT
} Op;

enum { MOE_MAX_IN = 8 };
enum { SYM_T = -1 };                 /* a dim bound per step: tokens in the step */

typedef struct ValueId {
    uint32_t id;
} ValueId;

/* An absent optional input of a fused op. */
#define IR_NONE ((ValueId){UINT32_MAX})
static inline bool ir_is_none(ValueId v) { return v.id == UINT32_MAX; }

/* How the pack pass lays a WEIGHT node's tensors out in the weights file. */
typedef enum PackKind {
    PACK_NONE,       /* not packed (source graph) */
    PACK_ROWS,       /* the parts' rows one after another (one tensor, q|k|v, or E experts) */
    PACK_PANEL,      /* the parts' rows stacked into one matrix, in the panel layout (kt_common.h) */
    PACK_PANEL_EACH, /* each part (E experts of one shape) a panel matrix of its own, one after another */
    PACK_GATE_UP,    /* parts = E gate then E up tensors [I, H]: per expert one panel matrix whose
                        32-row blocks hold 16 gate rows then the same 16 up rows */
    PACK_ROPE,       /* computed: [S][hd] = cos[hd/2], sin[hd/2] per position (attr rope) */
} PackKind;

typedef struct RopeAttr {
    int64_t n_heads, head_dim;
    const float *inv_freq;           /* [head_dim/2], float32 as HF computes it */
    float mscale;                    /* multiplies cos and sin (yarn attention_factor), else 1 */
} RopeAttr;

typedef struct AttnAttr {
    int64_t n_heads, n_kv, head_dim;
    int64_t window;                  /* 0: none; else key j visible from i iff i - j < window */
    int layer;
} AttnAttr;

typedef struct RouterAttr {
    int64_t n_exp, top_k;
    bool renorm;                     /* divide the k weights by their sum */
    int layer;
} RouterAttr;

typedef struct MoeAttr {
    int64_t n_exp, top_k;
    int64_t capacity;                /* 0 until specialised */
    int layer;
} MoeAttr;

typedef struct Node {
    Op op;
    DType dtype;
    int rank;
    int64_t shape[MOE_MAX_DIMS];     /* outermost first; SYM_T where symbolic */
    int n_in;
    ValueId in[MOE_MAX_IN];
    const char *name;                /* e.g. "L07.moe.router" */
    union {
        struct {
            const TensorInfo **parts; /* [n_parts]; n_parts > 1 stacks experts */
            int n_parts;
            PackKind pack;            /* set by fuse */
            DType dtype2;             /* PACK_PANEL of two block types (a GGUF mixture's q|k|v): rows */
            int64_t split;            /* [split, rows) are dtype2, a second panel matrix after the first
                                       * (split a multiple of 32); 0: one dtype. Set by fuse */
            int64_t offset;           /* byte offset in the packed weights, set by pack */
            RopeAttr rope;            /* PACK_ROPE: the table to compute */
            int64_t rope_positions;
        } weight;
        struct {
            float eps;
            int32_t amx;              /* FNORM_MATMUL: AMX tiles (set by fuse) */
        } norm;
        struct {
            float c;
        } clamp;
        RopeAttr rope;
        AttnAttr attn;
        RouterAttr router;
        MoeAttr moe;
        struct {
            float eps;
            int64_t n_heads, n_kv, head_dim, S;
            int32_t qk_norm;          /* 0 none, 1 per head, 2 whole row */
            float clip;
            int layer;
        } qkv;                        /* FQKV_ROPE */
        struct {
            float eps;
            int64_t n_exp, top_k, capacity, d_ff, d_shared, threads;
            int32_t renorm, shared_kind;
            int32_t amx;              /* FEXPERTS: AMX tiles (set by fuse) */
            int32_t q8;               /* FEXPERTS_ACT: int8 down (kernels.h: kt_experts_act_floats) */
            int layer;
        } ffn;                        /* FROUTER, FEXPERTS */
    } a;
    int64_t offset;                   /* arena byte offset of the output, set by plan; -1 none */
    int64_t scratch_offset;           /* arena byte offset of the kernel's scratch, set by plan */
    int64_t scratch_bytes;            /* set by fuse */
} Node;

typedef struct Graph {
    Arena *arena;
    Node *nodes;                     /* [n] in topological order */
    uint32_t n, cap;
    ValueId ids;                     /* the INPUT_IDS node */
    ValueId logits;                  /* the output [T, V] */
    int n_layers;
    const char *family;
    int64_t n_tok;                   /* 0: T symbolic; else the bound tokens per step */
    int32_t act_bits;                /* --act bits weights add to the kernels' wdt (kt_wdt_bind: KT_ACT_I8 and
                                      * KT_DP_VNNI on block types, KT_ACT_BF16 and KT_DP_BF16 on bf16 ones,
                                      * kernels/kt_common.h, kt_quant.h), and the target's bits (KT_NARROW, on
                                      * all); no --act bits: the exact mode. Set before fuse */
    int64_t arena_bytes;             /* set by plan */
} Graph;

Graph *ir_graph_new(Arena *a);
static inline Node *ir_node(const Graph *g, ValueId v) { return &g->nodes[v.id]; }
/* Appends a node with the given inputs; shape and dtype are filled by the caller or ir_infer. */
ValueId ir_add(Graph *g, Op op, const char *name, int n_in, const ValueId *in);
/* Computes the node's dtype and shape from its inputs and attrs (asserts on our own misuse). */
void ir_infer(Graph *g, ValueId v);
const char *ir_op_name(Op op);
const char *ir_pack_name(PackKind k);
/* Checks every node: arity, input dtypes and shapes, attrs. Reports through d; true when valid. */
bool ir_verify(const Graph *g, Diag *d);
/* Text form, one node per line. */
void ir_print(const Graph *g, FILE *f);
/* Elements per token-row of a node (product of dims after the first), and of the whole node when
 * the symbolic T is n_tok. */
int64_t ir_row_elems(const Node *n);
int64_t ir_elems(const Node *n, int64_t n_tok);

#endif
