// fathom convert: a Hugging Face checkpoint directory (safetensors) to a GGUF that llama.cpp and
// fathom load, with llama.cpp's converter's names, keys and transforms.
#include <chrono>
#include <cstdio>
#include <string>

#include "convert/hf_convert.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace fathom::tools {

int cmd_convert(const Args& args) {
  std::string dir, out_path, outtype = "f16", name;
  int threads = 0;
  bool legacy_mla = false, quiet = false;
  ArgParser p("fathom convert HF_DIR OUT.gguf [--outtype f16|bf16|q8_0|f32]",
              "Converts a Hugging Face checkpoint (config.json, *.safetensors, tokenizer.json,\n"
              "tokenizer_config.json) of LlamaForCausalLM, Qwen2ForCausalLM, DeepseekForCausalLM,\n"
              "DeepseekV2ForCausalLM or DeepseekV3ForCausalLM to GGUF, as llama.cpp's convert_hf_to_gguf.py\n"
              "does. DeepSeek-V3/R1 FP8 weights are dequantized with their 128x128 block scales.");
  p.add_positional("HF_DIR", "checkpoint directory", &dir);
  p.add_positional("OUT.gguf", "file to write", &out_path);
  p.add_string("--outtype", "T", "type of the weight matrices: f16 (default), bf16, q8_0 or f32", &outtype);
  p.add_string("--name", "NAME", "general.name (default: the directory name)", &name);
  p.add_flag("--legacy-mla", "deepseek2: write one attn_kv_b instead of attn_k_b + attn_v_b", &legacy_mla);
  p.add_threads("threads (default: all cores)", &threads);
  p.add_flag("-q,--quiet", "no progress output", &quiet);
  if (auto rc = p.parse(args)) return *rc;
  std::optional<DType> type = parse_dtype(outtype);
  if (!type || (*type != DType::F32 && *type != DType::F16 && *type != DType::BF16 && *type != DType::Q8_0))
    return p.fail("--outtype must be f16, bf16, q8_0 or f32, got '" + outtype + "'");
  convert::ConvertOptions o;
  o.outtype = *type;
  o.n_threads = threads;
  o.legacy_mla = legacy_mla;
  o.name = name;
  o.on_warning = [](const std::string& m) { std::fprintf(stderr, "convert: warning: %s\n", m.c_str()); };
  const auto start = std::chrono::steady_clock::now();
  const bool tty = stderr_is_tty();
  if (!quiet) {
    o.on_tensor = [&](size_t i, size_t n, const std::string& t, DType d) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, tty ? "\r[%4zu/%4zu] %-40s %-5s %6.1f s" : "[%4zu/%4zu] %-40s %-5s %6.1f s\n", i, n, t.c_str(),
                   dtype_name(d), s);
      if (tty && i == n) std::fprintf(stderr, "\n");
    };
  }
  Status st = convert::convert_hf(dir, out_path, o);
  if (!st) {
    std::fprintf(stderr, "fathom convert: %s\n", st.to_string().c_str());
    return st.code() == ErrorCode::kInvalidArgument ? 2 : 1;
  }
  if (!quiet) std::fprintf(stderr, "convert: wrote %s\n", out_path.c_str());
  return 0;
}

}  // namespace fathom::tools
