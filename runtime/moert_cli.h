/* moert_cli: the command line of a compiled executable, mirroring `moec run` (compiler/cli/cmd_run.c):
 * same flags where they overlap, same output (generated ids on one stdout line, --logits-out,
 * --trace, --stats), plus sampling flags and --weights. moert_main.c's main() only calls
 * moert_cli with the linked moe_program; keeping the body here lets tests run it in-process. */
#ifndef MOERT_CLI_H
#define MOERT_CLI_H
#include "format.h"

/* Runs the CLI on prog; returns the exit status: 0 ok, 1 runtime error, 2 bad usage. Messages
 * are one line "NAME: error: ..." on stderr, NAME being argv[0]'s last component. */
int moert_cli(int argc, char **argv, const MoeProgram *prog);

#endif
