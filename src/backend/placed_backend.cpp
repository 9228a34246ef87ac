#include "backend/placed_backend.h"

#include "backend/cpu/cpu_backend.h"

namespace fathom {

PlacedBackend::PlacedBackend(std::shared_ptr<CpuBackend> cpu, std::unique_ptr<Backend> device, const std::vector<Range>& ranges,
                             std::vector<Placed> layer_attention)
    : cpu_(std::move(cpu)), device_(std::move(device)), layer_attention_(std::move(layer_attention)) {
  for (const Range& r : ranges)
    if (r.data && r.bytes > 0) ranges_[reinterpret_cast<uintptr_t>(r.data)] = r;
}

PlacedBackend::~PlacedBackend() = default;

const char* PlacedBackend::name() const { return device_->name(); }
bool PlacedBackend::supports(Op op, DType weight_type) const { return cpu_->supports(op, weight_type); }
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

void PlacedBackend::matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  on(target_of(w.data)).matmul(w, x, n_tokens, y);
}

void PlacedBackend::matmul_batch(const std::vector<MatmulJob>& jobs) {
  std::vector<MatmulJob> on_device, on_cpu;
  for (const MatmulJob& j : jobs) (target_of(j.w.data) == Placed::kDevice ? on_device : on_cpu).push_back(j);
  if (!on_device.empty()) on(Placed::kDevice).matmul_batch(on_device);
  if (!on_cpu.empty()) on(Placed::kCpu).matmul_batch(on_cpu);
}

void PlacedBackend::rms_norm_matmul_batch(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps,
                                          float* normed, const std::vector<MatmulJob>& jobs) {
  const Placed t = target_of(norm_weight);
  bool same = true;
  for (const MatmulJob& j : jobs) same = same && target_of(j.w.data) == t;
  if (same) {
    on(t).rms_norm_matmul_batch(x, norm_weight, n_tokens, n, eps, normed, jobs);
    return;
  }
  on(t).rms_norm(x, norm_weight, n_tokens, n, eps, normed);  // the products on both sides read it
  matmul_batch(jobs);
}

void PlacedBackend::swiglu_matmul(const TensorView& w, float* gate, const float* up, int64_t n_tokens, float* y) {
  on(target_of(w.data)).swiglu_matmul(w, gate, up, n_tokens, y);
}

void PlacedBackend::get_rows(const TensorView& table, const int32_t* ids, int64_t n_ids, float* out) {
  on(target_of(table.data)).get_rows(table, ids, n_ids, out);
}

void PlacedBackend::rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out) {
  on(target_of(weight)).rms_norm(x, weight, n_rows, n, eps, out);
}

void PlacedBackend::rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                         const RopeParams& params) {
  on(last_).rope(x, n_tokens, n_heads, head_dim, positions, params);
}

void PlacedBackend::store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v) {
  on(layer_target(layer)).store_kv(kv, layer, batch, k, v);
}

void PlacedBackend::attention(const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch, int64_t n_head,
                              int64_t n_head_kv, int64_t head_dim_k, int64_t head_dim_v, float scale, float* out) {
  on(layer_target(layer)).attention(q, kv, layer, batch, n_head, n_head_kv, head_dim_k, head_dim_v, scale, out);
}

void PlacedBackend::mla_attention(const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer, const AttentionBatch& batch,
                                  int64_t n_head, int64_t kv_lora_rank, int64_t n_rot, float scale, float* out) {
  on(layer_target(layer)).mla_attention(q_abs, q_pe, kv, layer, batch, n_head, kv_lora_rank, n_rot, scale, out);
}

void PlacedBackend::swiglu(const float* gate, const float* up, int64_t n, float* out) { on(last_).swiglu(gate, up, n, out); }

void PlacedBackend::add(float* x, const float* y, int64_t n) { on(last_).add(x, y, n); }

}  // namespace fathom
