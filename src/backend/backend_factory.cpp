#include "backend/backend_factory.h"

#include "backend/backend_init.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/device_spec.h"
#include "backend/opencl/opencl_backend.h"

namespace fathom {

Expected<std::string> device_kind(const std::string& device) {
  if (device.empty() || device == "cpu") return std::string("cpu");
  const bool cuda = device == "cuda" || device.rfind("cuda:", 0) == 0;
  if (!parse_device_spec(device, cuda ? "cuda" : "opencl"))
    return error(ErrorCode::kInvalidArgument,
                 "unknown device '" + device + "'; use cpu, cuda, cuda:N, opencl or opencl:N (see `fathom devices`)");
  return std::string(cuda ? "cuda" : "opencl");
}

Expected<std::shared_ptr<Backend>> make_backend(const BackendOptions& options, const DeviceLayout& layout) {
  FATHOM_ASSIGN_OR_RETURN(const std::string kind, device_kind(options.device));
  auto cpu = std::make_shared<CpuBackend>(options.n_threads, options.on_repack_progress);
  if (kind == "cpu") return std::shared_ptr<Backend>(cpu);
  std::unique_ptr<Backend> device;
  BackendCandidate gpu;
  if (kind == "cuda") {
    CudaOptions o;
    o.device = options.device;
    o.cpu = cpu;
    gpu = {"cuda", [&device, o]() -> Status {
             FATHOM_ASSIGN_OR_RETURN(device, create_cuda_backend(o));
             return Status::ok();
           }};
  } else {
    OpenClOptions o;
    o.device = options.device;
    o.cpu = cpu;
    o.cache_dir = options.opencl_cache_dir.empty() ? default_opencl_cache_dir() : options.opencl_cache_dir;
    o.inject_build_error = options.opencl_inject_build_error;
    gpu = {"opencl", [&device, o]() -> Status {
             FATHOM_ASSIGN_OR_RETURN(device, create_opencl_backend(o));
             return Status::ok();
           }};
  }
  const std::vector<BackendCandidate> candidates = {gpu, {"cpu", []() -> Status { return Status::ok(); }}};
  RetryHooks hooks;
  hooks.log = options.log;
  FATHOM_RETURN_IF_ERROR(init_with_fallback(candidates, /*attempts=*/3, std::chrono::milliseconds(200), hooks).status());
  if (!device) return std::shared_ptr<Backend>(cpu);  // fell back
  return std::shared_ptr<Backend>(new PlacedBackend(cpu, std::move(device), layout.ranges, layout.attention));
}

}  // namespace fathom
