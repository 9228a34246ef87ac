#include <cstdio>

#include "tools/commands.h"

namespace fathom::tools {

int cmd_tokenize(const Args& args) {
  std::fprintf(stderr, "fathom tokenize: not implemented yet\n");
  return 1;
}

int cmd_detokenize(const Args& args) {
  std::fprintf(stderr, "fathom detokenize: not implemented yet\n");
  return 1;
}

}  // namespace fathom::tools
