#include "model/memory_need.h"

#include <algorithm>

#include "backend/cpu/attention.h"
#include "backend/cpu/repack.h"
#include "backend/cuda/cuda_backend.h"
#include "core/process.h"
#include "kv/kv_cache.h"
#include "model/architecture.h"
#include "model/weights.h"

namespace fathom {

namespace {

// Floats of activation scratch one token of a forward pass needs: the widest of the buffers
// DenseScratch, MlaScratch and MoeScratch grow (dense_decoder.h, mla.h, moe.h), summed, plus the
// quantized copy of a matmul input. An estimate meant to be a little high, never far low.
int64_t scratch_floats_per_token(const ModelConfig& c) {
  const int64_t q = c.n_head * c.head_dim_k, kv = c.n_head_kv * (c.head_dim_k + c.head_dim_v), attn = c.n_head * c.head_dim_v;
  int64_t f = 3 * c.n_embd + q + kv + attn + 2 * c.n_ff;  // x, xn, proj; q, k, v, attn; gate, up
  if (c.kv_lora_rank > 0) {                              // MLA: q_a, q, kv_a, q_nope, q_abs, q_pe, head_in, head_out, lat, attn
    const int64_t r = c.kv_lora_rank, n_nope = std::max<int64_t>(0, c.head_dim_k - c.n_rot);
    f += c.q_lora_rank + q + r + c.n_rot + c.n_head * (std::max(n_nope, c.n_rot) + r + c.n_rot + std::max(r, c.n_rot) + r) + 2 * attn;
  }
  if (c.n_expert > 0) {  // router logits, acc; per routed pair xs, gate, up, out; shared experts' gate, up
    const int64_t shared = c.n_ff_exp * c.n_expert_shared;
    f += c.n_expert + c.n_embd + c.n_expert_used * (2 * c.n_embd + 2 * c.n_ff_exp) + 2 * shared;
  }
  return f + std::max({c.n_embd, c.n_ff, c.n_ff_exp, attn});
}

// Repacked copies the CPU backend makes at load (RepackCache): the repackable matmul weights,
// up to the budget it stops at.
int64_t weight_copy_bytes(const gguf::GgufFile& file, const ModelConfig& config, uint64_t available_bytes) {
  if (!cpu::repacking_enabled()) return 0;
  uint64_t bytes = 0;
  for (const TensorView& w : matmul_weight_views(file, config.n_layer)) bytes += cpu::repacked_bytes(w);
  if (available_bytes > 0) bytes = std::min<uint64_t>(bytes, cpu::repack_budget(available_bytes));
  return static_cast<int64_t>(std::min<uint64_t>(bytes, INT64_MAX));
}

}  // namespace

int64_t effective_context(const ModelConfig& config, int64_t n_ctx) {
  return n_ctx > 0 ? n_ctx : std::min<int64_t>(config.n_ctx_train, 4096);
}

Expected<MemoryNeed> memory_need(const gguf::GgufFile& file, const ModelConfig& config, const MemoryDemand& demand,
                                 uint64_t available_bytes) {
  if (demand.step_tokens <= 0 || demand.logit_rows < 0)
    return error(ErrorCode::kInvalidArgument, "the step must take at least one token");
  const int64_t n_ctx = effective_context(config, demand.n_ctx);
  MemoryNeed need;
  FATHOM_ASSIGN_OR_RETURN(need.kv_blocks, kv_pool_blocks(n_ctx, demand.block_size, demand.n_seq));
  KvCacheShape shape = with_types(kv_cache_shape(config, n_ctx), demand.kv_types);
  shape.block_size = demand.block_size;
  FATHOM_RETURN_IF_ERROR(check_kv_cache_types(shape));
  FATHOM_ASSIGN_OR_RETURN(need.kv_bytes, kv_pool_bytes(shape, need.kv_blocks));
  const int64_t floats_per_token = scratch_floats_per_token(config);
  int64_t activations = 0, logits = 0;
  if (__builtin_mul_overflow(demand.step_tokens, floats_per_token, &activations) ||
      __builtin_mul_overflow(demand.logit_rows, config.n_vocab + config.n_embd, &logits) ||
      __builtin_add_overflow(activations, logits, &need.scratch_bytes) ||
      __builtin_mul_overflow(need.scratch_bytes, static_cast<int64_t>(sizeof(float)), &need.scratch_bytes))
    return error(ErrorCode::kOutOfRange, strprintf("activations for a step of %lld tokens need more than 2^63 bytes",
                                                   static_cast<long long>(demand.step_tokens)));
  const bool on_cpu = demand.device.empty() || demand.device == "cpu";
  if (on_cpu) {  // the AMX prefill attention's packed keys and values (cpu/attention.h)
    const bool mla = config.kv_lora_rank > 0;
    const int64_t pack = cpu::tile_pack_bytes_max(demand.step_tokens, demand.n_seq, n_ctx, mla ? 1 : config.n_head_kv,
                                                  mla ? config.kv_lora_rank + config.n_rot : config.head_dim_k,
                                                  mla ? config.kv_lora_rank : config.head_dim_v);
    if (pack < 0 || __builtin_add_overflow(need.scratch_bytes, pack, &need.scratch_bytes))
      return error(ErrorCode::kOutOfRange, strprintf("attention scratch for a context of %lld tokens needs more than 2^63 bytes",
                                                     static_cast<long long>(n_ctx)));
  }
  if (demand.count_weight_copies && on_cpu) need.weight_copy_bytes = weight_copy_bytes(file, config, available_bytes);
  return need;
}

std::string describe_request(const MemoryWording& wording, int64_t n_ctx, int64_t n_seq) {
  if (!wording.request.empty()) return wording.request;
  std::string s = wording.ctx_flag + " " + std::to_string(n_ctx);
  if (n_seq > 1 && !wording.seq_flag.empty()) s += " x " + wording.seq_flag + " " + std::to_string(n_seq);
  return s;
}

Status check_memory(const MemoryNeed& need, uint64_t available_bytes, const ModelConfig& config, const MemoryDemand& demand,
                    const MemoryWording& wording) {
  const auto total = static_cast<uint64_t>(need.kv_bytes) + static_cast<uint64_t>(need.scratch_bytes) +
                     static_cast<uint64_t>(need.weight_copy_bytes);  // each < 2^63: no wrap
  if (total <= available_bytes) return check_pool_addressable(need.kv_blocks, demand.block_size);
  std::string plus = format_memory(need.scratch_bytes) + " scratch";
  if (need.weight_copy_bytes > 0) plus += " and " + format_memory(need.weight_copy_bytes) + " of repacked weights";
  return error(ErrorCode::kOutOfMemory,
               strprintf("the KV cache for %s needs %s (plus %s) but %s of memory is available; %s (the model was trained on "
                         "%lld tokens)",
                         describe_request(wording, effective_context(config, demand.n_ctx), demand.n_seq).c_str(),
                         format_memory(need.kv_bytes).c_str(), plus.c_str(),
                         format_memory(static_cast<int64_t>(std::min<uint64_t>(available_bytes, INT64_MAX))).c_str(),
                         wording.remedy.c_str(), static_cast<long long>(config.n_ctx_train)));
}

std::optional<std::string> context_warning(const ModelConfig& config, int64_t n_ctx, const MemoryWording& wording) {
  if (n_ctx <= config.n_ctx_train) return std::nullopt;
  return strprintf("%s is more than the %lld tokens the model was trained on (%s.context_length); text past %lld tokens "
                   "may degrade",
                   describe_request(wording, n_ctx, 1).c_str(), static_cast<long long>(config.n_ctx_train),
                   config.arch_name.c_str(), static_cast<long long>(config.n_ctx_train));
}

int64_t device_bytes(const Placement& placement, int64_t kv_bytes, int64_t n_layer) {
  const int64_t kv_per_layer = n_layer > 0 ? kv_bytes / n_layer : 0;
  return static_cast<int64_t>(placement.weight_bytes(Placed::kDevice)) + kv_per_layer * placement.layers_with_attention(Placed::kDevice);
}

namespace {

// The CUDA side of the check: nullopt when the placement fits, the device cannot tell, or the
// device is not CUDA (OpenCL reports no free memory).
std::optional<std::string> cuda_warning(const gguf::GgufFile& file, const ModelConfig& config, const MemoryDemand& demand,
                                        const MemoryNeed& need) {
  if (demand.device != "cuda" && demand.device.rfind("cuda:", 0) != 0) return std::nullopt;
  const Expected<Placement> placement = plan_placement(file, config, "cuda", demand.placement);
  if (!placement) return std::nullopt;  // loading reports the bad option
  const Expected<CudaMemoryInfo> device = cuda_memory_info(demand.device);
  if (!device) return std::nullopt;  // loading falls back to the CPU and says why
  const int64_t bytes = device_bytes(*placement, need.kv_bytes, config.n_layer);
  if (static_cast<uint64_t>(bytes) <= device->free_bytes) return std::nullopt;
  return strprintf("--device %s: the weights and KV cache placed there need %s but %s of %s's %s is free; what does not "
                   "fit runs on the CPU, much slower (lower -c or put fewer layers there with --gpu-layers)",
                   demand.device.c_str(), format_memory(bytes).c_str(),
                   format_memory(static_cast<int64_t>(std::min<uint64_t>(device->free_bytes, INT64_MAX))).c_str(),
                   device->name.c_str(), format_memory(static_cast<int64_t>(std::min<uint64_t>(device->total_bytes, INT64_MAX))).c_str());
}

}  // namespace

Status check_memory_for(const std::string& model_path, MemoryDemand demand, const MemoryWording& wording,
                        std::vector<std::string>* warnings) {
  auto file = gguf::GgufFile::open(model_path);
  if (!file) return Status::ok();
  auto config = ModelConfig::from_gguf(**file);
  if (!config) return Status::ok();
  const Expected<HostMemory> host = read_host_memory();
  const uint64_t available = host ? host->available_bytes : 0;
  FATHOM_ASSIGN_OR_RETURN(const MemoryNeed need, memory_need(**file, *config, demand, available));
  if (host) FATHOM_RETURN_IF_ERROR(check_memory(need, available, *config, demand, wording));
  if (!warnings) return Status::ok();
  if (auto w = context_warning(*config, effective_context(*config, demand.n_ctx), wording)) warnings->push_back(*w);
  if (auto w = cuda_warning(**file, *config, demand, need)) warnings->push_back(*w);
  return Status::ok();
}

std::string format_memory(int64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024.0 && unit < 6) v /= 1024.0, ++unit;
  return unit == 0 ? strprintf("%lld B", static_cast<long long>(bytes)) : strprintf("%.1f %s", v, kUnits[unit]);
}

}  // namespace fathom
