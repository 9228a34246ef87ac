// Per-format reference kernels behind quant.h's DType dispatch (internal to src/quant).
// n is the number of values (a multiple of the format's block size); `importance` may be null.
#pragma once

#include <cstdint>

namespace fathom::quant::detail {

// quant_legacy.cpp: the 32-value block formats.
void dequantize_q4_0(const void* src, float* dst, int64_t n);
void dequantize_q4_1(const void* src, float* dst, int64_t n);
void dequantize_q5_0(const void* src, float* dst, int64_t n);
void dequantize_q5_1(const void* src, float* dst, int64_t n);
void dequantize_q8_0(const void* src, float* dst, int64_t n);
void dequantize_q8_1(const void* src, float* dst, int64_t n);
void quantize_q4_0(const float* x, void* dst, int64_t n, const float* importance);
void quantize_q4_1(const float* x, void* dst, int64_t n);
void quantize_q5_0(const float* x, void* dst, int64_t n);
void quantize_q5_1(const float* x, void* dst, int64_t n);
void quantize_q8_0(const float* x, void* dst, int64_t n);
void quantize_q8_1(const float* x, void* dst, int64_t n);
float dot_q4_0_q8_0(const void* w, const void* a, int64_t n);
float dot_q4_1_q8_1(const void* w, const void* a, int64_t n);
float dot_q5_0_q8_0(const void* w, const void* a, int64_t n);
float dot_q5_1_q8_1(const void* w, const void* a, int64_t n);
float dot_q8_0_q8_0(const void* w, const void* a, int64_t n);
float dot_q8_1_q8_1(const void* w, const void* a, int64_t n);

// quant_k.cpp: the 256-value super-block formats.
void dequantize_q2_K(const void* src, float* dst, int64_t n);
void dequantize_q3_K(const void* src, float* dst, int64_t n);
void dequantize_q4_K(const void* src, float* dst, int64_t n);
void dequantize_q5_K(const void* src, float* dst, int64_t n);
void dequantize_q6_K(const void* src, float* dst, int64_t n);
void dequantize_q8_K(const void* src, float* dst, int64_t n);
void quantize_q2_K(const float* x, void* dst, int64_t n, const float* importance);
void quantize_q3_K(const float* x, void* dst, int64_t n, const float* importance);
void quantize_q4_K(const float* x, void* dst, int64_t n, const float* importance);
void quantize_q5_K(const float* x, void* dst, int64_t n, const float* importance);
void quantize_q6_K(const float* x, void* dst, int64_t n, const float* importance);
void quantize_q8_K(const float* x, void* dst, int64_t n);
float dot_q2_K_q8_K(const void* w, const void* a, int64_t n);
float dot_q3_K_q8_K(const void* w, const void* a, int64_t n);
float dot_q4_K_q8_K(const void* w, const void* a, int64_t n);
float dot_q5_K_q8_K(const void* w, const void* a, int64_t n);
float dot_q6_K_q8_K(const void* w, const void* a, int64_t n);
float dot_q8_K_q8_K(const void* w, const void* a, int64_t n);

// quant_iq2.cpp: the 2-bit i-quants.
void dequantize_iq2_xxs(const void* src, float* dst, int64_t n);
void dequantize_iq2_xs(const void* src, float* dst, int64_t n);
void dequantize_iq2_s(const void* src, float* dst, int64_t n);
void quantize_iq2_xxs(const float* x, void* dst, int64_t n, const float* importance);
void quantize_iq2_xs(const float* x, void* dst, int64_t n, const float* importance);
void quantize_iq2_s(const float* x, void* dst, int64_t n, const float* importance);
float dot_iq2_xxs_q8_K(const void* w, const void* a, int64_t n);
float dot_iq2_xs_q8_K(const void* w, const void* a, int64_t n);
float dot_iq2_s_q8_K(const void* w, const void* a, int64_t n);
// quant_iq3.cpp, quant_iq1.cpp: the 3-bit and 1-bit i-quants.
void dequantize_iq3_xxs(const void* src, float* dst, int64_t n);
void dequantize_iq3_s(const void* src, float* dst, int64_t n);
void dequantize_iq1_s(const void* src, float* dst, int64_t n);
void dequantize_iq1_m(const void* src, float* dst, int64_t n);
void quantize_iq3_xxs(const float* x, void* dst, int64_t n, const float* importance);
void quantize_iq3_s(const float* x, void* dst, int64_t n, const float* importance);
void quantize_iq1_s(const float* x, void* dst, int64_t n, const float* importance);
void quantize_iq1_m(const float* x, void* dst, int64_t n, const float* importance);
float dot_iq3_xxs_q8_K(const void* w, const void* a, int64_t n);
float dot_iq3_s_q8_K(const void* w, const void* a, int64_t n);
float dot_iq1_s_q8_K(const void* w, const void* a, int64_t n);
float dot_iq1_m_q8_K(const void* w, const void* a, int64_t n);
// quant_iq4.cpp: the non-linear 4-bit formats and the ternary formats.
void dequantize_iq4_nl(const void* src, float* dst, int64_t n);
void dequantize_iq4_xs(const void* src, float* dst, int64_t n);
void dequantize_tq1_0(const void* src, float* dst, int64_t n);
void dequantize_tq2_0(const void* src, float* dst, int64_t n);
void quantize_iq4_nl(const float* x, void* dst, int64_t n, const float* importance);
void quantize_iq4_xs(const float* x, void* dst, int64_t n, const float* importance);
void quantize_tq1_0(const float* x, void* dst, int64_t n);
void quantize_tq2_0(const float* x, void* dst, int64_t n);
float dot_iq4_nl_q8_0(const void* w, const void* a, int64_t n);
float dot_iq4_xs_q8_K(const void* w, const void* a, int64_t n);
float dot_tq1_0_q8_K(const void* w, const void* a, int64_t n);
float dot_tq2_0_q8_K(const void* w, const void* a, int64_t n);

}  // namespace fathom::quant::detail
