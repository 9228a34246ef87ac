// Split GGUF models (llama.cpp's gguf-split convention, see gguf.h): opening all parts of a split
// model as one GgufFile, and writing a model as parts.
#include <string>
#include <string_view>

#include "gguf/gguf.h"

namespace fathom::gguf {

std::string split_path(const std::string& prefix, int split_no, int split_count) {
  return strprintf("%s-%05d-of-%05d.gguf", prefix.c_str(), split_no + 1, split_count);
}

std::optional<SplitName> parse_split_path(const std::string& path) {
  // "-00001-of-00003.gguf": five digits each, as llama.cpp writes them.
  constexpr std::string_view kPattern = "-#####-of-#####.gguf";
  if (path.size() <= kPattern.size()) return std::nullopt;
  const std::string_view tail = std::string_view(path).substr(path.size() - kPattern.size());
  for (size_t i = 0; i < kPattern.size(); ++i) {
    const bool ok = kPattern[i] == '#' ? (tail[i] >= '0' && tail[i] <= '9') : tail[i] == kPattern[i];
    if (!ok) return std::nullopt;
  }
  const int no = std::stoi(std::string(tail.substr(1, 5))), count = std::stoi(std::string(tail.substr(10, 5)));
  if (no < 1 || no > count) return std::nullopt;
  return SplitName{path.substr(0, path.size() - kPattern.size()), no - 1, count};
}

uint64_t GgufFile::total_file_size() const {
  uint64_t total = file_size();
  for (const auto& part : parts_) total += part->file_size();
  return total;
}

Status GgufFile::attach_split_parts(const MapOptions& map) {
  const std::optional<int64_t> count = get_int(kSplitCountKey);
  const int64_t no = get_int(kSplitNoKey).value_or(0);
  if (!count || *count == 1) return Status::ok();
  if (*count < 1 || *count > kMaxSplitCount)
    return error(ErrorCode::kInvalidFile, strprintf("%s: %s is %lld (expected 1..%d)", path().c_str(), kSplitCountKey,
                                                    static_cast<long long>(*count), kMaxSplitCount));
  const int n_parts = static_cast<int>(*count);
  const std::optional<SplitName> name = parse_split_path(path());
  if (no != 0) {
    const std::string first = name ? split_path(name->prefix, 0, n_parts) : "its first part";
    return error(ErrorCode::kInvalidArgument,
                 strprintf("%s is part %lld of %d of a split model; open the first part, %s", path().c_str(),
                           static_cast<long long>(no + 1), n_parts, first.c_str()));
  }
  if (!name || name->split_count != n_parts)
    return error(ErrorCode::kInvalidFile,
                 strprintf("%s: %s is %d, but the file name does not end in -00001-of-%05d.gguf, so its other "
                           "parts cannot be found (rename the parts as gguf-split wrote them)",
                           path().c_str(), kSplitCountKey, n_parts, n_parts));
  for (int i = 1; i < n_parts; ++i) {
    const std::string part_path = split_path(name->prefix, i, n_parts);
    FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::open(part_path, map));
    FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> part, parse(std::move(mapped)));
    if (part->get_int(kSplitNoKey) != i || part->get_int(kSplitCountKey) != n_parts)
      return error(ErrorCode::kInvalidFile,
                   strprintf("%s: expected %s = %d and %s = %d (part %d of %d)", part_path.c_str(), kSplitNoKey, i,
                             kSplitCountKey, n_parts, i + 1, n_parts));
    for (const TensorInfo& t : part->tensors()) {
      if (!tensor_index_.emplace(t.view.name, tensors_.size()).second)
        return error(ErrorCode::kInvalidFile,
                     strprintf("%s: tensor '%s' is also in an earlier part", part_path.c_str(), t.view.name.c_str()));
      tensors_.push_back(t);
    }
    parts_.push_back(std::move(part));
  }
  const std::optional<int64_t> n_tensors = get_int(kSplitTensorsCountKey);
  if (n_tensors && *n_tensors != static_cast<int64_t>(tensors_.size()))
    return error(ErrorCode::kInvalidFile,
                 strprintf("%s: %s is %lld but the %d parts hold %zu tensors", path().c_str(), kSplitTensorsCountKey,
                           static_cast<long long>(*n_tensors), n_parts, tensors_.size()));
  return Status::ok();
}

Status GgufWriter::write_split(const std::string& prefix, int n_parts) const {
  if (n_parts < 2 || n_parts > kMaxSplitCount || static_cast<size_t>(n_parts) > tensors_.size())
    return error(ErrorCode::kInvalidArgument, strprintf("cannot split %zu tensors into %d parts (expected 2..%zu, at most %d)",
                                                        tensors_.size(), n_parts, tensors_.size(), kMaxSplitCount));
  for (int i = 0; i < n_parts; ++i) {
    GgufWriter part;
    if (i == 0) part.metadata_ = metadata_;
    part.set(kSplitNoKey, Value::make_u16(static_cast<uint16_t>(i)));
    part.set(kSplitCountKey, Value::make_u16(static_cast<uint16_t>(n_parts)));
    part.set(kSplitTensorsCountKey, Value::make_i32(static_cast<int32_t>(tensors_.size())));
    part.alignment_ = alignment_;
    const size_t begin = tensors_.size() * i / n_parts, end = tensors_.size() * (i + 1) / n_parts;
    part.tensors_.assign(tensors_.begin() + static_cast<ptrdiff_t>(begin), tensors_.begin() + static_cast<ptrdiff_t>(end));
    FATHOM_RETURN_IF_ERROR(part.write(split_path(prefix, i, n_parts)));
  }
  return Status::ok();
}

}  // namespace fathom::gguf
