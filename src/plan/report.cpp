#include "plan/report.h"

#include <cmath>
#include <sstream>

namespace fathom::plan {

namespace {

std::string params_str(int64_t n) { return strprintf("%.1fB", static_cast<double>(n) / 1e9); }

std::string tps_str(double v) {
  if (!std::isfinite(v) || v <= 0) return "n/a";
  return v >= 100 ? strprintf("%.0f", v) : strprintf("%.1f", v);
}

// Bytes per value of a type: "2 B", or "34/32 B" for a block format.
std::string element_bytes(DType t) {
  const DTypeTraits& tr = traits(t);
  return tr.block_size == 1 ? strprintf("%s %zu B", tr.name, tr.type_size)
                            : strprintf("%s %zu/%lld B", tr.name, tr.type_size, static_cast<long long>(tr.block_size));
}

std::string kv_formula(const ModelShape& s, const KvCacheTypes& types) {
  if (s.is_mla())
    return strprintf("%lld layers x (kv_lora %lld + rope %lld) x %s, MLA latent", static_cast<long long>(s.n_layer),
                     static_cast<long long>(s.kv_lora_rank), static_cast<long long>(s.rope_dim), element_bytes(types.k).c_str());
  return strprintf("%lld layers x %lld kv heads x %lld x (K %s + V %s)", static_cast<long long>(s.n_layer),
                   static_cast<long long>(s.n_head_kv), static_cast<long long>(s.head_dim), element_bytes(types.k).c_str(),
                   element_bytes(types.v).c_str());
}

std::string device_line(const HardwareSpec& d) {
  return strprintf("%s (%s, %.0f GiB%s, %.0f GB/s, %.1f FP16 TFLOPS, %.1f INT8 TOPS)", d.description.c_str(),
                   device_kind_name(d.kind), d.memory_gb, d.shared_memory ? " shared" : "", d.bandwidth_gbs,
                   d.fp16_tflops, d.int8_tops);
}

}  // namespace

std::string plan_to_text(const ModelDesc& model, const Plan& p) {
  const ModelShape& s = model.shape;
  const ModelSizing& z = p.sizing;
  std::ostringstream o;
  o << "model     " << s.name << " (" << s.arch << ", " << params_str(z.n_params) << " params, "
    << params_str(z.n_params_active) << " active per token" << (model.from_file ? ", from file" : ", preset") << ")\n";
  o << "quant     " << z.quant << "\n";
  o << strprintf("weights   %s (%.1f GB)\n", format_bytes(z.weight_bytes).c_str(), static_cast<double>(z.weight_bytes) / 1e9);
  for (const TypeBytes& tb : z.by_type)
    o << strprintf("  %-6s  %8s params  %10s  (%.2f bits/weight)\n", dtype_name(tb.dtype), params_str(tb.n_params).c_str(),
                   format_bytes(tb.bytes).c_str(), bits_per_weight(tb.dtype));
  if (z.expert_bytes > 0)
    o << strprintf("  routed experts %s of it; %lld of %lld read per token\n", format_bytes(z.expert_bytes).c_str(),
                   static_cast<long long>(s.n_expert_used), static_cast<long long>(s.n_expert));
  o << strprintf("KV cache  %s/token (%s)\n          x ctx %lld x %lld sequences = %s\n",
                 format_bytes(z.kv_bytes_per_token).c_str(), kv_formula(s, p.options.kv_types).c_str(),
                 static_cast<long long>(p.options.ctx), static_cast<long long>(p.options.concurrency),
                 format_bytes(z.kv_bytes_total).c_str());
  o << "scratch   " << format_bytes(z.scratch_bytes) << " (activations, logits, attention tiles; estimate)\n";
  o << "total     " << format_bytes(z.total_bytes) << "\n\n";

  o << "device    " << p.device.name << ": " << device_line(p.device) << "\n";
  const Placement& pl = p.placement;
  o << "fits?     " << (pl.mode == PlacementMode::kAllOnDevice ? "yes" : pl.mode == PlacementMode::kDoesNotFit ? "no" : "with offload")
    << " [" << placement_mode_name(pl.mode) << "]: " << pl.advice << "\n";
  o << strprintf("          device %s used of %s usable", format_bytes(pl.device_bytes).c_str(),
                 format_bytes(pl.device_capacity).c_str());
  if (pl.host_bytes > 0 || pl.host_capacity > 0)
    o << strprintf("; host %s of %s (%s)", format_bytes(pl.host_bytes).c_str(), format_bytes(pl.host_capacity).c_str(),
                   p.host.name.c_str());
  o << "\n";
  const SpeedBounds& b = p.speed;
  if (pl.mode == PlacementMode::kDoesNotFit) {
    o << "speed     none: it does not fit, so it does not run (see the quants below)\n\n";
  } else {
    const double read_gb = static_cast<double>(z.decode_read_bytes) / 1e9;
    const double kv_gb = static_cast<double>(z.kv_bytes_per_token) * static_cast<double>(p.options.ctx) / 1e9;
    o << strprintf("decode    <= %s tok/s (empty context) = %.0f GB/s / %.2f GB read per token (%s)\n",
                   tps_str(b.decode_tps_start).c_str(), p.device.bandwidth_gbs, read_gb,
                   s.is_moe() ? "dense parts + active experts" : "all weights but the embedding table");
    o << strprintf("          <= %s tok/s at %lld tokens of context = %.0f GB/s / (%.2f GB + %.2f GB of KV cache)\n",
                   tps_str(b.decode_tps_full).c_str(), static_cast<long long>(p.options.ctx), p.device.bandwidth_gbs,
                   read_gb, kv_gb);
    if (b.host_share > 0)
      o << strprintf("          %.0f%% of those bytes stream from the host at %.0f GB/s, the rest at %.0f GB/s\n",
                     b.host_share * 100.0, p.host.bandwidth_gbs, p.device.bandwidth_gbs);
    if (p.options.concurrency > 1)
      o << strprintf("          %lld sequences together: <= %s tok/s in total\n", static_cast<long long>(p.options.concurrency),
                     tps_str(b.decode_tps_batch).c_str());
    const bool int8 = b.peak_tops_used == p.device.int8_tops;
    const char* compute = p.device.compute_measured ? (int8 ? "TOPS (q8_0 matmul measured here)" : "TFLOPS (f16 matmul measured here)")
                                                    : (int8 ? "INT8 TOPS" : "FP16 TFLOPS");
    o << strprintf("prefill   <= %s tok/s = %.2f %s / (2 x %s active params)\n", tps_str(b.prefill_tps).c_str(),
                   b.peak_tops_used, compute, params_str(z.n_params_active).c_str());
    o << (p.device.compute_measured
              ? "          (bounds: bandwidth and matmul speed measured here; attention and other ops come on top)\n\n"
              : "          (upper bounds: peak bandwidth and compute; real engines reach 50-80% of them)\n\n");
  }

  o << strprintf("quants at ctx %lld x %lld on %s:\n", static_cast<long long>(p.options.ctx),
                 static_cast<long long>(p.options.concurrency), p.device.name.c_str());
  o << strprintf("  %-8s %11s %11s %13s  %s\n", "quant", "weights", "total", "decode tok/s", "placement");
  for (const QuantOption& q : p.options_by_quant)
    o << strprintf("  %-8s %11s %11s %13s  %s\n", q.sizing.quant.c_str(), format_bytes(q.sizing.weight_bytes).c_str(),
                   format_bytes(q.sizing.total_bytes).c_str(),
                   q.placement.mode == PlacementMode::kDoesNotFit ? "-" : ("<= " + tps_str(q.speed.decode_tps_start)).c_str(),
                   placement_mode_name(q.placement.mode));
  o << "\nrecommendation: " << p.recommendation << "\n";
  return o.str();
}

nlohmann::json hardware_to_json(const HardwareSpec& h) {
  return {{"name", h.name},           {"description", h.description}, {"kind", device_kind_name(h.kind)},
          {"memory_gb", h.memory_gb}, {"bandwidth_gbs", h.bandwidth_gbs}, {"fp16_tflops", h.fp16_tflops},
          {"int8_tops", h.int8_tops}, {"tdp_w", h.tdp_w},             {"shared_memory", h.shared_memory},
          {"price_usd", h.price_usd}, {"source", h.source}};
}

nlohmann::json plan_to_json(const ModelDesc& model, const Plan& p) {
  const ModelShape& s = model.shape;
  const ModelSizing& z = p.sizing;
  nlohmann::json by_type = nlohmann::json::array();
  for (const TypeBytes& tb : z.by_type)
    by_type.push_back({{"dtype", dtype_name(tb.dtype)}, {"params", tb.n_params}, {"bytes", tb.bytes},
                       {"bits_per_weight", bits_per_weight(tb.dtype)}});
  nlohmann::json quants = nlohmann::json::array();
  for (const QuantOption& q : p.options_by_quant)
    quants.push_back({{"quant", q.sizing.quant}, {"weight_bytes", q.sizing.weight_bytes}, {"total_bytes", q.sizing.total_bytes},
                      {"placement", placement_mode_name(q.placement.mode)}, {"advice", q.placement.advice},
                      {"decode_tps_empty_context", q.placement.mode == PlacementMode::kDoesNotFit
                                                       ? nlohmann::json(nullptr)
                                                       : nlohmann::json(q.speed.decode_tps_start)}});
  return {
      {"model", {{"name", s.name}, {"arch", s.arch}, {"from_file", model.from_file}, {"params", z.n_params},
                 {"active_params", z.n_params_active}, {"n_layer", s.n_layer}, {"n_embd", s.n_embd}, {"n_expert", s.n_expert},
                 {"n_expert_used", s.n_expert_used}, {"kv_lora_rank", s.kv_lora_rank}}},
      {"request", {{"quant", z.quant}, {"ctx", p.options.ctx}, {"concurrency", p.options.concurrency},
                   {"cache_type_k", dtype_name(p.options.kv_types.k)}, {"cache_type_v", dtype_name(p.options.kv_types.v)}}},
      {"memory", {{"unit", "bytes"}, {"weights", z.weight_bytes}, {"weights_by_type", by_type},
                  {"expert_bytes", z.expert_bytes}, {"kv_bytes_per_token", z.kv_bytes_per_token},
                  {"kv_bytes_total", z.kv_bytes_total}, {"scratch_bytes", z.scratch_bytes}, {"total", z.total_bytes}}},
      {"device", hardware_to_json(p.device)},
      {"host", hardware_to_json(p.host)},
      {"placement", {{"mode", placement_mode_name(p.placement.mode)}, {"advice", p.placement.advice},
                     {"device_capacity", p.placement.device_capacity}, {"device_bytes", p.placement.device_bytes},
                     {"host_capacity", p.placement.host_capacity}, {"host_bytes", p.placement.host_bytes},
                     {"n_gpu_layers", p.placement.n_gpu_layers}, {"n_cpu_moe", p.placement.n_cpu_moe}}},
      {"speed_upper_bounds",
       p.placement.mode == PlacementMode::kDoesNotFit
           ? nlohmann::json(nullptr)
           : nlohmann::json{{"decode_tps_empty_context", p.speed.decode_tps_start},
                            {"decode_tps_full_context", p.speed.decode_tps_full},
                            {"decode_tps_all_sequences", p.speed.decode_tps_batch},
                            {"decode_bytes_per_token", z.decode_read_bytes},
                            {"host_share", p.speed.host_share},
                            {"prefill_tps", p.speed.prefill_tps}, {"prefill_peak_tops", p.speed.peak_tops_used},
                            {"prefill_compute_measured", p.device.compute_measured}}},
      {"quants", quants},
      {"recommended_quant", p.recommended_quant},
      {"recommendation", p.recommendation},
  };
}

std::string roi_to_text(const RoiInputs& in, const RoiResult& r) {
  std::ostringstream o;
  o << strprintf("ROI       cloud $%.2f/h vs buying for $%.0f, %.0f W at $%.3f/kWh, %.1f h/day\n", in.cloud_usd_per_hour,
                 in.hw_price_usd, in.power_w, in.usd_per_kwh, in.hours_per_day);
  o << strprintf("          cloud $%.0f/month, power $%.0f/month, saving $%.0f/month\n", r.cloud_usd_per_month,
                 r.power_usd_per_month, r.savings_usd_per_month);
  o << r.formula << "\n";
  return o.str();
}

nlohmann::json roi_to_json(const RoiInputs& in, const RoiResult& r) {
  nlohmann::json j = {{"cloud_usd_per_hour", in.cloud_usd_per_hour}, {"hw_price_usd", in.hw_price_usd},
                      {"power_w", in.power_w}, {"usd_per_kwh", in.usd_per_kwh}, {"hours_per_day", in.hours_per_day},
                      {"cloud_usd_per_month", r.cloud_usd_per_month}, {"power_usd_per_month", r.power_usd_per_month},
                      {"savings_usd_per_month", r.savings_usd_per_month}, {"formula", r.formula}};
  j["break_even_months"] = std::isinf(r.break_even_months) ? nlohmann::json(nullptr) : nlohmann::json(r.break_even_months);
  return j;
}

namespace {

nlohmann::json probe_to_json(const ApiProbe& p) {
  nlohmann::json devs = nlohmann::json::array();
  for (const GpuDevice& g : p.devices)
    devs.push_back({{"platform", g.platform}, {"name", g.name}, {"type", g.type}, {"memory_bytes", g.memory_bytes},
                    {"compute_units", g.compute_units}, {"fp16", g.fp16}, {"int8_dot", g.int8_dot}, {"subgroups", g.subgroups}, {"driver", g.driver},
                    {"host_unified", g.host_unified},
                    {"compute_capability", strprintf("%d.%d", g.cc_major, g.cc_minor)},
                    {"bandwidth_gbs", g.bandwidth_gbs}});
  return {{"available", p.available}, {"reason", p.reason}, {"devices", devs}};
}

void probe_to_text(std::ostringstream& o, const char* title, const ApiProbe& p) {
  if (!p.available) {
    o << title << "not available: " << p.reason << "\n";
    return;
  }
  if (p.devices.empty()) o << title << "no devices" << (p.reason.empty() ? "" : " (" + p.reason + ")") << "\n";
  for (size_t i = 0; i < p.devices.size(); ++i) {
    const GpuDevice& g = p.devices[i];
    o << (i == 0 ? title : std::string(10, ' '))
      << strprintf("[%zu] %s — %s, %s, %d %s", i, g.name.c_str(), g.platform.c_str(), format_bytes(g.memory_bytes).c_str(),
                   g.compute_units, p.api == "cuda" ? "SMs" : "compute units");
    if (p.api == "opencl")  // every capability either way: what is missing matters as much on an iGPU
      o << strprintf(", fp16 %s, int8 dot %s, subgroups %s, %s", g.fp16 ? "yes" : "no", g.int8_dot ? "yes" : "no",
                     g.subgroups ? "yes" : "no",
                     g.host_unified ? "memory shared with the host (weights used in place)" : "own memory (weights copied)")
        << (g.driver.empty() ? "" : ", driver " + g.driver);
    else
      o << (g.fp16 ? ", fp16" : "") << (g.int8_dot ? ", int8 dot" : "") << (g.host_unified ? ", unified host memory" : "");
    if (p.api == "cuda") o << strprintf(", cc %d.%d, %.0f GB/s", g.cc_major, g.cc_minor, g.bandwidth_gbs);
    o << "\n";
  }
}

}  // namespace

std::string devices_to_text(const DeviceReport& r) {
  std::ostringstream o;
  o << "cpu       " << r.cpu.model_name << " (" << r.cpu.vendor << ")\n";
  o << strprintf("cores     %d physical, %d logical\n", r.cpu.physical_cores, r.cpu.logical_cores);
  o << "isa       " << isa_string(r.cpu.isa) << "\n";
  o << "kernels   " << r.cpu_kernels << (r.cpu_kernels_why.empty() ? "" : " (" + r.cpu_kernels_why + ")") << "\n";
  o << strprintf("memory    %s total, %s available, %d NUMA node%s\n", format_bytes(r.memory.total_bytes).c_str(),
                 format_bytes(r.memory.available_bytes).c_str(), r.memory.numa_nodes, r.memory.numa_nodes == 1 ? "" : "s");
  if (r.measured_bandwidth_gbs > 0) {
    o << strprintf("bandwidth %.1f GB/s measured (multi-threaded read of 256 MiB)\n", r.measured_bandwidth_gbs);
    o << strprintf("matmul    %.2f TOPS with q8_0 weights, %.2f TFLOPS with f16, measured (128 tokens x 2048 x 1024)\n",
                   r.measured_q8_0_tops, r.measured_f16_tops);
  } else {
    o << "bandwidth not measured (--no-bench)\n";
  }
  probe_to_text(o, "opencl    ", r.opencl);
  probe_to_text(o, "cuda      ", r.cuda);
  o << "backend   " << r.backend << ": " << r.backend_reason << "\n";
  for (const std::string& line : r.init_log) o << "          " << line << "\n";
  return o.str();
}

nlohmann::json devices_to_json(const DeviceReport& r) {
  const CpuFeatures& f = r.cpu.isa;
  return {
      {"cpu", {{"vendor", r.cpu.vendor}, {"model", r.cpu.model_name}, {"physical_cores", r.cpu.physical_cores},
               {"logical_cores", r.cpu.logical_cores},
               {"isa", {{"avx", f.avx}, {"avx2", f.avx2}, {"fma", f.fma}, {"f16c", f.f16c}, {"avx512f", f.avx512f},
                        {"avx512bw", f.avx512bw}, {"avx512vl", f.avx512vl}, {"avx512_vnni", f.avx512_vnni},
                        {"avx_vnni", f.avx_vnni}, {"avx512_bf16", f.avx512_bf16}, {"amx_tile", f.amx_tile},
                        {"amx_int8", f.amx_int8}, {"amx_bf16", f.amx_bf16}}},
               {"kernels", {{"isa", r.cpu_kernels}, {"why", r.cpu_kernels_why}}}}},
      {"memory", {{"total_bytes", r.memory.total_bytes}, {"available_bytes", r.memory.available_bytes},
                  {"numa_nodes", r.memory.numa_nodes},
                  {"measured_read_bandwidth_gbs", r.measured_bandwidth_gbs > 0 ? nlohmann::json(r.measured_bandwidth_gbs)
                                                                                : nlohmann::json(nullptr)}}},
      {"cpu_matmul", r.measured_q8_0_tops > 0 ? nlohmann::json{{"q8_0_tops", r.measured_q8_0_tops}, {"f16_tflops", r.measured_f16_tops}}
                                              : nlohmann::json(nullptr)},
      {"opencl", probe_to_json(r.opencl)},
      {"cuda", probe_to_json(r.cuda)},
      {"backend", {{"name", r.backend}, {"reason", r.backend_reason}, {"init_log", r.init_log}}},
  };
}

std::string hardware_table_text(const std::vector<HardwareSpec>& table) {
  std::ostringstream o;
  o << strprintf("%-28s %-5s %8s %9s %9s %9s %6s %8s\n", "name", "kind", "mem GiB", "GB/s", "FP16 TF", "INT8 TOPS", "W",
                 "USD");
  for (const HardwareSpec& h : table)
    o << strprintf("%-28s %-5s %7.0f%s %9.1f %9.1f %9.1f %6.0f %8.0f\n", h.name.c_str(), device_kind_name(h.kind),
                   h.memory_gb, h.shared_memory ? "*" : " ", h.bandwidth_gbs, h.fp16_tflops, h.int8_tops, h.tdp_w,
                   h.price_usd);
  o << "* shared with the host: system RAM (typical size; --ram overrides)\n";
  return o.str();
}

}  // namespace fathom::plan
