#include "model/placement.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <regex>

#include "model/weights.h"
#include "core/format.h"

namespace fathom {

namespace {

struct Override {
  std::string pattern;
  std::regex regex;
  Placed where = Placed::kCpu;
};

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

Expected<std::vector<Override>> parse_overrides(const std::vector<std::string>& specs, const std::string& device) {
  std::vector<Override> out;
  for (const std::string& spec : specs) {
    const size_t eq = spec.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      return error(ErrorCode::kInvalidArgument, "--override-tensor '" + spec + "': expected REGEX=TARGET, e.g. 'ffn_.*_exps=cpu'");
    Override o;
    o.pattern = spec.substr(0, eq);
    const std::string target = lower(spec.substr(eq + 1));
    if (target == "cpu") {
      o.where = Placed::kCpu;
    } else if (target == "gpu" || target == device) {
      if (device == "cpu")
        return error(ErrorCode::kInvalidArgument,
                     "--override-tensor '" + spec + "' puts tensors on an accelerator, but the device is cpu; add --device cuda or --device opencl");
      o.where = Placed::kDevice;
    } else if (target == "cuda" || target == "opencl") {
      return error(ErrorCode::kInvalidArgument, "--override-tensor '" + spec + "': the device in use is " + device +
                                                    ", not " + target + "; targets are cpu, gpu or " + device);
    } else {
      return error(ErrorCode::kInvalidArgument,
                   "--override-tensor '" + spec + "': unknown target '" + target + "'; use cpu, gpu, cuda or opencl");
    }
    try {
      o.regex = std::regex(o.pattern, std::regex::ECMAScript | std::regex::optimize);
    } catch (const std::regex_error& e) {
      return error(ErrorCode::kInvalidArgument, "--override-tensor '" + spec + "': bad regular expression: " + e.what());
    }
    out.push_back(std::move(o));
  }
  return out;
}

bool is_routed_expert(const std::string& name) { return name.find("_exps.") != std::string::npos; }

// "0-3, 7, 9-11"
std::string layer_ranges(const std::vector<int64_t>& sorted) {
  std::string out;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    out += j == i ? std::to_string(sorted[i]) : std::to_string(sorted[i]) + "-" + std::to_string(sorted[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace

Expected<Placement> plan_placement(const gguf::GgufFile& file, const ModelConfig& config, const std::string& device,
                                   const PlacementOptions& options) {
  const bool accelerated = device != "cpu";
  const char* flag = options.cpu_moe ? "--cpu-moe" : options.n_cpu_moe > 0 ? "--n-cpu-moe" : options.gpu_layers > 0 ? "--gpu-layers" : nullptr;
  if (!accelerated && flag)
    return error(ErrorCode::kInvalidArgument, std::string(flag) + " needs an accelerator; add --device cuda or --device opencl");
  if (options.gpu_layers < -1) return error(ErrorCode::kInvalidArgument, "--gpu-layers must not be negative");
  if (options.n_cpu_moe < 0) return error(ErrorCode::kInvalidArgument, "--n-cpu-moe must not be negative");
  FATHOM_ASSIGN_OR_RETURN(std::vector<Override> overrides, parse_overrides(options.overrides, device));

  Placement p;
  p.device = device;
  const int64_t n_layer = config.n_layer;
  const int64_t on_device_layers = options.gpu_layers < 0 ? n_layer + 1 : options.gpu_layers;
  const bool head_on_device = on_device_layers > n_layer;
  auto layer_where = [&](int64_t layer) {  // --gpu-layers: the last on_device_layers layers
    return accelerated && layer >= n_layer - on_device_layers ? Placed::kDevice : Placed::kCpu;
  };
  const bool tied = file.find_tensor("output.weight") == nullptr;
  for (const gguf::TensorInfo& info : file.tensors()) {
    TensorPlacement t;
    t.name = info.view.name;
    t.layer = block_index(t.name);
    if (t.layer >= n_layer) continue;  // MTP/NextN blocks are not run
    t.bytes = info.n_bytes;
    t.data = info.view.data;
    Placed where = Placed::kCpu;
    if (accelerated) {
      if (t.layer >= 0) {
        where = layer_where(t.layer);
        if ((options.cpu_moe || t.layer < options.n_cpu_moe) && is_routed_expert(t.name)) where = Placed::kCpu;
      } else if (t.name == "token_embd.weight") {
        where = tied && head_on_device ? Placed::kDevice : Placed::kCpu;
      } else {
        where = head_on_device ? Placed::kDevice : Placed::kCpu;
      }
      for (const Override& o : overrides)
        if (std::regex_search(t.name, o.regex)) {
          where = o.where;
          break;
        }
    }
    t.where = where;
    p.tensors.push_back(std::move(t));
  }
  // A layer's attention (and KV cache) goes where its attn_output matrix is; by the layer rule in
  // a layer without one (should not happen).
  for (int64_t l = 0; l < n_layer; ++l) p.attention.push_back(layer_where(l));
  for (const TensorPlacement& t : p.tensors)
    if (t.layer >= 0 && t.name.find(".attn_output.") != std::string::npos) p.attention[static_cast<size_t>(t.layer)] = t.where;
  return p;
}

uint64_t Placement::weight_bytes(Placed where) const {
  uint64_t n = 0;
  for (const TensorPlacement& t : tensors)
    if (t.where == where) n += t.bytes;
  return n;
}

std::vector<PlacedBackend::Range> Placement::ranges() const {
  std::vector<PlacedBackend::Range> out;
  for (const TensorPlacement& t : tensors) out.push_back({t.data, t.bytes, t.where});
  return out;
}

int64_t Placement::layers_with_attention(Placed where) const {
  return static_cast<int64_t>(std::count(attention.begin(), attention.end(), where));
}

std::vector<std::string> Placement::describe(uint64_t kv_bytes_per_layer) const {
  // A layer belongs to the backend holding most of its tensors; the tensors of a layer held
  // elsewhere are named by kind, grouped over the layers they share: "layers 0-26 except
  // ffn_down_exps, ffn_gate_exps, ffn_up_exps of 1-26" and "ffn_down_exps, ... of layers 1-26".
  const int64_t n_layer = static_cast<int64_t>(attention.size());
  std::vector<int> device_count(static_cast<size_t>(n_layer), 0), total(static_cast<size_t>(n_layer), 0);
  for (const TensorPlacement& t : tensors) {
    if (t.layer < 0) continue;
    ++total[static_cast<size_t>(t.layer)];
    if (t.where == Placed::kDevice) ++device_count[static_cast<size_t>(t.layer)];
  }
  auto owner = [&](int64_t l) {
    return 2 * device_count[static_cast<size_t>(l)] >= total[static_cast<size_t>(l)] ? Placed::kDevice : Placed::kCpu;
  };
  auto kind_of = [](const std::string& name) {  // "blk.3.ffn_up_exps.weight" -> "ffn_up_exps"
    std::string k = name.substr(name.find('.', 4) + 1);
    return k.substr(0, k.rfind('.'));
  };
  auto list = [](const std::map<std::string, std::vector<int64_t>>& kinds, bool layers_word) {
    std::map<std::vector<int64_t>, std::vector<std::string>> by_layers;  // kinds on the same layers together
    for (const auto& [kind, ls] : kinds) by_layers[ls].push_back(kind);
    std::string out;
    for (const auto& [ls, ks] : by_layers) {
      std::string k;
      for (const std::string& s : ks) k += (k.empty() ? "" : ", ") + s;
      out += (out.empty() ? "" : "; ") + k + " of " + (layers_word ? (ls.size() == 1 ? "layer " : "layers ") : "") + layer_ranges(ls);
    }
    return out;
  };
  std::vector<std::string> lines;
  for (Placed where : {Placed::kDevice, Placed::kCpu}) {
    const uint64_t bytes = weight_bytes(where);
    const int64_t kv_layers = layers_with_attention(where);
    if (bytes == 0 && kv_layers == 0) continue;
    std::vector<int64_t> owned;
    for (int64_t l = 0; l < n_layer; ++l)
      if (total[static_cast<size_t>(l)] > 0 && owner(l) == where) owned.push_back(l);
    std::map<std::string, std::vector<int64_t>> away, guests;  // kinds elsewhere in owned layers; kinds here in others
    std::vector<std::string> globals;
    for (const TensorPlacement& t : tensors) {
      if (t.layer < 0) {
        if (t.where == where) globals.push_back(t.name.substr(0, t.name.rfind('.')));
        continue;
      }
      const bool owned_here = owner(t.layer) == where;
      if (owned_here == (t.where == where)) continue;
      auto& v = (owned_here ? away : guests)[kind_of(t.name)];
      if (v.empty() || v.back() != t.layer) v.push_back(t.layer);
    }
    std::vector<std::string> parts;
    if (!owned.empty())
      parts.push_back((owned.size() == 1 ? "layer " : "layers ") + layer_ranges(owned) + (away.empty() ? "" : " except " + list(away, false)));
    if (!guests.empty()) parts.push_back(list(guests, true));
    for (const std::string& g : globals) parts.push_back(g);
    std::string what;
    for (const std::string& s : parts) what += (what.empty() ? "" : "; ") + s;
    const std::string name = where == Placed::kDevice ? device : std::string("cpu");
    std::string memory = format_bytes(bytes) + " weights";
    if (kv_layers > 0)
      memory += strprintf(" + %s KV cache (%lld layer%s)", format_bytes(kv_bytes_per_layer * static_cast<uint64_t>(kv_layers)).c_str(),
                          static_cast<long long>(kv_layers), kv_layers == 1 ? "" : "s");
    lines.push_back(strprintf("%-6s %s: %s", name.c_str(), memory.c_str(), what.empty() ? "-" : what.c_str()));
  }
  return lines;
}

}  // namespace fathom
