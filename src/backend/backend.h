// The op set an architecture is written in. Every backend (cpu, cuda, opencl) takes every op and
// every weight format the CPU can dequantize: a device backend runs on its CPU delegate what its
// kernels do not cover (backend/device_fallback.h), so an architecture never asks what is
// supported. Activations are f32 rows named by host addresses; weights stay in their GGUF block
// formats (TensorView). Optional ops have a host default here, so a new op needs only that
// default to run everywhere; a device overrides it to keep the op's data resident.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/moe_routing.h"
#include "core/tensor.h"
#include "kv/kv_cache.h"

namespace fathom {

// Ops a device backend may or may not run in its own kernels (on_device(op, dtype) of cuda, opencl).
enum class Op { kMatmul, kGetRows, kRmsNorm, kRope, kAttention, kSwiglu, kAdd };

enum class RopeMode { kNormal, kNeox };  // pairs (2i, 2i+1) or (i, i + n_rot/2)

// Rotary embedding parameters, including YaRN (ext_factor > 0) as DeepSeek-V2/V3 use it.
struct RopeParams {
  int64_t n_rot = 0;           // rotated dims at the start of each head (even)
  float freq_base = 10000.0f;  // theta base
  float freq_scale = 1.0f;     // 1 / linear or YaRN scaling factor
  RopeMode mode = RopeMode::kNormal;
  float ext_factor = 0.0f;     // YaRN: 1 enables the interpolation ramp, 0 disables it
  float attn_factor = 1.0f;    // YaRN: magnitude scale applied to cos/sin
  float beta_fast = 32.0f;     // YaRN: ramp bounds in rotations
  float beta_slow = 1.0f;
  int64_t n_ctx_orig = 0;      // YaRN: original training context
  const float* freq_factors = nullptr;  // [n_rot/2] per-pair divisors of theta (llama3 rope_freqs), or nullptr
};

// The tokens of one forward batch as attention sees them.
struct AttentionBatch {
  const int32_t* seq_ids = nullptr;    // [n_tokens] sequence of each token
  const int32_t* positions = nullptr;  // [n_tokens] position of each token in its sequence
  int64_t n_tokens = 0;
};

// A copy of n_outer x n_inner runs of `width` floats between strided layouts (strides in floats):
// dst[o * dst_outer + i * dst_inner + j] = src[o * src_outer + i * src_inner + j]. Gathers a
// column block of every row (n_inner = 1), or regroups [token][head] rows head-major.
struct StridedCopy {
  int64_t n_outer = 1, n_inner = 1, width = 0;
  int64_t src_outer = 0, src_inner = 0;
  int64_t dst_outer = 0, dst_inner = 0;
  // Floats from the first element read (written) to one past the last, for src (dst).
  int64_t src_span() const { return span(src_outer, src_inner); }
  int64_t dst_span() const { return span(dst_outer, dst_inner); }

 private:
  int64_t span(int64_t outer, int64_t inner) const {
    return n_outer <= 0 || n_inner <= 0 || width <= 0 ? 0 : (n_outer - 1) * outer + (n_inner - 1) * inner + width;
  }
};

// One product of a batch of matmuls: y = W · x for n_tokens rows of x.
struct MatmulJob {
  TensorView w;
  const float* x = nullptr;  // [n_tokens, w.ne[0]]
  int64_t n_tokens = 0;
  float* y = nullptr;        // [n_tokens, w.n_rows()]
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual int n_threads() const = 0;

  // Called once after loading with every matrix the model will multiply with, so the backend
  // can prepare them before the first request (the CPU backend repacks them). file_backed: the
  // views point into a read-only file mapping, whose pages may be dropped once copied (they are
  // re-read from the file if touched again); never true for memory the program owns. Optional.
  virtual void prepare_matmul_weights(const std::vector<TensorView>& weights, bool file_backed) {}
  // Whether `op` on a weight of `weight_type` runs in this backend's own kernels; a device
  // backend hands the others to its CPU delegate. Optional: host backends run everything.
  virtual bool on_device(Op op, DType weight_type) const { return true; }

  // y[t, :] = W · x[t, :] for t < n_tokens. W is [n_out, n_in] (ne = {n_in, n_out}).
  // x: [n_tokens, n_in] f32; y: [n_tokens, n_out] f32.
  virtual void matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) = 0;
  // Independent products that may run together (one synchronization instead of one each):
  // the projections that read the same input, the routed experts of a MoE layer, MLA's
  // per-head matrices. Outputs must not overlap inputs. Default: one matmul after another.
  virtual void matmul_batch(const std::vector<MatmulJob>& jobs) {
    for (const MatmulJob& j : jobs) matmul(j.w, j.x, j.n_tokens, j.y);
  }
  // out[i, :] = row ids[i] of `table` as f32. out: [n_ids, table.ne[0]].
  virtual void get_rows(const TensorView& table, const int32_t* ids, int64_t n_ids, float* out) = 0;
  // The products that read one normalized input (a layer's q/k/v or gate/up projections): each
  // job's x must be `normed`, the [n_tokens, n] buffer rms_norm(x, norm_weight) is written to. A
  // backend may fuse the norm into the products and leave `normed` unwritten, so callers must not
  // read it afterwards. Default: rms_norm, then matmul_batch.
  virtual void rms_norm_matmul_batch(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps,
                                     float* normed, const std::vector<MatmulJob>& jobs) {
    rms_norm(x, norm_weight, n_tokens, n, eps, normed);
    matmul_batch(jobs);
  }
  // y = W · swiglu(gate, up) (an FFN's down projection): gate, up: [n_tokens, w.ne[0]]. A backend
  // may fuse the activation into the product and leave `gate` as it was; otherwise gate receives
  // swiglu(gate, up). Callers must not read gate afterwards. Default: swiglu into gate, then matmul.
  virtual void swiglu_matmul(const TensorView& w, float* gate, const float* up, int64_t n_tokens, float* y) {
    swiglu(gate, up, n_tokens * w.ne[0], gate);
    matmul(w, gate, n_tokens, y);
  }
  // y = W_down · swiglu(W_gate · n, W_up · n), n = rms_norm(x, norm_weight): a SwiGLU FFN, with
  // the buffers its unfused form writes: normed [n_tokens, n], gate and up [n_tokens,
  // w_gate.ne[1]]. A backend may fuse the products and leave any of them unwritten, so callers
  // must not read them afterwards. Default: rms_norm_matmul_batch (gate, up), then swiglu_matmul.
  virtual void rms_norm_ffn(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps, float* normed,
                            const TensorView& w_gate, const TensorView& w_up, const TensorView& w_down, float* gate,
                            float* up, float* y) {
    rms_norm_matmul_batch(x, norm_weight, n_tokens, n, eps, normed,
                          {{w_gate, normed, n_tokens, gate}, {w_up, normed, n_tokens, up}});
    swiglu_matmul(w_down, gate, up, n_tokens, y);
  }
  // out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight. x, out: [n_rows, n]; in place allowed.
  virtual void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out) = 0;
  // Rotates the first n_rot dims of every head in place. x: [n_tokens, n_heads, head_dim].
  virtual void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                    const RopeParams& params) = 0;
  // Writes this batch's K and V rows into the cache. k: [n_tokens, k_width]; v: [n_tokens, v_width].
  virtual void store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v) = 0;
  // Causal attention of each token over its sequence's cached positions [0, pos].
  // q: [n_tokens, n_head, head_dim_k]; out: [n_tokens, n_head, head_dim_v]. GQA: kv head = h / (n_head / n_head_kv).
  virtual void attention(const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch, int64_t n_head,
                         int64_t n_head_kv, int64_t head_dim_k, int64_t head_dim_v, float scale, float* out) = 0;
  // MLA attention in latent space (deepseek2, weights absorbed). Cache rows hold [latent
  // (kv_lora_rank), k_pe (n_rot)] shared by all heads. q_abs: [n_tokens, n_head, kv_lora_rank]
  // (q_nope already multiplied by W_kb); q_pe: [n_tokens, n_head, n_rot] (rotated).
  // out: [n_tokens, n_head, kv_lora_rank], the softmax-weighted sum of latents.
  virtual void mla_attention(const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer, const AttentionBatch& batch,
                             int64_t n_head, int64_t kv_lora_rank, int64_t n_rot, float scale, float* out) = 0;
  // out[i] = silu(gate[i]) * up[i] for i < n.
  virtual void swiglu(const float* gate, const float* up, int64_t n, float* out) = 0;
  // x[i] += y[i] for i < n.
  virtual void add(float* x, const float* y, int64_t n) = 0;
  // x[r, :] += bias[:] for r < n_rows; bias: [n], a weight. Optional (default: on the host).
  virtual void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n);
  // The copy StridedCopy describes; dst floats outside it are left as they are. Optional.
  virtual void copy_strided(const float* src, float* dst, const StridedCopy& c);
  // Per row r < n_rows of logits [n_rows, n_vocab]: the k largest values and their ids, largest
  // first, equal values by lower id (k <= n_vocab); ids, values: host [n_rows, k]. Lets a
  // sampler that needs only the top k (greedy, top-k) skip reading whole rows back from a
  // device. Optional (default: on the host).
  virtual void top_candidates(const float* logits, int64_t n_rows, int64_t n_vocab, int64_t k, int32_t* ids, float* values);
  // MoE routing: per token t < n_tokens of router_logits [n_tokens, p.n_expert], route_token's
  // choice (backend/moe_routing.h): experts, weights: host [n_tokens, p.n_expert_used], best
  // first. Only these reach the host (it plans the experts' products), not the logits. Optional
  // (default: on the host).
  virtual void moe_route(const float* router_logits, int64_t n_tokens, const RoutingParams& p, int32_t* experts, float* weights);
  // dst[i, :] = src[rows[i], :] for i < n_rows. src: [n_src_rows, width]; dst: [n_rows, width];
  // rows: host, each < n_src_rows. Gathers the tokens each expert reads. Optional (default: on the host).
  virtual void gather_rows(const float* src, int64_t n_src_rows, int64_t width, const int32_t* rows, int64_t n_rows, float* dst);
  // acc[rows[i], :] += weights[i] * src[i, :] for i < n_rows, in order of i (so the sums round
  // the same everywhere). src: [n_rows, width]; acc: [n_acc_rows, width]; rows, weights: host.
  // Sums the routed experts' outputs per token. Optional (default: on the host).
  virtual void scatter_add_rows(const float* src, const int32_t* rows, const float* weights, int64_t n_rows, int64_t width,
                                float* acc, int64_t n_acc_rows);

  // Activation residency (optional; a CPU backend ignores it). Activations are named by host
  // addresses, but a backend may keep an op's output in its own memory and leave the host copy
  // stale, so the next op reads it where it already is. Code between ops that reads activation
  // floats on the host calls sync_to_host first; code that writes them there calls host_wrote
  // after. begin_forward / end_forward bracket a forward pass of n_tokens (run_forward in
  // model/model.h calls them; architectures call the other two). end_forward: the backend
  // forgets every activation it holds (the host copies of those never synced are left stale)
  // and its own writes (the KV cache) are on the host. It returns false when the pass's work was
  // lost (a device that queued it as a CUDA graph could not run the graph): the caller runs the
  // same pass again, which rewrites the same KV rows, and the backend does not lose it twice.
  virtual void begin_forward(int64_t n_tokens) {}
  virtual void sync_to_host(const float* p, int64_t n) {}
  virtual void host_wrote(const float* p, int64_t n) {}
  virtual bool end_forward() { return true; }
};

}  // namespace fathom
