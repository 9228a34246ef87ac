// GGUF v3 writer. The header is serialized from the metadata and tensor list; tensor data is
// produced by each tensor's fill callback at write time, so only one tensor is in memory at once.
// Files are written to a temporary name and renamed into place, so a crash or an error never
// leaves a half-written model under the final name.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>

#include "gguf/gguf.h"
#include "gguf/gguf_format.h"

namespace fathom::gguf {

namespace {

// llama.cpp stores tensor names in a fixed char[64] (GGML_MAX_NAME), NUL included.
constexpr size_t kMaxTensorName = 63;

// Bytes of tensor data for a shape, or an error naming the tensor and what is wrong with it.
Expected<size_t> tensor_bytes(const std::string& name, DType dtype, const std::vector<int64_t>& ne) {
  const std::optional<DTypeTraits> tr = dtype_traits(static_cast<uint32_t>(dtype));
  if (!tr) {
    return error(ErrorCode::kInvalidArgument,
                 strprintf("tensor '%s': unknown dtype id %u", name.c_str(), static_cast<uint32_t>(dtype)));
  }
  if (ne.empty() || ne.size() > 4) {
    return error(ErrorCode::kInvalidArgument,
                 strprintf("tensor '%s': %zu dimensions (expected 1..4)", name.c_str(), ne.size()));
  }
  int64_t n_elements = 1;
  for (size_t d = 0; d < ne.size(); ++d) {
    if (ne[d] <= 0) {
      return error(ErrorCode::kInvalidArgument, strprintf("tensor '%s': dimension %zu is %lld (must be positive)",
                                                          name.c_str(), d, static_cast<long long>(ne[d])));
    }
    if (__builtin_mul_overflow(n_elements, ne[d], &n_elements)) {
      return error(ErrorCode::kInvalidArgument, strprintf("tensor '%s': element count overflows int64", name.c_str()));
    }
  }
  if (ne[0] % tr->block_size != 0) {
    return error(ErrorCode::kInvalidArgument,
                 strprintf("tensor '%s': ne[0] = %lld is not a multiple of the %s block size %lld", name.c_str(),
                           static_cast<long long>(ne[0]), tr->name, static_cast<long long>(tr->block_size)));
  }
  size_t n_bytes = 0;
  if (__builtin_mul_overflow(static_cast<size_t>(n_elements / tr->block_size), tr->type_size, &n_bytes)) {
    return error(ErrorCode::kInvalidArgument, strprintf("tensor '%s': byte size overflows", name.c_str()));
  }
  return n_bytes;
}

// Range of integer values a GGUF integer type holds, as doubles (exact: all are powers of two,
// or within 2^53, except the 64-bit bounds, which are compared as doubles on purpose).
bool integer_in_range(ValueType t, double v) {
  switch (t) {
    case ValueType::kUint8: return v >= 0 && v <= 255;
    case ValueType::kInt8: return v >= -128 && v <= 127;
    case ValueType::kUint16: return v >= 0 && v <= 65535;
    case ValueType::kInt16: return v >= -32768 && v <= 32767;
    case ValueType::kUint32: return v >= 0 && v <= 4294967295.0;
    case ValueType::kInt32: return v >= -2147483648.0 && v <= 2147483647.0;
    case ValueType::kUint64: return v >= 0 && v < 18446744073709551616.0;
    case ValueType::kInt64: return v >= -9223372036854775808.0 && v < 9223372036854775808.0;
    default: return false;
  }
}

}  // namespace

// Destination of the serialized bytes. write_tensor lets the memory sink fill in place.
class GgufSink {
 public:
  virtual ~GgufSink() = default;
  virtual Status write(const void* data, size_t n) = 0;

  // Runs fill for n bytes of tensor data and appends them.
  virtual Status write_tensor(const std::string& name, size_t n, const GgufWriter::TensorFill& fill) {
    scratch_.resize(n);
    Status st = fill(scratch_.data(), n);
    if (!st) return error(st.code(), "tensor '" + name + "': " + st.message());
    return write(scratch_.data(), n);
  }

  uint64_t written() const { return written_; }

 protected:
  uint64_t written_ = 0;          // bytes written so far; offsets in the file are derived from it
  std::vector<uint8_t> scratch_;  // [n_bytes] of the largest tensor so far, reused across tensors
};

namespace {

class MemorySink final : public GgufSink {
 public:
  Status write(const void* data, size_t n) override {
    const auto* p = static_cast<const uint8_t*>(data);
    bytes.insert(bytes.end(), p, p + n);
    written_ += n;
    return Status::ok();
  }
  Status write_tensor(const std::string& name, size_t n, const GgufWriter::TensorFill& fill) override {
    const size_t start = bytes.size();
    bytes.resize(start + n);
    Status st = fill(bytes.data() + start, n);
    if (!st) return error(st.code(), "tensor '" + name + "': " + st.message());
    written_ += n;
    return Status::ok();
  }
  std::vector<uint8_t> bytes;  // the whole serialized file
};

class FileSink final : public GgufSink {
 public:
  FileSink(std::FILE* f, std::string path) : file_(f), path_(std::move(path)) {}
  Status write(const void* data, size_t n) override {
    if (n > 0 && std::fwrite(data, 1, n, file_) != n) {
      return error(ErrorCode::kIo, strprintf("cannot write '%s' at offset %llu: %s", path_.c_str(),
                                             static_cast<unsigned long long>(written_), std::strerror(errno)));
    }
    written_ += n;
    return Status::ok();
  }

 private:
  std::FILE* file_;   // open temporary file, owned by GgufWriter::write
  std::string path_;  // its name, for messages
};

// Field encoders. Every multi-byte field is little-endian, which is the host order (asserted in
// gguf_format.h), so fields are copied straight from memory.
template <typename T>
Status put(GgufSink& sink, T v) {
  return sink.write(&v, sizeof v);
}

Status put_string(GgufSink& sink, const std::string& s) {
  FATHOM_RETURN_IF_ERROR(put<uint64_t>(sink, s.size()));
  return sink.write(s.data(), s.size());
}

// A numeric array element, held as a double, in the array's element type.
Status put_number(GgufSink& sink, ValueType t, double v) {
  if (t == ValueType::kFloat32) return put<float>(sink, static_cast<float>(v));
  if (t == ValueType::kFloat64) return put<double>(sink, v);
  if (t == ValueType::kBool) {
    if (v != 0.0 && v != 1.0) return error(ErrorCode::kInvalidArgument, strprintf("bool element is %g (expected 0 or 1)", v));
    return put<uint8_t>(sink, v != 0.0);
  }
  if (v != std::trunc(v) || !integer_in_range(t, v)) {
    return error(ErrorCode::kInvalidArgument, strprintf("element %g does not fit in %s", v, value_type_name(t)));
  }
  switch (t) {
    case ValueType::kUint8: return put<uint8_t>(sink, static_cast<uint8_t>(v));
    case ValueType::kInt8: return put<int8_t>(sink, static_cast<int8_t>(v));
    case ValueType::kUint16: return put<uint16_t>(sink, static_cast<uint16_t>(v));
    case ValueType::kInt16: return put<int16_t>(sink, static_cast<int16_t>(v));
    case ValueType::kUint32: return put<uint32_t>(sink, static_cast<uint32_t>(v));
    case ValueType::kInt32: return put<int32_t>(sink, static_cast<int32_t>(v));
    case ValueType::kUint64: return put<uint64_t>(sink, static_cast<uint64_t>(v));
    case ValueType::kInt64: return put<int64_t>(sink, static_cast<int64_t>(v));
    default: return error(ErrorCode::kInvalidArgument, "not a numeric element type");
  }
}

Status put_scalar(GgufSink& sink, const Value& v) {
  // Integers are range-checked so a hand-built Value (type u8, u64 = 300) cannot wrap silently.
  auto check_unsigned = [&](uint64_t max) {
    return v.u64 <= max ? Status::ok()
                        : error(ErrorCode::kInvalidArgument, strprintf("value %llu does not fit in %s",
                                                                       static_cast<unsigned long long>(v.u64),
                                                                       value_type_name(v.type)));
  };
  auto check_signed = [&](int64_t min, int64_t max) {
    return v.i64 >= min && v.i64 <= max
               ? Status::ok()
               : error(ErrorCode::kInvalidArgument,
                       strprintf("value %lld does not fit in %s", static_cast<long long>(v.i64), value_type_name(v.type)));
  };
  switch (v.type) {
    case ValueType::kUint8: FATHOM_RETURN_IF_ERROR(check_unsigned(UINT8_MAX)); return put<uint8_t>(sink, static_cast<uint8_t>(v.u64));
    case ValueType::kInt8: FATHOM_RETURN_IF_ERROR(check_signed(INT8_MIN, INT8_MAX)); return put<int8_t>(sink, static_cast<int8_t>(v.i64));
    case ValueType::kUint16: FATHOM_RETURN_IF_ERROR(check_unsigned(UINT16_MAX)); return put<uint16_t>(sink, static_cast<uint16_t>(v.u64));
    case ValueType::kInt16: FATHOM_RETURN_IF_ERROR(check_signed(INT16_MIN, INT16_MAX)); return put<int16_t>(sink, static_cast<int16_t>(v.i64));
    case ValueType::kUint32: FATHOM_RETURN_IF_ERROR(check_unsigned(UINT32_MAX)); return put<uint32_t>(sink, static_cast<uint32_t>(v.u64));
    case ValueType::kInt32: FATHOM_RETURN_IF_ERROR(check_signed(INT32_MIN, INT32_MAX)); return put<int32_t>(sink, static_cast<int32_t>(v.i64));
    case ValueType::kUint64: return put<uint64_t>(sink, v.u64);
    case ValueType::kInt64: return put<int64_t>(sink, v.i64);
    case ValueType::kFloat32: return put<float>(sink, static_cast<float>(v.f64));
    case ValueType::kFloat64: return put<double>(sink, v.f64);
    case ValueType::kBool: return put<uint8_t>(sink, v.b ? 1 : 0);
    default: return error(ErrorCode::kInvalidArgument, "not a scalar type");
  }
}

// Writes an array's element type, length and elements (without the leading kArray type id).
Status put_array(GgufSink& sink, const Value& v, int depth) {
  if (depth > kMaxArrayDepth) {
    return error(ErrorCode::kInvalidArgument, strprintf("arrays nested deeper than %d levels", kMaxArrayDepth));
  }
  if (static_cast<uint32_t>(v.elem_type) > kMaxValueTypeId) {
    return error(ErrorCode::kInvalidArgument, strprintf("unknown array element type %u", static_cast<uint32_t>(v.elem_type)));
  }
  FATHOM_RETURN_IF_ERROR(put<uint32_t>(sink, static_cast<uint32_t>(v.elem_type)));
  FATHOM_RETURN_IF_ERROR(put<uint64_t>(sink, v.array_size()));
  if (v.elem_type == ValueType::kString) {
    for (const std::string& s : v.strings) FATHOM_RETURN_IF_ERROR(put_string(sink, s));
  } else if (v.elem_type == ValueType::kArray) {
    for (size_t i = 0; i < v.arrays.size(); ++i) {
      if (v.arrays[i].type != ValueType::kArray) {
        return error(ErrorCode::kInvalidArgument,
                     strprintf("element %zu of an array of arrays is a %s", i, value_type_name(v.arrays[i].type)));
      }
      FATHOM_RETURN_IF_ERROR(put_array(sink, v.arrays[i], depth + 1));
    }
  } else {
    for (double x : v.numbers) FATHOM_RETURN_IF_ERROR(put_number(sink, v.elem_type, x));
  }
  return Status::ok();
}

Status put_value(GgufSink& sink, const Value& v) {
  if (static_cast<uint32_t>(v.type) > kMaxValueTypeId) {
    return error(ErrorCode::kInvalidArgument, strprintf("unknown value type %u", static_cast<uint32_t>(v.type)));
  }
  FATHOM_RETURN_IF_ERROR(put<uint32_t>(sink, static_cast<uint32_t>(v.type)));
  if (v.type == ValueType::kString) return put_string(sink, v.str);
  if (v.type == ValueType::kArray) return put_array(sink, v, 1);
  return put_scalar(sink, v);
}

Status put_padding(GgufSink& sink, size_t alignment) {
  static constexpr uint8_t kZeros[256] = {};
  uint64_t target = 0;
  if (!align_up(sink.written(), alignment, &target)) return error(ErrorCode::kInvalidArgument, "file offset overflows");
  for (uint64_t left = target - sink.written(); left > 0;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, sizeof kZeros));
    FATHOM_RETURN_IF_ERROR(sink.write(kZeros, n));
    left -= n;
  }
  return Status::ok();
}

}  // namespace

void GgufWriter::set(std::string key, Value value) {
  // general.alignment and set_alignment() are two ways to say the same thing; the later wins.
  if (key == kAlignmentKey && value.is_integer()) alignment_ = static_cast<size_t>(value.u64);
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(std::move(key), std::move(value));
}

void GgufWriter::add_tensor(std::string name, DType dtype, std::vector<int64_t> ne, TensorFill fill) {
  // An invalid shape is reported by write(), which returns a Status; here it just has no size.
  Expected<size_t> n_bytes = tensor_bytes(name, dtype, ne);
  tensors_.push_back({std::move(name), dtype, std::move(ne), n_bytes ? *n_bytes : 0, std::move(fill)});
}

void GgufWriter::add_tensor_bytes(std::string name, DType dtype, std::vector<int64_t> ne, std::vector<uint8_t> bytes) {
  TensorFill fill = [bytes = std::move(bytes)](uint8_t* dst, size_t n_bytes) {
    if (bytes.size() != n_bytes) {
      return error(ErrorCode::kInvalidArgument,
                   strprintf("%zu bytes given, the shape needs %zu", bytes.size(), n_bytes));
    }
    if (n_bytes > 0) std::memcpy(dst, bytes.data(), n_bytes);
    return Status::ok();
  };
  add_tensor(std::move(name), dtype, std::move(ne), std::move(fill));
}

Status GgufWriter::write_to(GgufSink& sink) const {
  // Validate everything that does not depend on the sink before the first byte goes out.
  if (!is_power_of_two(alignment_)) {
    return error(ErrorCode::kInvalidArgument,
                 strprintf("alignment %zu is not a nonzero power of two", alignment_));
  }
  if (alignment_ > std::numeric_limits<uint32_t>::max()) {
    return error(ErrorCode::kInvalidArgument, strprintf("alignment %zu does not fit in a u32", alignment_));
  }
  std::vector<size_t> sizes;  // [n_tensors] data bytes of each tensor
  std::set<std::string_view> names;
  for (const PendingTensor& t : tensors_) {
    if (t.name.empty() || t.name.size() > kMaxTensorName) {
      return error(ErrorCode::kInvalidArgument, strprintf("tensor name '%s' is %zu bytes (expected 1..%zu)",
                                                          t.name.c_str(), t.name.size(), kMaxTensorName));
    }
    if (!names.insert(t.name).second) {
      return error(ErrorCode::kInvalidArgument, strprintf("duplicate tensor name '%s'", t.name.c_str()));
    }
    if (!t.fill) return error(ErrorCode::kInvalidArgument, strprintf("tensor '%s' has no data callback", t.name.c_str()));
    FATHOM_ASSIGN_OR_RETURN(size_t n, tensor_bytes(t.name, t.dtype, t.ne));
    sizes.push_back(n);
  }

  // general.alignment is written only when it differs from the default, in the position the
  // caller set it, or last.
  bool has_alignment_key = false;
  for (const auto& [k, v] : metadata_) has_alignment_key |= (k == kAlignmentKey);
  const bool write_alignment = alignment_ != kDefaultAlignment;
  uint64_t n_kv = metadata_.size();
  if (has_alignment_key && !write_alignment) --n_kv;
  if (!has_alignment_key && write_alignment) ++n_kv;

  FATHOM_RETURN_IF_ERROR(sink.write(kMagic, sizeof kMagic));
  FATHOM_RETURN_IF_ERROR(put<uint32_t>(sink, kWriteVersion));
  FATHOM_RETURN_IF_ERROR(put<uint64_t>(sink, tensors_.size()));
  FATHOM_RETURN_IF_ERROR(put<uint64_t>(sink, n_kv));

  const Value alignment_value = Value::make_u32(static_cast<uint32_t>(alignment_));
  for (const auto& [key, value] : metadata_) {
    if (key.empty()) return error(ErrorCode::kInvalidArgument, "metadata key is empty");
    const bool is_alignment = key == kAlignmentKey;
    if (is_alignment && !write_alignment) continue;
    FATHOM_RETURN_IF_ERROR(put_string(sink, key));
    Status st = put_value(sink, is_alignment ? alignment_value : value);
    if (!st) return error(st.code(), "metadata key '" + key + "': " + st.message());
  }
  if (!has_alignment_key && write_alignment) {
    FATHOM_RETURN_IF_ERROR(put_string(sink, kAlignmentKey));
    FATHOM_RETURN_IF_ERROR(put_value(sink, alignment_value));
  }

  // Tensor data is packed in order, each tensor starting at an aligned offset from the start of
  // the data section (the layout llama.cpp expects).
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const PendingTensor& t = tensors_[i];
    FATHOM_RETURN_IF_ERROR(put_string(sink, t.name));
    FATHOM_RETURN_IF_ERROR(put<uint32_t>(sink, static_cast<uint32_t>(t.ne.size())));
    for (int64_t d : t.ne) FATHOM_RETURN_IF_ERROR(put<uint64_t>(sink, static_cast<uint64_t>(d)));
    FATHOM_RETURN_IF_ERROR(put<uint32_t>(sink, static_cast<uint32_t>(t.dtype)));
    FATHOM_RETURN_IF_ERROR(put<uint64_t>(sink, offset));
    if (!align_up(offset + sizes[i], alignment_, &offset)) return error(ErrorCode::kInvalidArgument, "data offset overflows");
  }
  FATHOM_RETURN_IF_ERROR(put_padding(sink, alignment_));
  for (size_t i = 0; i < tensors_.size(); ++i) {
    FATHOM_RETURN_IF_ERROR(sink.write_tensor(tensors_[i].name, sizes[i], tensors_[i].fill));
    FATHOM_RETURN_IF_ERROR(put_padding(sink, alignment_));
  }
  return Status::ok();
}

Expected<std::vector<uint8_t>> GgufWriter::write_to_memory() const {
  MemorySink sink;
  FATHOM_RETURN_IF_ERROR(write_to(sink));
  return std::move(sink.bytes);
}

Status GgufWriter::write(const std::string& path) const {
  // The temporary name is unique per process so concurrent writers of one path cannot collide.
  const std::string tmp = strprintf("%s.tmp.%d", path.c_str(), static_cast<int>(getpid()));
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return error(ErrorCode::kIo, strprintf("cannot create '%s': %s", tmp.c_str(), std::strerror(errno)));
  FileSink sink(f, tmp);
  Status st = write_to(sink);
  if (st && (std::fflush(f) != 0 || fsync(fileno(f)) != 0)) {
    st = error(ErrorCode::kIo, strprintf("cannot flush '%s': %s", tmp.c_str(), std::strerror(errno)));
  }
  if (std::fclose(f) != 0 && st) {
    st = error(ErrorCode::kIo, strprintf("cannot close '%s': %s", tmp.c_str(), std::strerror(errno)));
  }
  if (st && std::rename(tmp.c_str(), path.c_str()) != 0) {
    st = error(ErrorCode::kIo,
               strprintf("cannot rename '%s' to '%s': %s", tmp.c_str(), path.c_str(), std::strerror(errno)));
  }
  if (!st) std::remove(tmp.c_str());
  return st;
}

}  // namespace fathom::gguf
