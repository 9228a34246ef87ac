// GGUF container: reader (versions 1, 2, 3; mmap; every count, length, offset, alignment and
// tensor extent validated against the file size) and writer (version 3).
// Spec: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/mapped_file.h"
#include "core/status.h"
#include "core/tensor.h"

namespace fathom::gguf {

enum class ValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6,
  kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};
const char* value_type_name(ValueType t);

// One metadata value. Scalars live in the matching field; arrays keep their element type and
// their elements in `strings` (string arrays), `numbers` (any numeric/bool array, converted to
// double — exact for every integer below 2^53) or `arrays` (array of arrays).
struct Value {
  ValueType type = ValueType::kUint32;
  ValueType elem_type = ValueType::kUint32;  // element type when type == kArray
  int64_t i64 = 0;        // signed/unsigned integer scalars (uint64 above INT64_MAX wraps; see u64)
  uint64_t u64 = 0;       // unsigned integer scalars, exact
  double f64 = 0.0;       // float scalars
  bool b = false;         // bool scalar
  std::string str;        // string scalar
  std::vector<std::string> strings;  // [n] elements of a string array
  std::vector<double> numbers;       // [n] elements of a numeric/bool array
  std::vector<Value> arrays;         // [n] elements of an array of arrays

  size_t array_size() const;  // element count when type == kArray, else 0
  bool is_integer() const;
  bool is_float() const;
  // Human-readable rendering for `fathom inspect` (arrays abbreviated past max_items).
  std::string to_display_string(size_t max_items = 8) const;

  static Value make_string(std::string s);
  static Value make_u32(uint32_t v);
  static Value make_i32(int32_t v);
  static Value make_u64(uint64_t v);
  static Value make_f32(float v);
  static Value make_bool(bool v);
  static Value make_string_array(std::vector<std::string> v);
  static Value make_array(ValueType elem_type, std::vector<double> v);  // numeric arrays
  // The remaining scalar types, and arrays whose elements are themselves arrays.
  static Value make_u8(uint8_t v);
  static Value make_i8(int8_t v);
  static Value make_u16(uint16_t v);
  static Value make_i16(int16_t v);
  static Value make_i64(int64_t v);
  static Value make_f64(double v);
  static Value make_array_of_arrays(std::vector<Value> v);  // each element has type == kArray
};

// Byte alignment of tensor data when a file has no general.alignment key.
inline constexpr size_t kDefaultAlignment = 32;
// Deepest array-of-array nesting the reader accepts (1 = a plain array); guards the stack.
inline constexpr int kMaxArrayDepth = 8;

// llama.cpp's split GGUF convention (gguf-split): a model too large for one file is stored as
// PREFIX-00001-of-0000N.gguf .. PREFIX-0000N-of-0000N.gguf. Every part carries split.no (u16,
// 0-based), split.count (u16) and split.tensors.count (i32, tensors in all parts); only the first
// part carries the model's metadata, and each part has its own tensor data section.
inline constexpr char kSplitNoKey[] = "split.no";
inline constexpr char kSplitCountKey[] = "split.count";
inline constexpr char kSplitTensorsCountKey[] = "split.tensors.count";
inline constexpr int kMaxSplitCount = 1024;  // parts opened at most (the largest GGUFs have ~30)

struct SplitName {
  std::string prefix;  // path without "-00001-of-00003.gguf"
  int split_no = 0;    // 0-based part index (the name counts from 1)
  int split_count = 0;
};
// The path of part split_no (0-based) of split_count: llama.cpp's "%s-%05d-of-%05d.gguf".
std::string split_path(const std::string& prefix, int split_no, int split_count);
// Parses a path that follows the convention; nullopt for any other name.
std::optional<SplitName> parse_split_path(const std::string& path);

struct TensorInfo {
  TensorView view;        // name, dtype, shape, data pointer into the mapped file
  uint64_t offset = 0;    // byte offset relative to the start of the data section
  size_t n_bytes = 0;     // bytes occupied by the tensor data
};

class GgufFile {
 public:
  // Opens and validates; on failure the status names the problem and the byte offset. The first
  // part of a split model opens all its parts: tensors() then lists the tensors of every part.
  // `map`: how every part is brought into memory (mapped, read, locked).
  static Expected<std::unique_ptr<GgufFile>> open(const std::string& path, const MapOptions& map = {});
  static Expected<std::unique_ptr<GgufFile>> parse(std::unique_ptr<MappedFile> file);

  uint32_t version() const { return version_; }
  const std::string& path() const { return file_->path(); }
  size_t file_size() const { return file_->size(); }  // of this file (the first part of a split model)
  uint64_t total_file_size() const;                   // of all parts of a split model
  int split_count() const { return static_cast<int>(parts_.size()) + 1; }
  const uint8_t* file_data() const { return file_->data(); }  // [file_size()] mapped bytes
  bool file_is_mmap() const { return file_->is_mmap(); }      // false for files parsed from memory
  size_t alignment() const { return alignment_; }
  // Absolute offset of the data section (aligned; for a file without tensors that ends before
  // the padding, the file size).
  size_t data_offset() const { return data_offset_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, Value>>& metadata() const { return metadata_; }
  const Value* find(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;     // any integer type
  std::optional<double> get_float(std::string_view key) const;    // any float or integer type
  std::optional<bool> get_bool(std::string_view key) const;
  std::string architecture() const;                               // general.architecture or ""

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;

 private:
  GgufFile() = default;
  friend class GgufParser;  // gguf_reader.cpp fills the fields below while validating
  // gguf_split.cpp: opens parts 2..N of a split model whose first part this is.
  Status attach_split_parts(const MapOptions& map);
  std::unique_ptr<MappedFile> file_;  // the whole file, mapped read-only; tensor data points here
  uint32_t version_ = 0;              // GGUF container version (1..3)
  size_t alignment_ = kDefaultAlignment;  // general.alignment, power of two
  size_t data_offset_ = 0;            // absolute offset of the (aligned) tensor data section
  std::vector<std::pair<std::string, Value>> metadata_;  // key/value pairs, file order
  std::vector<TensorInfo> tensors_;  // tensor infos, file order
  std::map<std::string, size_t, std::less<>> tensor_index_;  // tensor name -> index in tensors_
  // Parts 2..N of a split model, kept open: their tensors (views into their maps) are appended
  // to tensors_. Empty for a single file.
  std::vector<std::unique_ptr<GgufFile>> parts_;
};

class GgufSink;  // byte destination (file or memory) of GgufWriter, internal to gguf_writer.cpp

// Builds a GGUF v3 file. Tensor data is produced at write time by a callback, so large models
// can be written (or quantized) tensor by tensor without holding them all in memory.
class GgufWriter {
 public:
  using TensorFill = std::function<Status(uint8_t* dst, size_t n_bytes)>;

  void set(std::string key, Value value);  // replaces an existing key, keeps insertion order
  void set_string(std::string key, std::string v) { set(std::move(key), Value::make_string(std::move(v))); }
  void set_u32(std::string key, uint32_t v) { set(std::move(key), Value::make_u32(v)); }
  void set_i32(std::string key, int32_t v) { set(std::move(key), Value::make_i32(v)); }
  void set_f32(std::string key, float v) { set(std::move(key), Value::make_f32(v)); }
  void set_bool(std::string key, bool v) { set(std::move(key), Value::make_bool(v)); }
  void set_alignment(size_t alignment) { alignment_ = alignment; }

  // ne[0] innermost, as in TensorView. n_bytes is derived from dtype and shape. A bad shape
  // (not 1..4 positive dims, ne[0] not a multiple of the block size), a name that is empty,
  // longer than 63 bytes or repeated, or a byte count that does not match is reported by write().
  void add_tensor(std::string name, DType dtype, std::vector<int64_t> ne, TensorFill fill);
  void add_tensor_bytes(std::string name, DType dtype, std::vector<int64_t> ne, std::vector<uint8_t> bytes);

  // Writes PATH.tmp.<pid>, syncs it and renames it over path; on error nothing is left behind.
  Status write(const std::string& path) const;
  Expected<std::vector<uint8_t>> write_to_memory() const;  // for tests and fuzzing
  // Writes n_parts files split_path(prefix, i, n_parts) following llama.cpp's split convention:
  // the tensors in order, divided into n_parts runs of nearly equal count (2 <= n_parts <=
  // tensor count); the metadata goes into the first part.
  Status write_split(const std::string& prefix, int n_parts) const;

 private:
  struct PendingTensor {
    std::string name;         // GGUF tensor name, at most 63 bytes (llama.cpp's limit)
    DType dtype;              // block format of the data
    std::vector<int64_t> ne;  // 1..4 extents, ne[0] innermost
    size_t n_bytes;           // data bytes from dtype and shape; 0 if the shape is invalid
    TensorFill fill;          // produces exactly n_bytes bytes of data
  };
  Status write_to(GgufSink& sink) const;  // serializes the whole file into sink
  std::vector<std::pair<std::string, Value>> metadata_;  // key/value pairs, insertion order
  std::vector<PendingTensor> tensors_;                   // tensors in the order they are written
  size_t alignment_ = kDefaultAlignment;                 // tensor data alignment, power of two
};

}  // namespace fathom::gguf
