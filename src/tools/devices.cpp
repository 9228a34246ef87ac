#include <cstdio>

#include "tools/commands.h"

namespace fathom::tools {

int cmd_devices(const Args& args) {
  std::fprintf(stderr, "fathom devices: not implemented yet\n");
  return 1;
}

}  // namespace fathom::tools
