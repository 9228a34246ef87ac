// fathom synth: write a model with seeded random weights in an architecture's llama.cpp GGUF
// layout, for tests and benchmarks at real shapes without downloading weights.
#include <chrono>
#include <cstdio>
#include <string>

#include "model/synth.h"
#include "tools/args.h"
#include "tools/commands.h"

namespace fathom::tools {

namespace {

std::string summary_with_presets() {
  std::string s =
      "Write a GGUF model with seeded random weights in exactly the layout llama.cpp uses for the\n"
      "architecture (keys, tensor names, shapes; norms and biases F32). Same seed -> same bytes.\n"
      "K-quant matrices whose rows are not a multiple of 256 fall back as llama.cpp does\n"
      "(q4_K->q5_0, q5_K->q5_1, q6_K->q8_0, q2_K/q3_K->q4_0).\n\npresets:\n";
  for (const SynthPresetInfo& p : synth_presets())
    s += strprintf("  --arch %-9s --preset %-7s ", p.arch.c_str(), p.name.c_str()) + wrap_help(p.description, 36);
  s += "\nexample (Q4_K_M-like):\n  fathom synth --arch qwen2 --preset 1.5b --type q4_K --output-type q6_K -o m.gguf";
  s += "\nexample (benchmark MoE/MLA):\n  fathom synth --arch deepseek2 --preset v2-lite --layers 6 --type q4_K -o m.gguf";
  return s;
}

Expected<DType> parse_weight_type(const std::string& name, const char* option) {
  std::optional<DType> t = parse_dtype(name);
  if (!t)
    return error(ErrorCode::kInvalidArgument,
                 strprintf("%s: unknown type '%s' (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, "
                           "q5_K, q6_K, iq4_nl, iq4_xs, tq1_0, tq2_0)",
                           option, name.c_str()));
  return *t;
}

}  // namespace

int cmd_synth(const Args& args) {
  std::string arch = "llama", preset = "tiny", out_path, type = "f32", output_type, vocab;
  int64_t seed = 42, layers = 0;
  int threads = 0, n_split = 1;
  bool tied = false, quiet = false, mla_legacy = false;
  ArgParser parser("fathom synth --arch {llama,qwen2,deepseek,deepseek2} --preset NAME -o FILE.gguf [options]",
                   summary_with_presets());
  parser.add_string("--arch", "ARCH", "architecture: llama, qwen2, deepseek or deepseek2 (default llama)", &arch);
  parser.add_string("--preset", "NAME", "shape preset, see the list above (default tiny)", &preset);
  parser.add_string("-o,--output", "FILE", "GGUF file to write", &out_path);
  parser.add_string("--type", "T", "main weight type (default f32)", &type);
  parser.add_string("--output-type", "T", "type of output.weight (default: --type)", &output_type);
  parser.add_string("--vocab", "FILE", "copy tokenizer.* from this GGUF; n_vocab becomes its token count", &vocab);
  parser.add_int("--seed", "S", "random seed (default 42)", &seed, Range::at_least(0));
  parser.add_int("--layers", "N", "override the preset's layer count", &layers, Range::between(1, 1024));
  parser.add_threads("quantization threads (default: all cores)", &threads);
  parser.add_int("--split", "N", "write N files FILE-00001-of-0000N.gguf.. (llama.cpp's split GGUF; default 1)", &n_split,
                 Range::between(1, 99999));
  parser.add_flag("--tied", "omit output.weight (tied embeddings)", &tied);
  parser.add_flag("--mla-legacy", "deepseek2: one attn_kv_b instead of attn_k_b/attn_v_b (older converters)", &mla_legacy);
  parser.add_flag("-q,--quiet", "no progress output", &quiet);
  if (std::optional<int> rc = parser.parse(args)) return *rc;
  if (out_path.empty()) return parser.fail("missing -o FILE.gguf");

  SynthOptions options;
  options.arch = arch;
  options.preset = preset;
  options.seed = static_cast<uint64_t>(seed);
  options.vocab_path = vocab;
  options.n_threads = threads;
  options.tied_output = tied;
  options.mla_legacy = mla_legacy;
  options.n_split = n_split;
  if (layers != 0) options.n_layer = layers;
  Expected<DType> main_type = parse_weight_type(type, "--type");
  if (!main_type) return parser.fail(main_type.status().message());
  options.dtype = *main_type;
  if (!output_type.empty()) {
    Expected<DType> out_type = parse_weight_type(output_type, "--output-type");
    if (!out_type) {
      std::fprintf(stderr, "fathom synth: %s\n", out_type.status().message().c_str());
      return 2;
    }
    options.output_dtype = *out_type;
  }

  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  int last_percent = -1;
  if (!quiet) {
    options.on_progress = [&](size_t done, size_t total, uint64_t bytes_done, uint64_t bytes_total) {
      if (bytes_total < (64ull << 20)) return;  // small models finish before progress matters
      const int percent = static_cast<int>(100 * bytes_done / bytes_total);
      if (percent == last_percent && done != total) return;
      last_percent = percent;
      std::fprintf(stderr, "\rsynth: %3d%%  %zu/%zu tensors  %.0f/%.0f MiB  %.1f s", percent, done, total,
                   bytes_done / 1048576.0, bytes_total / 1048576.0, seconds());
      if (done == total) std::fprintf(stderr, "\n");
    };
  }
  Status st = synth_model(options, out_path);
  if (!st) {
    std::fprintf(stderr, "fathom synth: %s\n", st.to_string().c_str());
    return st.code() == ErrorCode::kInvalidArgument || st.code() == ErrorCode::kUnsupported ? 2 : 1;
  }
  if (!quiet)
    std::fprintf(stderr, "synth: wrote %s (%s %s, %s) in %.2f s\n", out_path.c_str(), arch.c_str(), preset.c_str(),
                 type.c_str(), seconds());
  return 0;
}

}  // namespace fathom::tools
