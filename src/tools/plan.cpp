#include <cstdio>

#include "tools/commands.h"

namespace fathom::tools {

int cmd_plan(const Args& args) {
  std::fprintf(stderr, "fathom plan: not implemented yet\n");
  return 1;
}

}  // namespace fathom::tools
