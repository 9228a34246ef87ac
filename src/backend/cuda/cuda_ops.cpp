// CudaBackend::Impl, the device ops: each resolves its activations through the residency table,
// stages its parameters and queues its kernels, without waiting.
#include "backend/cuda/cuda_impl.h"

#if FATHOM_HAVE_CUDA
#include <cstring>

namespace fathom {

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
    if (!resident) {  // (resident, the common case: nothing to collect)
      std::vector<Span> writes;
      for (const MatmulJob& j : jobs)
        if (j.n_tokens > 0) writes.push_back({j.y, j.n_tokens * j.w.n_rows()});
      after_op(writes);
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
  const KvCacheShape& shape = kv.shape();
  const bool has_v = shape.v_width > 0 && v != nullptr;
  // The mirrors hold rows in the cache's types; for types the attention kernel does not read
  // there is no mirror and the CPU converts.
  if (!cuda::attention_reads(shape.k_type) || (has_v && !cuda::attention_reads(shape.v_type))) return not_covered();
  FATHOM_CUDA_TRY(cudaSetDevice(info.index));
  FATHOM_ASSIGN_OR_RETURN(MirrorLayer* m, mirror_layer(kv, layer));
  if (!m) return not_covered();  // attention on this cache runs on the CPU, from the host rows
  const std::vector<int64_t> rows = cuda::kv_rows_of_batch(kv, batch);
  const int64_t k_width = shape.k_width, v_width = shape.v_width;
  const size_t k_row_bytes = kv.k_row_bytes(), v_row_bytes = kv.v_row_bytes();
  // The host rows are written too (CPU fallbacks read them, and a mirror is seeded from them):
  // the converted rows, staged in pinned memory now, copied at the next synchronization. So the
  // host holds the device's bytes whatever the type.
  const size_t k_bytes = static_cast<size_t>(batch.n_tokens) * k_row_bytes;
  const size_t v_bytes = has_v ? static_cast<size_t>(batch.n_tokens) * v_row_bytes : 0;
  uint8_t* staged_k = static_cast<uint8_t*>(pinned.take(k_bytes));
  uint8_t* staged_v = has_v ? static_cast<uint8_t*>(pinned.take(v_bytes)) : nullptr;
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
  // The converted rows, packed [n_tokens, row bytes] (V's from a 16-byte boundary), on their way to the host.
  const size_t v_at = (k_bytes + 15) / 16 * 16;
  uint8_t* packed_k = nullptr;
  FATHOM_RETURN_IF_ERROR(scratch(static_cast<int64_t>(v_at + v_bytes), &packed_k));
  uint8_t* packed_v = packed_k + v_at;
  FATHOM_CUDA_TRY(cuda::launch_store_kv_rows(shape.k_type, k_device, k_width, rows_device, batch.n_tokens, k_row_bytes,
                                             static_cast<uint8_t*>(m->k.get()), packed_k, stream));
  if (has_v)
    FATHOM_CUDA_TRY(cuda::launch_store_kv_rows(shape.v_type, v_device, v_width, rows_device, batch.n_tokens, v_row_bytes,
                                               static_cast<uint8_t*>(m->v.get()), packed_v, stream));
  if (!staged) {
    std::vector<uint8_t> host(v_at + v_bytes);
    FATHOM_RETURN_IF_ERROR(download_now(host.data(), packed_k, host.size()));
    const auto write = [&](uint8_t* base, const uint8_t* from, size_t row_bytes) {
      for (size_t i = 0; i < rows.size(); ++i)
        std::memcpy(base + static_cast<size_t>(rows[i]) * row_bytes, from + i * row_bytes, row_bytes);
    };
    write(const_cast<uint8_t*>(m->host_k), host.data(), k_row_bytes);
    if (has_v) write(const_cast<uint8_t*>(m->host_v), host.data() + v_at, v_row_bytes);
    return Status::ok();
  }
  FATHOM_CUDA_TRY(cudaMemcpyAsync(staged_k, packed_k, k_bytes, cudaMemcpyDeviceToHost, stream));
  writebacks.push_back({const_cast<uint8_t*>(m->host_k), k_row_bytes, staged_k, rows});
  if (has_v) {
    FATHOM_CUDA_TRY(cudaMemcpyAsync(staged_v, packed_v, v_bytes, cudaMemcpyDeviceToHost, stream));
    writebacks.push_back({const_cast<uint8_t*>(m->host_v), v_row_bytes, staged_v, rows});
  }
  return Status::ok();
}

Status CudaBackend::Impl::attend(const float* q_a, int64_t width_a, const float* q_b, int64_t width_b, KvCache& kv,
                                 int64_t layer, const AttentionBatch& batch, int64_t n_head, int64_t group,
                                 int64_t head_dim_v, bool latent, float scale, float* out) {
  const DType k_type = kv.shape().k_type, v_type = latent ? k_type : kv.shape().v_type;
  if (width_a + width_b > cuda::kAttentionMaxQueryDim || head_dim_v > cuda::kAttentionMaxValueDim ||
      !cuda::attention_reads(k_type) || !cuda::attention_reads(v_type))
    return not_covered();
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
  a.k = static_cast<const uint8_t*>(m->k.get());
  a.k_row_bytes = kv.k_row_bytes();
  a.k_type = k_type;
  a.v = static_cast<const uint8_t*>(latent ? m->k.get() : m->v.get());
  a.v_row_bytes = latent ? kv.k_row_bytes() : kv.v_row_bytes();
  a.v_type = v_type;
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

}  // namespace fathom
#endif
