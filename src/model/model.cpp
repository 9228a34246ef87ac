#include "model/model.h"

#include <algorithm>
#include <unordered_map>

#include "backend/cpu/cpu_backend.h"

namespace fathom {

Expected<std::unique_ptr<Model>> Model::load(const std::string& path, const LoadOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> file, gguf::GgufFile::open(path));
  return from_file(std::move(file), options);
}

Expected<std::unique_ptr<Model>> Model::from_file(std::unique_ptr<gguf::GgufFile> file, const LoadOptions& options) {
  auto m = std::unique_ptr<Model>(new Model());
  FATHOM_ASSIGN_OR_RETURN(m->config_, ModelConfig::from_gguf(*file));
  FATHOM_ASSIGN_OR_RETURN(m->arch_, make_architecture(m->config_, *file));
  m->backend_ = std::make_unique<CpuBackend>(options.n_threads);
  m->file_ = std::move(file);
  return m;
}

Status Model::forward(const Batch& batch, KvCache& kv, std::vector<float>& logits) {
  const int64_t n = batch.size();
  if (n == 0) return error(ErrorCode::kInvalidArgument, "empty batch");
  if (static_cast<int64_t>(batch.positions.size()) != n || static_cast<int64_t>(batch.seq_ids.size()) != n ||
      static_cast<int64_t>(batch.logits.size()) != n)
    return error(ErrorCode::kInvalidArgument, "batch arrays differ in length");
  // Per sequence: first and last position in this batch; positions must be consecutive and
  // start exactly where the sequence's cached tokens end (its first position in the batch).
  std::unordered_map<int32_t, int32_t> next_pos;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t tok = batch.tokens[static_cast<size_t>(i)];
    if (tok < 0 || tok >= config_.n_vocab)
      return error(ErrorCode::kInvalidArgument, strprintf("token id %d is out of range (vocabulary has %lld tokens)", tok,
                                                          static_cast<long long>(config_.n_vocab)));
    const int32_t seq = batch.seq_ids[static_cast<size_t>(i)], pos = batch.positions[static_cast<size_t>(i)];
    auto it = next_pos.find(seq);
    if (it != next_pos.end() && pos != it->second)
      return error(ErrorCode::kInvalidArgument, strprintf("sequence %d: position %d follows position %d in one batch", seq, pos, it->second - 1));
    if (pos < 0) return error(ErrorCode::kInvalidArgument, strprintf("sequence %d: negative position %d", seq, pos));
    next_pos[seq] = pos + 1;
  }
  for (const auto& [seq, end] : next_pos) FATHOM_RETURN_IF_ERROR(kv.reserve(seq, end));
  logits.resize(static_cast<size_t>(batch.n_logits() * config_.n_vocab));
  arch_->forward(batch, kv, *backend_, logits.data());
  return Status::ok();
}

}  // namespace fathom
