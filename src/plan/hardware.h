// Hardware specifications for `fathom plan`: a built-in table of CPUs (by memory
// configuration), integrated and discrete GPUs and SoCs, with the figures the planner needs —
// memory size and bandwidth (decode is bandwidth-bound), dense peak FP16/INT8 throughput
// (prefill is compute-bound), power and price (ROI). The table can be extended or overridden
// from a JSON file with the same fields.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace fathom::plan {

enum class DeviceKind { kCpu, kIgpu, kDgpu, kSoc };
const char* device_kind_name(DeviceKind kind);  // "cpu", "igpu", "dgpu", "soc"

struct HardwareSpec {
  std::string name;            // lookup key, lower-case with dashes, e.g. "nvidia-rtx-4090"
  std::string description;     // human name, e.g. "NVIDIA GeForce RTX 4090 (24 GB GDDR6X)"
  DeviceKind kind = DeviceKind::kCpu;
  double memory_gb = 0;        // device memory as marketed in "GB", which for DRAM/HBM means GiB
                               // (chips are binary-sized: a "24 GB" card holds 24 x 2^30 B); for
                               // shared-memory devices the typical system RAM (override: --ram)
  double bandwidth_gbs = 0;    // peak memory bandwidth, GB/s (1e9 B/s)
  double fp16_tflops = 0;      // dense peak FP16 (tensor/matrix units where present; CPUs: the
                               // widest half-precision path, else FP32 FMA), TFLOPS
  double int8_tops = 0;        // dense peak INT8 (tensor units, DP4a/VNNI otherwise), TOPS
  double tdp_w = 0;            // board power / TDP, W (integrated parts: the host CPU package)
  bool shared_memory = false;  // memory is the host's system RAM (iGPU, SoC, CPU)
  double price_usd = 0;        // typical price, USD (launch MSRP / list; iGPU: its host CPU)
  std::string source;          // where the figures come from
  bool compute_measured = false;  // fp16_tflops, int8_tops: fathom's CPU matmul kernels measured on
                                  // this machine (f16 and q8_0 weights), not a peak
};

// The built-in table (see hardware.cpp for each entry's source).
std::vector<HardwareSpec> builtin_hardware();

// Adds or replaces entries from a JSON file: either an array of objects or {"devices": [...]};
// fields as in HardwareSpec ("name", "kind", "memory_gb", "bandwidth_gbs", "fp16_tflops",
// "int8_tops", "tdp_w", "shared_memory", "price_usd", "description", "source"). An entry whose
// name matches an existing one (case-insensitive) overrides it, field by field.
Status merge_hardware_json(const std::string& path, std::vector<HardwareSpec>* table);
Status merge_hardware_json_text(std::string_view text, const std::string& origin, std::vector<HardwareSpec>* table);

// Finds a device by name: exact (case- and punctuation-insensitive) match first, else the only
// entry containing the query ("4090" -> nvidia-rtx-4090). Zero or several matches are errors
// that list the candidates.
Expected<HardwareSpec> find_hardware(const std::vector<HardwareSpec>& table, std::string_view query);

// Lower-case alphanumerics only: "RTX 4090" and "rtx-4090" compare equal.
std::string normalize_device_name(std::string_view name);

}  // namespace fathom::plan
