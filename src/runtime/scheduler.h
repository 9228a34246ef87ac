// Continuous batching in tokens. Each sequence has `tokens` (prompt + generated) and
// `n_computed` of them in the KV cache; a step picks, under a token budget, the tokens that
// close that gap: decodes first (one token each), then chunks of prompts being prefilled, then
// new sequences from the waiting queue. When the cache cannot hold a step's tokens, the most
// recently admitted running sequence is preempted: its blocks are freed and it returns to the
// front of the queue with n_computed = 0, to be recomputed later.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

#include "kv/kv_cache.h"

namespace fathom {

// The scheduler's view of a sequence; the engine embeds it in its per-request state.
struct SchedSequence {
  int32_t seq_id = 0;            // KV cache sequence id
  std::vector<int32_t> tokens;   // prompt followed by generated tokens
  int64_t n_computed = 0;        // tokens[0, n_computed) are in the cache
  int64_t pending() const { return static_cast<int64_t>(tokens.size()) - n_computed; }
};

struct ScheduledChunk {
  SchedSequence* seq;  // sequence to advance
  int64_t n_tokens;    // tokens[n_computed, n_computed + n_tokens) go in this step
};

struct SchedulerOptions {
  int64_t step_token_budget = 512;  // tokens per forward step (decodes + prefill chunks)
  int32_t max_running = 16;         // sequences admitted at once
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerOptions& options) : options_(options) {}

  void enqueue(SchedSequence* seq) { waiting_.push_back(seq); }
  // Called when a sequence with no cached tokens is admitted, before its blocks are counted
  // (the engine's prefix-cache lookup, which may advance n_computed). Keeps such features out
  // of schedule()'s loop.
  void set_admit_hook(std::function<void(SchedSequence&)> hook) { admit_hook_ = std::move(hook); }
  void remove(SchedSequence* seq);  // finished or cancelled; caller frees its cache blocks
  // Plans one step. Sequences preempted to make room (their cache blocks already freed) are
  // appended to *preempted when given. Returns no chunks when there is nothing to do.
  std::vector<ScheduledChunk> schedule(KvCache& kv, std::vector<SchedSequence*>* preempted = nullptr);

  size_t n_waiting() const { return waiting_.size(); }
  size_t n_running() const { return running_.size(); }
  bool idle() const { return waiting_.empty() && running_.empty(); }

 private:
  SchedulerOptions options_;
  std::deque<SchedSequence*> waiting_;  // admitted in FIFO order; preempted ones go to the front
  std::vector<SchedSequence*> running_; // in admission order (the last is preempted first)
  std::function<void(SchedSequence&)> admit_hook_;  // optional, see set_admit_hook
};

}  // namespace fathom
