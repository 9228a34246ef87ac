// Private to src/backend/cuda: CudaBackend::Impl and what its parts share (the scratch pool,
// the pinned staging arena, error helpers). cuda_memory.cpp holds the memory side (staging,
// synchronization, CUDA graphs, weights, KV mirrors), cuda_ops.cpp the device ops, and
// cuda_backend.cpp start-up and the Backend interface.
#pragma once

#include "backend/cuda/cuda_backend.h"

#if FATHOM_HAVE_CUDA
#include <algorithm>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_blocks.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_layout.h"
#include "backend/device_fallback.h"
#include "backend/fused_input.h"
#include "backend/residency.h"
#include "core/log.h"

namespace fathom {

inline double gib(size_t bytes) { return static_cast<double>(bytes) / static_cast<double>(size_t{1} << 30); }

inline Status cuda_error(cudaError_t err) {
  cudaGetLastError();  // a non-sticky error must not be reported again by the next launch
  return error(err == cudaErrorMemoryAllocation ? ErrorCode::kOutOfMemory : ErrorCode::kUnavailable,
               strprintf("%s (%s)", cudaGetErrorString(err), cudaGetErrorName(err)));
}

inline Status cublas_error(cublasStatus_t st) {
  return error(st == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::kOutOfMemory : ErrorCode::kUnavailable,
               strprintf("cuBLAS: %s (%s)", cublasGetStatusString(st), cublasGetStatusName(st)));
}

// What the kernels do not cover (type, shape, memory): the op runs on the CPU, nothing is reported.
inline Status not_covered() { return error(ErrorCode::kUnsupported, "not covered by the CUDA kernels"); }

struct DeviceFree {
  void operator()(void* p) const { cudaFree(p); }
};
using DeviceMemory = std::unique_ptr<void, DeviceFree>;

// Scratch buffers by size class (cuda_layout.h), so an op reuses what the previous one gave
// back. All work runs in order on one stream, so a returned buffer may be handed out again at
// once: whatever the next op does with it is queued behind what the last one did.
class ScratchPool {
 public:
  ~ScratchPool() { trim(); }
  // Runs before cudaMalloc and cudaFree (a CUDA graph capture must end first).
  std::function<void()> before_driver_call;

  Status allocate(size_t bytes, void** out) {
    const size_t size = cuda::scratch_size_class(bytes);
    if (auto it = free_.find(size); it != free_.end()) {
      *out = it->second;
      free_.erase(it);
      return Status::ok();
    }
    if (before_driver_call) before_driver_call();
    cudaError_t err = cudaMalloc(out, size);
    if (err == cudaErrorMemoryAllocation) {  // cached buffers of other sizes may be what is missing
      cudaGetLastError();
      trim();
      err = cudaMalloc(out, size);
    }
    return err == cudaSuccess ? Status::ok() : cuda_error(err);
  }
  void release(void* p, size_t bytes) { free_.emplace(cuda::scratch_size_class(bytes), p); }
  void trim() {
    if (!free_.empty() && before_driver_call) before_driver_call();
    for (auto& [size, p] : free_) cudaFree(p);
    free_.clear();
  }

 private:
  std::multimap<size_t, void*> free_;  // size class -> idle buffer
};

// Page-locked host memory the uploads and the KV cache write-back are staged in, so copies are
// truly asynchronous (from pageable memory the driver may wait for the stream first). Regions are
// handed out in order and all free again once the stream has drained (reset, after a
// synchronization); chunks are kept for the next pass. Capped: past the cap, or where pinned
// memory cannot be had, take() returns null and the caller copies from pageable memory.
class PinnedArena {
 public:
  static constexpr size_t kChunkBytes = size_t{16} << 20;
  static constexpr size_t kMaxBytes = size_t{512} << 20;

  ~PinnedArena() {
    for (const Chunk& c : chunks_) cudaFreeHost(c.p);
  }
  // Runs before cudaHostAlloc (a CUDA graph capture must end first).
  std::function<void()> before_driver_call;

  void* take(size_t bytes) {
    bytes = (bytes + 255) & ~size_t{255};
    for (; current_ < chunks_.size(); ++current_) {
      Chunk& c = chunks_[current_];
      if (c.size - c.used >= bytes) {
        void* p = static_cast<uint8_t*>(c.p) + c.used;
        c.used += bytes;
        return p;
      }
    }
    const size_t size = std::max(bytes, kChunkBytes);
    if (failed_ || total_ + size > kMaxBytes) return nullptr;
    if (before_driver_call) before_driver_call();
    void* p = nullptr;
    if (cudaHostAlloc(&p, size, cudaHostAllocDefault) != cudaSuccess) {
      cudaGetLastError();
      failed_ = true;  // not retried: the pageable path works, only slower
      return nullptr;
    }
    total_ += size;
    chunks_.push_back({p, size, bytes});
    current_ = chunks_.size() - 1;
    return p;
  }
  void reset() {
    for (Chunk& c : chunks_) c.used = 0;
    current_ = 0;
  }

 private:
  struct Chunk {
    void* p = nullptr;
    size_t size = 0;
    size_t used = 0;
  };
  std::vector<Chunk> chunks_;
  size_t current_ = 0;
  size_t total_ = 0;
  bool failed_ = false;
};

// Returns the Status of a failed CUDA runtime call, launcher or cuBLAS call from the enclosing function.
#define FATHOM_CUDA_TRY(expr)                                                 \
  do {                                                                        \
    const cudaError_t fathom_cuda_err_ = (expr);                              \
    if (fathom_cuda_err_ != cudaSuccess) return cuda_error(fathom_cuda_err_); \
  } while (0)
#define FATHOM_CUBLAS_TRY(expr)                                                                   \
  do {                                                                                            \
    const cublasStatus_t fathom_cublas_st_ = (expr);                                              \
    if (fathom_cublas_st_ != CUBLAS_STATUS_SUCCESS) return cublas_error(fathom_cublas_st_);       \
  } while (0)

struct CudaBackend::Impl {
  explicit Impl(std::shared_ptr<CpuBackend> cpu_backend) : cpu(std::move(cpu_backend)) {
    pool.before_driver_call = [this] { end_capture(); };
    pinned.before_driver_call = [this] { end_capture(); };
  }
  ~Impl();

  // A matrix copied to the device: host bytes [begin, end) live at `memory`.
  struct DeviceWeight {
    uintptr_t end = 0;
    DeviceMemory memory;
  };
  // Device copy of one KV cache: per layer its K (and V) rows, [n_blocks * block_size] rows in
  // the host's order and stored type (the same bytes), and the host rows they mirror (a
  // different cache at the same address has other rows or sizes, and gets a fresh mirror).
  struct MirrorLayer {
    const uint8_t* host_k = nullptr;
    const uint8_t* host_v = nullptr;
    size_t n_rows = 0;
    size_t k_row_bytes = 0, v_row_bytes = 0;  // bytes per row, in the cache's stored types
    DeviceMemory k, v;
  };
  struct KvMirror {
    std::vector<MirrorLayer> layers;  // [n_layer]; layers without memory are seeded when needed
    bool out_of_memory = false;       // a layer did not fit: attention on this cache runs on the CPU
  };
  // Rows store_kv wrote to a mirror, staged in pinned memory on their way to the host cache
  // (copied there at the next synchronization, finish()).
  struct WriteBack {
    uint8_t* host = nullptr;         // the layer's row 0 on the host
    size_t row_bytes = 0;            // bytes per row, in the cache's stored type
    const uint8_t* staged = nullptr; // [rows.size(), row_bytes]
    std::vector<int64_t> rows;
  };
  // Device memory of the activation entries (residency.h): scratch-pool buffers, offset so an
  // entry's address has its host range's alignment mod 16 (the matvec kernels read x as float4).
  struct ActivationMemory {
    Impl& impl;
    std::unordered_map<uintptr_t, std::pair<void*, size_t>> buffers;  // address -> pool buffer

    Expected<uintptr_t> allocate(size_t bytes, uintptr_t host_begin) {
      void* p = nullptr;
      FATHOM_RETURN_IF_ERROR(impl.pool.allocate(bytes + 16, &p));
      const uintptr_t address = reinterpret_cast<uintptr_t>(p) + (host_begin & 15);
      buffers[address] = {p, bytes + 16};
      return address;
    }
    void release(uintptr_t address) {
      auto it = buffers.find(address);
      if (it == buffers.end()) return;
      impl.pool.release(it->second.first, it->second.second);
      buffers.erase(it);
    }
    Status upload(uintptr_t dst, const void* src, size_t bytes) { return impl.copy_in(reinterpret_cast<void*>(dst), src, bytes); }
    Status download(void* dst, uintptr_t src, size_t bytes) {
      return impl.download_now(dst, reinterpret_cast<const void*>(src), bytes);
    }
    Status copy(uintptr_t dst, uintptr_t src, size_t bytes) {
      const cudaError_t err = cudaMemcpyAsync(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), bytes,
                                              cudaMemcpyDeviceToDevice, impl.stream);
      return err == cudaSuccess ? Status::ok() : cuda_error(err);
    }
  };
  // Host ranges an op reads (synced to the host when it runs on the CPU) and writes (announced
  // after); with activations not kept on the device, the writes are read back after every op.
  using Span = HostSpan;

  CudaDeviceInfo info;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  std::shared_ptr<CpuBackend> cpu;                        // runs what the kernels do not cover
  bool resident = true;                                   // activations stay on the device between ops
  ScratchPool pool;
  PinnedArena pinned;
  std::vector<WriteBack> writebacks;                      // since the last finish()
  ActivationMemory activation_memory{*this, {}};
  ResidencyTable<ActivationMemory> activations{activation_memory};
  std::vector<std::pair<void*, size_t>> op_buffers;       // scratch of the running op (OpScope)
  std::map<uintptr_t, DeviceWeight> weights;              // by host start address
  std::set<const void*> host_weights;                     // did not fit: their matmuls run on the CPU
  std::unordered_map<const KvCache*, KvMirror> mirrors;
  bool warned_failure = false;                            // a device failure was reported once
  bool warned_memory = false;                             // running out of device memory was reported once
  uint64_t fallback_ops = 0;                              // ops run_on_device_or_cpu ran on the CPU delegate

  // CUDA graphs. From the third forward pass on, a pass of at most kGraphMaxTokens tokens (a
  // decode step: the matvec kernels, no cuBLAS) is captured instead of launched, one graph per
  // stretch between synchronizations (a MoE layer's routing ends one), and each graph updates
  // the previous pass's executable graph at the same index (cudaGraphExecUpdate: new addresses
  // and parameters, same shape; instantiated again when the shape changed). Uploads are staged
  // in pinned memory, which the graph's copies read when it runs, before the next reset.
  // Everything that waits or copies from pageable memory ends the capture first (end_capture).
  // If a graph cannot be captured, instantiated or launched, the pass's work is lost: end_forward
  // says so (the caller runs the pass again) and graphs stay off. FATHOM_CUDA_GRAPHS=0: never.
  static constexpr int64_t kGraphMaxTokens = cuda::kGemmMinTokens - 1;
  static constexpr int64_t kGraphWarmupPasses = 2;  // weights uploaded, scratch and staging grown
  bool graphs = true;
  int64_t passes = 0;            // forward passes ended
  int64_t pass_tokens = 0;       // tokens of the running pass (begin_forward); 0: no pass
  bool capturing = false;
  size_t segment = 0;            // graphs launched in this pass
  std::vector<cudaGraphExec_t> execs;  // by segment, kept for the next pass
  bool pass_lost = false;        // this pass's work did not all run: end_forward returns false

  // Scratch taken during one op goes back to the pool when the op ends, as do activation
  // buffers the op's requests replaced; the op's work is queued by then, and whatever the next
  // op does with them is queued behind it.
  class OpScope {
   public:
    explicit OpScope(Impl& impl) : impl_(impl) { impl_.begin_capture(); }
    ~OpScope() {
      for (const auto& [p, bytes] : impl_.op_buffers) impl_.pool.release(p, bytes);
      impl_.op_buffers.clear();
      impl_.activations.end_op();
    }

   private:
    Impl& impl_;
  };

  template <typename T>
  Status scratch(int64_t count, T** out);
  // Scratch holding a copy of host[0, count) (parameters: tables, positions, angles).
  template <typename T>
  Status upload(const T* host, int64_t count, T** out);
  // Queues host -> device through pinned staging (pageable when none is left); host may change after.
  Status copy_in(void* dst, const void* src, size_t bytes);
  // device -> host, done when it returns (a synchronization: finish() runs too).
  Status download_now(void* dst, const void* src, size_t bytes);
  // Waits for the queued work; then the staged KV rows are copied to the host cache and the
  // pinned staging is free again. Kernel errors of earlier ops surface here.
  Status finish();
  // CUDA graphs (see `graphs`): capture starts with a device op of a qualifying pass and ends,
  // with the graph launched, before anything that must not be captured.
  void begin_capture();
  void end_capture();
  void graph_failed(const char* what, cudaError_t err);
  void drop_graphs();

  // Device addresses of activations (residency.h): an op resolves all of its ranges in one
  // resolve_op call, so none is moved by a later one.
  template <typename T>
  Expected<T*> input(const T* host, int64_t count) {
    FATHOM_ASSIGN_OR_RETURN(const uintptr_t a, activations.input(host, static_cast<size_t>(count) * sizeof(T)));
    return reinterpret_cast<T*>(a);
  }
  Expected<float*> output(const float* host, int64_t count) {
    FATHOM_ASSIGN_OR_RETURN(const uintptr_t a, activations.output(host, static_cast<size_t>(count) * sizeof(float)));
    return reinterpret_cast<float*>(a);
  }
  Expected<float*> update(const float* host, int64_t count) {
    FATHOM_ASSIGN_OR_RETURN(const uintptr_t a, activations.update(host, static_cast<size_t>(count) * sizeof(float)));
    return reinterpret_cast<float*>(a);
  }
  // Makes host spans current / tells the device the host wrote them; a failure is reported once
  // (the host copy may then be stale: the pass's results are lost).
  void sync(const Span& s);
  void wrote(const Span& s);
  // After an op on the device: with activations not kept there, its outputs go back now.
  template <typename Spans>
  void after_op(const Spans& writes) {
    if (resident) return;
    for (const Span& w : writes) sync(w);
    activations.clear();
    activations.end_op();
  }

  bool covers(const TensorView& w) const {
    const int64_t block_values = cuda::matmul_block_values(w.dtype);
    return block_values != 0 && w.ne[0] % block_values == 0;
  }
  // Device address of w's bytes, uploaded on first use; nullptr when w stays in host memory.
  Expected<const uint8_t*> device_weight(const TensorView& w);
  const uint8_t* find_weight(const void* p, size_t bytes) const;
  // Copies host bytes [p, p + bytes) to the device; false (after saying so) when they do not fit.
  Expected<bool> upload_weights(const void* p, size_t bytes, const std::string& what);
  // The layer's mirror, created and seeded from the host rows when missing or stale; nullptr
  // when it does not fit in device memory.
  Expected<MirrorLayer*> mirror_layer(KvCache& kv, int64_t layer);
  // Frees what device memory can be given back without losing anything: idle scratch and the KV
  // mirrors of caches other than `keep` (copies; seeded again from the host if used again).
  void free_caches(const KvCache* keep);
  // cudaMalloc into *out, retried once after free_caches(keep) when the device is out of memory.
  cudaError_t device_malloc(size_t bytes, const KvCache* keep, DeviceMemory* out);
  void report_out_of_memory(const std::string& message);
  // Reports a failed device op once, then the op reruns on the CPU.
  void device_failed(const char* op, const Status& st);
  // Runs an op on the device, else on the CPU (backend/device_fallback.h).
  template <typename DeviceOp, typename CpuOp>
  void run(const char* op, std::initializer_list<Span> reads, std::initializer_list<Span> writes, DeviceOp&& on_device,
           CpuOp&& on_cpu) {
    run_on_device_or_cpu(*this, op, reads, writes, on_device, on_cpu);
  }

  // The products of a batch: the fused input (backend/fused_input.h) made on the device from its
  // operands, every covered product queued on device-resident inputs and outputs. Jobs the
  // kernels do not cover are left in *on_cpu; on an error nothing was queued for them.
  Status matmul_batch(const std::vector<MatmulJob>& jobs, const FusedInput* stage, std::vector<MatmulJob>* on_cpu);
  // matmul_batch, then the CPU's share (everything after a device error, reported once as `op`),
  // with the stage made on the host first when the device could not make it.
  void run_batch(const std::vector<MatmulJob>& jobs, const FusedInput* stage, const char* op);
  Status gemm(const TensorView& w, const uint8_t* w_device, const float* x, int64_t n_tokens, float* y);
  Status rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out);
  Status rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions, const RopeParams& p);
  Status swiglu(const float* gate, const float* up, int64_t n, float* out);
  Status add(float* x, const float* y, int64_t n);
  Status add_bias(float* x, const float* bias, int64_t n_rows, int64_t n);
  Status copy_strided(const float* src, float* dst, const StridedCopy& c);
  Status top_candidates(const float* logits, int64_t n_rows, int64_t n_vocab, int64_t k, int32_t* ids, float* values);
  Status store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v);
  // Shared by attention and mla_attention: queries are q_a's rows followed by q_b's (see AttentionArgs).
  Status attend(const float* q_a, int64_t width_a, const float* q_b, int64_t width_b, KvCache& kv, int64_t layer,
                const AttentionBatch& batch, int64_t n_head, int64_t group, int64_t head_dim_v, bool latent, float scale,
                float* out);
};

template <typename T>
Status CudaBackend::Impl::scratch(int64_t count, T** out) {
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(T);
  void* p = nullptr;
  FATHOM_RETURN_IF_ERROR(pool.allocate(bytes, &p));
  op_buffers.emplace_back(p, bytes);
  *out = static_cast<T*>(p);
  return Status::ok();
}

template <typename T>
Status CudaBackend::Impl::upload(const T* host, int64_t count, T** out) {
  FATHOM_RETURN_IF_ERROR(scratch(count, out));
  return copy_in(*out, host, static_cast<size_t>(count) * sizeof(T));
}

}  // namespace fathom
#endif
