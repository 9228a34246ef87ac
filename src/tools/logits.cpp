#include <cstdio>

#include "tools/commands.h"

namespace fathom::tools {

int cmd_logits(const Args& args) {
  std::fprintf(stderr, "fathom logits: not implemented yet\n");
  return 1;
}

}  // namespace fathom::tools
