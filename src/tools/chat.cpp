#include <cstdio>

#include "tools/commands.h"

namespace fathom::tools {

int cmd_chat(const Args& args) {
  std::fprintf(stderr, "fathom chat: not implemented yet\n");
  return 1;
}

}  // namespace fathom::tools
