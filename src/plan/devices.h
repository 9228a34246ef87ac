// What this machine offers fathom: the CPU (model, cores, ISA extensions via CPUID), memory
// (/proc/meminfo, NUMA nodes, a measured read bandwidth) and GPUs visible through OpenCL and
// CUDA. The GPU runtimes are dlopen'ed at run time, so the build has no dependency on them
// and a machine without them simply reports "not available: <reason>".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "plan/hardware.h"

namespace fathom::plan {

struct CpuFeatures {
  bool avx = false;          // 256-bit float SIMD (OS saves YMM)
  bool avx2 = false;         // 256-bit integer SIMD
  bool fma = false;          // fused multiply-add (FMA3)
  bool f16c = false;         // f16 <-> f32 conversion
  bool avx512f = false;      // 512-bit foundation (OS saves ZMM)
  bool avx512bw = false;     // byte/word ops
  bool avx512vl = false;     // 128/256-bit forms of AVX-512 ops
  bool avx512_vnni = false;  // int8 dot products, 512-bit
  bool avx_vnni = false;     // int8 dot products, VEX 256-bit
  bool avx512_bf16 = false;  // bf16 dot products
  bool amx_tile = false;     // AMX tiles (OS enabled)
  bool amx_int8 = false;     // AMX int8 matmul
  bool amx_bf16 = false;     // AMX bf16 matmul
};
std::string isa_string(const CpuFeatures& f);  // "AVX2 FMA F16C AVX512F ..." (only those present)

struct CpuInfo {
  std::string vendor;        // CPUID vendor, e.g. "GenuineIntel"
  std::string model_name;    // CPUID brand string
  int physical_cores = 0;    // distinct (package, core) pairs; logical_cores if unknown
  int logical_cores = 0;     // hardware threads online
  CpuFeatures isa;           // extensions usable here (CPU and OS support)
};
CpuInfo detect_cpu();

struct MemoryInfo {
  uint64_t total_bytes = 0;      // MemTotal
  uint64_t available_bytes = 0;  // MemAvailable
  int numa_nodes = 0;            // /sys/devices/system/node/node*, 1 when absent
};
// Parses the text of /proc/meminfo ("MemTotal:  16318744 kB").
Expected<MemoryInfo> parse_meminfo(std::string_view text);
Expected<MemoryInfo> detect_memory(const std::string& meminfo_path = "/proc/meminfo",
                                   const std::string& node_dir = "/sys/devices/system/node");

// Multi-threaded sequential read of a `bytes` buffer for about `seconds` on a pool of `threads`
// (0: all cores); the fastest pass in GB/s (1e9 B/s). See core/bandwidth.h.
double measure_read_bandwidth(size_t bytes = size_t{256} << 20, double seconds = 0.2, int threads = 0);

// What fathom's own CPU matmul kernels do, in TOPS (1e12 multiply-adds x 2 per second): a
// prefill-shaped product (128 tokens through a 2048 x 1024 matrix of `weight_type`, repacked as
// at load) repeated for about `seconds` on a pool of `threads` (0: all cores).
double measure_cpu_matmul_tops(DType weight_type, double seconds = 0.1, int threads = 0);

struct GpuDevice {
  std::string platform;         // OpenCL platform name, or "CUDA"
  std::string name;             // device name
  std::string type;             // "gpu", "cpu", "accelerator"
  uint64_t memory_bytes = 0;    // global memory
  int compute_units = 0;        // OpenCL compute units / CUDA multiprocessors
  bool fp16 = false;            // half-precision arithmetic (cl_khr_fp16; CUDA: always)
  bool host_unified = false;    // shares memory with the host (integrated)
  bool int8_dot = false;        // int8 dot products (cl_khr_integer_dot_product; CUDA: dp4a from cc 6.1)
  bool subgroups = false;       // OpenCL subgroups (cl_khr_subgroups or cl_intel_subgroups)
  std::string driver;           // OpenCL driver version (CL_DRIVER_VERSION)
  int cc_major = 0, cc_minor = 0;   // CUDA compute capability
  double bandwidth_gbs = 0;     // CUDA: 2 x memory clock x bus width; 0 when unknown
};

struct ApiProbe {
  std::string api;                  // "opencl" or "cuda"
  bool available = false;           // the runtime loaded and answered
  std::string reason;               // why not, when unavailable
  std::vector<GpuDevice> devices;   // what it reported
};
ApiProbe probe_opencl();
ApiProbe probe_cuda();

struct DeviceReport {
  CpuInfo cpu;                      // host CPU
  MemoryInfo memory;                // host RAM
  double measured_bandwidth_gbs = 0;  // 0 when --no-bench
  double measured_q8_0_tops = 0;      // measure_cpu_matmul_tops(Q8_0); 0 when --no-bench
  double measured_f16_tops = 0;       // measure_cpu_matmul_tops(F16); 0 when --no-bench
  ApiProbe opencl;                  // OpenCL platforms/devices
  ApiProbe cuda;                    // CUDA devices
  std::string cpu_kernels;          // the CPU kernels' path: "generic", "avx2", "avx512", "amx" (cpu/isa.h)
  std::string cpu_kernels_why;      // why not a wider one, or that FATHOM_CPU_ISA forced it ("" when widest)
  std::string backend;              // what fathom would pick: "cuda", "opencl" or "cpu"
  std::string backend_reason;       // why
  std::vector<std::string> init_log;  // retries and fallbacks taken while bringing backends up
};
DeviceReport detect_devices(bool run_bandwidth_bench);
// Fills report->backend/backend_reason from the probes and the CPU's ISA.
void choose_backend(DeviceReport* report);

// The local machine as a planner target (for `fathom plan --device auto`): the CUDA GPU if any,
// else the CPU with measured (or assumed dual-channel) bandwidth and an ISA-based compute peak.
HardwareSpec local_hardware_spec(const DeviceReport& report);
// Host side of the same machine (RAM size and bandwidth), for offload planning.
HardwareSpec local_host_spec(const DeviceReport& report);

}  // namespace fathom::plan
