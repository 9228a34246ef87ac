// Hybrid CPU + accelerator execution: each op runs on the backend its weight is placed on.
//
// The architectures see one Backend. This one owns the CPU backend and the accelerator backend
// (which delegates what it cannot run to the same CPU backend, so there is one thread pool) and
// routes each op:
//   - matmul, get_rows, rms_norm, swiglu_matmul: where the weight's memory is placed; a batch
//     whose weights lie on both is split in two (device part first);
//   - store_kv, attention, mla_attention: where the layer's attention is placed (its KV cache);
//   - rope, swiglu, add (no weight): where the previous op ran, since that is where their input
//     was just made: activations cross between backends only at placement boundaries;
//   - weights this backend was not told about (f32 copies a loader made): like rope.
// Every op takes and returns host pointers, so a routing choice never changes a result beyond
// the backends' own rounding; it only decides which hardware does the work. The device may keep
// activations in its own memory (Backend's residency protocol): an op routed to the CPU has its
// inputs synced from the device first and its outputs announced to the device after, and the
// architecture's own sync_to_host / host_wrote / end_forward calls go to the device, as does
// every op routed nowhere below (ForwardingBackend): a device takes any op with host pointers.
#pragma once

#include <array>
#include <initializer_list>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "backend/forwarding_backend.h"

namespace fathom {

class CpuBackend;

// Which side of a hybrid placement something runs on.
enum class Placed : uint8_t { kCpu = 0, kDevice = 1 };

class PlacedBackend final : public ForwardingBackend {
 public:
  struct Range {
    const void* data = nullptr;
    uint64_t bytes = 0;
    Placed where = Placed::kCpu;
  };

  // ranges: the placed weights' memory; layer_attention: per layer, where its attention runs.
  PlacedBackend(std::shared_ptr<CpuBackend> cpu, std::unique_ptr<Backend> device, const std::vector<Range>& ranges,
                std::vector<Placed> layer_attention);
  ~PlacedBackend() override;

  int n_threads() const override;
  Backend& device() { return *device_; }
  // What the accelerator's own kernels run (placement sends the other weights' ops to the CPU).
  bool on_device(Op op, DType weight_type) const override { return device_->on_device(op, weight_type); }
  // Ops run on each backend so far (tests and --verbose).
  uint64_t ops_on(Placed where) const { return ops_[static_cast<size_t>(where)]; }

  void prepare_matmul_weights(const std::vector<TensorView>& weights, bool file_backed) override;
  void matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) override;
  void matmul_batch(const std::vector<MatmulJob>& jobs) override;
  void rms_norm_matmul_batch(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps, float* normed,
                             const std::vector<MatmulJob>& jobs) override;
  void swiglu_matmul(const TensorView& w, float* gate, const float* up, int64_t n_tokens, float* y) override;
  void rms_norm_ffn(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps, float* normed,
                    const TensorView& w_gate, const TensorView& w_up, const TensorView& w_down, float* gate, float* up,
                    float* y) override;
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
  void add(float* x, const float* y, int64_t n) override;
  void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) override;
  void copy_strided(const float* src, float* dst, const StridedCopy& c) override;
  void top_candidates(const float* logits, int64_t n_rows, int64_t n_vocab, int64_t k, int32_t* ids, float* values) override;

 private:
  struct Span {
    const float* p;
    int64_t n;
  };
  // Runs op on the CPU backend: `reads` synced from the device first, `writes` announced to it after.
  template <typename Op>
  void cpu_side(std::initializer_list<Span> reads, std::initializer_list<Span> writes, Op&& op);
  void cpu_batch(const std::vector<MatmulJob>& jobs);
  Placed target_of(const void* p);  // the placement of the weight memory holding p; else the last op's
  Placed layer_target(int64_t layer);
  Backend& on(Placed where);        // counts the op and remembers where it ran

  std::shared_ptr<CpuBackend> cpu_;
  std::unique_ptr<Backend> device_;
  std::map<uintptr_t, Range> ranges_;  // by start address
  std::vector<Placed> layer_attention_;
  Placed last_ = Placed::kCpu;
  std::array<uint64_t, 2> ops_{};
};

}  // namespace fathom
