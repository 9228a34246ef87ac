// Internal to the synth_*.cpp files: the shared machinery that writes a synthetic GGUF (seeded
// Gaussian generator, tokenizer keys, weight type fallbacks, tensor fills), and the table entry
// an architecture file provides. Adding an architecture (deepseek, deepseek2) means one new
// synth_<arch>.cpp that fills a SynthArchitecture and one line in synth.cpp's registry.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "core/threadpool.h"
#include "gguf/gguf.h"
#include "model/shape_presets.h"
#include "model/synth.h"

namespace fathom::synth {

// N(0, 1) samples from std::mt19937_64 through Box-Muller (polar form), written out here because
// std::normal_distribution is implementation-defined and would make files differ per libstdc++.
class NormalRng {
 public:
  explicit NormalRng(uint64_t seed) : engine_(seed) {}
  double next();

 private:
  std::mt19937_64 engine_;
  double spare_ = 0.0;       // second value of the last Box-Muller pair
  bool has_spare_ = false;
};

// SplitMix64 finalizer: turns (seed, tensor name, row) into well-mixed independent seeds.
uint64_t mix_seed(uint64_t x);

// How a tensor's values are drawn: mean + stddev * N(0, 1).
struct Init {
  float mean = 0.0f;
  float stddev = 1.0f;
};

// Scales chosen so activations stay O(1) through the stack: embeddings ~ N(0, 1); every
// projection ~ N(0, 1/fan_in), so each sublayer's output has unit variance given RMS-normed input;
// the output projection doubles that so logits (std ~2) have a clear, non-degenerate top token.
inline Init projection(int64_t fan_in) {
  return {0.0f, static_cast<float>(1.0 / std::sqrt(static_cast<double>(fan_in)))};
}
inline constexpr Init kEmbedding{0.0f, 1.0f};
inline constexpr Init kNormWeight{1.0f, 0.1f};  // RMSNorm gains around 1
inline constexpr Init kBias{0.0f, 0.1f};

// The type llama.cpp's quantizer actually writes for a matrix of `requested` type whose rows have
// n_in values: llama.cpp's substitute (quant::fallback_type) where the block does not divide n_in.
DType weight_type_for_row(DType requested, int64_t n_in);

// Writes one synthetic model. An architecture's build function sets its keys and adds its
// tensors in file order; synth_model then calls write().
class SynthBuilder {
 public:
  // plan_only: record tensors (plan()) but add none to the file, which then holds keys only.
  SynthBuilder(const SynthOptions& options, ThreadPool& pool, bool plan_only = false);

  const SynthOptions& options() const { return options_; }
  gguf::GgufWriter& writer() { return writer_; }
  DType main_dtype() const { return options_.dtype; }
  DType output_dtype() const { return options_.output_dtype.value_or(options_.dtype); }

  // Opens options().vocab_path when set. n_vocab() is then its token count, else preset_n_vocab.
  Status load_vocab(int64_t preset_n_vocab);
  int64_t n_vocab() const { return n_vocab_; }

  // general.architecture, general.name, general.file_type, general.quantization_version.
  void set_general(const std::string& arch, const std::string& name);
  // tokenizer.* copied verbatim from the vocab file, or a synthetic SentencePiece ("llama")
  // vocab of n_vocab() tokens: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then
  // printable ASCII characters and generated word pieces with decreasing scores.
  void set_tokenizer();

  // A weight matrix of n_out rows of n_in values (ne = {n_in, n_out}), stored in
  // weight_type_for_row(dtype, n_in) and drawn from `init`.
  void add_matrix(const std::string& name, int64_t n_in, int64_t n_out, DType dtype, Init init);
  // A stack of n_mat matrices, each n_out rows of n_in values (ne = {n_in, n_out, n_mat}): MoE
  // experts, or MLA's per-head attn_k_b/attn_v_b. Stored and drawn like add_matrix.
  void add_matrix_stack(const std::string& name, int64_t n_in, int64_t n_out, int64_t n_mat, DType dtype, Init init);
  // An F32 tensor (norm weights, biases) of shape ne drawn from `init`.
  void add_f32(const std::string& name, std::vector<int64_t> ne, Init init);

  // One file at path, or options.n_split parts named after path without ".gguf" (gguf.h).
  Status write(const std::string& path);
  const std::vector<SynthTensorInfo>& plan() const { return plan_; }

 private:
  // Generates rows [n_rows of n_in values] of tensor `name` and stores them as `dtype` in dst.
  Status fill_rows(const std::string& name, DType dtype, int64_t n_in, int64_t n_rows, Init init, uint8_t* dst);
  void report_progress(uint64_t n_bytes);
  // Records the tensor in plan_; false when plan_only (the caller then adds nothing to the file).
  bool record(const std::string& name, DType dtype, std::vector<int64_t> ne, uint64_t n_bytes);

  const SynthOptions& options_;
  ThreadPool& pool_;
  gguf::GgufWriter writer_;
  std::unique_ptr<gguf::GgufFile> vocab_file_;  // tokenizer source when options().vocab_path is set
  int64_t n_vocab_ = 0;                         // token count of the model being written
  size_t n_tensors_ = 0;                        // tensors added
  uint64_t total_bytes_ = 0;                    // tensor bytes added
  size_t tensors_done_ = 0;                     // tensors filled so far during write()
  uint64_t bytes_done_ = 0;                     // tensor bytes filled so far during write()
  bool plan_only_ = false;                      // record tensors without adding them to writer_
  std::vector<SynthTensorInfo> plan_;           // every tensor added, in file order
};

// A preset of an architecture file: a small test-only shape, or a published model's row of
// model_presets() (shape_presets.h) under synth's short name.
struct SynthShape {
  std::string name;       // --preset, e.g. "1.5b"
  std::string origin;     // the published model, e.g. "DeepSeek-R1-Distill-Qwen-1.5B" ("" for test shapes)
  std::string published;  // its `fathom plan --arch-preset` name ("" for test shapes)
  ArchShape shape;
};

// The published model `preset` (a model_presets() name) as synth preset `name`.
SynthShape published_shape(const std::string& name, std::string_view preset);
// The shape called `name` (already checked to be one of `shapes`).
const SynthShape& find_shape(const std::vector<SynthShape>& shapes, const std::string& name);
// The --help entry of a shape: `description` plus the published model's name, if any.
SynthPresetInfo preset_info(const std::string& arch, const SynthShape& shape, std::string description);

// What an architecture file provides.
struct SynthArchitecture {
  std::string arch;                       // general.architecture
  std::vector<SynthPresetInfo> presets;   // shapes it knows
  // Sets keys and adds tensors for options().preset (already checked to be in `presets`).
  Status (*build)(SynthBuilder& builder);
};

// One per architecture file.
std::vector<SynthArchitecture> dense_architectures();     // llama, qwen2 (synth_llama.cpp)
std::vector<SynthArchitecture> deepseek_architectures();  // deepseek, deepseek2 (synth_deepseek.cpp)

}  // namespace fathom::synth
