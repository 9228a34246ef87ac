#include "tools/interrupt.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <atomic>

namespace fathom::tools {

namespace {

// A signal handler can reach nothing but a lock-free flag with static storage: this is the one
// piece of file-static mutable state, and only SigintCatcher touches it.
std::atomic<bool> g_sigint_caught{false};
struct sigaction g_previous {};

void on_sigint(int) {
  if (g_sigint_caught.exchange(true)) {
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
  }
}

}  // namespace

SigintCatcher::SigintCatcher() {
  g_sigint_caught = false;
  struct sigaction action {};
  action.sa_handler = on_sigint;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &g_previous);
}

SigintCatcher::~SigintCatcher() { sigaction(SIGINT, &g_previous, nullptr); }

bool SigintCatcher::caught() const { return g_sigint_caught; }

void SigintCatcher::reset() { g_sigint_caught = false; }

int read_key_or_interrupt(FILE* in) {
  for (;;) {
    unsigned char c = 0;
    const ssize_t n = read(fileno(in), &c, 1);
    if (n == 1) return c;
    if (n < 0 && errno == EINTR) {
      if (g_sigint_caught.exchange(false)) return kCtrlC;
      continue;  // another signal (a resize): keep waiting
    }
    return EOF;
  }
}

Status run_until_idle_or_interrupted(Engine& engine, RequestId id, const SigintCatcher& sigint) {
  bool cancelled = false;
  while (engine.has_work()) {
    if (sigint.caught() && !cancelled) {
      engine.cancel(id);
      cancelled = true;
    }
    FATHOM_RETURN_IF_ERROR(engine.step());
  }
  return Status::ok();
}

}  // namespace fathom::tools
