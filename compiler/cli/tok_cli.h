/* tok_cli: the tokenizer subcommands, `moec tokenize`, `moec detokenize` and `moec tokbench`.
 * Each takes PATH (a tokenizer.json or a model folder holding one), loads it through tokjson and
 * the runtime tokenizer, and works on stdin/stdout. Like every cmd_*, argv[0] is the subcommand
 * name and the result is the exit status: 0 ok, 1 user error (reported on stderr), 2 usage. */
#ifndef MOEC_TOK_CLI_H
#define MOEC_TOK_CLI_H

/* stdin text -> one JSON array of ids; --jsonl: {"text": ...} per line -> an array per line. */
int cmd_tokenize(int argc, char **argv);
/* A JSON array of ids per stdin line -> the decoded text as a JSON string per line. */
int cmd_detokenize(int argc, char **argv);
/* Prints single-thread encode speed (tokens/s) over --file F (default: a ~5 KB paragraph). */
int cmd_tokbench(int argc, char **argv);

#endif
