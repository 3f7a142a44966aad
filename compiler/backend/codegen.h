/* codegen: the LLVM backend for one target, through the LLVM-C API (libLLVM, no external tools).
 * A Codegen owns one LLVMContext, one module, a builder and a target machine. The module starts as
 * the kernel templates (the .c files of compiler/kernels, compiled to bitcode when moec is built and embedded in
 * moec_core by cmake/kernels.cmake), retargeted to the chosen triple/CPU. cg_specialize makes
 * shape-specialised kernels from them (bound parameters become constants); the caller builds its
 * straight-line program functions with the builder; cg_optimize inlines the templates into the
 * specialisations and runs O3; cg_emit writes an object, assembly, IR or bitcode. Everything LLVM
 * hands out is disposed by cg_free; LLVM values are borrowed and die with the Codegen.
 *
 *   Codegen *cg = cg_new(d, &(CgTarget){.triple = "aarch64-linux-gnu"});
 *   CgBind b[8] = {cg_bind_keep(), cg_bind_keep(), cg_bind_keep(), cg_bind_int(1), cg_bind_int(4096),
 *                  cg_bind_int(14336), cg_bind_keep(), cg_bind_keep()};
 *   LLVMValueRef k = cg_specialize(cg, "k_L00_ffn_up", "kt_matmul_bf16", b, 8); // (y, x, w, ith, nth)
 *   ... build program() with cg_builder(cg), cg_call(cg, k, args, 5) ...
 *   if (!cg_optimize(cg) || !cg_emit(cg, CG_EMIT_OBJ, "model.o")) ...
 *   cg_free(cg); */
#ifndef MOEC_CODEGEN_H
#define MOEC_CODEGEN_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <llvm-c/Core.h>

#include "diag.h"

/* What to generate code for. All-zero ({0}) means the host, tuned for the host CPU, at O3. */
typedef struct CgTarget {
    const char *triple;   /* e.g. "aarch64-linux-gnu"; NULL: the host's (LLVMGetDefaultTargetTriple) */
    const char *cpu;      /* LLVM CPU name, or "native" (host CPU and its detected features);
                             NULL: "native" when the triple's arch is the host's, else "generic" */
    const char *features; /* extra LLVM features "+avx512bf16,-avx512f" ('+' may be left out); NULL: none */
    int opt_level;        /* 1..3 (0 means 3): the pass pipeline default<On> and the codegen level */
} CgTarget;

typedef struct Codegen Codegen;

/* LLVM types of the context, cached. */
typedef struct CgTypes {
    LLVMTypeRef t_void, t_i1, t_i8, t_i32, t_i64, t_f32, t_ptr;
} CgTypes;

/* How cg_specialize treats one template parameter. */
typedef enum CgBindKind {
    CG_KEEP,      /* stays a parameter of the specialised function */
    CG_CONST_INT, /* replaced by the integer i (the parameter must be an integer type that holds i) */
    CG_CONST_FP,  /* replaced by the float f (the parameter must be float or double) */
} CgBindKind;

typedef struct CgBind {
    CgBindKind kind;
    int64_t i;
    double f;
} CgBind;

static inline CgBind cg_bind_keep(void) { return (CgBind){.kind = CG_KEEP}; }
static inline CgBind cg_bind_int(int64_t i) { return (CgBind){.kind = CG_CONST_INT, .i = i}; }
static inline CgBind cg_bind_fp(double f) { return (CgBind){.kind = CG_CONST_FP, .f = f}; }

typedef enum CgEmitKind {
    CG_EMIT_OBJ,  /* relocatable object (ELF for linux triples), position independent */
    CG_EMIT_ASM,  /* assembly text */
    CG_EMIT_LLVM, /* textual LLVM IR */
    CG_EMIT_BC,   /* LLVM bitcode */
} CgEmitKind;

/* A Codegen for target t (NULL: host); NULL after diag_error (unknown triple, CPU or feature).
 * It points fd 2 at a temporary file while LLVM builds the target machine (to catch LLVM's
 * "not a recognized processor" warning): no other thread should write to stderr meanwhile. */
Codegen *cg_new(Diag *d, const CgTarget *t);
/* Frees the Codegen and everything LLVM gave it; cg may be NULL. */
void cg_free(Codegen *cg);

LLVMContextRef cg_context(Codegen *cg); /* the context every type and value belongs to */
LLVMModuleRef cg_module(Codegen *cg);   /* the one module: templates, specialisations, programs */
LLVMBuilderRef cg_builder(Codegen *cg); /* a builder for the caller's own functions */
const CgTypes *cg_types(Codegen *cg);   /* void, i1, i8, i32, i64, float and ptr types */

/* The template function tmpl (defined in compiler/kernels), or NULL if there is none. */
LLVMValueRef cg_template(Codegen *cg, const char *tmpl);
/* A function `name` whose parameters are tmpl's CG_KEEP parameters in order (same names and
 * attributes) and whose body calls tmpl with the others replaced by constants; binds has one entry
 * per tmpl parameter. External, noinline. If the same tmpl with the same binds was specialised
 * before, returns that function (under its first name) and creates nothing. If another function is
 * named `name` already, the new one is named `name.2` (or .3, ...). Call before cg_optimize. */
LLVMValueRef cg_specialize(Codegen *cg, const char *name, const char *tmpl, const CgBind *binds, int n_binds);

/* A new external function `name` with an "entry" block; the builder is positioned at its end.
 * param_names may be NULL. */
LLVMValueRef cg_define(Codegen *cg, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, int n_params,
                       const char *const *param_names);
/* The declaration of an external function (e.g. a runtime barrier), added on first use. */
LLVMValueRef cg_declare(Codegen *cg, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, int n_params);
/* A call of fn (a function of this module) at the builder's position; the call value. */
LLVMValueRef cg_call(Codegen *cg, LLVMValueRef fn, LLVMValueRef *args, int n_args);
/* base + bytes as a pointer (inbounds byte GEP) at the builder's position; base itself for 0. */
LLVMValueRef cg_ptr_offset(Codegen *cg, LLVMValueRef base, int64_t bytes, const char *name);
LLVMValueRef cg_i32(Codegen *cg, int32_t v); /* i32 constant */
LLVMValueRef cg_i64(Codegen *cg, int64_t v); /* i64 constant */

/* Sets "prefer-vector-width" (128, 256 or 512 bits; 0: LLVM's choice for the CPU, which is 256 on
 * most AVX-512 Intel CPUs). The default is 512: the widest vectors the CPU has (LLVM clamps it to
 * 256 without AVX-512; AArch64 ignores it). */
void cg_set_vector_bits(Codegen *cg, int bits);

/* Checks the module (on failure: diag_error naming a file the module was written to). */
bool cg_verify(Codegen *cg);
/* Verifies, sets the target's CPU/features on every function, then runs default<On> (templates are
 * alwaysinline + internal, so they fold into the specialisations and disappear). Once, after every
 * cg_specialize; false after diag_error. */
bool cg_optimize(Codegen *cg);
/* Writes the module as kind to path (through a temporary file renamed into place); false after
 * diag_error. Object and assembly are generated from a copy: the module itself is left as it was. */
bool cg_emit(Codegen *cg, CgEmitKind kind, const char *path);

const char *cg_triple(Codegen *cg);   /* normalised target triple, e.g. "aarch64-unknown-linux-gnu" */
const char *cg_cpu(Codegen *cg);      /* CPU name given to LLVM ("native" resolved, e.g. "sapphirerapids") */
const char *cg_features(Codegen *cg); /* feature string given to LLVM ("+a,-b,..."; may be "") */
/* True when feature feat (LLVM spelling: "avx512bf16", "neon") is known to be enabled: for "native"
 * from the host's detected features, otherwise only from the explicit features string (LLVM-C cannot
 * tell which features a named CPU implies, so a named CPU alone gives false). */
bool cg_has_feature(Codegen *cg, const char *feat);

/* Prints the CPU names LLVM knows for triple (NULL: host), one per line, to out; false after
 * diag_error (unknown triple). */
bool cg_list_cpus(Diag *d, const char *triple, FILE *out);

#endif
