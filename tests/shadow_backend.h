// A "device" backend for tests without an accelerator: the CPU kernels, run on activations kept
// in a separate heap ("device memory") through the same ResidencyTable a GPU backend uses, with
// the host copy of every op's output overwritten by NaN until someone asks for it
// (sync_to_host). A forward pass through it gives the CPU's logits bit for bit only if the
// architecture (and PlacedBackend at placement boundaries) keep the residency protocol: every host
// read synced first, every host write announced after. It also records the weights and layers it
// is handed, for the placement tests.
#pragma once

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>
#include <unordered_map>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/residency.h"

namespace fathom::testing_support {

// Heap blocks standing in for device memory; addresses keep the host's alignment mod 16.
class HeapDevice {
 public:
  ~HeapDevice() {
    for (auto& [address, raw] : blocks_) std::free(raw);
  }
  Expected<uintptr_t> allocate(size_t bytes, uintptr_t host_begin) {
    void* raw = std::malloc(bytes + 32);
    if (!raw) return error(ErrorCode::kOutOfMemory, "heap device: out of memory");
    const uintptr_t base = (reinterpret_cast<uintptr_t>(raw) + 15) & ~uintptr_t{15};
    const uintptr_t address = base + (host_begin & 15);
    blocks_[address] = raw;
    ++live_;
    return address;
  }
  void release(uintptr_t address) {
    auto it = blocks_.find(address);
    if (it == blocks_.end()) return;
    std::free(it->second);
    blocks_.erase(it);
    --live_;
  }
  Status upload(uintptr_t dst, const void* src, size_t bytes) {
    std::memcpy(reinterpret_cast<void*>(dst), src, bytes);
    return Status::ok();
  }
  Status download(void* dst, uintptr_t src, size_t bytes) {
    std::memcpy(dst, reinterpret_cast<const void*>(src), bytes);
    return Status::ok();
  }
  Status copy(uintptr_t dst, uintptr_t src, size_t bytes) {
    std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), bytes);
    return Status::ok();
  }
  int64_t live() const { return live_; }

 private:
  std::unordered_map<uintptr_t, void*> blocks_;
  int64_t live_ = 0;
};

class ShadowBackend final : public Backend {
 public:
  explicit ShadowBackend(int n_threads = 2) : cpu_(n_threads), table_(device_) {}

  const char* name() const override { return "shadow"; }
  int n_threads() const override { return cpu_.n_threads(); }

  void matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) override {
    weights.insert(w.data);
    float* xd = nullptr;
    float* yd = nullptr;
    resolve([&]() -> Status {
      FATHOM_ASSIGN_OR_RETURN(xd, in(x, n_tokens * w.ne[0]));
      FATHOM_ASSIGN_OR_RETURN(yd, out(y, n_tokens * w.n_rows()));
      return Status::ok();
    });
    work([&] { cpu_.matmul(w, xd, n_tokens, yd); });
    done({{y, n_tokens * w.n_rows()}});
  }
  void matmul_batch(const std::vector<MatmulJob>& jobs) override {
    // All addresses first (as a device backend resolves a batch before queueing it).
    std::vector<MatmulJob> on_device = jobs;
    resolve([&]() -> Status {
      for (size_t i = 0; i < jobs.size(); ++i) {
        FATHOM_ASSIGN_OR_RETURN(on_device[i].x, in(jobs[i].x, jobs[i].n_tokens * jobs[i].w.ne[0]));
        FATHOM_ASSIGN_OR_RETURN(on_device[i].y, out(jobs[i].y, jobs[i].n_tokens * jobs[i].w.n_rows()));
      }
      return Status::ok();
    });
    std::vector<std::pair<const float*, int64_t>> outputs;
    for (const MatmulJob& j : jobs) {
      weights.insert(j.w.data);
      outputs.emplace_back(j.y, j.n_tokens * j.w.n_rows());
    }
    work([&] { cpu_.matmul_batch(on_device); });
    done(outputs);
  }
  void get_rows(const TensorView& table, const int32_t* ids, int64_t n_ids, float* o) override {
    weights.insert(table.data);
    float* od = nullptr;
    resolve([&]() -> Status {
      FATHOM_ASSIGN_OR_RETURN(od, out(o, n_ids * table.ne[0]));
      return Status::ok();
    });
    work([&] { cpu_.get_rows(table, ids, n_ids, od); });
    done({{o, n_ids * table.ne[0]}});
  }
  void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* o) override {
    weights.insert(weight);
    float *xd = nullptr, *od = nullptr;
    resolve([&]() -> Status {
      if (x == o) {
        FATHOM_ASSIGN_OR_RETURN(od, upd(o, n_rows * n));
        xd = od;
      } else {
        FATHOM_ASSIGN_OR_RETURN(xd, in(x, n_rows * n));
        FATHOM_ASSIGN_OR_RETURN(od, out(o, n_rows * n));
      }
      return Status::ok();
    });
    work([&] { cpu_.rms_norm(xd, weight, n_rows, n, eps, od); });
    done({{o, n_rows * n}});
  }
  void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions, const RopeParams& p) override {
    float* xd = nullptr;
    resolve([&]() -> Status {
      FATHOM_ASSIGN_OR_RETURN(xd, upd(x, n_tokens * n_heads * head_dim));
      return Status::ok();
    });
    work([&] { cpu_.rope(xd, n_tokens, n_heads, head_dim, positions, p); });
    done({{x, n_tokens * n_heads * head_dim}});
  }
  void store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v) override {
    layers.insert(layer);
    float *kd = nullptr, *vd = nullptr;
    resolve([&]() -> Status {
      FATHOM_ASSIGN_OR_RETURN(kd, in(k, batch.n_tokens * kv.shape().k_width));
      if (v) {
        FATHOM_ASSIGN_OR_RETURN(vd, in(v, batch.n_tokens * kv.shape().v_width));
      }
      return Status::ok();
    });
    work([&] { cpu_.store_kv(kv, layer, batch, kd, vd); });  // the cache itself is shared memory here
    done({});
  }
  void attention(const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch, int64_t n_head, int64_t n_head_kv,
                 int64_t head_dim_k, int64_t head_dim_v, float scale, float* o) override {
    layers.insert(layer);
    float *qd = nullptr, *od = nullptr;
    resolve([&]() -> Status {
      FATHOM_ASSIGN_OR_RETURN(qd, in(q, batch.n_tokens * n_head * head_dim_k));
      FATHOM_ASSIGN_OR_RETURN(od, out(o, batch.n_tokens * n_head * head_dim_v));
      return Status::ok();
    });
    work([&] { cpu_.attention(qd, kv, layer, batch, n_head, n_head_kv, head_dim_k, head_dim_v, scale, od); });
    done({{o, batch.n_tokens * n_head * head_dim_v}});
  }
  void mla_attention(const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer, const AttentionBatch& batch,
                     int64_t n_head, int64_t kv_lora_rank, int64_t n_rot, float scale, float* o) override {
    layers.insert(layer);
    float *ad = nullptr, *pd = nullptr, *od = nullptr;
    resolve([&]() -> Status {
      FATHOM_ASSIGN_OR_RETURN(ad, in(q_abs, batch.n_tokens * n_head * kv_lora_rank));
      FATHOM_ASSIGN_OR_RETURN(pd, in(q_pe, batch.n_tokens * n_head * n_rot));
      FATHOM_ASSIGN_OR_RETURN(od, out(o, batch.n_tokens * n_head * kv_lora_rank));
      return Status::ok();
    });
    work([&] { cpu_.mla_attention(ad, pd, kv, layer, batch, n_head, kv_lora_rank, n_rot, scale, od); });
    done({{o, batch.n_tokens * n_head * kv_lora_rank}});
  }
  void swiglu(const float* gate, const float* up, int64_t n, float* o) override {
    float *gd = nullptr, *ud = nullptr, *od = nullptr;
    resolve([&]() -> Status {
      if (o == gate) {
        FATHOM_ASSIGN_OR_RETURN(gd, upd(o, n));
        od = gd;
      } else {
        FATHOM_ASSIGN_OR_RETURN(gd, in(gate, n));
        FATHOM_ASSIGN_OR_RETURN(od, out(o, n));
      }
      FATHOM_ASSIGN_OR_RETURN(ud, in(up, n));
      return Status::ok();
    });
    work([&] { cpu_.swiglu(gd, ud, n, od); });
    done({{o, n}});
  }
  void add(float* x, const float* y, int64_t n) override {
    float *xd = nullptr, *yd = nullptr;
    resolve([&]() -> Status {
      FATHOM_ASSIGN_OR_RETURN(xd, upd(x, n));
      FATHOM_ASSIGN_OR_RETURN(yd, in(y, n));
      return Status::ok();
    });
    work([&] { cpu_.add(xd, yd, n); });
    done({{x, n}});
  }
  void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) override {
    weights.insert(bias);
    float* xd = nullptr;
    resolve([&]() -> Status {
      FATHOM_ASSIGN_OR_RETURN(xd, upd(x, n_rows * n));
      return Status::ok();
    });
    work([&] { cpu_.add_bias(xd, bias, n_rows, n); });
    done({{x, n_rows * n}});
  }
  void copy_strided(const float* src, float* dst, const StridedCopy& c) override {
    float *sd = nullptr, *dd = nullptr;
    resolve([&]() -> Status {
      FATHOM_ASSIGN_OR_RETURN(sd, in(src, c.src_span()));
      FATHOM_ASSIGN_OR_RETURN(dd, upd(dst, c.dst_span()));
      return Status::ok();
    });
    work([&] { cpu_.copy_strided(sd, dd, c); });
    done({{dst, c.dst_span()}});
  }

  void begin_forward(int64_t) override {
    ++passes_;
    losing_ = lose_every_pass || passes_ == lose_pass;
  }
  void top_candidates(const float* logits, int64_t n_rows, int64_t n_vocab, int64_t k, int32_t* ids, float* values) override {
    float* ld = nullptr;
    resolve([&]() -> Status {
      FATHOM_ASSIGN_OR_RETURN(ld, in(logits, n_rows * n_vocab));
      return Status::ok();
    });
    ++top_calls;
    work([&] { cpu_.top_candidates(ld, n_rows, n_vocab, k, ids, values); });  // the CPU's host code on "device" rows
    done({});
  }
  void sync_to_host(const float* p, int64_t n) override { check(table_.to_host(p, bytes(n))); }
  void host_wrote(const float* p, int64_t n) override { check(table_.host_wrote(p, bytes(n))); }
  bool end_forward() override {
    table_.clear();
    table_.end_op();
    const bool lost = losing_;
    losing_ = false;
    return !lost;
  }

  // Tests of run_forward: the ops of pass number lose_pass (1 = the first begin_forward) do no
  // work, as when a device's graph fails, and its end_forward says so.
  int64_t lose_pass = 0;
  int64_t top_calls = 0;  // top_candidates calls (the logits rows never came back whole)
  bool lose_every_pass = false;

  const ResidencyStats& stats() const { return table_.stats(); }
  int64_t live_buffers() const { return device_.live(); }
  size_t entries() const { return table_.size(); }

  std::set<const void*> weights;
  std::set<int64_t> layers;

 private:
  static size_t bytes(int64_t n) { return static_cast<size_t>(n) * sizeof(float); }
  static void check(const Status& st) {
    if (!st.is_ok()) std::abort();  // the heap device does not fail
  }
  template <typename F>
  void work(F&& f) {
    if (!losing_) f();
  }
  template <typename F>
  void resolve(F&& f) {
    check(table_.resolve_op(f));
  }
  Expected<float*> in(const float* p, int64_t n) {
    FATHOM_ASSIGN_OR_RETURN(const uintptr_t d, table_.input(p, bytes(n)));
    return reinterpret_cast<float*>(d);
  }
  Expected<float*> out(const float* p, int64_t n) {
    FATHOM_ASSIGN_OR_RETURN(const uintptr_t d, table_.output(p, bytes(n)));
    return reinterpret_cast<float*>(d);
  }
  Expected<float*> upd(const float* p, int64_t n) {
    FATHOM_ASSIGN_OR_RETURN(const uintptr_t d, table_.update(p, bytes(n)));
    return reinterpret_cast<float*>(d);
  }
  // The op ran: its outputs' host copies are stale now, so make them NaN.
  void done(const std::vector<std::pair<const float*, int64_t>>& outputs) {
    for (const auto& [p, n] : outputs)
      std::fill(const_cast<float*>(p), const_cast<float*>(p) + n, std::numeric_limits<float>::quiet_NaN());
    table_.end_op();
  }

  CpuBackend cpu_;
  int64_t passes_ = 0;
  bool losing_ = false;
  HeapDevice device_;
  ResidencyTable<HeapDevice> table_;
};

}  // namespace fathom::testing_support
