// CUDA backend for NVIDIA GPUs (built for sm_80 and sm_90 by default; see cuda.cmake).
//
// Memory: the Backend interface names buffers by host pointers. Matrices are copied to device
// memory once, on first use or all up front in prepare_matmul_weights, and found again by host
// address, so their memory must stay alive and unchanged as long as the backend (Model owns
// both); norm and bias vectors are staged with each op (small). Activations stay on the device between
// ops (backend/residency.h): an op's inputs are uploaded only when the device has no current
// copy, its outputs stay in device memory, and the host copy is brought up to date only when
// asked (sync_to_host: MoE routing, the logits) or when an op falls back to the CPU; nothing
// waits for the GPU in between. Uploads go through pinned staging buffers, so they do not wait
// either. FATHOM_CUDA_SYNC_OPS=1 in the environment reads every op's outputs back at once instead
// (the behaviour before residency, for comparison).
//
// Decode passes (up to 15 tokens, from the third pass on) are captured as CUDA graphs, one per
// stretch between synchronizations, and launched as a whole; the next pass updates them in
// place. A graph that fails loses its pass's work: end_forward returns false, run_forward runs
// the pass again, and graphs stay off from then on. FATHOM_CUDA_GRAPHS=0 turns them off.
//
// Each KV cache layer has a device mirror with the host's row layout and stored type (f32, f16
// or q8_0; bf16 and q4_0 caches have none and attend on the CPU): store_kv converts the rows on
// the device, writes the mirror and stages the converted rows for the host cache, which gets
// them at the next synchronization (at the latest end_forward, so a cache must not be destroyed
// in the middle of a forward pass); attention reads the mirror. A mirror is seeded from the host rows when first needed and found
// again by the cache's address; after that, rows attention reads must come through this
// backend's store_kv, as in a forward pass (rows restored from disk or written by another
// backend later, or into a new cache built where an old one was, are not seen).
//
// Placement: matmul runs on the device for Q4_0, Q8_0, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, F16,
// BF16 and F32 weights (matrix-vector kernels on the GGUF blocks below 16 tokens, f16 dequantization +
// cuBLAS from 16); rms_norm, rope, swiglu, add, attention and MLA attention have kernels;
// get_rows, other weight types, matrices that do not fit in device memory and shapes past the
// kernels' limits go to an internal CpuBackend, so every model runs. on_device() says which. A
// CUDA error during an op is reported once and the op reruns on the CPU.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "core/status.h"

namespace fathom {

class CpuBackend;

struct CudaOptions {
  std::string device = "cuda";  // "cuda": device 0; "cuda:N": CUDA device N (`fathom devices` order)
  int n_threads = 0;            // threads of the CPU backend that runs what the kernels do not cover; 0: all cores
  std::shared_ptr<CpuBackend> cpu;  // the CPU backend to delegate to (shared with a placement); null: its own with n_threads
  bool resident_activations = true; // false (or FATHOM_CUDA_SYNC_OPS=1): every op's outputs are read back at once
  bool graphs = true;               // decode passes as CUDA graphs; false (or FATHOM_CUDA_GRAPHS=0): kernel by kernel
};

// What the device reaches, measured (the ceilings `fathom bench` relates its results to).
struct CudaPeaks {
  double copy_gb_s = 0.0;     // device-to-device copy, bytes read + written per second / 1e9
  double fp16_tflops = 0.0;   // cuBLAS f16 x f16 GEMM with f32 accumulation (as the prefill path runs)
  size_t copy_bytes = 0;      // buffer copied
  int64_t gemm_n = 0;         // n x n x n product timed
};

struct CudaDeviceInfo {
  int index = 0;                   // CUDA device ordinal
  std::string name;                // e.g. "NVIDIA H200"
  int cc_major = 0;                // compute capability
  int cc_minor = 0;
  int multiprocessors = 0;
  uint64_t total_memory_bytes = 0;
};

// Memory of the CUDA device `device` names ("cuda", "cuda:N"), as cudaMemGetInfo reports it now:
// for checks made before the backend starts. kNotFound without CUDA, a driver or that device.
struct CudaMemoryInfo {
  std::string name;          // device name
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
};
Expected<CudaMemoryInfo> cuda_memory_info(const std::string& device);

// True when this build has the CUDA backend (FATHOM_CUDA found nvcc, cudart and cuBLAS).
bool cuda_compiled_in();
// Brings up the device. Errors: kInvalidArgument (bad device string), kNotFound (built without
// CUDA, no driver, no device, no such device, or no kernels for its architecture: final),
// kUnavailable (context, stream or cuBLAS start-up failed: worth a retry).
Expected<std::unique_ptr<Backend>> create_cuda_backend(const CudaOptions& options);

#if FATHOM_HAVE_CUDA
class CudaBackend final : public Backend {
 public:
  static Expected<std::unique_ptr<CudaBackend>> create(const CudaOptions& options);
  ~CudaBackend() override;

  const char* name() const override { return "cuda"; }
  int n_threads() const override;

  // True when (op, weight type) runs in a CUDA kernel rather than on the CPU delegate (for matmul
  // also subject to shape and memory: rows a whole number of blocks, the matrix fits on the device).
  // For Op::kAttention the type is a KV cache element type (K's or V's).
  bool on_device(Op op, DType weight_type) const override;
  const CudaDeviceInfo& device() const;
  // Ops with a kernel that ran on the CPU delegate instead: not covered (shape, KV cache type,
  // device memory) or failed on the device. Matmuls of weights kept on the host are not counted.
  uint64_t fallback_ops() const;
  // Times a device-to-device copy of copy_bytes and an n x n x n f16 GEMM (best of a few runs
  // after a warm-up each). Takes about a second; needs ~2 x copy_bytes of free device memory.
  Expected<CudaPeaks> measure_peaks(size_t copy_bytes = size_t{2} << 30, int64_t gemm_n = 8192);

  // Uploads every matrix with a kernel; what does not fit in free device memory stays on the
  // host (an error line says how much was needed and what to do) and runs on the CPU delegate.
  void prepare_matmul_weights(const std::vector<TensorView>& weights, bool file_backed) override;
  void matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) override;
  // One upload per distinct input, one wait per batch; the fused ops make their input (the norm,
  // the SwiGLU) on the device without a round trip through the host.
  void matmul_batch(const std::vector<MatmulJob>& jobs) override;
  void rms_norm_matmul_batch(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps, float* normed,
                             const std::vector<MatmulJob>& jobs) override;
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
  void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) override;
  void copy_strided(const float* src, float* dst, const StridedCopy& c) override;
  void top_candidates(const float* logits, int64_t n_rows, int64_t n_vocab, int64_t k, int32_t* ids, float* values) override;
  void sync_to_host(const float* p, int64_t n) override;
  void host_wrote(const float* p, int64_t n) override;
  void begin_forward(int64_t n_tokens) override;
  bool end_forward() override;  // false when a CUDA graph failed: run the pass again
  bool resident_activations() const;

 private:
  struct Impl;
  explicit CudaBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};
#endif

}  // namespace fathom
