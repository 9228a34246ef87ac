// GGUF reader/writer: writer -> reader round trips for every value type and dtype, the real
// shared files (a v1 model, v3 vocab-only files), and hand-built hostile headers that must each
// be rejected with a message naming the problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "gguf/gguf.h"

namespace fathom::gguf {
namespace {

// ---------------------------------------------------------------------------------------------
// Helpers

Expected<std::unique_ptr<GgufFile>> parse_bytes(const std::vector<uint8_t>& bytes, const std::string& name = "test.gguf") {
  return GgufFile::parse(MappedFile::from_bytes(bytes.data(), bytes.size(), name));
}

std::unique_ptr<GgufFile> round_trip(const GgufWriter& w) {
  Expected<std::vector<uint8_t>> bytes = w.write_to_memory();
  EXPECT_TRUE(bytes.has_value()) << bytes.status().to_string();
  if (!bytes) return nullptr;
  auto f = parse_bytes(*bytes);
  EXPECT_TRUE(f.has_value()) << f.status().to_string();
  return f ? std::move(f).value() : nullptr;
}

// Hand-assembles GGUF bytes field by field, so tests can write headers the writer refuses to
// produce. `version` decides the width of counts, lengths and dims (u32 in v1, else u64).
class RawGguf {
 public:
  explicit RawGguf(uint32_t version = 3, uint64_t n_tensors = 0, uint64_t n_kv = 0) : version_(version) {
    bytes_ = {'G', 'G', 'U', 'F'};
    u32(version);
    count(n_tensors);
    count(n_kv);
  }
  RawGguf& u8(uint8_t v) { return raw(&v, 1); }
  RawGguf& u32(uint32_t v) { return raw(&v, 4); }
  RawGguf& u64(uint64_t v) { return raw(&v, 8); }
  RawGguf& count(uint64_t v) { return version_ == 1 ? u32(static_cast<uint32_t>(v)) : u64(v); }
  RawGguf& str(const std::string& s) {
    count(s.size());
    return raw(s.data(), s.size());
  }
  // Key + type id; the value follows.
  RawGguf& key(const std::string& k, ValueType t) { return str(k).u32(static_cast<uint32_t>(t)); }
  RawGguf& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) count(d);
    return u32(type).u64(offset);
  }
  RawGguf& pad_to(size_t alignment) {
    while (bytes_.size() % alignment) bytes_.push_back(0);
    return *this;
  }
  RawGguf& zeros(size_t n) {
    bytes_.resize(bytes_.size() + n, 0);
    return *this;
  }
  RawGguf& raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  uint32_t version_;            // container version being built
  std::vector<uint8_t> bytes_;  // the file so far
};

// Parses and expects a failure whose message contains `word` (and the file name).
void expect_rejected(const std::vector<uint8_t>& bytes, const std::string& word) {
  auto f = parse_bytes(bytes, "hostile.gguf");
  ASSERT_FALSE(f.has_value()) << "expected an error mentioning '" << word << "'";
  const std::string msg = f.status().to_string();
  EXPECT_NE(msg.find(word), std::string::npos) << "message: " << msg;
  EXPECT_NE(msg.find("hostile.gguf"), std::string::npos) << "message: " << msg;
}

std::string shared_path(const std::string& rel) { return std::string(FATHOM_SHARED_DIR) + "/" + rel; }

// ---------------------------------------------------------------------------------------------
// Values

TEST(GgufValue, DisplayAbbreviatesArraysAndStrings) {
  std::vector<double> ids(32000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<double>(i + 1);
  EXPECT_EQ(Value::make_array(ValueType::kInt32, ids).to_display_string(3), "[1, 2, 3, ... (32000 items)]");
  EXPECT_EQ(Value::make_array(ValueType::kInt32, {1, 2}).to_display_string(3), "[1, 2]");
  EXPECT_EQ(Value::make_string_array({"a", "b\n", "c"}).to_display_string(2), "[\"a\", \"b\\n\", ... (3 items)]");
  EXPECT_EQ(Value::make_f32(1e-5f).to_display_string(), "1e-05");
  EXPECT_EQ(Value::make_f32(10000.0f).to_display_string(), "10000");
  EXPECT_EQ(Value::make_u64(std::numeric_limits<uint64_t>::max()).to_display_string(), "18446744073709551615");
  EXPECT_EQ(Value::make_i32(-7).to_display_string(), "-7");
  EXPECT_EQ(Value::make_bool(true).to_display_string(), "true");
  EXPECT_EQ(Value::make_array(ValueType::kBool, {1, 0}).to_display_string(), "[true, false]");
  const std::string long_string(5000, 'x');
  const std::string shown = Value::make_string(long_string).to_display_string();
  EXPECT_LT(shown.size(), 200u);
  EXPECT_NE(shown.find("(5000 bytes)"), std::string::npos) << shown;
  Value nested = Value::make_array_of_arrays({Value::make_array(ValueType::kUint8, {1, 2}), Value::make_string_array({"x"})});
  EXPECT_EQ(nested.to_display_string(), "[[1, 2], [\"x\"]]");
  EXPECT_EQ(nested.array_size(), 2u);
}

TEST(GgufValue, TypeNames) {
  EXPECT_STREQ(value_type_name(ValueType::kUint8), "u8");
  EXPECT_STREQ(value_type_name(ValueType::kString), "string");
  EXPECT_STREQ(value_type_name(ValueType::kFloat64), "f64");
  EXPECT_STREQ(value_type_name(static_cast<ValueType>(99)), "unknown");
}

// ---------------------------------------------------------------------------------------------
// Writer -> reader round trips

TEST(GgufRoundTrip, EveryScalarType) {
  GgufWriter w;
  w.set("u8", Value::make_u8(250));
  w.set("i8", Value::make_i8(-120));
  w.set("u16", Value::make_u16(65000));
  w.set("i16", Value::make_i16(-32000));
  w.set_u32("u32", 4000000000u);
  w.set_i32("i32", -2000000000);
  w.set_f32("f32", 0.1f);
  w.set_bool("bool_true", true);
  w.set_bool("bool_false", false);
  w.set_string("string", std::string("h\xC3\xA9llo\0world", 12));
  w.set("u64", Value::make_u64(std::numeric_limits<uint64_t>::max()));
  w.set("i64", Value::make_i64(std::numeric_limits<int64_t>::min()));
  w.set("f64", Value::make_f64(3.141592653589793));
  w.set_string("empty", "");
  auto f = round_trip(w);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->version(), 3u);
  ASSERT_EQ(f->metadata().size(), 14u);
  EXPECT_EQ(f->metadata()[0].first, "u8");  // file order = insertion order
  EXPECT_EQ(f->metadata()[13].first, "empty");

  EXPECT_EQ(f->find("u8")->type, ValueType::kUint8);
  EXPECT_EQ(f->get_int("u8"), 250);
  EXPECT_EQ(f->get_int("i8"), -120);
  EXPECT_EQ(f->get_int("u16"), 65000);
  EXPECT_EQ(f->get_int("i16"), -32000);
  EXPECT_EQ(f->get_int("u32"), 4000000000LL);
  EXPECT_EQ(f->get_int("i32"), -2000000000);
  EXPECT_EQ(f->find("u64")->u64, std::numeric_limits<uint64_t>::max());
  EXPECT_FALSE(f->get_int("u64").has_value());  // above INT64_MAX: no int64 value
  EXPECT_EQ(f->get_int("i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f->find("f32")->type, ValueType::kFloat32);
  EXPECT_EQ(f->get_float("f32"), static_cast<double>(0.1f));
  EXPECT_EQ(f->get_float("f64"), 3.141592653589793);
  EXPECT_EQ(f->get_float("i32"), -2000000000.0);  // integers read as floats too
  EXPECT_EQ(f->get_bool("bool_true"), true);
  EXPECT_EQ(f->get_bool("bool_false"), false);
  EXPECT_EQ(f->get_string("string"), std::string("h\xC3\xA9llo\0world", 12));
  EXPECT_EQ(f->get_string("empty"), "");

  // Wrong-type and missing lookups are empty, not errors.
  EXPECT_FALSE(f->get_int("string").has_value());
  EXPECT_FALSE(f->get_string("u32").has_value());
  EXPECT_FALSE(f->get_bool("u8").has_value());
  EXPECT_FALSE(f->get_float("bool_true").has_value());
  EXPECT_EQ(f->find("missing"), nullptr);
  EXPECT_EQ(f->architecture(), "");
  EXPECT_TRUE(f->tensors().empty());
}

TEST(GgufRoundTrip, ArraysAndNestedArrays) {
  GgufWriter w;
  const ValueType numeric[] = {ValueType::kUint8,  ValueType::kInt8,   ValueType::kUint16, ValueType::kInt16,
                               ValueType::kUint32, ValueType::kInt32,  ValueType::kFloat32, ValueType::kBool,
                               ValueType::kUint64, ValueType::kInt64, ValueType::kFloat64};
  auto sample = [](ValueType t) -> std::vector<double> {
    switch (t) {
      case ValueType::kUint8: return {0, 1, 255};
      case ValueType::kInt8: return {-128, 0, 127};
      case ValueType::kUint16: return {0, 65535};
      case ValueType::kInt16: return {-32768, 32767};
      case ValueType::kUint32: return {0, 4294967295.0};
      case ValueType::kInt32: return {-2147483648.0, 2147483647.0};
      case ValueType::kFloat32: return {0.5, -1.25, 1e-5f};
      case ValueType::kBool: return {1, 0, 1};
      case ValueType::kUint64: return {0, 9007199254740992.0};
      case ValueType::kInt64: return {-9007199254740992.0, 42};
      default: return {3.141592653589793, -2.5e300};
    }
  };
  for (ValueType t : numeric) w.set(std::string("arr.") + value_type_name(t), Value::make_array(t, sample(t)));
  w.set("arr.string", Value::make_string_array({"<unk>", "", "\xE2\x96\x81the"}));
  w.set("arr.empty", Value::make_array(ValueType::kInt32, {}));
  w.set("arr.nested", Value::make_array_of_arrays({Value::make_array(ValueType::kInt32, {1, 2, 3}),
                                                   Value::make_string_array({"a", "b"}),
                                                   Value::make_array_of_arrays({Value::make_array(ValueType::kFloat32, {0.25})})}));
  auto f = round_trip(w);
  ASSERT_TRUE(f);
  for (ValueType t : numeric) {
    const Value* v = f->find(std::string("arr.") + value_type_name(t));
    ASSERT_NE(v, nullptr) << value_type_name(t);
    EXPECT_EQ(v->type, ValueType::kArray);
    EXPECT_EQ(v->elem_type, t);
    std::vector<double> expect = sample(t);
    if (t == ValueType::kFloat32)
      for (double& x : expect) x = static_cast<float>(x);
    EXPECT_EQ(v->numbers, expect) << value_type_name(t);
    EXPECT_EQ(v->array_size(), expect.size());
  }
  const Value* s = f->find("arr.string");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->elem_type, ValueType::kString);
  EXPECT_EQ(s->strings, (std::vector<std::string>{"<unk>", "", "\xE2\x96\x81the"}));
  EXPECT_EQ(f->find("arr.empty")->array_size(), 0u);

  const Value* n = f->find("arr.nested");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->elem_type, ValueType::kArray);
  ASSERT_EQ(n->arrays.size(), 3u);
  EXPECT_EQ(n->arrays[0].elem_type, ValueType::kInt32);
  EXPECT_EQ(n->arrays[0].numbers, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(n->arrays[1].strings, (std::vector<std::string>{"a", "b"}));
  ASSERT_EQ(n->arrays[2].arrays.size(), 1u);
  EXPECT_EQ(n->arrays[2].arrays[0].numbers, (std::vector<double>{0.25}));
}

TEST(GgufRoundTrip, EveryDTypeShapeSizeAndOffset) {
  GgufWriter w;
  w.set_string("general.architecture", "test");
  struct Expect {
    std::string name;
    DType dtype;
    std::vector<int64_t> ne;
    size_t n_bytes;
  };
  std::vector<Expect> expected;
  for (uint32_t id = 0; id < 64; ++id) {
    const std::optional<DTypeTraits> tr = dtype_traits(id);
    if (!tr) continue;
    Expect e{std::string("t.") + tr->name, static_cast<DType>(id), {tr->block_size * 2, 3, 1, 2}, 0};
    e.n_bytes = 2 * tr->type_size * 3 * 2;
    // Distinct bytes per tensor, so misplaced data is caught.
    std::vector<uint8_t> bytes(e.n_bytes);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(id * 31 + i);
    w.add_tensor_bytes(e.name, e.dtype, e.ne, bytes);
    expected.push_back(e);
  }
  ASSERT_GE(expected.size(), 20u);
  auto f = round_trip(w);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->architecture(), "test");
  ASSERT_EQ(f->tensors().size(), expected.size());
  EXPECT_EQ(f->data_offset() % 32, 0u);
  uint64_t next_offset = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const TensorInfo& t = f->tensors()[i];
    const Expect& e = expected[i];
    SCOPED_TRACE(e.name);
    EXPECT_EQ(t.view.name, e.name);
    EXPECT_EQ(t.view.dtype, e.dtype);
    EXPECT_EQ(t.view.n_dims, 4);
    EXPECT_EQ(t.view.ne[0], e.ne[0]);
    EXPECT_EQ(t.view.ne[1], 3);
    EXPECT_EQ(t.view.ne[3], 2);
    EXPECT_EQ(t.n_bytes, e.n_bytes);
    EXPECT_EQ(t.view.n_bytes(), e.n_bytes);
    EXPECT_EQ(t.offset, next_offset);  // packed in order, each at an aligned offset
    EXPECT_EQ(t.offset % 32, 0u);
    next_offset = (t.offset + t.n_bytes + 31) / 32 * 32;
    const auto* data = static_cast<const uint8_t*>(t.view.data);
    const uint32_t id = static_cast<uint32_t>(e.dtype);
    bool same = true;
    for (size_t b = 0; b < e.n_bytes; ++b) same &= data[b] == static_cast<uint8_t>(id * 31 + b);
    EXPECT_TRUE(same);
    EXPECT_EQ(f->find_tensor(e.name), &t);
  }
  EXPECT_EQ(f->find_tensor("nope"), nullptr);
  EXPECT_EQ(f->data_offset() + next_offset, f->file_size());  // the last tensor is padded too
}

TEST(GgufRoundTrip, FillCallbackAndShapes) {
  GgufWriter w;
  w.add_tensor("vec", DType::F32, {5}, [](uint8_t* dst, size_t n) {
    EXPECT_EQ(n, 20u);
    for (size_t i = 0; i < 5; ++i) {
      const float v = static_cast<float>(i) * 0.5f;
      std::memcpy(dst + 4 * i, &v, 4);
    }
    return Status::ok();
  });
  w.add_tensor_bytes("mat", DType::F16, {2, 3}, std::vector<uint8_t>(12, 7));
  auto f = round_trip(w);
  ASSERT_TRUE(f);
  const TensorInfo* vec = f->find_tensor("vec");
  ASSERT_NE(vec, nullptr);
  EXPECT_EQ(vec->view.n_dims, 1);
  EXPECT_EQ(vec->view.shape_string(), "[5]");
  EXPECT_EQ(static_cast<const float*>(vec->view.data)[4], 2.0f);
  const TensorInfo* mat = f->find_tensor("mat");
  ASSERT_NE(mat, nullptr);
  EXPECT_EQ(mat->view.shape_string(), "[2, 3]");
  EXPECT_EQ(mat->offset, 32u);
}

TEST(GgufWriter, AlignmentKeyOnlyWhenNotDefault) {
  GgufWriter w;
  w.set_string("general.architecture", "x");
  w.add_tensor_bytes("a", DType::F32, {3}, std::vector<uint8_t>(12, 1));
  w.add_tensor_bytes("b", DType::F32, {3}, std::vector<uint8_t>(12, 2));
  auto f = round_trip(w);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->find("general.alignment"), nullptr);
  EXPECT_EQ(f->alignment(), 32u);

  w.set_alignment(64);
  f = round_trip(w);
  ASSERT_TRUE(f);
  ASSERT_NE(f->find("general.alignment"), nullptr);
  EXPECT_EQ(f->find("general.alignment")->type, ValueType::kUint32);
  EXPECT_EQ(f->get_int("general.alignment"), 64);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->data_offset() % 64, 0u);
  EXPECT_EQ(f->find_tensor("b")->offset, 64u);

  // Setting the key is the same as set_alignment, and keeps its position.
  GgufWriter w2;
  w2.set_u32("general.alignment", 16);
  w2.set_string("general.architecture", "x");
  w2.add_tensor_bytes("a", DType::F32, {3}, std::vector<uint8_t>(12, 1));
  f = round_trip(w2);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->metadata()[0].first, "general.alignment");
  EXPECT_EQ(f->alignment(), 16u);
}

TEST(GgufWriter, SetReplacesInPlace) {
  GgufWriter w;
  w.set_string("a", "1");
  w.set_string("b", "2");
  w.set_u32("a", 3);
  auto f = round_trip(w);
  ASSERT_TRUE(f);
  ASSERT_EQ(f->metadata().size(), 2u);
  EXPECT_EQ(f->metadata()[0].first, "a");
  EXPECT_EQ(f->get_int("a"), 3);
  EXPECT_EQ(f->metadata()[1].first, "b");
}

TEST(GgufWriter, RejectsBadInputAtWriteTime) {
  auto write_error = [](const GgufWriter& w) {
    auto bytes = w.write_to_memory();
    EXPECT_FALSE(bytes.has_value());
    return bytes.status().to_string();
  };
  {
    GgufWriter w;
    w.add_tensor_bytes("q", DType::Q4_0, {48, 2}, std::vector<uint8_t>(36));
    EXPECT_NE(write_error(w).find("block size"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_tensor_bytes("x", DType::F32, {4}, std::vector<uint8_t>(15));
    const std::string msg = write_error(w);
    EXPECT_NE(msg.find("'x'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("needs 16"), std::string::npos) << msg;
  }
  {
    GgufWriter w;
    w.add_tensor_bytes("x", DType::F32, {4, 0}, {});
    EXPECT_NE(write_error(w).find("positive"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_tensor_bytes("x", DType::F32, {1, 1, 1, 1, 1}, std::vector<uint8_t>(4));
    EXPECT_NE(write_error(w).find("dimensions"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_tensor_bytes("x", DType::F32, {1}, std::vector<uint8_t>(4));
    w.add_tensor_bytes("x", DType::F32, {1}, std::vector<uint8_t>(4));
    EXPECT_NE(write_error(w).find("duplicate"), std::string::npos);
  }
  {
    GgufWriter w;
    w.set_alignment(48);
    EXPECT_NE(write_error(w).find("power of two"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_tensor("x", DType::F32, {1}, [](uint8_t*, size_t) { return error(ErrorCode::kIo, "disk on fire"); });
    EXPECT_NE(write_error(w).find("disk on fire"), std::string::npos);
  }
  {
    GgufWriter w;
    w.set("bad", Value::make_array(ValueType::kUint8, {256}));
    EXPECT_NE(write_error(w).find("does not fit"), std::string::npos);
  }
}

TEST(GgufWriter, WritesFileAtomically) {
  const std::string dir = std::string(FATHOM_TEST_TMP) + "/gguf_writer_test";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/model.gguf";
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.add_tensor_bytes("w", DType::F32, {2}, std::vector<uint8_t>(8, 9));
  ASSERT_TRUE(w.write(path).is_ok());
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.has_value()) << f.status().to_string();
  EXPECT_EQ((*f)->architecture(), "llama");
  EXPECT_EQ((*f)->path(), path);
  size_t n_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) n_files += entry.is_regular_file();
  EXPECT_EQ(n_files, 1u);  // no temporary left behind

  // A failing write leaves neither the target nor a temporary.
  GgufWriter bad;
  bad.add_tensor_bytes("w", DType::F32, {2}, std::vector<uint8_t>(3));
  const std::string bad_path = dir + "/bad.gguf";
  EXPECT_FALSE(bad.write(bad_path).is_ok());
  EXPECT_FALSE(std::filesystem::exists(bad_path));
  n_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) n_files += entry.is_regular_file();
  EXPECT_EQ(n_files, 1u);
  std::filesystem::remove_all(dir);
}

TEST(GgufFileTest, OpenMissingFileIsNotFound) {
  auto f = GgufFile::open("/nonexistent/model.gguf");
  ASSERT_FALSE(f.has_value());
  EXPECT_EQ(f.status().code(), ErrorCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// Older versions and the shared real files

TEST(GgufVersions, ReadsVersion1And2) {
  for (uint32_t version : {1u, 2u}) {
    SCOPED_TRACE(version);
    RawGguf g(version, 1, 2);
    g.key("general.architecture", ValueType::kString).str("llama");
    g.key("tokens", ValueType::kArray).u32(static_cast<uint32_t>(ValueType::kString)).count(2).str("a").str("bc");
    g.tensor("w", {4, 2}, 0, 0).pad_to(32).zeros(32);
    auto f = parse_bytes(g.bytes());
    ASSERT_TRUE(f.has_value()) << f.status().to_string();
    EXPECT_EQ((*f)->version(), version);
    EXPECT_EQ((*f)->architecture(), "llama");
    EXPECT_EQ((*f)->find("tokens")->strings, (std::vector<std::string>{"a", "bc"}));
    const TensorInfo* w = (*f)->find_tensor("w");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->view.shape_string(), "[4, 2]");
    EXPECT_EQ(w->n_bytes, 32u);
  }
}

TEST(GgufSharedFiles, StoriesV1Model) {
  const std::string path = shared_path("models/tinyllamas-stories-260k-f32.gguf");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "missing " << path;
  auto opened = GgufFile::open(path);
  ASSERT_TRUE(opened.has_value()) << opened.status().to_string();
  const GgufFile& f = **opened;
  EXPECT_EQ(f.version(), 1u);
  EXPECT_EQ(f.architecture(), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 5);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 64);
  EXPECT_EQ(f.get_int("llama.feed_forward_length"), 172);
  EXPECT_EQ(f.get_int("llama.attention.head_count"), 8);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(f.get_int("llama.context_length"), 512);
  EXPECT_EQ(f.tensors().size(), 48u);  // token_embd, output_norm, output + 5 layers x 9
  const Value* tokens = f.find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->elem_type, ValueType::kString);
  EXPECT_EQ(tokens->array_size(), 512u);

  const TensorInfo* embd = f.find_tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->view.dtype, DType::F32);
  EXPECT_EQ(embd->view.n_dims, 2);
  EXPECT_EQ(embd->view.ne[0], 64);
  EXPECT_EQ(embd->view.ne[1], 512);
  EXPECT_EQ(embd->n_bytes, 64u * 512u * 4u);

  std::set<std::string> layers;
  int64_t n_params = 0;
  const auto* base = static_cast<const uint8_t*>(f.tensors()[0].view.data) - f.data_offset() - f.tensors()[0].offset;
  for (const TensorInfo& t : f.tensors()) {
    EXPECT_EQ(t.view.dtype, DType::F32) << t.view.name;
    n_params += t.view.n_elements();
    const auto* p = static_cast<const uint8_t*>(t.view.data);
    EXPECT_GE(p, base + f.data_offset());
    EXPECT_LE(p + t.n_bytes, base + f.file_size());
    if (t.view.name.rfind("blk.", 0) == 0) layers.insert(t.view.name.substr(0, t.view.name.find('.', 4)));
  }
  EXPECT_EQ(layers.size(), 5u);
  EXPECT_GT(n_params, 200000);
  EXPECT_LT(n_params, 320000);
}

TEST(GgufSharedFiles, VocabFilesAreV3WithoutTensors) {
  const char* names[] = {"ggml-vocab-deepseek-coder.gguf", "ggml-vocab-deepseek-llm.gguf", "ggml-vocab-qwen2.gguf"};
  for (const char* name : names) {
    SCOPED_TRACE(name);
    const std::string path = shared_path(std::string("testdata/vocab/") + name);
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "missing " << path;
    auto f = GgufFile::open(path);
    ASSERT_TRUE(f.has_value()) << f.status().to_string();
    EXPECT_EQ((*f)->version(), 3u);
    EXPECT_TRUE((*f)->tensors().empty());
    EXPECT_FALSE((*f)->architecture().empty());
    EXPECT_EQ((*f)->get_string("tokenizer.ggml.model"), "gpt2");
    const Value* tokens = (*f)->find("tokenizer.ggml.tokens");
    ASSERT_NE(tokens, nullptr);
    EXPECT_GT(tokens->strings.size(), 30000u);
    const Value* merges = (*f)->find("tokenizer.ggml.merges");
    ASSERT_NE(merges, nullptr);
    EXPECT_GT(merges->strings.size(), 1000u);
  }
}

// ---------------------------------------------------------------------------------------------
// Hostile headers: each must fail cleanly with a message naming the problem.

constexpr uint64_t kHuge = uint64_t{1} << 62;

TEST(GgufHostile, TruncatedAndBadMagic) {
  expect_rejected({}, "truncated");
  expect_rejected({'G', 'G'}, "truncated");
  expect_rejected({'G', 'G', 'U', 'F', 3, 0}, "truncated");
  expect_rejected({'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0}, "tensor count");
  expect_rejected({'G', 'G', 'M', 'L', 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "magic");
  RawGguf g(3, 0, 1);
  g.key("general.architecture", ValueType::kString).str("llama");
  std::vector<uint8_t> bytes = g.bytes();
  bytes.resize(bytes.size() - 2);
  expect_rejected(bytes, "truncated");
  expect_rejected(bytes, "offset");
}

TEST(GgufHostile, VersionAndEndianness) {
  std::vector<uint8_t> be(24, 0);  // magic, then version 3 stored big-endian
  std::memcpy(be.data(), "GGUF", 4);
  be[7] = 3;
  expect_rejected(be, "big-endian GGUF not supported");
  expect_rejected(RawGguf(4).bytes(), "version 4");
  expect_rejected(RawGguf(0).bytes(), "version 0");
}

TEST(GgufHostile, HugeCountsAndLengths) {
  expect_rejected(RawGguf(3, kHuge, 0).bytes(), "tensor count");
  expect_rejected(RawGguf(3, 0, kHuge).bytes(), "key count");
  expect_rejected(RawGguf(1, 0xFFFFFFFFu, 0).bytes(), "tensor count");
  {
    RawGguf g(3, 0, 1);
    g.u64(kHuge).raw("abc", 3).u32(8).zeros(16);
    expect_rejected(g.bytes(), "string length");
  }
  {
    RawGguf g(3, 0, 1);
    g.key("s", ValueType::kString).u64(std::numeric_limits<uint64_t>::max()).zeros(16);
    expect_rejected(g.bytes(), "string length");
  }
  {
    RawGguf g(3, 0, 1);
    g.key("a", ValueType::kArray).u32(static_cast<uint32_t>(ValueType::kUint32)).u64(kHuge).zeros(64);
    expect_rejected(g.bytes(), "array length");
  }
  {
    RawGguf g(3, 0, 1);  // 1-byte elements: a length one past the file end
    g.key("a", ValueType::kArray).u32(static_cast<uint32_t>(ValueType::kUint8)).u64(9).zeros(8);
    expect_rejected(g.bytes(), "array length");
  }
  {
    RawGguf g(3, 0, 1);
    g.key("a", ValueType::kArray).u32(static_cast<uint32_t>(ValueType::kString)).u64(kHuge).zeros(64);
    expect_rejected(g.bytes(), "array length");
  }
}

TEST(GgufHostile, BadValues) {
  {
    RawGguf g(3, 0, 1);
    g.key("x", static_cast<ValueType>(13)).zeros(8);
    expect_rejected(g.bytes(), "unknown value type 13");
  }
  {
    RawGguf g(3, 0, 1);
    g.key("x", ValueType::kArray).u32(77).u64(0).zeros(8);
    expect_rejected(g.bytes(), "unknown array element type 77");
  }
  {
    RawGguf g(3, 0, 1);
    g.key("b", ValueType::kBool).u8(2).zeros(8);
    expect_rejected(g.bytes(), "bool");
  }
  {
    RawGguf g(3, 0, 2);
    g.key("k", ValueType::kUint8).u8(1).key("k", ValueType::kUint8).u8(2);
    expect_rejected(g.bytes(), "duplicate metadata key 'k'");
  }
  {
    RawGguf g(3, 0, 1);  // arrays of arrays nested past the limit
    g.key("deep", ValueType::kArray);
    for (int i = 0; i < kMaxArrayDepth; ++i) g.u32(static_cast<uint32_t>(ValueType::kArray)).u64(1);
    g.u32(static_cast<uint32_t>(ValueType::kUint8)).u64(1).u8(0).zeros(32);
    expect_rejected(g.bytes(), "nested deeper");
  }
  {
    RawGguf g(3, 0, 1);  // exactly at the limit is fine
    g.key("deep", ValueType::kArray);
    for (int i = 0; i < kMaxArrayDepth - 1; ++i) g.u32(static_cast<uint32_t>(ValueType::kArray)).u64(1);
    g.u32(static_cast<uint32_t>(ValueType::kUint8)).u64(1).u8(0);
    EXPECT_TRUE(parse_bytes(g.bytes()).has_value()) << parse_bytes(g.bytes()).status().to_string();
  }
}

TEST(GgufHostile, BadAlignment) {
  for (uint32_t alignment : {0u, 48u, 3u}) {
    RawGguf g(3, 0, 1);
    g.key("general.alignment", ValueType::kUint32).u32(alignment);
    expect_rejected(g.bytes(), "power of two");
  }
  RawGguf g(3, 0, 1);
  g.key("general.alignment", ValueType::kString).str("32");
  expect_rejected(g.bytes(), "general.alignment must be a u32");
}

// One tensor info with the given fields, followed by enough data for a [4] f32 tensor.
std::vector<uint8_t> one_tensor(std::vector<uint64_t> ne, uint32_t type, uint64_t offset = 0, size_t data = 64) {
  RawGguf g(3, 1, 0);
  g.tensor("blk.0.attn_q.weight", std::move(ne), type, offset).pad_to(32).zeros(data);
  return g.bytes();
}

TEST(GgufHostile, BadTensorInfos) {
  expect_rejected(one_tensor({}, 0), "n_dims 0");
  expect_rejected(one_tensor({1, 1, 1, 1, 1, 1, 1, 1, 1}, 0), "n_dims 9");
  expect_rejected(one_tensor({4, 0}, 0), "dimension 1 is 0");
  expect_rejected(one_tensor({std::numeric_limits<uint64_t>::max()}, 0), "dimension 0");
  expect_rejected(one_tensor({uint64_t{1} << 32, uint64_t{1} << 32}, 0), "overflow");
  expect_rejected(one_tensor({uint64_t{1} << 61, 2}, 0), "overflow");  // bytes overflow, not elements
  expect_rejected(one_tensor({4}, 99), "unknown tensor type id 99");
  expect_rejected(one_tensor({4}, 99), "blk.0.attn_q.weight");
  expect_rejected(one_tensor({48}, static_cast<uint32_t>(DType::Q4_0)), "block size");
  expect_rejected(one_tensor({4}, 0, 16), "alignment");
  expect_rejected(one_tensor({1024}, 0),
                  "tensor 'blk.0.attn_q.weight' data [offset 96, 4096 bytes] extends past end of file (size 160)");
  expect_rejected(one_tensor({4}, 0, uint64_t{1} << 63), "past end");
  {
    RawGguf g(3, 2, 0);
    g.tensor("a", {4}, 0, 0).tensor("a", {4}, 0, 32).pad_to(32).zeros(64);
    expect_rejected(g.bytes(), "duplicate tensor name 'a'");
  }
  {
    RawGguf g(3, 2, 0);
    g.tensor("a", {16}, 0, 0).tensor("b", {4}, 0, 32).pad_to(32).zeros(64);
    expect_rejected(g.bytes(), "overlaps");
  }
  {
    RawGguf g(3, 1, 0);  // the header ends exactly where the padding would begin
    g.tensor("a", {4}, 0, 0);
    expect_rejected(g.bytes(), "past the end");
  }
}

TEST(GgufHostile, ErrorCodes) {
  auto f = parse_bytes(one_tensor({4}, 99));
  ASSERT_FALSE(f.has_value());
  EXPECT_EQ(f.status().code(), ErrorCode::kUnsupported);
  f = parse_bytes(one_tensor({4, 0}, 0));
  ASSERT_FALSE(f.has_value());
  EXPECT_EQ(f.status().code(), ErrorCode::kInvalidFile);
}

}  // namespace
}  // namespace fathom::gguf
