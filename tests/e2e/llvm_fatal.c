/* llvm_fatal: LLVM's fatal errors never abort moec. cg_new checks what it is given so that user
 * input does not reach them (tests/e2e/compile_checks.sh targets), and installs LLVM's fatal error
 * handler for anything that still slips through: one "moec: error:" line, exit status 1. This
 * drives LLVM into one behind cg_new's back (a raw target machine for x86_64 code on a 32-bit CPU,
 * which cg_new refuses) in a child process and checks the child's status and stderr. */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "backend/codegen.h"

static void child(void) {
    Diag d = {0};
    Codegen *cg = cg_new(&d, &(CgTarget){.triple = "x86_64-linux-gnu", .cpu = "x86-64"});
    if (!cg) _exit(10);
    LLVMTargetRef t;
    char *err = NULL;
    if (LLVMGetTargetFromTriple("x86_64-unknown-linux-gnu", &t, &err)) _exit(11);
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(t, "x86_64-unknown-linux-gnu", "pentium2", "",
                                                      LLVMCodeGenLevelDefault, LLVMRelocPIC, LLVMCodeModelDefault);
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef m = LLVMModuleCreateWithNameInContext("fatal", ctx);
    LLVMTypeRef f32 = LLVMFloatTypeInContext(ctx);
    LLVMValueRef fn = LLVMAddFunction(m, "f", LLVMFunctionType(f32, &f32, 1, 0));
    LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
    LLVMBuildRet(b, LLVMGetParam(fn, 0));
    LLVMMemoryBufferRef buf = NULL;
    LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMObjectFile, &err, &buf); /* LLVM's fatal error */
    _exit(12);
}

int main(void) {
    int fds[2];
    if (pipe(fds) != 0) return 1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        child();
    }
    close(fds[1]);
    char text[4096];
    size_t len = 0;
    for (ssize_t n; len + 1 < sizeof text && (n = read(fds[0], text + len, sizeof text - 1 - len)) > 0;) len += (size_t)n;
    text[len] = 0;
    int status = 0;
    waitpid(pid, &status, 0);
    printf("child: %s, stderr:\n%s", WIFEXITED(status) ? "exited" : "killed by a signal", text);
    int lines = 0;
    for (const char *p = text; *p; p++) lines += *p == '\n';
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 1 && lines == 1 &&
              strncmp(text, "moec: error: LLVM cannot generate code for ", 43) == 0 &&
              strstr(text, "64-bit code requested") != NULL;
    printf(ok ? "PASS\n" : "FAIL: expected exit status 1 and one 'moec: error: LLVM ...' line (status %d)\n",
           WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
    return ok ? 0 : 1;
}
