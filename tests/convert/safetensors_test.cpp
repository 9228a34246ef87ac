// Safetensors reader/writer round trip, hostile files (truncations, bit flips, lying headers)
// rejected without crashing, and FP8 E4M3 decoding with block scales against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "convert/safetensors.h"
#include "core/fp16.h"
#include "core/json_depth.h"

namespace fathom::convert {
namespace {

std::vector<uint8_t> sample_file() {
  SafetensorsWriter w;
  const float a[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
  w.add_f32("a.weight", {2, 3}, a);
  std::vector<uint8_t> bf(8);
  for (int i = 0; i < 4; ++i) {
    const uint16_t v = fp32_to_bf16(static_cast<float>(i) - 1.5f);
    std::memcpy(bf.data() + 2 * i, &v, 2);
  }
  w.add("b.bias", StDType::kBF16, {4}, bf);
  w.add("c.fp8", StDType::kF8E4M3, {2, 2}, {0x38, 0xB8, 0x00, 0x7E});
  w.set_metadata("format", "pt");
  auto bytes = w.serialize();
  EXPECT_TRUE(bytes.has_value());
  return bytes ? *bytes : std::vector<uint8_t>{};
}

Expected<std::unique_ptr<SafetensorsFile>> parse(const std::vector<uint8_t>& bytes) {
  return SafetensorsFile::parse(MappedFile::from_bytes(bytes.data(), bytes.size(), "test.safetensors"));
}

// A file whose header is `json` (padded) followed by `data_bytes` zero bytes.
std::vector<uint8_t> with_header(const std::string& json, size_t data_bytes) {
  std::vector<uint8_t> out(8 + json.size() + data_bytes, 0);
  const uint64_t n = json.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, json.data(), json.size());
  return out;
}

TEST(SafetensorsTest, RoundTrip) {
  auto st = parse(sample_file());
  ASSERT_TRUE(st.has_value()) << st.status().to_string();
  ASSERT_EQ((*st)->tensors().size(), 3u);
  EXPECT_EQ((*st)->metadata().at("format"), "pt");
  const StTensor* a = (*st)->find("a.weight");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  std::vector<float> v(6);
  ASSERT_TRUE(st_to_f32(*a, v.data()).is_ok());
  EXPECT_FLOAT_EQ(v[2], 3.5f);
  EXPECT_FLOAT_EQ(v[5], -7.0f);
  const StTensor* b = (*st)->find("b.bias");
  ASSERT_NE(b, nullptr);
  std::vector<float> bv(4);
  ASSERT_TRUE(st_to_f32(*b, bv.data()).is_ok());
  EXPECT_FLOAT_EQ(bv[0], -1.5f);
  EXPECT_FLOAT_EQ(bv[3], 1.5f);
  const StTensor* c = (*st)->find("c.fp8");
  std::vector<float> cv(4);
  ASSERT_TRUE(st_to_f32(*c, cv.data()).is_ok());
  EXPECT_EQ(cv, (std::vector<float>{1.0f, -1.0f, 0.0f, 448.0f}));
}

TEST(SafetensorsTest, Fp8E4M3Encodings) {
  EXPECT_EQ(fp8_e4m3_to_f32(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(fp8_e4m3_to_f32(0x80)));
  EXPECT_EQ(fp8_e4m3_to_f32(0x01), std::ldexp(1.0f, -9));          // smallest subnormal: 1/8 * 2^-6
  EXPECT_EQ(fp8_e4m3_to_f32(0x07), 7.0f / 8.0f * std::ldexp(1.0f, -6));  // largest subnormal
  EXPECT_EQ(fp8_e4m3_to_f32(0x08), std::ldexp(1.0f, -6));          // smallest normal
  EXPECT_EQ(fp8_e4m3_to_f32(0x38), 1.0f);                          // exponent 7 = bias
  EXPECT_EQ(fp8_e4m3_to_f32(0x3C), 1.5f);
  EXPECT_EQ(fp8_e4m3_to_f32(0xC4), -3.0f);                         // -1.5 * 2^1
  EXPECT_EQ(fp8_e4m3_to_f32(0x7E), 448.0f);                        // largest finite
  EXPECT_EQ(fp8_e4m3_to_f32(0xFE), -448.0f);
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_f32(0x7F)));
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_f32(0xFF)));
  EXPECT_EQ(fp8_e4m3_to_f32(0x78), 256.0f);  // exponent 15 is finite in E4M3FN (no infinities)
}

TEST(SafetensorsTest, Fp8BlockScales) {
  // A 3x3 weight in blocks of 2: a 2x2 grid of scales; the last row/column use partial blocks.
  SafetensorsWriter w;
  w.add("w", StDType::kF8E4M3, {3, 3}, {0x38, 0x40, 0x3C, 0xB8, 0x01, 0x00, 0x44, 0x38, 0x7F});
  const float scales[4] = {0.5f, 2.0f, 4.0f, -1.0f};
  w.add_f32("w_scale_inv", {2, 2}, scales);
  auto bytes = w.serialize();
  ASSERT_TRUE(bytes.has_value());
  auto st = parse(*bytes);
  ASSERT_TRUE(st.has_value());
  std::vector<float> out(9);
  ASSERT_TRUE(dequant_fp8_blocks(*(*st)->find("w"), *(*st)->find("w_scale_inv"), 2, out.data()).is_ok());
  EXPECT_EQ(out[0], 1.0f * 0.5f);                          // row 0, col 0 -> scale[0][0]
  EXPECT_EQ(out[1], 2.0f * 0.5f);                          // 0x40 = 2
  EXPECT_EQ(out[2], 1.5f * 2.0f);                          // col 2 -> scale[0][1]
  EXPECT_EQ(out[3], -1.0f * 0.5f);
  EXPECT_EQ(out[4], std::ldexp(1.0f, -9) * 0.5f);          // subnormal
  EXPECT_EQ(out[6], 3.0f * 4.0f);                          // row 2 -> scale[1][0]; 0x44 = 3
  EXPECT_EQ(out[7], 1.0f * 4.0f);
  EXPECT_TRUE(std::isnan(out[8]));                         // NaN stays NaN
  // A scale grid of the wrong shape is an error, not a wild read.
  EXPECT_FALSE(dequant_fp8_blocks(*(*st)->find("w"), *(*st)->find("w_scale_inv"), 1, out.data()).is_ok());
}

TEST(SafetensorsTest, LyingHeadersAreRejected) {
  const char* bad[] = {
      "[]",                                                                    // not an object
      "{\"t\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}",   // 8 bytes needed
      "{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 100]}}", // past the end
      "{\"t\": {\"dtype\": \"Q9\", \"shape\": [1], \"data_offsets\": [0, 4]}}",    // unknown dtype
      "{\"t\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}",  // negative dim
      "{\"t\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], \"data_offsets\": [0, 4]}}",
      "{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}",   // reversed
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
      " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",  // overlap
      "{\"t\": {\"dtype\": \"F32\", \"shape\": [1]}}",                              // no offsets
      "{\"t\": 5}",
  };
  for (const char* h : bad) {
    auto st = parse(with_header(h, 16));
    EXPECT_FALSE(st.has_value()) << h;
    if (!st) {
      EXPECT_EQ(st.status().code(), ErrorCode::kInvalidFile) << h;
    }
  }
  // Header length larger than the file.
  std::vector<uint8_t> f = with_header("{}", 0);
  const uint64_t huge = 1ull << 40;
  std::memcpy(f.data(), &huge, 8);
  EXPECT_FALSE(parse(f).has_value());
}

TEST(SafetensorsTest, HeaderNestingPastTheLimitIsRejected) {
  // Free-form __metadata__ values that are not strings are ignored, so nesting there is harmless
  // up to the limit; the header object and __metadata__ are two of the levels.
  const auto header = [](int levels) {
    return "{\"__metadata__\": {\"x\": " + std::string(levels - 2, '[') + std::string(levels - 2, ']') + "}}";
  };
  auto ok = parse(with_header(header(kMaxFileJsonDepth), 0));
  EXPECT_TRUE(ok.has_value()) << ok.status().to_string();
  for (int levels : {kMaxFileJsonDepth + 1, 100000}) {
    auto deep = parse(with_header(header(levels), 0));
    ASSERT_FALSE(deep.has_value()) << levels;
    EXPECT_EQ(deep.status().code(), ErrorCode::kInvalidFile);
    EXPECT_NE(deep.status().message().find("nests arrays and objects deeper than 128 levels"), std::string::npos)
        << deep.status().message();
  }
}

TEST(SafetensorsTest, TruncationsAndBitFlipsNeverCrash) {
  const std::vector<uint8_t> good = sample_file();
  for (size_t n = 0; n < good.size(); ++n) {
    auto st = parse(std::vector<uint8_t>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)));
    EXPECT_FALSE(st.has_value()) << "truncated to " << n;
  }
  std::mt19937 rng(3);
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> f = good;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) f[rng() % f.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    auto st = parse(f);
    if (!st) continue;
    // Whatever parsed must be internally consistent and readable.
    for (const StTensor& t : (*st)->tensors()) {
      ASSERT_EQ(t.n_bytes, static_cast<size_t>(t.n_elements()) * st_dtype_size(t.dtype));
      std::vector<float> v(static_cast<size_t>(t.n_elements()));
      (void)st_to_f32(t, v.data());
    }
  }
}

}  // namespace
}  // namespace fathom::convert
