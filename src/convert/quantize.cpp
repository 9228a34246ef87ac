#include "convert/quantize.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <numeric>

#include "core/threadpool.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

namespace fathom::convert {

namespace {

// llama.cpp's LLAMA_FTYPE_* values for the types offered here.
const FileType kFileTypes[] = {
    {"Q8_0", 7, DType::Q8_0, false, false},  {"Q6_K", 18, DType::Q6_K, false, false},
    {"Q5_K_M", 17, DType::Q5_K, true, false}, {"Q5_K_S", 16, DType::Q5_K, false, false},
    {"Q4_K_M", 15, DType::Q4_K, true, false}, {"Q4_K_S", 14, DType::Q4_K, false, true},
    {"Q4_0", 2, DType::Q4_0, false, false},  {"IQ4_NL", 25, DType::IQ4_NL, false, false},
    {"IQ4_XS", 30, DType::IQ4_XS, false, false}, {"F16", 1, DType::F16, false, false},
    {"BF16", 32, DType::BF16, false, false},  {"F32", 0, DType::F32, false, false},
};

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// ggml_n_dims: trailing extents of 1 do not count; a scalar is 1-D.
int ggml_n_dims(const TensorView& t) {
  for (int i = 3; i >= 1; --i)
    if (t.ne[static_cast<size_t>(i)] > 1) return i + 1;
  return 1;
}

// "blk.N." -> N; -1 for tensors outside the blocks.
int block_index(const std::string& name) {
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
  return layer;
}

}  // namespace

std::optional<FileType> parse_file_type(std::string_view name) {
  std::string upper(name);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const FileType& f : kFileTypes)
    if (upper == f.name) return f;
  return std::nullopt;
}

std::string file_type_names() {
  std::string s;
  for (const FileType& f : kFileTypes) s += (s.empty() ? "" : ", ") + f.name;
  return s;
}

bool use_more_bits(int64_t i_layer, int64_t n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

DType fallback_type(DType t, int64_t n_per_row) {
  if (n_per_row % traits(t).block_size == 0) return t;
  DType f = DType::F16;
  switch (t) {
    case DType::Q4_K: f = DType::Q5_0; break;
    case DType::Q5_K: f = DType::Q5_1; break;
    case DType::Q6_K: f = DType::Q8_0; break;
    case DType::Q2_K: case DType::Q3_K: f = DType::Q4_0; break;
    case DType::IQ4_XS: f = DType::IQ4_NL; break;
    case DType::IQ4_NL: f = DType::Q5_0; break;
    default: break;
  }
  if (n_per_row % traits(f).block_size != 0) f = DType::F16;
  return f;
}

bool llama_tensor_order(const std::string& a, const std::string& b) {
  const int la = block_index(a), lb = block_index(b);
  if (la != lb) return la < lb;
  return a < b;
}

QuantMix::QuantMix(const FileType& ftype, std::string arch, int64_t n_layer, int64_t n_expert, int n_attention_wv,
                   bool has_output)
    : ftype_(ftype), arch_(std::move(arch)), n_layer_(n_layer), n_expert_(n_expert), n_attention_wv_(n_attention_wv),
      has_output_(has_output) {}

bool QuantMix::is_quantizable(const TensorView& t) {
  const std::string& name = t.name;
  return name.ends_with("weight") && ggml_n_dims(t) >= 2 &&
         !contains(name, "_norm.weight") && !contains(name, "ffn_gate_inp.weight");
}

DType QuantMix::type_for(const TensorView& t) {
  if (!is_quantizable(t)) return t.dtype;
  if (!traits(ftype_.base).is_quantized) return ftype_.base;  // F32/F16/BF16: no mix
  const DType chosen = mixed_type(t.name, t);
  const DType stored = fallback_type(chosen, t.ne[0]);
  if (stored != chosen) ++n_fallback_;
  return stored;
}

// llama.cpp's llama_tensor_get_type, restricted to the file types offered here.
DType QuantMix::mixed_type(const std::string& name, const TensorView& t) {
  const std::string& f = ftype_.name;
  const bool iq4 = ftype_.base == DType::IQ4_NL || ftype_.base == DType::IQ4_XS;
  DType type = ftype_.base;
  if (name == "output.weight" || (!has_output_ && name == "token_embd.weight")) {
    // The output projection matters most per bit: Q6_K unless Q8_0 was asked for.
    if (t.ne[0] % traits(type).block_size != 0) {
      type = DType::Q8_0;
    } else if (type != DType::Q8_0) {
      type = DType::Q6_K;
    }
  } else if (name == "token_embd.weight") {
    // Embedding rows are looked up, not multiplied: the base type is fine for these mixes.
  } else if (contains(name, "attn_v.weight")) {
    if (ftype_.medium_mix && use_more_bits(i_attention_wv_, n_attention_wv_)) {
      type = DType::Q6_K;
    } else if (ftype_.small_mix && i_attention_wv_ < 4) {
      type = DType::Q5_K;
    } else if (iq4 && n_gqa_ >= 4) {
      type = DType::Q5_K;  // shared K/V heads: attn_v is small and each row serves several heads
    }
    // llama.cpp's LLM_TYPE_70B (80 llama layers, GQA): attn_v is 8x smaller than attn_q there.
    if (arch_ == "llama" && n_layer_ == 80 && (type == DType::Q3_K || type == DType::Q4_K)) type = DType::Q5_K;
    if (n_expert_ == 8) type = DType::Q8_0;
    ++i_attention_wv_;
  } else if (contains(name, "attn_k.weight")) {
    if (n_expert_ == 8) type = DType::Q8_0;
  } else if (contains(name, "ffn_down")) {
    // With experts, ffn_down, _exps and _shexp share a layer, so the layer comes from the name.
    int64_t i_layer = i_ffn_down_;
    if (n_expert_ > 1) i_layer = std::max(0, block_index(name));
    if ((f == "Q4_K_M" || f == "Q5_K_M") && use_more_bits(i_layer, n_layer_)) {
      type = DType::Q6_K;
    } else if (f == "Q4_K_S" && i_layer < n_layer_ / 8) {
      type = DType::Q5_K;
    } else if (f == "Q4_0" && has_imatrix_ && i_layer < n_layer_ / 8) {
      type = DType::Q4_1;
    } else if (iq4 && !has_imatrix_ && i_layer < n_layer_ / 8) {
      type = DType::Q5_K;
    }
    ++i_ffn_down_;
  } else if (contains(name, "attn_output.weight")) {
    if (n_expert_ == 8 && (f == "Q4_K_S" || f == "Q4_K_M" || iq4)) type = DType::Q5_K;
  } else if (contains(name, "attn_qkv.weight")) {
    if (f == "Q4_K_M") type = DType::Q5_K;
    if (f == "Q5_K_M") type = DType::Q6_K;
  }
  return type;
}

namespace {

// Everything one tensor's fill callback needs, fixed before writing starts.
struct TensorPlan {
  size_t index;               // into in.tensors()
  DType out_type;             // type written
  const float* importance;    // [ne[0] * ne[2]] per-column importance, or nullptr
  uint64_t out_bytes;         // bytes written for this tensor
};

}  // namespace

Expected<QuantizeReport> quantize_model(const gguf::GgufFile& in, const std::string& out_path, const QuantizeOptions& options) {
  const std::string arch = in.architecture();
  const int64_t n_layer = in.get_int(arch + ".block_count").value_or(0);
  const int64_t n_expert = in.get_int(arch + ".expert_count").value_or(0);
  const std::vector<gguf::TensorInfo>& tensors = in.tensors();

  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return llama_tensor_order(tensors[a].view.name, tensors[b].view.name); });
  int n_attention_wv = 0;
  bool has_output = false;
  for (const gguf::TensorInfo& t : tensors) {
    const std::string& n = t.view.name;
    if (contains(n, "attn_v.weight") || contains(n, "attn_qkv.weight") || contains(n, "attn_kv_b.weight")) ++n_attention_wv;
    if (n == "output.weight") has_output = true;
  }
  QuantMix mix(options.ftype, arch, n_layer, n_expert, n_attention_wv, has_output);
  mix.set_has_imatrix(options.imatrix != nullptr);
  const int64_t n_head_kv = in.get_int(arch + ".attention.head_count_kv").value_or(0);
  if (n_head_kv > 0) mix.set_n_gqa(in.get_int(arch + ".attention.head_count").value_or(0) / n_head_kv);
  auto warn = [&](const std::string& msg) {
    if (options.on_warning) options.on_warning(msg);
  };

  QuantizeReport report;
  std::vector<TensorPlan> plans;
  bool warned_requantize = false;
  for (size_t idx : order) {
    const TensorView& t = tensors[idx].view;
    DType out = mix.type_for(t);
    const bool is_output = t.name == "output.weight" || (!has_output && t.name == "token_embd.weight");
    if (options.keep_output_f16 && is_output) out = DType::F16;
    if (out != t.dtype && !quant::can_dequantize(t.dtype))
      return error(ErrorCode::kUnsupported, strprintf("tensor %s: cannot read type %s to convert it to %s", t.name.c_str(),
                                                      dtype_name(t.dtype), dtype_name(out)));
    if (out != t.dtype && !quant::can_quantize(out))
      return error(ErrorCode::kUnsupported, strprintf("tensor %s: cannot write type %s", t.name.c_str(), dtype_name(out)));
    if (out != t.dtype && traits(t.dtype).is_quantized) {
      ++report.n_requantized;
      if (!warned_requantize)
        warn(strprintf("input tensor %s is already %s: requantizing a quantized model compounds the errors of both "
                       "roundings; quantize from the F32/F16/BF16 original when you have it",
                       t.name.c_str(), dtype_name(t.dtype)));
      warned_requantize = true;
    }
    const float* importance = nullptr;
    if (options.imatrix && out != t.dtype && traits(out).is_quantized) {
      auto it = options.imatrix->find(t.name);
      if (it == options.imatrix->end()) {
        warn("no importance data for " + t.name + "; it is quantized unweighted");
      } else if (it->second.size() != static_cast<size_t>(t.ne[0] * t.ne[2])) {
        if (t.name != "token_embd.weight")
          return error(ErrorCode::kInvalidFile,
                       strprintf("imatrix entry %s has %zu values, the tensor needs %lld (columns x experts); was the "
                                 "imatrix made for another model?",
                                 t.name.c_str(), it->second.size(), static_cast<long long>(t.ne[0] * t.ne[2])));
      } else {
        importance = it->second.data();
        ++report.n_with_imatrix;
      }
    }
    const uint64_t out_bytes = row_size(out, t.ne[0]) * static_cast<uint64_t>(t.n_rows());
    report.bytes_in += tensors[idx].n_bytes;
    report.bytes_out += out_bytes;
    ++report.type_counts[dtype_name(out)];
    plans.push_back({idx, out, importance, out_bytes});
  }
  if (mix.n_fallback() > 0)
    warn(strprintf("%d tensors have rows that do not fit the chosen block format and use llama.cpp's fallback type",
                   mix.n_fallback()));

  gguf::GgufWriter w;
  for (const auto& [key, value] : in.metadata()) {
    if (key == "general.quantization_version" || key == "general.file_type" || key.starts_with("split.")) continue;
    w.set(key, value);
  }
  w.set_u32("general.quantization_version", 2);
  w.set_u32("general.file_type", options.ftype.llama_ftype);

  ThreadPool pool(options.n_threads);
  size_t n_done = 0;
  uint64_t bytes_done = 0;
  for (const TensorPlan& plan : plans) {
    const TensorView& t = tensors[plan.index].view;
    std::vector<int64_t> ne(t.ne.begin(), t.ne.begin() + std::max(1, t.n_dims));
    w.add_tensor(t.name, plan.out_type, std::move(ne), [&, plan](uint8_t* dst, size_t n_bytes) -> Status {
      const TensorView& src = tensors[plan.index].view;
      if (plan.out_type == src.dtype) {
        std::memcpy(dst, src.data, n_bytes);
      } else {
        const int64_t n_per_row = src.ne[0], rows_per_matrix = src.ne[1];
        const size_t out_row = row_size(plan.out_type, n_per_row);
        pool.parallel_for(src.n_rows(), 8, [&](int, int64_t begin, int64_t end) {
          std::vector<float> row(static_cast<size_t>(n_per_row));  // [n_per_row] one row in f32
          for (int64_t r = begin; r < end; ++r) {
            quant::dequantize_row(src.dtype, src.row(r), row.data(), n_per_row);
            // Importance is per matrix (expert): ne[0] values for each of the ne[2] matrices.
            const float* imp = plan.importance ? plan.importance + (r / rows_per_matrix % src.ne[2]) * n_per_row : nullptr;
            quant::quantize_row_ref(plan.out_type, row.data(), dst + out_row * static_cast<size_t>(r), n_per_row, imp);
          }
        });
      }
      ++n_done;
      bytes_done += plan.out_bytes;
      if (options.on_tensor) options.on_tensor(n_done, plans.size(), src.name, plan.out_type, bytes_done, report.bytes_out);
      return Status::ok();
    });
  }
  FATHOM_RETURN_IF_ERROR(w.write(out_path));
  return report;
}

}  // namespace fathom::convert
