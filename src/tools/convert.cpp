// placeholder, replaced below
#include "tools/commands.h"
namespace fathom::tools {
int cmd_convert(const Args&) { return 1; }
}
