#include "backend/opencl/opencl_backend.h"

#if FATHOM_HAVE_OPENCL
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <unordered_map>
#include <vector>

#include <unistd.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/opencl/cl_runtime.h"
#include "backend/opencl/kernel_source.h"

namespace fathom {

namespace {

constexpr size_t kLanes = 64;            // work-group size of every kernel (WG in kernels/common.cl)
constexpr int64_t kMatmatTokens = 8;     // MM_TOKENS in kernels/matmul.cl
constexpr int64_t kMaxQueryDim = 1024;   // ATT_MAX_QUERY in kernels/attention.cl
constexpr int64_t kMaxValueDim = 64 * 8; // WG * ATT_DIMS_PER_LANE in kernels/attention.cl

const char* const kKernelNames[] = {
    "matvec_q4_0", "matmat_q4_0", "matvec_q8_0", "matmat_q8_0", "matvec_q4_K", "matmat_q4_K", "matvec_f32",
    "matmat_f32",  "matvec_f16",  "matmat_f16",  "rms_norm_f32", "swiglu_f32", "add_f32",     "rope_f32",
    "attention_f32"};

// The matmul kernel family of a weight type: values per block and bytes per block.
struct MatmulFormat {
  const char* suffix = nullptr;  // kernel name suffix; nullptr: no kernel for this type
  int64_t block_values = 0;
  size_t block_bytes = 0;
};

MatmulFormat matmul_format(DType t) {
  switch (t) {
    case DType::Q4_0: return {"q4_0", 32, 18};
    case DType::Q8_0: return {"q8_0", 32, 34};
    case DType::Q4_K: return {"q4_K", 256, 144};
    case DType::F32: return {"f32", 4, 16};
    case DType::F16: return {"f16", 4, 8};
    default: return {};
  }
}

size_t round_up(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// YaRN helpers, as the CPU backend computes them (cpu_backend.cpp).
float yarn_ramp(float low, float high, int64_t i0) {
  const float y = (static_cast<float>(i0) / 2.0f - low) / std::max(0.001f, high - low);
  return 1.0f - std::min(1.0f, std::max(0.0f, y));
}

float yarn_corr_dim(int64_t n_rot, int64_t n_ctx_orig, float n_rotations, float base) {
  return static_cast<float>(n_rot) * std::log(static_cast<float>(n_ctx_orig) / (n_rotations * 2.0f * static_cast<float>(M_PI))) /
         (2.0f * std::log(base));
}

}  // namespace

struct OpenClBackend::Impl {
  explicit Impl(int n_threads) : cpu(n_threads) {}
  ~Impl();

  // Host memory the device reads in place (or a copy of it on a discrete GPU): whole pages, so
  // on shared-memory devices the driver can map them without copying.
  struct Region {
    uintptr_t begin = 0;    // first byte (page-aligned)
    uintptr_t end = 0;      // one past the last byte (page-aligned)
    cl_mem buffer = nullptr;
  };
  struct Scratch {
    cl_mem buffer = nullptr;
    size_t bytes = 0;  // capacity
  };
  enum Slot { kIn0, kIn1, kIn2, kIn3, kOut, kSlots };

  OpenClDeviceInfo info;
  cl_context context = nullptr;
  cl_command_queue queue = nullptr;
  cl_program program = nullptr;
  bool from_cache = false;
  std::unordered_map<std::string, cl_kernel> kernels;  // by kernel name
  CpuBackend cpu;                                      // runs what the kernels do not cover
  std::map<uintptr_t, Region> regions;                 // wrapped host memory, by page-aligned start
  std::array<Scratch, kSlots> scratch;                 // activation buffers, grown on demand
  size_t page = 4096;
  bool warned = false;                                 // a device failure was reported once

  // The region holding [p, p + n), created on first use; nullptr when it cannot be (too large for
  // one buffer, or the driver refused).
  const Region* region_for(const void* p, size_t n);
  // The region already holding [p, p + n), or nullptr.
  const Region* find_region(const void* p, size_t n) const;
  cl_mem scratch_buffer(Slot slot, size_t bytes);
  cl_int upload(Slot slot, const void* host, size_t bytes, cl_mem* out);
  cl_kernel kernel(const char* name) const { return kernels.at(name); }
  cl_int run(cl_kernel k, size_t global0, size_t global1 = 1);
  cl_int download(cl_mem buffer, void* host, size_t bytes);
  // Reports a failed device op once, then the op reruns on the CPU.
  void device_failed(const char* op, cl_int err);

  cl_int matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y);
  cl_int rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out);
  cl_int rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions, const RopeParams& p);
  cl_int swiglu(const float* gate, const float* up, int64_t n, float* out);
  cl_int add(float* x, const float* y, int64_t n);
  // Shared by attention and mla_attention; q: [n_tokens, n_head, head_dim_k].
  cl_int attend(const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch, int64_t n_head, int64_t group,
                int64_t head_dim_k, int64_t head_dim_v, bool latent, float scale, float* out);
};

namespace {

// clSetKernelArg for each argument in order; stops at the first failure.
template <typename... Args>
cl_int set_args(cl_kernel k, const Args&... args) {
  cl_uint index = 0;
  cl_int err = CL_SUCCESS;
  ((err = err != CL_SUCCESS ? err : clSetKernelArg(k, index++, sizeof(Args), &args)), ...);
  return err;
}

}  // namespace

// Returns the OpenCL error of expr, if any, from the enclosing function.
#define FATHOM_CL_TRY(expr)                                    \
  do {                                                         \
    const cl_int fathom_cl_err_ = (expr);                      \
    if (fathom_cl_err_ != CL_SUCCESS) return fathom_cl_err_;   \
  } while (0)

OpenClBackend::Impl::~Impl() {
  if (queue) clFinish(queue);
  for (auto& [name, k] : kernels) clReleaseKernel(k);
  for (auto& [begin, r] : regions) clReleaseMemObject(r.buffer);
  for (Scratch& s : scratch)
    if (s.buffer) clReleaseMemObject(s.buffer);
  if (program) clReleaseProgram(program);
  if (queue) clReleaseCommandQueue(queue);
  if (context) clReleaseContext(context);
}

const OpenClBackend::Impl::Region* OpenClBackend::Impl::find_region(const void* p, size_t n) const {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = regions.upper_bound(a);
  if (it == regions.begin()) return nullptr;
  --it;
  return it->second.end >= a + n ? &it->second : nullptr;
}

const OpenClBackend::Impl::Region* OpenClBackend::Impl::region_for(const void* p, size_t n) {
  if (const Region* r = find_region(p, n)) return r;
  // Whole pages: any page holding a byte of [p, p + n) is mapped, so reading the rounded range
  // is safe, and page-aligned host memory is what integrated GPUs map without a copy.
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  Region r;
  r.begin = a / page * page;
  r.end = round_up(a + n, page);
  if (r.end - r.begin > info.max_alloc_bytes) return nullptr;
  const cl_mem_flags flags = CL_MEM_READ_ONLY | (info.host_unified ? CL_MEM_USE_HOST_PTR : CL_MEM_COPY_HOST_PTR);
  cl_int err = CL_SUCCESS;
  r.buffer = clCreateBuffer(context, flags, r.end - r.begin, reinterpret_cast<void*>(r.begin), &err);
  if (err != CL_SUCCESS || !r.buffer) {
    device_failed("wrapping host memory", err);
    return nullptr;
  }
  auto [it, inserted] = regions.try_emplace(r.begin, r);
  if (!inserted) {  // a shorter region started on the same page; the longer one replaces it
    clFinish(queue);
    clReleaseMemObject(it->second.buffer);
    it->second = r;
  }
  return &it->second;
}

cl_mem OpenClBackend::Impl::scratch_buffer(Slot slot, size_t bytes) {
  Scratch& s = scratch[static_cast<size_t>(slot)];
  if (s.bytes >= bytes && s.buffer) return s.buffer;
  if (s.buffer) {
    clFinish(queue);
    clReleaseMemObject(s.buffer);
    s.buffer = nullptr;
    s.bytes = 0;
  }
  const size_t want = round_up(std::max(bytes + bytes / 2, size_t{4096}), 4096);  // headroom: sizes creep up during a prompt
  cl_int err = CL_SUCCESS;
  s.buffer = clCreateBuffer(context, CL_MEM_READ_WRITE, want, nullptr, &err);
  if (err != CL_SUCCESS) {
    s.buffer = nullptr;
    return nullptr;
  }
  s.bytes = want;
  return s.buffer;
}

cl_int OpenClBackend::Impl::upload(Slot slot, const void* host, size_t bytes, cl_mem* out) {
  *out = scratch_buffer(slot, bytes);
  if (!*out) return CL_MEM_OBJECT_ALLOCATION_FAILURE;
  // Non-blocking: the host data outlive the op, which ends in a blocking read on this in-order queue.
  return bytes == 0 ? CL_SUCCESS : clEnqueueWriteBuffer(queue, *out, CL_FALSE, 0, bytes, host, 0, nullptr, nullptr);
}

cl_int OpenClBackend::Impl::run(cl_kernel k, size_t global0, size_t global1) {
  const size_t global[2] = {global0, global1};
  const size_t local[2] = {kLanes, 1};
  return clEnqueueNDRangeKernel(queue, k, 2, nullptr, global, local, 0, nullptr, nullptr);
}

cl_int OpenClBackend::Impl::download(cl_mem buffer, void* host, size_t bytes) {
  return clEnqueueReadBuffer(queue, buffer, CL_TRUE, 0, bytes, host, 0, nullptr, nullptr);
}

void OpenClBackend::Impl::device_failed(const char* op, cl_int err) {
  if (warned) return;
  warned = true;
  std::fprintf(stderr, "fathom: opencl: %s failed on %s (%s); running such ops on the CPU\n", op, info.name.c_str(),
               opencl::error_name(err).c_str());
}

cl_int OpenClBackend::Impl::matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  const MatmulFormat f = matmul_format(w.dtype);
  const int64_t n_in = w.ne[0], n_out = w.n_rows();
  if (!f.suffix || n_in % f.block_values != 0) return CL_INVALID_VALUE;
  const Region* r = region_for(w.data, w.n_bytes());
  if (!r) return CL_INVALID_BUFFER_SIZE;
  const bool single = n_tokens == 1;
  cl_kernel k = kernel((std::string(single ? "matvec_" : "matmat_") + f.suffix).c_str());
  cl_mem xb = nullptr;
  FATHOM_CL_TRY(upload(kIn0, x, static_cast<size_t>(n_tokens * n_in) * sizeof(float), &xb));
  cl_mem yb = scratch_buffer(kOut, static_cast<size_t>(n_tokens * n_out) * sizeof(float));
  if (!yb) return CL_MEM_OBJECT_ALLOCATION_FAILURE;
  const cl_ulong w_offset = reinterpret_cast<uintptr_t>(w.data) - r->begin;
  const cl_ulong row_bytes = w.row_bytes();
  const cl_int n_in_arg = static_cast<cl_int>(n_in), n_out_arg = static_cast<cl_int>(n_out),
               n_tokens_arg = static_cast<cl_int>(n_tokens);
  FATHOM_CL_TRY(set_args(k, r->buffer, w_offset, row_bytes, n_in_arg, n_out_arg, xb, yb, n_tokens_arg));
  const int64_t per_group = single ? 1 : kMatmatTokens;
  FATHOM_CL_TRY(run(k, static_cast<size_t>(n_out) * kLanes, static_cast<size_t>((n_tokens + per_group - 1) / per_group)));
  return download(yb, y, static_cast<size_t>(n_tokens * n_out) * sizeof(float));
}

cl_int OpenClBackend::Impl::rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out) {
  cl_kernel k = kernel("rms_norm_f32");
  const size_t bytes = static_cast<size_t>(n_rows * n) * sizeof(float);
  cl_mem xb = nullptr, wb = nullptr;
  FATHOM_CL_TRY(upload(kIn0, x, bytes, &xb));
  FATHOM_CL_TRY(upload(kIn1, weight, static_cast<size_t>(n) * sizeof(float), &wb));
  cl_mem ob = scratch_buffer(kOut, bytes);
  if (!ob) return CL_MEM_OBJECT_ALLOCATION_FAILURE;
  FATHOM_CL_TRY(set_args(k, xb, wb, ob, static_cast<cl_int>(n), eps));
  FATHOM_CL_TRY(run(k, static_cast<size_t>(n_rows) * kLanes));
  return download(ob, out, bytes);
}

cl_int OpenClBackend::Impl::rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                                 const RopeParams& p) {
  const int64_t n_pairs = p.n_rot / 2;
  // Per-pair frequency and YaRN mix, computed once per call as the CPU backend does per token.
  std::vector<float> inv_freq(static_cast<size_t>(n_pairs)), ramp(static_cast<size_t>(n_pairs), 0.0f);
  const float theta_scale = std::pow(p.freq_base, -2.0f / static_cast<float>(p.n_rot));
  float corr_low = 0.0f, corr_high = 0.0f;
  if (p.ext_factor != 0.0f) {
    corr_low = std::max(0.0f, std::floor(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_fast, p.freq_base)));
    corr_high = std::min(static_cast<float>(p.n_rot - 1), std::ceil(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_slow, p.freq_base)));
  }
  float freq = 1.0f;
  for (int64_t i = 0; i < n_pairs; ++i) {
    inv_freq[static_cast<size_t>(i)] = freq / (p.freq_factors ? p.freq_factors[i] : 1.0f);
    if (p.ext_factor != 0.0f) ramp[static_cast<size_t>(i)] = yarn_ramp(corr_low, corr_high, 2 * i) * p.ext_factor;
    freq *= theta_scale;
  }
  const float mscale = p.attn_factor * (p.ext_factor != 0.0f ? 1.0f + 0.1f * std::log(1.0f / p.freq_scale) : 1.0f);
  cl_kernel k = kernel("rope_f32");
  const size_t bytes = static_cast<size_t>(n_tokens * n_heads * head_dim) * sizeof(float);
  cl_mem xb = nullptr, pb = nullptr, fb = nullptr, rb = nullptr;
  FATHOM_CL_TRY(upload(kIn0, x, bytes, &xb));
  FATHOM_CL_TRY(upload(kIn1, positions, static_cast<size_t>(n_tokens) * sizeof(int32_t), &pb));
  FATHOM_CL_TRY(upload(kIn2, inv_freq.data(), inv_freq.size() * sizeof(float), &fb));
  FATHOM_CL_TRY(upload(kIn3, ramp.data(), ramp.size() * sizeof(float), &rb));
  const cl_int n_items = static_cast<cl_int>(n_tokens * n_heads * n_pairs);
  FATHOM_CL_TRY(set_args(k, xb, pb, fb, rb, static_cast<cl_int>(n_tokens), static_cast<cl_int>(n_heads),
                         static_cast<cl_int>(head_dim), static_cast<cl_int>(n_pairs),
                         static_cast<cl_int>(p.mode == RopeMode::kNeox), p.freq_scale, mscale));
  FATHOM_CL_TRY(run(k, round_up(static_cast<size_t>(n_items), kLanes)));
  return download(xb, x, bytes);
}

cl_int OpenClBackend::Impl::swiglu(const float* gate, const float* up, int64_t n, float* out) {
  cl_kernel k = kernel("swiglu_f32");
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  cl_mem gb = nullptr, ub = nullptr;
  FATHOM_CL_TRY(upload(kIn0, gate, bytes, &gb));
  FATHOM_CL_TRY(upload(kIn1, up, bytes, &ub));
  cl_mem ob = scratch_buffer(kOut, bytes);
  if (!ob) return CL_MEM_OBJECT_ALLOCATION_FAILURE;
  FATHOM_CL_TRY(set_args(k, gb, ub, ob, static_cast<cl_int>(n)));
  FATHOM_CL_TRY(run(k, round_up(static_cast<size_t>(n), kLanes)));
  return download(ob, out, bytes);
}

cl_int OpenClBackend::Impl::add(float* x, const float* y, int64_t n) {
  cl_kernel k = kernel("add_f32");
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  cl_mem xb = nullptr, yb = nullptr;
  FATHOM_CL_TRY(upload(kIn0, x, bytes, &xb));
  FATHOM_CL_TRY(upload(kIn1, y, bytes, &yb));
  FATHOM_CL_TRY(set_args(k, xb, yb, static_cast<cl_int>(n)));
  FATHOM_CL_TRY(run(k, round_up(static_cast<size_t>(n), kLanes)));
  return download(xb, x, bytes);
}

cl_int OpenClBackend::Impl::attend(const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch, int64_t n_head,
                                   int64_t group, int64_t head_dim_k, int64_t head_dim_v, bool latent, float scale,
                                   float* out) {
  if (head_dim_k > kMaxQueryDim || head_dim_v > kMaxValueDim) return CL_INVALID_VALUE;
  const KvCacheShape& shape = kv.shape();
  const size_t slots = static_cast<size_t>(kv.pool().n_total()) * static_cast<size_t>(shape.block_size);
  const Region* kr = region_for(kv.k_row(layer, 0, 0), slots * static_cast<size_t>(shape.k_width) * sizeof(float));
  const Region* vr = latent ? kr : region_for(kv.v_row(layer, 0, 0), slots * static_cast<size_t>(shape.v_width) * sizeof(float));
  if (!kr || !vr) return CL_INVALID_BUFFER_SIZE;
  // Block tables of the batch's tokens, one row of max_blocks per token.
  int64_t max_blocks = 1;
  for (int64_t t = 0; t < batch.n_tokens; ++t) max_blocks = std::max<int64_t>(max_blocks, batch.positions[t] / shape.block_size + 1);
  std::vector<int32_t> tables(static_cast<size_t>(batch.n_tokens * max_blocks), 0);
  for (int64_t t = 0; t < batch.n_tokens; ++t) {
    const std::vector<int32_t>& table = kv.block_table(batch.seq_ids[t]);
    const int64_t used = batch.positions[t] / shape.block_size + 1;
    FATHOM_CHECK(static_cast<int64_t>(table.size()) >= used);
    std::copy(table.begin(), table.begin() + used, tables.begin() + t * max_blocks);
  }
  cl_kernel k = kernel("attention_f32");
  cl_mem qb = nullptr, tb = nullptr, pb = nullptr;
  FATHOM_CL_TRY(upload(kIn0, q, static_cast<size_t>(batch.n_tokens * n_head * head_dim_k) * sizeof(float), &qb));
  FATHOM_CL_TRY(upload(kIn1, tables.data(), tables.size() * sizeof(int32_t), &tb));
  FATHOM_CL_TRY(upload(kIn2, batch.positions, static_cast<size_t>(batch.n_tokens) * sizeof(int32_t), &pb));
  const size_t out_bytes = static_cast<size_t>(batch.n_tokens * n_head * head_dim_v) * sizeof(float);
  cl_mem ob = scratch_buffer(kOut, out_bytes);
  if (!ob) return CL_MEM_OBJECT_ALLOCATION_FAILURE;
  const cl_ulong k_offset = (reinterpret_cast<uintptr_t>(kv.k_row(layer, 0, 0)) - kr->begin) / sizeof(float);
  const cl_ulong v_offset =
      latent ? k_offset : (reinterpret_cast<uintptr_t>(kv.v_row(layer, 0, 0)) - vr->begin) / sizeof(float);
  const cl_int v_width = static_cast<cl_int>(latent ? shape.k_width : shape.v_width);
  FATHOM_CL_TRY(set_args(k, qb, kr->buffer, k_offset, vr->buffer, v_offset, tb, static_cast<cl_int>(max_blocks), pb,
                         static_cast<cl_int>(n_head), static_cast<cl_int>(group), static_cast<cl_int>(head_dim_k),
                         static_cast<cl_int>(head_dim_v), static_cast<cl_int>(shape.k_width), v_width,
                         static_cast<cl_int>(shape.block_size), scale, ob));
  FATHOM_CL_TRY(run(k, static_cast<size_t>(batch.n_tokens * n_head) * kLanes));
  return download(ob, out, out_bytes);
}

// ---------------------------------------------------------------------------------------------

Expected<std::unique_ptr<OpenClBackend>> OpenClBackend::create(const OpenClOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(opencl::SelectedDevice dev, opencl::select_device(options.device));
  auto impl = std::make_unique<Impl>(options.n_threads);
  impl->info = dev.info;
  const long page = ::sysconf(_SC_PAGESIZE);
  if (page > 0) impl->page = static_cast<size_t>(page);
  cl_int err = CL_SUCCESS;
  const cl_context_properties props[] = {CL_CONTEXT_PLATFORM, reinterpret_cast<cl_context_properties>(dev.platform), 0};
  impl->context = clCreateContext(props, 1, &dev.device, nullptr, nullptr, &err);
  if (err != CL_SUCCESS)
    return error(ErrorCode::kUnavailable, "clCreateContext on " + dev.info.name + " failed: " + opencl::error_name(err));
  impl->queue = clCreateCommandQueue(impl->context, dev.device, 0, &err);
  if (err != CL_SUCCESS)
    return error(ErrorCode::kUnavailable, "clCreateCommandQueue on " + dev.info.name + " failed: " + opencl::error_name(err));

  std::string build_options = strprintf("-cl-std=CL1.2 -DWG=%zu", kLanes);
  if (dev.info.fp16) build_options += " -DFATHOM_HAS_FP16";
  if (dev.info.subgroups) build_options += " -DFATHOM_HAS_SUBGROUPS";
  if (dev.info.int_dot) build_options += " -DFATHOM_HAS_INT_DOT";
  if (options.inject_build_error) build_options += " -DFATHOM_INJECT_BUILD_ERROR";
  FATHOM_ASSIGN_OR_RETURN(opencl::BuiltProgram built, opencl::build_program(impl->context, dev, opencl::kernel_source(),
                                                                          build_options, options.cache_dir));
  impl->program = built.program;
  impl->from_cache = built.from_cache;
  for (const char* name : kKernelNames) {
    cl_kernel k = clCreateKernel(impl->program, name, &err);
    if (err != CL_SUCCESS) return error(ErrorCode::kUnavailable, strprintf("kernel %s: %s", name, opencl::error_name(err).c_str()));
    impl->kernels.emplace(name, k);
    size_t max_lanes = 0;
    clGetKernelWorkGroupInfo(k, dev.device, CL_KERNEL_WORK_GROUP_SIZE, sizeof(max_lanes), &max_lanes, nullptr);
    if (max_lanes < kLanes)
      return error(ErrorCode::kUnavailable, strprintf("%s runs kernel %s with at most %zu work items per group; fathom's kernels need %zu",
                                                      dev.info.name.c_str(), name, max_lanes, kLanes));
  }
  return std::unique_ptr<OpenClBackend>(new OpenClBackend(std::move(impl)));
}

OpenClBackend::OpenClBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OpenClBackend::~OpenClBackend() = default;

bool OpenClBackend::supports(Op op, DType weight_type) const { return impl_->cpu.supports(op, weight_type); }
int OpenClBackend::n_threads() const { return impl_->cpu.n_threads(); }
const OpenClDeviceInfo& OpenClBackend::device() const { return impl_->info; }
bool OpenClBackend::program_from_cache() const { return impl_->from_cache; }

bool OpenClBackend::on_device(Op op, DType weight_type) const {
  switch (op) {
    case Op::kMatmul: return matmul_format(weight_type).suffix != nullptr;
    case Op::kGetRows: return false;
    default: return true;
  }
}

void OpenClBackend::matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  if (n_tokens <= 0) return;
  const cl_int err = on_device(Op::kMatmul, w.dtype) ? impl_->matmul(w, x, n_tokens, y) : CL_INVALID_VALUE;
  if (err == CL_SUCCESS) return;
  // Unsupported type or shape is a placement decision, not a failure; anything else is reported.
  if (err != CL_INVALID_VALUE && err != CL_INVALID_BUFFER_SIZE) impl_->device_failed("matmul", err);
  impl_->cpu.matmul(w, x, n_tokens, y);
}

void OpenClBackend::get_rows(const TensorView& table, const int32_t* ids, int64_t n_ids, float* out) {
  impl_->cpu.get_rows(table, ids, n_ids, out);
}

void OpenClBackend::rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out) {
  if (n_rows <= 0) return;
  if (const cl_int err = impl_->rms_norm(x, weight, n_rows, n, eps, out); err != CL_SUCCESS) {
    impl_->device_failed("rms_norm", err);
    impl_->cpu.rms_norm(x, weight, n_rows, n, eps, out);
  }
}

void OpenClBackend::rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                         const RopeParams& params) {
  if (n_tokens <= 0 || params.n_rot <= 0) return;
  if (const cl_int err = impl_->rope(x, n_tokens, n_heads, head_dim, positions, params); err != CL_SUCCESS) {
    // A failed read-back may have left x half written; the device is in trouble either way.
    impl_->device_failed("rope", err);
    impl_->cpu.rope(x, n_tokens, n_heads, head_dim, positions, params);
  }
}

void OpenClBackend::store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v) {
  impl_->cpu.store_kv(kv, layer, batch, k, v);
  // The cache is written on the host; wrapped layers learn of the new rows through a write from
  // the wrapped memory itself, which OpenCL defines as the synchronisation for CL_MEM_USE_HOST_PTR
  // buffers (free on zero-copy devices, a copy of just these rows on discrete ones).
  const KvCacheShape& shape = kv.shape();
  const size_t slots = static_cast<size_t>(kv.pool().n_total()) * static_cast<size_t>(shape.block_size);
  const auto sync = [&](const float* base, int64_t width, float* (KvCache::*row_at)(int64_t, int32_t, int64_t)) {
    if (width == 0) return;
    const Impl::Region* r = impl_->find_region(base, slots * static_cast<size_t>(width) * sizeof(float));
    if (!r) return;  // not wrapped yet: wrapping copies the rows as they are then
    for (int64_t t = 0; t < batch.n_tokens; ++t) {
      const float* row = (kv.*row_at)(layer, batch.seq_ids[t], batch.positions[t]);
      const size_t offset = reinterpret_cast<uintptr_t>(row) - r->begin;
      const cl_int err = clEnqueueWriteBuffer(impl_->queue, r->buffer, CL_FALSE, offset, static_cast<size_t>(width) * sizeof(float),
                                              row, 0, nullptr, nullptr);
      if (err != CL_SUCCESS) impl_->device_failed("store_kv", err);
    }
  };
  sync(kv.k_row(layer, 0, 0), shape.k_width, &KvCache::k_at);
  if (shape.v_width > 0) sync(kv.v_row(layer, 0, 0), shape.v_width, &KvCache::v_at);
  clFinish(impl_->queue);
}

void OpenClBackend::attention(const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch, int64_t n_head,
                              int64_t n_head_kv, int64_t head_dim_k, int64_t head_dim_v, float scale, float* out) {
  if (batch.n_tokens <= 0) return;
  const cl_int err =
      impl_->attend(q, kv, layer, batch, n_head, n_head / n_head_kv, head_dim_k, head_dim_v, false, scale, out);
  if (err == CL_SUCCESS) return;
  if (err != CL_INVALID_VALUE && err != CL_INVALID_BUFFER_SIZE) impl_->device_failed("attention", err);
  impl_->cpu.attention(q, kv, layer, batch, n_head, n_head_kv, head_dim_k, head_dim_v, scale, out);
}

void OpenClBackend::mla_attention(const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer, const AttentionBatch& batch,
                                  int64_t n_head, int64_t kv_lora_rank, int64_t n_rot, float scale, float* out) {
  if (batch.n_tokens <= 0) return;
  // The latent row [c_kv | k_pe] is the key of every head: queries become [q_abs | q_pe].
  const int64_t width = kv_lora_rank + n_rot;
  std::vector<float> q(static_cast<size_t>(batch.n_tokens * n_head * width));
  for (int64_t i = 0; i < batch.n_tokens * n_head; ++i) {
    std::copy(q_abs + i * kv_lora_rank, q_abs + (i + 1) * kv_lora_rank, q.begin() + i * width);
    std::copy(q_pe + i * n_rot, q_pe + (i + 1) * n_rot, q.begin() + i * width + kv_lora_rank);
  }
  cl_int err = kv.shape().k_width == width ? CL_SUCCESS : CL_INVALID_VALUE;
  if (err == CL_SUCCESS) err = impl_->attend(q.data(), kv, layer, batch, n_head, n_head, width, kv_lora_rank, true, scale, out);
  if (err == CL_SUCCESS) return;
  if (err != CL_INVALID_VALUE && err != CL_INVALID_BUFFER_SIZE) impl_->device_failed("mla_attention", err);
  impl_->cpu.mla_attention(q_abs, q_pe, kv, layer, batch, n_head, kv_lora_rank, n_rot, scale, out);
}

void OpenClBackend::swiglu(const float* gate, const float* up, int64_t n, float* out) {
  if (n <= 0) return;
  if (const cl_int err = impl_->swiglu(gate, up, n, out); err != CL_SUCCESS) {
    impl_->device_failed("swiglu", err);
    impl_->cpu.swiglu(gate, up, n, out);
  }
}

void OpenClBackend::add(float* x, const float* y, int64_t n) {
  if (n <= 0) return;
  if (const cl_int err = impl_->add(x, y, n); err != CL_SUCCESS) {
    impl_->device_failed("add", err);
    impl_->cpu.add(x, y, n);
  }
}

// ---------------------------------------------------------------------------------------------

bool opencl_compiled_in() { return true; }

Expected<std::unique_ptr<Backend>> create_opencl_backend(const OpenClOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<OpenClBackend> b, OpenClBackend::create(options));
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace fathom
#endif
