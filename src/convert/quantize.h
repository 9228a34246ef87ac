// Model quantization the way llama.cpp's llama-quantize does it: the same per-tensor type mix
// (which tensors keep more bits), the same fallbacks for rows that do not fit a block format,
// the same tensor order and metadata, so files written here load in llama.cpp and vice versa.
// The mix is documented in docs/quantization.md.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "core/tensor.h"

namespace fathom::gguf {
class GgufFile;
}

namespace fathom::convert {

// One target of `fathom quantize`: a llama.cpp file type (LLAMA_FTYPE_*) and its base type.
struct FileType {
  std::string name;       // "Q4_K_M", as llama-quantize spells it
  uint32_t llama_ftype;   // value written to general.file_type
  DType base;             // type of every quantizable tensor the mix does not promote
  bool medium_mix;        // _M mixes: attn_v / ffn_down get Q6_K on use_more_bits layers
  bool small_mix;         // Q4_K_S: a few early attn_v / ffn_down get Q5_K
};

// Q8_0, Q6_K, Q5_K_M, Q5_K_S, Q4_K_M, Q4_K_S, Q4_0, IQ4_NL, IQ4_XS, F16, BF16, F32
// (case-insensitive).
std::optional<FileType> parse_file_type(std::string_view name);
std::string file_type_names();  // "Q8_0, Q6_K, ..." for help and errors

// Per-column importance of each matmul's input (llama.cpp's imatrix): for a tensor with ne[0]
// columns and ne[2] matrices (experts), values holds ne[0] * ne[2] means of x^2.
using ImportanceMap = std::map<std::string, std::vector<float>, std::less<>>;

// Decides each tensor's output type. Holds llama.cpp's running counters (the i-th attn_v seen),
// so tensors must be asked about in output order, each once.
class QuantMix {
 public:
  // arch: general.architecture; n_layer: {arch}.block_count; n_expert: {arch}.expert_count (0
  // for dense); n_attention_wv: tensors whose name holds attn_v.weight / attn_kv_b.weight;
  // has_output: the model has its own output.weight.
  QuantMix(const FileType& ftype, std::string arch, int64_t n_layer, int64_t n_expert, int n_attention_wv,
           bool has_output);

  // Whether llama.cpp quantizes this tensor at all (2-D+ "*weight", not a norm or the router).
  static bool is_quantizable(const TensorView& t);
  // The type `t` is written as. Non-quantizable tensors keep their stored type.
  DType type_for(const TensorView& t);
  int n_fallback() const { return n_fallback_; }
  // With an imatrix, Q4_0 guards the first eighth of ffn_down with Q4_1 (as llama.cpp does).
  void set_has_imatrix(bool v) { has_imatrix_ = v; }
  // Query heads per K/V head; IQ4_NL/IQ4_XS keep attn_v in Q5_K from 4 up (as llama.cpp does).
  void set_n_gqa(int64_t v) { n_gqa_ = v; }

 private:
  DType mixed_type(const std::string& name, const TensorView& t);
  FileType ftype_;
  std::string arch_;         // general.architecture
  int64_t n_layer_;          // block_count: ffn_down's layer range
  int64_t n_expert_;         // expert_count; > 1 means layer indices come from the names
  int n_attention_wv_;       // count of attn_v-like tensors (use_more_bits' range)
  bool has_output_;          // false: token_embd doubles as the output and is treated like it
  bool has_imatrix_ = false; // importance data was given
  int64_t n_gqa_ = 1;        // head_count / head_count_kv
  int i_attention_wv_ = 0;   // attn_v-like tensors typed so far
  int i_ffn_down_ = 0;       // ffn_down tensors typed so far
  int n_fallback_ = 0;       // tensors that needed a fallback type
};

// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third between.
bool use_more_bits(int64_t i_layer, int64_t n_layers);

// llama.cpp's substitute when `t` cannot store rows of n_per_row values (K-quants need 256):
// Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0 (llama.cpp's IQ4_NL, which we
// lack), anything still not dividing the row -> F16. Returns t when it fits.
DType fallback_type(DType t, int64_t n_per_row);

// The order llama.cpp's loader (and so llama-quantize) writes tensors: by block index ("blk.N.",
// non-block tensors first), then by name.
bool llama_tensor_order(const std::string& a, const std::string& b);

struct QuantizeOptions {
  FileType ftype;                    // target
  int n_threads = 0;                 // 0: all cores
  const ImportanceMap* imatrix = nullptr;  // optional importance per tensor name
  bool keep_output_f16 = false;      // output.weight (or the tied token_embd) stays F16
  // Progress after each tensor: (index from 1, count, name, type written, bytes written so far,
  // total output bytes).
  std::function<void(size_t, size_t, const std::string&, DType, uint64_t, uint64_t)> on_tensor;
  std::function<void(const std::string&)> on_warning;  // requantizing, fallbacks, missing imatrix
};

// Summary of a finished run, for the CLI.
struct QuantizeReport {
  uint64_t bytes_in = 0;                  // tensor bytes of the input
  uint64_t bytes_out = 0;                 // tensor bytes of the output
  std::map<std::string, int> type_counts; // tensors per output type name
  int n_requantized = 0;                  // tensors that were already quantized in the input
  int n_with_imatrix = 0;                 // tensors quantized with importance weights
};

// Quantizes `in` into out_path. Metadata is copied (split keys dropped), then
// general.quantization_version = 2 and general.file_type = ftype.llama_ftype are set last, as
// llama-quantize does.
Expected<QuantizeReport> quantize_model(const gguf::GgufFile& in, const std::string& out_path, const QuantizeOptions& options);

}  // namespace fathom::convert
