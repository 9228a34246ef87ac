// Subcommand dispatch for the fathom binary.
#pragma once

namespace fathom::tools {

int main(int argc, char** argv);

}  // namespace fathom::tools
