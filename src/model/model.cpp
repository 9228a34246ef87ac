#include "model/model.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <unordered_map>

#include "backend/backend_factory.h"
#include "model/weights.h"

namespace fathom {

Expected<std::unique_ptr<Model>> Model::load(const std::string& path, const LoadOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> file, gguf::GgufFile::open(path, options.map));
  return from_file(std::move(file), options);
}

Expected<std::unique_ptr<Model>> Model::from_file(std::unique_ptr<gguf::GgufFile> file, const LoadOptions& options) {
  auto m = std::unique_ptr<Model>(new Model());
  FATHOM_ASSIGN_OR_RETURN(m->config_, ModelConfig::from_gguf(*file));
  FATHOM_ASSIGN_OR_RETURN(m->arch_, make_architecture(m->config_, *file));
  FATHOM_ASSIGN_OR_RETURN(const std::string kind, device_kind(options.device));
  FATHOM_ASSIGN_OR_RETURN(m->placement_, plan_placement(*file, m->config_, kind, options.placement));
  FATHOM_ASSIGN_OR_RETURN(m->backend_, make_backend(options, DeviceLayout{m->placement_.ranges(), m->placement_.attention}));
  if (kind != "cpu" && std::string(m->backend_->name()) == "cpu") {  // the device did not start: everything on the CPU
    FATHOM_ASSIGN_OR_RETURN(m->placement_, plan_placement(*file, m->config_, "cpu", PlacementOptions{}));
  }
  m->backend_->prepare_matmul_weights(matmul_weight_views(*file, m->config_.n_layer), file->file_is_mmap());
  m->file_ = std::move(file);
  return m;
}

Status Model::check_batch(const Batch& batch, KvCache& kv) {
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
  return Status::ok();
}

Status Model::forward(const Batch& batch, KvCache& kv, std::vector<float>& logits) {
  FATHOM_RETURN_IF_ERROR(check_batch(batch, kv));
  logits.resize(static_cast<size_t>(batch.n_logits() * config_.n_vocab));
  return run_forward(*arch_, *backend_, batch, kv, config_.n_vocab, logits.data());
}

Status Model::forward_top(const Batch& batch, KvCache& kv, TopLogits& top) {
  if (top.k <= 0) return error(ErrorCode::kInvalidArgument, "forward_top: k must be positive");
  FATHOM_RETURN_IF_ERROR(check_batch(batch, kv));
  top_logits_.resize(static_cast<size_t>(batch.n_logits() * config_.n_vocab));
  return run_forward(*arch_, *backend_, batch, kv, config_.n_vocab, top_logits_.data(), &top);
}

Status run_forward(Architecture& arch, Backend& backend, const Batch& batch, KvCache& kv, int64_t n_vocab, float* logits,
                   TopLogits* top) {
  const int64_t n_out = batch.n_logits();
  if (top) {
    top->k = std::min(top->k, n_vocab);
    top->ids.resize(static_cast<size_t>(n_out * top->k));
    top->values.resize(top->ids.size());
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    backend.begin_forward(batch.size());
    arch.forward(batch, kv, backend, logits);
    if (n_out > 0 && top) backend.top_candidates(logits, n_out, n_vocab, top->k, top->ids.data(), top->values.data());
    else if (n_out > 0) backend.sync_to_host(logits, n_out * n_vocab);
    if (backend.end_forward()) return Status::ok();
  }
  return error(ErrorCode::kUnavailable, std::string(backend.name()) + " lost the forward pass twice");
}

namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

TokenWeights weights_per_token(const gguf::GgufFile& file, const ModelConfig& config,
                               const std::function<bool(const std::string& name)>& include) {
  const bool tied_output = file.find_tensor("output.weight") == nullptr;
  TokenWeights w;
  auto count = [&](uint64_t bytes, int64_t params, bool multiplied) {
    w.bytes += bytes;
    if (multiplied) w.matmul_params += params;
  };
  for (const gguf::TensorInfo& t : file.tensors()) {
    const std::string& name = t.view.name;
    const int64_t layer = block_index(name);
    if (layer >= config.n_layer) continue;  // MTP/NextN blocks are not run
    if (include && !include(name)) continue;
    const bool matrix = t.view.n_dims >= 2;
    if (name == "token_embd.weight") {
      if (tied_output) count(t.n_bytes, t.view.n_elements(), true);
      else count(row_size(t.view.dtype, t.view.ne[0]), 0, false);
      continue;
    }
    if (ends_with(name, ".attn_kv_b.weight") &&
        file.find_tensor("blk." + std::to_string(layer) + ".attn_k_b.weight") != nullptr)
      continue;  // the split attn_k_b/attn_v_b are bound instead
    if (config.n_expert > 0 && name.find("_exps.") != std::string::npos) {
      const auto used = static_cast<uint64_t>(config.n_expert_used), all = static_cast<uint64_t>(config.n_expert);
      count(t.n_bytes / all * used, t.view.n_elements() / static_cast<int64_t>(all) * static_cast<int64_t>(used), matrix);
      continue;
    }
    count(t.n_bytes, t.view.n_elements(), matrix);
  }
  return w;
}

uint64_t weight_bytes_per_token(const gguf::GgufFile& file, const ModelConfig& config) {
  return weights_per_token(file, config).bytes;
}

}  // namespace fathom
