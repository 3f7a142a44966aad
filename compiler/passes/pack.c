/* pack: lay the weights out as the kernels read them, in the dtype they read.
 *   PACK_ROWS        the parts' rows back to back (a vector, the embedding table, a router gate)
 *   PACK_PANEL       the parts' rows stacked (q|k|v) into one matrix in the panel layout of
 *                    kernels/kt_common.h: 32-row blocks, column pairs, zero padding; when fuse
 *                    found two block types (weight.split), rows from split on in a second
 *                    matrix of the second type, right after the first
 *   PACK_PANEL_EACH  E expert matrices of one shape, each in the panel layout, one after another
 *   PACK_GATE_UP     E gate + E up tensors [I, H] -> per expert one panel matrix whose block b
 *                    holds gate rows 16b..16b+15 then up rows 16b..16b+15, so the expert kernel
 *                    reads both in one forward stream
 *   PACK_ROPE     [S][hd]: cos(p*inv_freq[i]) * mscale for i < hd/2, then the sines (float32 angle,
 *                 as HF and the generic path compute it)
 * Dtypes: bf16 matrices stay bf16; f16 and f32 become f32 (exact); vectors become f32. Matrices of a
 * GGUF block type (runtime/quant.h) with a kernel (Q4_0, Q8_0, Q4_K, Q5_K, Q6_K; fuse decides) keep
 * it, in the quantised panel layout of kernels/kt_quant.h (blocks regrouped, scales unpacked, every
 * dequantised value unchanged); any other block-type tensor (another type, parts of mixed types,
 * the embedding and router rows) is dequantised to f32 row by row with quant_dequant_row (exact).
 * Stored rows are sized with quant_row_bytes, never dtype_size (0 for block types). Entries are
 * 64-byte aligned and shared between the prefill and decode graphs when identical. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kt_common.h"
#include "kernels/kt_quant.h"
#include "passes.h"
#include "quant.h"

static bool same_entry(const PackEntry *e, PackKind kind, const Node *w) {
    if (e->kind != kind || e->n_parts != w->a.weight.n_parts || e->dtype != w->dtype ||
        e->split != w->a.weight.split || e->dtype2 != w->a.weight.dtype2)
        return false;
    if (kind == PACK_ROPE)
        return e->rope.inv_freq == w->a.weight.rope.inv_freq && e->rope_positions == w->a.weight.rope_positions &&
               e->cols == w->shape[1];
    return memcmp(e->parts, w->a.weight.parts, sizeof(void *) * (size_t)e->n_parts) == 0;
}

/* Rows of each panel matrix of an entry, and how many matrices it holds. */
static int64_t panel_rows(const PackEntry *e, int64_t *n_mat) {
    *n_mat = 1;
    if (e->kind == PACK_PANEL) return e->rows;
    if (e->kind == PACK_PANEL_EACH) return *n_mat = e->n_parts, e->rows / e->n_parts;
    *n_mat = e->n_parts / 2; /* PACK_GATE_UP: 16 gate + 16 up rows per block */
    return (e->parts[0]->shape[0] + 15) / 16 * 32;
}

static int64_t packed_bytes(const PackEntry *e) {
    if (e->kind == PACK_ROWS || e->kind == PACK_ROPE) return e->rows * e->cols * (int64_t)dtype_size(e->dtype);
    int64_t n_mat, r = panel_rows(e, &n_mat);
    if (e->split) /* two block types: a matrix of each */
        return kt_q_panel_bytes(e->split, e->cols, (int32_t)e->dtype) +
               kt_q_panel_bytes(r - e->split, e->cols, (int32_t)e->dtype2);
    if (dtype_is_quant(e->dtype)) return n_mat * kt_q_panel_bytes(r, e->cols, (int32_t)e->dtype);
    return n_mat * kt_panel_elems(r, e->cols) * (int64_t)dtype_size(e->dtype);
}

void pass_pack(Arena *a, PackTable *pt, Graph *g) {
    for (uint32_t i = 0; i < g->n; i++) {
        Node *w = &g->nodes[i];
        if (w->op != OP_WEIGHT || w->a.weight.pack == PACK_NONE) continue;
        PackKind kind = w->a.weight.pack;
        int found = -1;
        for (int j = 0; j < pt->n && found < 0; j++)
            if (same_entry(&pt->e[j], kind, w)) found = j;
        if (found < 0) {
            if (pt->n == pt->cap) {
                int cap = pt->cap ? pt->cap * 2 : 256;
                PackEntry *e = arena_alloc(a, sizeof(PackEntry) * (size_t)cap);
                if (pt->n) memcpy(e, pt->e, sizeof(PackEntry) * (size_t)pt->n);
                pt->e = e;
                pt->cap = cap;
            }
            PackEntry *e = &pt->e[pt->n];
            e->kind = kind;
            e->parts = w->a.weight.parts;
            e->n_parts = w->a.weight.n_parts;
            e->dtype = w->dtype;
            e->dtype2 = w->a.weight.dtype2;
            e->split = w->a.weight.split;
            e->rows = w->rank == 1 ? 1 : w->shape[0];
            e->cols = w->rank == 1 ? w->shape[0] : w->shape[1];
            e->rope = w->a.weight.rope;
            e->rope_positions = w->a.weight.rope_positions;
            e->bytes = packed_bytes(e);
            if (e->kind != PACK_ROWS && e->kind != PACK_ROPE)
                for (int p = 0; p < e->n_parts; p++)
                    if (dtype_is_quant(e->parts[p]->dtype) && e->parts[p]->dtype != e->dtype &&
                        !(e->split && e->parts[p]->dtype == e->dtype2))
                        pt->dequantised |= 1u << e->parts[p]->dtype;
            e->offset = (pt->total + 63) & ~(int64_t)63;
            pt->total = e->offset + e->bytes;
            found = pt->n++;
        }
        w->a.weight.offset = pt->e[found].offset;
    }
}

/* dst[i] (packed dtype to: bf16 or f32) = element c of src (dtype from), converted exactly where the
 * dtypes allow (bf16 copied as is). */
static inline void convert_at(void *dst, DType to, int64_t i, const void *src, DType from, int64_t c) {
    if (to == DT_BF16 && from == DT_BF16) ((uint16_t *)dst)[i] = ((const uint16_t *)src)[c];
    else if (to == DT_BF16) ((uint16_t *)dst)[i] = f32_to_bf16(dtype_load_f32(from, src, (size_t)c));
    else ((float *)dst)[i] = dtype_load_f32(from, src, (size_t)c);
}

/* Converts n elements of a tensor to the packed dtype. */
static void convert(void *dst, DType to, const void *srcp, DType from, int64_t n) {
    if (to == from) {
        memcpy(dst, srcp, (size_t)n * dtype_size(to));
        return;
    }
    for (int64_t i = 0; i < n; i++) convert_at(dst, to, i, srcp, from, i);
}

/* The fields of one source block of a block type with a kernel: f16 bits of d (and dmin, or Q4_1's and
 * Q5_1's m), the integer
 * sub-block scales (and mins) and every element's stored level (Q8_0: the int8 bits). */
typedef struct QSrc {
    uint16_t d, dmin;
    int sc[16], mn[8];
    uint8_t lev[256];
} QSrc;

static void qsrc_decode(DType t, const uint8_t *b, QSrc *q) {
    memcpy(&q->d, t == DT_Q6_K ? b + 208 : b, 2);
    if (t == DT_Q8_0)
        for (int i = 0; i < 32; i++) q->lev[i] = b[2 + i];
    else if (t == DT_Q4_0 || t == DT_Q4_1) { /* d, [m], nibbles */
        const uint8_t *qs = b + (t == DT_Q4_1 ? 4 : 2);
        if (t == DT_Q4_1) memcpy(&q->dmin, b + 2, 2); /* m */
        for (int j = 0; j < 16; j++) q->lev[j] = qs[j] & 15, q->lev[j + 16] = qs[j] >> 4;
    } else if (t == DT_Q5_0 || t == DT_Q5_1) { /* d, [m], qh (bit i: element i's fifth bit), nibbles */
        const int off = t == DT_Q5_1 ? 4 : 2;
        const uint8_t *qs = b + off + 4;
        uint32_t qh = (uint32_t)b[off] | (uint32_t)b[off + 1] << 8 | (uint32_t)b[off + 2] << 16 | (uint32_t)b[off + 3] << 24;
        if (t == DT_Q5_1) memcpy(&q->dmin, b + 2, 2); /* m */
        for (int j = 0; j < 16; j++) {
            q->lev[j] = (uint8_t)((qs[j] & 15) | (qh >> j & 1) << 4);
            q->lev[j + 16] = (uint8_t)((qs[j] >> 4) | (qh >> (j + 16) & 1) << 4);
        }
    } else if (t == DT_Q4_K || t == DT_Q5_K) {
        const uint8_t *s = b + 4, *qh = b + 16, *qs = b + (t == DT_Q5_K ? 48 : 16);
        memcpy(&q->dmin, b + 2, 2);
        for (int j = 0; j < 8; j++) { /* ggml's get_scale_min_k4 */
            q->sc[j] = j < 4 ? s[j] & 63 : (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
            q->mn[j] = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | (s[j] >> 6) << 4;
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int hi = t == DT_Q5_K ? qh[l] >> 2 * c : 0;
                q->lev[64 * c + l] = (uint8_t)((qs[32 * c + l] & 15) | (hi & 1) << 4);
                q->lev[64 * c + 32 + l] = (uint8_t)((qs[32 * c + l] >> 4) | (hi >> 1 & 1) << 4);
            }
    } else { /* Q6_K: ql @0, qh @128, scales @192 */
        const uint8_t *ql = b, *qh = b + 128;
        for (int j = 0; j < 16; j++) q->sc[j] = (int8_t)b[192 + j];
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                int hb = qh[32 * h + l];
                q->lev[128 * h + l] = (uint8_t)((ql[64 * h + l] & 15) | (hb & 3) << 4);
                q->lev[128 * h + 32 + l] = (uint8_t)((ql[64 * h + 32 + l] & 15) | (hb >> 2 & 3) << 4);
                q->lev[128 * h + 64 + l] = (uint8_t)((ql[64 * h + l] >> 4) | (hb >> 4 & 3) << 4);
                q->lev[128 * h + 96 + l] = (uint8_t)((ql[64 * h + 32 + l] >> 4) | (hb >> 6 & 3) << 4);
            }
    }
}

/* Row r of a quantised panel matrix (kernels/kt_quant.h, K columns, at dst) from a stored row src of
 * the same block type t: its lane r % 16 of each sub-panel it falls in. */
static void qpanel_row(char *dst, DType t, int64_t r, const uint8_t *src, int64_t K) {
    const int32_t wdt = (int32_t)t;
    const int64_t bk = kt_q_bk(wdt), lane = r % 16;
    QSrc q;
    for (int64_t kb = 0; kb < K / bk; kb++) {
        qsrc_decode(t, src + (size_t)kb * dtype_block_bytes(t), &q);
        uint8_t *sub = (uint8_t *)dst + kt_q_sub_offset(r, kb, K, wdt);
        memcpy(sub + 2 * lane, &q.d, 2);
        if (t == DT_Q4_1 || t == DT_Q5_1) memcpy(sub + 32 + 2 * lane, &q.dmin, 2); /* m */
        if (t == DT_Q4_K || t == DT_Q5_K) {
            memcpy(sub + 32 + 2 * lane, &q.dmin, 2);
            for (int j = 0; j < 8; j++)
                sub[64 + 16 * j + lane] = (uint8_t)q.sc[j], sub[192 + 16 * j + lane] = (uint8_t)q.mn[j];
        } else if (t == DT_Q6_K) {
            for (int j = 0; j < 16; j++) sub[32 + 16 * j + lane] = (uint8_t)q.sc[j];
        }
        for (int64_t g = 0; g < bk / 32; g++) {
            uint8_t *grp = sub + kt_q_hdr(wdt) + g * kt_q_grp(wdt);
            const uint8_t *lev = q.lev + 32 * g;
            if (t == DT_Q8_0) {
                for (int c = 0; c < 32; c++) grp[16 * c + lane] = lev[c];
                continue;
            }
            const int five = t == DT_Q5_0 || t == DT_Q5_1 || t == DT_Q5_K;
            for (int k = 0; k < 4; k++) { /* column 16 h + 4 j4 + k's high bits (kt_quant.h) */
                uint8_t b5 = 0, b6[2] = {0, 0};
                for (int h = 0; h < 2; h++)
                    for (int j4 = 0; j4 < 4; j4++) {
                        const int lv = lev[16 * h + 4 * j4 + k];
                        b5 |= (uint8_t)((lv >> 4 & 1) << (4 * h + j4));
                        b6[h] |= (uint8_t)((lv >> 4 & 3) << 2 * j4);
                    }
                if (five) grp[16 * k + lane] = b5;
                if (t == DT_Q6_K) grp[16 * k + lane] = b6[0], grp[64 + 16 * k + lane] = b6[1];
            }
            uint8_t *nib = grp + (five ? 64 : t == DT_Q6_K ? 128 : 0);
            for (int j = 0; j < 16; j++) nib[16 * j + lane] = (uint8_t)((lev[j] & 15) | (lev[j + 16] & 15) << 4);
        }
    }
}

/* Row r of a panel matrix (K columns, at dst) from a stored row src of dtype from; a block-type row
 * is dequantised into tmp[K] first (the packed dtype is then f32). */
static void panel_row(char *dst, DType to, int64_t r, const void *src, DType from, int64_t K, float *tmp) {
    const int32_t wdt = to == DT_BF16 ? 2 : 0;
    if (dtype_is_quant(to)) { /* kept in its block type (fuse chose it for every part) */
        MOE_ASSERT(from == to);
        qpanel_row(dst, to, r, src, K);
        return;
    }
    if (dtype_is_quant(from)) {
        MOE_ASSERT(to == DT_F32);
        quant_dequant_row(from, src, tmp, K);
        src = tmp, from = DT_F32;
    }
    const int64_t at = kt_panel_index(r, 0, K, wdt), odd = kt_panel_index(r, 1, K, wdt) - at;
    for (int64_t c = 0; c < K; c++) convert_at(dst, to, at + c / 2 * 64 + c % 2 * odd, src, from, c);
}

/* Bytes of one stored row of t (its innermost dim; whole blocks for a block type). */
static size_t row_bytes(const TensorInfo *t) { return quant_row_bytes(t->dtype, t->rank ? t->shape[t->rank - 1] : 1); }

static const char *row_of(const TensorInfo *t, int64_t r) { return (const char *)t->data + (size_t)r * row_bytes(t); }

static void fill(const PackEntry *e, char *buf) {
    const size_t es = dtype_size(e->dtype);
    if (e->kind == PACK_ROPE) {
        const int64_t hd = e->cols, half = hd / 2;
        float *t = (float *)buf;
        for (int64_t p = 0; p < e->rope_positions; p++)
            for (int64_t i = 0; i < half; i++) {
                float ang = (float)p * e->rope.inv_freq[i];
                t[p * hd + i] = (float)cos((double)ang) * e->rope.mscale;
                t[p * hd + half + i] = (float)sin((double)ang) * e->rope.mscale;
            }
    } else if (e->kind != PACK_ROWS) { /* the panel layouts */
        memset(buf, 0, (size_t)e->bytes); /* padding rows and columns */
        int64_t n_mat, R = panel_rows(e, &n_mat), K = e->cols, r0 = 0;
        float *tmp = malloc(sizeof(float) * (size_t)K); /* [K] a dequantised row */
        MOE_ASSERT(tmp);
        const size_t mat_bytes = dtype_is_quant(e->dtype) ? (size_t)kt_q_panel_bytes(R, K, (int32_t)e->dtype)
                                                          : (size_t)kt_panel_elems(R, K) * es;
        for (int p = 0; p < e->n_parts; p++) {
            const TensorInfo *t = e->parts[p];
            int64_t rows = t->shape[0];
            if (e->kind == PACK_PANEL && e->split && r0 >= e->split) { /* the second type's matrix */
                char *m2 = buf + kt_q_panel_bytes(e->split, K, (int32_t)e->dtype);
                for (int64_t r = 0; r < rows; r++)
                    panel_row(m2, e->dtype2, r0 - e->split + r, row_of(t, r), t->dtype, K, tmp);
                r0 += rows;
            } else if (e->kind == PACK_PANEL) { /* stacked: this part's rows follow the previous part's */
                for (int64_t r = 0; r < rows; r++) panel_row(buf, e->dtype, r0 + r, row_of(t, r), t->dtype, K, tmp);
                r0 += rows;
            } else if (e->kind == PACK_PANEL_EACH) {
                for (int64_t r = 0; r < rows; r++)
                    panel_row(buf + (size_t)p * mat_bytes, e->dtype, r, row_of(t, r), t->dtype, K, tmp);
            } else { /* PACK_GATE_UP: parts[0..n_mat) gate, then up */
                int64_t ex = p % n_mat, up = p / n_mat;
                for (int64_t i = 0; i < rows; i++)
                    panel_row(buf + (size_t)ex * mat_bytes, e->dtype, i / 16 * 32 + up * 16 + i % 16, row_of(t, i),
                              t->dtype, K, tmp);
            }
        }
        free(tmp);
    } else {
        size_t at = 0;
        for (int p = 0; p < e->n_parts; p++) {
            const TensorInfo *t = e->parts[p];
            if (dtype_is_quant(t->dtype)) { /* dequantised row by row, straight into the f32 entry */
                MOE_ASSERT(e->dtype == DT_F32);
                int64_t K = t->shape[t->rank - 1], rows = (int64_t)(t->nbytes / row_bytes(t));
                for (int64_t r = 0; r < rows; r++, at += (size_t)K * es)
                    quant_dequant_row(t->dtype, row_of(t, r), (float *)(buf + at), K);
                continue;
            }
            int64_t n = (int64_t)(t->nbytes / dtype_size(t->dtype));
            convert(buf + at, e->dtype, t->data, t->dtype, n);
            at += (size_t)n * es;
        }
    }
}

bool pack_write(const PackTable *pt, bool (*write)(void *user, const void *p, size_t n),
                void (*progress)(void *user, int64_t done, int64_t total), void *user) {
    static const char zeros[64];
    int64_t at = 0;
    char *buf = NULL;
    size_t cap = 0;
    for (int i = 0; i < pt->n; i++) { /* entries were appended in offset order */
        const PackEntry *e = &pt->e[i];
        if (e->offset > at && !write(user, zeros, (size_t)(e->offset - at))) goto fail;
        if ((size_t)e->bytes > cap) {
            free(buf);
            cap = (size_t)e->bytes;
            if (!(buf = malloc(cap))) return false;
        }
        fill(e, buf);
        if (!write(user, buf, (size_t)e->bytes)) goto fail;
        at = e->offset + e->bytes;
        if (progress) progress(user, at, pt->total);
    }
    free(buf);
    return true;
fail:
    free(buf);
    return false;
}
