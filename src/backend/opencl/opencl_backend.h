// OpenCL backend for integrated GPUs (Intel UHD/Iris Xe/Arc, AMD Radeon iGPUs) and any other
// OpenCL 1.2 device; tested on PoCL, which runs the kernels on the CPU.
//
// Memory: the Backend interface hands over host pointers. Weights (and the KV cache) are wrapped
// where they lie: on a device that shares memory with the host (CL_DEVICE_HOST_UNIFIED_MEMORY)
// as CL_MEM_USE_HOST_PTR buffers over the enclosing whole pages, so the mmapped GGUF is read in
// place; on a discrete GPU the same pages are copied once. Wrapped buffers are cached by address
// for the life of the backend, so weight memory must stay alive and unchanged as long as the
// backend (Model owns both). Activations are copied into per-op device buffers and back.
//
// Placement: matmul runs in a kernel for Q4_0, Q8_0, Q4_K, IQ4_NL, IQ4_XS, F16 and F32 weights;
// rms_norm, rope, swiglu, add, attention and MLA attention have kernels; get_rows, store_kv, other
// weight types and shapes past the kernels' limits go to the CPU delegate (a CpuBackend), so every
// model runs. on_device() says which. Attention reads the KV cache in its stored type when that is
// f32, f16 or q8_0 (for K and for V; the host writes the rows, the device reads them where they
// lie); bf16 and q4_0 caches attend on the CPU delegate.
//
// Batches and fused ops: matmul_batch uploads each distinct input once, enqueues every product,
// and reads all outputs back after one wait; products placed on the CPU run meanwhile on the
// host. rms_norm_matmul_batch uploads x and normalizes it in a kernel into the device buffer the
// products read (`normed` stays unwritten unless a product runs on the CPU); swiglu_matmul
// computes silu(gate) * up into the down product's device input the same way. So a layer's q/k/v
// (or gate/up) costs one upload and one wait instead of a norm round trip plus one per product.
// A device error is reported once and the device's share of the op reruns on the CPU delegate.
//
// Kernel variants (OpenClKernelVariants) are chosen when the program is built, from the device's
// extensions: half sums inside a Q4_0/Q8_0/Q4_K/IQ4_NL/IQ4_XS block (cl_khr_fp16), subgroup
// reductions (cl_khr_subgroups / cl_intel_subgroups), int8 activations with integer dot products
// for Q4_0, Q8_0 and IQ4_NL (cl_khr_integer_dot_product). Each can be forced, including an emulation that needs no
// extension, so devices without them (PoCL) still test the variant's arithmetic.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"

namespace fathom {

class CpuBackend;

// How one kernel variant is chosen. kAuto: kNative when the device has the extension, else kOff.
// kEmulated: the variant's arithmetic without the extension (slower; for tests on devices that
// lack it). Forcing kNative on a device without the extension is an error.
enum class OpenClVariant { kAuto, kOff, kNative, kEmulated };

struct OpenClKernelVariants {
  OpenClVariant f16_accumulation = OpenClVariant::kAuto;    // half sums inside each quantized block (cl_khr_fp16)
  OpenClVariant subgroup_reduction = OpenClVariant::kAuto;  // sub_group_reduce_add (cl_khr_subgroups, cl_intel_subgroups)
  OpenClVariant int8_dot = OpenClVariant::kAuto;            // int8 activations for Q4_0/Q8_0/IQ4_NL (cl_khr_integer_dot_product)
};

struct OpenClOptions {
  std::string device = "opencl";     // "opencl": the first GPU, else the first device; "opencl:N": device N in `fathom devices` order
  int n_threads = 0;                 // threads of the CPU backend that runs what the kernels do not cover; 0: all cores
  std::string cache_dir;             // compiled program binaries are kept here; empty: no disk cache
  bool inject_build_error = false;   // tests: the program build fails (exercises retry and CPU fallback)
  std::shared_ptr<CpuBackend> cpu;   // the CPU backend to delegate to (shared with a placement); null: its own with n_threads
  OpenClKernelVariants variants;     // kernel variants; all kAuto: chosen from the device's extensions
};

// What the chosen device offers; `fathom devices` shows the same fields for every device.
struct OpenClDeviceInfo {
  int index = 0;                     // position in `fathom devices` order (platforms, then their devices)
  std::string platform;              // platform name, e.g. "Portable Computing Language"
  std::string name;                  // device name
  std::string driver_version;        // CL_DRIVER_VERSION
  std::string device_version;        // CL_DEVICE_VERSION, e.g. "OpenCL 3.0 PoCL ..."
  bool is_gpu = false;               // CL_DEVICE_TYPE_GPU
  bool host_unified = false;         // shares memory with the host: host memory is used in place
  bool fp16 = false;                 // cl_khr_fp16
  bool subgroups = false;            // cl_khr_subgroups or cl_intel_subgroups
  bool int_dot = false;              // cl_khr_integer_dot_product
  uint64_t global_memory_bytes = 0;  // CL_DEVICE_GLOBAL_MEM_SIZE
  uint64_t max_alloc_bytes = 0;      // CL_DEVICE_MAX_MEM_ALLOC_SIZE: largest single buffer
  int compute_units = 0;             // CL_DEVICE_MAX_COMPUTE_UNITS
};

// True when this build has the OpenCL backend (FATHOM_OPENCL found the headers and loader).
bool opencl_compiled_in();
// $XDG_CACHE_HOME/fathom/opencl, else $HOME/.cache/fathom/opencl; empty when neither is set.
std::string default_opencl_cache_dir();
// Brings up the device and builds the kernels. Errors: kInvalidArgument (bad device string),
// kNotFound (no OpenCL runtime, platform or such device: final), kUnavailable (context, queue or
// program build failed; the message carries the compiler log: worth a retry).
Expected<std::unique_ptr<Backend>> create_opencl_backend(const OpenClOptions& options);

#if FATHOM_HAVE_OPENCL
class OpenClBackend final : public Backend {
 public:
  static Expected<std::unique_ptr<OpenClBackend>> create(const OpenClOptions& options);
  ~OpenClBackend() override;

  const char* name() const override { return "opencl"; }
  int n_threads() const override;

  // True when (op, weight type) runs in an OpenCL kernel rather than on the CPU delegate (for
  // matmul also subject to shape: rows a multiple of the block size, tensor under max_alloc_bytes).
  // For Op::kAttention the type is a KV cache element type (K's or V's).
  bool on_device(Op op, DType weight_type) const override;
  const OpenClDeviceInfo& device() const;
  bool program_from_cache() const;  // the kernels were loaded from the disk cache, not compiled
  // The variants the program was built with (none kAuto).
  const OpenClKernelVariants& variants() const;
  // Ops with a kernel that ran on the CPU delegate instead: not covered (shape, KV cache type)
  // or failed on the device. Matmuls of weight types without a kernel are not counted.
  uint64_t fallback_ops() const;

  void matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) override;
  void matmul_batch(const std::vector<MatmulJob>& jobs) override;
  void rms_norm_matmul_batch(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps,
                             float* normed, const std::vector<MatmulJob>& jobs) override;
  void swiglu_matmul(const TensorView& w, float* gate, const float* up, int64_t n_tokens, float* y) override;
  void get_rows(const TensorView& table, const int32_t* ids, int64_t n_ids, float* out) override;
  void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out) override;
  void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
            const RopeParams& params) override;
  void store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v) override;
  void attention(const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch, int64_t n_head, int64_t n_head_kv,
                 int64_t head_dim_k, int64_t head_dim_v, float scale, float* out) override;
  void mla_attention(const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer, const AttentionBatch& batch,
                     int64_t n_head, int64_t kv_lora_rank, int64_t n_rot, float scale, float* out) override;
  void swiglu(const float* gate, const float* up, int64_t n, float* out) override;
  void add(float* x, const float* y, int64_t n) override;

 private:
  struct Impl;
  explicit OpenClBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};
#endif

}  // namespace fathom
