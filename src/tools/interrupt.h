// Ctrl-C during generation (fathom run, fathom chat): while a SigintCatcher lives, the first
// SIGINT only raises a flag the generation loop polls, so it can cancel the request and keep
// what it has (partial statistics, the chat prompt); a second SIGINT before reset() ends the
// process as usual.
#pragma once

#include <cstdio>

#include "runtime/engine.h"

namespace fathom::tools {

class SigintCatcher {
 public:
  SigintCatcher();   // installs the handler
  ~SigintCatcher();  // restores the previous one
  SigintCatcher(const SigintCatcher&) = delete;
  SigintCatcher& operator=(const SigintCatcher&) = delete;
  bool caught() const;
  void reset();  // the next SIGINT is caught again
};

// A key read for a line editor (libedit's rl_getc_function) while a SigintCatcher lives: the next
// byte of `in`, EOF at its end, or Ctrl-C's code (kCtrlC) when a SIGINT interrupted the wait;
// that SIGINT is consumed (reset), so the next one is caught again.
constexpr int kCtrlC = 3;
int read_key_or_interrupt(FILE* in);

// Steps the engine until it is idle; a SIGINT caught meanwhile cancels request `id` (which then
// finishes with FinishReason::kCancelled). A failed step's status is returned.
Status run_until_idle_or_interrupted(Engine& engine, RequestId id, const SigintCatcher& sigint);

}  // namespace fathom::tools
