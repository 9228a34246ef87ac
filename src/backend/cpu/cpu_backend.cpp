#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/activations.h"
#include "backend/cpu/attention.h"
#include "backend/cpu/matmul.h"
#include "quant/quant.h"

namespace fathom {

CpuBackend::CpuBackend(int n_threads, RepackProgress on_repack_progress)
    : pool_(n_threads), kernels_(&cpu::best_kernels()), on_repack_progress_(std::move(on_repack_progress)) {}

void CpuBackend::prepare_matmul_weights(const std::vector<TensorView>& weights, bool file_backed) {
  if (!kernels_->gemm_is_simd) return;  // the row-dot kernels read the GGUF layout
  uint64_t total = 0, done = 0;
  for (const TensorView& w : weights) total += w.n_bytes();
  for (const TensorView& w : weights) {
    repacked_.get(w, pool_, file_backed);
    done += w.n_bytes();
    if (on_repack_progress_) on_repack_progress_(done, total);
  }
}

void CpuBackend::matmul_batch(const std::vector<MatmulJob>& jobs) {
  cpu::matmul_batch(pool_, *kernels_, jobs, scratch_, &repacked_);
}

void CpuBackend::matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  cpu::matmul(pool_, *kernels_, w, x, n_tokens, y, scratch_, &repacked_);
}

void CpuBackend::get_rows(const TensorView& table, const int32_t* ids, int64_t n_ids, float* out) {
  const int64_t n = table.ne[0];
  for (int64_t i = 0; i < n_ids; ++i) {
    FATHOM_CHECK(ids[i] >= 0 && ids[i] < table.n_rows());
    quant::dequantize_row(table.dtype, table.row(ids[i]), out + i * n, n);
  }
}

void CpuBackend::rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out) {
  const cpu::RmsNormRowFn row = cpu::rms_norm_row_kernel(cpu::vector_isa(kernels_->isa));
  pool_.parallel_for(n_rows, std::max<int64_t>(1, 16384 / n), [&](int, int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) row(x + r * n, weight, n, eps, out + r * n);
  });
}

namespace {

// YaRN ramp: 1 below `low` rotations (keep extrapolated), 0 above `high` (interpolate).
float yarn_ramp(float low, float high, int64_t i0) {
  const float y = (static_cast<float>(i0) / 2.0f - low) / std::max(0.001f, high - low);
  return 1.0f - std::min(1.0f, std::max(0.0f, y));
}

// Dimension index at which a rotary pair completes n_rotations over the original context.
float yarn_corr_dim(int64_t n_rot, int64_t n_ctx_orig, float n_rotations, float base) {
  return static_cast<float>(n_rot) * std::log(static_cast<float>(n_ctx_orig) / (n_rotations * 2.0f * static_cast<float>(M_PI))) /
         (2.0f * std::log(base));
}

}  // namespace

void rope_cos_sin(int32_t position, const RopeParams& p, float* cos_out, float* sin_out) {
  const float theta_scale = std::pow(p.freq_base, -2.0f / static_cast<float>(p.n_rot));
  float corr_low = 0.0f, corr_high = 0.0f;
  if (p.ext_factor != 0.0f) {
    corr_low = std::max(0.0f, std::floor(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_fast, p.freq_base)));
    corr_high = std::min(static_cast<float>(p.n_rot - 1), std::ceil(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_slow, p.freq_base)));
  }
  float theta_extrap = static_cast<float>(position);
  for (int64_t i0 = 0; i0 < p.n_rot; i0 += 2) {
    const float factor = p.freq_factors ? p.freq_factors[i0 / 2] : 1.0f;
    const float theta_interp = p.freq_scale * theta_extrap / factor;
    float theta = theta_interp;
    float mscale = p.attn_factor;
    if (p.ext_factor != 0.0f) {
      const float ramp_mix = yarn_ramp(corr_low, corr_high, i0) * p.ext_factor;
      theta = theta_interp * (1.0f - ramp_mix) + theta_extrap / factor * ramp_mix;
      mscale *= 1.0f + 0.1f * std::log(1.0f / p.freq_scale);
    }
    cos_out[i0 / 2] = std::cos(theta) * mscale;
    sin_out[i0 / 2] = std::sin(theta) * mscale;
    theta_extrap *= theta_scale;
  }
}

void CpuBackend::rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                      const RopeParams& params) {
  const int64_t half = params.n_rot / 2;
  pool_.parallel_for(n_tokens, std::max<int64_t>(1, 4096 / (n_heads * head_dim)), [&](int, int64_t begin, int64_t end) {
    std::vector<float> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
    for (int64_t t = begin; t < end; ++t) {
      rope_cos_sin(positions[t], params, cos_t.data(), sin_t.data());
      for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + (t * n_heads + h) * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const int64_t a = params.mode == RopeMode::kNormal ? 2 * i : i;
          const int64_t b = params.mode == RopeMode::kNormal ? 2 * i + 1 : i + half;
          const float x0 = v[a], x1 = v[b];
          v[a] = x0 * cos_t[static_cast<size_t>(i)] - x1 * sin_t[static_cast<size_t>(i)];
          v[b] = x0 * sin_t[static_cast<size_t>(i)] + x1 * cos_t[static_cast<size_t>(i)];
        }
      }
    }
  });
}

void CpuBackend::store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v) {
  // Each token writes its own cache slots, so the tokens split over the threads, and f16/bf16
  // rows take the vector conversion: a prompt's rows converted by the scalar reference on one
  // thread were ~3% of a pp512 (1.5B Q8_0, 2 threads, Sapphire Rapids-class Xeon).
  const KvCacheShape& shape = kv.shape();
  const int64_t kw = shape.k_width, vw = shape.v_width;
  const cpu::HalfRowFn half = cpu::half_row_kernel(cpu::vector_isa(kernels_->isa));
  auto is_half = [](DType t) { return t == DType::F16 || t == DType::BF16; };
  pool_.parallel_for(batch.n_tokens, std::max<int64_t>(1, 8192 / (kw + vw)), [&](int, int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int32_t seq = batch.seq_ids[t], pos = batch.positions[t];
      if (is_half(shape.k_type)) half(shape.k_type, k + t * kw, reinterpret_cast<uint16_t*>(kv.k_slot(layer, seq, pos)), kw);
      else kv.store_k(layer, seq, pos, k + t * kw);
      if (vw == 0) continue;
      if (is_half(shape.v_type)) half(shape.v_type, v + t * vw, reinterpret_cast<uint16_t*>(kv.v_slot(layer, seq, pos)), vw);
      else kv.store_v(layer, seq, pos, v + t * vw);
    }
  });
}

void CpuBackend::attention(const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch, int64_t n_head,
                           int64_t n_head_kv, int64_t head_dim_k, int64_t head_dim_v, float scale, float* out) {
  cpu::attention(pool_, kernels_->isa, q, kv, layer, batch, n_head, n_head_kv, head_dim_k, head_dim_v, scale, out);
}

void CpuBackend::mla_attention(const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer, const AttentionBatch& batch,
                               int64_t n_head, int64_t kv_lora_rank, int64_t n_rot, float scale, float* out) {
  cpu::mla_attention(pool_, kernels_->isa, q_abs, q_pe, kv, layer, batch, n_head, kv_lora_rank, n_rot, scale, out);
}

void CpuBackend::swiglu(const float* gate, const float* up, int64_t n, float* out) {
  const cpu::SwigluFn kernel = cpu::swiglu_kernel(cpu::vector_isa(kernels_->isa));
  pool_.parallel_for(n, 16384, [&](int, int64_t begin, int64_t end) {
    kernel(gate + begin, up + begin, end - begin, out + begin);
  });
}

void CpuBackend::swiglu_matmul(const TensorView& w, float* gate, const float* up, int64_t n_tokens, float* y) {
  if (!cpu::matmul_swiglu(pool_, *kernels_, w, gate, up, n_tokens, y, scratch_, &repacked_))
    Backend::swiglu_matmul(w, gate, up, n_tokens, y);
}

void CpuBackend::rms_norm_ffn(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps,
                              float* normed, const TensorView& w_gate, const TensorView& w_up, const TensorView& w_down,
                              float* gate, float* up, float* y) {
  cpu::FfnMatrices m;
  if (cpu::ffn_fuses(pool_, *kernels_, w_gate, w_up, w_down, n_tokens, &repacked_, &m)) {
    rms_norm(x, norm_weight, n_tokens, n, eps, normed);
    cpu::ffn_swiglu(pool_, *kernels_, m, normed, n_tokens, y, scratch_);
    return;
  }
  Backend::rms_norm_ffn(x, norm_weight, n_tokens, n, eps, normed, w_gate, w_up, w_down, gate, up, y);
}

void CpuBackend::add(float* x, const float* y, int64_t n) {
  pool_.parallel_for(n, 16384, [&](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) x[i] += y[i];
  });
}

void CpuBackend::add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) {
  pool_.parallel_for(n_rows, std::max<int64_t>(1, 16384 / n), [&](int, int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t i = 0; i < n; ++i) x[r * n + i] += bias[i];
  });
}

}  // namespace fathom
