// GGUF reader. The file is mapped once and parsed in place; every field is bounds-checked
// against the file size before it is read, and every count is checked against the bytes that
// are left before anything is reserved, so a hostile header can cost at most memory linear in
// the file size and never an out-of-bounds read.
#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <numeric>
#include <string_view>
#include <unordered_map>

#include "gguf/gguf.h"
#include "gguf/gguf_format.h"

namespace fathom::gguf {

// Walks the mapped bytes of one file and fills a GgufFile. Error messages name the problem and
// its byte offset; parse() prefixes them with the file path.
class GgufParser {
 public:
  GgufParser(GgufFile& out, const uint8_t* data, size_t size) : out_(out), data_(data), size_(size) {}

  Status run() {
    uint64_t n_tensors = 0;
    uint64_t n_kv = 0;
    FATHOM_RETURN_IF_ERROR(read_header(&n_tensors, &n_kv));
    FATHOM_RETURN_IF_ERROR(read_metadata(n_kv));
    FATHOM_RETURN_IF_ERROR(read_alignment());
    FATHOM_RETURN_IF_ERROR(read_tensor_infos(n_tensors));
    return place_tensor_data();
  }

 private:
  size_t remaining() const { return size_ - pos_; }

  // Bytes of the u32/u64 prefix of counts, string and array lengths and dims.
  size_t count_bytes() const { return version_ == 1 ? 4 : 8; }

  Status truncated(size_t n, const char* what) const {
    return error(ErrorCode::kInvalidFile,
                 strprintf("truncated file: %s needs %zu bytes at offset %zu, but the file ends at %zu", what, n,
                           pos_, size_));
  }

  template <typename T>
  Status read(T* out, const char* what) {
    if (remaining() < sizeof(T)) return truncated(sizeof(T), what);
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::ok();
  }

  // A count, length or dim: u32 in version 1, u64 after.
  Status read_count(uint64_t* out, const char* what) {
    if (version_ != 1) return read(out, what);
    uint32_t v = 0;
    FATHOM_RETURN_IF_ERROR(read(&v, what));
    *out = v;
    return Status::ok();
  }

  // A length-prefixed string, returned as a view into the mapped file.
  Status read_string_view(std::string_view* out, const char* what) {
    const size_t len_offset = pos_;
    uint64_t len = 0;
    FATHOM_RETURN_IF_ERROR(read_count(&len, "string length"));
    if (len > remaining()) {
      return error(ErrorCode::kInvalidFile,
                   strprintf("string length %llu of %s at offset %zu exceeds the %zu bytes left in the file "
                             "(truncated or corrupt)",
                             static_cast<unsigned long long>(len), what, len_offset, remaining()));
    }
    *out = std::string_view(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return Status::ok();
  }

  Status read_string(std::string* out, const char* what) {
    std::string_view view;
    FATHOM_RETURN_IF_ERROR(read_string_view(&view, what));
    out->assign(view);
    return Status::ok();
  }

  Status read_value_type(ValueType* out, const char* what) {
    const size_t at = pos_;
    uint32_t id = 0;
    FATHOM_RETURN_IF_ERROR(read(&id, what));
    if (id > kMaxValueTypeId) {
      return error(ErrorCode::kInvalidFile,
                   strprintf("unknown %s %u at offset %zu (expected 0..%u)", what, id, at, kMaxValueTypeId));
    }
    *out = static_cast<ValueType>(id);
    return Status::ok();
  }

  Status read_header(uint64_t* n_tensors, uint64_t* n_kv);
  Status read_metadata(uint64_t n_kv);
  Status read_value(ValueType type, Value* out, int depth);
  Status read_scalar(ValueType type, Value* out);
  Status read_array(Value* out, int depth);
  Status read_alignment();
  Status read_tensor_infos(uint64_t n_tensors);
  Status read_tensor_info(TensorInfo* info);
  Status place_tensor_data();

  GgufFile& out_;          // receives version, metadata, alignment, tensors
  const uint8_t* data_;    // [size_] bytes of the mapped file
  size_t size_;            // file size in bytes
  size_t pos_ = 0;         // read cursor, always <= size_
  uint32_t version_ = 0;   // container version, decides the width of counts
};

namespace {

// Reservations are capped: a count only proves that its smallest encoding fits in the file, and
// the in-memory form of an element is larger than that (a Value is ~150 bytes, an empty string
// on disk is 8). Past the cap, vectors grow only as elements are actually read.
constexpr size_t kMaxReserve = 1 << 16;

template <typename T>
void reserve_capped(std::vector<T>& v, uint64_t n) {
  v.reserve(static_cast<size_t>(std::min<uint64_t>(n, kMaxReserve)));
}

// Prefixes an error with the item it occurred in ("key 'x'", "tensor #3").
Status in_context(const Status& st, const std::string& context) {
  return error(st.code(), context + ": " + st.message());
}

std::string shape_string(const std::array<int64_t, 4>& ne, int n_dims) {
  std::string s = "[";
  for (int i = 0; i < n_dims; ++i) s += (i ? ", " : "") + std::to_string(ne[static_cast<size_t>(i)]);
  return s + "]";
}

}  // namespace

Status GgufParser::read_header(uint64_t* n_tensors, uint64_t* n_kv) {
  if (size_ < sizeof kMagic || std::memcmp(data_, kMagic, sizeof kMagic) != 0) {
    if (size_ < sizeof kMagic) return truncated(sizeof kMagic, "magic 'GGUF'");
    return error(ErrorCode::kInvalidFile,
                 strprintf("bad magic at offset 0: expected 'GGUF' (47 47 55 46), found %02x %02x %02x %02x; "
                           "not a GGUF file",
                           data_[0], data_[1], data_[2], data_[3]));
  }
  pos_ = sizeof kMagic;
  FATHOM_RETURN_IF_ERROR(read(&version_, "version"));
  // A big-endian file stores a small version number in the high bytes when read little-endian.
  if (version_ != 0 && (version_ & 0xFFFF) == 0) {
    return error(ErrorCode::kUnsupported,
                 strprintf("big-endian GGUF not supported (version field at offset 4 reads 0x%08x); "
                           "convert the file to little-endian",
                           version_));
  }
  if (version_ == 0 || version_ > kMaxVersion) {
    return error(version_ == 0 ? ErrorCode::kInvalidFile : ErrorCode::kUnsupported,
                 strprintf("GGUF version %u at offset 4 is not supported (expected 1..%u)", version_, kMaxVersion));
  }
  out_.version_ = version_;

  FATHOM_RETURN_IF_ERROR(read_count(n_tensors, "tensor count"));
  FATHOM_RETURN_IF_ERROR(read_count(n_kv, "metadata key count"));

  // Smallest possible encodings: a key/value pair is a length prefix, a type and a 1-byte value;
  // a tensor info is a name length, n_dims, one dim, a type and an offset. A count that could not
  // fit in the rest of the file is rejected here, before anything is reserved for it.
  const uint64_t min_kv = count_bytes() + 4 + 1;
  const uint64_t min_tensor = count_bytes() + 4 + count_bytes() + 4 + 8;
  const uint64_t left = remaining();
  if (*n_tensors > left / min_tensor) {
    return error(ErrorCode::kInvalidFile,
                 strprintf("tensor count %llu (at offset 8) cannot fit: that many tensor infos need at least "
                           "%llu bytes each, but only %llu bytes follow the header",
                           static_cast<unsigned long long>(*n_tensors), static_cast<unsigned long long>(min_tensor),
                           static_cast<unsigned long long>(left)));
  }
  if (*n_kv > left / min_kv || *n_kv * min_kv + *n_tensors * min_tensor > left) {
    return error(ErrorCode::kInvalidFile,
                 strprintf("metadata key count %llu (at offset %zu) cannot fit: %llu key/value pairs and %llu tensor "
                           "infos need at least %llu bytes, but only %llu bytes follow the header",
                           static_cast<unsigned long long>(*n_kv), sizeof kMagic + 4 + count_bytes(),
                           static_cast<unsigned long long>(*n_kv), static_cast<unsigned long long>(*n_tensors),
                           static_cast<unsigned long long>(*n_kv * min_kv + *n_tensors * min_tensor),
                           static_cast<unsigned long long>(left)));
  }
  return Status::ok();
}

Status GgufParser::read_metadata(uint64_t n_kv) {
  reserve_capped(out_.metadata_, n_kv);
  // Keys are views into the mapped file, which outlives the parse; value = the key's offset.
  std::unordered_map<std::string_view, size_t> seen;
  for (uint64_t i = 0; i < n_kv; ++i) {
    const size_t key_offset = pos_;
    std::string_view key;
    Status st = read_string_view(&key, "the key");
    if (!st) return in_context(st, strprintf("metadata key #%llu", static_cast<unsigned long long>(i)));
    auto [it, inserted] = seen.emplace(key, key_offset);
    if (!inserted) {
      return error(ErrorCode::kInvalidFile, strprintf("duplicate metadata key '%s' at offset %zu (first at offset %zu)",
                                                      std::string(key).c_str(), key_offset, it->second));
    }
    Value value;
    st = read_value_type(&value.type, "value type");
    if (st) st = read_value(value.type, &value, 0);
    if (!st) return in_context(st, "metadata key '" + std::string(key) + "'");
    out_.metadata_.emplace_back(std::string(key), std::move(value));
  }
  return Status::ok();
}

Status GgufParser::read_value(ValueType type, Value* out, int depth) {
  out->type = type;
  if (type == ValueType::kString) return read_string(&out->str, "the string value");
  if (type == ValueType::kArray) return read_array(out, depth + 1);
  return read_scalar(type, out);
}

Status GgufParser::read_scalar(ValueType type, Value* out) {
  const size_t at = pos_;
  const size_t n = scalar_size(type);
  if (remaining() < n) return truncated(n, value_type_name(type));
  const uint8_t* p = data_ + pos_;
  pos_ += n;
  auto set_signed = [out](int64_t v) { out->i64 = v; out->u64 = static_cast<uint64_t>(v); out->f64 = static_cast<double>(v); };
  auto set_unsigned = [out](uint64_t v) { out->u64 = v; out->i64 = static_cast<int64_t>(v); out->f64 = static_cast<double>(v); };
  switch (type) {
    case ValueType::kUint8: set_unsigned(p[0]); break;
    case ValueType::kInt8: set_signed(static_cast<int8_t>(p[0])); break;
    case ValueType::kUint16: { uint16_t v; std::memcpy(&v, p, n); set_unsigned(v); break; }
    case ValueType::kInt16: { int16_t v; std::memcpy(&v, p, n); set_signed(v); break; }
    case ValueType::kUint32: { uint32_t v; std::memcpy(&v, p, n); set_unsigned(v); break; }
    case ValueType::kInt32: { int32_t v; std::memcpy(&v, p, n); set_signed(v); break; }
    case ValueType::kUint64: { uint64_t v; std::memcpy(&v, p, n); set_unsigned(v); break; }
    case ValueType::kInt64: { int64_t v; std::memcpy(&v, p, n); set_signed(v); break; }
    case ValueType::kFloat32: { float v; std::memcpy(&v, p, n); out->f64 = v; break; }
    case ValueType::kFloat64: { double v; std::memcpy(&v, p, n); out->f64 = v; break; }
    case ValueType::kBool:
      // The spec makes any byte other than 0 or 1 invalid.
      if (p[0] > 1) return error(ErrorCode::kInvalidFile, strprintf("bool value at offset %zu is %u (expected 0 or 1)", at, p[0]));
      out->b = p[0] != 0;
      break;
    case ValueType::kString: case ValueType::kArray: break;  // not scalars; handled by read_value
  }
  return Status::ok();
}

Status GgufParser::read_array(Value* out, int depth) {
  const size_t at = pos_;
  if (depth > kMaxArrayDepth) {
    return error(ErrorCode::kInvalidFile,
                 strprintf("arrays nested deeper than %d levels at offset %zu", kMaxArrayDepth, at));
  }
  out->type = ValueType::kArray;
  FATHOM_RETURN_IF_ERROR(read_value_type(&out->elem_type, "array element type"));
  uint64_t n = 0;
  FATHOM_RETURN_IF_ERROR(read_count(&n, "array length"));

  // Smallest encoding of one element: its scalar size, a string's length prefix, or a nested
  // array's element type and length. Checked before reserving so a hostile length costs nothing.
  const ValueType elem = out->elem_type;
  uint64_t min_elem = scalar_size(elem);
  if (elem == ValueType::kString) min_elem = count_bytes();
  if (elem == ValueType::kArray) min_elem = 4 + count_bytes();
  if (n > remaining() / min_elem) {
    return error(ErrorCode::kInvalidFile,
                 strprintf("array length %llu at offset %zu: %llu %s elements need at least %llu bytes each, but only "
                           "%zu bytes are left in the file (truncated or corrupt)",
                           static_cast<unsigned long long>(n), at + 4, static_cast<unsigned long long>(n),
                           value_type_name(elem), static_cast<unsigned long long>(min_elem), remaining()));
  }
  const size_t count = static_cast<size_t>(n);
  if (elem == ValueType::kString) {
    reserve_capped(out->strings, n);
    for (size_t i = 0; i < count; ++i) {
      FATHOM_RETURN_IF_ERROR(read_string(&out->strings.emplace_back(), "an array element"));
    }
  } else if (elem == ValueType::kArray) {
    reserve_capped(out->arrays, n);
    for (size_t i = 0; i < count; ++i) FATHOM_RETURN_IF_ERROR(read_array(&out->arrays.emplace_back(), depth + 1));
  } else {
    // Numeric and bool arrays are held as doubles (exact for integers below 2^53). Their bytes
    // were checked to be present in full, so sizing up front is safe.
    out->numbers.resize(count);
    Value scalar;
    for (size_t i = 0; i < count; ++i) {
      FATHOM_RETURN_IF_ERROR(read_scalar(elem, &scalar));
      out->numbers[i] = elem == ValueType::kBool ? (scalar.b ? 1.0 : 0.0) : scalar.f64;
    }
  }
  return Status::ok();
}

Status GgufParser::read_alignment() {
  const Value* v = out_.find(kAlignmentKey);
  if (!v) return Status::ok();
  // llama.cpp requires general.alignment to be a u32; so do we, so files agree across readers.
  if (v->type != ValueType::kUint32) {
    return error(ErrorCode::kInvalidFile,
                 strprintf("%s must be a u32, found %s", kAlignmentKey, value_type_name(v->type)));
  }
  if (!is_power_of_two(v->u64)) {
    return error(ErrorCode::kInvalidFile, strprintf("%s must be a nonzero power of two, found %llu", kAlignmentKey,
                                                    static_cast<unsigned long long>(v->u64)));
  }
  out_.alignment_ = static_cast<size_t>(v->u64);
  return Status::ok();
}

Status GgufParser::read_tensor_infos(uint64_t n_tensors) {
  reserve_capped(out_.tensors_, n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo info;
    const size_t info_offset = pos_;
    Status st = read_tensor_info(&info);
    if (!st) {
      std::string context = strprintf("tensor #%llu", static_cast<unsigned long long>(i));
      if (!info.view.name.empty()) context += " '" + info.view.name + "'";
      return in_context(st, context);
    }
    auto [it, inserted] = out_.tensor_index_.emplace(info.view.name, out_.tensors_.size());
    if (!inserted) {
      return error(ErrorCode::kInvalidFile, strprintf("duplicate tensor name '%s' at offset %zu (tensor #%llu and #%zu)",
                                                      info.view.name.c_str(), info_offset,
                                                      static_cast<unsigned long long>(i), it->second));
    }
    out_.tensors_.push_back(std::move(info));
  }
  return Status::ok();
}

Status GgufParser::read_tensor_info(TensorInfo* info) {
  TensorView& view = info->view;
  FATHOM_RETURN_IF_ERROR(read_string(&view.name, "the tensor name"));

  size_t at = pos_;
  uint32_t n_dims = 0;
  FATHOM_RETURN_IF_ERROR(read(&n_dims, "n_dims"));
  if (n_dims < 1 || n_dims > 4) {
    return error(ErrorCode::kInvalidFile, strprintf("n_dims %u at offset %zu (expected 1..4)", n_dims, at));
  }
  view.n_dims = static_cast<int>(n_dims);
  int64_t n_elements = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    at = pos_;
    uint64_t dim = 0;
    FATHOM_RETURN_IF_ERROR(read_count(&dim, "dimension"));
    if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return error(ErrorCode::kInvalidFile,
                   strprintf("dimension %u is %llu at offset %zu (dimensions must be positive and fit in int64)", d,
                             static_cast<unsigned long long>(dim), at));
    }
    view.ne[d] = static_cast<int64_t>(dim);
    if (__builtin_mul_overflow(n_elements, view.ne[d], &n_elements)) {
      return error(ErrorCode::kInvalidFile, strprintf("shape %s: element count overflows int64 (dimension %u at offset %zu)",
                                                      shape_string(view.ne, static_cast<int>(d + 1)).c_str(), d, at));
    }
  }

  at = pos_;
  uint32_t type_id = 0;
  FATHOM_RETURN_IF_ERROR(read(&type_id, "tensor type"));
  const std::optional<DTypeTraits> traits = dtype_traits(type_id);
  if (!traits) {
    return error(ErrorCode::kUnsupported,
                 strprintf("unknown tensor type id %u at offset %zu (not a ggml type this build supports)", type_id, at));
  }
  view.dtype = static_cast<DType>(type_id);
  if (view.ne[0] % traits->block_size != 0) {
    return error(ErrorCode::kInvalidFile,
                 strprintf("shape %s: ne[0] = %lld is not a multiple of the %s block size %lld",
                           shape_string(view.ne, view.n_dims).c_str(), static_cast<long long>(view.ne[0]),
                           traits->name, static_cast<long long>(traits->block_size)));
  }
  // n_bytes = blocks per row * bytes per block * rows; the element count fits in int64, but the
  // byte count of a huge shape can still overflow size_t.
  const uint64_t blocks = static_cast<uint64_t>(n_elements / traits->block_size);
  uint64_t n_bytes = 0;
  if (__builtin_mul_overflow(blocks, static_cast<uint64_t>(traits->type_size), &n_bytes) ||
      n_bytes > std::numeric_limits<size_t>::max()) {
    return error(ErrorCode::kInvalidFile, strprintf("shape %s of type %s: byte size overflows",
                                                    shape_string(view.ne, view.n_dims).c_str(), traits->name));
  }
  info->n_bytes = static_cast<size_t>(n_bytes);

  at = pos_;
  FATHOM_RETURN_IF_ERROR(read(&info->offset, "tensor data offset"));
  if (info->offset % out_.alignment_ != 0) {
    return error(ErrorCode::kInvalidFile,
                 strprintf("data offset %llu (at offset %zu) is not a multiple of the alignment %zu",
                           static_cast<unsigned long long>(info->offset), at, out_.alignment_));
  }
  return Status::ok();
}

Status GgufParser::place_tensor_data() {
  uint64_t data_offset = 0;
  if (!align_up(pos_, out_.alignment_, &data_offset)) {
    return error(ErrorCode::kInvalidFile, strprintf("data section offset overflows (header ends at %zu, alignment %zu)",
                                                    pos_, out_.alignment_));
  }
  // A file without tensors may end right after the header, before the padding; its (empty)
  // data section is then placed at the end of the file so file_size() - data_offset() is safe.
  out_.data_offset_ = static_cast<size_t>(std::min<uint64_t>(data_offset, size_));
  if (out_.tensors_.empty()) return Status::ok();
  if (data_offset > size_) {
    return error(ErrorCode::kInvalidFile,
                 strprintf("data section would start at offset %llu (header ends at %zu, alignment %zu), past the end "
                           "of the file (size %zu)",
                           static_cast<unsigned long long>(data_offset), pos_, out_.alignment_, size_));
  }
  const uint64_t data_bytes = size_ - data_offset;
  for (TensorInfo& t : out_.tensors_) {
    if (t.offset > data_bytes || t.n_bytes > data_bytes - t.offset) {
      const unsigned long long abs_offset =
          t.offset > std::numeric_limits<uint64_t>::max() - data_offset ? t.offset : t.offset + data_offset;
      return error(ErrorCode::kInvalidFile,
                   strprintf("tensor '%s' data [offset %llu, %zu bytes] extends past end of file (size %zu)",
                             t.view.name.c_str(), abs_offset, t.n_bytes, size_));
    }
    t.view.data = data_ + data_offset + t.offset;
  }
  // Tensors must not share bytes: a weight written in place (quantize, convert) would corrupt
  // another. Sort by offset and compare neighbours.
  std::vector<size_t> order(out_.tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return out_.tensors_[a].offset < out_.tensors_[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const TensorInfo& prev = out_.tensors_[order[i - 1]];
    const TensorInfo& next = out_.tensors_[order[i]];
    if (prev.offset + prev.n_bytes > next.offset) {
      return error(ErrorCode::kInvalidFile,
                   strprintf("tensor '%s' data [offset %llu, %zu bytes] overlaps tensor '%s' at offset %llu",
                             prev.view.name.c_str(), static_cast<unsigned long long>(data_offset + prev.offset),
                             prev.n_bytes, next.view.name.c_str(),
                             static_cast<unsigned long long>(data_offset + next.offset)));
    }
  }
  return Status::ok();
}

Expected<std::unique_ptr<GgufFile>> GgufFile::open(const std::string& path, const MapOptions& map) {
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::open(path, map));
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf, parse(std::move(file)));
  FATHOM_RETURN_IF_ERROR(gguf->attach_split_parts(map));
  return gguf;
}

Expected<std::unique_ptr<GgufFile>> GgufFile::parse(std::unique_ptr<MappedFile> file) {
  if (!file) return error(ErrorCode::kInvalidArgument, "GgufFile::parse: no file");
  std::unique_ptr<GgufFile> gguf(new GgufFile());
  gguf->file_ = std::move(file);
  GgufParser parser(*gguf, gguf->file_->data(), gguf->file_->size());
  Status st;
  try {
    st = parser.run();
  } catch (const std::bad_alloc&) {
    // Memory use is linear in the bytes parsed, but a huge header can still exhaust a small box.
    st = error(ErrorCode::kOutOfMemory, "out of memory while parsing the GGUF header");
  }
  if (!st) return error(st.code(), gguf->file_->path() + ": " + st.message());
  return gguf;
}

const Value* GgufFile::find(std::string_view key) const {
  for (const auto& [k, v] : metadata_)
    if (k == key) return &v;
  return nullptr;
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (!v || v->type != ValueType::kString) return std::nullopt;
  return v->str;
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const Value* v = find(key);
  if (!v || !v->is_integer()) return std::nullopt;
  // A uint64 above INT64_MAX has no int64 value; refuse rather than wrap.
  if (v->type == ValueType::kUint64 && v->u64 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return std::nullopt;
  return v->i64;
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const Value* v = find(key);
  if (!v || !(v->is_float() || v->is_integer())) return std::nullopt;
  return v->f64;
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const Value* v = find(key);
  if (!v || v->type != ValueType::kBool) return std::nullopt;
  return v->b;
}

std::string GgufFile::architecture() const { return get_string("general.architecture").value_or(""); }

const TensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace fathom::gguf
