#include "plan/hardware.h"

#include <cctype>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace fathom::plan {

namespace {

// One row of the built-in table; plain literals so the table is a constant.
struct Row {
  const char* name;
  const char* description;
  DeviceKind kind;
  double memory_gb;
  double bandwidth_gbs;
  double fp16_tflops;
  double int8_tops;
  double tdp_w;
  bool shared_memory;
  double price_usd;
  const char* source;
};

using K = DeviceKind;

// Figures are vendor spec-sheet peaks (dense, i.e. without 2:4 sparsity). Where a vendor only
// publishes clocks and unit counts, the peak is derived from them and the derivation is given.
// iGPU figures: EU/CU count x lanes x 2 (FMA) x boost clock; FP16 is 2x FP32 (packed math),
// INT8 4x FP32 (DP4a) unless the part has matrix units. Shared-memory parts take the bandwidth
// of the memory configuration they are normally paired with. Prices are launch MSRP or list
// prices; an iGPU's price is that of its host CPU (or, for laptop-only parts, the typical
// price of a machine built around it), which is what one pays to get it.
constexpr Row kTable[] = {
    // --- CPUs by memory configuration: bandwidth = channels x MT/s x 8 B ---
    {"cpu-ddr4-2ch", "x86 desktop CPU, 2-channel DDR4-3200 (8 cores, AVX2)", K::kCpu, 32, 51.2, 1.0, 1.9, 65, true, 300,
     "2 x 3200 MT/s x 8 B = 51.2 GB/s; 8 cores x 3.8 GHz x 32 FP32 FLOP/clk (2 AVX2 FMA) ~ 1.0 TFLOPS, INT8 ~2x"},
    {"cpu-ddr5-2ch", "x86 desktop CPU, 2-channel DDR5-5600 (8 cores, AVX-512)", K::kCpu, 64, 89.6, 1.3, 5.1, 105, true, 350,
     "2 x 5600 MT/s x 8 B = 89.6 GB/s; Ryzen 7 7700-class: 8 cores x 5.0 GHz x 32 FP32 FLOP/clk, VNNI INT8 4x"},
    {"cpu-ddr5-8ch", "x86 server CPU, 8-channel DDR5-4800 (Xeon Platinum 8480+, 56 cores, AMX)", K::kCpu, 512, 307.2,
     115, 229, 350, true, 10710,
     "8 x 4800 MT/s x 8 B = 307.2 GB/s; Intel 4th-gen Xeon: AMX 1024 BF16 / 2048 INT8 ops/clk/core x 56 x 2.0 GHz; "
     "FP16 column is AMX BF16"},
    {"cpu-ddr5-12ch", "x86 server CPU, 12-channel DDR5-4800 (EPYC 9654, 96 cores)", K::kCpu, 768, 460.8, 14.7, 29.5, 360,
     true, 11805,
     "12 x 4800 MT/s x 8 B = 460.8 GB/s; AMD EPYC 9004: 96 cores x 2.4 GHz x 32 FP32 FLOP/clk, AVX512-BF16 2x, VNNI 4x"},
    // --- Integrated GPUs (shared system RAM) ---
    {"intel-uhd-730", "Intel UHD Graphics 730 (24 EU, i5-12400)", K::kIgpu, 16, 51.2, 1.1, 2.2, 65, true, 180,
     "Intel ARK: 24 EU, 1.45 GHz -> 24 x 16 x 1.45 = 0.56 TFLOPS FP32; DDR4-3200 dual channel"},
    {"intel-uhd-770", "Intel UHD Graphics 770 (32 EU, i5-12600K/i7-12700)", K::kIgpu, 16, 76.8, 1.6, 3.2, 125, true, 300,
     "Intel ARK: 32 EU, 1.55 GHz -> 32 x 16 x 1.55 = 0.79 TFLOPS FP32; DDR5-4800 dual channel"},
    {"intel-iris-xe-96eu", "Intel Iris Xe Graphics (96 EU, i7-1165G7)", K::kIgpu, 16, 68.3, 4.1, 8.3, 28, true, 800,
     "Intel ARK: 96 EU, 1.35 GHz -> 2.07 TFLOPS FP32; LPDDR4x-4266 128-bit; price: typical laptop"},
    {"amd-radeon-680m", "AMD Radeon 680M (12 CU RDNA2, Ryzen 7 6800H)", K::kIgpu, 16, 102.4, 7.4, 14.7, 45, true, 600,
     "AMD: 12 CU x 64 x 2 x 2.4 GHz = 3.7 TFLOPS FP32; LPDDR5-6400 128-bit; price: typical mini PC"},
    {"amd-radeon-780m", "AMD Radeon 780M (12 CU RDNA3, Ryzen 7 8845HS)", K::kIgpu, 16, 120.0, 17.8, 17.8, 45, true, 700,
     "AMD: 8.9 TFLOPS FP32 (dual issue) at 2.9 GHz, WMMA FP16 = INT8 = 2x; LPDDR5x-7500 128-bit; price: mini PC"},
    {"amd-vega-8", "AMD Radeon Vega 8 (Ryzen 7 5700G)", K::kIgpu, 16, 51.2, 4.1, 4.1, 65, true, 200,
     "AMD: 8 CU x 64 x 2 x 2.0 GHz = 2.05 TFLOPS FP32, packed FP16 2x; DDR4-3200 dual channel"},
    // --- Discrete GPUs ---
    {"intel-arc-a770-16gb", "Intel Arc A770 16GB", K::kDgpu, 16, 560, 138, 275, 225, false, 349,
     "Intel spec: 32 Xe cores, 512 XMX engines at 2.1 GHz; 16 GB GDDR6 17.5 Gbps 256-bit = 560 GB/s"},
    {"nvidia-mx550", "NVIDIA GeForce MX550 (2 GB)", K::kDgpu, 2, 96, 5.4, 10.8, 25, false, 150,
     "NVIDIA: TU117, 1024 CUDA cores at 1.32 GHz = 2.7 TFLOPS FP32 (no tensor cores), 64-bit GDDR6 12 Gbps"},
    {"nvidia-rtx-4060-8gb", "NVIDIA GeForce RTX 4060 (8 GB)", K::kDgpu, 8, 272, 60.5, 121, 115, false, 299,
     "NVIDIA Ada whitepaper: 24 SM, FP16 tensor (FP16 acc) dense; 128-bit GDDR6 17 Gbps = 272 GB/s"},
    {"nvidia-rtx-3070", "NVIDIA GeForce RTX 3070 (8 GB)", K::kDgpu, 8, 448, 81.3, 162.6, 220, false, 499,
     "NVIDIA Ampere GA102/104 whitepaper: FP16 tensor (FP16 acc) dense 81.3; 256-bit GDDR6 14 Gbps"},
    {"nvidia-rtx-3090", "NVIDIA GeForce RTX 3090 (24 GB)", K::kDgpu, 24, 936, 142, 284, 350, false, 1499,
     "NVIDIA Ampere GA102 whitepaper: FP16 tensor (FP16 acc) 142 dense, INT8 284; GDDR6X 936 GB/s"},
    {"nvidia-rtx-4090", "NVIDIA GeForce RTX 4090 (24 GB)", K::kDgpu, 24, 1008, 330.3, 660.6, 450, false, 1599,
     "NVIDIA Ada whitepaper: FP16 tensor (FP16 acc) 330.3 dense, INT8 660.6; GDDR6X 21 Gbps 384-bit"},
    {"nvidia-rtx-a4000", "NVIDIA RTX A4000 (16 GB)", K::kDgpu, 16, 448, 76.7, 153.4, 140, false, 1000,
     "NVIDIA datasheet: 153.4 tensor TFLOPS (sparse) -> 76.7 dense FP16; 16 GB GDDR6 448 GB/s"},
    {"nvidia-t4", "NVIDIA T4 (16 GB)", K::kDgpu, 16, 320, 65, 130, 70, false, 2000,
     "NVIDIA T4 datasheet: 65 TFLOPS mixed FP16/FP32, 130 INT8 TOPS, 320 GB/s"},
    {"nvidia-a100-40gb", "NVIDIA A100 SXM 40GB", K::kDgpu, 40, 1555, 312, 624, 400, false, 10000,
     "NVIDIA A100 datasheet: FP16 tensor 312 dense, INT8 624; HBM2 1,555 GB/s"},
    {"nvidia-a100-80gb", "NVIDIA A100 SXM 80GB", K::kDgpu, 80, 2039, 312, 624, 400, false, 15000,
     "NVIDIA A100 datasheet: FP16 tensor 312 dense, INT8 624; HBM2e 2,039 GB/s"},
    {"nvidia-h100-sxm-80gb", "NVIDIA H100 SXM 80GB", K::kDgpu, 80, 3350, 989.4, 1978.9, 700, false, 30000,
     "NVIDIA H100 datasheet: FP16 tensor 1,979 sparse -> 989.4 dense, INT8 1,979 dense; HBM3 3.35 TB/s"},
    {"nvidia-h200", "NVIDIA H200 SXM 141GB", K::kDgpu, 141, 4800, 989.4, 1978.9, 700, false, 35000,
     "NVIDIA H200 datasheet: same compute as H100 SXM; 141 GB HBM3e 4.8 TB/s"},
    // --- SoCs (unified memory) ---
    {"nvidia-jetson-agx-orin-64gb", "NVIDIA Jetson AGX Orin 64GB", K::kSoc, 64, 204.8, 42.5, 85, 60, true, 1999,
     "NVIDIA Jetson datasheet: GPU 170 sparse INT8 TOPS -> 85 dense, FP16 tensor half that; LPDDR5 256-bit 204.8 GB/s"},
};

std::string lower(std::string_view s) {
  std::string out;
  for (char c : s) out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return out;
}

Expected<DeviceKind> parse_kind(const std::string& s) {
  const std::string k = lower(s);
  if (k == "cpu") return DeviceKind::kCpu;
  if (k == "igpu") return DeviceKind::kIgpu;
  if (k == "dgpu" || k == "gpu") return DeviceKind::kDgpu;
  if (k == "soc") return DeviceKind::kSoc;
  return error(ErrorCode::kInvalidArgument, "unknown device kind '" + s + "' (expected cpu, igpu, dgpu or soc)");
}

// Reads one JSON object into *spec; fields absent from the object keep their value, which is
// what makes a partial entry an override of a built-in one.
Status apply_json(const nlohmann::json& j, const std::string& where, HardwareSpec* spec) {
  auto number = [&](const char* key, double* out) -> Status {
    if (!j.contains(key)) return Status::ok();
    if (!j[key].is_number()) return error(ErrorCode::kInvalidFile, where + ": field '" + key + "' must be a number");
    *out = j[key].get<double>();
    if (*out < 0) return error(ErrorCode::kInvalidFile, where + ": field '" + key + "' must not be negative");
    return Status::ok();
  };
  auto text = [&](const char* key, std::string* out) -> Status {
    if (!j.contains(key)) return Status::ok();
    if (!j[key].is_string()) return error(ErrorCode::kInvalidFile, where + ": field '" + key + "' must be a string");
    *out = j[key].get<std::string>();
    return Status::ok();
  };
  FATHOM_RETURN_IF_ERROR(text("description", &spec->description));
  FATHOM_RETURN_IF_ERROR(text("source", &spec->source));
  FATHOM_RETURN_IF_ERROR(number("memory_gb", &spec->memory_gb));
  FATHOM_RETURN_IF_ERROR(number("bandwidth_gbs", &spec->bandwidth_gbs));
  FATHOM_RETURN_IF_ERROR(number("fp16_tflops", &spec->fp16_tflops));
  FATHOM_RETURN_IF_ERROR(number("int8_tops", &spec->int8_tops));
  FATHOM_RETURN_IF_ERROR(number("tdp_w", &spec->tdp_w));
  FATHOM_RETURN_IF_ERROR(number("price_usd", &spec->price_usd));
  if (j.contains("kind")) {
    if (!j["kind"].is_string()) return error(ErrorCode::kInvalidFile, where + ": field 'kind' must be a string");
    Expected<DeviceKind> kind = parse_kind(j["kind"].get<std::string>());
    if (!kind) return error(ErrorCode::kInvalidFile, where + ": " + kind.status().message());
    spec->kind = *kind;
    // A kind given without the flag implies the usual memory arrangement of that kind.
    if (!j.contains("shared_memory")) spec->shared_memory = spec->kind != DeviceKind::kDgpu;
  }
  if (j.contains("shared_memory")) {
    if (!j["shared_memory"].is_boolean())
      return error(ErrorCode::kInvalidFile, where + ": field 'shared_memory' must be true or false");
    spec->shared_memory = j["shared_memory"].get<bool>();
  }
  return Status::ok();
}

}  // namespace

const char* device_kind_name(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::kCpu: return "cpu";
    case DeviceKind::kIgpu: return "igpu";
    case DeviceKind::kDgpu: return "dgpu";
    case DeviceKind::kSoc: return "soc";
  }
  return "?";
}

std::vector<HardwareSpec> builtin_hardware() {
  std::vector<HardwareSpec> out;
  for (const Row& r : kTable)
    out.push_back({r.name, r.description, r.kind, r.memory_gb, r.bandwidth_gbs, r.fp16_tflops, r.int8_tops, r.tdp_w,
                   r.shared_memory, r.price_usd, r.source});
  return out;
}

std::string normalize_device_name(std::string_view name) {
  std::string out;
  for (char c : name)
    if (std::isalnum(static_cast<unsigned char>(c))) out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return out;
}

Status merge_hardware_json_text(std::string_view text, const std::string& origin, std::vector<HardwareSpec>* table) {
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return error(ErrorCode::kInvalidFile, origin + ": not valid JSON");
  if (doc.is_object() && doc.contains("devices")) doc = doc["devices"];
  if (!doc.is_array())
    return error(ErrorCode::kInvalidFile, origin + ": expected an array of device objects or {\"devices\": [...]}");
  for (size_t i = 0; i < doc.size(); ++i) {
    const nlohmann::json& j = doc[i];
    const std::string where = strprintf("%s: device #%zu", origin.c_str(), i);
    if (!j.is_object() || !j.contains("name") || !j["name"].is_string())
      return error(ErrorCode::kInvalidFile, where + ": each device needs a string \"name\"");
    const std::string name = j["name"].get<std::string>();
    HardwareSpec* existing = nullptr;
    for (HardwareSpec& h : *table)
      if (normalize_device_name(h.name) == normalize_device_name(name)) existing = &h;
    if (existing) {
      FATHOM_RETURN_IF_ERROR(apply_json(j, where + " ('" + name + "')", existing));
      continue;
    }
    HardwareSpec spec;
    spec.name = name;
    spec.description = name;
    spec.source = origin;
    FATHOM_RETURN_IF_ERROR(apply_json(j, where + " ('" + name + "')", &spec));
    if (spec.bandwidth_gbs <= 0 || spec.memory_gb <= 0)
      return error(ErrorCode::kInvalidFile,
                   where + " ('" + name + "'): a new device needs memory_gb and bandwidth_gbs greater than 0");
    table->push_back(std::move(spec));
  }
  return Status::ok();
}

Status merge_hardware_json(const std::string& path, std::vector<HardwareSpec>* table) {
  std::ifstream in(path);
  if (!in) return error(ErrorCode::kNotFound, "cannot open hardware file '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return merge_hardware_json_text(ss.str(), path, table);
}

Expected<HardwareSpec> find_hardware(const std::vector<HardwareSpec>& table, std::string_view query) {
  const std::string q = normalize_device_name(query);
  if (q.empty()) return error(ErrorCode::kInvalidArgument, "empty device name");
  std::vector<const HardwareSpec*> matches;
  for (const HardwareSpec& h : table) {
    const std::string n = normalize_device_name(h.name);
    if (n == q) return h;
    if (n.find(q) != std::string::npos) matches.push_back(&h);
  }
  if (matches.size() == 1) return *matches[0];
  std::string list;
  for (const HardwareSpec* h : matches) list += (list.empty() ? "" : ", ") + h->name;
  if (matches.empty())
    return error(ErrorCode::kNotFound, "no device matches '" + std::string(query) +
                                           "' (fathom plan --list-devices shows the table; --hardware FILE.json adds entries)");
  return error(ErrorCode::kInvalidArgument,
               "device name '" + std::string(query) + "' is ambiguous; candidates: " + list);
}

}  // namespace fathom::plan
