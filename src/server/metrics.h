// Prometheus metrics for /metrics (text exposition format 0.0.4): request counts by route and
// status, token totals, latency histograms, and gauges of the engine's load and KV cache.
// Thread-safe: HTTP handlers record, the engine thread publishes gauges, /metrics renders.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "runtime/request.h"

namespace fathom::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  void render(std::string& out, const char* name, const char* help) const;

 private:
  mutable std::mutex mutex_;
  std::vector<double> upper_bounds_;  // bucket bounds in seconds, ascending (+Inf implied)
  std::vector<int64_t> counts_;       // [n_bounds + 1] observations per bucket (not cumulative)
  double sum_ = 0.0;                  // sum of observed values
  int64_t count_ = 0;                 // observations
};

// The engine's state, published by the engine thread after each step (reading the KV pool from
// another thread would race with the step).
struct EngineGauges {
  int64_t waiting = 0;                // requests submitted but not yet scheduled
  int64_t running = 0;                // sequences the scheduler is advancing
  int64_t kv_blocks_used = 0;         // KV cache blocks held by live sequences
  int64_t kv_blocks_free = 0;         // KV cache blocks available (free or cached-and-evictable)
  int64_t kv_blocks_cached = 0;       // blocks the prefix cache indexes (some may be in use too)
  double prefix_cache_hit_rate = 0.0; // prompt tokens served from cached blocks / prompt tokens looked up
  int64_t prefix_query_tokens = 0;    // prompt tokens looked up in the prefix cache, since start
  int64_t prefix_hit_tokens = 0;      // of those, served from cached blocks
};

class Metrics {
 public:
  Metrics();

  void count_request(const std::string& route, int status);
  // A finished generation: token totals and ttft / time per output token / end-to-end latency.
  // `key_id` (ApiKeys::key_id, "" when authentication is off) also counts the tokens per key.
  void record_generation(const RequestStats& stats, const std::string& key_id);
  // A generation cancelled (client gone, shutdown) or failed: its tokens still count, and it
  // counts in fathom_requests_cancelled_total when `cancelled`.
  void record_unfinished(const RequestStats& stats, bool cancelled, const std::string& key_id);
  void set_engine_gauges(const EngineGauges& gauges);
  EngineGauges engine_gauges() const;
  void set_model_loaded(bool loaded);
  // Outcome of restoring a saved prefix cache at start-up (--kv-persist).
  void set_prefix_cache_restore(int64_t restored_blocks, bool rejected);
  std::string render() const;

 private:
  void add_tokens(const RequestStats& stats, const std::string& key_id);  // mutex_ held

  mutable std::mutex mutex_;  // guards the fields below, not the histograms (they lock themselves)
  std::map<std::pair<std::string, int>, int64_t> requests_;  // (route, HTTP status) -> responses
  int64_t prompt_tokens_ = 0;     // prompt tokens of generations that ran
  int64_t generated_tokens_ = 0;  // tokens generated, whatever became of the request
  int64_t cancelled_ = 0;         // generations cancelled before their end
  // Per API key ("key-1", ...; only keys that made requests): prompt and generated tokens. The
  // keys are the configured ones, so the label set is bounded by the configuration.
  std::map<std::string, std::pair<int64_t, int64_t>> key_tokens_;
  double start_time_ = 0;         // unix seconds the process started (process_start_time_seconds)
  EngineGauges gauges_;           // last published engine state
  bool model_loaded_ = false;     // the engine is ready
  int64_t prefix_restored_blocks_ = 0;  // cached blocks restored from --kv-persist at start-up
  bool prefix_restore_rejected_ = false; // a saved prefix cache was found but ignored (mismatch, damage)
  Histogram ttft_;                // seconds from submit to the first token
  Histogram tpot_;                // seconds per generated token after the first
  Histogram e2e_;                 // seconds from submit to the end
};

}  // namespace fathom::server
