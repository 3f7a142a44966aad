/* moec verify: reads every byte of a compiled model's weights (a .moew file, or an executable with
 * its weights embedded) and checks them against the model hash in their header. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "moe.h"

static const char verify_usage[] =
    "usage: moec verify FILE...\n"
    "Checks compiled weights for corruption: FILE is a .moew weights file or an executable made by\n"
    "'moec compile' with its weights embedded. Recomputes the model hash over every byte of the\n"
    "weights and the tokenizer and compares it with the one written at compile time. (An executable\n"
    "also checks itself, against its program, with 'OUT --verify'.) Exit status 1 if any file fails.\n";

int cmd_verify(int argc, char **argv) {
    int n_files = 0, rc = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(verify_usage, stdout);
            return 0;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "moec: error: verify: %s: unknown option; see 'moec verify --help'\n", argv[i]);
            return 2;
        }
    }
    for (int i = 1; i < argc; i++) {
        char err[512];
        uint64_t hash;
        n_files++;
        if (moe_weights_verify(argv[i], &hash, err, sizeof err) != MOE_OK) {
            fprintf(stderr, "moec: error: %s\n", err);
            rc = 1;
        } else {
            printf("%s: ok (model hash 0x%016" PRIx64 ")\n", argv[i], hash);
        }
    }
    if (!n_files) {
        fputs(verify_usage, stderr);
        return 2;
    }
    return rc;
}
