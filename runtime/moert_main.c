/* moert_main: main() of every executable `moec compile` links:
 *   cc -o OUT program.o libmoert_main.a libmoert.a -fopenmp -lm
 * program.o defines moe_program; the command line is runtime/moert_cli.c. Built as its own
 * library (moert_main) so that tests and moec, which link moert, never pull in this main. */
#include "format.h"
#include "moert_cli.h"

int main(int argc, char **argv) { return moert_cli(argc, argv, &moe_program); }
