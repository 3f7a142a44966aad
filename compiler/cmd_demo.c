/* moec demo: the README's first command. Synthesises the tiny Mixtral (no downloads) into a cache
 * folder, runs it on the generic path and prints the generated tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "synth.h"

static const char demo_usage[] =
    "usage: moec demo [--dir DIR]\n"
    "Synthesises the tiny Mixtral (seed 1, bf16) into DIR (default $XDG_CACHE_HOME/moec or\n"
    "~/.cache/moec) if it is not there yet, and runs it on the generic path: 16 greedy tokens\n"
    "after a fixed 8-token prompt.\n";

int cmd_demo(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(demo_usage, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            dir = argv[++i];
        } else {
            fprintf(stderr, "moec: error: %s: unknown option; see 'moec demo --help'\n", argv[i]);
            return 2;
        }
    }
    char base[4096], model[4200];
    if (!dir) {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && *xdg) snprintf(base, sizeof base, "%s/moec", xdg);
        else snprintf(base, sizeof base, "%s/.cache/moec", home && *home ? home : "/tmp");
        dir = base;
    }
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "moec: error: %s: cannot create the cache folder\n", dir);
        return 1;
    }
    snprintf(model, sizeof model, "%s/mixtral-tiny", dir);
    struct stat st;
    if (stat(model, &st) != 0) {
        Diag d = {0};
        SynthOptions o;
        synth_options_init(&o, model, SYNTH_MIXTRAL, SYNTH_TINY);
        o.seed = 1;
        if (!synth_write_model(&d, &o)) return 1;
        fprintf(stderr, "moec: synthesised the tiny Mixtral into %s\n", model);
    }
    const char *prompt = "1,80,201,326,233,314,182,82";
    printf("model:  %s (tiny synthetic Mixtral: 2 layers, 4 experts, top-2)\nprompt: %s\n", model, prompt);
    printf("generated (generic path, greedy): ");
    fflush(stdout);
    char *args[] = {"run", model, "--tokens", (char *)prompt, "-n", "16", NULL};
    return cmd_run(6, args);
}
