#include "kv/kv_cache.h"
#include "plan/planner.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>

namespace fathom::plan {

namespace {

// Reserved on a discrete GPU for the driver/runtime context and allocator slack.
constexpr double kDgpuReserveGiB = 0.5;
// Share of system RAM a CPU or unified-memory SoC can give the model (rest: OS and apps).
constexpr double kHostRamFraction = 0.9;
// Keys per attention tile; scratch assumes tiled (flash-style) attention, not a full score matrix.
constexpr int64_t kAttentionTile = 1024;

uint64_t tensor_bytes(DType t, const TensorShape& ts) {
  const DTypeTraits& tr = traits(t);
  const int64_t rows = ts.ne[1] * ts.ne[2] * ts.ne[3];
  const int64_t blocks_per_row = (ts.ne[0] + tr.block_size - 1) / tr.block_size;
  return static_cast<uint64_t>(blocks_per_row) * tr.type_size * static_cast<uint64_t>(rows);
}

bool is_quantized_dtype(DType t) { return traits(t).is_quantized; }

}  // namespace

std::string quant_name(const QuantScheme& q) {
  if (!q.ftype) return "file";
  std::string n = q.ftype->name;
  for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return n;
}

Expected<QuantScheme> parse_quant(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "file" || lower == "as-file") return QuantScheme{};
  if (std::optional<quant::FileType> f = quant::find_file_type(name); f && f->in_plan) return QuantScheme{f};
  std::string known;
  for (const QuantScheme& q : all_quants()) known += quant_name(q) + ", ";
  return error(ErrorCode::kInvalidArgument, "unknown quant '" + std::string(name) + "' (expected " + known + "or file)");
}

std::vector<QuantScheme> all_quants() {
  std::vector<QuantScheme> out;
  for (const quant::FileType& f : quant::file_types())
    if (f.in_plan) out.push_back({f});
  return out;
}

double bits_per_weight(DType t) {
  const DTypeTraits& tr = traits(t);
  return static_cast<double>(tr.type_size) * 8.0 / static_cast<double>(tr.block_size);
}

std::vector<DType> tensor_dtypes(const QuantScheme& q, const ModelDesc& model) {
  std::vector<quant::MixTensor> tensors;
  for (const TensorShape& t : model.tensors) tensors.push_back({t.name, t.ne, t.dtype});
  if (!q.ftype) {
    std::vector<DType> stored;
    for (const quant::MixTensor& t : tensors) stored.push_back(t.stored);
    return stored;
  }
  const ModelShape& s = model.shape;
  // llama.cpp's mix counts the MTP layers too (its n_layer_all).
  const quant::MixModel mix_model{s.arch, s.n_layer + s.n_nextn_layers, s.n_expert, s.n_head, s.n_head_kv, false};
  return quant::mix_types(*q.ftype, mix_model, tensors).types;
}

KvCacheShape plan_kv_shape(const ModelShape& s, const KvCacheTypes& types) {
  KvCacheShape kv;
  kv.n_layer = s.n_layer;
  kv.k_width = s.is_mla() ? s.kv_lora_rank + s.rope_dim : s.n_head_kv * s.head_dim;
  kv.v_width = s.is_mla() ? 0 : s.n_head_kv * s.head_dim;
  return with_types(kv, types);
}

uint64_t kv_bytes_per_token(const ModelShape& s, const KvCacheTypes& types) {
  return static_cast<uint64_t>(kv_bytes_per_token(plan_kv_shape(s, types)));
}

namespace {

// The pool the engine allocates for n_seq sequences of ctx tokens (KvCache::allocated_bytes());
// 0 for a non-positive request, the largest figure for one that overflows (it fits nowhere).
uint64_t kv_pool_total(const ModelShape& s, const PlanOptions& opts) {
  const KvCacheShape shape = plan_kv_shape(s, opts.kv_types);
  const Expected<int64_t> blocks = kv_pool_blocks(opts.ctx, shape.block_size, std::max<int64_t>(opts.concurrency, 1));
  if (!blocks) return blocks.status().code() == ErrorCode::kOutOfRange ? UINT64_MAX : 0;
  const Expected<int64_t> bytes = kv_pool_bytes(shape, *blocks);
  return bytes ? static_cast<uint64_t>(*bytes) : UINT64_MAX;
}

}  // namespace

ModelSizing size_model(const ModelDesc& model, const PlanOptions& opts) {
  const ModelShape& s = model.shape;
  ModelSizing z;
  const bool as_file = !opts.quant.ftype;
  z.quant = as_file && !model.file_type.empty() ? model.file_type : quant_name(opts.quant);
  z.layer_bytes.assign(static_cast<size_t>(std::max<int64_t>(s.n_layer, 0)), 0);
  z.layer_expert_bytes = z.layer_bytes;
  std::map<DType, TypeBytes> by_type;
  const double active_expert_share =
      s.is_moe() && s.n_expert > 0 ? static_cast<double>(s.n_expert_used) / static_cast<double>(s.n_expert) : 1.0;
  double active_params = 0;
  double decode_bytes = 0;
  const std::vector<DType> dtypes = tensor_dtypes(opts.quant, model);
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    const TensorShape& t = model.tensors[i];
    const DType dt = dtypes[i];
    const uint64_t bytes = as_file && t.file_bytes > 0 ? t.file_bytes : tensor_bytes(dt, t);
    TypeBytes& tb = by_type[dt];
    tb.dtype = dt;
    tb.n_params += t.n_elements();
    tb.bytes += bytes;
    z.n_params += t.n_elements();
    z.weight_bytes += bytes;
    const int layer = t.layer();
    if (layer >= 0 && layer < s.n_layer) z.layer_bytes[static_cast<size_t>(layer)] += bytes;
    if (t.name == "token_embd.weight") {
      z.embd_bytes += bytes;
      continue;  // a lookup: neither multiplied nor streamed per token
    }
    if (layer < 0) z.output_bytes += bytes;
    const double share = t.is_expert() ? active_expert_share : 1.0;
    if (t.is_expert()) {
      z.expert_bytes += bytes;
      if (layer >= 0 && layer < s.n_layer) z.layer_expert_bytes[static_cast<size_t>(layer)] += bytes;
    }
    active_params += share * static_cast<double>(t.n_elements());
    decode_bytes += share * static_cast<double>(bytes);
  }
  // A model whose logits reuse token_embd multiplies by it once per token.
  if (s.tied_output) {
    active_params += static_cast<double>(s.n_embd * s.n_vocab);
    decode_bytes += static_cast<double>(z.embd_bytes);
  }
  for (auto& [dt, tb] : by_type) z.by_type.push_back(tb);
  std::sort(z.by_type.begin(), z.by_type.end(), [](const TypeBytes& a, const TypeBytes& b) { return a.bytes > b.bytes; });
  z.n_params_active = static_cast<int64_t>(active_params);
  z.decode_read_bytes = static_cast<uint64_t>(decode_bytes);

  const int64_t n_seq = std::max<int64_t>(opts.concurrency, 1);
  z.kv_bytes_per_token = kv_bytes_per_token(s, opts.kv_types);
  z.kv_bytes_total = kv_pool_total(s, opts);
  // Scratch (f32): per prefill token ~8 hidden-size buffers (residual, norms, attention out),
  // 3 FFN-width buffers (gate, up, product) and the per-head queries/keys; plus an attention
  // score tile per head and one logits row per sequence. An estimate, not an allocator trace.
  const int64_t ffn_width = std::max(s.n_ff, s.n_ff_exp * (s.n_expert_used + s.n_expert_shared));
  const int64_t qk_dim = s.is_mla() ? s.nope_dim + s.rope_dim : s.head_dim;
  const int64_t per_token = 8 * s.n_embd + 3 * ffn_width + 2 * s.n_head * std::max<int64_t>(qk_dim, 1);
  const int64_t tile = std::min<int64_t>(std::max<int64_t>(opts.ctx, 1), kAttentionTile);
  z.scratch_bytes = static_cast<uint64_t>(4 * opts.ubatch * per_token + 4 * s.n_head * opts.ubatch * tile +
                                          4 * std::max(n_seq, opts.ubatch / 64) * s.n_vocab);
  z.total_bytes = z.weight_bytes + z.kv_bytes_total + z.scratch_bytes;
  return z;
}

const char* placement_mode_name(PlacementMode m) {
  switch (m) {
    case PlacementMode::kAllOnDevice: return "all-on-device";
    case PlacementMode::kCpuMoe: return "cpu-moe";
    case PlacementMode::kPartialLayers: return "partial-offload";
    case PlacementMode::kDoesNotFit: return "does-not-fit";
  }
  return "?";
}

namespace {

double ram_gib(const HardwareSpec& h, const PlanOptions& opts) { return opts.ram_gib > 0 ? opts.ram_gib : h.memory_gb; }

uint64_t usable_device_bytes(const HardwareSpec& d, const PlanOptions& opts) {
  double gib = 0;
  if (!d.shared_memory) gib = std::max(0.0, d.memory_gb - kDgpuReserveGiB);
  else if (d.kind == DeviceKind::kIgpu) gib = ram_gib(d, opts) * opts.igpu_memory_fraction;
  else gib = ram_gib(d, opts) * kHostRamFraction;
  return static_cast<uint64_t>(gib * kGiB);
}

std::string gib_str(uint64_t bytes) { return strprintf("%.1f GiB", static_cast<double>(bytes) / kGiB); }

}  // namespace

Placement place(const ModelDesc& model, const ModelSizing& z, const PlanOptions& opts, const HardwareSpec& device,
                const HardwareSpec& host) {
  const ModelShape& s = model.shape;
  Placement p;
  p.device_capacity = usable_device_bytes(device, opts);
  p.n_gpu_layers = s.n_layer;
  if (z.total_bytes <= p.device_capacity) {
    p.mode = PlacementMode::kAllOnDevice;
    p.device_bytes = z.total_bytes;
    p.advice = "everything fits in " + std::string(device.shared_memory ? "the memory the device can use" : "VRAM");
    return p;
  }
  if (device.shared_memory) {
    p.mode = PlacementMode::kDoesNotFit;
    p.advice = "needs " + gib_str(z.total_bytes) + " but " + device.name + " can use " + gib_str(p.device_capacity) +
               (device.kind == DeviceKind::kIgpu ? " (a share of system RAM; set --ram/--igpu-fraction)" : "") +
               "; pick a smaller quant, context or concurrency";
    return p;
  }
  p.host_capacity = static_cast<uint64_t>(ram_gib(host, opts) * kHostRamFraction * kGiB);
  // MoE: routed experts are most of the bytes but few are read per token, so they are the
  // cheapest to leave in host RAM; attention, shared experts and KV stay on the GPU.
  if (s.is_moe() && z.expert_bytes > 0) {
    const uint64_t on_gpu = z.total_bytes - z.expert_bytes;
    if (on_gpu <= p.device_capacity && z.expert_bytes <= p.host_capacity + (p.device_capacity - on_gpu)) {
      // Keep as many layers' experts on the GPU as the leftover VRAM allows.
      uint64_t room = p.device_capacity - on_gpu;
      uint64_t host_bytes = z.expert_bytes;
      int64_t moe_layers = 0;
      int64_t kept = 0;
      for (uint64_t e : z.layer_expert_bytes) {
        if (e == 0) continue;
        ++moe_layers;
        if (e <= room) room -= e, host_bytes -= e, ++kept;
      }
      if (host_bytes <= p.host_capacity) {
        p.mode = PlacementMode::kCpuMoe;
        p.n_cpu_moe = moe_layers - kept;
        p.host_bytes = host_bytes;
        p.device_bytes = z.total_bytes - host_bytes;
        p.advice = kept == 0 ? "--cpu-moe: routed experts (" + gib_str(host_bytes) + ") in host RAM, the rest on the GPU"
                             : strprintf("--n-cpu-moe %lld: experts of %lld of %lld MoE layers (%s) in host RAM",
                                         static_cast<long long>(p.n_cpu_moe), static_cast<long long>(p.n_cpu_moe),
                                         static_cast<long long>(moe_layers), gib_str(host_bytes).c_str());
        return p;
      }
    }
  }
  // Whole blocks on the GPU, the rest (and the embedding lookup) in host RAM.
  const uint64_t kv_per_layer = s.n_layer > 0 ? z.kv_bytes_total / static_cast<uint64_t>(s.n_layer) : 0;
  uint64_t used = z.scratch_bytes + z.output_bytes;
  int64_t n_gpu = 0;
  for (uint64_t lb : z.layer_bytes) {
    if (used + lb + kv_per_layer > p.device_capacity) break;
    used += lb + kv_per_layer;
    ++n_gpu;
  }
  p.n_gpu_layers = n_gpu;
  p.device_bytes = n_gpu > 0 ? used : 0;
  p.host_bytes = z.total_bytes - p.device_bytes;
  if (n_gpu > 0 && p.host_bytes <= p.host_capacity) {
    p.mode = PlacementMode::kPartialLayers;
    p.advice = strprintf("--gpu-layers %lld of %lld; %s of layers in host RAM", static_cast<long long>(n_gpu),
                         static_cast<long long>(s.n_layer), gib_str(p.host_bytes).c_str());
    return p;
  }
  p.mode = PlacementMode::kDoesNotFit;
  p.advice = "needs " + gib_str(z.total_bytes) + "; " + device.name + " offers " + gib_str(p.device_capacity) +
             " and host RAM " + gib_str(p.host_capacity) + " (set --ram); pick a smaller quant or context";
  return p;
}

SpeedBounds speed_bounds(const ModelDesc& model, const ModelSizing& z, const Placement& p, const PlanOptions& opts,
                         const HardwareSpec& device, const HardwareSpec& host) {
  const ModelShape& s = model.shape;
  SpeedBounds b;
  // Which fraction of the per-token weight traffic is served from host RAM.
  double host_share = 0;
  if (p.mode == PlacementMode::kCpuMoe && z.expert_bytes > 0) {
    const double expert_read = static_cast<double>(z.decode_read_bytes) -
                               (static_cast<double>(z.weight_bytes - z.expert_bytes - z.embd_bytes));
    host_share = std::max(0.0, expert_read) * static_cast<double>(p.host_bytes) /
                 static_cast<double>(z.expert_bytes) / static_cast<double>(std::max<uint64_t>(z.decode_read_bytes, 1));
  } else if (p.mode == PlacementMode::kPartialLayers && s.n_layer > 0) {
    host_share = 1.0 - static_cast<double>(p.n_gpu_layers) / static_cast<double>(s.n_layer);
  }
  const double dev_bw = device.bandwidth_gbs * 1e9;
  const double host_bw = (host.bandwidth_gbs > 0 ? host.bandwidth_gbs : device.bandwidth_gbs) * 1e9;
  // Seconds to stream `bytes` of weights split between device and host memory.
  auto stream_time = [&](double bytes) { return bytes * (1 - host_share) / dev_bw + bytes * host_share / host_bw; };
  const double kv_share_host = p.mode == PlacementMode::kPartialLayers ? host_share : 0.0;
  auto kv_time = [&](double bytes) { return bytes * (1 - kv_share_host) / dev_bw + bytes * kv_share_host / host_bw; };

  const double w = static_cast<double>(z.decode_read_bytes);
  const double kv_tok = static_cast<double>(z.kv_bytes_per_token);
  b.decode_tps_start = 1.0 / stream_time(w);
  b.decode_tps_full = 1.0 / (stream_time(w) + kv_time(kv_tok * static_cast<double>(opts.ctx)));

  // Batched decode: one pass over the weights serves every sequence, but in a MoE the union
  // of the experts C tokens pick grows: expected distinct = n (1 - (1 - k/n)^C).
  const int64_t n_seq = std::max<int64_t>(opts.concurrency, 1);
  double batch_weights = w;
  if (s.is_moe() && s.n_expert > 0 && z.expert_bytes > 0) {
    const double k_over_n = static_cast<double>(s.n_expert_used) / static_cast<double>(s.n_expert);
    const double touched = 1.0 - std::pow(1.0 - k_over_n, static_cast<double>(n_seq));
    batch_weights = w - k_over_n * static_cast<double>(z.expert_bytes) + touched * static_cast<double>(z.expert_bytes);
  }
  const double batch_kv = kv_tok * static_cast<double>(opts.ctx) / 2.0 * static_cast<double>(n_seq);
  const double bandwidth_bound = static_cast<double>(n_seq) / (stream_time(batch_weights) + kv_time(batch_kv));

  // Quantized weights run through integer dot products (DP4a/VNNI/tensor cores on int8),
  // float weights through the FP16 path; the kind holding most of the bytes decides (a mix such
  // as llama.cpp's dynamic quants spreads them over many block types, none a majority alone).
  double quantized_bytes = 0;
  for (const TypeBytes& tb : z.by_type)
    if (is_quantized_dtype(tb.dtype)) quantized_bytes += static_cast<double>(tb.bytes);
  const bool quantized = quantized_bytes * 2 > static_cast<double>(z.weight_bytes);
  b.peak_tops_used = quantized && device.int8_tops > 0 ? device.int8_tops : device.fp16_tflops;
  const double flops_per_token = 2.0 * static_cast<double>(std::max<int64_t>(z.n_params_active, 1));
  b.prefill_tps = b.peak_tops_used * 1e12 / flops_per_token;
  b.decode_tps_batch = std::min(bandwidth_bound, b.prefill_tps);
  b.host_share = host_share;
  return b;
}

// The share of device memory a recommended quant leaves free: fragmentation, the CUDA context,
// other processes and longer contexts than planned for all need some.
constexpr double kRecommendedHeadroom = 0.10;

Plan make_plan(const ModelDesc& model, const PlanOptions& opts, const HardwareSpec& device, const HardwareSpec& host) {
  Plan plan;
  plan.device = device;
  plan.host = host;
  plan.options = opts;
  plan.sizing = size_model(model, opts);
  plan.placement = place(model, plan.sizing, opts, device, host);
  // A placement that does not fit runs at no speed at all: no bound is printed for it.
  if (plan.placement.mode != PlacementMode::kDoesNotFit)
    plan.speed = speed_bounds(model, plan.sizing, plan.placement, opts, device, host);
  for (const QuantScheme& q : all_quants()) {
    PlanOptions o = opts;
    o.quant = q;
    QuantOption qo;
    qo.sizing = size_model(model, o);
    qo.placement = place(model, qo.sizing, o, device, host);
    if (qo.placement.mode != PlacementMode::kDoesNotFit) qo.speed = speed_bounds(model, qo.sizing, qo.placement, o, device, host);
    plan.options_by_quant.push_back(std::move(qo));
  }
  std::stable_sort(plan.options_by_quant.begin(), plan.options_by_quant.end(),
                   [](const QuantOption& a, const QuantOption& b) { return a.sizing.weight_bytes > b.sizing.weight_bytes; });
  const QuantOption* offloaded = nullptr;
  const QuantOption* largest_fit = nullptr;   // largest that fits entirely
  const QuantOption* roomy_fit = nullptr;     // largest that fits with the headroom
  bool q8_fits = false;
  for (const QuantOption& qo : plan.options_by_quant)
    q8_fits = q8_fits || (qo.sizing.quant == "q8_0" && qo.placement.mode == PlacementMode::kAllOnDevice);
  for (const QuantOption& qo : plan.options_by_quant) {
    const bool sixteen_bit = qo.sizing.quant == "f16" || qo.sizing.quant == "bf16";
    if (qo.placement.mode == PlacementMode::kAllOnDevice && !(sixteen_bit && q8_fits)) {
      if (!largest_fit) largest_fit = &qo;
      const double used = static_cast<double>(qo.placement.device_bytes) /
                          static_cast<double>(std::max<uint64_t>(qo.placement.device_capacity, 1));
      if (!roomy_fit && used <= 1.0 - kRecommendedHeadroom) roomy_fit = &qo;
    }
    if (!offloaded && qo.placement.mode != PlacementMode::kDoesNotFit && qo.placement.mode != PlacementMode::kAllOnDevice)
      offloaded = &qo;
  }
  const std::string ctx = strprintf("ctx %lld x %lld", static_cast<long long>(opts.ctx),
                                    static_cast<long long>(std::max<int64_t>(opts.concurrency, 1)));
  if (const QuantOption* pick = roomy_fit ? roomy_fit : largest_fit) {
    plan.recommended_quant = pick->sizing.quant;
    const double used = static_cast<double>(pick->placement.device_bytes) /
                        static_cast<double>(std::max<uint64_t>(pick->placement.device_capacity, 1));
    plan.recommendation = strprintf("%s fits %s entirely (%s): %.0f%% of its memory, decode <= %.1f tok/s",
                                    pick->sizing.quant.c_str(), device.name.c_str(), ctx.c_str(), used * 100.0,
                                    pick->speed.decode_tps_start);
    if (pick != largest_fit)
      plan.recommendation += strprintf("; %s fits too but leaves less than %.0f%% free",
                                       largest_fit->sizing.quant.c_str(), kRecommendedHeadroom * 100.0);
    if (q8_fits && pick->sizing.quant == "q8_0")
      plan.recommendation += "; 16-bit weights would read twice the bytes per token for no measurable quality gain";
  } else if (offloaded) {
    plan.recommended_quant = offloaded->sizing.quant;
    plan.recommendation = "no quant fits " + device.name + " entirely at " + ctx + "; " + offloaded->sizing.quant +
                          " runs with offload: " + offloaded->placement.advice;
  } else {
    plan.recommendation = "no quant fits " + device.name + " (with host RAM) at " + ctx +
                          "; reduce --ctx/--concurrency or add memory";
  }
  return plan;
}

RoiResult compute_roi(const RoiInputs& in) {
  RoiResult r;
  const double hours_per_month = in.hours_per_day * kDaysPerMonth;
  r.cloud_usd_per_month = in.cloud_usd_per_hour * hours_per_month;
  r.power_usd_per_month = in.power_w / 1000.0 * hours_per_month * in.usd_per_kwh;
  r.savings_usd_per_month = r.cloud_usd_per_month - r.power_usd_per_month;
  r.break_even_months =
      r.savings_usd_per_month > 0 ? in.hw_price_usd / r.savings_usd_per_month : std::numeric_limits<double>::infinity();
  r.formula = strprintf(
      "break-even months = hw_price / (cloud $/h x h/day x %.2f d/month - W/1000 x h/day x %.2f d/month x $/kWh)\n"
      "                  = %.0f / (%.2f x %.1f x %.2f - %.0f/1000 x %.1f x %.2f x %.3f)\n"
      "                  = %.0f / (%.2f - %.2f) = %s",
      kDaysPerMonth, kDaysPerMonth, in.hw_price_usd, in.cloud_usd_per_hour, in.hours_per_day, kDaysPerMonth, in.power_w,
      in.hours_per_day, kDaysPerMonth, in.usd_per_kwh, in.hw_price_usd, r.cloud_usd_per_month, r.power_usd_per_month,
      std::isinf(r.break_even_months) ? "never (power costs at least the cloud rental)"
                                      : strprintf("%.1f months", r.break_even_months).c_str());
  return r;
}

}  // namespace fathom::plan
