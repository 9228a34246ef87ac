// CPU backend: owns the one thread pool; every op splits its work over all threads.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/vec_dot.h"
#include "core/threadpool.h"

namespace fathom {

// Called by prepare_matmul_weights after each matrix it repacks: bytes done and in all, of that call.
using RepackProgress = std::function<void(uint64_t done_bytes, uint64_t total_bytes)>;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int n_threads, RepackProgress on_repack_progress = nullptr);

  const char* name() const override { return "cpu"; }
  int n_threads() const override { return pool_.n_threads(); }
  ThreadPool& pool() { return pool_; }

  void prepare_matmul_weights(const std::vector<TensorView>& weights, bool file_backed) override;
  void matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) override;
  void matmul_batch(const std::vector<MatmulJob>& jobs) override;
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
  // The activation fused into the down projection's token conversion where its weights are
  // quantized (cpu::matmul_swiglu): gate is left as it was. Otherwise the unfused default.
  void swiglu_matmul(const TensorView& w, float* gate, const float* up, int64_t n_tokens, float* y) override;
  // The AMX BF16 path fuses the activation into the gate/up products (cpu::gemm_swiglu).
  void rms_norm_ffn(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps, float* normed,
                    const TensorView& w_gate, const TensorView& w_up, const TensorView& w_down, float* gate, float* up,
                    float* y) override;
  void add(float* x, const float* y, int64_t n) override;
  void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) override;

 private:
  ThreadPool pool_;
  const cpu::Kernels* kernels_;  // best ISA table for this CPU, chosen once
  RepackProgress on_repack_progress_;  // null: repacking reports nothing
  cpu::MatmulScratch scratch_;  // activations quantized for matmul
  cpu::RepackCache repacked_;   // weights in the x16 layout, made on first use
};

// cos/sin table of one position for the rotary pairs, YaRN included: out has n_rot/2 pairs.
void rope_cos_sin(int32_t position, const RopeParams& params, float* cos_out, float* sin_out);

}  // namespace fathom
