/* quantize: --quant, block-quantising a float (f32/f16/bf16) checkpoint's weight matrices at load
 * time, the same for moec run, compile and inspect, so both paths and inspect see one model.
 * A spec is "TYPE[,CLASS=TYPE...]": a default type for every class, then per-class overrides
 * (either part optional). Classes:
 *   experts  routed expert matrices        attn  q/k/v/o projections
 *   shared   qwen2_moe shared expert and the dense MLP layers
 *   embed    token embedding               head  lm_head (a tied embedding is the head: it takes
 *                                                 the head's type, as llama-quantize does)
 * Never quantised: the router gate, norms, biases, the shared-expert sigmoid gate. A matrix whose
 * row length is not a multiple of the type's block falls back as llama-quantize does
 * (llama.cpp src/llama-quant.cpp): Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0; when the row is not a
 * multiple of 32 either it stays as stored. quantize_model replaces each weight's TensorInfo by an
 * arena copy of the new type, one tensor at a time. */
#ifndef MOEC_QUANTIZE_H
#define MOEC_QUANTIZE_H
#include <stdio.h>

#include "frontend.h"

typedef enum QuantClass { QC_EXPERTS, QC_ATTN, QC_SHARED, QC_EMBED, QC_HEAD, QC_COUNT } QuantClass;

typedef struct QuantSpec {
    const char *text;           /* as given, for messages */
    DType type[QC_COUNT];       /* DT_COUNT: the class stays as stored */
} QuantSpec;

/* One matrix (a weight node: an expert stack counts once) that did not get its class's type. */
typedef struct QuantFallback {
    const char *name;           /* the weight node's name, e.g. "L00.moe.down_proj" */
    QuantClass cls;
    DType want, got;            /* got: the fallback type, or the stored dtype when kept */
    int64_t cols;               /* its row length */
} QuantFallback;

typedef struct QuantReport {
    int n_mats[QC_COUNT];       /* weight nodes of each class (tied embedding: once, as head) */
    size_t bytes_before[QC_COUNT], bytes_after[QC_COUNT];
    size_t bytes_other;         /* never quantised (router, norms, biases, gates) */
    int n_fallback;
    QuantFallback *fallback;    /* [n_fallback], arena */
    int n_skipped;              /* already block-quantised in the file: left as they are */
} QuantReport;

const char *quantize_class_name(QuantClass c);
/* Parses a --quant spec; false after one diag_error line (unknown type, unknown class, a class or
 * the default given twice, an empty item): the caller exits 2. */
bool quantize_spec_parse(Diag *d, const char *s, QuantSpec *spec);
/* Applies spec to the loaded model m (after model_load, before anything reads the weights):
 * quantises each chosen matrix (OpenMP over rows) into an arena copy, sets the weight nodes'
 * dtypes and re-verifies the graph. plan_only: fills rep (types and bytes) without quantising
 * (inspect). False after diag_error. */
bool quantize_model(Model *m, Arena *a, Diag *d, const QuantSpec *spec, bool plan_only, QuantReport *rep);
/* The run/compile summary: one line of totals, then one note per group of fallbacks, to f. */
void quantize_report_summary(const QuantReport *rep, const QuantSpec *spec, FILE *f);

#endif
