#include "backend/opencl/opencl_backend.h"

#if FATHOM_HAVE_OPENCL
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <map>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include <unistd.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/device_fallback.h"
#include "backend/fused_input.h"
#include "backend/opencl/cl_runtime.h"
#include "backend/opencl/kernel_source.h"

namespace fathom {

namespace {

constexpr size_t kLanes = 64;            // work-group size of every kernel (WG in kernels/common.cl)
constexpr int64_t kMatmatTokens = 8;     // MM_TOKENS in kernels/matmul.cl
constexpr int64_t kMaxQueryDim = 1024;   // ATT_MAX_QUERY in kernels/attention.cl
constexpr int64_t kMaxValueDim = 64 * 8; // WG * ATT_DIMS_PER_LANE in kernels/attention.cl

const char* const kKernelNames[] = {
    "matvec_q4_0",   "matmat_q4_0",   "matvec_q8_0",   "matmat_q8_0",   "matvec_q4_K",  "matmat_q4_K",
    "matvec_iq4_nl", "matmat_iq4_nl", "matvec_iq4_xs", "matmat_iq4_xs", "matvec_f32",   "matmat_f32",
    "matvec_f16",    "matmat_f16",    "rms_norm_f32",  "swiglu_f32",    "add_f32",      "rope_f32",
    "attention_f32_f32", "attention_f32_f16", "attention_f32_q8_0", "attention_f16_f32", "attention_f16_f16",
    "attention_f16_q8_0", "attention_q8_0_f32", "attention_q8_0_f16", "attention_q8_0_q8_0"};
// Built only with an int8 variant (FATHOM_INT_DOT or FATHOM_INT_DOT_EMULATED).
const char* const kInt8KernelNames[] = {"quantize_q8_act", "matvec_q4_0_q8",   "matmat_q4_0_q8",  "matvec_q8_0_q8",
                                        "matmat_q8_0_q8",  "matvec_iq4_nl_q8", "matmat_iq4_nl_q8"};
constexpr int64_t kQ8Block = 32;  // activations per int8 block (quantize_q8_act)

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
    case DType::IQ4_NL: return {"iq4_nl", 32, 18};
    case DType::IQ4_XS: return {"iq4_xs", 256, 136};
    case DType::F32: return {"f32", 4, 16};
    case DType::F16: return {"f16", 4, 8};
    default: return {};
  }
}

// The cache element types the attention kernels read (the suffixes of attention_<K>_<V>); the
// others (bf16, q4_0) attend on the CPU delegate.
const char* attention_suffix(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::Q8_0: return "q8_0";
    default: return nullptr;
  }
}

size_t round_up(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }

bool overlaps(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return pa < pb + b_bytes && pb < pa + a_bytes;
}

// kAuto becomes kNative where the device has the extension, else kOff.
OpenClVariant resolve_variant(OpenClVariant v, bool device_has_it) {
  if (v != OpenClVariant::kAuto) return v;
  return device_has_it ? OpenClVariant::kNative : OpenClVariant::kOff;
}

// The -D options of resolved variants (kernels/common.cl lists them).
std::string variant_build_options(const OpenClKernelVariants& v) {
  std::string options;
  const auto add = [&options](OpenClVariant variant, const char* name) {
    if (variant == OpenClVariant::kNative) options += strprintf(" -DFATHOM_%s", name);
    if (variant == OpenClVariant::kEmulated) options += strprintf(" -DFATHOM_%s_EMULATED", name);
  };
  add(v.f16_accumulation, "ACC_F16");
  add(v.subgroup_reduction, "SUBGROUPS");
  add(v.int8_dot, "INT_DOT");
  return options;
}

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
  explicit Impl(std::shared_ptr<CpuBackend> cpu_backend) : cpu(std::move(cpu_backend)) {}
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
  // kQuant/kQuantScale: int8 activations and their per-block scales (the int8 variant).
  enum Slot { kIn0, kIn1, kIn2, kIn3, kOut, kQuant, kQuantScale, kSlots };

  OpenClDeviceInfo info;
  OpenClKernelVariants variants;  // as built, none kAuto
  cl_context context = nullptr;
  cl_command_queue queue = nullptr;
  cl_program program = nullptr;
  bool from_cache = false;
  std::unordered_map<std::string, cl_kernel> kernels;  // by kernel name
  std::shared_ptr<CpuBackend> cpu;                                   // runs what the kernels do not cover
  std::map<uintptr_t, Region> regions;                 // wrapped host memory, by page-aligned start
  std::array<Scratch, kSlots> scratch;                 // activation buffers, grown on demand
  size_t page = 4096;
  bool warned = false;                                 // a device failure was reported once
  uint64_t fallback_ops = 0;                           // ops run_on_device_or_cpu ran on the CPU delegate

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
  void device_failed(const char* op, const Status& st);
  void device_failed(const char* op, cl_int err) { device_failed(op, cl_status(err)); }
  // What run_on_device_or_cpu (backend/device_fallback.h) asks of a device. Activations are not
  // kept here: every op reads its outputs back before it returns, so the host is always current.
  void sync(const HostSpan&) {}
  void wrote(const HostSpan&) {}
  void after_op(std::initializer_list<HostSpan>) {}
  Status finish() { return cl_status(clFinish(queue)); }
  static Status cl_status(cl_int err) {
    return err == CL_SUCCESS ? Status::ok() : error(ErrorCode::kUnavailable, opencl::error_name(err));
  }
  static Status attention_status(cl_int err) {
    return err == CL_INVALID_VALUE || err == CL_INVALID_BUFFER_SIZE ? error(ErrorCode::kUnsupported, "not covered by the kernel")
                                                                    : cl_status(err);
  }
  template <typename DeviceOp, typename CpuOp>
  void run(const char* op, DeviceOp&& on_device, CpuOp&& on_cpu) {
    run_on_device_or_cpu(*this, op, {}, {}, [&] { return cl_status(on_device()); }, on_cpu);
  }

  // The region holding w when a matmul kernel takes its type and shape, else nullptr (a CPU job).
  const Region* matmul_region(const TensorView& w);
  // Whether products with weights of type t take int8 activations (the int8 variant's kernels):
  // the types whose CPU dots take q8_0 activations.
  bool int8_activations(DType t) const {
    return variants.int8_dot != OpenClVariant::kOff && (t == DType::Q4_0 || t == DType::Q8_0 || t == DType::IQ4_NL);
  }
  // Runs the jobs, those the kernels take on the device and the rest on the CPU delegate
  // meanwhile; the stage's result, if given, is made once for all the jobs that read it. A device
  // error is reported (as `op`) and its jobs rerun on the CPU. In steps: plan_batch, then
  // enqueue_batch (upload_inputs, launch_products, the read-backs), run_cpu_jobs meanwhile.
  void matmul_batch(const std::vector<MatmulJob>& jobs, const FusedInput* stage, const char* op);
  // Where a batch runs and where everything sits in the buffers it shares: the distinct inputs
  // one after another in kIn0 (the stage's result first: its kernels write from offset 0), the
  // int8 copies of those a q8 kernel reads in kQuant/kQuantScale, the outputs in kOut.
  struct BatchPlan {
    static constexpr size_t kNone = SIZE_MAX;
    struct Input {
      const float* host = nullptr;  // what the jobs name as x
      int64_t n_tokens = 0, n = 0;  // [n_tokens, n]
      size_t offset = 0;            // floats into kIn0
      size_t q_offset = kNone;      // values into kQuant (scales: q_offset / 32 into kQuantScale), if quantized
    };
    struct DeviceJob {
      const MatmulJob* job = nullptr;
      const Region* region = nullptr;  // holds the weights
      size_t input = 0;                // index into inputs
      size_t y_offset = 0;             // floats into kOut
      bool q8 = false;                 // the int8 kernel
    };
    std::vector<Input> inputs;
    std::vector<DeviceJob> device_jobs;
    std::vector<MatmulJob> cpu_jobs;
    bool device_reads_stage = false, cpu_reads_stage = false;
    size_t act_floats = 0, q_values = 0, out_floats = 0;  // sizes of kIn0, kQuant, kOut
  };
  struct BatchBuffers {
    cl_mem act = nullptr, out = nullptr, quant = nullptr, scales = nullptr;
  };
  BatchPlan plan_batch(const std::vector<MatmulJob>& jobs, const FusedInput* stage);
  // Uploads (or makes, for the stage) every input and quantizes those the int8 kernels read.
  cl_int upload_inputs(const BatchPlan& plan, const FusedInput* stage, const BatchBuffers& b);
  cl_int launch_products(const BatchPlan& plan, const BatchBuffers& b);
  // Queues the device's share, with its read-backs, and starts it (no wait).
  cl_int enqueue_batch(const BatchPlan& plan, const FusedInput* stage);
  // Runs jobs on the CPU delegate, making the stage's result on the host first if they read it
  // and it is not made yet (*stage_done).
  void run_cpu_jobs(const std::vector<MatmulJob>& jobs, const FusedInput* stage, bool reads_stage, bool* stage_done);
  cl_int stage_on_device(const FusedInput& stage, cl_mem out);
  cl_int rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out);
  cl_int rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions, const RopeParams& p);
  cl_int swiglu(const float* gate, const float* up, int64_t n, float* out);
  cl_int add(float* x, const float* y, int64_t n);
  // Shared by attention and mla_attention; q: [n_tokens, n_head, head_dim_k]. CL_INVALID_VALUE
  // (heads wider than the kernel) and CL_INVALID_BUFFER_SIZE (a cache too large for one buffer)
  // mean the kernel does not cover this call (attention_status: kUnsupported), not a failure.
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

void OpenClBackend::Impl::device_failed(const char* op, const Status& st) {
  if (warned) return;
  warned = true;
  std::fprintf(stderr, "fathom: opencl: %s failed on %s (%s); running such ops on the CPU\n", op, info.name.c_str(),
               st.message().c_str());
}

const OpenClBackend::Impl::Region* OpenClBackend::Impl::matmul_region(const TensorView& w) {
  const MatmulFormat f = matmul_format(w.dtype);
  if (!f.suffix || w.ne[0] % f.block_values != 0) return nullptr;
  return region_for(w.data, w.n_bytes());
}

cl_int OpenClBackend::Impl::stage_on_device(const FusedInput& stage, cl_mem out) {
  const size_t bytes = static_cast<size_t>(stage.count()) * sizeof(float);
  cl_mem ab = nullptr, bb = nullptr;
  FATHOM_CL_TRY(upload(kIn1, stage.a, bytes, &ab));
  if (stage.kind == FusedInput::kRmsNorm) {
    cl_kernel k = kernel("rms_norm_f32");
    FATHOM_CL_TRY(upload(kIn2, stage.b, static_cast<size_t>(stage.b_count()) * sizeof(float), &bb));
    FATHOM_CL_TRY(set_args(k, ab, bb, out, static_cast<cl_int>(stage.n), stage.eps));
    return run(k, static_cast<size_t>(stage.n_tokens) * kLanes);
  }
  cl_kernel k = kernel("swiglu_f32");
  FATHOM_CL_TRY(upload(kIn2, stage.b, bytes, &bb));
  const int64_t n = stage.count();
  FATHOM_CL_TRY(set_args(k, ab, bb, out, static_cast<cl_int>(n)));
  return run(k, round_up(static_cast<size_t>(n), kLanes));
}

OpenClBackend::Impl::BatchPlan OpenClBackend::Impl::plan_batch(const std::vector<MatmulJob>& jobs, const FusedInput* stage) {
  BatchPlan plan;
  for (const MatmulJob& j : jobs) {
    if (j.n_tokens <= 0) continue;
    const bool reads_stage = stage && j.x == stage->result;
    if (reads_stage)  // the caller's contract (Backend::rms_norm_matmul_batch, swiglu_matmul)
      FATHOM_CHECK(j.n_tokens <= stage->n_tokens && j.w.ne[0] == stage->n);
    if (const Region* r = matmul_region(j.w)) {
      plan.device_jobs.push_back({&j, r});
      plan.device_reads_stage |= reads_stage;
    } else {
      plan.cpu_jobs.push_back(j);
      plan.cpu_reads_stage |= reads_stage;
    }
  }
  std::vector<BatchPlan::Input>& inputs = plan.inputs;
  if (plan.device_reads_stage) {
    inputs.push_back({stage->result, stage->n_tokens, stage->n, 0});
    plan.act_floats = static_cast<size_t>(stage->n_tokens * stage->n);
  }
  for (BatchPlan::DeviceJob& d : plan.device_jobs) {
    const MatmulJob& j = *d.job;
    const int64_t n_in = j.w.ne[0];
    auto in = std::find_if(inputs.begin(), inputs.end(), [&](const BatchPlan::Input& i) {
      return i.host == j.x && i.n == n_in && i.n_tokens >= j.n_tokens;
    });
    if (in == inputs.end()) {
      inputs.push_back({j.x, j.n_tokens, n_in, plan.act_floats});
      plan.act_floats += static_cast<size_t>(j.n_tokens * n_in);
      in = inputs.end() - 1;
    }
    d.input = static_cast<size_t>(in - inputs.begin());
    d.q8 = int8_activations(j.w.dtype);
    if (d.q8 && in->q_offset == BatchPlan::kNone) {
      in->q_offset = plan.q_values;
      plan.q_values += static_cast<size_t>(in->n_tokens * in->n);
    }
    d.y_offset = plan.out_floats;
    plan.out_floats += static_cast<size_t>(j.n_tokens * j.w.n_rows());
  }
  return plan;
}

cl_int OpenClBackend::Impl::upload_inputs(const BatchPlan& plan, const FusedInput* stage, const BatchBuffers& b) {
  for (size_t i = 0; i < plan.inputs.size(); ++i) {
    const BatchPlan::Input& in = plan.inputs[i];
    if (i == 0 && plan.device_reads_stage) {
      FATHOM_CL_TRY(stage_on_device(*stage, b.act));
    } else {
      // Non-blocking: the host data outlive the batch, which ends waiting for the queue.
      FATHOM_CL_TRY(clEnqueueWriteBuffer(queue, b.act, CL_FALSE, in.offset * sizeof(float),
                                         static_cast<size_t>(in.n_tokens * in.n) * sizeof(float), in.host, 0, nullptr, nullptr));
    }
    if (in.q_offset != BatchPlan::kNone) {
      cl_kernel k = kernel("quantize_q8_act");
      const int64_t n_blocks = in.n_tokens * in.n / kQ8Block;
      FATHOM_CL_TRY(set_args(k, b.act, cl_ulong{in.offset}, b.quant, b.scales, cl_ulong{in.q_offset}, static_cast<cl_int>(n_blocks)));
      FATHOM_CL_TRY(run(k, round_up(static_cast<size_t>(n_blocks), kLanes)));
    }
  }
  return CL_SUCCESS;
}

cl_int OpenClBackend::Impl::launch_products(const BatchPlan& plan, const BatchBuffers& b) {
  for (const BatchPlan::DeviceJob& d : plan.device_jobs) {
    const MatmulJob& j = *d.job;
    const BatchPlan::Input& in = plan.inputs[d.input];
    const bool single = j.n_tokens == 1;
    const std::string name = std::string(single ? "matvec_" : "matmat_") + matmul_format(j.w.dtype).suffix + (d.q8 ? "_q8" : "");
    cl_kernel k = kernel(name.c_str());
    const cl_ulong w_offset = reinterpret_cast<uintptr_t>(j.w.data) - d.region->begin;
    const cl_ulong row_bytes = j.w.row_bytes();
    const cl_int n_in = static_cast<cl_int>(j.w.ne[0]), n_out = static_cast<cl_int>(j.w.n_rows()),
                 n_tokens = static_cast<cl_int>(j.n_tokens);
    if (d.q8)
      FATHOM_CL_TRY(set_args(k, d.region->buffer, w_offset, row_bytes, n_in, n_out, b.quant, b.scales, cl_ulong{in.q_offset}, b.out,
                             cl_ulong{d.y_offset}, n_tokens));
    else
      FATHOM_CL_TRY(set_args(k, d.region->buffer, w_offset, row_bytes, n_in, n_out, b.act, cl_ulong{in.offset}, b.out,
                             cl_ulong{d.y_offset}, n_tokens));
    const int64_t per_group = single ? 1 : kMatmatTokens;
    FATHOM_CL_TRY(run(k, static_cast<size_t>(n_out) * kLanes, static_cast<size_t>((j.n_tokens + per_group - 1) / per_group)));
  }
  return CL_SUCCESS;
}

cl_int OpenClBackend::Impl::enqueue_batch(const BatchPlan& plan, const FusedInput* stage) {
  BatchBuffers b;
  b.act = scratch_buffer(kIn0, plan.act_floats * sizeof(float));
  b.out = scratch_buffer(kOut, plan.out_floats * sizeof(float));
  b.quant = plan.q_values ? scratch_buffer(kQuant, plan.q_values) : nullptr;
  b.scales = plan.q_values ? scratch_buffer(kQuantScale, plan.q_values / kQ8Block * sizeof(float)) : nullptr;
  if (!b.act || !b.out || (plan.q_values && (!b.quant || !b.scales))) return CL_MEM_OBJECT_ALLOCATION_FAILURE;
  FATHOM_CL_TRY(upload_inputs(plan, stage, b));
  FATHOM_CL_TRY(launch_products(plan, b));
  for (const BatchPlan::DeviceJob& d : plan.device_jobs)  // read back after the one wait in matmul_batch
    FATHOM_CL_TRY(clEnqueueReadBuffer(queue, b.out, CL_FALSE, d.y_offset * sizeof(float),
                                      static_cast<size_t>(d.job->n_tokens * d.job->w.n_rows()) * sizeof(float), d.job->y, 0,
                                      nullptr, nullptr));
  return clFlush(queue);  // start the device before the host turns to its own jobs
}

void OpenClBackend::Impl::run_cpu_jobs(const std::vector<MatmulJob>& jobs, const FusedInput* stage, bool reads_stage,
                                       bool* stage_done) {
  if (reads_stage && !*stage_done) {
    // The device may still be uploading the stage's operands from memory the result overwrites.
    const size_t bytes = static_cast<size_t>(stage->count()) * sizeof(float);
    const size_t b_bytes = static_cast<size_t>(stage->b_count()) * sizeof(float);
    if (overlaps(stage->result, bytes, stage->a, bytes) || overlaps(stage->result, bytes, stage->b, b_bytes)) clFinish(queue);
    stage->make_on(*cpu);
    *stage_done = true;
  }
  cpu->matmul_batch(jobs);
}

void OpenClBackend::Impl::matmul_batch(const std::vector<MatmulJob>& jobs, const FusedInput* stage, const char* op) {
  BatchPlan plan = plan_batch(jobs, stage);
  // The device's jobs move to the CPU after a failure: the queue is drained first, so no late
  // read lands on an output the CPU has written.
  const auto device_jobs_to_cpu = [&](cl_int err) {
    clFinish(queue);
    device_failed(op, err);
    std::vector<MatmulJob> moved;
    for (const BatchPlan::DeviceJob& d : plan.device_jobs) moved.push_back(*d.job);
    plan.device_jobs.clear();
    return moved;
  };
  bool host_stage_done = false;
  if (!plan.device_jobs.empty()) {
    if (const cl_int err = enqueue_batch(plan, stage); err != CL_SUCCESS) {
      const bool reads_stage = plan.device_reads_stage;
      for (const MatmulJob& j : device_jobs_to_cpu(err)) plan.cpu_jobs.push_back(j);
      plan.cpu_reads_stage |= reads_stage;
    }
  }
  if (!plan.cpu_jobs.empty()) run_cpu_jobs(plan.cpu_jobs, stage, plan.cpu_reads_stage, &host_stage_done);  // meanwhile
  if (plan.device_jobs.empty()) return;
  if (const cl_int err = clFinish(queue); err != CL_SUCCESS)
    run_cpu_jobs(device_jobs_to_cpu(err), stage, plan.device_reads_stage, &host_stage_done);
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
  const KvCacheShape& shape = kv.shape();
  const char* k_suffix = attention_suffix(shape.k_type);
  const char* v_suffix = latent ? k_suffix : attention_suffix(shape.v_type);  // MLA: the values are the latent rows
  if (head_dim_k > kMaxQueryDim || head_dim_v > kMaxValueDim || !k_suffix || !v_suffix) return CL_INVALID_VALUE;
  const size_t slots = static_cast<size_t>(kv.pool().n_total()) * static_cast<size_t>(shape.block_size);
  const size_t k_row_bytes = kv.k_row_bytes(), v_row_bytes = latent ? k_row_bytes : kv.v_row_bytes();
  const uint8_t* k_base = kv.k_data(layer, 0, 0);
  const uint8_t* v_base = latent ? k_base : kv.v_data(layer, 0, 0);
  const Region* kr = region_for(k_base, slots * k_row_bytes);
  const Region* vr = latent ? kr : region_for(v_base, slots * v_row_bytes);
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
  cl_kernel k = kernel(strprintf("attention_%s_%s", k_suffix, v_suffix).c_str());
  cl_mem qb = nullptr, tb = nullptr, pb = nullptr;
  FATHOM_CL_TRY(upload(kIn0, q, static_cast<size_t>(batch.n_tokens * n_head * head_dim_k) * sizeof(float), &qb));
  FATHOM_CL_TRY(upload(kIn1, tables.data(), tables.size() * sizeof(int32_t), &tb));
  FATHOM_CL_TRY(upload(kIn2, batch.positions, static_cast<size_t>(batch.n_tokens) * sizeof(int32_t), &pb));
  const size_t out_bytes = static_cast<size_t>(batch.n_tokens * n_head * head_dim_v) * sizeof(float);
  cl_mem ob = scratch_buffer(kOut, out_bytes);
  if (!ob) return CL_MEM_OBJECT_ALLOCATION_FAILURE;
  const cl_ulong k_offset = reinterpret_cast<uintptr_t>(k_base) - kr->begin;
  const cl_ulong v_offset = reinterpret_cast<uintptr_t>(v_base) - vr->begin;
  FATHOM_CL_TRY(set_args(k, qb, kr->buffer, k_offset, vr->buffer, v_offset, tb, static_cast<cl_int>(max_blocks), pb,
                         static_cast<cl_int>(n_head), static_cast<cl_int>(group), static_cast<cl_int>(head_dim_k),
                         static_cast<cl_int>(head_dim_v), static_cast<cl_ulong>(k_row_bytes), static_cast<cl_ulong>(v_row_bytes),
                         static_cast<cl_int>(shape.block_size), scale, ob));
  FATHOM_CL_TRY(run(k, static_cast<size_t>(batch.n_tokens * n_head) * kLanes));
  return download(ob, out, out_bytes);
}

// ---------------------------------------------------------------------------------------------

Expected<std::unique_ptr<OpenClBackend>> OpenClBackend::create(const OpenClOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(opencl::SelectedDevice dev, opencl::select_device(options.device));
  auto impl = std::make_unique<Impl>(options.cpu ? options.cpu : std::make_shared<CpuBackend>(options.n_threads));
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

  // Kernel variants. The build options are part of the program cache key, so every variant has
  // its own cached binary.
  const OpenClKernelVariants& asked = options.variants;
  OpenClKernelVariants& v = impl->variants;
  v.f16_accumulation = resolve_variant(asked.f16_accumulation, dev.info.fp16);
  v.subgroup_reduction = resolve_variant(asked.subgroup_reduction, dev.info.subgroups);
  v.int8_dot = resolve_variant(asked.int8_dot, dev.info.int_dot);
  for (const auto& [variant, has, extension] :
       {std::tuple{asked.f16_accumulation, dev.info.fp16, "cl_khr_fp16"},
        std::tuple{asked.subgroup_reduction, dev.info.subgroups, "cl_khr_subgroups or cl_intel_subgroups"},
        std::tuple{asked.int8_dot, dev.info.int_dot, "cl_khr_integer_dot_product"}}) {
    if (variant == OpenClVariant::kNative && !has)
      return error(ErrorCode::kInvalidArgument,
                   strprintf("%s lacks %s, which a forced native kernel variant needs; force the emulated variant instead",
                             dev.info.name.c_str(), extension));
  }
  std::string base_options = strprintf("-cl-std=CL1.2 -DWG=%zu", kLanes);
  if (options.inject_build_error) base_options += " -DFATHOM_INJECT_BUILD_ERROR";
  Expected<opencl::BuiltProgram> built = opencl::build_program(impl->context, dev, opencl::kernel_source(),
                                                               base_options + variant_build_options(v), options.cache_dir);
  // The native variants cannot be tested on PoCL: should a driver reject one that was chosen for
  // it, the portable kernels still give the device a program.
  OpenClKernelVariants portable = v;
  for (auto [chosen, wanted] : {std::pair{&portable.f16_accumulation, asked.f16_accumulation},
                                std::pair{&portable.subgroup_reduction, asked.subgroup_reduction},
                                std::pair{&portable.int8_dot, asked.int8_dot}}) {
    if (wanted == OpenClVariant::kAuto) *chosen = OpenClVariant::kOff;
  }
  if (!built && variant_build_options(portable) != variant_build_options(v)) {
    std::fprintf(stderr, "fathom: opencl: the kernels for %s's extensions failed to build; using the portable ones (%s)\n",
                 dev.info.name.c_str(), built.status().message().c_str());
    v = portable;
    built = opencl::build_program(impl->context, dev, opencl::kernel_source(), base_options + variant_build_options(v),
                                  options.cache_dir);
  }
  if (!built) return built.status();
  impl->program = built->program;
  impl->from_cache = built->from_cache;
  std::vector<const char*> names(std::begin(kKernelNames), std::end(kKernelNames));
  if (v.int8_dot != OpenClVariant::kOff) names.insert(names.end(), std::begin(kInt8KernelNames), std::end(kInt8KernelNames));
  for (const char* name : names) {
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

int OpenClBackend::n_threads() const { return impl_->cpu->n_threads(); }
const OpenClDeviceInfo& OpenClBackend::device() const { return impl_->info; }
bool OpenClBackend::program_from_cache() const { return impl_->from_cache; }
const OpenClKernelVariants& OpenClBackend::variants() const { return impl_->variants; }
uint64_t OpenClBackend::fallback_ops() const { return impl_->fallback_ops; }

bool OpenClBackend::on_device(Op op, DType weight_type) const {
  switch (op) {
    case Op::kMatmul: return matmul_format(weight_type).suffix != nullptr;
    case Op::kGetRows: return false;
    case Op::kAttention: return attention_suffix(weight_type) != nullptr;  // the cache's element type
    default: return true;
  }
}

void OpenClBackend::matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  impl_->matmul_batch({{w, x, n_tokens, y}}, nullptr, "matmul");
}

void OpenClBackend::matmul_batch(const std::vector<MatmulJob>& jobs) { impl_->matmul_batch(jobs, nullptr, "matmul"); }

void OpenClBackend::rms_norm_matmul_batch(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps,
                                          float* normed, const std::vector<MatmulJob>& jobs) {
  if (n_tokens <= 0) return;
  const FusedInput stage = FusedInput::rms_norm(x, norm_weight, n_tokens, n, eps, normed);
  impl_->matmul_batch(jobs, &stage, "rms_norm_matmul_batch");
}

void OpenClBackend::swiglu_matmul(const TensorView& w, float* gate, const float* up, int64_t n_tokens, float* y) {
  if (n_tokens <= 0) return;
  const FusedInput stage = FusedInput::swiglu(gate, up, n_tokens, w.ne[0]);
  impl_->matmul_batch({{w, gate, n_tokens, y}}, &stage, "swiglu_matmul");
}

void OpenClBackend::get_rows(const TensorView& table, const int32_t* ids, int64_t n_ids, float* out) {
  impl_->cpu->get_rows(table, ids, n_ids, out);
}

void OpenClBackend::rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out) {
  if (n_rows <= 0) return;
  impl_->run("rms_norm", [&] { return impl_->rms_norm(x, weight, n_rows, n, eps, out); },
             [&] { impl_->cpu->rms_norm(x, weight, n_rows, n, eps, out); });
}

void OpenClBackend::rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                         const RopeParams& params) {
  if (n_tokens <= 0 || params.n_rot <= 0) return;
  // A failed read-back may have left x half written; the device is in trouble either way.
  impl_->run("rope", [&] { return impl_->rope(x, n_tokens, n_heads, head_dim, positions, params); },
             [&] { impl_->cpu->rope(x, n_tokens, n_heads, head_dim, positions, params); });
}

void OpenClBackend::store_kv(KvCache& kv, int64_t layer, const AttentionBatch& batch, const float* k, const float* v) {
  impl_->cpu->store_kv(kv, layer, batch, k, v);  // rows converted to the cache's type on the host
  // The cache is written on the host; wrapped layers learn of the new rows through a write from
  // the wrapped memory itself, which OpenCL defines as the synchronisation for CL_MEM_USE_HOST_PTR
  // buffers (free on zero-copy devices, a copy of just these rows on discrete ones). Layers of a
  // type the kernels do not read are never wrapped.
  const KvCacheShape& shape = kv.shape();
  const size_t slots = static_cast<size_t>(kv.pool().n_total()) * static_cast<size_t>(shape.block_size);
  const auto sync = [&](const uint8_t* base, size_t row_bytes) {
    const Impl::Region* r = impl_->find_region(base, slots * row_bytes);
    if (!r) return;  // not wrapped yet: wrapping copies the rows as they are then
    for (int64_t t = 0; t < batch.n_tokens; ++t) {
      const std::vector<int32_t>& table = kv.block_table(batch.seq_ids[t]);
      const int64_t pos = batch.positions[t];
      const uint8_t* row = base + (static_cast<size_t>(table[static_cast<size_t>(pos / shape.block_size)]) *
                                       static_cast<size_t>(shape.block_size) + static_cast<size_t>(pos % shape.block_size)) * row_bytes;
      const cl_int err = clEnqueueWriteBuffer(impl_->queue, r->buffer, CL_FALSE, reinterpret_cast<uintptr_t>(row) - r->begin,
                                              row_bytes, row, 0, nullptr, nullptr);
      if (err != CL_SUCCESS) impl_->device_failed("store_kv", err);
    }
  };
  sync(kv.k_data(layer, 0, 0), kv.k_row_bytes());
  if (shape.v_width > 0) sync(kv.v_data(layer, 0, 0), kv.v_row_bytes());
  clFinish(impl_->queue);
}

void OpenClBackend::attention(const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch, int64_t n_head,
                              int64_t n_head_kv, int64_t head_dim_k, int64_t head_dim_v, float scale, float* out) {
  if (batch.n_tokens <= 0) return;
  run_on_device_or_cpu(
      *impl_, "attention", {}, {},
      [&] {
        return Impl::attention_status(
            impl_->attend(q, kv, layer, batch, n_head, n_head / n_head_kv, head_dim_k, head_dim_v, false, scale, out));
      },
      [&] { impl_->cpu->attention(q, kv, layer, batch, n_head, n_head_kv, head_dim_k, head_dim_v, scale, out); });
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
  run_on_device_or_cpu(
      *impl_, "mla_attention", {}, {},
      [&] {
        return Impl::attention_status(kv.shape().k_width != width ? CL_INVALID_VALUE
                                                                  : impl_->attend(q.data(), kv, layer, batch, n_head, n_head,
                                                                                  width, kv_lora_rank, true, scale, out));
      },
      [&] { impl_->cpu->mla_attention(q_abs, q_pe, kv, layer, batch, n_head, kv_lora_rank, n_rot, scale, out); });
}

void OpenClBackend::swiglu(const float* gate, const float* up, int64_t n, float* out) {
  if (n <= 0) return;
  impl_->run("swiglu", [&] { return impl_->swiglu(gate, up, n, out); }, [&] { impl_->cpu->swiglu(gate, up, n, out); });
}

void OpenClBackend::add(float* x, const float* y, int64_t n) {
  if (n <= 0) return;
  impl_->run("add", [&] { return impl_->add(x, y, n); }, [&] { impl_->cpu->add(x, y, n); });
}

// ---------------------------------------------------------------------------------------------

bool opencl_compiled_in() { return true; }

Expected<std::unique_ptr<Backend>> create_opencl_backend(const OpenClOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<OpenClBackend> b, OpenClBackend::create(options));
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace fathom
#endif
