// Test helper: a copy of a GGUF file with chosen tensors re-encoded in a codebook i-quant
// (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S), the formats fathom reads but has no
// quantizer for. Each block gets random grid indices, signs and sub-block scales, and each row's
// fp16 scale is set so the row's RMS equals the original row's; the engine and the f32 reference
// then run on the same (dequantized) weights, so their difference measures the engine's
// kernels, not quantization.
#pragma once

#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "core/status.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

namespace fathom::test {

inline double row_rms(DType t, const uint8_t* row, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  quant::dequantize_row(t, row, v.data(), n);
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s / static_cast<double>(n));
}

// Sets the fp16 super-block scale of every block of an i-quant row (IQ1_M spreads it over the
// top nibbles of its four scale words).
inline void set_iq_scales(DType t, uint8_t* row, int64_t n, float d) {
  const uint16_t h = fp32_to_fp16(d);
  const size_t block = traits(t).type_size;
  for (int64_t b = 0; b < n / traits(t).block_size; ++b) {
    uint8_t* p = row + static_cast<size_t>(b) * block;
    if (t == DType::IQ1_M) {
      for (int w = 0; w < 4; ++w) p[48 + 2 * w + 1] = static_cast<uint8_t>((p[48 + 2 * w + 1] & 0x0F) | ((h >> (4 * w)) & 0xF) << 4);
    } else {
      std::memcpy(p, &h, 2);
    }
  }
}

// Writes `out` with every tensor of `in`, re-encoding those for which pick(name) names a type.
inline Status rewrite_with_iquants(const std::string& in, const std::string& out,
                                   const std::function<std::optional<DType>(const std::string&)>& pick, uint32_t seed) {
  auto file = gguf::GgufFile::open(in);
  if (!file) return file.status();
  gguf::GgufWriter writer;
  for (const auto& [key, value] : (*file)->metadata()) writer.set(key, value);
  std::mt19937 rng(seed);
  for (const gguf::TensorInfo& info : (*file)->tensors()) {
    const TensorView& v = info.view;
    const std::vector<int64_t> ne(v.ne.begin(), v.ne.begin() + v.n_dims);
    const std::optional<DType> to = pick(v.name);
    if (!to) {
      const auto* data = static_cast<const uint8_t*>(v.data);
      writer.add_tensor_bytes(v.name, v.dtype, ne, std::vector<uint8_t>(data, data + v.n_bytes()));
      continue;
    }
    const size_t row_bytes = row_size(*to, v.ne[0]);
    std::vector<uint8_t> bytes(row_bytes * static_cast<size_t>(v.n_rows()));
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    for (int64_t r = 0; r < v.n_rows(); ++r) {
      uint8_t* row = bytes.data() + row_bytes * static_cast<size_t>(r);
      set_iq_scales(*to, row, v.ne[0], 1.0f);
      const double unit = row_rms(*to, row, v.ne[0]);
      set_iq_scales(*to, row, v.ne[0], static_cast<float>(row_rms(v.dtype, v.row(r), v.ne[0]) / unit));
    }
    writer.add_tensor_bytes(v.name, *to, ne, std::move(bytes));
  }
  return writer.write(out);
}

}  // namespace fathom::test
