#include "backend/opencl/cl_runtime.h"

#if FATHOM_HAVE_OPENCL
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include <unistd.h>

#include "backend/device_spec.h"

namespace fathom::opencl {

namespace {

std::string device_string(cl_device_id device, cl_device_info what) {
  size_t size = 0;
  if (clGetDeviceInfo(device, what, 0, nullptr, &size) != CL_SUCCESS || size == 0) return "";
  std::string s(size, '\0');
  if (clGetDeviceInfo(device, what, size, s.data(), nullptr) != CL_SUCCESS) return "";
  while (!s.empty() && (s.back() == '\0' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string platform_string(cl_platform_id platform, cl_platform_info what) {
  size_t size = 0;
  if (clGetPlatformInfo(platform, what, 0, nullptr, &size) != CL_SUCCESS || size == 0) return "";
  std::string s(size, '\0');
  if (clGetPlatformInfo(platform, what, size, s.data(), nullptr) != CL_SUCCESS) return "";
  while (!s.empty() && (s.back() == '\0' || s.back() == ' ')) s.pop_back();
  return s;
}

template <typename T>
T device_value(cl_device_id device, cl_device_info what) {
  T v{};
  if (clGetDeviceInfo(device, what, sizeof(v), &v, nullptr) != CL_SUCCESS) return T{};
  return v;
}

bool has_extension(const std::string& extensions, const char* name) {
  const std::string padded = " " + extensions + " ";
  return padded.find(std::string(" ") + name + " ") != std::string::npos;
}

OpenClDeviceInfo describe(cl_platform_id platform, cl_device_id device, int index) {
  OpenClDeviceInfo d;
  d.index = index;
  d.platform = platform_string(platform, CL_PLATFORM_NAME);
  d.name = device_string(device, CL_DEVICE_NAME);
  d.driver_version = device_string(device, CL_DRIVER_VERSION);
  d.device_version = device_string(device, CL_DEVICE_VERSION);
  d.is_gpu = (device_value<cl_device_type>(device, CL_DEVICE_TYPE) & CL_DEVICE_TYPE_GPU) != 0;
  d.host_unified = device_value<cl_bool>(device, CL_DEVICE_HOST_UNIFIED_MEMORY) != 0;
  const std::string ext = device_string(device, CL_DEVICE_EXTENSIONS);
  d.fp16 = has_extension(ext, "cl_khr_fp16");
  d.subgroups = has_extension(ext, "cl_khr_subgroups") || has_extension(ext, "cl_intel_subgroups");
  d.int_dot = has_extension(ext, "cl_khr_integer_dot_product");
  d.global_memory_bytes = device_value<cl_ulong>(device, CL_DEVICE_GLOBAL_MEM_SIZE);
  d.max_alloc_bytes = device_value<cl_ulong>(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE);
  d.compute_units = static_cast<int>(device_value<cl_uint>(device, CL_DEVICE_MAX_COMPUTE_UNITS));
  return d;
}

// FNV-1a, 64-bit: the cache key only needs to tell inputs apart, not resist an adversary.
uint64_t fnv1a(const std::string& s, uint64_t h) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string build_log(cl_program program, cl_device_id device) {
  size_t size = 0;
  clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, nullptr, &size);
  std::string log(size, '\0');
  if (size > 0) clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, size, log.data(), nullptr);
  while (!log.empty() && (log.back() == '\0' || log.back() == '\n' || log.back() == ' ')) log.pop_back();
  constexpr size_t kMaxLog = 4000;  // a runaway log would drown the message
  if (log.size() > kMaxLog) log = log.substr(0, kMaxLog) + "\n[... compiler log truncated]";
  return log.empty() ? "(the compiler left no log)" : log;
}

std::vector<unsigned char> read_binary(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Best effort: a cache that cannot be written only costs a compile next time.
void store_binary(cl_program program, const std::string& cache_dir, const std::string& key) {
  size_t size = 0;
  if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof(size), &size, nullptr) != CL_SUCCESS || size == 0) return;
  std::vector<unsigned char> binary(size);
  unsigned char* ptr = binary.data();
  if (clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof(ptr), &ptr, nullptr) != CL_SUCCESS) return;
  std::error_code ec;
  std::filesystem::create_directories(cache_dir, ec);
  if (ec) return;
  const std::string path = cache_dir + "/" + key + ".bin";
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return;
    f.write(reinterpret_cast<const char*>(binary.data()), static_cast<std::streamsize>(binary.size()));
    if (!f) {
      f.close();
      std::filesystem::remove(tmp, ec);
      return;
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) std::filesystem::remove(tmp, ec);
}

// The program from a cached binary, or nullptr when there is none or it does not load/build.
cl_program load_cached(cl_context context, cl_device_id device, const std::string& path, const std::string& options) {
  const std::vector<unsigned char> binary = read_binary(path);
  if (binary.empty()) return nullptr;
  const unsigned char* ptr = binary.data();
  const size_t size = binary.size();
  cl_int binary_status = CL_SUCCESS, err = CL_SUCCESS;
  cl_program program = clCreateProgramWithBinary(context, 1, &device, &size, &ptr, &binary_status, &err);
  if (err != CL_SUCCESS || binary_status != CL_SUCCESS || !program) {
    if (program) clReleaseProgram(program);
    return nullptr;
  }
  if (clBuildProgram(program, 1, &device, options.c_str(), nullptr, nullptr) != CL_SUCCESS) {
    clReleaseProgram(program);
    return nullptr;
  }
  return program;
}

}  // namespace

std::string error_name(cl_int code) {
  switch (code) {
    case CL_SUCCESS: return "CL_SUCCESS";
    case CL_DEVICE_NOT_FOUND: return "CL_DEVICE_NOT_FOUND";
    case CL_DEVICE_NOT_AVAILABLE: return "CL_DEVICE_NOT_AVAILABLE";
    case CL_COMPILER_NOT_AVAILABLE: return "CL_COMPILER_NOT_AVAILABLE";
    case CL_MEM_OBJECT_ALLOCATION_FAILURE: return "CL_MEM_OBJECT_ALLOCATION_FAILURE";
    case CL_OUT_OF_RESOURCES: return "CL_OUT_OF_RESOURCES";
    case CL_OUT_OF_HOST_MEMORY: return "CL_OUT_OF_HOST_MEMORY";
    case CL_BUILD_PROGRAM_FAILURE: return "CL_BUILD_PROGRAM_FAILURE";
    case CL_INVALID_VALUE: return "CL_INVALID_VALUE";
    case CL_INVALID_DEVICE: return "CL_INVALID_DEVICE";
    case CL_INVALID_CONTEXT: return "CL_INVALID_CONTEXT";
    case CL_INVALID_MEM_OBJECT: return "CL_INVALID_MEM_OBJECT";
    case CL_INVALID_BUFFER_SIZE: return "CL_INVALID_BUFFER_SIZE";
    case CL_INVALID_HOST_PTR: return "CL_INVALID_HOST_PTR";
    case CL_INVALID_BINARY: return "CL_INVALID_BINARY";
    case CL_INVALID_BUILD_OPTIONS: return "CL_INVALID_BUILD_OPTIONS";
    case CL_INVALID_PROGRAM_EXECUTABLE: return "CL_INVALID_PROGRAM_EXECUTABLE";
    case CL_INVALID_KERNEL_NAME: return "CL_INVALID_KERNEL_NAME";
    case CL_INVALID_KERNEL_ARGS: return "CL_INVALID_KERNEL_ARGS";
    case CL_INVALID_ARG_SIZE: return "CL_INVALID_ARG_SIZE";
    case CL_INVALID_WORK_GROUP_SIZE: return "CL_INVALID_WORK_GROUP_SIZE";
    case CL_INVALID_GLOBAL_WORK_SIZE: return "CL_INVALID_GLOBAL_WORK_SIZE";
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "CL error " + std::to_string(code);
  }
}

Expected<SelectedDevice> select_device(const std::string& spec) {
  FATHOM_ASSIGN_OR_RETURN(const int wanted, parse_device_spec(spec, "opencl"));  // -1: first GPU, else first device
  cl_uint n_platforms = 0;
  const cl_int rc = clGetPlatformIDs(0, nullptr, &n_platforms);
  if (rc != CL_SUCCESS || n_platforms == 0)
    return error(ErrorCode::kNotFound, "no OpenCL platform (" + (rc != CL_SUCCESS ? error_name(rc) : std::string("none registered")) +
                                           "); install a driver's ICD, e.g. pocl-opencl-icd or intel-opencl-icd");
  std::vector<cl_platform_id> platforms(n_platforms);
  clGetPlatformIDs(n_platforms, platforms.data(), nullptr);
  std::vector<SelectedDevice> all;
  for (cl_platform_id platform : platforms) {
    cl_uint n_devices = 0;
    if (clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 0, nullptr, &n_devices) != CL_SUCCESS || n_devices == 0) continue;
    std::vector<cl_device_id> devices(n_devices);
    clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, n_devices, devices.data(), nullptr);
    for (cl_device_id device : devices)
      all.push_back({platform, device, describe(platform, device, static_cast<int>(all.size()))});
  }
  if (all.empty()) return error(ErrorCode::kNotFound, "OpenCL platforms are installed but report no devices");
  if (wanted >= static_cast<int>(all.size()))
    return error(ErrorCode::kNotFound, strprintf("OpenCL device %d does not exist: there %s %zu (see `fathom devices`)", wanted,
                                                 all.size() == 1 ? "is" : "are", all.size()));
  if (wanted >= 0) return all[static_cast<size_t>(wanted)];
  for (const SelectedDevice& d : all)
    if (d.info.is_gpu) return d;
  return all.front();
}

std::string program_cache_key(const OpenClDeviceInfo& info, const std::string& source, const std::string& options) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const std::string* part : {&info.platform, &info.name, &info.driver_version, &info.device_version, &options, &source})
    h = fnv1a(*part + '\x1f', h);
  return strprintf("%016llx", static_cast<unsigned long long>(h));
}

Expected<BuiltProgram> build_program(cl_context context, const SelectedDevice& device, const std::string& source,
                                     const std::string& options, const std::string& cache_dir) {
  BuiltProgram out;
  const std::string key = program_cache_key(device.info, source, options);
  const std::string cached_path = cache_dir.empty() ? "" : cache_dir + "/" + key + ".bin";
  if (!cached_path.empty()) {
    if (cl_program p = load_cached(context, device.device, cached_path, options)) {
      out.program = p;
      out.from_cache = true;
      return out;
    }
  }
  const char* text = source.c_str();
  const size_t length = source.size();
  cl_int err = CL_SUCCESS;
  cl_program program = clCreateProgramWithSource(context, 1, &text, &length, &err);
  if (err != CL_SUCCESS || !program)
    return error(ErrorCode::kUnavailable, "clCreateProgramWithSource failed: " + error_name(err));
  err = clBuildProgram(program, 1, &device.device, options.c_str(), nullptr, nullptr);
  if (err != CL_SUCCESS) {
    const std::string log = build_log(program, device.device);
    clReleaseProgram(program);
    return error(ErrorCode::kUnavailable, "OpenCL program build failed on " + device.info.name + " (" + error_name(err) +
                                              ", options '" + options + "'); compiler log:\n" + log);
  }
  if (!cached_path.empty()) store_binary(program, cache_dir, key);
  out.program = program;
  return out;
}

}  // namespace fathom::opencl
#endif
