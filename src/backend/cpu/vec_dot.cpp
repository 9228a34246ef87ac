// Run-time ISA selection and the DType dispatch of the CPU dot-product kernels.
#include "backend/cpu/vec_dot.h"

#include <cstring>
#include <string>

#include "backend/cpu/vec_dot_internal.h"
#include "core/status.h"

namespace fathom::cpu {

namespace {

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

Kernels build_kernels(Isa isa) {
  Kernels k;
  k.isa = isa;
  detail::install_generic(k);
  k.gemm_x16 = detail::gemm_x16_generic;
  k.quantize_gemm = gemm_quantize_activations;
  if (isa == Isa::kAvx2 || isa == Isa::kAvx512) {
    detail::install_avx2(k);
    detail::install_iq2_avx2(k);
    detail::install_gemm_avx2(k);
  }
  if (isa == Isa::kAvx512) {
    detail::install_avx512(k);
    detail::install_iq2_avx512(k);
    detail::install_gemm_avx512(k);
  }
  return k;
}

VecDotRowsFn dot_fn(const Kernels& k, DType t) {
  const auto id = static_cast<size_t>(t);
  return id < kDTypeSlots ? k.dot_rows[id] : nullptr;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kGeneric: return "generic";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::kGeneric: return true;
    case Isa::kAvx2: return cpu_has_avx2();
    case Isa::kAvx512: return cpu_has_avx512();
  }
  return false;
}

Isa best_isa() {
  // CPUID does not change while the process runs; evaluate once.
  static const Isa best = cpu_has_avx512() ? Isa::kAvx512 : (cpu_has_avx2() ? Isa::kAvx2 : Isa::kGeneric);
  return best;
}

const Kernels& kernels_for(Isa isa) {
  FATHOM_CHECK_MSG(isa_supported(isa), std::string("CPU kernels for ") + isa_name(isa) +
                                           " requested but this CPU lacks the instructions; use best_isa()");
  // Immutable tables, built on first use (thread-safe static initialisation).
  static const Kernels generic = build_kernels(Isa::kGeneric);
  switch (isa) {
    case Isa::kGeneric: return generic;
    case Isa::kAvx2: {
      static const Kernels avx2 = build_kernels(Isa::kAvx2);
      return avx2;
    }
    case Isa::kAvx512: {
      static const Kernels avx512 = build_kernels(Isa::kAvx512);
      return avx512;
    }
  }
  return generic;
}

bool supports(const Kernels& k, DType t) { return dot_fn(k, t) != nullptr; }

bool has_fast_path(const Kernels& k, DType t) {
  const auto id = static_cast<size_t>(t);
  return id < kDTypeSlots && k.dot_is_simd[id];
}

void quantize_activations(const Kernels& k, DType fmt, const float* x, void* dst, int64_t n) {
  switch (fmt) {
    case DType::Q8_0: return k.quantize_q8_0(x, dst, n);
    case DType::Q8_1: return k.quantize_q8_1(x, dst, n);
    case DType::Q8_K: return k.quantize_q8_K(x, dst, n);
    case DType::F32: std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float)); return;
    default:
      FATHOM_CHECK_MSG(false, std::string("activations cannot be quantized to ") + dtype_name(fmt) +
                                  "; use quant::vec_dot_type() of the weight type");
  }
}

void vec_dot_rows(const Kernels& k, DType t, int64_t n, const uint8_t* w, size_t row_bytes, int64_t n_rows,
                  const void* x_q, float* out) {
  const VecDotRowsFn fn = dot_fn(k, t);
  FATHOM_CHECK_MSG(fn != nullptr, std::string("no CPU dot product for weight type ") + dtype_name(t));
  FATHOM_CHECK_MSG(n % traits(t).block_size == 0, std::string("row length must be a multiple of the block size of ") +
                                                      dtype_name(t));
  fn(n, w, row_bytes, n_rows, x_q, out);
}

float vec_dot(const Kernels& k, DType t, int64_t n, const void* w_row, const void* x_q) {
  float out = 0;
  vec_dot_rows(k, t, n, static_cast<const uint8_t*>(w_row), 0, 1, x_q, &out);
  return out;
}

}  // namespace fathom::cpu
