#include "runtime/scheduler.h"

#include <algorithm>

namespace fathom {

void Scheduler::remove(SchedSequence* seq) {
  running_.erase(std::remove(running_.begin(), running_.end(), seq), running_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), seq), waiting_.end());
}

std::vector<ScheduledChunk> Scheduler::schedule(KvCache& kv, std::vector<SchedSequence*>* preempted) {
  // Invariant: every running sequence has pending() >= 1 (the engine appends a sampled token
  // after each completed chunk), and a sequence holds cache blocks only while running.
  std::vector<ScheduledChunk> chunks;
  for (;;) {
    chunks.clear();
    int64_t budget = options_.step_token_budget;
    int32_t blocks_free = kv.n_available_blocks();
    bool fits = true;
    // Running sequences in admission order: decodes take one token, prefills a chunk.
    for (SchedSequence* s : running_) {
      if (budget <= 0) break;
      const int64_t n = std::min(s->pending(), budget);
      const int32_t need = kv.blocks_needed(s->seq_id, s->n_computed + n);
      if (need > blocks_free) {
        fits = false;
        break;
      }
      blocks_free -= need;
      budget -= n;
      chunks.push_back({s, n});
    }
    if (!fits) {
      // Preempt the most recently admitted sequence and plan again. A lone sequence that still
      // does not fit is left to the engine (its forward reports the cache error).
      if (running_.size() <= 1) return chunks;
      SchedSequence* victim = running_.back();
      running_.pop_back();
      kv.free_sequence(victim->seq_id);
      victim->n_computed = 0;
      waiting_.push_front(victim);
      if (preempted) preempted->push_back(victim);
      continue;
    }
    // Admit waiting sequences while budget, blocks and slots remain.
    while (!waiting_.empty() && budget > 0 && static_cast<int32_t>(running_.size()) < options_.max_running) {
      SchedSequence* s = waiting_.front();
      const int32_t free_before_hook = blocks_free;
      const bool hooked = admit_hook_ && s->n_computed == 0 && !kv.has_sequence(s->seq_id);
      if (hooked) {
        // Reusing cached blocks that were evictable makes them unavailable to the chunks
        // already planned; account for it, and undo the reuse below if the sequence waits.
        const int32_t available_before = kv.n_available_blocks();
        admit_hook_(*s);
        blocks_free -= available_before - kv.n_available_blocks();
      }
      const int64_t n = std::min(s->pending(), budget);
      const int32_t need = kv.blocks_needed(s->seq_id, s->n_computed + n);
      if ((need > blocks_free || blocks_free < 0) && !running_.empty()) {
        if (hooked) {  // a waiting sequence holds no blocks
          kv.free_sequence(s->seq_id);
          s->n_computed = 0;
          blocks_free = free_before_hook;
        }
        break;
      }
      waiting_.pop_front();
      running_.push_back(s);
      blocks_free -= need;
      budget -= n;
      chunks.push_back({s, n});
    }
    return chunks;
  }
}

}  // namespace fathom
