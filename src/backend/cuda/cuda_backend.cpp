#include "backend/cuda/cuda_backend.h"

#if FATHOM_HAVE_CUDA
#include <cstdlib>

#include "backend/cuda/cuda_impl.h"
#include "backend/device_spec.h"

namespace fathom {

namespace {

// Device memory kept free when weights are uploaded up front: scratch for activations and the
// f16 weight slabs of the cuBLAS path, cuBLAS's workspace, and the KV cache mirrors.
constexpr size_t kReservedBytes = size_t{1} << 30;

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

}  // namespace

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

int CudaBackend::n_threads() const { return impl_->cpu->n_threads(); }
const CudaDeviceInfo& CudaBackend::device() const { return impl_->info; }
uint64_t CudaBackend::fallback_ops() const { return impl_->fallback_ops; }

bool CudaBackend::on_device(Op op, DType weight_type) const {
  switch (op) {
    case Op::kMatmul: return cuda::matmul_block_values(weight_type) != 0;
    case Op::kGetRows: return false;
    case Op::kAttention: return cuda::attention_reads(weight_type);  // the KV cache's element type
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

Expected<CudaMemoryInfo> cuda_memory_info(const std::string& device) {
  FATHOM_ASSIGN_OR_RETURN(const int spec_index, parse_device_spec(device, "cuda"));
  const int index = spec_index < 0 ? 0 : spec_index;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || index >= count) {
    cudaGetLastError();
    return error(ErrorCode::kNotFound, strprintf("no CUDA device %d", index));
  }
  CudaMemoryInfo m;
  cudaDeviceProp prop{};
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaSetDevice(index) != cudaSuccess || cudaGetDeviceProperties(&prop, index) != cudaSuccess ||
      cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();
    return error(ErrorCode::kUnavailable, strprintf("CUDA device %d does not answer", index));
  }
  m.name = prop.name;
  m.free_bytes = free_bytes;
  m.total_bytes = total_bytes;
  return m;
}

Expected<std::unique_ptr<Backend>> create_cuda_backend(const CudaOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> b, CudaBackend::create(options));
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace fathom
#endif
