#include "model/weights.h"


#include "quant/quant.h"

namespace fathom {

namespace {

std::string shape_str(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

}  // namespace

Expected<TensorView> WeightBinder::optional(const std::string& name, std::vector<int64_t> ne) const {
  const gguf::TensorInfo* info = file_.find_tensor(name);
  if (!info) return TensorView{};
  const TensorView& v = info->view;
  bool match = true;
  for (size_t i = 0; i < 4; ++i) {
    const int64_t want = i < ne.size() ? ne[i] : 1;
    if (v.ne[i] != want) match = false;
  }
  if (!match)
    return error(ErrorCode::kInvalidFile, strprintf("%s: tensor '%s' has shape %s, expected %s", file_.path().c_str(), name.c_str(),
                                                    v.shape_string().c_str(), shape_str(ne).c_str()));
  if (!quant::can_dequantize(v.dtype))
    return error(ErrorCode::kUnsupported, strprintf("%s: tensor '%s' has type %s, which fathom cannot compute with", file_.path().c_str(),
                                                    name.c_str(), dtype_name(v.dtype)));
  return v;
}

Expected<TensorView> WeightBinder::require(const std::string& name, std::vector<int64_t> ne) const {
  if (!file_.find_tensor(name))
    return error(ErrorCode::kInvalidFile, strprintf("%s: required tensor '%s' %s is missing", file_.path().c_str(), name.c_str(),
                                                    shape_str(ne).c_str()));
  return optional(name, std::move(ne));
}

Expected<const float*> WeightBinder::optional_f32(const std::string& name, int64_t n,
                                                  std::vector<std::vector<float>>& storage) const {
  FATHOM_ASSIGN_OR_RETURN(TensorView v, optional(name, {n}));
  if (!v.data) return static_cast<const float*>(nullptr);
  if (v.dtype == DType::F32) return static_cast<const float*>(v.data);
  storage.emplace_back(static_cast<size_t>(n));
  quant::dequantize_row(v.dtype, v.data, storage.back().data(), n);
  return static_cast<const float*>(storage.back().data());
}

Expected<const float*> WeightBinder::require_f32(const std::string& name, int64_t n,
                                                 std::vector<std::vector<float>>& storage) const {
  if (!file_.find_tensor(name))
    return error(ErrorCode::kInvalidFile, strprintf("%s: required tensor '%s' [%lld] is missing", file_.path().c_str(), name.c_str(),
                                                    static_cast<long long>(n)));
  return optional_f32(name, n, storage);
}

int64_t block_index(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  int64_t n = 0;
  size_t i = 4;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) n = n * 10 + (name[i] - '0');
  return i > 4 ? n : -1;
}

std::vector<TensorView> matmul_weight_views(const gguf::GgufFile& file, int64_t n_layer) {
  const bool tied = file.find_tensor("output.weight") == nullptr;
  std::vector<TensorView> out;
  for (const gguf::TensorInfo& info : file.tensors()) {
    const TensorView& t = info.view;
    if (t.n_dims < 2 || t.name.size() < 7 || t.name.compare(t.name.size() - 7, 7, ".weight") != 0) continue;
    if (t.name == "token_embd.weight" && !tied) continue;
    if (block_index(t.name) >= n_layer) continue;  // MTP/NextN blocks are not run
    if (t.n_dims == 2 || t.ne[2] == 1) {
      out.push_back(t);
      continue;
    }
    for (int64_t e = 0; e < t.ne[2] * t.ne[3]; ++e) {  // as moe.cpp's expert_slice
      TensorView v = t;
      v.ne = {t.ne[0], t.ne[1], 1, 1};
      v.n_dims = 2;
      v.data = t.row(e * t.ne[1]);
      out.push_back(v);
    }
  }
  return out;
}

}  // namespace fathom
