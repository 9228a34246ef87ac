#include "backend/cuda/cuda_backend.h"

#if FATHOM_HAVE_CUDA
#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <unordered_map>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/fused_input.h"
#include "backend/device_spec.h"
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
  Status allocate(size_t bytes, void** out) {
    const size_t size = cuda::scratch_size_class(bytes);
    if (auto it = free_.find(size); it != free_.end()) {
      *out = it->second;
      free_.erase(it);
      return Status::ok();
    }
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
    for (auto& [size, p] : free_) cudaFree(p);
    free_.clear();
  }

 private:
  std::multimap<size_t, void*> free_;  // size class -> idle buffer
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
  explicit Impl(std::shared_ptr<CpuBackend> cpu_backend) : cpu(std::move(cpu_backend)) {}
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

  CudaDeviceInfo info;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  std::shared_ptr<CpuBackend> cpu;                                      // runs what the kernels do not cover
  ScratchPool pool;
  std::vector<std::pair<void*, size_t>> op_buffers;       // scratch of the running op (OpScope)
  std::map<uintptr_t, DeviceWeight> weights;              // by host start address
  std::set<const void*> host_weights;                     // did not fit: their matmuls run on the CPU
  std::unordered_map<const KvCache*, KvMirror> mirrors;
  bool warned_failure = false;                            // a device failure was reported once
  bool warned_memory = false;                             // running out of device memory was reported once

  // Scratch taken during one op goes back to the pool when the op ends.
  class OpScope {
   public:
    explicit OpScope(Impl& impl) : impl_(impl) {}
    ~OpScope() {
      for (const auto& [p, bytes] : impl_.op_buffers) impl_.pool.release(p, bytes);
      impl_.op_buffers.clear();
    }

   private:
    Impl& impl_;
  };

  template <typename T>
  Status scratch(int64_t count, T** out);
  // Scratch holding a copy of host[0, count).
  template <typename T>
  Status upload(const T* host, int64_t count, T** out);
  // host[0, count) = device[0, count) once the queued work is done. Kernel errors surface at the
  // first synchronization, before the host memory is touched, so a failed op leaves it as it was.
  template <typename T>
  Status download(const T* device, int64_t count, T* host);

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
  // (kUnsupported: placement, not failure), after device_failed where it failed.
  template <typename DeviceOp, typename CpuOp>
  void run(const char* op, DeviceOp&& on_device, CpuOp&& on_cpu) {
    const Status st = on_device();
    if (st.is_ok()) return;
    if (st.code() != ErrorCode::kUnsupported) device_failed(op, st);
    on_cpu();
  }

  // The products of a batch in one pass: each distinct input uploaded once (a fused op's input,
  // backend/fused_input.h, made on the device from its operands), every product queued, one
  // wait, the outputs read back. Jobs the kernels do not cover are left in *on_cpu; on an error
  // nothing was written to any job's output.
  Status matmul_batch(const std::vector<MatmulJob>& jobs, const FusedInput* stage, std::vector<MatmulJob>* on_cpu);
  // matmul_batch, then the CPU's share (everything after a device error, reported once as `op`),
  // with the stage made on the host first when a CPU product reads it.
  void run_batch(const std::vector<MatmulJob>& jobs, const FusedInput* stage, const char* op);
  Status gemm(const TensorView& w, const uint8_t* w_device, const float* x, int64_t n_tokens, float* y);
  Status rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out);
  Status rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions, const RopeParams& p);
  Status swiglu(const float* gate, const float* up, int64_t n, float* out);
  Status add(float* x, const float* y, int64_t n);
  Status store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v);
  // Shared by attention and mla_attention: queries are q_a's rows followed by q_b's (see AttentionArgs).
  Status attend(const float* q_a, int64_t width_a, const float* q_b, int64_t width_b, KvCache& kv, int64_t layer,
                const AttentionBatch& batch, int64_t n_head, int64_t group, int64_t head_dim_v, bool latent, float scale,
                float* out);
};

CudaBackend::Impl::~Impl() {
  cudaSetDevice(info.index);
  if (stream) cudaStreamSynchronize(stream);
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
  // From pageable memory the call returns once the bytes are staged, so host may change after.
  FATHOM_CUDA_TRY(cudaMemcpyAsync(*out, host, static_cast<size_t>(count) * sizeof(T), cudaMemcpyHostToDevice, stream));
  return Status::ok();
}

template <typename T>
Status CudaBackend::Impl::download(const T* device, int64_t count, T* host) {
  FATHOM_CUDA_TRY(cudaStreamSynchronize(stream));
  FATHOM_CUDA_TRY(cudaMemcpyAsync(host, device, static_cast<size_t>(count) * sizeof(T), cudaMemcpyDeviceToHost, stream));
  FATHOM_CUDA_TRY(cudaStreamSynchronize(stream));
  return Status::ok();
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
  FATHOM_CUDA_TRY(cudaMemcpyAsync(m.k.get(), host_k, k_bytes, cudaMemcpyHostToDevice, stream));
  if (v_bytes > 0) FATHOM_CUDA_TRY(cudaMemcpyAsync(m.v.get(), host_v, v_bytes, cudaMemcpyHostToDevice, stream));
  m.host_k = host_k;
  m.host_v = host_v;
  m.n_rows = n_rows;
  return &m;
}

void CudaBackend::Impl::free_caches(const KvCache* keep) {
  for (auto it = mirrors.begin(); it != mirrors.end();) it = it->first == keep ? std::next(it) : mirrors.erase(it);
  pool.trim();
}

cudaError_t CudaBackend::Impl::device_malloc(size_t bytes, const KvCache* keep, DeviceMemory* out) {
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
    float* y = nullptr;
  };
  std::vector<DeviceJob> device_jobs;
  for (const MatmulJob& j : jobs) {
    if (j.n_tokens <= 0) continue;
    const uint8_t* w = nullptr;
    if (covers(j.w)) {
      FATHOM_ASSIGN_OR_RETURN(w, device_weight(j.w));
    }
    if (w) device_jobs.push_back({&j, w, nullptr});
    else on_cpu->push_back(j);
  }
  if (device_jobs.empty()) return Status::ok();
  OpScope op(*this);
  struct Input {
    const float* host = nullptr;
    int64_t count = 0;
    float* device = nullptr;
  };
  std::vector<Input> inputs;
  auto device_input = [&](const float* host, int64_t count) -> Expected<float*> {
    for (const Input& in : inputs)
      if (in.host == host && in.count >= count) return in.device;
    Input in{host, count, nullptr};
    if (stage && host == stage->result) {  // made here, from the stage's inputs
      FATHOM_CHECK(count <= stage->count());
      in.count = stage->count();
      float *a = nullptr, *b = nullptr;
      FATHOM_RETURN_IF_ERROR(upload(stage->a, in.count, &a));
      FATHOM_RETURN_IF_ERROR(upload(stage->b, stage->b_count(), &b));
      FATHOM_RETURN_IF_ERROR(scratch(in.count, &in.device));
      if (stage->kind == FusedInput::kRmsNorm)
        FATHOM_CUDA_TRY(cuda::launch_rms_norm(a, b, stage->n_tokens, stage->n, stage->eps, in.device, stream));
      else
        FATHOM_CUDA_TRY(cuda::launch_swiglu(a, b, in.count, in.device, stream));
    } else {
      FATHOM_RETURN_IF_ERROR(upload(host, count, &in.device));
    }
    inputs.push_back(in);
    return in.device;
  };
  for (DeviceJob& d : device_jobs) {
    const MatmulJob& j = *d.job;
    const int64_t n_in = j.w.ne[0], n_out = j.w.n_rows();
    FATHOM_ASSIGN_OR_RETURN(float* x, device_input(j.x, j.n_tokens * n_in));
    FATHOM_RETURN_IF_ERROR(scratch(j.n_tokens * n_out, &d.y));
    if (j.n_tokens < cuda::kGemmMinTokens)
      FATHOM_CUDA_TRY(cuda::launch_matvec(j.w.dtype, d.w, j.w.row_bytes(), n_in, n_out, x, j.n_tokens, d.y, stream));
    else
      FATHOM_RETURN_IF_ERROR(gemm(j.w, d.w, x, j.n_tokens, d.y));
  }
  // Kernel errors surface here, before any output is touched.
  FATHOM_CUDA_TRY(cudaStreamSynchronize(stream));
  for (const DeviceJob& d : device_jobs)
    FATHOM_CUDA_TRY(cudaMemcpyAsync(d.job->y, d.y, static_cast<size_t>(d.job->n_tokens * d.job->w.n_rows()) * sizeof(float),
                                    cudaMemcpyDeviceToHost, stream));
  FATHOM_CUDA_TRY(cudaStreamSynchronize(stream));
  return Status::ok();
}

void CudaBackend::Impl::run_batch(const std::vector<MatmulJob>& jobs, const FusedInput* stage, const char* op) {
  std::vector<MatmulJob> on_cpu;
  if (const Status st = matmul_batch(jobs, stage, &on_cpu); !st.is_ok()) {
    device_failed(op, st);
    on_cpu.clear();
    for (const MatmulJob& j : jobs)
      if (j.n_tokens > 0) on_cpu.push_back(j);
  }
  if (on_cpu.empty()) return;
  if (stage && std::any_of(on_cpu.begin(), on_cpu.end(), [&](const MatmulJob& j) { return j.x == stage->result; }))
    stage->make_on(*cpu);
  cpu->matmul_batch(on_cpu);
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
  float *x_device = nullptr, *w_device = nullptr, *out_device = nullptr;
  FATHOM_RETURN_IF_ERROR(upload(x, n_rows * n, &x_device));
  FATHOM_RETURN_IF_ERROR(upload(weight, n, &w_device));
  FATHOM_RETURN_IF_ERROR(scratch(n_rows * n, &out_device));
  FATHOM_CUDA_TRY(cuda::launch_rms_norm(x_device, w_device, n_rows, n, eps, out_device, stream));
  return download(out_device, n_rows * n, out);
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
  FATHOM_RETURN_IF_ERROR(upload(x, n_tokens * n_heads * head_dim, &x_device));
  FATHOM_RETURN_IF_ERROR(upload(cos_sin.data(), static_cast<int64_t>(cos_sin.size()), &table));
  FATHOM_CUDA_TRY(cuda::launch_rope(x_device, n_tokens, n_heads, head_dim, n_pairs, p.mode == RopeMode::kNeox, table, stream));
  return download(x_device, n_tokens * n_heads * head_dim, x);
}

Status CudaBackend::Impl::swiglu(const float* gate, const float* up, int64_t n, float* out) {
  FATHOM_CUDA_TRY(cudaSetDevice(info.index));
  OpScope op(*this);
  float *g = nullptr, *u = nullptr, *o = nullptr;
  FATHOM_RETURN_IF_ERROR(upload(gate, n, &g));
  FATHOM_RETURN_IF_ERROR(upload(up, n, &u));
  FATHOM_RETURN_IF_ERROR(scratch(n, &o));
  FATHOM_CUDA_TRY(cuda::launch_swiglu(g, u, n, o, stream));
  return download(o, n, out);
}

Status CudaBackend::Impl::add(float* x, const float* y, int64_t n) {
  FATHOM_CUDA_TRY(cudaSetDevice(info.index));
  OpScope op(*this);
  float *x_device = nullptr, *y_device = nullptr;
  FATHOM_RETURN_IF_ERROR(upload(x, n, &x_device));
  FATHOM_RETURN_IF_ERROR(upload(y, n, &y_device));
  FATHOM_CUDA_TRY(cuda::launch_add(x_device, y_device, n, stream));
  return download(x_device, n, x);
}

Status CudaBackend::Impl::store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v) {
  FATHOM_CUDA_TRY(cudaSetDevice(info.index));
  FATHOM_ASSIGN_OR_RETURN(MirrorLayer* m, mirror_layer(kv, layer));
  if (!m) return Status::ok();  // attention on this cache runs on the CPU, from the host rows
  const std::vector<int64_t> rows = cuda::kv_rows_of_batch(kv, batch);
  const int64_t k_width = kv.shape().k_width, v_width = kv.shape().v_width;
  OpScope op(*this);
  int64_t* rows_device = nullptr;
  float *k_device = nullptr, *v_device = nullptr;
  FATHOM_RETURN_IF_ERROR(upload(rows.data(), batch.n_tokens, &rows_device));
  FATHOM_RETURN_IF_ERROR(upload(k, batch.n_tokens * k_width, &k_device));
  FATHOM_CUDA_TRY(cuda::launch_scatter_rows(k_device, k_width, rows_device, batch.n_tokens, static_cast<float*>(m->k.get()), stream));
  if (v_width > 0) {
    FATHOM_RETURN_IF_ERROR(upload(v, batch.n_tokens * v_width, &v_device));
    FATHOM_CUDA_TRY(cuda::launch_scatter_rows(v_device, v_width, rows_device, batch.n_tokens, static_cast<float*>(m->v.get()), stream));
  }
  FATHOM_CUDA_TRY(cudaStreamSynchronize(stream));
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
  float* q_a_device = nullptr;
  float* q_b_device = nullptr;
  int32_t *tables_device = nullptr, *token_table_device = nullptr, *positions_device = nullptr;
  FATHOM_RETURN_IF_ERROR(upload(q_a, n_queries * width_a, &q_a_device));
  if (q_b) FATHOM_RETURN_IF_ERROR(upload(q_b, n_queries * width_b, &q_b_device));
  FATHOM_RETURN_IF_ERROR(upload(tables.tables.data(), static_cast<int64_t>(tables.tables.size()), &tables_device));
  FATHOM_RETURN_IF_ERROR(upload(tables.token_table.data(), batch.n_tokens, &token_table_device));
  FATHOM_RETURN_IF_ERROR(upload(batch.positions, batch.n_tokens, &positions_device));
  a.q_a = q_a_device;
  a.width_a = width_a;
  a.q_b = q_b_device;
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
  float* out_device = nullptr;
  FATHOM_RETURN_IF_ERROR(scratch(n_queries * head_dim_v, &out_device));
  a.out = out_device;
  int64_t max_kv = 0;
  for (int64_t t = 0; t < batch.n_tokens; ++t) max_kv = std::max<int64_t>(max_kv, batch.positions[t] + 1);
  a.n_splits = cuda::attention_splits(n_queries, max_kv, info.multiprocessors);
  if (a.n_splits > 1) FATHOM_RETURN_IF_ERROR(scratch(n_queries * a.n_splits * (head_dim_v + 2), &a.parts));
  FATHOM_CUDA_TRY(cuda::launch_attention(a, stream));
  return download(out_device, n_queries * head_dim_v, out);
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
  FATHOM_CUDA_TRY(cudaStreamSynchronize(im.stream));
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
}

void CudaBackend::rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out) {
  if (n_rows <= 0) return;
  impl_->run("rms_norm", [&] { return impl_->rms_norm(x, weight, n_rows, n, eps, out); },
             [&] { impl_->cpu->rms_norm(x, weight, n_rows, n, eps, out); });
}

void CudaBackend::rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                       const RopeParams& params) {
  if (n_tokens <= 0 || params.n_rot <= 0) return;
  impl_->run("rope", [&] { return impl_->rope(x, n_tokens, n_heads, head_dim, positions, params); },
             [&] { impl_->cpu->rope(x, n_tokens, n_heads, head_dim, positions, params); });
}

void CudaBackend::store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v) {
  // The host rows are always written: CPU fallbacks read them, and a mirror is seeded from them.
  impl_->cpu->store_kv(kv, layer, batch, k, v);
  if (batch.n_tokens <= 0) return;
  if (const Status st = impl_->store_kv(kv, layer, batch, k, v); !st.is_ok()) {
    // The mirror may have missed these rows: drop it, so the next use seeds it from the host again.
    auto it = impl_->mirrors.find(&kv);
    if (it != impl_->mirrors.end() && layer < static_cast<int64_t>(it->second.layers.size()))
      it->second.layers[static_cast<size_t>(layer)] = Impl::MirrorLayer{};
    impl_->device_failed("store_kv", st);
  }
}

void CudaBackend::attention(const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch, int64_t n_head,
                            int64_t n_head_kv, int64_t head_dim_k, int64_t head_dim_v, float scale, float* out) {
  if (batch.n_tokens <= 0) return;
  impl_->run(
      "attention",
      [&] {
        return impl_->attend(q, head_dim_k, nullptr, 0, kv, layer, batch, n_head, n_head / n_head_kv, head_dim_v, false, scale,
                             out);
      },
      [&] { impl_->cpu->attention(q, kv, layer, batch, n_head, n_head_kv, head_dim_k, head_dim_v, scale, out); });
}

void CudaBackend::mla_attention(const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer, const AttentionBatch& batch,
                                int64_t n_head, int64_t kv_lora_rank, int64_t n_rot, float scale, float* out) {
  if (batch.n_tokens <= 0) return;
  // The latent row [c_kv | k_pe] is the key of every head and its first kv_lora_rank floats the value.
  impl_->run(
      "mla_attention",
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
  impl_->run("swiglu", [&] { return impl_->swiglu(gate, up, n, out); }, [&] { impl_->cpu->swiglu(gate, up, n, out); });
}

void CudaBackend::add(float* x, const float* y, int64_t n) {
  if (n <= 0) return;
  impl_->run("add", [&] { return impl_->add(x, y, n); }, [&] { impl_->cpu->add(x, y, n); });
}

// ---------------------------------------------------------------------------------------------

bool cuda_compiled_in() { return true; }

Expected<std::unique_ptr<Backend>> create_cuda_backend(const CudaOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> b, CudaBackend::create(options));
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace fathom
#endif
