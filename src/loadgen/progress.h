// Progress of a load run on stderr: on a terminal one line redrawn in place (\r) with a bar,
// elsewhere (logs, CI) a plain line every few seconds so the output stays readable.
#pragma once

#include <cstdio>
#include <string>

#include "loadgen/runner.h"

namespace fathom::loadgen {

class ProgressPrinter {
 public:
  // label: printed at the start of each line, e.g. "server 4 req/s".
  ProgressPrinter(std::FILE* out, bool is_terminal, std::string label)
      : out_(out), is_terminal_(is_terminal), label_(std::move(label)) {}
  void update(const ProgressSnapshot& s);
  // The line update() would print (without \r or newline), for tests.
  static std::string format(const ProgressSnapshot& s, const std::string& label, bool with_bar);

 private:
  std::FILE* out_;            // where lines go (stderr)
  bool is_terminal_;          // redraw in place rather than print lines
  std::string label_;         // line prefix
  double last_line_s_ = -1;   // elapsed time of the last plain line, -1 before the first
  size_t last_width_ = 0;     // length of the last in-place line, to blank leftovers
};

}  // namespace fathom::loadgen
