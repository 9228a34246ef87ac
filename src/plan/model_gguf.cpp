// GGUF -> ModelDesc. Kept apart from the presets so that code planning from presets only
// (and its tests) does not pull in the GGUF reader.
#include <algorithm>
#include <map>

#include "gguf/gguf.h"
#include "model/config.h"
#include "plan/model_shape.h"
#include "plan/planner.h"
#include "quant/ftype.h"

namespace fathom::plan {

Expected<ModelDesc> model_from_gguf(const std::string& path) {
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> file, gguf::GgufFile::open(path));
  ModelDesc d;
  d.from_file = true;
  ModelShape& s = d.shape;
  s.arch = file->architecture();
  if (s.arch.empty()) return error(ErrorCode::kInvalidFile, path + ": no general.architecture key");
  s.name = file->get_string("general.name").value_or(path);
  const std::string a = s.arch + ".";
  auto get = [&](const std::string& key, int64_t fallback) { return file->get_int(a + key).value_or(fallback); };
  s.n_embd = get("embedding_length", 0);
  FATHOM_ASSIGN_OR_RETURN(const LayerCounts layers, read_layer_counts(*file, s.arch));
  s.n_layer = layers.n_layer();
  s.n_nextn_layers = layers.n_nextn;
  if (s.n_embd <= 0 || s.n_layer <= 0)
    return error(ErrorCode::kInvalidFile, path + ": missing " + a + "embedding_length or " + a + "block_count");
  s.n_ctx_train = get("context_length", 0);
  s.n_ff = get("feed_forward_length", 0);
  s.n_head = get("attention.head_count", 1);
  s.n_head_kv = get("attention.head_count_kv", s.n_head);
  s.head_dim = get("attention.key_length", s.n_embd / std::max<int64_t>(1, s.n_head));
  s.kv_lora_rank = get("attention.kv_lora_rank", 0);
  if (s.is_mla()) {
    // Files converted for latent-cache MLA describe the cached row in key_length (kv_lora + rope),
    // value_length (kv_lora) and head_count_kv (1), and the per-head sizes after decompression
    // in the *_mla keys; older files give those sizes in key_length/value_length. Either way a
    // head has its own K and V after decompression, as the presets say.
    s.q_lora_rank = get("attention.q_lora_rank", 0);
    s.rope_dim = get("rope.dimension_count", 0);
    s.head_dim = get("attention.key_length_mla", s.head_dim);
    s.v_head_dim = get("attention.value_length_mla", get("attention.value_length", s.head_dim));
    s.nope_dim = s.head_dim - s.rope_dim;
    s.n_head_kv = s.n_head;
  }
  s.n_expert = get("expert_count", 0);
  s.n_expert_used = get("expert_used_count", 0);
  s.n_expert_shared = get("expert_shared_count", 0);
  s.n_ff_exp = get("expert_feed_forward_length", 0);
  s.n_layer_dense_lead = get("leading_dense_block_count", 0);
  s.n_vocab = get("vocab_size", 0);
  s.expert_score_bias = get("expert_gating_func", 0) == 2;  // sigmoid scores plus exp_probs_b

  std::map<DType, uint64_t> bytes_by_type;
  for (const gguf::TensorInfo& ti : file->tensors()) {
    TensorShape t;
    t.name = ti.view.name;
    t.ne = ti.view.ne;
    t.n_dims = ti.view.n_dims;
    t.dtype = ti.view.dtype;
    t.file_bytes = ti.n_bytes;
    if (t.name == "token_embd.weight" && s.n_vocab == 0) s.n_vocab = t.ne[1];
    if (t.name.find("exp_probs_b") != std::string::npos) s.expert_score_bias = true;
    if (traits(t.dtype).is_quantized) bytes_by_type[t.dtype] += t.file_bytes;
    d.tensors.push_back(std::move(t));
  }
  if (s.n_vocab == 0) {  // qwen2 files have no vocab_size key; a metadata-only file no token_embd
    const gguf::Value* tokens = file->find("tokenizer.ggml.tokens");
    if (tokens != nullptr && tokens->type == gguf::ValueType::kArray)
      s.n_vocab = static_cast<int64_t>(tokens->array_size());
  }
  s.tied_output = file->find_tensor("output.weight") == nullptr;
  s.qkv_bias = file->find_tensor("blk.0.attn_q.bias") != nullptr;
  const int64_t file_type = file->get_int("general.file_type").value_or(-1);
  for (const quant::FileType& f : quant::file_types())
    if (static_cast<int64_t>(f.id) == file_type) d.file_type = quant_name(QuantScheme{f});
  if (d.file_type.empty()) {
    uint64_t best = 0;
    for (const auto& [type, bytes] : bytes_by_type)
      if (bytes > best) best = bytes, d.file_type = dtype_name(type);
    if (d.file_type.empty()) d.file_type = "as stored";
  }
  return d;
}

}  // namespace fathom::plan
