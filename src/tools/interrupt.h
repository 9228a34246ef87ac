// Ctrl-C during generation (fathom run, fathom chat): while a SigintCatcher lives, the first
// SIGINT only raises a flag the generation loop polls, so it can cancel the request and keep
// what it has (partial statistics, the chat prompt); a second SIGINT before reset() ends the
// process as usual.
#pragma once

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

// Steps the engine until it is idle; a SIGINT caught meanwhile cancels request `id` (which then
// finishes with FinishReason::kCancelled). A failed step's status is returned.
Status run_until_idle_or_interrupted(Engine& engine, RequestId id, const SigintCatcher& sigint);

}  // namespace fathom::tools
