#include "backend/cuda/cuda_backend.h"

#if FATHOM_HAVE_CUDA
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <set>
#include <unordered_map>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/device_spec.h"
#include "backend/fused_input.h"
#include "backend/residency.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_blocks.h"
#include "backend/cuda/cuda_layout.h"
#include "core/log.h"

namespace fathom {

namespace {

// Device memory kept free when weights are uploaded up front: scratch for activations and the
// f16 weight slabs of the cuBLAS path, cuBLAS's workspace, and the KV cache mirrors.
constexpr size_t kReservedBytes = size_t{1} << 30;

double gib(size_t bytes) { return static_cast<double>(bytes) / static_cast<double>(size_t{1} << 30); }

Status cuda_error(cudaError_t err) {
  cudaGetLastError();  // a non-sticky error must not be reported again by the next launch
  return error(err == cudaErrorMemoryAllocation ? ErrorCode::kOutOfMemory : ErrorCode::kUnavailable,
               strprintf("%s (%s)", cudaGetErrorString(err), cudaGetErrorName(err)));
}

Status cublas_error(cublasStatus_t st) {
  return error(st == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::kOutOfMemory : ErrorCode::kUnavailable,
               strprintf("cuBLAS: %s (%s)", cublasGetStatusString(st), cublasGetStatusName(st)));
}

// What the kernels do not cover (type, shape, memory): the op runs on the CPU, nothing is reported.
Status not_covered() { return error(ErrorCode::kUnsupported, "not covered by the CUDA kernels"); }

// Why cudaGetDeviceCount failed, in words a user can act on.
std::string driver_problem(cudaError_t err) {
  std::string what = cudaGetErrorString(err);
  if (err == cudaErrorInsufficientDriver) {
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    what = driver == 0 ? "no NVIDIA driver is loaded (libcuda.so.1 not found)"
                       : strprintf("the NVIDIA driver supports CUDA %d.%d, older than this build's runtime %d.%d", driver / 1000,
                                   driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
  }
  return what + " (" + cudaGetErrorName(err) + ")";
}

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

}  // namespace

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
  // the host's order, and the host rows they mirror (a different cache at the same address has
  // other rows or sizes, and gets a fresh mirror).
  struct MirrorLayer {
    const float* host_k = nullptr;
    const float* host_v = nullptr;
    size_t n_rows = 0;
    DeviceMemory k, v;
  };
  struct KvMirror {
    std::vector<MirrorLayer> layers;  // [n_layer]; layers without memory are seeded when needed
    bool out_of_memory = false;       // a layer did not fit: attention on this cache runs on the CPU
  };
  // Rows store_kv wrote to a mirror, staged in pinned memory on their way to the host cache
  // (copied there at the next synchronization, finish()).
  struct WriteBack {
    float* host = nullptr;         // the layer's row 0 on the host
    int64_t width = 0;             // floats per row
    const float* staged = nullptr; // [rows.size(), width]
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
  struct Span {
    const float* p = nullptr;
    int64_t n = 0;
  };

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
  void after_op(std::initializer_list<Span> writes);

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
  // Runs an op on the device, else on the CPU: quietly where the device does not cover it
  // (kUnsupported: placement, not failure), after device_failed where it failed. The CPU reads
  // `reads` from the host (synced first, with the KV cache's staged rows) and its `writes` are
  // announced to the device after.
  template <typename DeviceOp, typename CpuOp>
  void run(const char* op, std::initializer_list<Span> reads, std::initializer_list<Span> writes, DeviceOp&& on_device,
           CpuOp&& on_cpu) {
    const Status st = on_device();
    if (st.is_ok()) return after_op(writes);
    if (st.code() != ErrorCode::kUnsupported) device_failed(op, st);
    for (const Span& r : reads) sync(r);
    if (const Status done = finish(); !done.is_ok()) device_failed(op, done);
    on_cpu();
    for (const Span& w : writes) wrote(w);
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

CudaBackend::Impl::~Impl() {
  cudaSetDevice(info.index);
  if (capturing) {
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    capturing = false;
  }
  drop_graphs();
  if (stream) cudaStreamSynchronize(stream);
  activations.clear();
  activations.end_op();
  if (cublas) cublasDestroy(cublas);
  if (stream) cudaStreamDestroy(stream);
}

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

Status CudaBackend::Impl::copy_in(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return Status::ok();
  if (void* staged = pinned.take(bytes)) {
    std::memcpy(staged, src, bytes);
    FATHOM_CUDA_TRY(cudaMemcpyAsync(dst, staged, bytes, cudaMemcpyHostToDevice, stream));
  } else {
    // From pageable memory the call returns once the bytes are staged, so src may change after.
    end_capture();  // not allowed in a graph
    FATHOM_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
  }
  return Status::ok();
}

Status CudaBackend::Impl::download_now(void* dst, const void* src, size_t bytes) {
  end_capture();
  void* staged = pinned.take(bytes);
  FATHOM_CUDA_TRY(cudaMemcpyAsync(staged ? staged : dst, src, bytes, cudaMemcpyDeviceToHost, stream));
  FATHOM_CUDA_TRY(cudaStreamSynchronize(stream));
  if (staged) std::memcpy(dst, staged, bytes);
  return finish();
}

Status CudaBackend::Impl::finish() {
  end_capture();
  FATHOM_CUDA_TRY(cudaStreamSynchronize(stream));
  for (const WriteBack& w : writebacks)
    for (size_t i = 0; i < w.rows.size(); ++i)
      std::memcpy(w.host + w.rows[i] * w.width, w.staged + static_cast<int64_t>(i) * w.width,
                  static_cast<size_t>(w.width) * sizeof(float));
  writebacks.clear();
  pinned.reset();
  return Status::ok();
}

void CudaBackend::Impl::begin_capture() {
  if (capturing || !graphs || !resident || pass_lost || passes < kGraphWarmupPasses || pass_tokens <= 0 ||
      pass_tokens > kGraphMaxTokens)
    return;
  if (const cudaError_t err = cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed); err != cudaSuccess) {
    cudaGetLastError();
    graphs = false;  // nothing was captured, so nothing is lost
    Logger().log(LogLevel::kWarn, strprintf("cuda: cannot capture CUDA graphs on %s (%s); launching kernels one by one",
                                            info.name.c_str(), cudaGetErrorString(err)));
    return;
  }
  capturing = true;
}

void CudaBackend::Impl::end_capture() {
  if (!capturing) return;
  capturing = false;
  cudaGraph_t graph = nullptr;
  cudaError_t err = cudaStreamEndCapture(stream, &graph);
  const char* what = "capture";
  if (err == cudaSuccess && graph == nullptr) err = cudaErrorStreamCaptureInvalidated;
  if (err == cudaSuccess) {
    if (segment >= execs.size()) execs.resize(segment + 1, nullptr);
    cudaGraphExec_t& exec = execs[segment];
    if (exec) {
      cudaGraphExecUpdateResultInfo result{};
      if (cudaGraphExecUpdate(exec, graph, &result) != cudaSuccess) {  // another shape: instantiate anew
        cudaGetLastError();
        cudaGraphExecDestroy(exec);
        exec = nullptr;
      }
    }
    if (!exec) {
      what = "instantiation";
      err = cudaGraphInstantiate(&exec, graph, 0);
      if (err != cudaSuccess) exec = nullptr;
    }
    if (err == cudaSuccess) {
      what = "launch";
      err = cudaGraphLaunch(exec, stream);
    }
  }
  if (graph) cudaGraphDestroy(graph);
  ++segment;
  if (err != cudaSuccess) graph_failed(what, err);
}

void CudaBackend::Impl::graph_failed(const char* what, cudaError_t err) {
  cudaGetLastError();
  pass_lost = true;
  graphs = false;
  drop_graphs();
  Logger().log(LogLevel::kWarn, strprintf("cuda: CUDA graph %s failed on %s (%s); the forward pass runs again, and later "
                                          "ones launch kernels one by one",
                                          what, info.name.c_str(), cudaGetErrorString(err)));
}

void CudaBackend::Impl::drop_graphs() {
  for (cudaGraphExec_t exec : execs)
    if (exec) cudaGraphExecDestroy(exec);
  execs.clear();
}

void CudaBackend::Impl::sync(const Span& s) {
  if (!s.p || s.n <= 0) return;
  if (const Status st = activations.to_host(s.p, static_cast<size_t>(s.n) * sizeof(float)); !st.is_ok()) {
    device_failed("reading activations back", st);
    pass_lost = true;  // the host copy is stale: run the pass again
  }
}

void CudaBackend::Impl::wrote(const Span& s) {
  if (!s.p || s.n <= 0) return;
  if (const Status st = activations.host_wrote(s.p, static_cast<size_t>(s.n) * sizeof(float)); !st.is_ok()) {
    device_failed("copying activations in", st);
    pass_lost = true;
  }
}

void CudaBackend::Impl::after_op(std::initializer_list<Span> writes) {
  if (resident) return;
  for (const Span& w : writes) sync(w);
  activations.clear();
  activations.end_op();
}

const uint8_t* CudaBackend::Impl::find_weight(const void* p, size_t bytes) const {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = weights.upper_bound(a);
  if (it == weights.begin()) return nullptr;
  --it;
  if (it->second.end < a + bytes) return nullptr;
  return static_cast<const uint8_t*>(it->second.memory.get()) + (a - it->first);
}

Expected<bool> CudaBackend::Impl::upload_weights(const void* host, size_t bytes, const std::string& what) {
  end_capture();  // allocates, and copies from pageable memory
  DeviceMemory memory;
  const cudaError_t err = device_malloc(bytes, nullptr, &memory);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    report_out_of_memory(strprintf("%s (%.2f GiB) does not fit on %s (%.2f GiB of %.2f GiB free); it and any other matrix "
                                   "that does not fit run on the CPU, which is much slower. Use a smaller quantization "
                                   "or a smaller model",
                                   what.c_str(), gib(bytes), info.name.c_str(), gib(free_bytes), gib(total_bytes)));
    return false;
  }
  if (err != cudaSuccess) return cuda_error(err);
  // On the ops' stream: a plain cudaMemcpy from pageable memory may return before the bytes land,
  // and the ops' non-blocking stream would not wait for it.
  FATHOM_CUDA_TRY(cudaMemcpyAsync(memory.get(), host, bytes, cudaMemcpyHostToDevice, stream));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(host);
  DeviceWeight& w = weights[begin];  // a shorter region at the same address is replaced
  w.end = begin + bytes;
  w.memory = std::move(memory);
  return true;
}

Expected<const uint8_t*> CudaBackend::Impl::device_weight(const TensorView& w) {
  if (const uint8_t* p = find_weight(w.data, w.n_bytes())) return p;
  if (host_weights.count(w.data)) return static_cast<const uint8_t*>(nullptr);
  FATHOM_ASSIGN_OR_RETURN(const bool uploaded, upload_weights(w.data, w.n_bytes(), "matrix " + w.name));
  if (!uploaded) host_weights.insert(w.data);
  return uploaded ? find_weight(w.data, w.n_bytes()) : nullptr;
}

Expected<CudaBackend::Impl::MirrorLayer*> CudaBackend::Impl::mirror_layer(KvCache& kv, int64_t layer) {
  const KvCacheShape& shape = kv.shape();
  KvMirror& mirror = mirrors[&kv];
  mirror.layers.resize(static_cast<size_t>(shape.n_layer));
  MirrorLayer& m = mirror.layers[static_cast<size_t>(layer)];
  const float* host_k = kv.k_row(layer, 0, 0);
  const float* host_v = shape.v_width > 0 ? kv.v_row(layer, 0, 0) : nullptr;
  const size_t n_rows = static_cast<size_t>(kv.pool().n_total()) * static_cast<size_t>(shape.block_size);
  if (m.k && m.host_k == host_k && m.host_v == host_v && m.n_rows == n_rows) return &m;
  if (mirror.out_of_memory) return static_cast<MirrorLayer*>(nullptr);
  m = MirrorLayer{};
  const size_t k_bytes = n_rows * static_cast<size_t>(shape.k_width) * sizeof(float);
  const size_t v_bytes = n_rows * static_cast<size_t>(shape.v_width) * sizeof(float);
  cudaError_t err = device_malloc(k_bytes, &kv, &m.k);
  if (err == cudaSuccess && v_bytes > 0) err = device_malloc(v_bytes, &kv, &m.v);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    m = MirrorLayer{};
    mirror.out_of_memory = true;
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    report_out_of_memory(strprintf("the KV cache needs %.2f GiB per layer on %s (%.2f GiB of %.2f GiB free); attention runs "
                                   "on the CPU, which is much slower. Use a shorter context (-c) or a smaller quantization",
                                   gib(k_bytes + v_bytes), info.name.c_str(), gib(free_bytes), gib(total_bytes)));
    return static_cast<MirrorLayer*>(nullptr);
  }
  if (err != cudaSuccess) return cuda_error(err);
  if (!writebacks.empty()) FATHOM_RETURN_IF_ERROR(finish());  // the host rows must be whole before they are copied
  FATHOM_CUDA_TRY(cudaMemcpyAsync(m.k.get(), host_k, k_bytes, cudaMemcpyHostToDevice, stream));
  if (v_bytes > 0) FATHOM_CUDA_TRY(cudaMemcpyAsync(m.v.get(), host_v, v_bytes, cudaMemcpyHostToDevice, stream));
  m.host_k = host_k;
  m.host_v = host_v;
  m.n_rows = n_rows;
  return &m;
}

void CudaBackend::Impl::free_caches(const KvCache* keep) {
  end_capture();
  for (auto it = mirrors.begin(); it != mirrors.end();) it = it->first == keep ? std::next(it) : mirrors.erase(it);
  pool.trim();
}

cudaError_t CudaBackend::Impl::device_malloc(size_t bytes, const KvCache* keep, DeviceMemory* out) {
  end_capture();
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {  // idle scratch and other caches' mirrors may be what is missing
    cudaGetLastError();
    free_caches(keep);
    err = cudaMalloc(&p, bytes);
  }
  out->reset(err == cudaSuccess ? p : nullptr);
  return err;
}

void CudaBackend::Impl::report_out_of_memory(const std::string& message) {
  if (warned_memory) return;
  warned_memory = true;
  Logger().log(LogLevel::kError, "cuda: " + message);
}

void CudaBackend::Impl::device_failed(const char* op, const Status& st) {
  if (warned_failure) return;
  warned_failure = true;
  Logger().log(LogLevel::kWarn, strprintf("cuda: %s failed on %s (%s); running such ops on the CPU", op, info.name.c_str(),
                                          st.message().c_str()));
}

Status CudaBackend::Impl::matmul_batch(const std::vector<MatmulJob>& jobs, const FusedInput* stage, std::vector<MatmulJob>* on_cpu) {
  FATHOM_CUDA_TRY(cudaSetDevice(info.index));
  struct DeviceJob {
    const MatmulJob* job = nullptr;
    const uint8_t* w = nullptr;
    const float* x = nullptr;
    float* y = nullptr;
  };
  std::vector<DeviceJob> device_jobs;
  for (const MatmulJob& j : jobs) {
    if (j.n_tokens <= 0) continue;
    const uint8_t* w = nullptr;
    if (covers(j.w)) {
      FATHOM_ASSIGN_OR_RETURN(w, device_weight(j.w));
    }
    if (w) device_jobs.push_back({&j, w, nullptr, nullptr});
    else on_cpu->push_back(j);
  }
  OpScope op(*this);
  const float* stage_b = nullptr;
  if (stage && stage->kind == FusedInput::kRmsNorm) {  // the norm's weight: uploaded with each use, staged (tiny)
    float* w = nullptr;
    FATHOM_RETURN_IF_ERROR(upload(stage->b, stage->n, &w));
    stage_b = w;
  }
  float *stage_a = nullptr, *stage_result = nullptr;
  FATHOM_RETURN_IF_ERROR(activations.resolve_op([&]() -> Status {
    if (stage && stage->kind == FusedInput::kRmsNorm) {
      FATHOM_ASSIGN_OR_RETURN(const float* a, input(stage->a, stage->count()));
      stage_a = const_cast<float*>(a);
      FATHOM_ASSIGN_OR_RETURN(stage_result, output(stage->result, stage->count()));
    } else if (stage) {  // SwiGLU in place of gate
      FATHOM_ASSIGN_OR_RETURN(stage_result, update(stage->result, stage->count()));
      stage_a = stage_result;
      FATHOM_ASSIGN_OR_RETURN(stage_b, input(stage->b, stage->b_count()));
    }
    for (DeviceJob& d : device_jobs) {
      FATHOM_ASSIGN_OR_RETURN(d.x, input(d.job->x, d.job->n_tokens * d.job->w.ne[0]));
      FATHOM_ASSIGN_OR_RETURN(d.y, output(d.job->y, d.job->n_tokens * d.job->w.n_rows()));
    }
    return Status::ok();
  }));
  if (stage && stage->kind == FusedInput::kRmsNorm)
    FATHOM_CUDA_TRY(cuda::launch_rms_norm(stage_a, stage_b, stage->n_tokens, stage->n, stage->eps, stage_result, stream));
  else if (stage)
    FATHOM_CUDA_TRY(cuda::launch_swiglu(stage_a, stage_b, stage->count(), stage_result, stream));
  for (DeviceJob& d : device_jobs) {
    const MatmulJob& j = *d.job;
    const int64_t n_in = j.w.ne[0], n_out = j.w.n_rows();
    const float* x = d.x;
    if (reinterpret_cast<uintptr_t>(x) % 16 != 0) {  // the matvec kernels read x as float4
      float* aligned = nullptr;
      FATHOM_RETURN_IF_ERROR(scratch(j.n_tokens * n_in, &aligned));
      FATHOM_CUDA_TRY(cudaMemcpyAsync(aligned, x, static_cast<size_t>(j.n_tokens * n_in) * sizeof(float),
                                      cudaMemcpyDeviceToDevice, stream));
      x = aligned;
    }
    if (j.n_tokens < cuda::kGemmMinTokens)
      FATHOM_CUDA_TRY(cuda::launch_matvec(j.w.dtype, d.w, j.w.row_bytes(), n_in, n_out, x, j.n_tokens, d.y, stream));
    else
      FATHOM_RETURN_IF_ERROR(gemm(j.w, d.w, x, j.n_tokens, d.y));
  }
  return Status::ok();
}

void CudaBackend::Impl::run_batch(const std::vector<MatmulJob>& jobs, const FusedInput* stage, const char* op) {
  std::vector<MatmulJob> on_cpu;
  bool stage_on_device = stage != nullptr;
  if (const Status st = matmul_batch(jobs, stage, &on_cpu); st.is_ok()) {
    std::vector<Span> writes;
    for (const MatmulJob& j : jobs)
      if (j.n_tokens > 0) writes.push_back({j.y, j.n_tokens * j.w.n_rows()});
    if (!resident) {
      for (const Span& w : writes) sync(w);
      activations.clear();
      activations.end_op();
    }
  } else {
    if (st.code() != ErrorCode::kUnsupported) device_failed(op, st);
    on_cpu.clear();
    for (const MatmulJob& j : jobs)
      if (j.n_tokens > 0) on_cpu.push_back(j);
    stage_on_device = false;
  }
  if (on_cpu.empty()) return;
  if (stage && !stage_on_device) {
    sync({stage->a, stage->count()});
    if (stage->kind == FusedInput::kSwiglu) sync({stage->b, stage->b_count()});
    stage->make_on(*cpu);
    wrote({stage->result, stage->count()});
  }
  for (const MatmulJob& j : on_cpu) sync({j.x, j.n_tokens * j.w.ne[0]});
  cpu->matmul_batch(on_cpu);
  for (const MatmulJob& j : on_cpu) wrote({j.y, j.n_tokens * j.w.n_rows()});
}

// In cuBLAS's column-major terms W's rows are the columns of an [n_in, n_out] matrix A (lda n_in)
// and x's rows those of [n_in, n_tokens]; y is the [n_out, n_tokens] product Aᵀ·x (ldc n_out).
// F32 weights multiply as they are in f32; F16 weights as they are with x in f16; the rest are
// dequantized to f16 a slab of rows at a time. Accumulation is f32 throughout.
Status CudaBackend::Impl::gemm(const TensorView& w, const uint8_t* w_device, const float* x, int64_t n_tokens, float* y) {
  const int64_t n_in = w.ne[0], n_out = w.n_rows();
  const float one = 1.0f, zero = 0.0f;
  const int m_tokens = static_cast<int>(n_tokens), k_in = static_cast<int>(n_in);
  if (w.dtype == DType::F32) {
    FATHOM_CUBLAS_TRY(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n_out), m_tokens, k_in, &one, w_device,
                                   CUDA_R_32F, k_in, x, CUDA_R_32F, k_in, &zero, y, CUDA_R_32F, static_cast<int>(n_out),
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return Status::ok();
  }
  uint16_t* x_half = nullptr;
  FATHOM_RETURN_IF_ERROR(scratch(n_tokens * n_in, &x_half));
  FATHOM_CUDA_TRY(cuda::launch_f32_to_f16(x, n_tokens * n_in, x_half, stream));
  const bool dequantize = w.dtype != DType::F16;
  const int64_t slab = dequantize ? cuda::gemm_slab_rows(n_in, n_out) : n_out;
  uint16_t* w_half = nullptr;
  if (dequantize) FATHOM_RETURN_IF_ERROR(scratch(slab * n_in, &w_half));
  for (int64_t r0 = 0; r0 < n_out; r0 += slab) {
    const int64_t rows = std::min(slab, n_out - r0);
    const void* a = w_device + static_cast<size_t>(r0) * w.row_bytes();
    if (dequantize) {
      FATHOM_CUDA_TRY(cuda::launch_dequantize_f16(w.dtype, a, w.row_bytes(), n_in, rows, w_half, stream));
      a = w_half;
    }
    FATHOM_CUBLAS_TRY(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), m_tokens, k_in, &one, a, CUDA_R_16F,
                                   k_in, x_half, CUDA_R_16F, k_in, &zero, y + r0, CUDA_R_32F, static_cast<int>(n_out),
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  return Status::ok();
}

Status CudaBackend::Impl::rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out) {
  FATHOM_CUDA_TRY(cudaSetDevice(info.index));
  OpScope op(*this);
  float* w_device = nullptr;
  FATHOM_RETURN_IF_ERROR(upload(weight, n, &w_device));
  const float* x_device = nullptr;
  float* out_device = nullptr;
  FATHOM_RETURN_IF_ERROR(activations.resolve_op([&]() -> Status {
    if (x == out) {
      FATHOM_ASSIGN_OR_RETURN(out_device, update(out, n_rows * n));
      x_device = out_device;
    } else {
      FATHOM_ASSIGN_OR_RETURN(x_device, input(x, n_rows * n));
      FATHOM_ASSIGN_OR_RETURN(out_device, output(out, n_rows * n));
    }
    return Status::ok();
  }));
  FATHOM_CUDA_TRY(cuda::launch_rms_norm(x_device, w_device, n_rows, n, eps, out_device, stream));
  return Status::ok();
}

Status CudaBackend::Impl::rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                               const RopeParams& p) {
  // The angles come from the CPU backend's rope_cos_sin (YaRN and freq_factors included), so
  // both backends rotate by the same values; the device applies them.
  const int64_t n_pairs = p.n_rot / 2;
  std::vector<float> cos_sin(static_cast<size_t>(n_tokens * n_pairs * 2)), c(static_cast<size_t>(n_pairs)), s(c.size());
  for (int64_t t = 0; t < n_tokens; ++t) {
    rope_cos_sin(positions[t], p, c.data(), s.data());
    for (int64_t i = 0; i < n_pairs; ++i) {
      cos_sin[static_cast<size_t>((t * n_pairs + i) * 2)] = c[static_cast<size_t>(i)];
      cos_sin[static_cast<size_t>((t * n_pairs + i) * 2 + 1)] = s[static_cast<size_t>(i)];
    }
  }
  FATHOM_CUDA_TRY(cudaSetDevice(info.index));
  OpScope op(*this);
  float *x_device = nullptr, *table = nullptr;
  FATHOM_RETURN_IF_ERROR(activations.resolve_op([&]() -> Status {
    FATHOM_ASSIGN_OR_RETURN(x_device, update(x, n_tokens * n_heads * head_dim));
    return Status::ok();
  }));
  FATHOM_RETURN_IF_ERROR(upload(cos_sin.data(), static_cast<int64_t>(cos_sin.size()), &table));
  FATHOM_CUDA_TRY(cuda::launch_rope(x_device, n_tokens, n_heads, head_dim, n_pairs, p.mode == RopeMode::kNeox, table, stream));
  return Status::ok();
}

Status CudaBackend::Impl::swiglu(const float* gate, const float* up, int64_t n, float* out) {
  FATHOM_CUDA_TRY(cudaSetDevice(info.index));
  OpScope op(*this);
  const float *g = nullptr, *u = nullptr;
  float* o = nullptr;
  FATHOM_RETURN_IF_ERROR(activations.resolve_op([&]() -> Status {
    if (gate == out) {
      FATHOM_ASSIGN_OR_RETURN(o, update(out, n));
      g = o;
    } else {
      FATHOM_ASSIGN_OR_RETURN(g, input(gate, n));
      FATHOM_ASSIGN_OR_RETURN(o, output(out, n));
    }
    FATHOM_ASSIGN_OR_RETURN(u, input(up, n));
    return Status::ok();
  }));
  FATHOM_CUDA_TRY(cuda::launch_swiglu(g, u, n, o, stream));
  return Status::ok();
}

Status CudaBackend::Impl::add(float* x, const float* y, int64_t n) {
  FATHOM_CUDA_TRY(cudaSetDevice(info.index));
  OpScope op(*this);
  float* x_device = nullptr;
  const float* y_device = nullptr;
  FATHOM_RETURN_IF_ERROR(activations.resolve_op([&]() -> Status {
    FATHOM_ASSIGN_OR_RETURN(x_device, update(x, n));
    FATHOM_ASSIGN_OR_RETURN(y_device, input(y, n));
    return Status::ok();
  }));
  FATHOM_CUDA_TRY(cuda::launch_add(x_device, y_device, n, stream));
  return Status::ok();
}

Status CudaBackend::Impl::add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) {
  FATHOM_CUDA_TRY(cudaSetDevice(info.index));
  OpScope op(*this);
  float* b_device = nullptr;
  FATHOM_RETURN_IF_ERROR(upload(bias, n, &b_device));
  float* x_device = nullptr;
  FATHOM_RETURN_IF_ERROR(activations.resolve_op([&]() -> Status {
    FATHOM_ASSIGN_OR_RETURN(x_device, update(x, n_rows * n));
    return Status::ok();
  }));
  FATHOM_CUDA_TRY(cuda::launch_add_bias(x_device, b_device, n_rows, n, stream));
  return Status::ok();
}

Status CudaBackend::Impl::copy_strided(const float* src, float* dst, const StridedCopy& c) {
  FATHOM_CUDA_TRY(cudaSetDevice(info.index));
  OpScope op(*this);
  const float* s = nullptr;
  float* d = nullptr;
  FATHOM_RETURN_IF_ERROR(activations.resolve_op([&]() -> Status {
    FATHOM_ASSIGN_OR_RETURN(s, input(src, c.src_span()));
    FATHOM_ASSIGN_OR_RETURN(d, update(dst, c.dst_span()));  // the floats between the runs keep their values
    return Status::ok();
  }));
  FATHOM_CUDA_TRY(cuda::launch_copy_strided(s, d, c.n_outer, c.n_inner, c.width, c.src_outer, c.src_inner, c.dst_outer,
                                            c.dst_inner, stream));
  return Status::ok();
}

Status CudaBackend::Impl::top_candidates(const float* logits, int64_t n_rows, int64_t n_vocab, int64_t k, int32_t* ids,
                                         float* values) {
  FATHOM_CUDA_TRY(cudaSetDevice(info.index));
  std::vector<uint32_t> host(static_cast<size_t>(2 * n_rows * k));  // ids, then values: one read back
  {
    OpScope op(*this);
    const float* l = nullptr;
    FATHOM_RETURN_IF_ERROR(activations.resolve_op([&]() -> Status {
      FATHOM_ASSIGN_OR_RETURN(l, input(logits, n_rows * n_vocab));
      return Status::ok();
    }));
    uint32_t* out = nullptr;
    FATHOM_RETURN_IF_ERROR(scratch(static_cast<int64_t>(host.size()), &out));
    FATHOM_CUDA_TRY(cuda::launch_top_candidates(l, n_rows, n_vocab, k, reinterpret_cast<int32_t*>(out),
                                                reinterpret_cast<float*>(out + n_rows * k), stream));
    FATHOM_RETURN_IF_ERROR(download_now(host.data(), out, host.size() * sizeof(uint32_t)));
  }
  std::memcpy(ids, host.data(), static_cast<size_t>(n_rows * k) * sizeof(int32_t));
  std::memcpy(values, host.data() + n_rows * k, static_cast<size_t>(n_rows * k) * sizeof(float));
  return Status::ok();
}

Status CudaBackend::Impl::store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v) {
  FATHOM_CUDA_TRY(cudaSetDevice(info.index));
  FATHOM_ASSIGN_OR_RETURN(MirrorLayer* m, mirror_layer(kv, layer));
  if (!m) return not_covered();  // attention on this cache runs on the CPU, from the host rows
  const std::vector<int64_t> rows = cuda::kv_rows_of_batch(kv, batch);
  const int64_t k_width = kv.shape().k_width, v_width = kv.shape().v_width;
  const bool has_v = v_width > 0 && v != nullptr;
  // The host rows are written too (CPU fallbacks read them, and a mirror is seeded from them):
  // staged in pinned memory now, copied at the next synchronization.
  const size_t k_bytes = static_cast<size_t>(batch.n_tokens * k_width) * sizeof(float);
  const size_t v_bytes = has_v ? static_cast<size_t>(batch.n_tokens * v_width) * sizeof(float) : 0;
  float* staged_k = static_cast<float*>(pinned.take(k_bytes));
  float* staged_v = has_v ? static_cast<float*>(pinned.take(v_bytes)) : nullptr;
  const bool staged = staged_k && (!has_v || staged_v);  // else the host rows are written here, after a wait
  OpScope op(*this);
  int64_t* rows_device = nullptr;
  const float *k_device = nullptr, *v_device = nullptr;
  FATHOM_RETURN_IF_ERROR(activations.resolve_op([&]() -> Status {
    FATHOM_ASSIGN_OR_RETURN(k_device, input(k, batch.n_tokens * k_width));
    if (has_v) {
      FATHOM_ASSIGN_OR_RETURN(v_device, input(v, batch.n_tokens * v_width));
    }
    return Status::ok();
  }));
  FATHOM_RETURN_IF_ERROR(upload(rows.data(), batch.n_tokens, &rows_device));
  FATHOM_CUDA_TRY(cuda::launch_scatter_rows(k_device, k_width, rows_device, batch.n_tokens, static_cast<float*>(m->k.get()), stream));
  if (has_v)
    FATHOM_CUDA_TRY(cuda::launch_scatter_rows(v_device, v_width, rows_device, batch.n_tokens, static_cast<float*>(m->v.get()), stream));
  if (!staged) {
    FATHOM_RETURN_IF_ERROR(activations.to_host(k, k_bytes));
    if (has_v) FATHOM_RETURN_IF_ERROR(activations.to_host(v, v_bytes));
    cpu->store_kv(kv, layer, batch, k, v);
    return Status::ok();
  }
  FATHOM_CUDA_TRY(cudaMemcpyAsync(staged_k, k_device, k_bytes, cudaMemcpyDeviceToHost, stream));
  writebacks.push_back({const_cast<float*>(m->host_k), k_width, staged_k, rows});
  if (has_v) {
    FATHOM_CUDA_TRY(cudaMemcpyAsync(staged_v, v_device, v_bytes, cudaMemcpyDeviceToHost, stream));
    writebacks.push_back({const_cast<float*>(m->host_v), v_width, staged_v, rows});
  }
  return Status::ok();
}

Status CudaBackend::Impl::attend(const float* q_a, int64_t width_a, const float* q_b, int64_t width_b, KvCache& kv,
                                 int64_t layer, const AttentionBatch& batch, int64_t n_head, int64_t group,
                                 int64_t head_dim_v, bool latent, float scale, float* out) {
  if (width_a + width_b > cuda::kAttentionMaxQueryDim || head_dim_v > cuda::kAttentionMaxValueDim) return not_covered();
  FATHOM_CUDA_TRY(cudaSetDevice(info.index));
  FATHOM_ASSIGN_OR_RETURN(MirrorLayer* m, mirror_layer(kv, layer));
  if (!m) return not_covered();
  const KvCacheShape& shape = kv.shape();
  const cuda::BatchTables tables = cuda::pack_block_tables(kv, batch);
  OpScope op(*this);
  cuda::AttentionArgs a;
  const int64_t n_queries = batch.n_tokens * n_head;
  float* out_device = nullptr;
  FATHOM_RETURN_IF_ERROR(activations.resolve_op([&]() -> Status {
    FATHOM_ASSIGN_OR_RETURN(a.q_a, input(q_a, n_queries * width_a));
    if (q_b) {
      FATHOM_ASSIGN_OR_RETURN(a.q_b, input(q_b, n_queries * width_b));
    }
    FATHOM_ASSIGN_OR_RETURN(out_device, output(out, n_queries * head_dim_v));
    return Status::ok();
  }));
  int32_t *tables_device = nullptr, *token_table_device = nullptr, *positions_device = nullptr;
  FATHOM_RETURN_IF_ERROR(upload(tables.tables.data(), static_cast<int64_t>(tables.tables.size()), &tables_device));
  FATHOM_RETURN_IF_ERROR(upload(tables.token_table.data(), batch.n_tokens, &token_table_device));
  FATHOM_RETURN_IF_ERROR(upload(batch.positions, batch.n_tokens, &positions_device));
  a.width_a = width_a;
  a.width_b = q_b ? width_b : 0;
  a.k = static_cast<const float*>(m->k.get());
  a.k_stride = shape.k_width;
  a.v = static_cast<const float*>(latent ? m->k.get() : m->v.get());
  a.v_stride = latent ? shape.k_width : shape.v_width;
  a.tables = tables_device;
  a.max_blocks = tables.max_blocks;
  a.token_table = token_table_device;
  a.positions = positions_device;
  a.block_size = shape.block_size;
  a.n_tokens = batch.n_tokens;
  a.n_head = n_head;
  a.group = group;
  a.head_dim_v = head_dim_v;
  a.scale = scale;
  a.out = out_device;
  int64_t max_kv = 0;
  for (int64_t t = 0; t < batch.n_tokens; ++t) max_kv = std::max<int64_t>(max_kv, batch.positions[t] + 1);
  a.n_splits = cuda::attention_splits(n_queries, max_kv, info.multiprocessors);
  if (a.n_splits > 1) FATHOM_RETURN_IF_ERROR(scratch(n_queries * a.n_splits * (head_dim_v + 2), &a.parts));
  FATHOM_CUDA_TRY(cuda::launch_attention(a, stream));
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------

Expected<std::unique_ptr<CudaBackend>> CudaBackend::create(const CudaOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(const int spec_index, parse_device_spec(options.device, "cuda"));
  const int index = spec_index < 0 ? 0 : spec_index;  // "cuda": device 0
  int count = 0;
  if (const cudaError_t err = cudaGetDeviceCount(&count); err != cudaSuccess) {
    cudaGetLastError();
    // Busy (exclusive mode) or not ready yet is worth a retry; no driver or hardware is not.
    const bool transient = err == cudaErrorDevicesUnavailable || err == cudaErrorSystemNotReady;
    return error(transient ? ErrorCode::kUnavailable : ErrorCode::kNotFound, "cudaGetDeviceCount: " + driver_problem(err));
  }
  if (count == 0) return error(ErrorCode::kNotFound, "the NVIDIA driver reports no CUDA device");
  if (index >= count)
    return error(ErrorCode::kNotFound, strprintf("there is no CUDA device %d: this machine has %d (see `fathom devices`)", index, count));

  auto impl = std::make_unique<Impl>(options.cpu ? options.cpu : std::make_shared<CpuBackend>(options.n_threads));
  const char* sync_ops = std::getenv("FATHOM_CUDA_SYNC_OPS");
  impl->resident = options.resident_activations && !(sync_ops && std::string(sync_ops) == "1");
  const char* graphs = std::getenv("FATHOM_CUDA_GRAPHS");
  impl->graphs = options.graphs && !(graphs && std::string(graphs) == "0");
  cudaDeviceProp prop{};
  if (const cudaError_t err = cudaSetDevice(index); err != cudaSuccess)
    return error(ErrorCode::kUnavailable, strprintf("cudaSetDevice(%d): ", index) + cuda_error(err).message());
  if (const cudaError_t err = cudaGetDeviceProperties(&prop, index); err != cudaSuccess)
    return error(ErrorCode::kUnavailable, "cudaGetDeviceProperties: " + cuda_error(err).message());
  CudaDeviceInfo& info = impl->info;
  info.index = index;
  info.name = prop.name;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  info.total_memory_bytes = prop.totalGlobalMem;
  if (const cudaError_t err = cuda::check_kernel_image(); err != cudaSuccess)
    return error(ErrorCode::kNotFound,
                 strprintf("%s (compute capability %d.%d) cannot run this build's kernels, built for CUDA architectures %s "
                           "(%s); rebuild with -DCMAKE_CUDA_ARCHITECTURES=%d%d",
                           info.name.c_str(), info.cc_major, info.cc_minor, FATHOM_CUDA_ARCHITECTURES,
                           cuda_error(err).message().c_str(), info.cc_major, info.cc_minor));
  if (const cudaError_t err = cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking); err != cudaSuccess)
    return error(ErrorCode::kUnavailable, "cudaStreamCreate on " + info.name + ": " + cuda_error(err).message());
  if (const cublasStatus_t st = cublasCreate(&impl->cublas); st != CUBLAS_STATUS_SUCCESS)
    return error(ErrorCode::kUnavailable, "cublasCreate on " + info.name + ": " + cublas_error(st).message());
  if (const cublasStatus_t st = cublasSetStream(impl->cublas, impl->stream); st != CUBLAS_STATUS_SUCCESS)
    return error(ErrorCode::kUnavailable, "cublasSetStream: " + cublas_error(st).message());
  return std::unique_ptr<CudaBackend>(new CudaBackend(std::move(impl)));
}

Expected<CudaPeaks> CudaBackend::measure_peaks(size_t copy_bytes, int64_t gemm_n) {
  Impl& im = *impl_;
  FATHOM_CUDA_TRY(cudaSetDevice(im.info.index));
  FATHOM_RETURN_IF_ERROR(im.finish());
  CudaPeaks peaks;
  peaks.copy_bytes = copy_bytes;
  peaks.gemm_n = gemm_n;
  cudaEvent_t start = nullptr, stop = nullptr;
  FATHOM_CUDA_TRY(cudaEventCreate(&start));
  FATHOM_CUDA_TRY(cudaEventCreate(&stop));
  struct Events {
    cudaEvent_t a, b;
    ~Events() {
      cudaEventDestroy(a);
      cudaEventDestroy(b);
    }
  } events{start, stop};
  // Best of 5 timed runs of `work`, after one warm-up: seconds.
  auto best_of = [&](auto&& work) -> Expected<double> {
    float best_ms = 0.0f;
    for (int rep = 0; rep <= 5; ++rep) {
      FATHOM_CUDA_TRY(cudaEventRecord(start, im.stream));
      FATHOM_RETURN_IF_ERROR(work());
      FATHOM_CUDA_TRY(cudaEventRecord(stop, im.stream));
      FATHOM_CUDA_TRY(cudaEventSynchronize(stop));
      float ms = 0.0f;
      FATHOM_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop));
      if (rep == 1 || (rep > 1 && ms < best_ms)) best_ms = ms;
    }
    return static_cast<double>(best_ms) / 1e3;
  };
  {
    DeviceMemory a, b;
    FATHOM_CUDA_TRY(im.device_malloc(copy_bytes, nullptr, &a));
    FATHOM_CUDA_TRY(im.device_malloc(copy_bytes, nullptr, &b));
    FATHOM_CUDA_TRY(cudaMemsetAsync(a.get(), 1, copy_bytes, im.stream));
    FATHOM_ASSIGN_OR_RETURN(const double secs, best_of([&]() -> Status {
                              FATHOM_CUDA_TRY(cudaMemcpyAsync(b.get(), a.get(), copy_bytes, cudaMemcpyDeviceToDevice, im.stream));
                              return Status::ok();
                            }));
    peaks.copy_gb_s = 2.0 * static_cast<double>(copy_bytes) / secs / 1e9;
  }
  {
    const size_t matrix_bytes = static_cast<size_t>(gemm_n * gemm_n) * 2;
    DeviceMemory a, b, c;
    FATHOM_CUDA_TRY(im.device_malloc(matrix_bytes, nullptr, &a));
    FATHOM_CUDA_TRY(im.device_malloc(matrix_bytes, nullptr, &b));
    FATHOM_CUDA_TRY(im.device_malloc(matrix_bytes * 2, nullptr, &c));
    FATHOM_CUDA_TRY(cudaMemsetAsync(a.get(), 0x3c, matrix_bytes, im.stream));  // f16 ~1.0: non-zero data
    FATHOM_CUDA_TRY(cudaMemsetAsync(b.get(), 0x2c, matrix_bytes, im.stream));
    const float one = 1.0f, zero = 0.0f;
    const int n = static_cast<int>(gemm_n);
    FATHOM_ASSIGN_OR_RETURN(const double secs, best_of([&]() -> Status {
                              FATHOM_CUBLAS_TRY(cublasGemmEx(im.cublas, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, a.get(), CUDA_R_16F, n,
                                                             b.get(), CUDA_R_16F, n, &zero, c.get(), CUDA_R_32F, n,
                                                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
                              return Status::ok();
                            }));
    peaks.fp16_tflops = 2.0 * static_cast<double>(gemm_n) * static_cast<double>(gemm_n) * static_cast<double>(gemm_n) / secs / 1e12;
  }
  return peaks;
}

CudaBackend::CudaBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaBackend::~CudaBackend() = default;

bool CudaBackend::supports(Op op, DType weight_type) const { return impl_->cpu->supports(op, weight_type); }
int CudaBackend::n_threads() const { return impl_->cpu->n_threads(); }
const CudaDeviceInfo& CudaBackend::device() const { return impl_->info; }

bool CudaBackend::on_device(Op op, DType weight_type) const {
  switch (op) {
    case Op::kMatmul: return cuda::matmul_block_values(weight_type) != 0;
    case Op::kGetRows: return false;
    default: return true;
  }
}

void CudaBackend::prepare_matmul_weights(const std::vector<TensorView>& weights, bool file_backed) {
  // Matrices back to back in host memory (the experts of one stacked tensor) share one upload.
  struct Span {
    const uint8_t* begin = nullptr;
    const uint8_t* end = nullptr;
    std::vector<const TensorView*> views;
  };
  std::vector<Span> spans;
  std::vector<TensorView> on_cpu;
  size_t needed = 0;
  for (const TensorView& w : weights) {
    if (!impl_->covers(w)) {
      on_cpu.push_back(w);
      continue;
    }
    const auto* begin = static_cast<const uint8_t*>(w.data);
    if (spans.empty() || spans.back().end != begin) spans.push_back({begin, begin, {}});
    spans.back().end = begin + w.n_bytes();
    spans.back().views.push_back(&w);
    needed += w.n_bytes();
  }
  size_t free_bytes = 0, total_bytes = 0;
  cudaError_t err = cudaSetDevice(impl_->info.index);
  if (err == cudaSuccess) err = cudaMemGetInfo(&free_bytes, &total_bytes);
  if (err != cudaSuccess) {  // matrices are then uploaded on first use
    impl_->device_failed("querying free memory", cuda_error(err));
    return;
  }
  const size_t budget = free_bytes > kReservedBytes ? free_bytes - kReservedBytes : 0;
  size_t uploaded = 0, n_on_host = 0;
  for (const Span& span : spans) {
    const size_t bytes = static_cast<size_t>(span.end - span.begin);
    bool on_device = impl_->find_weight(span.begin, bytes) != nullptr, failed = false;
    if (!on_device && uploaded + bytes <= budget) {
      auto done = impl_->upload_weights(span.begin, bytes, "matrix " + span.views.front()->name);
      if (!done) impl_->device_failed("uploading weights", done.status());
      on_device = done && *done;
      failed = !done;
    }
    if (on_device) {
      uploaded += bytes;
      continue;
    }
    for (const TensorView* w : span.views) {
      on_cpu.push_back(*w);
      if (failed) continue;  // not a matter of space: matmul tries the device again
      impl_->host_weights.insert(w->data);
      ++n_on_host;
    }
  }
  if (n_on_host > 0)
    impl_->report_out_of_memory(strprintf(
        "the model's matrices need %.2f GiB on %s, but %.2f GiB of its %.2f GiB are free and %.2f GiB stay reserved for "
        "activations and the KV cache; %zu matrices stay in host memory and run on the CPU, which is much slower. Use a "
        "smaller quantization or a smaller model, or free GPU memory",
        gib(needed), impl_->info.name.c_str(), gib(free_bytes), gib(total_bytes), gib(kReservedBytes), n_on_host));
  if (!on_cpu.empty()) impl_->cpu->prepare_matmul_weights(on_cpu, file_backed);
}

void CudaBackend::matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  if (n_tokens <= 0) return;
  impl_->run_batch({{w, x, n_tokens, y}}, nullptr, "matmul");
}

void CudaBackend::matmul_batch(const std::vector<MatmulJob>& jobs) { impl_->run_batch(jobs, nullptr, "matmul_batch"); }

void CudaBackend::rms_norm_matmul_batch(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps,
                                        float* normed, const std::vector<MatmulJob>& jobs) {
  if (n_tokens <= 0) return;
  const FusedInput stage = FusedInput::rms_norm(x, norm_weight, n_tokens, n, eps, normed);
  impl_->run_batch(jobs, &stage, "rms_norm_matmul_batch");
}

void CudaBackend::swiglu_matmul(const TensorView& w, float* gate, const float* up, int64_t n_tokens, float* y) {
  if (n_tokens <= 0) return;
  const FusedInput stage = FusedInput::swiglu(gate, up, n_tokens, w.ne[0]);
  impl_->run_batch({{w, gate, n_tokens, y}}, &stage, "swiglu_matmul");
}

void CudaBackend::get_rows(const TensorView& table, const int32_t* ids, int64_t n_ids, float* out) {
  impl_->cpu->get_rows(table, ids, n_ids, out);
  impl_->wrote({out, n_ids * table.ne[0]});
}

void CudaBackend::rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out) {
  if (n_rows <= 0) return;
  impl_->run("rms_norm", {{x, n_rows * n}}, {{out, n_rows * n}}, [&] { return impl_->rms_norm(x, weight, n_rows, n, eps, out); },
             [&] { impl_->cpu->rms_norm(x, weight, n_rows, n, eps, out); });
}

void CudaBackend::rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                       const RopeParams& params) {
  if (n_tokens <= 0 || params.n_rot <= 0) return;
  const int64_t count = n_tokens * n_heads * head_dim;
  impl_->run("rope", {{x, count}}, {{x, count}}, [&] { return impl_->rope(x, n_tokens, n_heads, head_dim, positions, params); },
             [&] { impl_->cpu->rope(x, n_tokens, n_heads, head_dim, positions, params); });
}

void CudaBackend::store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v) {
  if (batch.n_tokens <= 0) return;
  const Impl::Span k_span{k, batch.n_tokens * kv.shape().k_width}, v_span{v, batch.n_tokens * kv.shape().v_width};
  const Status st = impl_->store_kv(kv, layer, batch, k, v);
  if (st.is_ok()) return;
  if (st.code() != ErrorCode::kUnsupported) {
    // The mirror may have missed these rows: drop it, so the next use seeds it from the host again.
    auto it = impl_->mirrors.find(&kv);
    if (it != impl_->mirrors.end() && layer < static_cast<int64_t>(it->second.layers.size()))
      it->second.layers[static_cast<size_t>(layer)] = Impl::MirrorLayer{};
    impl_->device_failed("store_kv", st);
  }
  impl_->sync(k_span);
  impl_->sync(v_span);
  impl_->cpu->store_kv(kv, layer, batch, k, v);
}

void CudaBackend::attention(const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch, int64_t n_head,
                            int64_t n_head_kv, int64_t head_dim_k, int64_t head_dim_v, float scale, float* out) {
  if (batch.n_tokens <= 0) return;
  impl_->run(
      "attention", {{q, batch.n_tokens * n_head * head_dim_k}}, {{out, batch.n_tokens * n_head * head_dim_v}},
      [&] {
        return impl_->attend(q, head_dim_k, nullptr, 0, kv, layer, batch, n_head, n_head / n_head_kv, head_dim_v, false, scale,
                             out);
      },
      [&] { impl_->cpu->attention(q, kv, layer, batch, n_head, n_head_kv, head_dim_k, head_dim_v, scale, out); });
}

void CudaBackend::mla_attention(const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer, const AttentionBatch& batch,
                                int64_t n_head, int64_t kv_lora_rank, int64_t n_rot, float scale, float* out) {
  if (batch.n_tokens <= 0) return;
  const int64_t n_q = batch.n_tokens * n_head;
  // The latent row [c_kv | k_pe] is the key of every head and its first kv_lora_rank floats the value.
  impl_->run(
      "mla_attention", {{q_abs, n_q * kv_lora_rank}, {q_pe, n_q * n_rot}}, {{out, n_q * kv_lora_rank}},
      [&] {
        return kv.shape().k_width != kv_lora_rank + n_rot
                   ? not_covered()
                   : impl_->attend(q_abs, kv_lora_rank, q_pe, n_rot, kv, layer, batch, n_head, n_head, kv_lora_rank, true,
                                   scale, out);
      },
      [&] { impl_->cpu->mla_attention(q_abs, q_pe, kv, layer, batch, n_head, kv_lora_rank, n_rot, scale, out); });
}

void CudaBackend::swiglu(const float* gate, const float* up, int64_t n, float* out) {
  if (n <= 0) return;
  impl_->run("swiglu", {{gate, n}, {up, n}}, {{out, n}}, [&] { return impl_->swiglu(gate, up, n, out); },
             [&] { impl_->cpu->swiglu(gate, up, n, out); });
}

void CudaBackend::add(float* x, const float* y, int64_t n) {
  if (n <= 0) return;
  impl_->run("add", {{x, n}, {y, n}}, {{x, n}}, [&] { return impl_->add(x, y, n); }, [&] { impl_->cpu->add(x, y, n); });
}

void CudaBackend::add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) {
  if (n_rows <= 0 || n <= 0) return;
  impl_->run("add_bias", {{x, n_rows * n}}, {{x, n_rows * n}}, [&] { return impl_->add_bias(x, bias, n_rows, n); },
             [&] { impl_->cpu->add_bias(x, bias, n_rows, n); });
}

void CudaBackend::copy_strided(const float* src, float* dst, const StridedCopy& c) {
  if (c.src_span() <= 0) return;
  impl_->run("copy_strided", {{src, c.src_span()}, {dst, c.dst_span()}}, {{dst, c.dst_span()}},
             [&] { return impl_->copy_strided(src, dst, c); }, [&] { impl_->cpu->copy_strided(src, dst, c); });
}

void CudaBackend::top_candidates(const float* logits, int64_t n_rows, int64_t n_vocab, int64_t k, int32_t* ids, float* values) {
  if (n_rows <= 0 || k <= 0) return;
  impl_->run("top_candidates", {{logits, n_rows * n_vocab}}, {}, [&] { return impl_->top_candidates(logits, n_rows, n_vocab, k, ids, values); },
             [&] { impl_->cpu->top_candidates(logits, n_rows, n_vocab, k, ids, values); });
}

void CudaBackend::sync_to_host(const float* p, int64_t n) { impl_->sync({p, n}); }

void CudaBackend::host_wrote(const float* p, int64_t n) { impl_->wrote({p, n}); }

void CudaBackend::begin_forward(int64_t n_tokens) {
  impl_->pass_tokens = n_tokens;
  impl_->segment = 0;
}

bool CudaBackend::end_forward() {
  Impl& im = *impl_;
  if (const Status st = im.finish(); !st.is_ok()) {
    im.device_failed("finishing a forward pass", st);
    im.pass_lost = true;
  }
  im.activations.clear();
  im.activations.end_op();
  ++im.passes;
  im.pass_tokens = 0;
  const bool lost = im.pass_lost;
  im.pass_lost = false;
  return !lost;
}

bool CudaBackend::resident_activations() const { return impl_->resident; }

// ---------------------------------------------------------------------------------------------

bool cuda_compiled_in() { return true; }

Expected<std::unique_ptr<Backend>> create_cuda_backend(const CudaOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> b, CudaBackend::create(options));
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace fathom
#endif
