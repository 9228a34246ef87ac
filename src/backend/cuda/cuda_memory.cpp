// CudaBackend::Impl, memory side: staging and synchronization, CUDA graph capture, the
// activation table's callbacks, weights on the device and the KV cache mirrors.
#include "backend/cuda/cuda_impl.h"

#if FATHOM_HAVE_CUDA
#include <cstring>

namespace fathom {

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
      std::memcpy(w.host + static_cast<size_t>(w.rows[i]) * w.row_bytes, w.staged + i * w.row_bytes, w.row_bytes);
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
  const uint8_t* host_k = kv.k_data(layer, 0, 0);
  const uint8_t* host_v = shape.v_width > 0 ? kv.v_data(layer, 0, 0) : nullptr;
  const size_t n_rows = static_cast<size_t>(kv.pool().n_total()) * static_cast<size_t>(shape.block_size);
  if (m.k && m.host_k == host_k && m.host_v == host_v && m.n_rows == n_rows && m.k_row_bytes == kv.k_row_bytes() &&
      m.v_row_bytes == kv.v_row_bytes())
    return &m;
  if (mirror.out_of_memory) return static_cast<MirrorLayer*>(nullptr);
  m = MirrorLayer{};
  const size_t k_bytes = n_rows * kv.k_row_bytes();
  const size_t v_bytes = n_rows * kv.v_row_bytes();
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
  m.k_row_bytes = kv.k_row_bytes();
  m.v_row_bytes = kv.v_row_bytes();
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

}  // namespace fathom
#endif
