// Run-time ISA selection and the DType dispatch of the CPU dot-product kernels.
#include "backend/cpu/vec_dot.h"

#include <cstring>
#include <string>

#include "backend/cpu/vec_dot_internal.h"
#include "core/status.h"

namespace fathom::cpu {

namespace {

Kernels build_kernels(Isa isa) {
  Kernels k;
  k.isa = isa;
  detail::install_generic(k);
  k.gemm_x16 = detail::gemm_x16_generic;
  k.quantize_gemm = gemm_quantize_activations;
  if (isa >= Isa::kAvx2) {
    detail::install_avx2(k);
    detail::install_iq2_avx2(k);
    detail::install_iq_tokens_avx2(k);
    detail::install_gemm_avx2(k);
  }
  if (isa >= Isa::kAvx512) {
    detail::install_avx512(k);
    detail::install_iq2_avx512(k);
    detail::install_iq_tokens_avx512(k);
    detail::install_gemm_avx512(k);
  }
  if (isa == Isa::kAmx) {
    detail::install_gemm_amx(k, /*emulated=*/false);
    detail::install_iq_vbmi(k);  // every AMX CPU has AVX512_VBMI (choose_isa requires it)
  }
  return k;
}

VecDotRowsFn dot_fn(const Kernels& k, DType t) {
  const auto id = static_cast<size_t>(t);
  return id < kDTypeSlots ? k.dot_rows[id] : nullptr;
}

}  // namespace

bool isa_supported(Isa isa) { return isa <= best_isa(); }

Isa best_isa() { return hardware_isa().isa; }

Isa active_isa() {
  const Expected<IsaChoice>& choice = active_isa_choice();
  FATHOM_CHECK_MSG(choice.has_value(), choice.status().message());
  return choice->isa;
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
    case Isa::kAmx: {
      static const Kernels amx = build_kernels(Isa::kAmx);
      return amx;
    }
  }
  return generic;
}

const Kernels& amx_emulated_kernels() {
  FATHOM_CHECK_MSG(isa_supported(Isa::kAvx512), "the emulated AMX kernels run on AVX-512");
  static const Kernels amx = [] {
    Kernels k = build_kernels(Isa::kAvx512);
    k.isa = Isa::kAmx;
    detail::install_gemm_amx(k, /*emulated=*/true);
    return k;
  }();
  return amx;
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

void vec_dot_tokens(const Kernels& k, DType t, int64_t n, const uint8_t* w, size_t row_bytes, int64_t n_rows,
                    const uint8_t* x_q, size_t act_row, int64_t n_tokens, float* out, int64_t out_stride) {
  const auto id = static_cast<size_t>(t);
  const VecDotTokensFn fn = id < kDTypeSlots ? k.dot_tokens[id] : nullptr;
  if (fn == nullptr || n_tokens < 2) {
    for (int64_t tok = 0; tok < n_tokens; ++tok)
      vec_dot_rows(k, t, n, w, row_bytes, n_rows, x_q + static_cast<size_t>(tok) * act_row, out + tok * out_stride);
    return;
  }
  FATHOM_CHECK_MSG(n % traits(t).block_size == 0, std::string("row length must be a multiple of the block size of ") +
                                                      dtype_name(t));
  fn(n, w, row_bytes, n_rows, x_q, act_row, n_tokens, out, out_stride);
}

float vec_dot(const Kernels& k, DType t, int64_t n, const void* w_row, const void* x_q) {
  float out = 0;
  vec_dot_rows(k, t, n, static_cast<const uint8_t*>(w_row), 0, 1, x_q, &out);
  return out;
}

}  // namespace fathom::cpu
