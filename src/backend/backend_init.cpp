#include "backend/backend_init.h"

#include <cstdio>
#include <thread>

namespace fathom {

namespace {

void call_sleep(const RetryHooks& hooks, std::chrono::milliseconds d) {
  if (hooks.sleep) hooks.sleep(d);
  else std::this_thread::sleep_for(d);
}

void call_log(const RetryHooks& hooks, const std::string& line) {
  if (hooks.log) hooks.log(line);
  else std::fprintf(stderr, "fathom: %s\n", line.c_str());
}

}  // namespace

Status try_init_with_retries(const std::string& name, const std::function<Status()>& init, int attempts,
                             std::chrono::milliseconds base_delay, const RetryHooks& hooks) {
  if (attempts < 1) attempts = 1;
  Status last;
  for (int i = 0; i < attempts; ++i) {
    if (i > 0) {
      const std::chrono::milliseconds delay = base_delay * (int64_t{1} << (i - 1));
      call_log(hooks, strprintf("backend %s: attempt %d/%d failed (%s); retrying in %lld ms", name.c_str(), i, attempts,
                                last.to_string().c_str(), static_cast<long long>(delay.count())));
      call_sleep(hooks, delay);
    }
    last = init();
    if (last.is_ok()) return last;
    // A runtime that is not installed will not appear on a retry; only transient failures
    // (driver present, device busy or resetting) are worth the wait.
    if (last.code() == ErrorCode::kNotFound) return error(last.code(), "backend " + name + ": " + last.message());
  }
  return error(last.code(), strprintf("backend %s failed %d time%s: %s", name.c_str(), attempts, attempts == 1 ? "" : "s",
                                      last.message().c_str()));
}

Expected<size_t> init_with_fallback(const std::vector<BackendCandidate>& candidates, int attempts,
                                    std::chrono::milliseconds base_delay, const RetryHooks& hooks) {
  std::string reasons;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Status st = try_init_with_retries(candidates[i].name, candidates[i].init, attempts, base_delay, hooks);
    if (st.is_ok()) return i;
    reasons += (reasons.empty() ? "" : "; ") + st.message();
    if (i + 1 < candidates.size())
      call_log(hooks, "backend " + candidates[i].name + " unavailable (" + st.message() + "); falling back to " +
                          candidates[i + 1].name);
  }
  return error(ErrorCode::kUnavailable, candidates.empty() ? "no backend candidates" : "no backend started: " + reasons);
}

}  // namespace fathom
