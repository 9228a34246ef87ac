// Requests to an Engine in this process, stepped by its own engine thread: the same scheduler
// and forward pass `fathom serve` uses, without HTTP, so a load test measures the engine alone.
// Generation ignores end-of-generation tokens, so every request produces exactly max_tokens.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "loadgen/target.h"
#include "runtime/engine.h"

namespace fathom::loadgen {

struct LocalTargetOptions {
  std::string model_path;  // GGUF file
  int n_threads = 0;       // CPU threads, 0: all cores
  MapOptions map;          // the model file mapped (default) or read, locked or not
  int64_t n_ctx = 0;       // per-sequence context (prompt + output); 0: the engine's default
  int32_t n_seq_max = 1;   // sequences the KV cache holds at once (the engine queues the rest)
  uint64_t seed = 0;       // sampling seed; request i samples with seed + i
};

class LocalTarget : public Target {
 public:
  static Expected<std::unique_ptr<LocalTarget>> create(const LocalTargetOptions& options);
  ~LocalTarget() override;  // joins the engine thread; every send() must have returned

  RequestOutcome send(const WorkItem& item) override;
  std::string describe() const override;
  const Engine& engine() const { return *engine_; }

 private:
  explicit LocalTarget(LocalTargetOptions options) : options_(std::move(options)) {}
  void engine_loop();
  // Token ids for the item: exactly item.prompt_tokens of them when that is set (the text's
  // tokens, repeated or cut), else the text or chat-templated messages, tokenized.
  std::vector<int32_t> prompt_tokens(const WorkItem& item) const;

  LocalTargetOptions options_;
  std::unique_ptr<Engine> engine_;
  std::thread engine_thread_;          // runs engine_loop
  std::mutex mutex_;                   // guards the fields below
  std::condition_variable wake_;       // engine thread: new work or stop
  std::condition_variable finished_;   // senders: some request finished
  int64_t submitted_ = 0;              // submits the engine thread has not yet looked for
  bool stopping_ = false;              // the destructor runs
  Status engine_status_;               // a failed step ends every request with this
};

}  // namespace fathom::loadgen
