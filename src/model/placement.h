// Which backend each weight tensor of a model runs on, when an accelerator is in use.
//
// Rules, from llama.cpp's conventions so the same flags mean the same thing:
//   - default: every tensor on the accelerator;
//   - --gpu-layers N: the last N repeating layers (blk.*) on the accelerator, the rest on the
//     CPU; the output head (output.weight, output_norm; token_embd when it doubles as the head)
//     counts as one more layer, so it moves when N > n_layer;
//   - --cpu-moe: the routed experts (ffn_{gate,up,down}_exps and their biases) on the CPU,
//     everything else (attention, shared experts, the KV cache) on the accelerator;
//     --n-cpu-moe N: the same for the first N layers only (what `fathom plan` suggests when
//     some experts fit on the card);
//   - --override-tensor REGEX=TARGET: tensors whose name REGEX matches (ECMAScript, searched
//     anywhere in the name) go to TARGET (cpu, gpu, or the accelerator's name: cuda / opencl).
//     The first override that matches wins, over the two rules above.
// The token embedding is read one row per token (get_rows), which every backend does on the
// CPU, so it stays on the CPU unless it is also the output head. A layer's attention (its KV
// cache, store_kv and the attention op) runs where that layer's attn_output matrix is placed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/placed_backend.h"
#include "core/status.h"
#include "gguf/gguf.h"
#include "model/config.h"

namespace fathom {

struct PlacementOptions {
  int gpu_layers = -1;                 // repeating layers on the accelerator, counted from the last; -1: all (and the output head)
  bool cpu_moe = false;                // routed experts on the CPU
  int n_cpu_moe = 0;                   // routed experts of the first N layers on the CPU
  std::vector<std::string> overrides;  // "REGEX=TARGET", first match wins
  bool empty() const { return gpu_layers < 0 && !cpu_moe && n_cpu_moe == 0 && overrides.empty(); }
};

struct TensorPlacement {
  std::string name;
  int64_t layer = -1;  // blk index, -1 for global tensors
  uint64_t bytes = 0;
  const void* data = nullptr;
  Placed where = Placed::kCpu;
};

struct Placement {
  std::string device;                    // the accelerator's backend name ("cuda", "opencl"), or "cpu" when none
  std::vector<TensorPlacement> tensors;  // every tensor the forward pass may read, in file order
  std::vector<Placed> attention;         // per layer: where its KV cache and attention live

  uint64_t weight_bytes(Placed where) const;
  // The tensors' memory as PlacedBackend routes by it.
  std::vector<PlacedBackend::Range> ranges() const;
  int64_t layers_with_attention(Placed where) const;
  // Human-readable lines, one per backend with anything on it: what is there and how much
  // memory it takes, kv_bytes_per_layer being one layer's KV cache at the engine's size, e.g.
  // "cuda   1.0 GiB weights + 112.0 MiB KV cache (14 layers): layers 14-27; output_norm; output".
  std::vector<std::string> describe(uint64_t kv_bytes_per_layer) const;
};

// Validates the options (override syntax, regexes, targets) and places every tensor of the file.
// device: the accelerator's backend name, or "cpu" for an all-CPU placement (then any option
// that would put something on an accelerator is an error).
Expected<Placement> plan_placement(const gguf::GgufFile& file, const ModelConfig& config, const std::string& device,
                                   const PlacementOptions& options);

}  // namespace fathom
