// DType dispatch of the reference kernels, and the plain float formats.
#include "quant/quant.h"

#include <cstring>
#include <string>

#include "core/fp16.h"
#include "core/status.h"
#include "quant/quant_impl.h"

namespace fathom::quant {

namespace {

// Types with a reference quantizer (and decoder).
bool is_reference_type(DType t) {
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16:
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0: case DType::Q8_1:
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: case DType::Q8_K:
    case DType::IQ4_NL: case DType::IQ4_XS: case DType::TQ1_0: case DType::TQ2_0:
    case DType::IQ2_XXS: case DType::IQ2_XS: case DType::IQ2_S:
    case DType::IQ3_XXS: case DType::IQ3_S: case DType::IQ1_S: case DType::IQ1_M:
      return true;
    default:
      return false;
  }
}

void check_row(DType t, int64_t n) {
  FATHOM_CHECK_MSG(is_reference_type(t),
                   std::string("no reference kernel for type ") + dtype_name(t));
  FATHOM_CHECK_MSG(n % traits(t).block_size == 0,
                   std::string("row length must be a multiple of the block size of ") + dtype_name(t));
}

}  // namespace

bool can_dequantize(DType t) { return is_reference_type(t); }
bool can_quantize(DType t) { return is_reference_type(t); }

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  check_row(t, n);
  using namespace detail;
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); return;
    case DType::F16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
      return;
    }
    case DType::BF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(h[i]);
      return;
    }
    case DType::Q4_0: return dequantize_q4_0(src, dst, n);
    case DType::Q4_1: return dequantize_q4_1(src, dst, n);
    case DType::Q5_0: return dequantize_q5_0(src, dst, n);
    case DType::Q5_1: return dequantize_q5_1(src, dst, n);
    case DType::Q8_0: return dequantize_q8_0(src, dst, n);
    case DType::Q8_1: return dequantize_q8_1(src, dst, n);
    case DType::Q2_K: return dequantize_q2_K(src, dst, n);
    case DType::Q3_K: return dequantize_q3_K(src, dst, n);
    case DType::Q4_K: return dequantize_q4_K(src, dst, n);
    case DType::Q5_K: return dequantize_q5_K(src, dst, n);
    case DType::Q6_K: return dequantize_q6_K(src, dst, n);
    case DType::Q8_K: return dequantize_q8_K(src, dst, n);
    case DType::IQ2_XXS: return dequantize_iq2_xxs(src, dst, n);
    case DType::IQ2_XS: return dequantize_iq2_xs(src, dst, n);
    case DType::IQ2_S: return dequantize_iq2_s(src, dst, n);
    case DType::IQ3_XXS: return dequantize_iq3_xxs(src, dst, n);
    case DType::IQ3_S: return dequantize_iq3_s(src, dst, n);
    case DType::IQ1_S: return dequantize_iq1_s(src, dst, n);
    case DType::IQ1_M: return dequantize_iq1_m(src, dst, n);
    case DType::IQ4_NL: return dequantize_iq4_nl(src, dst, n);
    case DType::IQ4_XS: return dequantize_iq4_xs(src, dst, n);
    case DType::TQ1_0: return dequantize_tq1_0(src, dst, n);
    case DType::TQ2_0: return dequantize_tq2_0(src, dst, n);
    default: break;
  }
}

void quantize_row_ref(DType t, const float* src, void* dst, int64_t n, const float* importance) {
  check_row(t, n);
  FATHOM_CHECK_MSG(can_quantize(t), std::string("no reference quantizer for type ") + dtype_name(t));
  using namespace detail;
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); return;
    case DType::F16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(src[i]);
      return;
    }
    case DType::BF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(src[i]);
      return;
    }
    // Formats whose ggml quantizer takes no importance ignore it (q8 is near-lossless anyway).
    case DType::Q4_0: return quantize_q4_0(src, dst, n, importance);
    case DType::Q4_1: return quantize_q4_1(src, dst, n);
    case DType::Q5_0: return quantize_q5_0(src, dst, n);
    case DType::Q5_1: return quantize_q5_1(src, dst, n);
    case DType::Q8_0: return quantize_q8_0(src, dst, n);
    case DType::Q8_1: return quantize_q8_1(src, dst, n);
    case DType::Q2_K: return quantize_q2_K(src, dst, n, importance);
    case DType::Q3_K: return quantize_q3_K(src, dst, n, importance);
    case DType::Q4_K: return quantize_q4_K(src, dst, n, importance);
    case DType::Q5_K: return quantize_q5_K(src, dst, n, importance);
    case DType::Q6_K: return quantize_q6_K(src, dst, n, importance);
    case DType::Q8_K: return quantize_q8_K(src, dst, n);
    case DType::IQ2_XXS: return quantize_iq2_xxs(src, dst, n, importance);
    case DType::IQ2_XS: return quantize_iq2_xs(src, dst, n, importance);
    case DType::IQ2_S: return quantize_iq2_s(src, dst, n, importance);
    case DType::IQ3_XXS: return quantize_iq3_xxs(src, dst, n, importance);
    case DType::IQ3_S: return quantize_iq3_s(src, dst, n, importance);
    case DType::IQ1_S: return quantize_iq1_s(src, dst, n, importance);
    case DType::IQ1_M: return quantize_iq1_m(src, dst, n, importance);
    case DType::IQ4_NL: return quantize_iq4_nl(src, dst, n, importance);
    case DType::IQ4_XS: return quantize_iq4_xs(src, dst, n, importance);
    case DType::TQ1_0: return quantize_tq1_0(src, dst, n);
    case DType::TQ2_0: return quantize_tq2_0(src, dst, n);
    default: break;
  }
}

DType vec_dot_type(DType t) {
  switch (t) {
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: case DType::IQ4_NL: return DType::Q8_0;
    case DType::Q4_1: case DType::Q5_1: case DType::Q8_1: return DType::Q8_1;
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: case DType::Q8_K:
    case DType::IQ2_XXS: case DType::IQ2_XS: case DType::IQ2_S:
    case DType::IQ3_XXS: case DType::IQ3_S: case DType::IQ1_S: case DType::IQ1_M:
    case DType::IQ4_XS: case DType::TQ1_0: case DType::TQ2_0:
      return DType::Q8_K;
    default: return DType::F32;
  }
}

float vec_dot_ref(DType t, int64_t n, const void* weight_row, const void* activations) {
  check_row(t, n);
  using namespace detail;
  const auto* x = static_cast<const float*>(activations);
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16: {
      // Double accumulation makes the reference independent of summation order, so every
      // optimized variant is compared against the same (nearly exact) value.
      double sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        float w;
        if (t == DType::F32) w = static_cast<const float*>(weight_row)[i];
        else if (t == DType::F16) w = fp16_to_fp32(static_cast<const uint16_t*>(weight_row)[i]);
        else w = bf16_to_fp32(static_cast<const uint16_t*>(weight_row)[i]);
        sum += static_cast<double>(w) * x[i];
      }
      return static_cast<float>(sum);
    }
    case DType::Q4_0: return dot_q4_0_q8_0(weight_row, activations, n);
    case DType::Q4_1: return dot_q4_1_q8_1(weight_row, activations, n);
    case DType::Q5_0: return dot_q5_0_q8_0(weight_row, activations, n);
    case DType::Q5_1: return dot_q5_1_q8_1(weight_row, activations, n);
    case DType::Q8_0: return dot_q8_0_q8_0(weight_row, activations, n);
    case DType::Q8_1: return dot_q8_1_q8_1(weight_row, activations, n);
    case DType::Q2_K: return dot_q2_K_q8_K(weight_row, activations, n);
    case DType::Q3_K: return dot_q3_K_q8_K(weight_row, activations, n);
    case DType::Q4_K: return dot_q4_K_q8_K(weight_row, activations, n);
    case DType::Q5_K: return dot_q5_K_q8_K(weight_row, activations, n);
    case DType::Q6_K: return dot_q6_K_q8_K(weight_row, activations, n);
    case DType::Q8_K: return dot_q8_K_q8_K(weight_row, activations, n);
    case DType::IQ2_XXS: return dot_iq2_xxs_q8_K(weight_row, activations, n);
    case DType::IQ2_XS: return dot_iq2_xs_q8_K(weight_row, activations, n);
    case DType::IQ2_S: return dot_iq2_s_q8_K(weight_row, activations, n);
    case DType::IQ3_XXS: return dot_iq3_xxs_q8_K(weight_row, activations, n);
    case DType::IQ3_S: return dot_iq3_s_q8_K(weight_row, activations, n);
    case DType::IQ1_S: return dot_iq1_s_q8_K(weight_row, activations, n);
    case DType::IQ1_M: return dot_iq1_m_q8_K(weight_row, activations, n);
    case DType::IQ4_NL: return dot_iq4_nl_q8_0(weight_row, activations, n);
    case DType::IQ4_XS: return dot_iq4_xs_q8_K(weight_row, activations, n);
    case DType::TQ1_0: return dot_tq1_0_q8_K(weight_row, activations, n);
    case DType::TQ2_0: return dot_tq2_0_q8_K(weight_row, activations, n);
    default: return 0.f;
  }
}

}  // namespace fathom::quant
