#include "plan/devices.h"

#include "backend/backend_init.h"
#include "backend/cpu/isa.h"
#include "backend/cpu/cpu_backend.h"

#include "core/bandwidth.h"
#include "core/process.h"
#include "quant/quant.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define FATHOM_HAVE_CPUID 1
#endif

namespace fathom::plan {

namespace {

std::string trim(std::string s) {
  const size_t b = s.find_first_not_of(" \t\n");
  const size_t e = s.find_last_not_of(" \t\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

#ifdef FATHOM_HAVE_CPUID
// XCR0: which register states the OS saves on context switch; an extension is usable only
// when the CPU has it and the OS preserves its registers.
uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

// Physical cores: distinct (package, core id) pairs in sysfs topology.
int count_physical_cores(int logical) {
  std::set<std::pair<std::string, std::string>> cores;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/devices/system/cpu", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("cpu", 0) != 0 || name.size() < 4 || !std::isdigit(static_cast<unsigned char>(name[3]))) continue;
    const std::string topo = entry.path().string() + "/topology/";
    const std::string core = trim(read_file(topo + "core_id"));
    if (core.empty()) continue;
    cores.insert({trim(read_file(topo + "physical_package_id")), core});
  }
  return cores.empty() ? logical : static_cast<int>(cores.size());
}

// A dlopen'ed library, closed when it goes out of scope.
struct Library {
  void* handle = nullptr;  // dlopen handle, null when not loaded
  explicit Library(const char* name) : handle(dlopen(name, RTLD_NOW | RTLD_LOCAL)) {}
  ~Library() {
    if (handle) dlclose(handle);
  }
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;
  template <typename Fn>
  Fn sym(const char* name) const {
    return reinterpret_cast<Fn>(dlsym(handle, name));
  }
};

std::string dl_reason(const char* lib) {
  const char* e = dlerror();
  return std::string(lib) + " could not be loaded (" + (e ? e : "unknown error") + ")";
}

}  // namespace

std::string isa_string(const CpuFeatures& f) {
  const std::pair<bool, const char*> flags[] = {
      {f.avx, "AVX"},           {f.avx2, "AVX2"},          {f.fma, "FMA"},
      {f.f16c, "F16C"},         {f.avx512f, "AVX512F"},    {f.avx512bw, "AVX512BW"},
      {f.avx512vl, "AVX512VL"}, {f.avx512_vnni, "AVX512_VNNI"}, {f.avx_vnni, "AVX_VNNI"},
      {f.avx512_bf16, "AVX512_BF16"}, {f.amx_tile, "AMX_TILE"}, {f.amx_int8, "AMX_INT8"},
      {f.amx_bf16, "AMX_BF16"}};
  std::string out;
  for (const auto& [on, name] : flags)
    if (on) {
      if (!out.empty()) out += ' ';
      out += name;
    }
  return out.empty() ? "(none of the tracked extensions)" : out;
}

CpuInfo detect_cpu() {
  CpuInfo c;
  c.logical_cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  c.physical_cores = count_physical_cores(c.logical_cores);
#ifdef FATHOM_HAVE_CPUID
  unsigned a = 0, b = 0, cx = 0, d = 0;
  if (__get_cpuid(0, &a, &b, &cx, &d)) {
    const unsigned max_leaf = a;
    char vendor[13] = {};
    std::memcpy(vendor, &b, 4), std::memcpy(vendor + 4, &d, 4), std::memcpy(vendor + 8, &cx, 4);
    c.vendor = vendor;
    __get_cpuid(1, &a, &b, &cx, &d);
    const bool osxsave = cx & (1u << 27);
    const uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    const bool os_avx = (xcr0 & 0x6) == 0x6;        // XMM + YMM state
    const bool os_avx512 = (xcr0 & 0xe6) == 0xe6;   // + opmask, ZMM_Hi256, Hi16_ZMM
    c.isa.avx = os_avx && (cx & (1u << 28));
    c.isa.fma = os_avx && (cx & (1u << 12));
    c.isa.f16c = os_avx && (cx & (1u << 29));
    if (max_leaf >= 7) {
      __get_cpuid_count(7, 0, &a, &b, &cx, &d);
      c.isa.avx2 = os_avx && (b & (1u << 5));
      c.isa.avx512f = os_avx512 && (b & (1u << 16));
      c.isa.avx512bw = os_avx512 && (b & (1u << 30));
      c.isa.avx512vl = os_avx512 && (b & (1u << 31));
      c.isa.avx512_vnni = os_avx512 && (cx & (1u << 11));
      const unsigned max_sub = a;
      if (max_sub >= 1) {
        __get_cpuid_count(7, 1, &a, &b, &cx, &d);
        c.isa.avx_vnni = os_avx && (a & (1u << 4));
        c.isa.avx512_bf16 = os_avx512 && (a & (1u << 5));
      }
    }
    if (__get_cpuid(0x80000000, &a, &b, &cx, &d) && a >= 0x80000004) {
      char brand[49] = {};
      for (unsigned i = 0; i < 3; ++i) {
        __get_cpuid(0x80000002 + i, &a, &b, &cx, &d);
        std::memcpy(brand + 16 * i, &a, 4), std::memcpy(brand + 16 * i + 4, &b, 4);
        std::memcpy(brand + 16 * i + 8, &cx, 4), std::memcpy(brand + 16 * i + 12, &d, 4);
      }
      c.model_name = trim(brand);
    }
  }
#endif
  // AMX as the kernels see it (CPUID and the OS's tile state; the permission is asked apart).
  const cpu::IsaFeatures kernel_isa = cpu::detect_isa_features();
  c.isa.amx_tile = kernel_isa.os_tile_state && kernel_isa.amx_tile;
  c.isa.amx_int8 = kernel_isa.os_tile_state && kernel_isa.amx_int8;
  c.isa.amx_bf16 = kernel_isa.os_tile_state && kernel_isa.amx_bf16;
  if (c.model_name.empty()) {
    std::istringstream in(read_file("/proc/cpuinfo"));
    for (std::string line; std::getline(in, line);)
      if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
        c.model_name = trim(line.substr(line.find(':') + 1));
        break;
      }
  }
  if (c.model_name.empty()) c.model_name = "unknown CPU";
  return c;
}

namespace {

MemoryInfo memory_info(const HostMemory& host) {
  MemoryInfo m;
  m.total_bytes = host.total_bytes;
  m.available_bytes = host.available_bytes;
  return m;
}

}  // namespace

Expected<MemoryInfo> parse_meminfo(std::string_view text) {
  FATHOM_ASSIGN_OR_RETURN(const HostMemory host, fathom::parse_meminfo(text));
  return memory_info(host);
}

Expected<MemoryInfo> detect_memory(const std::string& meminfo_path, const std::string& node_dir) {
  FATHOM_ASSIGN_OR_RETURN(const HostMemory host, read_host_memory(meminfo_path));
  MemoryInfo m = memory_info(host);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(node_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("node", 0) == 0 && name.size() > 4 && std::isdigit(static_cast<unsigned char>(name[4]))) ++m.numa_nodes;
  }
  m.numa_nodes = std::max(m.numa_nodes, 1);
  return m;
}

double measure_read_bandwidth(size_t bytes, double seconds, int threads) {
  ThreadPool pool(threads);  // 0: all cores
  return fathom::measure_read_bandwidth(pool, bytes, 2, seconds).gb_per_s;
}

double measure_cpu_matmul_tops(DType weight_type, double seconds, int threads) {
  // Large enough that every thread has whole 16-token tiles of many rows, small enough (2 to 4
  // MB of weights) that preparing it costs a few milliseconds.
  constexpr int64_t n_in = 2048, n_out = 1024, n_tokens = 128;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> row(n_in), x(static_cast<size_t>(n_in * n_tokens)), y(static_cast<size_t>(n_out * n_tokens));
  for (float& v : x) v = uniform(rng);
  const size_t row_bytes = row_size(weight_type, n_in);
  std::vector<uint8_t> weights(row_bytes * n_out);
  for (int64_t r = 0; r < n_out; ++r) {
    for (float& v : row) v = uniform(rng) * 0.05f;
    quant::quantize_row_ref(weight_type, row.data(), weights.data() + row_bytes * static_cast<size_t>(r), n_in);
  }
  TensorView w;
  w.name = "matmul-probe";
  w.dtype = weight_type;
  w.ne = {n_in, n_out, 1, 1};
  w.data = weights.data();
  CpuBackend cpu(threads);
  cpu.prepare_matmul_weights({w}, /*file_backed=*/false);
  cpu.matmul(w, x.data(), n_tokens, y.data());  // warm-up: scratch, caches, thread start
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  int64_t runs = 0;
  do {
    cpu.matmul(w, x.data(), n_tokens, y.data());
    ++runs;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < seconds);
  return 2.0 * static_cast<double>(n_in * n_out * n_tokens) * static_cast<double>(runs) / elapsed / 1e12;
}

// --- OpenCL (ABI constants from the Khronos cl.h specification) ---
ApiProbe probe_opencl() {
  ApiProbe probe;
  probe.api = "opencl";
  using ClInt = int32_t;
  using ClUint = uint32_t;
  using GetPlatformIDs = ClInt (*)(ClUint, void**, ClUint*);
  using GetPlatformInfo = ClInt (*)(void*, ClUint, size_t, void*, size_t*);
  using GetDeviceIDs = ClInt (*)(void*, uint64_t, ClUint, void**, ClUint*);
  using GetDeviceInfo = ClInt (*)(void*, ClUint, size_t, void*, size_t*);
  constexpr ClUint kPlatformName = 0x0902;
  constexpr uint64_t kDeviceTypeAll = 0xFFFFFFFF;
  constexpr ClUint kDeviceType = 0x1000, kMaxComputeUnits = 0x1002, kGlobalMemSize = 0x101F, kDeviceName = 0x102B,
                   kExtensions = 0x1030, kHostUnifiedMemory = 0x1035, kDriverVersion = 0x102D;
  constexpr uint64_t kTypeCpu = 1 << 1, kTypeGpu = 1 << 2, kTypeAccelerator = 1 << 3;

  Library lib("libOpenCL.so.1");
  if (!lib.handle) {
    probe.reason = dl_reason("libOpenCL.so.1");
    return probe;
  }
  auto get_platforms = lib.sym<GetPlatformIDs>("clGetPlatformIDs");
  auto platform_info = lib.sym<GetPlatformInfo>("clGetPlatformInfo");
  auto get_devices = lib.sym<GetDeviceIDs>("clGetDeviceIDs");
  auto device_info = lib.sym<GetDeviceInfo>("clGetDeviceInfo");
  if (!get_platforms || !platform_info || !get_devices || !device_info) {
    probe.reason = "libOpenCL.so.1 lacks the clGet* entry points";
    return probe;
  }
  ClUint n_platforms = 0;
  const ClInt rc = get_platforms(0, nullptr, &n_platforms);
  if (rc != 0 || n_platforms == 0) {
    probe.reason = rc != 0 ? strprintf("clGetPlatformIDs failed with error %d (no ICD installed?)", rc)
                           : "the OpenCL loader found no platforms (no ICD in /etc/OpenCL/vendors)";
    return probe;
  }
  std::vector<void*> platforms(n_platforms);
  get_platforms(n_platforms, platforms.data(), nullptr);
  auto info_string = [](auto fn, void* obj, ClUint what) {
    char buf[1024] = {};
    fn(obj, what, sizeof(buf) - 1, buf, nullptr);
    return trim(buf);
  };
  for (void* pl : platforms) {
    const std::string pname = info_string(platform_info, pl, kPlatformName);
    ClUint n_dev = 0;
    if (get_devices(pl, kDeviceTypeAll, 0, nullptr, &n_dev) != 0 || n_dev == 0) continue;
    std::vector<void*> devs(n_dev);
    get_devices(pl, kDeviceTypeAll, n_dev, devs.data(), nullptr);
    for (void* dv : devs) {
      GpuDevice g;
      g.platform = pname;
      g.name = info_string(device_info, dv, kDeviceName);
      uint64_t type = 0, mem = 0;
      ClUint cu = 0, unified = 0;
      device_info(dv, kDeviceType, sizeof(type), &type, nullptr);
      device_info(dv, kGlobalMemSize, sizeof(mem), &mem, nullptr);
      device_info(dv, kMaxComputeUnits, sizeof(cu), &cu, nullptr);
      device_info(dv, kHostUnifiedMemory, sizeof(unified), &unified, nullptr);
      g.type = type & kTypeGpu ? "gpu" : type & kTypeCpu ? "cpu" : type & kTypeAccelerator ? "accelerator" : "other";
      g.memory_bytes = mem;
      g.compute_units = static_cast<int>(cu);
      g.host_unified = unified != 0;
      // Space-padded so a name matches only whole (cl_khr_fp16 is not cl_khr_fp16_foo).
      std::string extensions(1, ' ');
      extensions.append(info_string(device_info, dv, kExtensions)).push_back(' ');
      const auto has = [&](const std::string& ext) { return extensions.find(' ' + ext + ' ') != std::string::npos; };
      g.fp16 = has("cl_khr_fp16");
      g.int8_dot = has("cl_khr_integer_dot_product");
      g.subgroups = has("cl_khr_subgroups") || has("cl_intel_subgroups");
      g.driver = info_string(device_info, dv, kDriverVersion);
      probe.devices.push_back(std::move(g));
    }
  }
  probe.available = true;
  if (probe.devices.empty()) probe.reason = "platforms present but no devices";
  return probe;
}

// --- CUDA driver API (enum values from the public cuda.h) ---
ApiProbe probe_cuda() {
  ApiProbe probe;
  probe.api = "cuda";
  using CuResult = int;
  using Init = CuResult (*)(unsigned);
  using GetCount = CuResult (*)(int*);
  using Get = CuResult (*)(int*, int);
  using GetName = CuResult (*)(char*, int, int);
  using TotalMem = CuResult (*)(size_t*, int);
  using GetAttribute = CuResult (*)(int*, int, int);
  using ErrorString = CuResult (*)(CuResult, const char**);
  constexpr int kAttrSmCount = 16, kAttrIntegrated = 18, kAttrMemClockKhz = 36, kAttrBusWidth = 37, kAttrCcMajor = 75,
                kAttrCcMinor = 76;

  Library lib("libcuda.so.1");
  if (!lib.handle) {
    probe.reason = dl_reason("libcuda.so.1") + "; no NVIDIA driver";
    return probe;
  }
  auto init = lib.sym<Init>("cuInit");
  auto count = lib.sym<GetCount>("cuDeviceGetCount");
  auto get = lib.sym<Get>("cuDeviceGet");
  auto name = lib.sym<GetName>("cuDeviceGetName");
  auto total = lib.sym<TotalMem>("cuDeviceTotalMem_v2");
  auto attr = lib.sym<GetAttribute>("cuDeviceGetAttribute");
  auto err_str = lib.sym<ErrorString>("cuGetErrorString");
  if (!init || !count || !get || !name || !total || !attr) {
    probe.reason = "libcuda.so.1 lacks the driver entry points (driver too old?)";
    return probe;
  }
  auto describe = [&](CuResult r) {
    const char* s = nullptr;
    if (err_str) err_str(r, &s);
    return strprintf("error %d%s%s", r, s ? ": " : "", s ? s : "");
  };
  if (const CuResult r = init(0); r != 0) {
    probe.reason = "cuInit failed (" + describe(r) + ")";
    return probe;
  }
  int n = 0;
  if (const CuResult r = count(&n); r != 0) {
    probe.reason = "cuDeviceGetCount failed (" + describe(r) + ")";
    return probe;
  }
  for (int i = 0; i < n; ++i) {
    int dev = 0;
    if (get(&dev, i) != 0) continue;
    GpuDevice g;
    g.platform = "CUDA";
    g.type = "gpu";
    char buf[256] = {};
    name(buf, sizeof(buf) - 1, dev);
    g.name = buf;
    size_t mem = 0;
    total(&mem, dev);
    g.memory_bytes = mem;
    int v = 0, clock_khz = 0, bus_bits = 0;
    if (attr(&v, kAttrSmCount, dev) == 0) g.compute_units = v;
    if (attr(&v, kAttrIntegrated, dev) == 0) g.host_unified = v != 0;
    attr(&g.cc_major, kAttrCcMajor, dev);
    attr(&g.cc_minor, kAttrCcMinor, dev);
    g.fp16 = true;
    g.int8_dot = g.cc_major > 6 || (g.cc_major == 6 && g.cc_minor >= 1);
    // Double data rate: two transfers per memory clock.
    if (attr(&clock_khz, kAttrMemClockKhz, dev) == 0 && attr(&bus_bits, kAttrBusWidth, dev) == 0)
      g.bandwidth_gbs = 2.0 * clock_khz * 1e3 * bus_bits / 8.0 / 1e9;
    probe.devices.push_back(std::move(g));
  }
  probe.available = true;
  if (n == 0) probe.reason = "driver loaded but reports no devices";
  return probe;
}

void choose_backend(DeviceReport* r) {
  if (r->cuda.available && !r->cuda.devices.empty()) {
    const GpuDevice& g = r->cuda.devices.front();
    r->backend = "cuda";
    r->backend_reason = strprintf("CUDA device %s (%.1f GiB, compute capability %d.%d) is the fastest memory here",
                                  g.name.c_str(), static_cast<double>(g.memory_bytes) / (1024.0 * 1024 * 1024),
                                  g.cc_major, g.cc_minor);
    return;
  }
  for (const GpuDevice& g : r->opencl.devices) {
    if (g.type != "gpu") continue;
    r->backend = "opencl";
    r->backend_reason = "OpenCL GPU " + g.name + " (" + g.platform + ")" +
                        (g.host_unified ? ", integrated: shares system RAM" : "") +
                        (g.fp16 ? "" : "; no cl_khr_fp16, so f16 math falls back to f32");
    return;
  }
  r->backend = "cpu";
  // The probes' own lines carry the detailed reasons; here only the verdict.
  r->backend_reason = std::string("no usable GPU (CUDA: ") + (r->cuda.available ? "no devices" : "runtime not available") +
                      ", OpenCL: " + (r->opencl.available ? "no GPU devices" : "runtime not available") + "); " +
                      r->cpu_kernels + " kernels on " + std::to_string(r->cpu.physical_cores) + " cores";
}

DeviceReport detect_devices(bool run_bandwidth_bench) {
  DeviceReport r;
  r.cpu = detect_cpu();
  // The path the CPU backend takes (FATHOM_CPU_ISA honoured; the CLI rejected a bad value).
  if (const Expected<cpu::IsaChoice>& kernels = cpu::active_isa_choice()) {
    r.cpu_kernels = cpu::isa_name(kernels->isa);
    r.cpu_kernels_why = kernels->why;
  } else {
    r.cpu_kernels = "none";
    r.cpu_kernels_why = kernels.status().message();
  }
  if (Expected<MemoryInfo> m = detect_memory()) r.memory = *m;
  if (run_bandwidth_bench) {
    r.measured_bandwidth_gbs = measure_read_bandwidth();
    r.measured_q8_0_tops = measure_cpu_matmul_tops(DType::Q8_0);
    r.measured_f16_tops = measure_cpu_matmul_tops(DType::F16);
  }
  // Bring up the probes in fathom's preference order, each with retries, falling back to the
  // next (GPU -> CPU) with the reason logged, as a backend's own initialisation will.
  const auto gpu_init = [](ApiProbe* probe, ApiProbe (*run)(), bool (*usable)(const ApiProbe&)) {
    return [probe, run, usable]() -> Status {
      *probe = run();
      if (usable(*probe)) return Status::ok();
      // No runtime library: final. A runtime without usable devices may be a device still resetting.
      return error(probe->available ? ErrorCode::kUnavailable : ErrorCode::kNotFound,
                   probe->reason.empty() ? "no usable device" : probe->reason);
    };
  };
  const std::vector<BackendCandidate> candidates = {
      {"cuda", gpu_init(&r.cuda, probe_cuda, [](const ApiProbe& p) { return p.available && !p.devices.empty(); })},
      {"opencl", gpu_init(&r.opencl, probe_opencl,
                          [](const ApiProbe& p) {
                            for (const GpuDevice& g : p.devices)
                              if (g.type == "gpu") return true;
                            return false;
                          })},
      {"cpu", [] { return Status::ok(); }},
  };
  RetryHooks quiet;
  quiet.log = [&r](const std::string& line) { r.init_log.push_back(line); };
  (void)init_with_fallback(candidates, /*attempts=*/3, std::chrono::milliseconds(100), quiet);
  if (!r.opencl.available && r.opencl.reason.empty()) r.opencl = probe_opencl();  // listed even when CUDA won
  choose_backend(&r);
  return r;
}

HardwareSpec local_host_spec(const DeviceReport& r) {
  HardwareSpec h;
  h.name = "local-cpu";
  h.description = r.cpu.model_name + " (this machine)";
  h.kind = DeviceKind::kCpu;
  h.shared_memory = true;
  h.memory_gb = static_cast<double>(r.memory.total_bytes) / (1024.0 * 1024 * 1024);
  // Without a measurement, assume a desktop's dual-channel DDR4-3200.
  h.bandwidth_gbs = r.measured_bandwidth_gbs > 0 ? r.measured_bandwidth_gbs : 51.2;
  h.tdp_w = 0;
  if (r.measured_q8_0_tops > 0 && r.measured_f16_tops > 0) {
    // Prefill on this CPU runs these kernels: what they do here bounds it, not what the
    // silicon could (they reach a fraction of the FMA peak, which differs by ISA and format).
    h.int8_tops = r.measured_q8_0_tops;
    h.fp16_tflops = r.measured_f16_tops;
    h.compute_measured = true;
    h.source = "measured read bandwidth and fathom's q8_0 and f16 matmul throughput";
    return h;
  }
  // Peak: cores x assumed 3 GHz x FP32 FLOP/clk (2 FMA ports x lanes x 2).
  const CpuFeatures& f = r.cpu.isa;
  const double lanes = f.avx512f ? 16 : f.avx2 ? 8 : 4;
  const double fp32 = r.cpu.physical_cores * 3.0e9 * 2 * lanes * 2 / 1e12;
  h.fp16_tflops = f.amx_bf16 ? r.cpu.physical_cores * 3.0e9 * 1024 / 1e12 : f.avx512_bf16 ? 2 * fp32 : fp32;
  h.int8_tops = f.amx_int8 ? 2 * r.cpu.physical_cores * 3.0e9 * 1024 / 1e12
                           : (f.avx512_vnni || f.avx_vnni) ? 4 * fp32 : 2 * fp32;
  h.source = "bandwidth assumed and compute peak at an assumed 3 GHz (run without --no-bench to measure both)";
  return h;
}

HardwareSpec local_hardware_spec(const DeviceReport& r) {
  if (r.cuda.available && !r.cuda.devices.empty()) {
    const GpuDevice& g = r.cuda.devices.front();
    HardwareSpec h;
    h.name = "local-cuda0";
    h.description = g.name + " (this machine, CUDA 0)";
    h.kind = g.host_unified ? DeviceKind::kSoc : DeviceKind::kDgpu;
    h.shared_memory = g.host_unified;
    h.memory_gb = static_cast<double>(g.memory_bytes) / (1024.0 * 1024 * 1024);
    h.bandwidth_gbs = g.bandwidth_gbs;
    // The driver does not report tensor throughput; a table entry with the same name gives it.
    h.source = "CUDA driver attributes; compute peak unknown (use --device with a table name for prefill bounds)";
    return h;
  }
  return local_host_spec(r);
}

}  // namespace fathom::plan
