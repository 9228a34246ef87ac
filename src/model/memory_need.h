// Memory a configuration takes beyond the mapped weights, computed from the GGUF header and the
// options alone, before anything large is allocated. `fathom run/chat/serve/bench/perplexity`
// check it against MemAvailable before loading (serve: before its port opens); Engine::create
// checks it again before it builds the KV cache, so library callers get an error too, never a
// std::bad_alloc. The KV figure is exact (kv_pool_bytes of the shape the architecture uses); the
// scratch figure is an estimate of the activation buffers the forward pass grows.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "gguf/gguf.h"
#include "kv/kv_cache.h"
#include "model/config.h"
#include "model/placement.h"

namespace fathom {

// The per-sequence context a request for n_ctx tokens gets: n_ctx itself when positive, else
// the model's training context capped at 4096 (EngineOptions::n_ctx's default).
int64_t effective_context(const ModelConfig& config, int64_t n_ctx);

// What is run.
struct MemoryDemand {
  int64_t n_ctx = 0;          // per-sequence context as asked for; 0: the default (effective_context)
  int64_t n_seq = 1;          // sequences whose full context the KV pool holds
  int32_t block_size = 16;    // tokens per KV block
  KvCacheTypes kv_types{};    // element types of the KV rows
  int64_t step_tokens = 512;  // tokens of the largest forward pass
  int64_t logit_rows = 1;     // logits rows kept for that pass, over all logits buffers
  std::string device = "cpu"; // LoadOptions::device: repacked weight copies are made on the CPU only
  PlacementOptions placement{};  // with an accelerator: what goes there (device_bytes)
  bool count_weight_copies = true;  // false once the model is loaded (the copies are already made)
};

struct MemoryNeed {
  int64_t kv_blocks = 0;          // blocks of the KV pool (may pass kMaxKvBlocks: check_memory says so)
  int64_t kv_bytes = 0;           // the KV pool, equal to KvCache::allocated_bytes() once built
  int64_t scratch_bytes = 0;      // activations and logits of the largest step (estimate), and on the
                                  // CPU the AMX attention's packed keys and values (exact bound)
  int64_t weight_copy_bytes = 0;  // repacked matrices copied out of the file map at load,
                                  // capped where RepackCache stops (repack_budget)
  int64_t total_bytes() const { return kv_bytes + scratch_bytes + weight_copy_bytes; }
};

// available_bytes (MemAvailable, 0 when unknown) caps the repacked copies as RepackCache does.
// kOutOfRange when the KV pool overflows int64 blocks or bytes; kInvalidArgument for a
// non-positive context, sequence count, block size or step.
Expected<MemoryNeed> memory_need(const gguf::GgufFile& file, const ModelConfig& config, const MemoryDemand& demand,
                                 uint64_t available_bytes);

// How a front end names the request and the way out, for the one-line error:
//   "the KV cache for -c 999999999 needs 11.2 TiB (plus 1.3 GiB scratch) but 21.4 GiB of memory
//    is available; lower -c/--ctx-size (the model was trained on 512 tokens)"
struct MemoryWording {
  std::string ctx_flag = "-c";  // names the context: "-c 999999999"
  std::string seq_flag;         // names the sequence count when above 1: "-c 4096 x -np 64"; empty: never
  std::string request;          // replaces both when set (bench: "-p 999999999")
  std::string remedy = "lower -c/--ctx-size";
};
// "-c 4096", "-c 4096 x -np 64" or wording.request.
std::string describe_request(const MemoryWording& wording, int64_t n_ctx, int64_t n_seq);
// kOutOfMemory with that line when need.total_bytes() exceeds available_bytes; then
// kOutOfRange when the pool passes kMaxKvBlocks.
Status check_memory(const MemoryNeed& need, uint64_t available_bytes, const ModelConfig& config, const MemoryDemand& demand,
                    const MemoryWording& wording);

// "-c 8192 is more than the 2048 tokens the model was trained on (...)" when n_ctx exceeds the
// model's {arch}.context_length; nullopt otherwise.
std::optional<std::string> context_warning(const ModelConfig& config, int64_t n_ctx, const MemoryWording& wording);

// Accelerator memory a placement takes: the weights placed there and, for each layer whose
// attention runs there, that layer's share of the KV pool (the device mirrors it; the host copy
// stays, so kv_bytes counts in host memory too).
int64_t device_bytes(const Placement& placement, int64_t kv_bytes, int64_t n_layer);

// The whole check from a file path, as the tools make it before loading: open the header, compute,
// compare with MemAvailable. Prints nothing. warnings: a context past the trained one, and on a
// CUDA device (the backend that can tell its free memory) a placement that does not fit there:
// a warning, since what does not fit stays on the CPU and runs, slower. A file that does not
// open passes (loading it reports why); an unreadable /proc/meminfo checks only that the figures
// do not overflow.
Status check_memory_for(const std::string& model_path, MemoryDemand demand, const MemoryWording& wording,
                        std::vector<std::string>* warnings);

// Binary units up to TiB: "512 B", "3.0 MiB", "11.2 TiB".
std::string format_memory(int64_t bytes);

}  // namespace fathom
