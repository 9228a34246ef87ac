// llama.cpp's file types (LLAMA_FTYPE_*) and the per-tensor type mix llama-quantize applies for
// each (llama_tensor_get_type): which tensors keep more bits, and the substitute for rows a block
// format cannot hold. `fathom quantize` (convert/), `fathom plan` (plan/) and `fathom synth`
// (model/) all read this one table and this one mix, so their types cannot drift apart.
//
// Adding a target is one row in kFileTypes (ftype.cpp): the mix already carries llama.cpp's rules
// for every LlamaFtype below, and quantize refuses a row whose types quant::can_quantize lacks.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace fathom::quant {

// LLAMA_FTYPE_* values: what general.file_type holds.
enum class LlamaFtype : uint32_t {
  kAllF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 7, kQ5_0 = 8, kQ5_1 = 9,
  kQ2_K = 10, kQ3_K_S = 11, kQ3_K_M = 12, kQ3_K_L = 13, kQ4_K_S = 14, kQ4_K_M = 15, kQ5_K_S = 16,
  kQ5_K_M = 17, kQ6_K = 18, kIQ2_XXS = 19, kIQ2_XS = 20, kQ2_K_S = 21, kIQ3_XS = 22, kIQ3_XXS = 23,
  kIQ1_S = 24, kIQ4_NL = 25, kIQ3_S = 26, kIQ3_M = 27, kIQ2_S = 28, kIQ2_M = 29, kIQ4_XS = 30,
  kIQ1_M = 31, kBF16 = 32, kTQ1_0 = 36, kTQ2_0 = 37,
};

// One target of `fathom quantize` / `fathom plan`.
struct FileType {
  const char* name;  // "Q4_K_M", as llama-quantize spells it
  LlamaFtype id;     // written to general.file_type
  DType base;        // type of every quantizable tensor the mix does not change
  bool in_plan;      // offered by `fathom plan`: not Q4_1/Q5_0/Q5_1 (a K-quant mix of the same
                     // size loses less) nor F32 (F16 holds the same model)
};

// Every file type offered, largest first.
std::span<const FileType> file_types();
// Case-insensitive lookup by name ("q4_k_m").
std::optional<FileType> find_file_type(std::string_view name);
std::string file_type_names();  // "Q8_0, Q6_K, ..." for help and errors

// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third between.
bool use_more_bits(int64_t i_layer, int64_t n_layers);

// llama.cpp's substitute when `t` cannot store rows of n_per_row values (256-value super-blocks):
// i-quants and Q2_K/Q3_K -> IQ4_NL, TQ* -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, anything
// still not dividing the row -> F16. Returns t when it fits.
DType fallback_type(DType t, int64_t n_per_row);

// "blk.N." -> N; -1 for tensors outside the blocks.
int block_index(std::string_view name);

// The order llama.cpp's loader (and so llama-quantize) writes tensors: by block index ("blk.N.",
// non-block tensors first), then by name. The mix's running counters follow this order.
bool llama_tensor_order(const std::string& a, const std::string& b);

// The model facts llama_tensor_get_type reads.
struct MixModel {
  std::string arch;         // general.architecture
  int64_t n_layer = 0;      // {arch}.block_count, MTP layers included (llama.cpp's n_layer_all)
  int64_t n_expert = 0;     // {arch}.expert_count; 0 for dense models
  int64_t n_head = 0;       // layer 0's query heads
  int64_t n_head_kv = 0;    // layer 0's K/V heads; n_head / n_head_kv is n_gqa
  bool has_imatrix = false; // importance data is given (some mixes differ with it)
};

// One tensor as the mix sees it.
struct MixTensor {
  std::string name;                       // GGUF name
  std::array<int64_t, 4> ne{1, 1, 1, 1};  // extents, ne[0] the row length
  DType stored = DType::F32;              // type in the input
};

// Whether llama.cpp quantizes this tensor at all (2-D+ "*weight", not a norm or the router).
bool is_quantizable(const MixTensor& t);

// What the mix decided for a whole model.
struct MixResult {
  std::vector<DType> types;  // [tensors.size()] output type of each tensor, in input order
  int n_fallback = 0;        // tensors whose chosen type could not hold their rows
};

// llama_tensor_get_type for every tensor of a model (any order: the mix visits them in
// llama_tensor_order, as llama-quantize does). Non-quantizable tensors keep their stored type.
MixResult mix_types(const FileType& ftype, const MixModel& model, std::span<const MixTensor> tensors);

// Whether llama.cpp refuses to write tensor `tensor_name` as `out` without an imatrix: IQ2_XXS,
// IQ2_XS, IQ2_S and IQ1_S always, IQ1_M except token_embd/output, Q2_K inside a Q2_K_S file
// except token_embd.
bool requires_imatrix(const FileType& ftype, const std::string& tensor_name, DType out);

}  // namespace fathom::quant
