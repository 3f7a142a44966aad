/* The compiled path on GGUF block-quantised weights (runtime/quant.h): the pack pass and the kernel
 * templates. Weights are made with quant_quantize_row; the oracle is quant_dequant_row (and
 * tests/ref/ref_quant.c's independent dequantiser): what pack writes, read back through the layout the
 * kernels read, must be the dequantised values bit for bit. */
#include <stdlib.h>

#include "../../compiler/kernels/kt_common.h"
#include "passes/passes.h"
#include "quant.h"
#include "ref/ref_quant.h"
#include "test.h"

static const DType all_types[] = {DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_Q8_0, DT_Q4_K, DT_Q5_K, DT_Q6_K};
enum { N_TYPES = sizeof all_types / sizeof all_types[0] };

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

/* A [R, K] tensor of block type t with random values (an offset per row, so mins matter), and its
 * dequantised values in *deq (row-major f32). */
typedef struct QTensor {
    TensorInfo ti;
    float *deq; /* [R, K] */
} QTensor;

static QTensor qtensor(DType t, int64_t R, int64_t K) {
    QTensor q;
    size_t rb = quant_row_bytes(t, K);
    float *row = malloc(sizeof(float) * (size_t)K);
    uint8_t *data = malloc(rb * (size_t)R);
    q.deq = malloc(sizeof(float) * (size_t)(R * K));
    for (int64_t r = 0; r < R; r++) {
        float off = 0.2f * frand();
        for (int64_t c = 0; c < K; c++) row[c] = off + frand() * (c % 97 == 5 ? 3.0f : 0.5f);
        quant_quantize_row(t, row, data + (size_t)r * rb, K);
        quant_dequant_row(t, data + (size_t)r * rb, q.deq + r * K, K);
        float *twin = malloc(sizeof(float) * (size_t)K); /* the independent dequantiser agrees */
        ref_dequant(t, data + (size_t)r * rb, twin, K);
        EXPECT_TRUE(memcmp(twin, q.deq + r * K, sizeof(float) * (size_t)K) == 0);
        free(twin);
    }
    free(row);
    q.ti = (TensorInfo){.name = "w", .file = "test", .dtype = t, .rank = 2, .shape = {R, K}, .data = data,
                        .nbytes = rb * (size_t)R};
    return q;
}
static void qtensor_free(QTensor *q) { free((void *)q->ti.data), free(q->deq); }

typedef struct Sink {
    char *buf;
    size_t n, cap;
} Sink;
static bool sink_write(void *user, const void *p, size_t n) {
    Sink *s = user;
    if (s->n + n > s->cap) {
        s->cap = (s->n + n) * 2;
        s->buf = realloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->n, p, n);
    s->n += n;
    return true;
}

/* Packs one entry (offset 0) and returns its bytes. */
static char *pack_one(PackEntry e) {
    PackTable pt = {.e = &e, .n = 1, .cap = 1, .total = e.bytes};
    Sink s = {0};
    EXPECT_TRUE(pack_write(&pt, sink_write, NULL, &s));
    EXPECT_EQ(s.n, e.bytes);
    return s.buf;
}

/* Element (r, c) of matrix m of an f32 panel-packed entry of R-row matrices over K columns. */
static float panel_at(const char *buf, int64_t m, int64_t R, int64_t r, int64_t c, int64_t K) {
    return ((const float *)buf)[m * kt_panel_elems(R, K) + kt_panel_index(r, c, K, 0)];
}

/* Step 1 of the quantised compiled path: a block-type matrix without a kernel packs dequantised to
 * f32; every packed element equals quant_dequant_row's. PACK_PANEL stacks two parts of different
 * types (a Q4_K_M-style q|v), PACK_PANEL_EACH two experts of an odd row count, PACK_GATE_UP one
 * expert's gate and up, PACK_ROWS an embedding table. */
static void t_pack_dequant(DType t) {
    const int64_t K = dtype_block_elems(t) == 256 ? 512 : 96, R = 37;
    DType other = dtype_block_elems(t) == 32 ? (t == DT_Q8_0 ? DT_Q4_0 : DT_Q8_0) : t == DT_Q6_K ? DT_Q4_K : DT_Q6_K;
    QTensor a = qtensor(t, R, K), b = qtensor(t, R, K), v = qtensor(other, 5, K);
    int ok = 1;
    { /* PACK_PANEL_EACH, 2 experts */
        const TensorInfo *parts[2] = {&a.ti, &b.ti};
        PackEntry e = {.kind = PACK_PANEL_EACH, .parts = parts, .n_parts = 2, .dtype = DT_F32, .rows = 2 * R, .cols = K};
        e.bytes = 2 * kt_panel_elems(R, K) * 4;
        char *buf = pack_one(e);
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < K; c++)
                ok &= panel_at(buf, 0, R, r, c, K) == a.deq[r * K + c] && panel_at(buf, 1, R, r, c, K) == b.deq[r * K + c];
        free(buf);
    }
    { /* PACK_PANEL: rows of a, then of v (another type) */
        const TensorInfo *parts[2] = {&a.ti, &v.ti};
        PackEntry e = {.kind = PACK_PANEL, .parts = parts, .n_parts = 2, .dtype = DT_F32, .rows = R + 5, .cols = K};
        e.bytes = kt_panel_elems(R + 5, K) * 4;
        char *buf = pack_one(e);
        for (int64_t r = 0; r < R + 5; r++)
            for (int64_t c = 0; c < K; c++)
                ok &= panel_at(buf, 0, R + 5, r, c, K) == (r < R ? a.deq[r * K + c] : v.deq[(r - R) * K + c]);
        free(buf);
    }
    { /* PACK_GATE_UP: gate a, up b; block i/16 holds gate rows then up rows */
        const TensorInfo *parts[2] = {&a.ti, &b.ti};
        PackEntry e = {.kind = PACK_GATE_UP, .parts = parts, .n_parts = 2, .dtype = DT_F32, .rows = 2 * R, .cols = K};
        const int64_t RP = (R + 15) / 16 * 32;
        e.bytes = kt_panel_elems(RP, K) * 4;
        char *buf = pack_one(e);
        for (int64_t i = 0; i < R; i++)
            for (int64_t c = 0; c < K; c++)
                ok &= panel_at(buf, 0, RP, i / 16 * 32 + i % 16, c, K) == a.deq[i * K + c] &&
                      panel_at(buf, 0, RP, i / 16 * 32 + 16 + i % 16, c, K) == b.deq[i * K + c];
        free(buf);
    }
    { /* PACK_ROWS: an embedding table, dequantised rows back to back */
        const TensorInfo *parts[1] = {&a.ti};
        PackEntry e = {.kind = PACK_ROWS, .parts = parts, .n_parts = 1, .dtype = DT_F32, .rows = R, .cols = K};
        e.bytes = R * K * 4;
        char *buf = pack_one(e);
        ok &= memcmp(buf, a.deq, (size_t)e.bytes) == 0;
        free(buf);
    }
    if (!ok) fprintf(stderr, "pack dequantised %s: a value differs from quant_dequant_row\n", dtype_name(t));
    EXPECT_TRUE(ok);
    qtensor_free(&a), qtensor_free(&b), qtensor_free(&v);
}

int main(void) {
    for (int i = 0; i < N_TYPES; i++) t_pack_dequant(all_types[i]);
    return test_done();
}
