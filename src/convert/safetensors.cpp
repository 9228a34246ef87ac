#include "convert/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/fp16.h"
#include "core/json_depth.h"

namespace fathom::convert {

namespace {

struct DTypeEntry {
  StDType type;
  const char* name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {StDType::kF64, "F64", 8},        {StDType::kF32, "F32", 4},         {StDType::kF16, "F16", 2},
    {StDType::kBF16, "BF16", 2},      {StDType::kF8E4M3, "F8_E4M3", 1}, {StDType::kF8E5M2, "F8_E5M2", 1},
    {StDType::kI64, "I64", 8},        {StDType::kI32, "I32", 4},         {StDType::kI16, "I16", 2},
    {StDType::kI8, "I8", 1},          {StDType::kU8, "U8", 1},           {StDType::kBool, "BOOL", 1},
};

// Headers beyond this are not checkpoints (real ones are a few MB at most).
constexpr uint64_t kMaxHeaderBytes = 256ull << 20;

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

}  // namespace

const char* st_dtype_name(StDType t) {
  for (const DTypeEntry& e : kDTypes)
    if (e.type == t) return e.name;
  return "?";
}

size_t st_dtype_size(StDType t) {
  for (const DTypeEntry& e : kDTypes)
    if (e.type == t) return e.size;
  return 0;
}

std::optional<StDType> parse_st_dtype(std::string_view name) {
  for (const DTypeEntry& e : kDTypes)
    if (name == e.name) return e.type;
  return std::nullopt;
}

int64_t StTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Expected<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> f, MappedFile::open(path));
  return parse(std::move(f));
}

Expected<std::unique_ptr<SafetensorsFile>> SafetensorsFile::parse(std::unique_ptr<MappedFile> file) {
  const std::string& path = file->path();
  auto bad = [&](const std::string& what) { return error(ErrorCode::kInvalidFile, path + ": " + what); };
  const size_t size = file->size();
  if (size < 8) return bad(strprintf("file has %zu bytes, fewer than the 8-byte header length", size));
  uint64_t header_len = 0;
  std::memcpy(&header_len, file->data(), 8);
  if (header_len < 2 || header_len > kMaxHeaderBytes || header_len > size - 8)
    return bad(strprintf("header length %llu does not fit the file (%zu bytes)", static_cast<unsigned long long>(header_len), size));
  const char* header = reinterpret_cast<const char*>(file->data() + 8);
  if (auto at = json_depth_exceeded_at(std::string_view(header, header_len), kMaxFileJsonDepth))
    return bad(strprintf("header nests arrays and objects deeper than %d levels (at byte %zu)", kMaxFileJsonDepth, 8 + *at));
  const nlohmann::json j = nlohmann::json::parse(header, header + header_len, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("header is not a JSON object");
  const size_t data_start = 8 + static_cast<size_t>(header_len);
  const size_t data_size = size - data_start;

  auto st = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  for (const auto& [name, entry] : j.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return bad("__metadata__ is not an object");
      for (const auto& [k, v] : entry.items())
        if (v.is_string()) st->metadata_[k] = v.get<std::string>();
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!entry.is_object()) return bad(where + "entry is not an object");
    const auto dt = entry.find("dtype");
    const auto shape = entry.find("shape");
    const auto offsets = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string()) return bad(where + "missing dtype");
    if (shape == entry.end() || !shape->is_array()) return bad(where + "missing shape");
    if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2) return bad(where + "data_offsets must be [begin, end]");
    StTensor t;
    t.name = name;
    const std::optional<StDType> type = parse_st_dtype(dt->get<std::string>());
    if (!type) return bad(where + "unknown dtype " + dt->get<std::string>());
    t.dtype = *type;
    if (shape->size() > 8) return bad(where + "more than 8 dimensions");
    uint64_t n_elements = 1;
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned()) return bad(where + "shape entries must be non-negative integers");
      const uint64_t v = d.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (v != 0 && n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / v))
        return bad(where + "shape overflows");
      n_elements *= v;
      t.shape.push_back(static_cast<int64_t>(v));
    }
    const auto& o0 = (*offsets)[0];
    const auto& o1 = (*offsets)[1];
    if (!o0.is_number_unsigned() || !o1.is_number_unsigned()) return bad(where + "data_offsets must be non-negative integers");
    const uint64_t begin = o0.get<uint64_t>(), end = o1.get<uint64_t>();
    if (begin > end || end > data_size)
      return bad(where + strprintf("data_offsets [%llu, %llu] lie outside the data section (%zu bytes)",
                                   static_cast<unsigned long long>(begin), static_cast<unsigned long long>(end), data_size));
    const uint64_t elem = st_dtype_size(t.dtype);
    if (n_elements > std::numeric_limits<uint64_t>::max() / elem || end - begin != n_elements * elem)
      return bad(where + strprintf("data_offsets span %llu bytes but shape x dtype needs %llu",
                                   static_cast<unsigned long long>(end - begin),
                                   static_cast<unsigned long long>(n_elements * elem)));
    t.data = file->data() + data_start + begin;
    t.n_bytes = static_cast<size_t>(end - begin);
    st->tensors_.push_back(std::move(t));
  }
  std::sort(st->tensors_.begin(), st->tensors_.end(), [](const StTensor& a, const StTensor& b) { return a.data < b.data; });
  for (size_t i = 1; i < st->tensors_.size(); ++i) {
    const StTensor& prev = st->tensors_[i - 1];
    if (prev.data + prev.n_bytes > st->tensors_[i].data)
      return bad("tensors '" + prev.name + "' and '" + st->tensors_[i].name + "' overlap");
  }
  for (size_t i = 0; i < st->tensors_.size(); ++i) st->index_[st->tensors_[i].name] = i;
  st->file_ = std::move(file);
  return st;
}

const StTensor* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

float fp8_e4m3_to_f32(uint8_t v) {
  const bool negative = (v & 0x80) != 0;
  const int exp = (v >> 3) & 0xF;
  const int mant = v & 0x7;
  if (exp == 0xF && mant == 0x7) return std::numeric_limits<float>::quiet_NaN();
  const float mag = exp == 0 ? std::ldexp(static_cast<float>(mant) / 8.0f, -6)
                             : std::ldexp(1.0f + static_cast<float>(mant) / 8.0f, exp - 7);
  return negative ? -mag : mag;
}

Status st_to_f32(const StTensor& t, float* out) {
  const int64_t n = t.n_elements();
  switch (t.dtype) {
    case StDType::kF32: std::memcpy(out, t.data, static_cast<size_t>(n) * sizeof(float)); return Status::ok();
    case StDType::kF16:
      for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_fp32(load_u16(t.data + 2 * i));
      return Status::ok();
    case StDType::kBF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_fp32(load_u16(t.data + 2 * i));
      return Status::ok();
    case StDType::kF8E4M3:
      for (int64_t i = 0; i < n; ++i) out[i] = fp8_e4m3_to_f32(t.data[i]);
      return Status::ok();
    default:
      return error(ErrorCode::kUnsupported, strprintf("tensor %s: dtype %s cannot be converted (F32, F16, BF16, F8_E4M3)",
                                                      t.name.c_str(), st_dtype_name(t.dtype)));
  }
}

Status dequant_fp8_blocks(const StTensor& weight, const StTensor& scale_inv, int64_t block, float* out) {
  if (weight.dtype != StDType::kF8E4M3 || weight.shape.size() != 2)
    return error(ErrorCode::kUnsupported, "tensor " + weight.name + ": block-scaled FP8 needs a 2-D F8_E4M3 weight");
  const int64_t rows = weight.shape[0], cols = weight.shape[1];
  const int64_t br = (rows + block - 1) / block, bc = (cols + block - 1) / block;
  if (scale_inv.shape.size() != 2 || scale_inv.shape[0] != br || scale_inv.shape[1] != bc)
    return error(ErrorCode::kInvalidFile,
                 strprintf("tensor %s: scale_inv has the wrong shape for %lldx%lld blocks of %lld", scale_inv.name.c_str(),
                           static_cast<long long>(br), static_cast<long long>(bc), static_cast<long long>(block)));
  std::vector<float> scales(static_cast<size_t>(br * bc));
  FATHOM_RETURN_IF_ERROR(st_to_f32(scale_inv, scales.data()));
  for (int64_t r = 0; r < rows; ++r) {
    const float* srow = scales.data() + (r / block) * bc;
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = fp8_e4m3_to_f32(weight.data[r * cols + c]) * srow[c / block];
  }
  return Status::ok();
}

void SafetensorsWriter::add(std::string name, StDType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  entries_.push_back({std::move(name), dtype, std::move(shape), std::move(bytes)});
}

void SafetensorsWriter::add_f32(std::string name, std::vector<int64_t> shape, const float* values) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<uint8_t> bytes(static_cast<size_t>(n) * sizeof(float));
  std::memcpy(bytes.data(), values, bytes.size());
  add(std::move(name), StDType::kF32, std::move(shape), std::move(bytes));
}

void SafetensorsWriter::set_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }

Expected<std::vector<uint8_t>> SafetensorsWriter::serialize() const {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const Entry& e : entries_) {
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    if (e.bytes.size() != static_cast<size_t>(n) * st_dtype_size(e.dtype))
      return error(ErrorCode::kInvalidArgument, "tensor " + e.name + ": byte count does not match shape x dtype");
    if (header.contains(e.name)) return error(ErrorCode::kInvalidArgument, "tensor " + e.name + " added twice");
    header[e.name] = {{"dtype", st_dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<uint8_t> out(8 + text.size());
  const uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, text.data(), text.size());
  for (const Entry& e : entries_) out.insert(out.end(), e.bytes.begin(), e.bytes.end());
  return out;
}

Status SafetensorsWriter::write(const std::string& path) const {
  FATHOM_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, serialize());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return error(ErrorCode::kIo, "cannot open " + path + " for writing");
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) return error(ErrorCode::kIo, "write failed: " + path);
  return Status::ok();
}

}  // namespace fathom::convert
