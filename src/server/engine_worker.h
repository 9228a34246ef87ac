// The engine thread of `fathom serve`: loads the model (the HTTP listener is already up, so
// /health can answer "loading"), then loops `step()` while the engine has work and sleeps on a
// condition variable otherwise; submit() and cancel() wake it. Also the admission gate: a group
// of requests is accepted only while running + queued stays under the configured limit.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "runtime/engine.h"
#include "server/metrics.h"

namespace fathom::server {

// One engine event of one choice of an HTTP request.
struct ChoiceEvent {
  size_t choice = 0;  // index of the choice (completions prompt) in its request
  TokenEvent event;   // what the engine reported
};

// Hands a request's events from the engine thread to the connection that relays them.
class EventChannel {
 public:
  void push(ChoiceEvent event);
  // Moves every queued event into `out` (cleared first); false when there were none.
  bool take(std::vector<ChoiceEvent>& out);

 private:
  std::mutex mutex_;
  std::deque<ChoiceEvent> events_;  // pushed, not yet taken
};

enum class EngineState { kLoading, kReady, kFailed };

using EngineFactory = std::function<Expected<std::unique_ptr<Engine>>()>;

class EngineWorker {
 public:
  // max_running: sequences the scheduler advances at once (for the waiting/running gauges);
  // max_in_flight: requests accepted at once (running plus queued); more are refused.
  EngineWorker(Metrics& metrics, int32_t max_running, int64_t max_in_flight);
  ~EngineWorker();
  EngineWorker(const EngineWorker&) = delete;
  EngineWorker& operator=(const EngineWorker&) = delete;

  // Starts the engine thread, which loads the model first. With a prefix_cache_file, the thread
  // restores the prefix cache from it after loading (a missing, mismatched or damaged file is
  // reported on stderr and ignored) and saves the cache there when it stops.
  void start(EngineFactory factory, std::string prefix_cache_file = "");
  EngineState state() const;
  Status load_status() const;         // why loading failed (ok otherwise)
  // Blocks until the model is loaded or failed to load; returns load_status().
  Status wait_loaded();
  // The engine once state() is kReady, else nullptr. Handlers use only its thread-safe parts
  // (tokenizer, n_ctx, submit, cancel) through this worker.
  const Engine* engine() const;

  // Admission before work: holds a place for one request while its prompt is prepared, so
  // that a full server says 429 before parsing and tokenizing. False when running + queued +
  // places held already reach max_in_flight.
  bool reserve();
  void release_reservation();  // the prepared request was refused, or failed before submit
  // Submits every request or none. kUnavailable (-> 429) when they would exceed max_in_flight.
  // `reserved`: one place was held by reserve(); it is given back whatever the outcome.
  // Each request's on_event runs on the engine thread, as the engine documents.
  Expected<std::vector<RequestId>> submit(std::vector<GenerationRequest> requests, bool reserved = false);
  void cancel(RequestId id);
  void cancel_all();
  int64_t in_flight() const;
  // Waits until no request is in flight; false when `timeout` passed first.
  bool wait_idle(std::chrono::milliseconds timeout);
  void stop();  // ends the engine thread (requests still in flight never finish)

 private:
  void run(EngineFactory factory);
  void step_until_stopped();         // the engine loop; returns after stop()
  void restore_prefix_cache();       // engine thread, before the engine is ready
  void save_prefix_cache();          // engine thread, after the loop
  void wake();
  void publish_gauges();  // engine thread only

  Metrics& metrics_;
  const int32_t max_running_;     // scheduler's concurrent sequences
  const int64_t max_in_flight_;   // admission limit
  std::thread thread_;            // the engine thread
  std::string prefix_cache_file_; // saved prefix cache ("" = not persisted); set before the thread starts

  mutable std::mutex mutex_;      // guards everything below
  std::condition_variable cv_;    // wakes the engine thread and waiters for load/idle
  EngineState state_ = EngineState::kLoading;
  Status load_status_;            // loading error, when kFailed
  std::unique_ptr<Engine> engine_;  // set once loaded; destroyed with the worker
  std::set<RequestId> in_flight_;   // submitted, final event not yet delivered
  int64_t reserved_ = 0;            // places held by reserve() for requests being prepared
  bool wake_ = false;             // work was submitted or cancelled since the engine thread looked
  bool stop_ = false;             // stop() was called
};

}  // namespace fathom::server
