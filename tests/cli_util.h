// Running the fathom binary under test from a test: its exit status and output.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace fathom::test {

struct CmdResult {
  int code = -1;       // exit status; -1 when the command could not run or was killed
  std::string output;  // stdout, and stderr when merged
};

// Runs a shell command and collects its stdout.
inline CmdResult run_command(const std::string& command) {
  CmdResult r;
  FILE* f = popen(command.c_str(), "r");
  if (!f) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) r.output.append(buf, n);
  const int status = pclose(f);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Runs `fathom ARGS` ($FATHOM_BIN, else the binary of this build); stderr goes into the output
// too unless merge_stderr is false (e.g. to parse --json from stdout).
inline CmdResult run_fathom(const std::string& args, bool merge_stderr = true) {
  const char* bin = std::getenv("FATHOM_BIN");
  return run_command(std::string(bin ? bin : FATHOM_BIN_PATH) + " " + args + (merge_stderr ? " 2>&1" : ""));
}

}  // namespace fathom::test
