// Synthetic models: GGUF files with seeded random weights in exactly the layout llama.cpp uses
// for an architecture (metadata keys, tensor names, shapes and ne order, which tensors stay F32),
// so the loader, the forward pass and the kernels can be tested and benchmarked at real shapes
// without downloading weights. Weights are generated and quantized tensor by tensor while the
// file is written, so a 7B-shape file never needs its weights in memory at once.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"

namespace fathom {

struct SynthOptions {
  std::string arch = "llama";         // general.architecture: llama, qwen2, deepseek, deepseek2
  std::string preset = "tiny";        // shape preset, see synth_presets()
  DType dtype = DType::F32;           // main weights (token_embd and the layer matrices)
  std::optional<DType> output_dtype;  // output.weight; defaults to dtype (Q4_K_M uses Q6_K)
  uint64_t seed = 42;                 // same seed, options and build -> identical bytes
  std::string vocab_path;             // optional GGUF whose tokenizer.* keys are copied verbatim
  std::optional<int64_t> n_layer;     // overrides the preset's block_count
  bool tied_output = false;           // omit output.weight: logits reuse token_embd (tied)
  // deepseek2 only: write MLA's K/V up-projection as the legacy single attn_kv_b (older
  // converters) instead of the split attn_k_b/attn_v_b + *_mla keys that llama.cpp writes now.
  bool mla_legacy = false;
  int n_threads = 0;                  // quantization threads, 0 = all cores
  // Parts to write (llama.cpp's split convention, gguf.h): >1 writes PREFIX-00001-of-0000N.gguf..
  // where PREFIX is the output path without ".gguf". synth_plan ignores it.
  int n_split = 1;
  // Called after each tensor is written (tensor index from 1, tensor count, bytes written so
  // far, total tensor bytes). Optional; the CLI uses it to print progress for large models.
  std::function<void(size_t done, size_t total, uint64_t bytes_done, uint64_t bytes_total)> on_progress;
};

// One shape preset of one architecture, for --help and the tests.
struct SynthPresetInfo {
  std::string arch;         // "qwen2"
  std::string name;         // "1.5b"
  std::string description;  // "28 layers, n_embd 1536, 12 heads (2 kv), n_ff 8960, vocab 151936 (R1-Distill-Qwen-1.5B)"
  std::string published;    // `fathom plan --arch-preset` name of the same published model ("" for test shapes)
};

// One tensor of a synthetic model as it is (or would be) written.
struct SynthTensorInfo {
  std::string name;          // "blk.1.ffn_gate_exps.weight"
  DType dtype;               // stored type, after llama.cpp's K-quant fallbacks
  std::vector<int64_t> ne;   // extents, ne[0] innermost
  uint64_t n_bytes = 0;      // data size
};

// Every (arch, preset) pair synth_model accepts.
std::vector<SynthPresetInfo> synth_presets();

// Architectures synth_model accepts ("llama", "qwen2", "deepseek", "deepseek2").
std::vector<std::string> synth_architectures();

// Writes the model to out_path. Errors: unknown arch or preset (kInvalidArgument, listing the
// known ones), a dtype that cannot be quantized (kUnsupported), an unreadable vocab file, I/O.
Status synth_model(const SynthOptions& options, const std::string& out_path);

// What synth_model(options, ...) would write, without the weights: returns its tensors in file
// order and writes a metadata-only GGUF (every key, no tensors) to metadata_path, so real shapes
// (V3: ~700 GB) can be checked and sized in milliseconds. Same errors as synth_model.
Expected<std::vector<SynthTensorInfo>> synth_plan(const SynthOptions& options, const std::string& metadata_path);

// llama.cpp's general.file_type (LLAMA_FTYPE_*) for a main weight type and output type.
// e.g. Q4_K main + Q6_K output -> 15 (MOSTLY_Q4_K_M), Q4_0 -> 2, F32 -> 0.
uint32_t llama_file_type(DType main, DType output);

}  // namespace fathom
