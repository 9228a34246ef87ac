#include <cstdio>

#include "tools/commands.h"

namespace fathom::tools {

int cmd_bench(const Args& args) {
  std::fprintf(stderr, "fathom bench: not implemented yet\n");
  return 1;
}

}  // namespace fathom::tools
