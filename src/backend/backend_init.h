// Backend start-up with retries and fallback. GPU runtimes fail transiently at start (driver
// still loading, device busy after a reset, a MIG/MPS daemon restarting), so an init is retried
// with growing delays before giving up on that backend and trying the next one, each failure
// logged with its reason. Sleep and log are injected so tests run the failure path instantly.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"

namespace fathom {

struct RetryHooks {
  std::function<void(std::chrono::milliseconds)> sleep;  // default: std::this_thread::sleep_for
  std::function<void(const std::string&)> log;           // default: a line on stderr
};

// Calls init up to `attempts` times; before retry i (1-based) sleeps base_delay x 2^(i-1).
// A kNotFound failure (runtime not installed) is final at once: there is nothing to wait for.
// Returns ok on the first success, else the last failure, prefixed with the backend name.
Status try_init_with_retries(const std::string& name, const std::function<Status()>& init, int attempts = 3,
                             std::chrono::milliseconds base_delay = std::chrono::milliseconds(200),
                             const RetryHooks& hooks = {});

struct BackendCandidate {
  std::string name;                 // "cuda", "opencl", "cpu"
  std::function<Status()> init;     // brings the backend up; a non-ok Status says why not
};

// Tries candidates in order (each with retries) and returns the index of the first that
// starts. Each fallback is logged as "backend X unavailable (reason); falling back to Y".
// Fails only when none starts, listing every reason.
Expected<size_t> init_with_fallback(const std::vector<BackendCandidate>& candidates, int attempts = 3,
                                    std::chrono::milliseconds base_delay = std::chrono::milliseconds(200),
                                    const RetryHooks& hooks = {});

}  // namespace fathom
