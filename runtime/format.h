/* format: the contract between `moec compile` and libmoert.
 *
 * A compiled model is an object file that defines one symbol, `moe_program` (a MoeProgram): the
 * manifest of the model and three straight-line step functions: prefill (T = prefill_chunk
 * tokens), decode (T = batch tokens) and prefill_last, the same as prefill except that it computes
 * the logits of one row only, args.last_row, into row 0 of the prefill logits (for a caller that
 * wants only the last prompt token's logits). A step function is called by every OpenMP thread of
 * the runtime with (args, ith, nth); it calls the specialised kernels in order, each splitting its
 * rows by (ith, nth), with moert_barrier() between dependent kernels. Every shape and offset inside
 * is a compile-time constant: the step only adds the constant offsets to the base pointers in args
 * (and, in prefill_last, last_row rows to the logits input); the one runtime shape is the number
 * of real rows of a prefill step, args.last_row + 1, passed to every kernel. The routed experts are
 * the exception to constant offsets: the expert kernels of layer l read expert e through the table
 * args.experts (the runtime fills it: into the weights, or into its expert pool under a memory
 * budget), and the step calls moert_experts_ready after each MoE layer's router.
 *
 * Weights file (.moew, or the same bytes appended to the executable):
 *   MoeWeightsHeader (little-endian, 4096 bytes reserved)
 *   sections, each at a 4096-aligned offset from the start of the header:
 *     MOE_SECTION_WEIGHTS   packed weights; the kernels read them at manifest-constant offsets
 *     MOE_SECTION_TOKENIZER optional serialised tokenizer (runtime/tokenizer.h)
 *     MOE_SECTION_CHAT_TEMPLATE optional chat template: the Jinja text (runtime/jinja.h) and a NUL
 * When appended to an executable, the file ends with a MoeTrailer giving the header's offset.
 * moec puts the weights section at MOE_WEIGHTS_OFFSET and an executable's header at a multiple of
 * MOE_HUGE_ALIGN, and writes them in 4 MiB chunks, so the weights sit 2 MiB-aligned in the file and
 * the page cache can hold them in 2 MiB folios, which the runtime maps as huge pages (decode on the
 * bench preset: 61 tok/s with half the weights mapped so, 66 with nearly all).
 * The runtime refuses a weights file whose magic, format_version, model_hash or sizes differ from
 * the manifest the program was compiled with. model_hash (runtime/hash.h) is seeded by the family
 * name and runs over the weights section, then the tokenizer section, then the chat template
 * section; loading compares only the stored hashes (a flipped byte inside a section goes
 * unnoticed), moe_model_verify (`OUT --verify`, `moec verify`) recomputes it over every byte. */
#ifndef MOE_FORMAT_H
#define MOE_FORMAT_H
#include <stdint.h>

#define MOE_FORMAT_VERSION 6u  /* 2: MoeProgram.prefill_last, MoeStepArgs.last_row; 3: prefill steps
                                  compute rows 0..last_row only (padding is not routed); 4: panel pairs
                                  padded to 16, MoeManifest.needs, the tiled KV cache, weights at 2 MiB;
                                  5: batch slots: per-row positions and slots, KV cache and stats per slot;
                                  6: routed experts through MoeStepArgs.experts, moert_experts_ready,
                                  MoeManifest.experts (bounded memory) */
#define MOE_WEIGHTS_MAGIC "MOEWGT01"  /* 8 bytes, no NUL */
#define MOE_TRAILER_MAGIC "MOEEMBED"  /* 8 bytes, no NUL */
enum { MOE_MAX_LAYERS = 256, MOE_MAX_SECTIONS = 4, MOE_HEADER_BYTES = 4096, MOE_ALIGN = 4096 };
enum { MOE_MAX_BATCH = 1024 }; /* most sequence slots a program may be compiled for */
enum { MOE_HUGE_ALIGN = 2 << 20, MOE_WEIGHTS_OFFSET = 2 << 20 }; /* a huge page (x86-64, AArch64 4K granule) */

typedef enum MoeSectionKind {
    MOE_SECTION_NONE = 0,
    MOE_SECTION_WEIGHTS = 1,
    MOE_SECTION_TOKENIZER = 2,
    MOE_SECTION_CHAT_TEMPLATE = 3
} MoeSectionKind;

typedef struct MoeSection {
    uint32_t kind;           /* MoeSectionKind */
    uint32_t reserved;
    uint64_t offset;         /* from the start of the header, MOE_ALIGN-aligned */
    uint64_t size;           /* bytes */
} MoeSection;

typedef struct MoeWeightsHeader {
    char magic[8];           /* MOE_WEIGHTS_MAGIC */
    uint32_t format_version; /* MOE_FORMAT_VERSION */
    uint32_t n_sections;
    uint64_t model_hash;     /* must equal MoeManifest.model_hash */
    uint64_t total_size;     /* header + sections, bytes */
    MoeSection sections[MOE_MAX_SECTIONS];
    char family[32];         /* the hash seed's family, NUL-terminated (moec verify of a lone .moew) */
} MoeWeightsHeader;

typedef struct MoeTrailer {
    char magic[8];           /* MOE_TRAILER_MAGIC */
    uint64_t header_offset;  /* file offset of the MoeWeightsHeader */
} MoeTrailer;

/* What one step function reads and writes. Rows 0 .. last_row of a step are real tokens, each of
 * one sequence slot (its KV cache and stats) at one position: a prefill step's rows are one slot's
 * consecutive positions; a decode step's rows are distinct slots in ascending slot order (expert
 * capacity counts assignments in row order). Rows after last_row are padding that no kernel reads
 * or writes. */
typedef struct MoeStepArgs {
    char *arena;             /* activations, manifest.arena_bytes; laid out by the plan pass */
    const char *weights;     /* the MOE_SECTION_WEIGHTS bytes */
    char *kv;                /* KV cache, manifest.kv_bytes: per layer, keys [batch][...] then values [batch][...] */
    const int32_t *ids;      /* [T] token ids of the step */
    const int64_t *pos;      /* [T] sequence position of each row (< context) */
    const int32_t *slot;     /* [T] slot of each row (< batch) */
    int64_t *stats;          /* [batch][n_layers][n_exp + 1]: tokens per expert, then dropped assignments */
    int64_t last_row;        /* the last real row (< T); prefill_last computes its logits, into row 0 */
    /* [n_layers][2][n_exp]: where the expert kernels of layer l read expert e's packed gate_up
     * ([l][0][e]) and down ([l][1][e]) matrices; unused rows of dense layers. The runtime points them
     * into the weights once at load, or, with a memory budget, at the expert pool's slots as
     * moert_experts_ready loads them. */
    const void *const *experts;
    void *xcache;            /* the runtime's expert cache (runtime/expert_cache.h), NULL without a budget */
} MoeStepArgs;

typedef void (*MoeStepFn)(const MoeStepArgs *args, int32_t ith, int32_t nth);

/* Where the routed experts of one MoE layer sit in the weights section: expert e's packed gate_up
 * matrix is the gate_up_bytes bytes at gate_up + e * gate_up_bytes, its down matrix likewise (each
 * expert's matrix is contiguous; the E of a layer follow each other). */
typedef struct MoeExpertLoc {
    int64_t gate_up, gate_up_bytes, down, down_bytes;
} MoeExpertLoc;

typedef struct MoeManifest {
    uint32_t format_version;
    uint32_t n_layers;
    uint64_t model_hash;     /* hash of the config and of the packed weights */
    char family[32];         /* "mixtral", ... */
    char target[64];         /* triple */
    char cpu[64];
    int64_t vocab_size, n_exp, top_k;
    int64_t batch;           /* B: sequence slots, each with its own KV cache; rows of a decode step */
    int64_t context;         /* S: positions the KV cache of each slot holds */
    int64_t prefill_chunk;   /* P: tokens per prefill step */
    int64_t capacity_prefill, capacity_decode; /* C per step kind */
    int64_t arena_bytes, kv_bytes, weights_bytes;
    int64_t logits_prefill, logits_decode;     /* arena offsets of the [T, V] f32 logits (prefill_last: [1, V]) */
    int64_t routes_prefill[MOE_MAX_LAYERS];    /* arena offsets of MoeRoute [T, top_k]; -1: dense layer */
    int64_t routes_decode[MOE_MAX_LAYERS];
    int64_t bos_token_id, eos_token_id;        /* -1 when none */
    int32_t weight_dtype;    /* DType of the big matrices after packing */
    uint32_t needs;          /* MOE_NEED_* the runtime must arrange before the first step */
    int64_t max_threads;     /* per-thread partials and scratch are sized for this many threads */
    MoeExpertLoc experts[MOE_MAX_LAYERS]; /* the routed experts' bytes of each layer; gate_up = -1: dense */
} MoeManifest;

/* MoeManifest.needs */
enum { MOE_NEED_AMX = 1u }; /* x86 AMX tiles: the process must be granted the AMX state (arch_prctl) */

typedef struct MoeProgram {
    const MoeManifest *manifest;
    MoeStepFn prefill;       /* T = prefill_chunk: logits of every row */
    MoeStepFn decode;        /* T = batch: one row per live slot */
    MoeStepFn prefill_last;  /* prefill with the logits of row args.last_row only, at logits_prefill */
} MoeProgram;

/* Defined by the compiled object. */
extern const MoeProgram moe_program;

/* Provided by libmoert for the step functions: an OpenMP barrier across the step's threads. */
void moert_barrier(void);
/* Provided by libmoert for the kernels (kernels.h: kt_work): two words the threads of a step share,
 * zero when the step starts and left zero by each kernel that uses them; NULL on one thread or
 * outside a step. */
int64_t *moert_work(void);
/* Provided by libmoert for the step functions: called by every thread right after the router of
 * MoE layer `layer` (before the barrier that precedes its expert kernels), with count = the
 * router's tokens per expert [n_exp] of this step. Without a memory budget (args->xcache NULL) it
 * returns at once; with one, thread 0 makes sure every expert with count > 0 is in the expert
 * pool and points args->experts[layer] at it (the other threads return at once and wait at the
 * barrier). */
void moert_experts_ready(const MoeStepArgs *args, int32_t layer, const int32_t *count, int32_t ith);

#endif
