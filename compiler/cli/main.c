/* moec: the command-line driver. Dispatches on the subcommand; each lives in its own file. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "tok_cli.h"

typedef struct Command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} Command;

static const Command commands[] = {
    {"run", cmd_run, "run a model on the generic path (prefill + greedy decode)"},
    {"compile", cmd_compile, "compile a model into a specialised, self-contained executable"},
    {"bench", cmd_bench, "measure compiled vs generic speed against this machine's limits"},
    {"kld", cmd_kld, "KL divergence, top-1 agreement and perplexity of one model against another"},
    {"convert", cmd_convert, "write a model as a GGUF file (llama.cpp's layout)"},
    {"verify", cmd_verify, "check compiled weights (.moew or executable) for corruption"},
    {"inspect", cmd_inspect, "show a model's family, sizes, parameters and memory needs"},
    {"synth", cmd_synth, "write a synthetic checkpoint in the Hugging Face layout"},
    {"tokenize", cmd_tokenize, "encode text with a tokenizer.json (stdin -> ids)"},
    {"detokenize", cmd_detokenize, "decode ids with a tokenizer.json (JSON arrays -> JSON strings)"},
    {"tokbench", cmd_tokbench, "measure the tokenizer's encoding speed"},
    {"demo", cmd_demo, "synthesise, compile and run the tiny Mixtral on a text prompt, both paths"},
};

static void usage(FILE *f) {
    fputs("usage: moec COMMAND [options]   (moec COMMAND --help for details)\n\ncommands:\n", f);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "moec: error: '%s': unknown command\n", argv[1]);
    usage(stderr);
    return 2;
}
