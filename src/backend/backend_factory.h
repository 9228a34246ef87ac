// Which backend runs a model: the CPU backend alone, or an accelerator (CUDA, OpenCL) in front of
// it behind a PlacedBackend. The factory knows backends and memory ranges, not models: the
// model layer decides where each weight and each layer's attention go (model/placement.h) and
// hands the result here as PlacedBackend ranges, so backend/ never reaches up into model/.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/placed_backend.h"
#include "core/status.h"

namespace fathom {

struct BackendOptions {
  int n_threads = 0;  // 0: all cores
  std::string device = "cpu";  // "cpu", "cuda" or "cuda:N" (CUDA ordinal), "opencl" (first GPU, else first device) or "opencl:N" (`fathom devices` order)
  std::string opencl_cache_dir = "";  // compiled kernel cache; empty: $XDG_CACHE_HOME/fathom/opencl (or ~/.cache)
  bool opencl_inject_build_error = false;  // tests: break the kernel build to exercise the CPU fallback
  std::function<void(const std::string&)> log = nullptr;  // backend retries and fallbacks; null: stderr
  std::function<void(uint64_t done_bytes, uint64_t total_bytes)> on_repack_progress = nullptr;  // CpuBackend's RepackProgress
};

// The accelerator kind a device name asks for ("cpu", "cuda", "opencl"), or kInvalidArgument for
// a malformed name: checked before any start-up, since a typo is not worth a retry.
Expected<std::string> device_kind(const std::string& device);

// Where a hybrid backend sends each op (PlacedBackend): the placed weights' memory and, per layer,
// where its attention runs. Unused when the device is the CPU.
struct DeviceLayout {
  std::vector<PlacedBackend::Range> ranges;  // weight memory and its side
  std::vector<Placed> attention;             // [n_layer] where each layer's KV cache and attention live
};

// The backend options.device names. A GPU backend that fails to start (no runtime, kernel build
// error) is retried with growing delays, then replaced by the CPU backend; each step is logged
// with its reason (backend_init.h). An accelerator comes wrapped in a PlacedBackend that sends
// each op to the CPU or the device by `layout`, both sharing one CPU backend (one thread pool).
// The caller tells a fallback by the result's name() being "cpu".
Expected<std::shared_ptr<Backend>> make_backend(const BackendOptions& options, const DeviceLayout& layout);

}  // namespace fathom
