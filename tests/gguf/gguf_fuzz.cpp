// Deterministic fuzzing of the GGUF reader, built with AddressSanitizer + UBSan (see
// tests/CMakeLists.txt). Thousands of truncated, bit-flipped, field-overwritten and spliced
// variants of two valid files (a synthetic v3 file holding every value type and several dtypes,
// and the real v1 stories model) are parsed. Each must be rejected with a message, or accepted
// with every tensor's data inside the file; the sanitizers turn any out-of-bounds read,
// overflow or leak into a test failure.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"

namespace fathom::gguf {
namespace {

using Bytes = std::vector<uint8_t>;

// A small file with every value type, nested arrays, a non-default alignment and tensors of
// plain, legacy-quant and k-quant types.
Bytes synthetic_file() {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "fuzz \xE2\x96\x81 base");
  w.set("u8", Value::make_u8(7));
  w.set("i8", Value::make_i8(-7));
  w.set("u16", Value::make_u16(700));
  w.set("i16", Value::make_i16(-700));
  w.set_u32("llama.block_count", 2);
  w.set_i32("i32", -70000);
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_bool("flag", true);
  w.set("u64", Value::make_u64(1ull << 40));
  w.set("i64", Value::make_i64(-(1ll << 40)));
  w.set("f64", Value::make_f64(0.125));
  w.set("tokenizer.ggml.tokens", Value::make_string_array({"<unk>", "<s>", "</s>", "a", "b", "\xE2\x96\x81the"}));
  w.set("tokenizer.ggml.scores", Value::make_array(ValueType::kFloat32, {0, 0, 0, -1, -2, -3}));
  w.set("tokenizer.ggml.token_type", Value::make_array(ValueType::kInt32, {2, 3, 3, 1, 1, 1}));
  w.set("bools", Value::make_array(ValueType::kBool, {1, 0}));
  w.set("u64s", Value::make_array(ValueType::kUint64, {1, 2}));
  w.set("nested", Value::make_array_of_arrays({Value::make_array(ValueType::kUint16, {1, 2}),
                                               Value::make_string_array({"x", "yz"}),
                                               Value::make_array_of_arrays({Value::make_array(ValueType::kInt8, {-1})})}));
  w.set_alignment(64);
  auto add = [&](const std::string& name, DType dtype, std::vector<int64_t> ne) {
    w.add_tensor(name, dtype, std::move(ne), [](uint8_t* dst, size_t n) {
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<uint8_t>(i * 7 + 1);
      return Status::ok();
    });
  };
  add("token_embd.weight", DType::F32, {8, 6});
  add("blk.0.attn_q.weight", DType::Q4_0, {64, 2});
  add("blk.0.ffn_down.weight", DType::Q4_K, {256, 1});
  add("blk.1.attn_norm.weight", DType::F16, {16});
  add("blk.1.ffn_up.weight", DType::Q8_0, {32, 2, 2});
  add("output.weight", DType::BF16, {4, 2, 2, 2});
  Expected<Bytes> bytes = w.write_to_memory();
  EXPECT_TRUE(bytes.has_value()) << bytes.status().to_string();
  return bytes ? std::move(bytes).value() : Bytes{};
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Byte range of one structural field (count, length, type id, n_dims, dim or data offset).
struct Field {
  size_t offset;  // absolute byte offset in the file
  size_t width;   // 4 or 8 bytes
};

// Walks a file known to be valid and records where its structural fields are, so mutations can
// aim at the fields whose corruption is most dangerous. Also returns where the header ends.
class FieldLocator {
 public:
  explicit FieldLocator(const Bytes& b) : b_(b) {}

  std::vector<Field> run(size_t* header_end) {
    uint32_t version = static_cast<uint32_t>(take(4));
    count_width_ = version == 1 ? 4 : 8;
    const uint64_t n_tensors = take(count_width_);
    const uint64_t n_kv = take(count_width_);
    for (uint64_t i = 0; i < n_kv && ok_; ++i) {
      string();
      value(static_cast<uint32_t>(take(4)));
    }
    for (uint64_t i = 0; i < n_tensors && ok_; ++i) {
      string();
      const uint64_t n_dims = take(4);
      for (uint64_t d = 0; d < n_dims && ok_; ++d) take(count_width_);
      take(4);  // type
      take(8);  // offset
    }
    *header_end = pos_;
    EXPECT_TRUE(ok_) << "field locator walked off a base file";
    return fields_;
  }

 private:
  uint64_t take(size_t width) {
    if (!ok_ || pos_ + width > b_.size()) {
      ok_ = false;
      return 0;
    }
    uint64_t v = 0;
    std::memcpy(&v, b_.data() + pos_, width);
    fields_.push_back({pos_, width});
    pos_ += width;
    return v;
  }
  void string() { pos_ += static_cast<size_t>(take(count_width_)); }
  void value(uint32_t type) {
    static constexpr size_t kScalarBytes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == static_cast<uint32_t>(ValueType::kString)) {
      string();
    } else if (type == static_cast<uint32_t>(ValueType::kArray)) {
      const uint32_t elem = static_cast<uint32_t>(take(4));
      const uint64_t n = take(count_width_);
      for (uint64_t i = 0; i < n && ok_; ++i) value(elem);
    } else if (type < std::size(kScalarBytes)) {
      pos_ += kScalarBytes[type];
    } else {
      ok_ = false;
    }
  }

  const Bytes& b_;                // the valid file being walked
  size_t pos_ = 4;                // cursor, starting after the magic
  size_t count_width_ = 8;        // 4 in version 1
  bool ok_ = true;                // false once the walk leaves the file
  std::vector<Field> fields_;     // every structural field, in file order
};

// Per-base tallies printed at the end of each test.
struct Stats {
  size_t variants = 0;  // variants parsed
  size_t rejected = 0;  // variants refused with an error
};

// Parses one variant and checks the contract: a clean rejection with a message, or a structure
// whose every tensor lies inside the file. A variant identical to its base must be accepted.
void check_variant(const Bytes& bytes, const Bytes& base, Stats& stats) {
  ++stats.variants;
  auto parsed = GgufFile::parse(MappedFile::from_bytes(bytes.data(), bytes.size(), "fuzz.gguf"));
  if (!parsed) {
    ++stats.rejected;
    EXPECT_FALSE(parsed.status().message().empty());
    EXPECT_NE(bytes, base) << "a valid file was rejected: " << parsed.status().to_string();
    return;
  }
  const GgufFile& f = **parsed;
  const uint8_t* begin = f.file_data();
  const uint8_t* end = begin + f.file_size();
  for (const TensorInfo& t : f.tensors()) {
    const auto* p = static_cast<const uint8_t*>(t.view.data);
    ASSERT_EQ(t.n_bytes, t.view.n_bytes()) << t.view.name;
    ASSERT_TRUE(p >= begin + f.data_offset() && p <= end && t.n_bytes <= static_cast<size_t>(end - p))
        << "tensor '" << t.view.name << "' data outside the file";
    ASSERT_GT(t.n_bytes, 0u);
    // Touch both ends: ASan flags the read if the extent check above is ever wrong.
    volatile uint8_t sink = p[0];
    sink = p[t.n_bytes - 1];
    (void)sink;
    ASSERT_EQ(f.find_tensor(t.view.name), &t);
  }
  for (const auto& [key, value] : f.metadata()) {
    EXPECT_FALSE(value.to_display_string().empty()) << key;
  }
}

// Runs every mutation family over one base file. `header_share` is the probability that a
// random mutation lands in the header (where the parser's decisions are) rather than anywhere.
Stats fuzz_base(const Bytes& base, const Bytes& other, uint32_t seed, size_t n_truncations, size_t n_each) {
  Stats stats;
  size_t header_end = 0;
  const std::vector<Field> fields = FieldLocator(base).run(&header_end);
  EXPECT_FALSE(fields.empty());
  std::mt19937 rng(seed);
  auto uniform = [&](size_t lo, size_t hi) { return std::uniform_int_distribution<size_t>(lo, hi)(rng); };
  // A position in the header most of the time, anywhere in the file otherwise.
  auto position = [&]() { return uniform(0, 9) < 9 ? uniform(0, header_end - 1) : uniform(0, base.size() - 1); };

  check_variant(base, base, stats);
  // One variant buffer, reused: a fresh megabyte per variant costs more (page faults under ASan)
  // than the parse itself.
  Bytes v;
  v.reserve(base.size() + 64);

  // 1. Truncations: every length when n_truncations covers the file, otherwise the first 64,
  //    then lengths mostly inside the header and some that cut into tensor data.
  const bool exhaustive = n_truncations > base.size();
  for (size_t i = 0; i < n_truncations; ++i) {
    size_t len = i;
    if (!exhaustive && i >= 64) len = i % 4 == 0 ? uniform(0, base.size() - 1) : uniform(0, std::min(header_end + 63, base.size() - 1));
    v.assign(base.begin(), base.begin() + static_cast<std::ptrdiff_t>(len));
    check_variant(v, base, stats);
  }

  // 2. Random bit flips and byte overwrites, one to four per variant.
  for (size_t i = 0; i < n_each; ++i) {
    v = base;
    const size_t n_edits = uniform(1, 4);
    for (size_t e = 0; e < n_edits; ++e) {
      const size_t at = position();
      if (uniform(0, 1)) {
        v[at] ^= static_cast<uint8_t>(1u << uniform(0, 7));
      } else {
        v[at] = static_cast<uint8_t>(uniform(0, 255));
      }
    }
    check_variant(v, base, stats);
  }

  // 3. Structural fields (counts, lengths, type ids, dims, offsets) set to hostile values.
  const uint64_t hostile[] = {0,
                              1,
                              2,
                              3,
                              4,
                              13,
                              0x7F,
                              0xFF,
                              0xFFFF,
                              0x7FFFFFFF,
                              0x80000000,
                              0xFFFFFFFF,
                              uint64_t{1} << 32,
                              uint64_t{1} << 62,
                              uint64_t{1} << 63,
                              ~uint64_t{0},
                              base.size(),
                              base.size() + 1,
                              base.size() / 2,
                              header_end};
  for (size_t i = 0; i < n_each; ++i) {
    v = base;
    const Field& field = fields[uniform(0, fields.size() - 1)];
    uint64_t value = uniform(0, 3) == 0 ? static_cast<uint64_t>(rng()) << 16 ^ rng() : hostile[uniform(0, std::size(hostile) - 1)];
    if (uniform(0, 3) == 0) value = value + 1;  // off-by-one neighbours of the hostile values
    std::memcpy(v.data() + field.offset, &value, field.width);
    check_variant(v, base, stats);
  }

  // 4. Splices: copy a chunk over another place, insert one, delete one, or graft a chunk of the
  //    other base file.
  for (size_t i = 0; i < n_each; ++i) {
    v = base;
    const size_t len = uniform(1, 64);
    const size_t from = uniform(0, base.size() - std::min(len, base.size()));
    const size_t to = std::min(position(), v.size() - 1);
    switch (uniform(0, 3)) {
      case 0:  // overwrite
        for (size_t k = 0; k < len && to + k < v.size(); ++k) v[to + k] = base[from + k];
        break;
      case 1:  // insert
        v.insert(v.begin() + static_cast<std::ptrdiff_t>(to), base.begin() + static_cast<std::ptrdiff_t>(from),
                 base.begin() + static_cast<std::ptrdiff_t>(from + len));
        break;
      case 2:  // delete
        v.erase(v.begin() + static_cast<std::ptrdiff_t>(to),
                v.begin() + static_cast<std::ptrdiff_t>(std::min(v.size(), to + len)));
        break;
      default: {  // graft from the other file
        const size_t other_from = uniform(0, other.size() - std::min(len, other.size()));
        for (size_t k = 0; k < len && to + k < v.size() && other_from + k < other.size(); ++k) v[to + k] = other[other_from + k];
      }
    }
    check_variant(v, base, stats);
  }
  return stats;
}

void report(const char* name, const Stats& s, std::chrono::steady_clock::time_point start) {
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[fuzz] %s: %zu variants, %zu rejected, %zu accepted (%.2f s)\n", name, s.variants, s.rejected,
              s.variants - s.rejected, seconds);
}

TEST(GgufFuzz, SyntheticFile) {
  const auto start = std::chrono::steady_clock::now();
  const Bytes base = synthetic_file();
  ASSERT_FALSE(base.empty());
  auto parsed = GgufFile::parse(MappedFile::from_bytes(base.data(), base.size(), "synthetic.gguf"));
  ASSERT_TRUE(parsed.has_value()) << parsed.status().to_string();
  ASSERT_EQ((*parsed)->tensors().size(), 6u);
  const Bytes other = {'G', 'G', 'U', 'F', 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 9, 0, 0, 0, 0, 0, 0, 0};
  const Stats s = fuzz_base(base, other, /*seed=*/1234, /*n_truncations=*/base.size() + 1, /*n_each=*/600);
  report("synthetic v3", s, start);
  EXPECT_GE(s.variants, 1000u);
  EXPECT_GT(s.rejected, s.variants / 2);  // most corruptions of a small header must be caught
}

TEST(GgufFuzz, StoriesV1Model) {
  const std::string path = std::string(FATHOM_SHARED_DIR) + "/models/tinyllamas-stories-260k-f32.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "missing " << path;
  const auto start = std::chrono::steady_clock::now();
  const Bytes base = read_file(path);
  const Bytes other = synthetic_file();
  const Stats s = fuzz_base(base, other, /*seed=*/5678, /*n_truncations=*/300, /*n_each=*/250);
  report("stories v1", s, start);
  EXPECT_GE(s.variants, 1000u);
  EXPECT_GT(s.rejected, 0u);
}

}  // namespace
}  // namespace fathom::gguf
