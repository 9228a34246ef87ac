#include "backend/placed_backend.h"

#include "backend/cpu/cpu_backend.h"

namespace fathom {

PlacedBackend::PlacedBackend(std::shared_ptr<CpuBackend> cpu, std::unique_ptr<Backend> device, const std::vector<Range>& ranges,
                             std::vector<Placed> layer_attention)
    : ForwardingBackend(*device), cpu_(std::move(cpu)), device_(std::move(device)), layer_attention_(std::move(layer_attention)) {
  for (const Range& r : ranges)
    if (r.data && r.bytes > 0) ranges_[reinterpret_cast<uintptr_t>(r.data)] = r;
}

PlacedBackend::~PlacedBackend() = default;

int PlacedBackend::n_threads() const { return cpu_->n_threads(); }

Placed PlacedBackend::target_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = ranges_.upper_bound(a);
  if (it == ranges_.begin()) return last_;
  --it;
  return a < it->first + it->second.bytes ? it->second.where : last_;
}

Placed PlacedBackend::layer_target(int64_t layer) {
  return layer >= 0 && layer < static_cast<int64_t>(layer_attention_.size()) ? layer_attention_[static_cast<size_t>(layer)] : last_;
}

Backend& PlacedBackend::on(Placed where) {
  ++ops_[static_cast<size_t>(where)];
  last_ = where;
  return where == Placed::kDevice ? *device_ : static_cast<Backend&>(*cpu_);
}

void PlacedBackend::prepare_matmul_weights(const std::vector<TensorView>& weights, bool file_backed) {
  std::vector<TensorView> on_device, on_cpu;
  for (const TensorView& w : weights) (target_of(w.data) == Placed::kDevice ? on_device : on_cpu).push_back(w);
  if (!on_device.empty()) device_->prepare_matmul_weights(on_device, file_backed);
  if (!on_cpu.empty()) cpu_->prepare_matmul_weights(on_cpu, file_backed);
}

template <typename Op>
void PlacedBackend::cpu_side(std::initializer_list<Span> reads, std::initializer_list<Span> writes, Op&& op) {
  for (const Span& r : reads)
    if (r.p && r.n > 0) device_->sync_to_host(r.p, r.n);
  op(on(Placed::kCpu));
  for (const Span& w : writes)
    if (w.p && w.n > 0) device_->host_wrote(w.p, w.n);
}

void PlacedBackend::cpu_batch(const std::vector<MatmulJob>& jobs) {
  for (const MatmulJob& j : jobs) device_->sync_to_host(j.x, j.n_tokens * j.w.ne[0]);
  on(Placed::kCpu).matmul_batch(jobs);
  for (const MatmulJob& j : jobs) device_->host_wrote(j.y, j.n_tokens * j.w.n_rows());
}

void PlacedBackend::matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  if (target_of(w.data) == Placed::kDevice) return on(Placed::kDevice).matmul(w, x, n_tokens, y);
  cpu_side({{x, n_tokens * w.ne[0]}}, {{y, n_tokens * w.n_rows()}}, [&](Backend& b) { b.matmul(w, x, n_tokens, y); });
}

void PlacedBackend::matmul_batch(const std::vector<MatmulJob>& jobs) {
  std::vector<MatmulJob> on_device, on_cpu;
  for (const MatmulJob& j : jobs) (target_of(j.w.data) == Placed::kDevice ? on_device : on_cpu).push_back(j);
  if (!on_device.empty()) on(Placed::kDevice).matmul_batch(on_device);
  if (!on_cpu.empty()) cpu_batch(on_cpu);
}

void PlacedBackend::rms_norm_matmul_batch(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps,
                                          float* normed, const std::vector<MatmulJob>& jobs) {
  const Placed t = target_of(norm_weight);
  bool same = true;
  for (const MatmulJob& j : jobs) same = same && target_of(j.w.data) == t;
  if (same && t == Placed::kDevice) return on(t).rms_norm_matmul_batch(x, norm_weight, n_tokens, n, eps, normed, jobs);
  if (same) {
    device_->sync_to_host(x, n_tokens * n);
    on(t).rms_norm_matmul_batch(x, norm_weight, n_tokens, n, eps, normed, jobs);
    device_->host_wrote(normed, n_tokens * n);
    for (const MatmulJob& j : jobs) device_->host_wrote(j.y, j.n_tokens * j.w.n_rows());
    return;
  }
  rms_norm(x, norm_weight, n_tokens, n, eps, normed);  // the products on both sides read it
  matmul_batch(jobs);
}

void PlacedBackend::swiglu_matmul(const TensorView& w, float* gate, const float* up, int64_t n_tokens, float* y) {
  if (target_of(w.data) == Placed::kDevice) return on(Placed::kDevice).swiglu_matmul(w, gate, up, n_tokens, y);
  const int64_t n_in = n_tokens * w.ne[0];
  cpu_side({{gate, n_in}, {up, n_in}}, {{gate, n_in}, {y, n_tokens * w.n_rows()}},
           [&](Backend& b) { b.swiglu_matmul(w, gate, up, n_tokens, y); });
}

// Whole on one side: that side's (the CPU fuses it on AMX); split: each product where its weights are.
void PlacedBackend::rms_norm_ffn(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps,
                                 float* normed, const TensorView& w_gate, const TensorView& w_up, const TensorView& w_down,
                                 float* gate, float* up, float* y) {
  const Placed t = target_of(norm_weight);
  if (target_of(w_gate.data) != t || target_of(w_up.data) != t || target_of(w_down.data) != t)
    return Backend::rms_norm_ffn(x, norm_weight, n_tokens, n, eps, normed, w_gate, w_up, w_down, gate, up, y);
  if (t == Placed::kDevice)
    return on(t).rms_norm_ffn(x, norm_weight, n_tokens, n, eps, normed, w_gate, w_up, w_down, gate, up, y);
  const int64_t ff_floats = n_tokens * w_gate.n_rows();  // of gate and of up
  cpu_side({{x, n_tokens * n}}, {{normed, n_tokens * n}, {gate, ff_floats}, {up, ff_floats}, {y, n_tokens * w_down.n_rows()}},
           [&](Backend& b) { b.rms_norm_ffn(x, norm_weight, n_tokens, n, eps, normed, w_gate, w_up, w_down, gate, up, y); });
}

void PlacedBackend::get_rows(const TensorView& table, const int32_t* ids, int64_t n_ids, float* out) {
  if (target_of(table.data) == Placed::kDevice) return on(Placed::kDevice).get_rows(table, ids, n_ids, out);
  cpu_side({}, {{out, n_ids * table.ne[0]}}, [&](Backend& b) { b.get_rows(table, ids, n_ids, out); });
}

void PlacedBackend::rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out) {
  if (target_of(weight) == Placed::kDevice) return on(Placed::kDevice).rms_norm(x, weight, n_rows, n, eps, out);
  cpu_side({{x, n_rows * n}}, {{out, n_rows * n}}, [&](Backend& b) { b.rms_norm(x, weight, n_rows, n, eps, out); });
}

void PlacedBackend::rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                         const RopeParams& params) {
  if (last_ == Placed::kDevice) return on(Placed::kDevice).rope(x, n_tokens, n_heads, head_dim, positions, params);
  const int64_t count = n_tokens * n_heads * head_dim;
  cpu_side({{x, count}}, {{x, count}}, [&](Backend& b) { b.rope(x, n_tokens, n_heads, head_dim, positions, params); });
}

void PlacedBackend::store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v) {
  if (layer_target(layer) == Placed::kDevice) return on(Placed::kDevice).store_kv(kv, layer, batch, k, v);
  cpu_side({{k, batch.n_tokens * kv.shape().k_width}, {v, batch.n_tokens * kv.shape().v_width}}, {},
           [&](Backend& b) { b.store_kv(kv, layer, batch, k, v); });
}

void PlacedBackend::attention(const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch, int64_t n_head,
                              int64_t n_head_kv, int64_t head_dim_k, int64_t head_dim_v, float scale, float* out) {
  if (layer_target(layer) == Placed::kDevice)
    return on(Placed::kDevice).attention(q, kv, layer, batch, n_head, n_head_kv, head_dim_k, head_dim_v, scale, out);
  cpu_side({{q, batch.n_tokens * n_head * head_dim_k}}, {{out, batch.n_tokens * n_head * head_dim_v}},
           [&](Backend& b) { b.attention(q, kv, layer, batch, n_head, n_head_kv, head_dim_k, head_dim_v, scale, out); });
}

void PlacedBackend::mla_attention(const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer, const AttentionBatch& batch,
                                  int64_t n_head, int64_t kv_lora_rank, int64_t n_rot, float scale, float* out) {
  if (layer_target(layer) == Placed::kDevice)
    return on(Placed::kDevice).mla_attention(q_abs, q_pe, kv, layer, batch, n_head, kv_lora_rank, n_rot, scale, out);
  const int64_t n_q = batch.n_tokens * n_head;
  cpu_side({{q_abs, n_q * kv_lora_rank}, {q_pe, n_q * n_rot}}, {{out, n_q * kv_lora_rank}},
           [&](Backend& b) { b.mla_attention(q_abs, q_pe, kv, layer, batch, n_head, kv_lora_rank, n_rot, scale, out); });
}

void PlacedBackend::swiglu(const float* gate, const float* up, int64_t n, float* out) {
  if (last_ == Placed::kDevice) return on(Placed::kDevice).swiglu(gate, up, n, out);
  cpu_side({{gate, n}, {up, n}}, {{out, n}}, [&](Backend& b) { b.swiglu(gate, up, n, out); });
}

void PlacedBackend::add(float* x, const float* y, int64_t n) {
  if (last_ == Placed::kDevice) return on(Placed::kDevice).add(x, y, n);
  cpu_side({{x, n}, {y, n}}, {{x, n}}, [&](Backend& b) { b.add(x, y, n); });
}

void PlacedBackend::add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) {
  if (target_of(bias) == Placed::kDevice) return on(Placed::kDevice).add_bias(x, bias, n_rows, n);
  cpu_side({{x, n_rows * n}}, {{x, n_rows * n}}, [&](Backend& b) { b.add_bias(x, bias, n_rows, n); });
}

void PlacedBackend::copy_strided(const float* src, float* dst, const StridedCopy& c) {
  if (last_ == Placed::kDevice) return on(Placed::kDevice).copy_strided(src, dst, c);
  cpu_side({{src, c.src_span()}, {dst, c.dst_span()}}, {{dst, c.dst_span()}}, [&](Backend& b) { b.copy_strided(src, dst, c); });
}

void PlacedBackend::top_candidates(const float* logits, int64_t n_rows, int64_t n_vocab, int64_t k, int32_t* ids, float* values) {
  if (last_ == Placed::kDevice) return on(Placed::kDevice).top_candidates(logits, n_rows, n_vocab, k, ids, values);
  cpu_side({{logits, n_rows * n_vocab}}, {}, [&](Backend& b) { b.top_candidates(logits, n_rows, n_vocab, k, ids, values); });
}

}  // namespace fathom
