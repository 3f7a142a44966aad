/* moec bench: compiled vs generic on one model, in one run, against the machine's own limits.
 *
 * Both paths run as child processes (`moec run ... --verbose` and the compiled executable with the
 * same flags), alternating, R times each; their timing lines (runtime/outfile.h) give load, prefill
 * and decode times, the child's rusage (cli_run_child) its peak resident memory. The machine is
 * probed first: the read bandwidth of the compiled executable's pages, which the compiled decode
 * streams (again before and after each decode run of the compiled path: BwLog), the f32 FMA peak
 * and, when the compiled prefill uses AMX tiles, their peak (kt_amx.h), all with the threads asked
 * for (the peaks again after the runs, keeping the higher). From the model's shapes:
 * bytes read per decode token (attention, router, k of E experts per layer, the LM head, one
 * embedding row, plus the KV cache at that context) over the bandwidth (the median of the probes)
 * is the decode limit; the prefill limit is the lower of FLOPs per token over the compute peak and
 * the bandwidth over the weights each prefill chunk reads, per token of the chunk. With --quant both
 * paths run the block-quantised model, and the bytes are those each class holds at its types (and
 * fallbacks), rows sized with quant_row_bytes (quantize_model's plan). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <inttypes.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batchgen.h"
#include "cli.h"
#include "exec.h"
#include "kernels/kt_amx.h"
#include "kernels/kt_quant.h"
#include "outfile.h"
#include "commands.h"
#include "driver.h"
#include "frontend.h"
#include "quant.h"
#include "quantize.h"
#include "synth.h"

static const char bench_usage[] =
    "usage: moec bench [MODEL_DIR] [options]\n"
    "Compiles the model for this machine, then measures the compiled and the generic path in one run,\n"
    "alternating: prefill tokens/s (prompts of P and 4P), decode tokens/s (G new tokens after a\n"
    "P-token prompt, and at each longer context), time to first token, load and compile time, peak\n"
    "memory. Each figure is the median of R runs (min and max shown), and is put against the limit\n"
    "this machine's measured read bandwidth and compute peak (f32 FMA, or AMX tiles when the compiled\n"
    "prefill uses them) set for this model.\n"
    "Default model: the bench preset (synthesised into the cache folder if absent).\n"
    "\n"
    "  --threads N       threads for both paths and the probes (default: all cores)\n"
    "  --prompt P        prompt tokens (default 128)\n"
    "  --gen G           generated tokens per decode measurement (default 64)\n"
    "  --contexts A,B    further contexts for decode (default 1024,2048; clamped to the model)\n"
    "  --repeat R        runs per figure (default 3)\n"
    "  --json FILE       all figures as JSON\n"
    "  --plot FILE.svg   decode tokens/s against context length, both paths\n"
    "  --act MODE        exact, int8 or bf16: how both paths multiply the weights (as 'moec compile --act')\n"
    "  --quant SPEC      both paths on the block-quantised model (as 'moec run --quant', e.g. q4_k); the\n"
    "                    limits count the bytes of each matrix at its type\n"
    "  --batch B1,B2,... decode of B sequences at once instead (one executable compiled with --batch B\n"
    "                    each, B prompts of P tokens, G new tokens each): aggregate and per-sequence\n"
    "                    decode tokens/s, both paths, against the bound of the bytes each step reads\n"
    "                    (the union of the experts its rows route to, the rest of the weights once, and\n"
    "                    each slot's KV cache)\n"
    "  --quick           small probes (for smoke tests)\n";

typedef struct Sample {
    MoeTiming t;  /* the child's --verbose timing line */
    long maxrss_kb;
    double bw;    /* compiled decode: the mean of the probes just before and just after the run (bw_around) */
} Sample;

typedef struct Stat {
    double med, min, max;
} Stat;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static Stat stat_of(const double *v, int n) {
    double s[64];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_d);
    return (Stat){n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]), s[0], s[n - 1]};
}

/* Runs argv (a child), reads its --verbose timing line from stderr (passed on when it fails). */
static bool run_child(char **argv, Sample *out) {
    char errf[] = "/tmp/moec-bench-XXXXXX";
    int fd = mkstemp(errf);
    if (fd < 0) return false;
    close(fd);
    struct rusage ru = {0};
    bool ok = cli_run_child(argv, NULL, errf, &ru) == 0, found = false;
    FILE *f = fopen(errf, "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f))
        if (moe_parse_timing(line, &out->t)) found = true;
        else if (!ok) fputs(line, stderr);
    if (f) fclose(f);
    unlink(errf);
    out->maxrss_kb = ru.ru_maxrss;
    return ok && found;
}

/* Removes the executables earlier runs of moec bench left in the cache folder when they were killed
 * (bench-PID.exe, bench-bB-PID.exe: up to a few GB each) whose process no longer exists. */
static void remove_stale_exes(const char *cache) {
    DIR *dir = opendir(cache);
    struct dirent *de;
    while (dir && (de = readdir(dir))) {
        long b, pid;
        char tail[8];
        int ok = sscanf(de->d_name, "bench-b%ld-%ld.ex%1s", &b, &pid, tail) == 3 ||
                 sscanf(de->d_name, "bench-%ld.ex%1s", &pid, tail) == 2;
        if (!ok || strcmp(de->d_name + strlen(de->d_name) - 4, ".exe") || pid <= 0) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive (or not ours to ask): keep */
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", cache, de->d_name);
        unlink(path);
    }
    if (dir) closedir(dir);
}

/* ---- machine probes ---- */

typedef float v16f __attribute__((vector_size(64)));
/* The probes' accumulators: one register of this machine's widest vectors each (the build targets
 * it: -march=native). As 64-byte vectors on AVX2, 12 FMA chains need 24 of its 16 registers: gcc
 * kept them on the stack, and the probe read 13.7 GFLOP/s on a Zen 3 that does 150+. */
#if defined(__AVX512F__)
enum { VN = 16 };
#elif defined(__AVX__)
enum { VN = 8 };
#else
enum { VN = 4 };
#endif
typedef float vnf __attribute__((vector_size(VN * 4)));

/* The best rate (bytes/s) of 5 reads of buf[n] (n 64-byte lines) with vector loads into 8
 * independent accumulators per thread (a scalar sum would be latency-bound and under-report). */
static double read_rate(const v16f *buf, size_t n, int threads) {
    double best = 0, sink = 0;
    n = n / 8 * 8;
    const vnf *v = (const vnf *)buf;
    const size_t nv = n * (64 / sizeof(vnf));
    for (int rep = 0; rep < 5 && n; rep++) {
        double t0 = moe_now_s(), s = 0;
#pragma omp parallel num_threads(threads) reduction(+ : s)
        {
            vnf a[8] = {{0}};
#pragma omp for schedule(static)
            for (size_t i = 0; i < nv; i += 8)
                for (int j = 0; j < 8; j++) a[j] += v[i + (size_t)j];
            for (int j = 1; j < 8; j++) a[0] += a[j];
            for (int j = 0; j < VN; j++) s += a[0][j];
        }
        double dt = moe_now_s() - t0;
        sink += s;
        if ((double)(n * sizeof(v16f)) / dt > best) best = (double)(n * sizeof(v16f)) / dt;
    }
    return sink == -1 ? 0 : best;
}

/* The read bandwidth of fresh memory: an anonymous buffer of `bytes`, far larger than the last-level
 * cache, in huge pages where the kernel gives them (as the weights are mapped: with 4 KiB pages the
 * probe read 30 GB/s and decode beat it, 105%). */
static double probe_fresh(int threads, size_t bytes) {
    size_t n = bytes / MOE_HUGE_ALIGN * MOE_HUGE_ALIGN / sizeof(v16f);
    v16f *buf = aligned_alloc(MOE_HUGE_ALIGN, n * sizeof(v16f));
    if (!buf) return 0;
#ifdef MADV_HUGEPAGE
    madvise(buf, n * sizeof(v16f), MADV_HUGEPAGE);
#endif
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 16; j++) buf[i][j] = (float)((i + (size_t)j) & 7);
    double r = read_rate(buf, n, threads);
    free(buf);
    return r;
}

/* The read bandwidth of the pages that hold file in the page cache (its first `bytes`), mapped as the
 * runtime maps a model's weights (runtime/model.c: private, read-only, at a 2 MiB-aligned address,
 * advised MADV_HUGEPAGE) and faulted in before the timed reads. The compiled decode streams exactly
 * these pages. On the VMs these figures come from, memory read at rates that differ by up to 1.4x from
 * one set of pages to another (a fresh anonymous buffer 49-52 GB/s, the weights' page cache 36-42 in
 * the same minute, and the other way round ten minutes later), so a probe of other memory put the same
 * kernels at anywhere from 65% to 97% of their bound. 0 when the file cannot be mapped. */
static double probe_file(int threads, size_t bytes, const char *file) {
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) return 0;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)(8 * sizeof(v16f))) { /* less than one read_rate step */
        close(fd);
        return 0;
    }
    size_t len = (size_t)st.st_size < bytes ? (size_t)st.st_size : bytes;
    char *raw = mmap(NULL, len + MOE_HUGE_ALIGN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    double r = 0;
    if (raw != MAP_FAILED) {
        char *at = raw + (MOE_HUGE_ALIGN - (uintptr_t)raw % MOE_HUGE_ALIGN) % MOE_HUGE_ALIGN;
        if (mmap(at, len, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0) != MAP_FAILED) {
#ifdef MADV_HUGEPAGE
            madvise(at, len, MADV_HUGEPAGE);
#endif
#ifdef MADV_POPULATE_READ
            madvise(at, len, MADV_POPULATE_READ);
#endif
            r = read_rate((const v16f *)at, len / sizeof(v16f), threads);
        }
        munmap(raw, len + MOE_HUGE_ALIGN);
    }
    close(fd);
    return r;
}

/* The read bandwidth of every probe a bench takes: of the compiled executable's pages (probe_file;
 * the weights are nearly all of it) once it exists, else of fresh memory. On a shared machine (these
 * VMs) it moves by +-25% from one minute to the next (44-72 GB/s with 2 threads within an hour), so
 * one probe before a run of several minutes sets the bound by chance. The bench probes just before
 * (after the page cache was refreshed) and just after every decode run of the compiled path too; its
 * bounds use the median of all the probes, and each decode run is also put against its own two
 * (bw_around). fresh: one probe of fresh memory, for reference. */
typedef struct BwLog {
    double v[512], fresh;
    int n, threads;
    size_t bytes;     /* at most this much of the file, or of fresh memory, per probe */
    const char *file; /* the compiled executable, once compiled */
} BwLog;

/* Bytes of fresh memory a probe of l reads: as much as of the file, at most 1 GiB. */
static size_t fresh_bytes(const BwLog *l) { return l->bytes < ((size_t)1 << 30) ? l->bytes : ((size_t)1 << 30); }

static void bw_probe(BwLog *l) {
    double r = l->file ? probe_file(l->threads, l->bytes, l->file) : 0;
    if (r <= 0) r = probe_fresh(l->threads, fresh_bytes(l));
    if (l->n < 512) l->v[l->n++] = r;
}

/* A run's own bandwidth: the mean of the probe taken just before it (the log's last) and one taken
 * just after it. Against this, a decode run's share of its bound does not depend on the minutes
 * other runs of the bench fell in (the median of the whole log does). */
static double bw_around(BwLog *l) {
    double before = l->n ? l->v[l->n - 1] : 0;
    bw_probe(l);
    return (before + l->v[l->n - 1]) / 2;
}

/* The median [min, max] over n runs of each run's share (%) of the bound set by its own bandwidth bw[i]
 * (bw_around; 0: the run has none, left out): rate[i] units per second, each reading `bytes`. */
static Stat own_share(const double *rate, const double *bw, int n, double bytes) {
    double v[64];
    int nv = 0;
    for (int i = 0; i < n && nv < 64; i++)
        if (bw[i] > 0) v[nv++] = 100 * rate[i] * bytes / bw[i];
    return nv ? stat_of(v, nv) : (Stat){0, 0, 0};
}

/* A log of probes of file (NULL: none yet) with the threads asked for, up to 4 GiB of it (quick:
 * 64 MiB); it holds its first probe, and the fresh-memory probe (1 GiB, quick 64 MiB). */
static BwLog bw_start(int64_t threads, bool quick, const char *file) {
    BwLog l = {.threads = (int)threads, .bytes = quick ? ((size_t)64 << 20) : ((size_t)4 << 30), .file = file};
    l.fresh = probe_fresh(l.threads, fresh_bytes(&l));
    if (file) bw_probe(&l);
    return l;
}

/* The best rate of 3 runs of run(threads, iters), which returns the FLOPs it did. */
static double best_of_3(double (*run)(int threads, long iters), int threads, long iters) {
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = moe_now_s(), flops = run(threads, iters), dt = moe_now_s() - t0;
        if (flops / dt > best) best = flops / dt;
    }
    return best;
}

/* f32 FMAs: 12 independent chains of VN lanes per thread. */
static double fma_run(int threads, long iters) {
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
        vnf a[12], b = {0}, c = {0};
        for (int i = 0; i < VN; i++) b[i] = 1.0f + 1e-7f * (float)i, c[i] = 1e-9f;
        for (int j = 0; j < 12; j++) a[j] = c * (float)j;
        for (long it = 0; it < iters; it++)
            for (int j = 0; j < 12; j++) a[j] = a[j] * b + c;
        for (int j = 0; j < 12; j++) sink += a[j][0];
    }
    return sink == -1 ? 0 : 2.0 * VN * 12 * (double)iters * threads;
}

/* vdpbf16ps (kt_common.h's kt_dpbf, the tile of --act bf16): 12 chains of 16 lanes per thread, each
 * instruction 2 products per lane. */
#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bf16"))) static float dpbf_chains(long iters) {
    kt_vf a[12];
    kt_vu w;
    for (int i = 0; i < 16; i++) w[i] = 0x3f803f80u + (uint32_t)i; /* pairs near 1 */
    for (int j = 0; j < 12; j++) a[j] = (kt_vf){0} + 1e-9f * (float)j;
    for (long it = 0; it < iters; it++)
        for (int j = 0; j < 12; j++) kt_dpbf_x86(&a[j], &w, 0x30003000u); /* kt_dpbf's vdpbf16ps, by pointer */
    float s = 0;
    for (int j = 0; j < 12; j++) s += a[j][0];
    return s;
}
#else
static float dpbf_chains(long iters) { return (float)iters; } /* never called: x86 only (avx512bf16) */
#endif
static double dpbf_run(int threads, long iters) {
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += dpbf_chains(iters);
    return sink == -1 ? 0 : 2.0 * 2 * 16 * 12 * (double)iters * threads;
}

/* AMX tiles (kt_amx.h) on L1-resident data: 32 tokens x 32 rows per call over 4 K steps of 32,
 * counted as the f32 FLOPs they stand for (each is three bf16 tile products). */
static double amx_run(int threads, long iters) {
    enum { NS = 4 };
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
        static _Thread_local _Alignas(64) uint16_t a[2 * NS * KT_AMX_PLANES * 512], w[NS * 1024];
        static _Thread_local _Alignas(64) float out[32 * 32];
        kt_amx_begin();
        for (long it = 0; it < iters; it++) kt_amx_tile(out, a, a + NS * KT_AMX_PLANES * 512, w, NS, 2, KT_AMX_PLANES);
        kt_amx_end();
        sink += out[0];
    }
    return sink == -1 ? 0 : 2.0 * 32 * 32 * 32 * NS * (double)iters * threads;
}

/* The compute peaks, raised to what this probe reads if higher: *fma the f32 FMA peak; *tile that of
 * the tile instructions the compiled prefill uses when they are not f32 FMAs (amx: AMX; dpbf: --act
 * bf16 off AMX, vdpbf16ps where this machine has it), else left as is. Probed once before and once
 * after the runs: a busy minute on a shared machine only lowers a probe (one taken right after the
 * compile read 314 GFLOP/s on the Zen 5 VM, others 409), and a low one put prefill above its limit. */
static void probe_peaks(int threads, bool quick, bool amx, bool dpbf, double *fma, double *tile) {
    double f = best_of_3(fma_run, threads, quick ? 2000000 : 50000000);
    double t = amx ? best_of_3(amx_run, threads, quick ? 20000 : 500000)
             : dpbf ? best_of_3(dpbf_run, threads, quick ? 1000000 : 25000000) : 0;
    if (f > *fma) *fma = f;
    if (t > *tile) *tile = t;
}

/* ---- model limits ---- */

typedef struct Limits {
    double weight_bytes_per_tok; /* decode: weights read per token */
    double expert_bytes;         /* one routed expert of one layer (gate, up, down) */
    int64_t moe_layers;
    double kv_bytes_per_pos;     /* decode: KV bytes read per cached position */
    double flops_per_tok;        /* prefill: matmul FLOPs per token (attention excluded) */
    double chunk_bytes;          /* prefill: weights one chunk reads (every expert, no lm_head) */
} Limits;

static Limits model_limits(const Model *m) {
    const ModelConfig *c = &m->cfg;
    double wb = 2; /* bf16 unless the big matrices are f32/f16 (then packed as f32) */
    const TensorInfo *t = st_find(&m->tt, "model.embed_tokens.weight");
    if (t && t->dtype != DT_BF16) wb = 4;
    double H = (double)c->hidden_size, hd = (double)c->head_dim, nh = (double)c->num_attention_heads,
           nkv = (double)c->num_key_value_heads, I = (double)c->expert_intermediate_size;
    double active = 0, all = 0;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        double shared = c->shared_expert_intermediate_size ? 3 * H * (double)c->shared_expert_intermediate_size + H : 0;
        double attn = H * (nh + 2 * nkv) * hd + nh * hd * H;
        if (c->layer_is_moe[l]) {
            active += attn + (double)c->num_experts * H + (double)c->num_experts_per_tok * 3 * H * I + shared;
            all += attn + (double)c->num_experts * (H + 3 * H * I) + shared;
        } else {
            active += attn + 3 * H * (double)c->dense_intermediate_size;
            all += attn + 3 * H * (double)c->dense_intermediate_size;
        }
    }
    double head = (double)c->vocab_size * H;
    Limits lim;
    lim.expert_bytes = 3 * H * I * wb;
    lim.moe_layers = 0;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) lim.moe_layers += c->layer_is_moe[l];
    lim.weight_bytes_per_tok = (active + head) * wb + H * wb /* one embedding row */;
    lim.kv_bytes_per_pos = 2.0 * (double)c->num_hidden_layers * nkv * hd * 4;
    lim.flops_per_tok = 2.0 * (active + head);
    lim.chunk_bytes = all * wb;
    return lim;
}

/* The same limits at --quant, from the bytes each class holds at its types (and fallbacks): every
 * token reads all of attention, the shared/dense MLPs, the router and norms ("other") and the head,
 * one embedding row, and top_k of n_exp routed experts; a prefill chunk reads all but the head. */
static void quant_limits(Limits *lim, const Model *m, const QuantReport *r) {
    const ModelConfig *c = &m->cfg;
    double all = (double)(r->bytes_after[QC_ATTN] + r->bytes_after[QC_SHARED] + r->bytes_other),
           experts = (double)r->bytes_after[QC_EXPERTS], V = (double)c->vocab_size;
    double embed_row = (double)r->bytes_after[r->n_mats[QC_EMBED] ? QC_EMBED : QC_HEAD] / V;
    lim->weight_bytes_per_tok = all + (double)r->bytes_after[QC_HEAD] + embed_row +
                                experts * (double)c->num_experts_per_tok / (double)c->num_experts;
    lim->chunk_bytes = all + experts;
    lim->expert_bytes = lim->moe_layers ? experts / (double)(lim->moe_layers * c->num_experts) : 0;
}

/* Whether the model holds block-quantised matrices as stored (a GGUF file): its limits then come from
 * the stored bytes (quant_limits on a plan that keeps every class as it is). */
static bool stored_blocks(const Model *m) {
    for (uint32_t i = 0; i < m->g->n; i++)
        if (m->g->nodes[i].op == OP_WEIGHT && dtype_is_quant(m->g->nodes[i].dtype)) return true;
    return false;
}

/* Bytes one decode step of `rows` tokens reads when its rows route to `experts` distinct experts
 * per MoE layer (on average) and each row's slot holds `ctx` positions: every weight but the
 * routed experts once, those experts once each, one embedding row and the KV cache per row. */
static double step_bytes(const Limits *lim, int64_t k, double rows, double experts, double ctx) {
    double shared = lim->weight_bytes_per_tok - (double)k * (double)lim->moe_layers * lim->expert_bytes;
    return shared + experts * (double)lim->moe_layers * lim->expert_bytes + rows * lim->kv_bytes_per_pos * ctx;
}

/* Prefill tokens/s this machine allows: compute (peak FLOP/s over FLOPs per token) or memory (every
 * chunk of `rows` real tokens reads the layers' weights once), whichever binds. */
static double prefill_limit(const Limits *lim, double peak, double bw, int64_t rows) {
    double compute = peak / lim->flops_per_tok, memory = bw * (double)rows / lim->chunk_bytes;
    return compute < memory ? compute : memory;
}

/* ---- the measurement plan ---- */

enum { PATH_COMPILED, PATH_GENERIC };
static const char *path_name[2] = {"compiled", "generic"};

typedef struct Measure {
    const char *what;      /* "prefill", "decode" */
    bool cold;             /* a fresh process's first run (no warm-up) */
    int64_t prompt, gen;   /* prompt tokens, generated tokens */
    Sample s[2][64];       /* [path][repeat] */
    int n[2];
} Measure;

typedef struct Bench {
    const char *moec, *model, *exe;
    char files[2][16][8704]; /* [path]: the files that path maps, evicted and read back before each run */
    int n_files[2];
    const char *quant;     /* --quant SPEC for the generic path, or NULL */
    const char *act;       /* --act for the generic path: gk_act_name */
    char threads[16];
    int repeat;
    Measure m[8];
    int n_m;
    BwLog *bw; /* probed again before each decode run of the compiled path */
} Bench;

static char *ids_arg(int64_t n, int64_t vocab) {
    char *s = xmalloc((size_t)n * 7 + 1), *p = s;
    for (int64_t i = 0; i < n; i++) p += sprintf(p, "%s%" PRId64, i ? "," : "", 1 + (i * 7919) % (vocab - 1));
    return s;
}

/* The same page-cache state for both paths before every run: each file the path maps is dropped
 * from the page cache and read back in (so it sits there as a read-back file does, whatever wrote
 * it: how a file got into the page cache decides whether it is held in 2 MiB folios, which moved
 * both engines' figures by up to 1.4x). */
static void refresh_page_cache(const Bench *b, int path) {
    static char buf[4 << 20];
    for (int i = 0; i < b->n_files[path]; i++) {
        int fd = open(b->files[path][i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        while (read(fd, buf, sizeof buf) > 0) {
        }
        close(fd);
    }
}

/* The weight files of model (a file, or a folder's *.safetensors / *.gguf) into b->files[path]. */
static void model_files(Bench *b, int path, const char *model) {
    struct stat st;
    if (stat(model, &st) == 0 && S_ISREG(st.st_mode)) {
        snprintf(b->files[path][b->n_files[path]++], sizeof b->files[path][0], "%s", model);
        return;
    }
    DIR *dir = opendir(model);
    struct dirent *e;
    while (dir && (e = readdir(dir)) && b->n_files[path] < 16) {
        size_t n = strlen(e->d_name);
        if ((n > 12 && !strcmp(e->d_name + n - 12, ".safetensors")) || (n > 5 && !strcmp(e->d_name + n - 5, ".gguf")))
            snprintf(b->files[path][b->n_files[path]++], sizeof b->files[path][0], "%s/%s", model, e->d_name);
    }
    if (dir) closedir(dir);
}

/* One run of m on path: warm (--warmup 1: the figures of a second run in the same process) unless
 * m->cold (a fresh process's first run: load, first touch of the weights, first prefill). */
static bool measure(Bench *b, Measure *m, int path, int64_t vocab) {
    char *ids = ids_arg(m->prompt, vocab), n[32];
    snprintf(n, sizeof n, "%" PRId64, m->gen);
    const char *w = m->cold ? "0" : "1";
    char *gen_argv[] = {(char *)b->moec, "run", (char *)b->model, "--tokens", ids, "-n", n, "--threads", b->threads,
                        "--verbose", "--warmup", (char *)w, "--act", (char *)b->act, b->quant ? "--quant" : NULL,
                        (char *)b->quant, NULL};
    char *cmp_argv[] = {(char *)b->exe, "--tokens", ids, "-n", n, "--threads", b->threads, "--verbose", "--warmup",
                        (char *)w, NULL};
    const bool paired = path == PATH_COMPILED && !strcmp(m->what, "decode");
    refresh_page_cache(b, path);
    if (paired) bw_probe(b->bw); /* after the refresh: the pages the run will read */
    Sample s;
    bool ok = run_child(path == PATH_COMPILED ? cmp_argv : gen_argv, &s);
    s.bw = ok && paired ? bw_around(b->bw) : 0;
    free(ids);
    if (ok) m->s[path][m->n[path]++] = s;
    else fprintf(stderr, "moec: error: bench: the %s path failed on a %" PRId64 "-token prompt\n", path_name[path], m->prompt);
    return ok;
}

static Stat pick(const Measure *m, int path, int field) {
    double v[64];
    for (int i = 0; i < m->n[path]; i++) {
        const Sample *s = &m->s[path][i];
        v[i] = field == 0 ? s->t.prefill_tps : field == 1 ? s->t.decode_tps : field == 2 ? s->t.prefill_s
             : field == 3 ? s->t.load_s : field == 5 ? s->t.load_s + s->t.prefill_s : (double)s->maxrss_kb / 1024.0;
    }
    return m->n[path] ? stat_of(v, m->n[path]) : (Stat){0, 0, 0};
}

static void write_svg(const char *path, const Bench *b, const int64_t *ctx, int n_ctx, const int *decode_idx) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "moec: error: %s: cannot create: %s\n", path, strerror(errno));
        return;
    }
    double ymax = 1;
    for (int i = 0; i < n_ctx; i++)
        for (int p = 0; p < 2; p++) {
            Stat s = pick(&b->m[decode_idx[i]], p, 1);
            if (s.max > ymax) ymax = s.max;
        }
    ymax *= 1.15;
    const double W = 640, Hh = 400, L = 60, R = 20, T = 30, B = 50;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%g' height='%g' font-family='sans-serif' font-size='12'>\n", W, Hh);
    fprintf(f, "<rect width='100%%' height='100%%' fill='white'/>\n<text x='%g' y='18' text-anchor='middle'>decode tokens/s against context (%s)</text>\n",
            W / 2, b->model);
    fprintf(f, "<line x1='%g' y1='%g' x2='%g' y2='%g' stroke='black'/><line x1='%g' y1='%g' x2='%g' y2='%g' stroke='black'/>\n",
            L, Hh - B, W - R, Hh - B, L, T, L, Hh - B);
    for (int k = 0; k <= 4; k++) {
        double y = Hh - B - (Hh - T - B) * k / 4.0;
        fprintf(f, "<text x='%g' y='%g' text-anchor='end'>%.0f</text>\n", L - 6, y + 4, ymax * k / 4);
    }
    const char *col[2] = {"#c0392b", "#2c3e50"};
    for (int p = 0; p < 2; p++) {
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", col[p]);
        for (int i = 0; i < n_ctx; i++) {
            double x = L + (W - L - R) * (n_ctx > 1 ? (double)i / (n_ctx - 1) : 0.5);
            double y = Hh - B - (Hh - T - B) * pick(&b->m[decode_idx[i]], p, 1).med / ymax;
            fprintf(f, "%.1f,%.1f ", x, y);
        }
        fprintf(f, "'/>\n<text x='%g' y='%g' fill='%s'>%s</text>\n", W - R - 90, T + 16 + 16.0 * p, col[p], path_name[p]);
    }
    for (int i = 0; i < n_ctx; i++) {
        double x = L + (W - L - R) * (n_ctx > 1 ? (double)i / (n_ctx - 1) : 0.5);
        fprintf(f, "<text x='%.1f' y='%g' text-anchor='middle'>%" PRId64 "</text>\n", x, Hh - B + 18, ctx[i]);
    }
    fprintf(f, "<text x='%g' y='%g' text-anchor='middle'>context (tokens)</text>\n</svg>\n", W / 2, Hh - 12);
    fclose(f);
}

/* ---- --batch: B sequences decoded together ---- */

typedef struct BatchFig {
    double agg[2][64];       /* [path][repeat] aggregate decode tok/s */
    double bw[64];           /* [repeat] compiled: the run's own bandwidth (bw_around) */
    double rows, experts;    /* compiled: mean rows and distinct experts per layer of a decode step */
    int n[2];
} BatchFig;

/* "p1;p2;...": B prompts of n tokens, each different. */
static char *batch_ids(int64_t B, int64_t n, int64_t vocab) {
    char *s = xmalloc((size_t)(B * (n * 7 + 1)) + 1), *p = s;
    for (int64_t b = 0; b < B; b++) {
        if (b) *p++ = ';';
        for (int64_t i = 0; i < n; i++) p += sprintf(p, "%s%" PRId64, i ? "," : "", 1 + (i * 7919 + b * 104729) % (vocab - 1));
    }
    *p = 0;
    return s;
}

/* Runs argv, reading its timing and batch lines: false when it fails or prints neither. */
static bool run_batch_child(char **argv, double *agg, double *rows, double *experts) {
    char errf[] = "/tmp/moec-bench-XXXXXX";
    int fd = mkstemp(errf);
    if (fd < 0) return false;
    close(fd);
    struct rusage ru = {0};
    bool ok = cli_run_child(argv, NULL, errf, &ru) == 0, timing = false, batch = false;
    FILE *f = fopen(errf, "r");
    char line[1024];
    MoeTiming t;
    while (f && fgets(line, sizeof line, f)) {
        if (moe_parse_timing(line, &t)) timing = true, *agg = t.decode_tps;
        else if (moe_parse_batch(line, rows, experts)) batch = true;
        else if (!ok) fputs(line, stderr);
    }
    if (f) fclose(f);
    unlink(errf);
    return ok && timing && batch;
}

static int bench_batch(Diag *d, const char *self, const char *model, const char *cache, const Model *md,
                       const Limits *lim, const QuantSpec *quant, GkAct act, const int64_t *bs, int n_b,
                       int64_t threads, int64_t prompt, int64_t gen, int64_t repeat, bool quick) {
    const ModelConfig *c = &md->cfg;
    char thr[16], n[32], bb[32], exe[4300];
    snprintf(thr, sizeof thr, "%" PRId64, threads);
    snprintf(n, sizeof n, "%" PRId64, gen);
    BwLog bwl = bw_start(threads, quick, NULL);
    BatchFig fig[16] = {0};
    for (int i = 0; i < n_b; i++) {
        snprintf(exe, sizeof exe, "%s/bench-b%" PRId64 "-%d.exe", cache, bs[i], (int)getpid());
        CompileOptions co = {.model_dir = model, .out = exe, .batch = bs[i], .threads = threads, .quiet = true,
                             .quant = quant, .act = act};
        fprintf(stderr, "moec: bench: batch %" PRId64 ": compiling\n", bs[i]);
        if (compile_model(&co, d)) return 1;
        bwl.file = exe; /* its pages from now on */
        snprintf(bb, sizeof bb, "%" PRId64, bs[i]);
        char *ids = batch_ids(bs[i], prompt, c->vocab_size);
        char *cmp_argv[] = {exe, "--batch-prompts", "--tokens", ids, "-n", n, "--threads", thr, "--verbose", NULL};
        char *gen_argv[] = {(char *)self, "run", (char *)model, "--batch-prompts", "--batch", bb, "--tokens", ids, "-n", n,
                            "--threads", thr, "--verbose", "--act", (char *)gk_act_name(act),
                            quant ? "--quant" : NULL, quant ? (char *)quant->text : NULL, NULL};
        bool ok = true;
        for (int r = 0; r < repeat && ok; r++)
            for (int p = 0; p < 2 && ok; p++) { /* alternate the paths */
                int path = (p + r) % 2;
                double agg = 0, rows = 0, ex = 0;
                fprintf(stderr, "moec: bench: batch %" PRId64 ", run %d/%" PRId64 ", %s\n", bs[i], r + 1, repeat,
                        path_name[path]);
                if (path == PATH_COMPILED) bw_probe(&bwl);
                ok = run_batch_child(path == PATH_COMPILED ? cmp_argv : gen_argv, &agg, &rows, &ex);
                if (path == PATH_COMPILED) fig[i].bw[fig[i].n[path]] = ok ? bw_around(&bwl) : 0;
                fig[i].agg[path][fig[i].n[path]++] = agg;
                if (path == PATH_COMPILED) fig[i].rows = rows, fig[i].experts = ex;
            }
        free(ids);
        unlink(exe);
        bwl.file = NULL;
        if (!ok) {
            diag_error(d, "bench: batch %" PRId64 ": a run failed", bs[i]);
            return 1;
        }
    }
    printf("moec bench --batch: %s (%s), %s threads, B prompts of %" PRId64 " tokens, %" PRId64
           " generated each, on an executable compiled with --batch B\n",
           model, c->model_type, thr, prompt, gen);
    const Stat bws = stat_of(bwl.v, bwl.n);
    const double bw = bws.med;
    printf("machine: read bandwidth %.1f GB/s (%s threads; median of %d probes of the executables' pages\n"
           "         between the runs, %.1f-%.1f; fresh memory %.1f)\n\n",
           bw / 1e9, thr, bwl.n, bws.min / 1e9, bws.max / 1e9, bwl.fresh / 1e9);
    printf("%-6s %-24s %-24s %8s %10s %9s %11s %9s %9s\n", "batch", "compiled tok/s (agg)", "generic tok/s (agg)",
           "ratio", "per seq", "bound", "comp/bound", "own", "experts");
    for (int i = 0; i < n_b; i++) {
        Stat sc = stat_of(fig[i].agg[PATH_COMPILED], fig[i].n[PATH_COMPILED]);
        Stat sg = stat_of(fig[i].agg[PATH_GENERIC], fig[i].n[PATH_GENERIC]);
        double rows = fig[i].rows > 0 ? fig[i].rows : 1;
        const double bytes = step_bytes(lim, c->num_experts_per_tok, rows, fig[i].experts,
                                        (double)prompt + (double)gen / 2);
        const double bound = rows * bw / bytes;
        const Stat own = own_share(fig[i].agg[PATH_COMPILED], fig[i].bw, fig[i].n[PATH_COMPILED], bytes / rows);
        char cs[32], gs[32];
        snprintf(cs, sizeof cs, "%.1f [%.0f,%.0f]", sc.med, sc.min, sc.max);
        snprintf(gs, sizeof gs, "%.1f [%.0f,%.0f]", sg.med, sg.min, sg.max);
        printf("%-6" PRId64 " %-24s %-24s %7.2fx %10.1f %9.1f %10.0f%% %8.0f%% %5.2f/%" PRId64 "\n", bs[i], cs, gs,
               sg.med > 0 ? sc.med / sg.med : 0, sc.med / rows, bound, 100 * sc.med / bound,
               own.med, fig[i].experts, c->num_experts);
    }
    printf("\naggregate = decode tokens of all slots per second of decode steps (median [min, max] of %" PRId64
           " runs);\nper seq = aggregate / the mean live slots of a step; bound = the mean rows of a step x bandwidth /\n"
           "the bytes it reads: every weight but the routed experts once (%.1f MB), the distinct experts its rows\n"
           "route to (experts: mean per MoE layer, of E; %.2f MB each), and each row's KV cache at the mean context;\n"
           "own = the median over the runs of each run's share of the bound set by the mean of the probes just\n"
           "before and just after it\n",
           repeat, (lim->weight_bytes_per_tok - (double)c->num_experts_per_tok * (double)lim->moe_layers * lim->expert_bytes) / 1e6,
           lim->expert_bytes / 1e6);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    Diag d = {0};
    int64_t threads = omp_get_num_procs(), prompt = 128, gen = 64, repeat = 3;
    int64_t ctx[8] = {1024, 2048};
    int n_ctx_req = 2;
    const char *model = NULL, *json = NULL, *plot = NULL;
    bool quick = false, quant = false;
    GkAct act = GK_ACT_EXACT;
    QuantSpec spec;
    int64_t batches[16];
    int n_batch = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(bench_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--quick")) {
            quick = true;
            continue;
        }
        if (a[0] == '-' && !(v = cli_value(&d, argc, argv, &i))) return 2;
        if (!strcmp(a, "--threads")) {
            if (!cli_parse_int(&d, a, v, 1, 1024, &threads)) return 2;
        } else if (!strcmp(a, "--prompt")) {
            if (!cli_parse_int(&d, a, v, 1, 1 << 20, &prompt)) return 2;
        } else if (!strcmp(a, "--gen")) {
            if (!cli_parse_int(&d, a, v, 2, 1 << 20, &gen)) return 2;
        } else if (!strcmp(a, "--repeat")) {
            if (!cli_parse_int(&d, a, v, 1, 64, &repeat)) return 2;
        } else if (!strcmp(a, "--contexts")) {
            int32_t *ids;
            int64_t n;
            if (!cli_parse_ids(&d, a, v, &ids, &n)) return 2;
            n_ctx_req = (int)(n < 6 ? n : 6);
            for (int k = 0; k < n_ctx_req; k++) ctx[k] = ids[k];
            free(ids);
        } else if (!strcmp(a, "--batch")) {
            int32_t *ids;
            int64_t nb;
            if (!cli_parse_ids(&d, a, v, &ids, &nb)) return 2;
            n_batch = (int)(nb < 16 ? nb : 16);
            for (int k = 0; k < n_batch; k++) batches[k] = ids[k];
            free(ids);
            for (int k = 0; k < n_batch; k++)
                if (batches[k] < 1 || batches[k] > MOE_MAX_BATCH) {
                    diag_error(&d, "--batch: %" PRId64 ": expected batch sizes in [1, %d]", batches[k], MOE_MAX_BATCH);
                    return 2;
                }
        } else if (!strcmp(a, "--json")) {
            json = v;
        } else if (!strcmp(a, "--plot")) {
            plot = v;
        } else if (!strcmp(a, "--quant")) {
            if (!quantize_spec_parse(&d, v, &spec)) return 2;
            quant = true;
        } else if (!strcmp(a, "--act")) {
            if (!cli_parse_act(&d, a, v, &act)) return 2;
        } else if (a[0] == '-') {
            diag_error(&d, "%s: unknown option; see 'moec bench --help'", a);
            return 2;
        } else if (!model) {
            model = a;
        } else {
            diag_error(&d, "%s: unexpected argument; expected one MODEL_DIR", a);
            return 2;
        }
    }
    char self[4096], cache[4096], exe[4300];
    if (!cli_self_exe(self, sizeof self)) {
        diag_error(&d, "/proc/self/exe: cannot find moec itself: %s", strerror(errno));
        return 1;
    }
    cli_cache_dir(cache, sizeof cache);
    if (!cli_mkdir_p(cache)) {
        diag_error(&d, "%s: cannot create the cache folder: %s", cache, strerror(errno));
        return 1;
    }
    remove_stale_exes(cache);
    char mdir[4200];
    if (!model) {
        snprintf(mdir, sizeof mdir, "%s/mixtral-bench", cache);
        struct stat st;
        if (stat(mdir, &st) != 0) {
            fprintf(stderr, "moec: bench: synthesising the bench preset into %s\n", mdir);
            SynthOptions so;
            synth_options_init(&so, mdir, SYNTH_MIXTRAL, SYNTH_BENCH);
            so.seed = 1;
            so.verbose = true;
            if (!synth_write_model(&d, &so)) return 1;
        }
        model = mdir;
    }
    Arena *a = arena_new();
    Model md;
    if (!model_load(&md, a, &d, model)) {
        diag_summary(&d);
        model_close(&md);
        arena_destroy(a);
        return 1;
    }
    const ModelConfig *c = &md.cfg;
    int status = 1; /* the exit status of an error below (goto fail) */
    Limits lim = model_limits(&md);
    QuantReport qr;
    char kernel_note[256] = "";
    if (quant) {
        if (!quantize_model(&md, a, &d, &spec, true, &qr)) {
            diag_summary(&d);
            goto fail;
        }
        quant_limits(&lim, &md, &qr);
        /* types the compiled kernels do not read as they are (pack dequantises them to f32) */
        uint32_t seen = 0;
        for (int k = 0; k < QC_COUNT; k++)
            if (qr.n_mats[k] && spec.type[k] != DT_COUNT) seen |= 1u << spec.type[k];
        for (int k = 0; k < qr.n_fallback; k++)
            if (dtype_is_quant(qr.fallback[k].got)) seen |= 1u << qr.fallback[k].got;
        for (int t = 0; t < DT_COUNT; t++)
            if ((seen >> t & 1) && dtype_is_quant((DType)t) && !kt_is_q(t))
                snprintf(kernel_note + strlen(kernel_note), sizeof kernel_note - strlen(kernel_note), "%s%s",
                         kernel_note[0] ? ", " : "", dtype_name((DType)t));
    } else if (stored_blocks(&md)) {
        QuantSpec keep = {.text = "as stored"};
        for (int k = 0; k < QC_COUNT; k++) keep.type[k] = DT_COUNT;
        if (!quantize_model(&md, a, &d, &keep, true, &qr)) {
            diag_summary(&d);
            goto fail;
        }
        quant_limits(&lim, &md, &qr);
    }
    if (n_batch) {
        int brc = bench_batch(&d, self, model, cache, &md, &lim, quant ? &spec : NULL, act, batches, n_batch,
                              threads, prompt, gen, repeat, quick);
        diag_summary(&d);
        model_close(&md);
        arena_destroy(a);
        return brc;
    }
    /* contexts that fit the model: prompt + gen positions */
    int64_t maxctx = c->max_position_embeddings < 4096 ? c->max_position_embeddings : 4096;
    if (prompt + gen > maxctx) prompt = maxctx / 2, gen = maxctx / 4 > 2 ? maxctx / 4 : 2;
    int64_t dctx[8];
    int n_ctx = 0;
    dctx[n_ctx++] = prompt;
    for (int k = 0; k < n_ctx_req; k++)
        if (ctx[k] > prompt && ctx[k] + gen <= maxctx) dctx[n_ctx++] = ctx[k];
    int64_t long_prompt = 4 * prompt + gen <= maxctx ? 4 * prompt : prompt;

    /* compile */
    snprintf(exe, sizeof exe, "%s/bench-%d.exe", cache, (int)getpid());
    char thr[16];
    snprintf(thr, sizeof thr, "%" PRId64, threads);
    MoeManifest man;
    CompileOptions co = {.model_dir = model, .out = exe, .batch = 1, .threads = threads, .quiet = true,
                         .manifest_out = &man, .quant = quant ? &spec : NULL, .act = act};
    double t0 = moe_now_s();
    int rc = compile_model(&co, &d);
    double compile_s = moe_now_s() - t0;
    if (rc) {
        diag_summary(&d);
        status = rc;
        goto fail;
    }
    fprintf(stderr, "moec: bench: compiled in %.2f s; probing the machine\n", compile_s);
    BwLog bwl = bw_start(threads, quick, exe);
    /* the compiled prefill runs on AMX tiles: its compute peak is theirs (permission is asked first) */
    char why[160];
    bool amx = (man.needs & MOE_NEED_AMX) && moert_enable_amx(why, sizeof why);
    bool dpbf = false;
#if defined(__x86_64__)
    __builtin_cpu_init();
    dpbf = act == GK_ACT_BF16 && !amx && __builtin_cpu_supports("avx512bf16");
#endif
    double peak = 0, tile_peak = 0;
    probe_peaks((int)threads, quick, amx, dpbf, &peak, &tile_peak);

    const int64_t P = man.prefill_chunk;
    Bench b = {.moec = self, .model = model, .exe = exe, .repeat = (int)repeat, .quant = quant ? spec.text : NULL,
               .act = gk_act_name(act), .bw = &bwl};
    snprintf(b.threads, sizeof b.threads, "%s", thr);
    model_files(&b, PATH_GENERIC, model);
    snprintf(b.files[PATH_COMPILED][b.n_files[PATH_COMPILED]++], sizeof b.files[0][0], "%s", exe);
    b.m[b.n_m++] = (Measure){.what = "prefill", .prompt = prompt, .gen = 1};
    if (long_prompt != prompt) b.m[b.n_m++] = (Measure){.what = "prefill", .prompt = long_prompt, .gen = 1};
    int decode_idx[8];
    for (int k = 0; k < n_ctx; k++) {
        decode_idx[k] = b.n_m;
        b.m[b.n_m++] = (Measure){.what = "decode", .prompt = dctx[k], .gen = gen};
    }
    const int cold_idx = b.n_m; /* last: a fresh process, prompt P, one token */
    b.m[b.n_m++] = (Measure){.what = "cold", .cold = true, .prompt = prompt, .gen = 1};
    bool ok = true, tty = isatty(2); /* a terminal gets one line rewritten; a log one line per repeat */
    for (int r = 0; r < repeat && ok; r++) {
        if (!tty) fprintf(stderr, "moec: bench: run %d/%" PRId64 "\n", r + 1, repeat);
        for (int k = 0; k < b.n_m && ok; k++)
            for (int p = 0; p < 2 && ok; p++) { /* alternate the paths */
                if (tty)
                    fprintf(stderr, "\rmoec: bench: run %d/%" PRId64 ", %s %" PRId64 " tokens, %s      ", r + 1,
                            repeat, b.m[k].what, b.m[k].prompt, path_name[(p + r) % 2]);
                ok = measure(&b, &b.m[k], (p + r) % 2, c->vocab_size);
            }
    }
    if (tty) fputc('\n', stderr);
    unlink(exe);
    if (!ok) goto fail;
    probe_peaks((int)threads, quick, amx, dpbf, &peak, &tile_peak); /* again: the higher of the two */

    /* report */
    const Stat bws = stat_of(bwl.v, bwl.n);
    const double bw = bws.med;
    printf("moec bench: %s (%s, %.0f M parameters active per token), %s threads\n", model, md.arch->model_type,
           lim.flops_per_tok / 2e6, thr);
    if (quant)
        printf("weights: --quant %s on both paths (%.1f MB read per decode token; the compiled path reads\n"
               "         the same blocks regrouped: kernels/kt_quant.h)%s%s%s\n",
               spec.text, lim.weight_bytes_per_tok / 1e6, kernel_note[0] ? "\n         compiled: no kernel for " : "",
               kernel_note, kernel_note[0] ? ": those matrices are packed as f32 (4 bytes per weight)" : "");
    if (quant || act != GK_ACT_EXACT)
        printf("activations: %s (--act)\n",
               act == GK_ACT_INT8   ? "int8 for block types, quantised per 32 values (integer dot products)"
               : act == GK_ACT_BF16 ? "bf16 for bf16 weights (rounded to nearest even, f32 sums)"
                                    : "exact f32 (the dequantised weights' exact products)");
    printf("machine: read bandwidth %.1f GB/s, f32 FMA peak %.1f GFLOP/s", bw / 1e9, peak / 1e9);
    if (amx) printf(", AMX peak %.1f GFLOP/s (f32-exact, 3 bf16 planes)", tile_peak / 1e9);
    if (dpbf) printf(", vdpbf16ps peak %.1f GFLOP/s (--act bf16)", tile_peak / 1e9);
    printf(" (%s threads)\n", thr);
    printf("         bandwidth: of the compiled executable's pages (its weights) in the page cache, mapped as\n"
           "         it maps them; the median of %d probes, one before the runs and one before and after\n"
           "         each decode run of the compiled path (%.1f-%.1f GB/s; fresh memory: %.1f); compute\n"
           "         peaks: the higher of a probe before and one after the runs\n",
           bwl.n, bws.min / 1e9, bws.max / 1e9, bwl.fresh / 1e9);
    printf("compile: %.2f s\n\n", compile_s);
    printf("%-26s %12s %12s %8s %10s %10s\n", "figure (median [min, max])", "compiled", "generic", "ratio",
           "limit", "comp/limit");
    FILE *js = json ? fopen(json, "w") : NULL;
    if (json && !js) fprintf(stderr, "moec: error: %s: cannot create: %s\n", json, strerror(errno));
    if (js)
        fprintf(js, "{\n  \"model\": \"%s\", \"family\": \"%s\", \"threads\": %s,\n  \"bandwidth_gbs\": %.3f, \"fresh_memory_gbs\": %.3f, "
                    "\"fma_peak_gflops\": %.3f, \"compile_s\": %.3f, \"quant\": %s%s%s, \"act\": \"%s\",\n"
                    "  \"figures\": [\n",
                model, md.arch->model_type, thr, bw / 1e9, bwl.fresh / 1e9, peak / 1e9, compile_s, quant ? "\"" : "",
                quant ? spec.text : "null", quant ? "\"" : "", gk_act_name(act));
    bool first = true;
    Stat own[8] = {{0}}; /* decode figures: each run's share of the bound its own probes set */
    for (int k = 0; k < cold_idx; k++) {
        const Measure *m = &b.m[k];
        bool dec = !strcmp(m->what, "decode");
        Stat sc = pick(m, PATH_COMPILED, dec ? 1 : 0), sg = pick(m, PATH_GENERIC, dec ? 1 : 0);
        const double bytes = lim.weight_bytes_per_tok + lim.kv_bytes_per_pos * (double)(m->prompt + m->gen / 2);
        double limit = dec ? bw / bytes
                           : prefill_limit(&lim, amx || dpbf ? tile_peak : peak, bw, m->prompt < P ? m->prompt : P);
        if (dec) {
            double tps[64], rbw[64];
            for (int i = 0; i < m->n[PATH_COMPILED]; i++)
                tps[i] = m->s[PATH_COMPILED][i].t.decode_tps, rbw[i] = m->s[PATH_COMPILED][i].bw;
            own[k] = own_share(tps, rbw, m->n[PATH_COMPILED], bytes);
        }
        char name[64];
        snprintf(name, sizeof name, "%s tok/s @%" PRId64, m->what, m->prompt);
        printf("%-26s %5.1f [%.0f,%.0f] %5.1f [%.0f,%.0f] %7.2fx %9.1f %9.0f%%\n", name, sc.med, sc.min, sc.max, sg.med,
               sg.min, sg.max, sg.med > 0 ? sc.med / sg.med : 0, limit, 100 * sc.med / limit);
        if (js)
            fprintf(js, "%s    {\"figure\": \"%s\", \"context\": %" PRId64 ", \"compiled\": [%.3f, %.3f, %.3f], "
                        "\"generic\": [%.3f, %.3f, %.3f], \"limit\": %.3f%s",
                    first ? "" : ",\n", m->what, m->prompt, sc.med, sc.min, sc.max, sg.med, sg.min, sg.max, limit,
                    dec ? ", \"share_own_probes\": [" : "}");
        if (js && dec) fprintf(js, "%.1f, %.1f, %.1f]}", own[k].med, own[k].min, own[k].max);
        first = false;
    }
    printf("%-26s", "decode, share of own bound");
    for (int k = 0, at = 0; k < cold_idx; k++)
        if (!strcmp(b.m[k].what, "decode"))
            printf("%s@%" PRId64 " %.0f%% [%.0f, %.0f]", at++ ? ", " : " ", b.m[k].prompt, own[k].med, own[k].min,
                   own[k].max);
    printf("\n%-26s (each run against the mean of the probes just before and just after it)\n", "");
    Stat wc = pick(&b.m[0], PATH_COMPILED, 2), wg = pick(&b.m[0], PATH_GENERIC, 2);
    Stat tc = pick(&b.m[cold_idx], PATH_COMPILED, 5), tg = pick(&b.m[cold_idx], PATH_GENERIC, 5);
    Stat lc = pick(&b.m[cold_idx], PATH_COMPILED, 3), lg = pick(&b.m[cold_idx], PATH_GENERIC, 3);
    Stat mc = pick(&b.m[decode_idx[n_ctx - 1]], PATH_COMPILED, 4), mg = pick(&b.m[decode_idx[n_ctx - 1]], PATH_GENERIC, 4);
    printf("%-26s %11.3f %12.3f\n", "warm prefill @P (s)", wc.med, wg.med);
    printf("%-26s %11.3f %12.3f   (load + first prefill @P of a fresh process;\n", "cold: first token (s)", tc.med,
           tg.med);
    printf("%-26s %11.2f %12.2f    its ratio to the warm prefill)\n", "cold / warm", wc.med > 0 ? tc.med / wc.med : 0,
           wg.med > 0 ? tg.med / wg.med : 0);
    printf("%-26s %11.3f %12.3f\n", "load (s)", lc.med, lg.med);
    printf("%-26s %11.0f %12.0f\n", "peak resident memory (MB)", mc.med, mg.med);
    printf("\npage cache: before every run each path's files (the executable; the model's weight files) are\n"
           "dropped from the page cache and read back in; warm figures are a second run in the same process\n"
           "(--warmup 1), cold ones a fresh process's first\n");
    printf("\nlimits: decode = bandwidth / (%.1f MB of weights + %.1f KB of KV cache per position) per token;\n"
           "        prefill = the lower of %s peak / %.2f GFLOP per token (matmuls only) and\n"
           "        bandwidth x %" PRId64 " tokens / %.1f MB of weights per chunk of the compiled prefill\n",
           lim.weight_bytes_per_tok / 1e6, lim.kv_bytes_per_pos / 1e3, amx ? "AMX" : dpbf ? "vdpbf16ps" : "FMA",
           lim.flops_per_tok / 1e9, P,
           lim.chunk_bytes / 1e6);
    if (js) {
        fprintf(js, "\n  ],\n  \"ttft_s\": {\"compiled\": %.4f, \"generic\": %.4f},\n  \"load_s\": {\"compiled\": %.4f, "
                    "\"generic\": %.4f},\n  \"peak_rss_mb\": {\"compiled\": %.1f, \"generic\": %.1f},\n"
                    "  \"decode_bytes_per_token\": %.0f, \"prefill_flops_per_token\": %.0f\n}\n",
                tc.med, tg.med, lc.med, lg.med, mc.med, mg.med, lim.weight_bytes_per_tok, lim.flops_per_tok);
        fclose(js);
    }
    if (plot) write_svg(plot, &b, dctx, n_ctx, decode_idx);
    model_close(&md);
    arena_destroy(a);
    return 0;
fail: /* an error, said already */
    model_close(&md);
    arena_destroy(a);
    return status;
}
