// A Hugging Face checkpoint directory: config.json plus the weights in one model.safetensors,
// in shards listed by model.safetensors.index.json, or in any *.safetensors files. Tensors are
// read as f32 whatever their stored dtype; FP8 (E4M3) weights with a "<name>_scale_inv" tensor
// beside them (DeepSeek-V3/R1) are dequantized with their block scales.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "convert/safetensors.h"
#include "core/status.h"

namespace fathom::convert {

// Parses a JSON file whose top level must be an object; errors name the path.
Expected<nlohmann::json> read_json_object(const std::string& path);

class HfCheckpoint {
 public:
  static Expected<std::unique_ptr<HfCheckpoint>> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const nlohmann::json& config() const { return config_; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  const StTensor* find(const std::string& name) const;
  // Values of tensor `name` (shape: outermost first) as f32; block-scaled FP8 is dequantized.
  Status read_f32(const std::string& name, std::vector<float>* out, std::vector<int64_t>* shape = nullptr) const;
  // Names of every tensor in the checkpoint, sorted.
  std::vector<std::string> names() const;

 private:
  std::string dir_;                                       // the checkpoint directory
  nlohmann::json config_;                                 // parsed config.json
  int64_t fp8_block_ = 128;                               // quantization_config.weight_block_size
  std::vector<std::unique_ptr<SafetensorsFile>> files_;   // the mapped shards
  std::map<std::string, const StTensor*> index_;          // tensor name -> entry in one shard
};

}  // namespace fathom::convert
