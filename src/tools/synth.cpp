#include <cstdio>

#include "tools/commands.h"

namespace fathom::tools {

int cmd_synth(const Args& args) {
  std::fprintf(stderr, "fathom synth: not implemented yet\n");
  return 1;
}

}  // namespace fathom::tools
