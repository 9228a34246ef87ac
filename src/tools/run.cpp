#include <cstdio>

#include "tools/commands.h"

namespace fathom::tools {

int cmd_run(const Args& args) {
  std::fprintf(stderr, "fathom run: not implemented yet\n");
  return 1;
}

}  // namespace fathom::tools
