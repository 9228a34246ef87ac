#include "convert/hf_checkpoint.h"

#include <algorithm>
#include <filesystem>

#include "core/json_depth.h"
#include "core/mapped_file.h"

namespace fathom::convert {

Expected<nlohmann::json> read_json_object(const std::string& path) {
  FATHOM_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  if (auto at = json_depth_exceeded_at(text, kMaxFileJsonDepth)) {
    return error(ErrorCode::kInvalidFile, strprintf("%s: arrays and objects nested deeper than %d levels (at byte %zu)",
                                                    path.c_str(), kMaxFileJsonDepth, *at));
  }
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return error(ErrorCode::kInvalidFile, path + ": not a JSON object");
  return j;
}

Expected<std::unique_ptr<HfCheckpoint>> HfCheckpoint::open(const std::string& dir) {
  namespace fs = std::filesystem;
  auto ck = std::unique_ptr<HfCheckpoint>(new HfCheckpoint());
  ck->dir_ = dir;
  FATHOM_ASSIGN_OR_RETURN(ck->config_, read_json_object(dir + "/config.json"));
  if (const auto q = ck->config_.find("quantization_config"); q != ck->config_.end() && q->is_object()) {
    const auto bs = q->find("weight_block_size");
    if (bs != q->end() && bs->is_array() && !bs->empty() && (*bs)[0].is_number_integer()) ck->fp8_block_ = (*bs)[0].get<int64_t>();
    if (ck->fp8_block_ <= 0) return error(ErrorCode::kInvalidFile, dir + "/config.json: weight_block_size must be positive");
  }

  std::vector<std::string> shard_paths;
  std::error_code ec;
  if (fs::exists(dir + "/model.safetensors.index.json", ec)) {
    FATHOM_ASSIGN_OR_RETURN(nlohmann::json index, read_json_object(dir + "/model.safetensors.index.json"));
    const auto map = index.find("weight_map");
    if (map == index.end() || !map->is_object())
      return error(ErrorCode::kInvalidFile, dir + "/model.safetensors.index.json: no weight_map object");
    std::set<std::string> files;
    for (const auto& [name, file] : map->items()) {
      if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos)
        return error(ErrorCode::kInvalidFile, "weight_map entry for " + name + " is not a file name in the directory");
      files.insert(file.get<std::string>());
    }
    for (const std::string& f : files) shard_paths.push_back(dir + "/" + f);
  } else if (fs::exists(dir + "/model.safetensors", ec)) {
    shard_paths.push_back(dir + "/model.safetensors");
  } else {
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (entry.path().extension() == ".safetensors") shard_paths.push_back(entry.path().string());
    std::sort(shard_paths.begin(), shard_paths.end());
  }
  if (shard_paths.empty()) return error(ErrorCode::kNotFound, dir + ": no *.safetensors weights (PyTorch .bin checkpoints are not supported)");
  for (const std::string& p : shard_paths) {
    FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> f, SafetensorsFile::open(p));
    ck->files_.push_back(std::move(f));
  }
  for (const auto& f : ck->files_)
    for (const StTensor& t : f->tensors())
      if (!ck->index_.emplace(t.name, &t).second)
        return error(ErrorCode::kInvalidFile, dir + ": tensor " + t.name + " appears in two shards");
  return ck;
}

const StTensor* HfCheckpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<std::string> HfCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : index_) out.push_back(name);
  return out;
}

Status HfCheckpoint::read_f32(const std::string& name, std::vector<float>* out, std::vector<int64_t>* shape) const {
  const StTensor* t = find(name);
  if (t == nullptr) return error(ErrorCode::kNotFound, dir_ + ": checkpoint has no tensor " + name);
  out->resize(static_cast<size_t>(t->n_elements()));
  if (shape) *shape = t->shape;
  if (t->dtype == StDType::kF8E4M3) {
    const StTensor* scale = find(name + "_scale_inv");
    if (scale == nullptr)
      return error(ErrorCode::kInvalidFile, name + " is FP8 but the checkpoint has no " + name + "_scale_inv block scales");
    return dequant_fp8_blocks(*t, *scale, fp8_block_, out->data());
  }
  return st_to_f32(*t, out->data());
}

}  // namespace fathom::convert
