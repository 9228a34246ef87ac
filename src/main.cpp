// fathom: one binary, subcommands in src/tools (one file each).
#include "tools/cli.h"

int main(int argc, char** argv) { return fathom::tools::main(argc, argv); }
