#include "tools/cli.h"

#include <cstdio>

namespace fathom::tools {

int main(int argc, char** argv) {
  std::fprintf(stderr, "fathom: no subcommands yet\n");
  return 1;
}

}  // namespace fathom::tools
