// The one generation path. `fathom run`, `chat`, `serve` and `bench` all submit requests here
// and receive token events; the engine owns the model, tokenizer, KV cache and scheduler.
// Thread-safety: submit() and cancel() may be called from any thread; step()/run_until_idle()
// from one engine thread, on which the event callbacks run.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"
#include "kv/kv_cache.h"
#include "kv/kv_persist.h"
#include "model/memory_need.h"
#include "model/model.h"
#include "runtime/grammar/matcher.h"
#include "runtime/request.h"
#include "runtime/scheduler.h"
#include "tokenizer/tokenizer.h"

namespace fathom {

struct EngineOptions {
  std::string model_path;         // GGUF file
  MapOptions map{};               // how the file comes into memory: mapped (default) or read, locked or not
  int n_threads = 0;              // 0: all cores
  std::string device = "cpu";     // backend: cpu, cuda[:N] or opencl[:N] (LoadOptions::device)
  PlacementOptions placement{};   // what goes on the accelerator (LoadOptions::placement)
  int64_t n_ctx = 0;              // per-sequence context; 0: min(model's training context, 4096)
  int32_t n_seq_max = 1;          // sequences whose full context the cache can hold at once
  int32_t max_running = 0;        // sequences scheduled at once; 0: n_seq_max (more than n_seq_max
                                  // overcommits the cache and relies on preemption)
  int32_t block_size = 16;        // tokens per KV block
  KvCacheTypes kv_types{};        // element types of the KV rows (f16 unless asked)
  int64_t step_token_budget = 512;// tokens per forward step
  bool prefix_cache = true;       // reuse KV blocks of prompt prefixes seen before
  bool check_memory = true;       // refuse (kOutOfMemory) a KV cache and scratch larger than MemAvailable
  // Context shift (runtime/context_shift.h, `serve --context-shift`): a generation that reaches
  // n_ctx keeps its first context_shift_keep tokens, discards half of the rest and continues;
  // -1: off, it finishes with kLength. At most n_ctx - 2 (something must be left to discard).
  int64_t context_shift_keep = -1;
  std::function<void(uint64_t done_bytes, uint64_t total_bytes)> on_repack_progress;  // LoadOptions::on_repack_progress
};

// What the engine these options describe will allocate (model/memory_need.h), the weights'
// copies left out: set count_weight_copies to check before loading them.
MemoryDemand engine_memory_demand(const EngineOptions& options);

class Engine {
 public:
  static Expected<std::unique_ptr<Engine>> create(const EngineOptions& options);
  ~Engine();

  Model& model() { return *model_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const KvCache& kv_cache() const { return *kv_; }
  int64_t n_ctx() const { return n_ctx_; }
  double load_seconds() const { return load_seconds_; }
  // Where the model runs, one line per backend with its weights and KV cache memory
  // (Placement::describe); empty when everything is on the CPU.
  std::vector<std::string> placement_report() const;

  // Validates and queues a request; its events arrive through request.on_event.
  Expected<RequestId> submit(GenerationRequest request);
  void cancel(RequestId id);                 // the request ends with FinishReason::kCancelled
  bool has_work();                           // queued or running requests
  size_t n_waiting() const { return scheduler_->n_waiting() + deferred_.size(); }  // engine thread only
  size_t n_running() const { return scheduler_->n_running(); }  // engine thread only
  Status step();                             // one scheduled forward step
  Status run_until_idle();

  // Prefix-cache persistence (`serve --kv-persist`; src/kv/kv_persist.h). The file is tied to
  // this model by persist_key(). Engine thread only, between steps; restore before serving.
  Expected<KvPersistSaveStats> save_prefix_cache(const std::string& path) const;
  Expected<KvPersistRestoreStats> restore_prefix_cache(const std::string& path);
  const KvPersistModelKey& persist_key() const { return persist_key_; }

 private:
  struct Active;
  Engine() = default;
  void admit_incoming();
  RequestId prefill_leader_for(const Active& a) const;  // see release_deferred
  void release_deferred();
  void finish(Active& a, FinishReason reason, Status status, bool release_held_text = true);
  void emit_token(Active& a, int32_t token, const float* logits);
  void shift_context(Active& a);  // see EngineOptions::context_shift_keep

  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<Scheduler> scheduler_;
  std::shared_ptr<const TokenTrie> token_trie_;  // the tokenizer's token bytes, built at the first grammar request
  GrammarCache grammar_cache_;                   // compiled grammars (automaton + masks) shared across requests
  int64_t n_ctx_ = 0;
  int64_t context_shift_keep_ = -1;  // EngineOptions::context_shift_keep
  double load_seconds_ = 0.0;
  KvPersistModelKey persist_key_;  // model identity a saved prefix cache must match

  std::mutex mutex_;                                     // guards incoming_, cancelled_, next_id_
  std::vector<std::unique_ptr<Active>> incoming_;        // submitted, not yet seen by the engine thread
  std::vector<RequestId> cancelled_;                     // cancel requests not yet applied
  RequestId next_id_ = 1;
  std::unordered_map<RequestId, std::unique_ptr<Active>> active_;  // engine thread only
  std::vector<RequestId> deferred_;  // engine thread only: requests waiting for an identical prompt's prefill
  Batch batch_;                                          // scratch: this step's tokens
  std::vector<float> logits_;                            // scratch: [n_logits, n_vocab]
  TopLogits top_;                                        // scratch: each row's largest logits, when they suffice
  // Largest logits a step asks for instead of whole rows (greedy, top-k up to this).
  static constexpr int64_t kMaxTopCandidates = 64;
};

double now_seconds();  // steady clock

}  // namespace fathom
