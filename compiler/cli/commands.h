/* commands: one entry point per `moec` subcommand. main.c only dispatches on argv[1];
 * each cmd_* parses its own flags (argv[0] is the subcommand name) and returns the exit status:
 * 0 ok, 1 user error (already reported on stderr), 2 usage error, 70 internal error. */
#ifndef MOEC_COMMANDS_H
#define MOEC_COMMANDS_H

int cmd_run(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_compile(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_kld(int argc, char **argv);

#endif
