#include "quant/ftype.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <numeric>

namespace fathom::quant {

namespace {

using F = LlamaFtype;

// The targets, quantized ones from most bits to fewest, then the unquantized ones. A new target
// is one row here: the mix below already has llama.cpp's rules for every LlamaFtype.
constexpr FileType kFileTypes[] = {
    {"Q8_0", F::kQ8_0, DType::Q8_0, true},
    {"Q6_K", F::kQ6_K, DType::Q6_K, true},
    {"Q5_K_M", F::kQ5_K_M, DType::Q5_K, true},
    {"Q5_K_S", F::kQ5_K_S, DType::Q5_K, true},
    {"Q5_1", F::kQ5_1, DType::Q5_1, false},
    {"Q5_0", F::kQ5_0, DType::Q5_0, false},
    {"Q4_K_M", F::kQ4_K_M, DType::Q4_K, true},
    {"Q4_K_S", F::kQ4_K_S, DType::Q4_K, true},
    {"Q4_1", F::kQ4_1, DType::Q4_1, false},
    {"Q4_0", F::kQ4_0, DType::Q4_0, true},
    {"IQ4_NL", F::kIQ4_NL, DType::IQ4_NL, true},
    {"IQ4_XS", F::kIQ4_XS, DType::IQ4_XS, true},
    {"Q3_K_L", F::kQ3_K_L, DType::Q3_K, true},
    {"Q3_K_M", F::kQ3_K_M, DType::Q3_K, true},
    {"IQ3_M", F::kIQ3_M, DType::IQ3_S, true},
    {"IQ3_S", F::kIQ3_S, DType::IQ3_S, true},
    {"Q3_K_S", F::kQ3_K_S, DType::Q3_K, true},
    {"IQ3_XS", F::kIQ3_XS, DType::IQ3_S, true},
    {"IQ3_XXS", F::kIQ3_XXS, DType::IQ3_XXS, true},
    {"Q2_K", F::kQ2_K, DType::Q2_K, true},
    {"IQ2_M", F::kIQ2_M, DType::IQ2_S, true},
    {"IQ2_S", F::kIQ2_S, DType::IQ2_XS, true},  // llama.cpp: IQ2_S files are mostly IQ2_XS, IQ2_M ones IQ2_S
    {"IQ2_XS", F::kIQ2_XS, DType::IQ2_XS, true},
    {"IQ2_XXS", F::kIQ2_XXS, DType::IQ2_XXS, true},
    {"IQ1_M", F::kIQ1_M, DType::IQ1_M, true},
    {"IQ1_S", F::kIQ1_S, DType::IQ1_S, true},
    {"TQ2_0", F::kTQ2_0, DType::TQ2_0, false},
    {"TQ1_0", F::kTQ1_0, DType::TQ1_0, false},
    {"F16", F::kF16, DType::F16, true},
    {"BF16", F::kBF16, DType::BF16, true},
    {"F32", F::kAllF32, DType::F32, false},
};

bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

// ggml_n_dims: trailing extents of 1 do not count; a scalar is 1-D.
int ggml_n_dims(const std::array<int64_t, 4>& ne) {
  for (int i = 3; i >= 1; --i)
    if (ne[static_cast<size_t>(i)] > 1) return i + 1;
  return 1;
}

// llama.cpp's broad tensor categories, tested in its order (attn_qkv before attn_v, ffn_up
// before ffn_gate before ffn_down).
enum class Category {
  kOutput, kTokenEmbd, kAttnQkv, kAttnKvB, kAttnV, kAttnK, kAttnQ, kAttnOutput, kFfnUp, kFfnGate, kFfnDown, kOther
};

Category category_of(std::string_view name) {
  if (name == "output.weight") return Category::kOutput;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return Category::kTokenEmbd;
  if (contains(name, "attn_qkv.weight")) return Category::kAttnQkv;
  if (contains(name, "attn_kv_b.weight")) return Category::kAttnKvB;
  if (contains(name, "attn_v.weight")) return Category::kAttnV;
  if (contains(name, "attn_k.weight")) return Category::kAttnK;
  if (contains(name, "attn_q.weight")) return Category::kAttnQ;
  if (contains(name, "attn_output.weight")) return Category::kAttnOutput;
  if (contains(name, "ffn_up")) return Category::kFfnUp;
  if (contains(name, "ffn_gate")) return Category::kFfnGate;
  if (contains(name, "ffn_down")) return Category::kFfnDown;
  return Category::kOther;
}

// Projections that produce V (MLA's attn_kv_b does): the most quantization-sensitive matrices.
bool is_v_like(Category c) { return c == Category::kAttnV || c == Category::kAttnQkv || c == Category::kAttnKvB; }

template <typename... Fs>
bool any_of(F f, Fs... fs) {
  return ((f == fs) || ...);
}

// llama.cpp's running state over one model: how many V-like tensors and FFN matrices it has seen.
class Mixer {
 public:
  Mixer(const FileType& ftype, const MixModel& m, int n_attention_wv, bool has_output)
      : ftype_(ftype), m_(m), n_attention_wv_(n_attention_wv), has_output_(has_output) {}

  // llama_tensor_get_type_impl: the type before the fallback for rows that do not fit.
  DType choose(const MixTensor& t);

 private:
  // The layer an FFN matrix belongs to: its running count, or (with experts, whose tensors are
  // not one per layer) the block index from its name.
  int64_t ffn_layer(int64_t counter, const std::string& name) const {
    return m_.n_expert > 1 ? std::max(0, block_index(name)) : counter;
  }
  int64_t n_gqa() const { return m_.n_head_kv > 0 ? m_.n_head / m_.n_head_kv : 0; }
  DType choose_low_iquant(Category c);

  const FileType& ftype_;
  const MixModel& m_;
  int n_attention_wv_;      // V-like tensors in the model
  bool has_output_;         // false: token_embd doubles as the output and is typed like it
  int i_attention_wv_ = 0;  // V-like tensors typed so far
  int i_ffn_down_ = 0;      // ffn_down tensors typed so far
  int i_ffn_gate_ = 0;      // ffn_gate tensors typed so far
  int i_ffn_up_ = 0;        // ffn_up tensors typed so far
};

// The 1-2 bit i-quant mixes, which spend their bits differently from the rest.
DType Mixer::choose_low_iquant(Category c) {
  const F f = ftype_.id;
  const bool iq2_s_or_m = any_of(f, F::kIQ2_S, F::kIQ2_M);
  DType type = ftype_.base;
  if (is_v_like(c)) {
    if (n_gqa() >= 4 || m_.n_expert >= 4) {
      type = DType::Q4_K;
    } else {
      type = iq2_s_or_m ? DType::IQ3_S : DType::Q2_K;
    }
    ++i_attention_wv_;
  } else if (m_.n_expert == 8 && c == Category::kAttnK) {
    type = DType::Q4_K;
  } else if (c == Category::kFfnDown) {
    if (i_ffn_down_ < m_.n_layer / 8) type = iq2_s_or_m ? DType::IQ3_S : DType::Q2_K;
    ++i_ffn_down_;
  } else if (c == Category::kAttnOutput) {
    if (m_.n_expert == 8) {
      type = DType::Q5_K;
    } else if (any_of(f, F::kIQ1_S, F::kIQ1_M)) {
      type = DType::IQ2_XXS;
    } else if (iq2_s_or_m) {
      type = DType::IQ3_S;
    }
  }
  return type;
}

DType Mixer::choose(const MixTensor& t) {
  const F f = ftype_.id;
  const bool falcon = m_.arch == "falcon";
  const Category c = category_of(t.name);
  DType type = ftype_.base;
  if (c == Category::kOutput || (!has_output_ && c == Category::kTokenEmbd)) {
    // The output projection matters most per bit.
    if (falcon || t.ne[0] % traits(type).block_size != 0) return DType::Q8_0;
    if (any_of(f, F::kIQ2_XXS, F::kIQ2_XS, F::kIQ3_XXS, F::kIQ1_S, F::kIQ2_S, F::kIQ2_M, F::kIQ1_M)) return DType::Q5_K;
    return type == DType::Q8_0 ? type : DType::Q6_K;
  }
  if (c == Category::kTokenEmbd) {
    // Embedding rows are looked up, not multiplied: only the lowest mixes raise them.
    if (any_of(f, F::kIQ2_XXS, F::kIQ2_XS, F::kIQ1_S, F::kIQ1_M)) return DType::Q2_K;
    if (any_of(f, F::kIQ2_S, F::kIQ2_M, F::kIQ3_XXS)) return DType::IQ3_S;
    if (any_of(f, F::kTQ1_0, F::kTQ2_0)) return DType::Q4_K;
    return type;
  }
  if (any_of(f, F::kIQ2_XXS, F::kIQ2_XS, F::kIQ1_S, F::kIQ2_S, F::kIQ2_M, F::kIQ1_M)) return choose_low_iquant(c);
  if (is_v_like(c)) {
    if (f == F::kQ2_K) {
      type = n_gqa() >= 4 ? DType::Q4_K : DType::Q3_K;
    } else if (f == F::kQ2_K_S && n_gqa() >= 4) {
      type = DType::Q4_K;
    } else if (f == F::kIQ3_XXS) {
      type = n_gqa() >= 4 ? DType::Q4_K : !m_.has_imatrix ? DType::IQ3_S : DType::IQ3_XXS;
    } else if (any_of(f, F::kIQ3_XS, F::kIQ3_S) && n_gqa() >= 4) {
      type = DType::Q4_K;
    } else if (f == F::kIQ3_M) {
      type = DType::Q4_K;
    } else if (f == F::kQ3_K_M) {
      type = i_attention_wv_ < 2 ? DType::Q5_K : DType::Q4_K;
    } else if (f == F::kQ3_K_L) {
      type = DType::Q5_K;
    } else if (any_of(f, F::kIQ4_NL, F::kIQ4_XS) && n_gqa() >= 4) {
      type = DType::Q5_K;
    } else if (any_of(f, F::kQ4_K_M, F::kQ5_K_M) && use_more_bits(i_attention_wv_, n_attention_wv_)) {
      type = DType::Q6_K;
    } else if (f == F::kQ4_K_S && i_attention_wv_ < 4) {
      type = DType::Q5_K;
    }
    // llama.cpp's LLM_TYPE_70B (80 llama layers, GQA): attn_v is 8x smaller than attn_q there.
    if (m_.arch == "llama" && m_.n_layer == 80 && (type == DType::Q3_K || type == DType::Q4_K)) type = DType::Q5_K;
    if (m_.n_expert == 8) type = DType::Q8_0;
    ++i_attention_wv_;
  } else if (c == Category::kAttnK) {
    if (m_.n_expert == 8) {
      type = DType::Q8_0;
    } else if (f == F::kIQ3_XS) {
      type = DType::IQ3_XXS;
    } else if (f == F::kIQ3_XXS) {
      type = DType::IQ2_S;
    }
  } else if (c == Category::kAttnQ) {
    if (f == F::kIQ3_XS) {
      type = DType::IQ3_XXS;
    } else if (f == F::kIQ3_XXS) {
      type = DType::IQ2_S;
    }
  } else if (c == Category::kFfnDown) {
    const int64_t i_layer = ffn_layer(i_ffn_down_, t.name), n_layer = m_.n_layer;
    if (f == F::kQ2_K) {
      type = DType::Q3_K;
    } else if (f == F::kQ2_K_S) {
      if (i_layer < n_layer / 8) type = DType::Q4_K;
    } else if (f == F::kIQ3_XXS && !m_.has_imatrix) {
      type = i_layer < n_layer / 8 ? DType::Q4_K : DType::Q3_K;
    } else if (f == F::kQ3_K_M) {
      if (i_layer < n_layer / 16) {
        type = DType::Q5_K;
      } else if (!falcon || use_more_bits(i_layer, n_layer)) {
        type = DType::Q4_K;
      }
    } else if (f == F::kIQ3_M && (i_layer < n_layer / 8 || (m_.n_expert == 8 && use_more_bits(i_layer, n_layer)))) {
      type = DType::Q4_K;
    } else if (f == F::kQ3_K_L) {
      type = falcon ? DType::Q4_K : DType::Q5_K;
    } else if (f == F::kQ4_K_M) {
      if (falcon) {
        type = i_layer < n_layer / 16 ? DType::Q6_K : use_more_bits(i_layer, n_layer) ? DType::Q5_K : DType::Q4_K;
      } else if (use_more_bits(i_layer, n_layer)) {
        type = DType::Q6_K;
      }
    } else if (i_layer < n_layer / 8 && any_of(f, F::kIQ4_NL, F::kIQ4_XS) && !m_.has_imatrix) {
      type = DType::Q5_K;
    } else if (f == F::kQ5_K_M && use_more_bits(i_layer, n_layer)) {
      type = DType::Q6_K;
    } else if (f == F::kQ4_K_S && !falcon && i_layer < n_layer / 8) {
      type = DType::Q5_K;
    } else if (any_of(f, F::kQ4_0, F::kQ5_0) && m_.has_imatrix && i_layer < n_layer / 8) {
      // Guards the first ffn_down layers, which go wrong even with an imatrix at 4-5 bits.
      type = f == F::kQ4_0 ? DType::Q4_1 : DType::Q5_1;
    }
    ++i_ffn_down_;
  } else if (c == Category::kAttnOutput) {
    if (falcon) {
      if (f == F::kQ3_K_L) type = DType::Q4_K;
    } else if (m_.n_expert == 8) {
      if (any_of(f, F::kQ2_K, F::kIQ3_XS, F::kIQ3_XXS, F::kQ3_K_S, F::kQ3_K_M, F::kIQ4_NL, F::kQ4_K_S, F::kQ4_K_M, F::kIQ3_S,
                 F::kIQ3_M, F::kIQ4_XS))
        type = DType::Q5_K;
    } else if (f == F::kQ2_K) {
      type = DType::Q3_K;
    } else if (f == F::kIQ3_XXS) {
      type = DType::IQ3_S;
    } else if (any_of(f, F::kQ3_K_M, F::kIQ3_M)) {
      type = DType::Q4_K;
    } else if (f == F::kQ3_K_L) {
      type = DType::Q5_K;
    }
  } else if (c == Category::kFfnGate || c == Category::kFfnUp) {
    int& counter = c == Category::kFfnGate ? i_ffn_gate_ : i_ffn_up_;
    const int64_t i_layer = ffn_layer(counter, t.name), n_layer = m_.n_layer;
    if (f == F::kIQ3_XS && i_layer >= n_layer / 8 && i_layer < 7 * n_layer / 8) type = DType::IQ3_XXS;
    ++counter;
  }
  return type;
}

}  // namespace

std::span<const FileType> file_types() { return kFileTypes; }

std::optional<FileType> find_file_type(std::string_view name) {
  std::string upper(name);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const FileType& f : kFileTypes)
    if (upper == f.name) return f;
  return std::nullopt;
}

std::string file_type_names() {
  std::string s;
  for (const FileType& f : kFileTypes) s += (s.empty() ? "" : ", ") + std::string(f.name);
  return s;
}

bool use_more_bits(int64_t i_layer, int64_t n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

DType fallback_type(DType t, int64_t n_per_row) {
  if (n_per_row % traits(t).block_size == 0) return t;
  DType f = DType::F16;
  switch (t) {
    case DType::IQ1_S: case DType::IQ1_M: case DType::IQ2_XXS: case DType::IQ2_XS: case DType::IQ2_S:
    case DType::IQ3_XXS: case DType::IQ3_S: case DType::IQ4_XS: case DType::Q2_K: case DType::Q3_K:
      f = DType::IQ4_NL;
      break;
    case DType::TQ1_0: case DType::TQ2_0: f = DType::Q4_0; break;
    case DType::Q4_K: f = DType::Q5_0; break;
    case DType::Q5_K: f = DType::Q5_1; break;
    case DType::Q6_K: f = DType::Q8_0; break;
    default: break;
  }
  if (n_per_row % traits(f).block_size != 0) f = DType::F16;
  return f;
}

int block_index(std::string_view name) {
  int layer = -1;
  const std::string s(name);
  if (std::sscanf(s.c_str(), "blk.%d.", &layer) != 1) return -1;
  return layer;
}

bool llama_tensor_order(const std::string& a, const std::string& b) {
  const int la = block_index(a), lb = block_index(b);
  if (la != lb) return la < lb;
  return a < b;
}

bool is_quantizable(const MixTensor& t) {
  const std::string_view name = t.name;
  return name.ends_with("weight") && ggml_n_dims(t.ne) >= 2 && !contains(name, "_norm.weight") &&
         !contains(name, "ffn_gate_inp.weight");
}

MixResult mix_types(const FileType& ftype, const MixModel& model, std::span<const MixTensor> tensors) {
  int n_attention_wv = 0;
  bool has_output = false;
  for (const MixTensor& t : tensors) {
    if (is_v_like(category_of(t.name))) ++n_attention_wv;
    if (t.name == "output.weight") has_output = true;
  }
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return llama_tensor_order(tensors[a].name, tensors[b].name); });
  Mixer mixer(ftype, model, n_attention_wv, has_output);
  MixResult r;
  r.types.resize(tensors.size());
  for (size_t i : order) {
    const MixTensor& t = tensors[i];
    if (!is_quantizable(t)) {
      r.types[i] = t.stored;
    } else if (!traits(ftype.base).is_quantized) {
      r.types[i] = ftype.base;  // F32/F16/BF16: no mix
    } else {
      const DType chosen = mixer.choose(t);
      r.types[i] = fallback_type(chosen, t.ne[0]);
      if (r.types[i] != chosen) ++r.n_fallback;
    }
  }
  return r;
}

bool requires_imatrix(const FileType& ftype, const std::string& tensor_name, DType out) {
  // llama.cpp's llama_model_quantize_impl, tensor by tensor. IQ3_XXS is not on the list: its mix
  // has rules for the case without an imatrix.
  const bool embedding = tensor_name == "token_embd.weight";
  switch (out) {
    case DType::IQ2_XXS: case DType::IQ2_XS: case DType::IQ2_S: case DType::IQ1_S: return true;
    case DType::IQ1_M: return !embedding && tensor_name != "output.weight";
    case DType::Q2_K: return ftype.id == F::kQ2_K_S && !embedding;
    default: return false;
  }
}

}  // namespace fathom::quant
