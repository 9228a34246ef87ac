// A Backend that hands every op to an inner backend: the base of decorators (the imatrix
// collector, the hybrid placement), which override only the ops they change. An op added to
// Backend is forwarded here once, and every decorator passes it on without being touched.
#pragma once

#include <vector>

#include "backend/backend.h"

namespace fathom {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(Backend& inner) : inner_(&inner) {}

  const char* name() const override { return inner_->name(); }
  int n_threads() const override { return inner_->n_threads(); }

  void prepare_matmul_weights(const std::vector<TensorView>& weights, bool file_backed) override {
    inner_->prepare_matmul_weights(weights, file_backed);
  }
  void matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) override { inner_->matmul(w, x, n_tokens, y); }
  void matmul_batch(const std::vector<MatmulJob>& jobs) override { inner_->matmul_batch(jobs); }
  void get_rows(const TensorView& table, const int32_t* ids, int64_t n_ids, float* out) override {
    inner_->get_rows(table, ids, n_ids, out);
  }
  void rms_norm_matmul_batch(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps, float* normed,
                             const std::vector<MatmulJob>& jobs) override {
    inner_->rms_norm_matmul_batch(x, norm_weight, n_tokens, n, eps, normed, jobs);
  }
  void swiglu_matmul(const TensorView& w, float* gate, const float* up, int64_t n_tokens, float* y) override {
    inner_->swiglu_matmul(w, gate, up, n_tokens, y);
  }
  void rms_norm_ffn(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps, float* normed,
                    const TensorView& w_gate, const TensorView& w_up, const TensorView& w_down, float* gate, float* up,
                    float* y) override {
    inner_->rms_norm_ffn(x, norm_weight, n_tokens, n, eps, normed, w_gate, w_up, w_down, gate, up, y);
  }
  void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out) override {
    inner_->rms_norm(x, weight, n_rows, n, eps, out);
  }
  void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
            const RopeParams& params) override {
    inner_->rope(x, n_tokens, n_heads, head_dim, positions, params);
  }
  void store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v) override {
    inner_->store_kv(kv, layer, batch, k, v);
  }
  void attention(const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch, int64_t n_head, int64_t n_head_kv,
                 int64_t head_dim_k, int64_t head_dim_v, float scale, float* out) override {
    inner_->attention(q, kv, layer, batch, n_head, n_head_kv, head_dim_k, head_dim_v, scale, out);
  }
  void mla_attention(const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer, const AttentionBatch& batch,
                     int64_t n_head, int64_t kv_lora_rank, int64_t n_rot, float scale, float* out) override {
    inner_->mla_attention(q_abs, q_pe, kv, layer, batch, n_head, kv_lora_rank, n_rot, scale, out);
  }
  void swiglu(const float* gate, const float* up, int64_t n, float* out) override { inner_->swiglu(gate, up, n, out); }
  void add(float* x, const float* y, int64_t n) override { inner_->add(x, y, n); }
  void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) override { inner_->add_bias(x, bias, n_rows, n); }
  void copy_strided(const float* src, float* dst, const StridedCopy& c) override { inner_->copy_strided(src, dst, c); }
  void top_candidates(const float* logits, int64_t n_rows, int64_t n_vocab, int64_t k, int32_t* ids, float* values) override {
    inner_->top_candidates(logits, n_rows, n_vocab, k, ids, values);
  }
  void moe_route(const float* router_logits, int64_t n_tokens, const RoutingParams& p, int32_t* experts, float* weights) override {
    inner_->moe_route(router_logits, n_tokens, p, experts, weights);
  }
  void gather_rows(const float* src, int64_t n_src_rows, int64_t width, const int32_t* rows, int64_t n_rows, float* dst) override {
    inner_->gather_rows(src, n_src_rows, width, rows, n_rows, dst);
  }
  void scatter_add_rows(const float* src, const int32_t* rows, const float* weights, int64_t n_rows, int64_t width, float* acc,
                        int64_t n_acc_rows) override {
    inner_->scatter_add_rows(src, rows, weights, n_rows, width, acc, n_acc_rows);
  }
  void begin_forward(int64_t n_tokens) override { inner_->begin_forward(n_tokens); }
  void sync_to_host(const float* p, int64_t n) override { inner_->sync_to_host(p, n); }
  void host_wrote(const float* p, int64_t n) override { inner_->host_wrote(p, n); }
  bool end_forward() override { return inner_->end_forward(); }

 protected:
  Backend& inner() const { return *inner_; }

 private:
  Backend* inner_;
};

}  // namespace fathom
