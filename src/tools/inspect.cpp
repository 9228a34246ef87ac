#include <cstdio>

#include "tools/commands.h"

namespace fathom::tools {

int cmd_inspect(const Args& args) {
  std::fprintf(stderr, "fathom inspect: not implemented yet\n");
  return 1;
}

}  // namespace fathom::tools
