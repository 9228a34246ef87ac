// Sizing and speed bounds for `fathom plan`: how many bytes a model takes in a given
// quantization (per dtype, exact from the tensor shapes), how much KV cache a context and
// concurrency need, whether it all fits a device (and what to offload to host RAM if not), and
// roofline upper bounds for decode (bandwidth) and prefill (compute). Pure arithmetic on
// ModelDesc and HardwareSpec; nothing here touches a real device.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "kv/kv_cache.h"
#include "plan/hardware.h"
#include "plan/model_shape.h"
#include "quant/ftype.h"

namespace fathom::plan {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// A weights format: one of llama.cpp's file types with its per-tensor mix (quant/ftype.h, the
// table `fathom quantize` writes), or the types stored in the GGUF.
struct QuantScheme {
  std::optional<quant::FileType> ftype;  // nullopt: as stored in the file
};
std::string quant_name(const QuantScheme& q);      // "q4_k_m", ..., "file"
Expected<QuantScheme> parse_quant(std::string_view name);
std::vector<QuantScheme> all_quants();             // the file types marked in_plan

// Bits per weight of a block format: bytes per block x 8 / values per block.
double bits_per_weight(DType t);

// The dtype each of model.tensors gets under a scheme (llama.cpp's mix for that file type, the
// same quant::mix_types `fathom quantize` applies, without an imatrix).
std::vector<DType> tensor_dtypes(const QuantScheme& q, const ModelDesc& model);

struct PlanOptions {
  QuantScheme quant{quant::find_file_type("Q4_K_M")};  // weights format
  int64_t ctx = 4096;                        // context length per sequence, tokens
  int64_t concurrency = 1;                   // sequences resident at once
  KvCacheTypes kv_types{};                   // KV cache element types (K, V); f16 as the engine's default
  int64_t ubatch = 512;                      // tokens per forward pass in prefill (scratch sizing)
  double ram_gib = 0;                        // system RAM override (0: the table's figure)
  double igpu_memory_fraction = 0.5;         // share of system RAM an iGPU may map
};

struct TypeBytes {
  DType dtype = DType::F32;  // storage format
  int64_t n_params = 0;      // weights stored in it
  uint64_t bytes = 0;        // their bytes
};

struct ModelSizing {
  std::string quant;                  // scheme name
  std::vector<TypeBytes> by_type;     // weights per dtype, largest first
  int64_t n_params = 0;               // all weights
  int64_t n_params_active = 0;        // weights multiplied per token (no embedding lookup; MoE: k of n experts)
  uint64_t weight_bytes = 0;          // all weights
  uint64_t expert_bytes = 0;          // routed expert stacks (--cpu-moe candidates)
  uint64_t embd_bytes = 0;            // token_embd (a lookup: one row read per token)
  uint64_t output_bytes = 0;          // output head + final norm
  std::vector<uint64_t> layer_bytes;  // [n_layer] weights per block, experts included
  std::vector<uint64_t> layer_expert_bytes;  // [n_layer] routed-expert part of layer_bytes
  uint64_t decode_read_bytes = 0;     // weight bytes one decode token reads (MoE: active experts only)
  uint64_t kv_bytes_per_token = 0;    // KV cache per token, all layers
  uint64_t kv_bytes_total = 0;        // the engine's KV pool for ctx x concurrency: whole blocks of
                                      // 16 tokens (its default) per sequence (kv_pool_bytes)
  uint64_t scratch_bytes = 0;         // activations, logits and attention tiles (estimate)
  uint64_t total_bytes = 0;           // weights + KV + scratch
};

// The KV cache the engine builds for this shape: deepseek2 (MLA) caches the latent,
// (kv_lora_rank + rope dims) per layer; other architectures K and V rows of n_head_kv x head_dim.
KvCacheShape plan_kv_shape(const ModelShape& shape, const KvCacheTypes& types);
// KV bytes per token: kv_bytes_per_token of plan_kv_shape, the engine's own figure.
uint64_t kv_bytes_per_token(const ModelShape& shape, const KvCacheTypes& types);
ModelSizing size_model(const ModelDesc& model, const PlanOptions& opts);

enum class PlacementMode { kAllOnDevice, kCpuMoe, kPartialLayers, kDoesNotFit };
const char* placement_mode_name(PlacementMode m);

struct Placement {
  PlacementMode mode = PlacementMode::kDoesNotFit;
  uint64_t device_capacity = 0;  // usable device bytes (VRAM less reserve, or share of RAM)
  uint64_t host_capacity = 0;    // usable host RAM bytes for offloaded weights (dGPU only)
  uint64_t device_bytes = 0;     // bytes placed on the device
  uint64_t host_bytes = 0;       // bytes placed in host RAM
  int64_t n_gpu_layers = 0;      // blocks on the device (kPartialLayers; n_layer otherwise)
  int64_t n_cpu_moe = 0;         // MoE blocks whose experts stay in host RAM (kCpuMoe)
  std::string advice;            // the flags to use, or why it does not fit
};

Placement place(const ModelDesc& model, const ModelSizing& sizing, const PlanOptions& opts, const HardwareSpec& device,
                const HardwareSpec& host);

struct SpeedBounds {
  double decode_tps_start = 0;   // one sequence, empty context, tokens/s
  double decode_tps_full = 0;    // one sequence at the full context
  double decode_tps_batch = 0;   // all `concurrency` sequences together, each half-way through ctx
  double prefill_tps = 0;        // compute bound: peak ops / (2 x active params)
  double peak_tops_used = 0;     // the peak that bounds prefill (INT8 for quantized weights, FP16 otherwise)
  double host_share = 0;         // fraction of the per-token weight bytes read from host RAM (offload)
};
SpeedBounds speed_bounds(const ModelDesc& model, const ModelSizing& sizing, const Placement& placement,
                         const PlanOptions& opts, const HardwareSpec& device, const HardwareSpec& host);

struct QuantOption {
  ModelSizing sizing;      // sizes in this scheme
  Placement placement;     // where it goes on the device
  SpeedBounds speed;       // its bounds there (all zero when it does not fit)
};

struct Plan {
  HardwareSpec device;                 // the target
  HardwareSpec host;                   // host RAM/CPU used for offload (dGPU targets)
  PlanOptions options;                 // as requested
  ModelSizing sizing;                  // requested quant
  Placement placement;                 // requested quant on the device
  SpeedBounds speed;                   // requested quant; all zero when it does not fit
  std::vector<QuantOption> options_by_quant;  // every scheme, largest first
  // Of the quants that fit entirely: not a 16-bit one when q8_0 fits (the same quality within
  // noise at about half the bytes per token, so twice the decode bound), and the largest that
  // leaves kRecommendedHeadroom of the device free when one does, else the largest that fits.
  // Else the largest that runs with offload; "" if none runs.
  std::string recommended_quant;
  std::string recommendation;          // one or two sentences
};

Plan make_plan(const ModelDesc& model, const PlanOptions& opts, const HardwareSpec& device, const HardwareSpec& host);

// Break-even of buying hardware instead of renting cloud time for the same hours.
struct RoiInputs {
  double cloud_usd_per_hour = 0;  // rental price of the comparable cloud instance
  double hw_price_usd = 0;        // purchase price
  double power_w = 0;             // draw while in use
  double usd_per_kwh = 0.15;      // electricity price
  double hours_per_day = 24;      // utilisation
};
struct RoiResult {
  double cloud_usd_per_month = 0;  // cloud_usd_per_hour x hours_per_day x days/month
  double power_usd_per_month = 0;  // power_w / 1000 x hours_per_day x days/month x usd_per_kwh
  double savings_usd_per_month = 0;
  double break_even_months = 0;    // hw_price / savings; infinity when savings <= 0
  std::string formula;             // the formula with the numbers filled in
};
constexpr double kDaysPerMonth = 365.25 / 12.0;
RoiResult compute_roi(const RoiInputs& in);

}  // namespace fathom::plan
