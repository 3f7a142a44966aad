/* The LLVM backend mechanism (compiler/backend/codegen.c) with the matmul templates
 * (compiler/kernels/matmul.c): specialise for the host, emit an object, link it with a small C driver
 * (system cc), run it and compare with a reference matmul; check the optimised IR has no template
 * left and no shape parameters; emit an AArch64 ELF object; unknown triple/CPU/feature errors;
 * invalid IR is written to a file; a straight-line program built with the builder helpers. */
#include <stdlib.h>
#include <time.h>

#include "backend/codegen.h"
#include "test.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint16_t to_bf16(float f) { /* round to nearest even (no NaNs here) */
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static bool write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* One specialisation run by the driver. */
typedef struct Case {
    const char *name;
    bool bf16;
    int64_t T, K, N; /* y[T, N] = x[T, K] w[N, K]^T */
    int nth;         /* threads simulated one after the other by the driver */
    bool bind_threads; /* ith = 0, nth = 1 bound too (then nth must be 1) */
} Case;

static const Case cases[] = {
    {"k_bf16_ragged", true, 3, 67, 13, 3, false},
    {"k_f32_ragged", false, 3, 67, 13, 3, false},
    {"k_bf16_tiles", true, 9, 256, 70, 2, false},
    {"k_f32_decode", false, 1, 128, 41, 4, false},
    {"k_bf16_chunks", true, 133, 64, 10, 2, false}, /* more tokens than one 64-token chunk */
    {"k_f32_single", false, 5, 33, 7, 1, true},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

static LLVMValueRef specialize(Codegen *cg, const Case *c) {
    CgBind b[8] = {cg_bind_keep(),    cg_bind_keep(),    cg_bind_keep(),    cg_bind_int(c->T),
                   cg_bind_int(c->K), cg_bind_int(c->N), cg_bind_keep(),    cg_bind_keep()}; // y x w T K N ith nth
    if (c->bind_threads) b[6] = cg_bind_int(0), b[7] = cg_bind_int(1);
    return cg_specialize(cg, c->name, c->bf16 ? "kt_matmul_bf16" : "kt_matmul_f32", b, 8);
}

/* The driver: reads x<i>.bin and w<i>.bin, runs kernel i for every ith, writes y<i>.bin; then runs
 * prog() (built in t_program) and counts its barriers. */
static bool write_driver(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/driver.c", dir);
    FILE *f = fopen(path, "w");
    if (!f) return false;
    fputs("#include <stdint.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
          "typedef void (*K5)(float *, const float *, const void *, int32_t, int32_t);\n"
          "typedef void (*K3)(float *, const float *, const void *);\n",
          f);
    for (int i = 0; i < N_CASES; i++)
        fprintf(f, "void %s(float *, const float *, const void *%s);\n", cases[i].name,
                cases[i].bind_threads ? "" : ", int32_t, int32_t");
    fputs("static struct { void *fn; int bound, nth; long T, K, N, wsize; } ks[] = {\n", f);
    for (int i = 0; i < N_CASES; i++) {
        const Case *c = &cases[i];
        fprintf(f, "  {(void *)%s, %d, %d, %lld, %lld, %lld, %d},\n", c->name, c->bind_threads, c->nth, (long long)c->T,
                (long long)c->K, (long long)c->N, c->bf16 ? 2 : 4);
    }
    fputs("};\n"
          "static void *rd(const char *dir, const char *what, int i, size_t n) {\n"
          "  char p[4200]; snprintf(p, sizeof p, \"%s/%s%d.bin\", dir, what, i);\n"
          "  FILE *f = fopen(p, \"rb\"); void *b = malloc(n);\n"
          "  if (!f || fread(b, 1, n, f) != n) { fprintf(stderr, \"cannot read %s\\n\", p); exit(1); }\n"
          "  fclose(f); return b;\n}\n"
          "static void wr(const char *dir, const char *what, int i, const void *b, size_t n) {\n"
          "  char p[4200]; snprintf(p, sizeof p, \"%s/%s%d.bin\", dir, what, i);\n"
          "  FILE *f = fopen(p, \"wb\"); if (!f || fwrite(b, 1, n, f) != n) exit(1); fclose(f);\n}\n"
          "static int barriers;\n"
          "void test_barrier(int32_t ith) { (void)ith; barriers++; }\n"
          "void prog(char *base, int32_t ith, int32_t nth);\n"
          "int main(int argc, char **argv) {\n"
          "  (void)argc;\n"
          "  for (int i = 0; i < (int)(sizeof ks / sizeof ks[0]); i++) {\n"
          "    float *x = rd(argv[1], \"x\", i, 4 * ks[i].T * ks[i].K);\n"
          "    void *w = rd(argv[1], \"w\", i, ks[i].wsize * ks[i].N * ks[i].K);\n"
          "    float *y = malloc(4 * ks[i].T * ks[i].N);\n"
          "    memset(y, 0xff, 4 * ks[i].T * ks[i].N); /* NaN: an unwritten element fails the test */\n"
          "    for (int ith = 0; ith < ks[i].nth; ith++)\n"
          "      if (ks[i].bound) ((K3)ks[i].fn)(y, x, w); else ((K5)ks[i].fn)(y, x, w, ith, ks[i].nth);\n"
          "    wr(argv[1], \"y\", i, y, 4 * ks[i].T * ks[i].N);\n"
          "    if (i == 0) { /* prog: the same kernel on [y | x | w] in one buffer */\n"
          "      long ny = ks[0].T * ks[0].N, nx = ks[0].T * ks[0].K, nw = ks[0].N * ks[0].K;\n"
          "      char *base = malloc(4 * ny + 4 * nx + 2 * nw);\n"
          "      memcpy(base + 4 * ny, x, 4 * nx); memcpy(base + 4 * ny + 4 * nx, w, 2 * nw);\n"
          "      memset(base, 0xff, 4 * ny);\n"
          "      for (int ith = 0; ith < ks[0].nth; ith++) prog(base, ith, ks[0].nth);\n"
          "      wr(argv[1], \"prog\", 0, base, 4 * ny);\n"
          "      printf(\"barriers %d\\n\", barriers);\n"
          "      free(base);\n"
          "    }\n"
          "    free(x), free(w), free(y);\n"
          "  }\n"
          "  return 0;\n}\n",
          f);
    return fclose(f) == 0;
}

/* prog(base, ith, nth): kernel 0 on y = base, x = base + 4 T N, w = base + 4 T N + 4 T K; barrier. */
static void t_program(Codegen *cg, LLVMValueRef k0) {
    const CgTypes *ty = cg_types(cg);
    const Case *c = &cases[0];
    LLVMTypeRef params[] = {ty->t_ptr, ty->t_i32, ty->t_i32};
    const char *names[] = {"base", "ith", "nth"};
    LLVMValueRef prog = cg_define(cg, "prog", ty->t_void, params, 3, names);
    LLVMValueRef base = LLVMGetParam(prog, 0), ith = LLVMGetParam(prog, 1), nth = LLVMGetParam(prog, 2);
    LLVMTypeRef bparams[] = {ty->t_i32};
    LLVMValueRef barrier = cg_declare(cg, "test_barrier", ty->t_void, bparams, 1);
    EXPECT_TRUE(cg_declare(cg, "test_barrier", ty->t_void, bparams, 1) == barrier);
    LLVMValueRef args[] = {cg_ptr_offset(cg, base, 0, "y"), cg_ptr_offset(cg, base, 4 * c->T * c->N, "x"),
                           cg_ptr_offset(cg, base, 4 * c->T * c->N + 4 * c->T * c->K, "w"), ith, nth};
    cg_call(cg, k0, args, 5);
    cg_call(cg, barrier, &ith, 1);
    LLVMBuildRetVoid(cg_builder(cg));
}

/* (1) + (2): host kernels against a reference; the optimised IR. */
static void t_host(void) {
    const char *dir = test_tmpdir("codegen");
    if (!dir) test_skip("no temporary directory");
    Diag d = {0};
    double t0 = now();
    Codegen *cg = cg_new(&d, NULL);
    EXPECT_TRUE(cg != NULL);
    if (!cg) return;
    double t1 = now();
    printf("host: %s, cpu %s, avx512f %d, avx512bf16 %d, neon %d\n", cg_triple(cg), cg_cpu(cg),
           cg_has_feature(cg, "avx512f"), cg_has_feature(cg, "avx512bf16"), cg_has_feature(cg, "neon"));
    EXPECT_TRUE(cg_template(cg, "kt_matmul_bf16") != NULL);
    EXPECT_TRUE(cg_template(cg, "kt_no_such_kernel") == NULL);

    LLVMValueRef fns[N_CASES];
    for (int i = 0; i < N_CASES; i++) fns[i] = specialize(cg, &cases[i]);
    /* The same template and binds again: the first function, nothing new. */
    Case again = cases[0];
    again.name = "k_again";
    EXPECT_TRUE(specialize(cg, &again) == fns[0]);
    EXPECT_TRUE(LLVMGetNamedFunction(cg_module(cg), "k_again") == NULL);
    EXPECT_EQ(LLVMCountParams(fns[0]), 5);
    EXPECT_EQ(LLVMCountParams(fns[N_CASES - 1]), 3);
    t_program(cg, fns[0]);
    double t2 = now();
    EXPECT_TRUE(cg_optimize(cg));
    double t3 = now();
    char obj[4200], ll[4200], s[4200];
    snprintf(obj, sizeof obj, "%s/kernels.o", dir);
    snprintf(ll, sizeof ll, "%s/kernels.ll", dir);
    snprintf(s, sizeof s, "%s/kernels.s", dir);
    EXPECT_TRUE(cg_emit(cg, CG_EMIT_OBJ, obj));
    double t4 = now();
    EXPECT_TRUE(cg_emit(cg, CG_EMIT_LLVM, ll));
    EXPECT_TRUE(cg_emit(cg, CG_EMIT_ASM, s));
    printf("host: new %.1f ms, specialise %d + program %.2f ms, optimise %.1f ms, emit object %.1f ms\n",
           1e3 * (t1 - t0), N_CASES, 1e3 * (t2 - t1), 1e3 * (t3 - t2), 1e3 * (t4 - t3));

    /* (2) No template left, and only pointers (+ ith, nth) as parameters. */
    int n_defined = 0;
    for (LLVMValueRef fn = LLVMGetFirstFunction(cg_module(cg)); fn; fn = LLVMGetNextFunction(fn)) {
        if (LLVMIsDeclaration(fn)) continue;
        n_defined++;
        size_t len;
        const char *name = LLVMGetValueName2(fn, &len);
        EXPECT_TRUE(strncmp(name, "k_", 2) == 0 || strcmp(name, "prog") == 0);
        if (strncmp(name, "k_", 2) != 0) continue;
        unsigned np = LLVMCountParams(fn);
        for (unsigned i = 0; i < np; i++) {
            LLVMTypeKind k = LLVMGetTypeKind(LLVMTypeOf(LLVMGetParam(fn, i)));
            EXPECT_TRUE(i < 3 ? k == LLVMPointerTypeKind : k == LLVMIntegerTypeKind);
        }
    }
    EXPECT_EQ(n_defined, N_CASES + 1);
    char *text = test_read_file(ll, NULL);
    EXPECT_TRUE(text != NULL);
    if (text) {
        EXPECT_TRUE(strstr(text, "@kt_matmul") == NULL); /* no call, declaration or definition */
        EXPECT_STR_CONTAINS(text, "define void @k_bf16_ragged(ptr noalias");
        int n_define = 0;
        for (const char *p = strstr(text, "\ndefine "); p; p = strstr(p + 1, "\ndefine ")) {
            char line[512];
            snprintf(line, sizeof line, "%.*s", (int)strcspn(p + 1, "\n"), p + 1);
            if (!strstr(line, "@k_")) continue;
            n_define++;
            EXPECT_TRUE(strstr(line, "i64") == NULL); /* no shape parameter left */
            if (!strstr(line, "@k_f32_single(")) EXPECT_STR_CONTAINS(line, "i32 noundef %ith, i32 noundef %nth)");
        }
        EXPECT_EQ(n_define, N_CASES);
    }
    free(text);
    char *asm_text = test_read_file(s, NULL);
    if (asm_text && cg_has_feature(cg, "fma")) EXPECT_STR_CONTAINS(asm_text, "vfmadd231ps");
    if (asm_text && cg_has_feature(cg, "neon")) EXPECT_STR_CONTAINS(asm_text, "fmla\tv");
    free(asm_text);
    cg_free(cg);

    /* (1) Link with the driver and compare with a reference matmul (double accumulation). */
    float *xs[N_CASES], *wfs[N_CASES];
    for (int i = 0; i < N_CASES; i++) {
        const Case *c = &cases[i];
        size_t nx = (size_t)(c->T * c->K), nw = (size_t)(c->N * c->K);
        xs[i] = malloc(4 * nx);
        wfs[i] = malloc(4 * nw);
        uint16_t *wb = malloc(2 * nw);
        for (size_t j = 0; j < nx; j++) xs[i][j] = frand();
        for (size_t j = 0; j < nw; j++) {
            wfs[i][j] = 0.5f * frand();
            if (c->bf16) wb[j] = to_bf16(wfs[i][j]), wfs[i][j] = from_bf16(wb[j]);
        }
        char p[4200];
        snprintf(p, sizeof p, "%s/x%d.bin", dir, i);
        EXPECT_TRUE(write_file(p, xs[i], 4 * nx));
        snprintf(p, sizeof p, "%s/w%d.bin", dir, i);
        EXPECT_TRUE(write_file(p, c->bf16 ? (void *)wb : (void *)wfs[i], (c->bf16 ? 2 : 4) * nw));
        free(wb);
    }
    EXPECT_TRUE(write_driver(dir));
    char cmd[13000], out[4200], err[4200];
    snprintf(out, sizeof out, "%s/driver.out", dir);
    snprintf(err, sizeof err, "%s/driver.err", dir);
    snprintf(cmd, sizeof cmd, "cc -O1 -o '%s/driver' '%s/driver.c' '%s'", dir, dir, obj);
    int rc = test_run(cmd, out, err);
    EXPECT_EQ(rc, 0);
    if (rc == 0) {
        snprintf(cmd, sizeof cmd, "'%s/driver' '%s'", dir, dir);
        rc = test_run(cmd, out, err);
        EXPECT_EQ(rc, 0);
    }
    if (rc != 0) {
        char *e = test_read_file(err, NULL);
        fprintf(stderr, "driver: %s\n", e ? e : "?");
        free(e);
    }
    for (int i = 0; rc == 0 && i < N_CASES; i++) {
        const Case *c = &cases[i];
        size_t ny = (size_t)(c->T * c->N);
        char p[4200];
        snprintf(p, sizeof p, "%s/y%d.bin", dir, i);
        size_t len = 0;
        float *y = (float *)test_read_file(p, &len), *ref = malloc(4 * ny);
        EXPECT_EQ(len, 4 * ny);
        for (int64_t t = 0; t < c->T; t++)
            for (int64_t n = 0; n < c->N; n++) {
                double acc = 0;
                for (int64_t k = 0; k < c->K; k++) acc += (double)xs[i][t * c->K + k] * wfs[i][n * c->K + k];
                ref[t * c->N + n] = (float)acc;
            }
        double e = y && len == 4 * ny ? test_nmse(y, ref, ny) : 1;
        if (!(e <= 1e-6)) fprintf(stderr, "%s: nmse %.3g\n", c->name, e);
        EXPECT_TRUE(e <= 1e-6);
        if (i == 0) { /* prog ran the same kernel through the builder-made program */
            snprintf(p, sizeof p, "%s/prog0.bin", dir);
            float *yp = (float *)test_read_file(p, &len);
            EXPECT_TRUE(yp && len == 4 * ny && y && memcmp(yp, y, 4 * ny) == 0);
            free(yp);
        }
        free(y);
        free(ref);
    }
    if (rc == 0) {
        char *o = test_read_file(out, NULL);
        EXPECT_TRUE(o && strstr(o, "barriers 3"));
        free(o);
    }
    for (int i = 0; i < N_CASES; i++) free(xs[i]), free(wfs[i]);
}

/* (3) An AArch64 object from the same templates. */
static void t_aarch64(void) {
    const char *dir = test_tmpdir("codegen_a64");
    if (!dir) test_skip("no temporary directory");
    Diag d = {0};
    Codegen *cg = cg_new(&d, &(CgTarget){.triple = "aarch64-linux-gnu"});
    EXPECT_TRUE(cg != NULL);
    if (!cg) return;
    EXPECT_TRUE(strcmp(cg_cpu(cg), "generic") == 0);
    EXPECT_STR_CONTAINS(cg_triple(cg), "aarch64");
    CgBind b[8] = {cg_bind_keep(),    cg_bind_keep(),  cg_bind_keep(), cg_bind_int(1),
                   cg_bind_int(4096), cg_bind_int(64), cg_bind_keep(), cg_bind_keep()};
    cg_specialize(cg, "k_a64_decode", "kt_matmul_bf16", b, 8);
    EXPECT_TRUE(cg_optimize(cg));
    char obj[4200], s[4200];
    snprintf(obj, sizeof obj, "%s/a64.o", dir);
    snprintf(s, sizeof s, "%s/a64.s", dir);
    EXPECT_TRUE(cg_emit(cg, CG_EMIT_OBJ, obj));
    EXPECT_TRUE(cg_emit(cg, CG_EMIT_ASM, s));
    size_t len = 0;
    unsigned char *elf = (unsigned char *)test_read_file(obj, &len);
    EXPECT_TRUE(elf && len > 64 && memcmp(elf, "\x7f" "ELF", 4) == 0);
    if (elf && len > 64) {
        EXPECT_EQ(elf[4], 2);                      /* ELFCLASS64 */
        EXPECT_EQ(elf[18] | (elf[19] << 8), 183);  /* e_machine: EM_AARCH64 */
    }
    free(elf);
    char *asm_text = test_read_file(s, NULL);
    EXPECT_TRUE(asm_text && strstr(asm_text, "k_a64_decode:") && strstr(asm_text, "fmla\tv"));
    free(asm_text);
    cg_free(cg);
}

/* (4) Unknown triple, CPU and feature; (5) invalid IR is written to a file. */
static void t_errors(void) {
    Diag d = {.quiet = true};
    EXPECT_TRUE(cg_new(&d, &(CgTarget){.triple = "foo-bar-baz"}) == NULL);
    EXPECT_STR_CONTAINS(d.first, "foo-bar-baz");

    d = (Diag){.quiet = true};
    EXPECT_TRUE(cg_new(&d, &(CgTarget){.triple = "x86_64-linux-gnu", .cpu = "skylake-avx513"}) == NULL);
    EXPECT_STR_CONTAINS(d.first, "'skylake-avx513'");
    EXPECT_STR_CONTAINS(d.first, "did you mean 'skylake-avx512'");

    d = (Diag){.quiet = true};
    EXPECT_TRUE(cg_new(&d, &(CgTarget){.triple = "aarch64-linux-gnu", .cpu = "neoverse-v9"}) == NULL);
    EXPECT_STR_CONTAINS(d.first, "'neoverse-v9'");

    d = (Diag){.quiet = true};
    EXPECT_TRUE(cg_new(&d, &(CgTarget){.triple = "x86_64-linux-gnu", .cpu = "x86-64", .features = "avx2,+avx512nope"}) ==
                NULL);
    EXPECT_STR_CONTAINS(d.first, "avx512nope");

    d = (Diag){.quiet = true};
    Codegen *cg = cg_new(&d, &(CgTarget){.triple = "x86_64-linux-gnu", .cpu = "sapphirerapids", .features = "avx512bf16"});
    EXPECT_TRUE(cg != NULL);
    if (cg) {
        EXPECT_TRUE(cg_has_feature(cg, "avx512bf16"));
        EXPECT_TRUE(!cg_has_feature(cg, "avx512"));
        const CgTypes *ty = cg_types(cg);
        cg_define(cg, "bad", ty->t_i32, NULL, 0, NULL); /* a block without a terminator */
        const char *dir = test_tmpdir("codegen_bad");
        if (dir) setenv("TMPDIR", dir, 1);
        EXPECT_TRUE(!cg_optimize(cg));
        EXPECT_STR_CONTAINS(d.first, "invalid LLVM IR");
        char path[4200];
        size_t n = strcspn(d.first, ":");
        snprintf(path, sizeof path, "%.*s", (int)n, d.first);
        char *dumped = test_read_file(path, NULL);
        EXPECT_TRUE(dumped && strstr(dumped, "define i32 @bad()"));
        free(dumped);
        cg_free(cg);
    }

    FILE *f = tmpfile();
    d = (Diag){.quiet = true};
    EXPECT_TRUE(f && cg_list_cpus(&d, "aarch64-linux-gnu", f));
    if (f) {
        rewind(f);
        char line[256];
        bool seen = false;
        while (fgets(line, sizeof line, f)) seen |= strcmp(line, "neoverse-v2\n") == 0;
        EXPECT_TRUE(seen);
        fclose(f);
    }
}

int main(void) {
    t_host();
    t_aarch64();
    t_errors();
    return test_done();
}
