// `fathom inspect FILE.gguf`: what a GGUF file holds — container facts, every metadata key with
// its type and value, the tensor list, and bytes per dtype — as text or as JSON.
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "gguf/gguf.h"
#include "model/config.h"
#include "tools/args.h"
#include "tools/commands.h"

namespace fathom::tools {

namespace {

using gguf::GgufFile;
using gguf::TensorInfo;
using gguf::Value;
using gguf::ValueType;
using json = nlohmann::ordered_json;

struct InspectOptions {
  std::string path;        // GGUF file to inspect
  bool json = false;       // print JSON instead of text
  bool no_tensors = false;  // leave out the per-tensor list
  int64_t max_items = 8;   // array elements shown per metadata value; 0 = all
};

// Architecture-aware lines (label, value) shown after the container facts, in both the text and
// the JSON output: the model summary and KV-cache size per token (MLA-aware). Files that are not
// runnable models (vocab-only files) get none.
std::vector<std::pair<std::string, std::string>> architecture_summary(const GgufFile& file) {
  std::vector<std::pair<std::string, std::string>> lines;
  auto config = ModelConfig::from_gguf(file);
  if (!config) {
    if (!file.tensors().empty()) lines.push_back({"model", "not runnable: " + config.status().to_string()});
    return lines;
  }
  const ModelConfig& c = *config;
  lines.push_back({"model", c.summary()});
  // KV cache per token: what fathom stores (f32 today) and the f16 size other engines quote.
  const int64_t values = c.n_layer * c.kv_values_per_token_per_layer();
  std::string kv = strprintf("%lld values/token (%lld layers x %lld)", static_cast<long long>(values), static_cast<long long>(c.n_layer),
                             static_cast<long long>(c.kv_values_per_token_per_layer()));
  kv += strprintf(" = %.1f KiB/token f32, %.1f KiB/token f16", values * 4 / 1024.0, values * 2 / 1024.0);
  if (c.arch == Arch::kDeepseek2) {
    const int64_t mha = c.n_layer * c.n_head * (c.head_dim_k + c.head_dim_v);
    kv += strprintf("; MLA latent (kv_lora_rank %lld + rope %lld) vs %lld values/token for a non-absorbed cache "
                    "(n_head x (k + v)): %.1fx smaller",
                    static_cast<long long>(c.kv_lora_rank), static_cast<long long>(c.n_rot), static_cast<long long>(mha),
                    static_cast<double>(mha) / static_cast<double>(values));
  }
  lines.push_back({"kv cache", kv});
  return lines;
}

// Tensors, bytes and parameters of one dtype.
struct DTypeTotals {
  size_t n_tensors = 0;   // tensors stored in this dtype
  uint64_t n_bytes = 0;   // their data bytes
  int64_t n_params = 0;   // their element count
};

std::map<uint32_t, DTypeTotals> totals_by_dtype(const GgufFile& file) {
  std::map<uint32_t, DTypeTotals> totals;  // keyed by ggml type id, so the table is in id order
  for (const TensorInfo& t : file.tensors()) {
    DTypeTotals& d = totals[static_cast<uint32_t>(t.view.dtype)];
    ++d.n_tensors;
    d.n_bytes += t.n_bytes;
    d.n_params += t.view.n_elements();
  }
  return totals;
}

int64_t total_params(const GgufFile& file) {
  int64_t n = 0;
  for (const TensorInfo& t : file.tensors()) n += t.view.n_elements();
  return n;
}

// "1182656" -> "1,182,656"
std::string with_commas(uint64_t v) {
  std::string digits = std::to_string(v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  size_t u = 0;
  while (v >= 1024.0 && u + 1 < std::size(units)) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? strprintf("%" PRIu64 " B", n) : strprintf("%.2f %s", v, units[u]);
}

std::string human_count(int64_t n) {
  if (n >= 1000000000) return strprintf("%.2fB", static_cast<double>(n) / 1e9);
  if (n >= 1000000) return strprintf("%.2fM", static_cast<double>(n) / 1e6);
  if (n >= 1000) return strprintf("%.2fK", static_cast<double>(n) / 1e3);
  return std::to_string(n);
}

// "u32", "string", "[f32]", "[[i32]]"-style type label for the metadata listing.
std::string type_label(const Value& v) {
  if (v.type != ValueType::kArray) return gguf::value_type_name(v.type);
  return std::string("[") + gguf::value_type_name(v.elem_type) + "]";
}

// ---------------------------------------------------------------------------------------------
// JSON

// A numeric array element (held as a double) as a JSON number of its element type. 64-bit
// elements near the type's limits round up to 2^64 / 2^63 as doubles, so they are clamped
// before the cast, which would otherwise be undefined.
json number_json(double x, ValueType elem_type) {
  switch (elem_type) {
    case ValueType::kBool: return x != 0.0;
    case ValueType::kFloat32: case ValueType::kFloat64: return x;
    case ValueType::kUint64: case ValueType::kUint32: case ValueType::kUint16: case ValueType::kUint8:
      if (x >= 18446744073709551616.0) return std::numeric_limits<uint64_t>::max();
      return x <= 0 ? uint64_t{0} : static_cast<uint64_t>(x);
    default:
      if (x >= 9223372036854775808.0) return std::numeric_limits<int64_t>::max();
      if (x <= -9223372036854775808.0) return std::numeric_limits<int64_t>::min();
      return static_cast<int64_t>(x);
  }
}

json value_json(const Value& v, size_t max_items) {
  switch (v.type) {
    case ValueType::kUint8: case ValueType::kUint16: case ValueType::kUint32: case ValueType::kUint64: return v.u64;
    case ValueType::kInt8: case ValueType::kInt16: case ValueType::kInt32: case ValueType::kInt64: return v.i64;
    case ValueType::kFloat32: case ValueType::kFloat64: return v.f64;
    case ValueType::kBool: return v.b;
    case ValueType::kString: return v.str;
    case ValueType::kArray: break;
  }
  json items = json::array();
  const size_t n = std::min(v.array_size(), max_items);
  for (size_t i = 0; i < n; ++i) {
    if (v.elem_type == ValueType::kString) {
      items.push_back(v.strings[i]);
    } else if (v.elem_type == ValueType::kArray) {
      items.push_back(value_json(v.arrays[i], max_items));
    } else {
      items.push_back(number_json(v.numbers[i], v.elem_type));
    }
  }
  return items;
}

json inspect_json(const GgufFile& file, const InspectOptions& opt, size_t max_items) {
  json out;
  out["path"] = file.path();
  out["file_size"] = file.file_size();
  out["version"] = file.version();
  out["architecture"] = file.architecture();
  out["alignment"] = file.alignment();
  out["data_offset"] = file.data_offset();
  out["tensor_count"] = file.tensors().size();
  out["parameter_count"] = total_params(file);
  json summary = json::object();
  for (const auto& [label, value] : architecture_summary(file)) summary[label] = value;
  out["summary"] = summary;

  json metadata = json::array();
  for (const auto& [key, value] : file.metadata()) {
    json entry;
    entry["key"] = key;
    entry["type"] = gguf::value_type_name(value.type);
    if (value.type == ValueType::kArray) {
      entry["elem_type"] = gguf::value_type_name(value.elem_type);
      entry["count"] = value.array_size();
      entry["truncated"] = value.array_size() > max_items;
    }
    entry["value"] = value_json(value, max_items);
    metadata.push_back(std::move(entry));
  }
  out["metadata"] = std::move(metadata);

  if (!opt.no_tensors) {
    json tensors = json::array();
    for (const TensorInfo& t : file.tensors()) {
      json shape = json::array();
      for (int d = 0; d < t.view.n_dims; ++d) shape.push_back(t.view.ne[static_cast<size_t>(d)]);
      tensors.push_back({{"name", t.view.name},
                         {"dtype", dtype_name(t.view.dtype)},
                         {"shape", std::move(shape)},
                         {"offset", t.offset},
                         {"bytes", t.n_bytes},
                         {"elements", t.view.n_elements()}});
    }
    out["tensors"] = std::move(tensors);
  }

  json dtypes = json::array();
  for (const auto& [id, d] : totals_by_dtype(file)) {
    dtypes.push_back({{"dtype", dtype_name(static_cast<DType>(id))},
                      {"tensors", d.n_tensors},
                      {"bytes", d.n_bytes},
                      {"parameters", d.n_params}});
  }
  out["dtypes"] = std::move(dtypes);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Text

std::string inspect_text(const GgufFile& file, const InspectOptions& opt, size_t max_items) {
  std::string s;
  auto line = [&s](const std::string& label, const std::string& value) {
    s += strprintf("%-16s %s\n", (label + ":").c_str(), value.c_str());
  };
  line("file", file.path());
  line("size", with_commas(file.file_size()) + " bytes (" + human_bytes(file.file_size()) + ")");
  line("gguf version", std::to_string(file.version()));
  line("architecture", file.architecture().empty() ? "(none)" : file.architecture());
  line("alignment", std::to_string(file.alignment()));
  line("data offset", with_commas(file.data_offset()));
  line("tensors", std::to_string(file.tensors().size()));
  const int64_t n_params = total_params(file);
  line("parameters", human_count(n_params) + " (" + with_commas(static_cast<uint64_t>(n_params)) + ")");
  for (const auto& [label, value] : architecture_summary(file)) line(label, value);

  size_t key_width = 8;
  for (const auto& [key, value] : file.metadata()) key_width = std::max(key_width, std::min<size_t>(key.size(), 48));
  s += strprintf("\nmetadata (%zu keys):\n", file.metadata().size());
  for (const auto& [key, value] : file.metadata()) {
    s += strprintf("  %-*s  %-8s  %s\n", static_cast<int>(key_width), key.c_str(), type_label(value).c_str(),
                   value.to_display_string(max_items).c_str());
  }

  if (!opt.no_tensors && !file.tensors().empty()) {
    size_t name_width = 4;
    for (const TensorInfo& t : file.tensors()) name_width = std::max(name_width, std::min<size_t>(t.view.name.size(), 48));
    s += strprintf("\ntensors (%zu):\n", file.tensors().size());
    s += strprintf("  %-*s  %-6s  %-24s  %14s  %14s\n", static_cast<int>(name_width), "name", "dtype", "shape", "bytes",
                   "offset");
    for (const TensorInfo& t : file.tensors()) {
      s += strprintf("  %-*s  %-6s  %-24s  %14s  %14s\n", static_cast<int>(name_width), t.view.name.c_str(),
                     dtype_name(t.view.dtype), t.view.shape_string().c_str(), with_commas(t.n_bytes).c_str(),
                     with_commas(t.offset).c_str());
    }
  }

  if (!file.tensors().empty()) {
    uint64_t total_bytes = 0;
    const auto totals = totals_by_dtype(file);
    for (const auto& [id, d] : totals) total_bytes += d.n_bytes;
    s += "\nbytes per dtype:\n";
    s += strprintf("  %-6s  %8s  %16s  %12s  %7s\n", "dtype", "tensors", "bytes", "", "share");
    for (const auto& [id, d] : totals) {
      s += strprintf("  %-6s  %8zu  %16s  %12s  %6.1f%%\n", dtype_name(static_cast<DType>(id)), d.n_tensors,
                     with_commas(d.n_bytes).c_str(), human_bytes(d.n_bytes).c_str(),
                     100.0 * static_cast<double>(d.n_bytes) / static_cast<double>(total_bytes));
    }
  }
  return s;
}

}  // namespace

int cmd_inspect(const Args& args) {
  InspectOptions opt;
  ArgParser parser("fathom inspect FILE.gguf [options]",
                   "Show a GGUF file's version, architecture, metadata, tensors and bytes per dtype.");
  parser.add_string("-m,--model", "FILE", "GGUF file to inspect (or give it as the argument)", &opt.path);
  parser.add_positional_alias("FILE.gguf", "-m");
  parser.add_flag("--json", "print everything as one JSON object", &opt.json);
  parser.add_flag("--no-tensors", "leave out the tensor list", &opt.no_tensors);
  parser.add_int("--max-items", "N", "array elements shown per metadata value (default 8; 0 = all)", &opt.max_items,
                 Range::between(0, 1 << 30));
  if (std::optional<int> exit_code = parser.parse(args)) return *exit_code;
  if (opt.path.empty()) return parser.fail("missing argument FILE.gguf");
  const size_t max_items = opt.max_items == 0 ? SIZE_MAX : static_cast<size_t>(opt.max_items);

  Expected<std::unique_ptr<GgufFile>> file = GgufFile::open(opt.path);
  if (!file) {
    std::fprintf(stderr, "fathom inspect: %s\n", file.status().to_string().c_str());
    return 1;
  }
  if (opt.json) {
    // Metadata strings are not guaranteed UTF-8; replace bad bytes rather than throw.
    const std::string text = inspect_json(**file, opt, max_items).dump(2, ' ', false, json::error_handler_t::replace);
    std::fprintf(stdout, "%s\n", text.c_str());
  } else {
    std::fputs(inspect_text(**file, opt, max_items).c_str(), stdout);
  }
  return 0;
}

}  // namespace fathom::tools
