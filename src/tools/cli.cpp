#include "tools/cli.h"

#include <cstdio>
#include <cstring>
#include <string>

#include "backend/cpu/isa.h"
#include "tools/commands.h"
#include "tools/model_store.h"

namespace fathom::tools {

namespace {

struct Command {
  const char* name;
  int (*fn)(const Args&);
  const char* summary;
};

constexpr Command kCommands[] = {
    {"run", cmd_run, "generate text from a prompt, streaming it to stdout"},
    {"chat", cmd_chat, "interactive chat with the model's own chat template"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"detokenize", cmd_detokenize, "print the text of token ids"},
    {"logits", cmd_logits, "print the top next-token logits of a prompt (compare engines)"},
    {"inspect", cmd_inspect, "show a GGUF file's architecture, metadata and tensors"},
    {"synth", cmd_synth, "write a model with seeded random weights in an architecture's GGUF layout"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with continuous batching"},
    {"bench", cmd_bench, "measure prompt processing and generation speed"},
    {"plan", cmd_plan, "what fits this hardware and how fast it will run"},
    {"devices", cmd_devices, "list the CPU and GPU devices fathom can use"},
    {"quantize", cmd_quantize, "quantize a GGUF model with llama.cpp's type mixes (Q4_K_M, Q8_0, ...)"},
    {"convert", cmd_convert, "convert a Hugging Face checkpoint (safetensors) to GGUF"},
    {"imatrix", cmd_imatrix, "collect an importance matrix over a text for quantization"},
    {"perplexity", cmd_perplexity, "perplexity of a model on a text (llama.cpp's definition)"},
    {"kl-divergence", cmd_kl_divergence, "compare a model with its base: KL, top-1 agreement, PPL ratio"},
    {"pull", cmd_pull, "download a model from Hugging Face (deepseek-r1:7b, ORG/REPO:Q4_K_M) into the store"},
    {"list", cmd_list, "list the pulled models"},
    {"rm", cmd_rm, "delete a pulled model"},
    {"show", cmd_show, "a pulled model's source, architecture, parameters, context, template and quant mix"},
    {"ps", cmd_ps, "what a running fathom server has loaded"},
};

void print_help() {
  std::printf(
      "fathom — run DeepSeek models from GGUF files on the hardware you have\n\n"
      "usage: fathom COMMAND [options]   (fathom COMMAND --help for a command's options)\n\ncommands:\n");
  for (const Command& c : kCommands) std::printf("  %-12s %s\n", c.name, c.summary);
  std::printf(
      "\nexamples:\n"
      "  fathom pull deepseek-r1:1.5b && fathom run -m deepseek-r1:1.5b -p \"Why is the sky blue?\"\n"
      "  fathom run -m model.gguf -p \"Once upon a time\" -n 64\n"
      "  fathom chat -m DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf\n"
      "  fathom inspect model.gguf\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    print_help();
    return argc < 2 ? 2 : 0;
  }
  if (std::strcmp(argv[1], "--version") == 0) {
    std::printf("fathom 0.1.0\n");
    return 0;
  }
  // A forced CPU path this CPU lacks (or a misspelt one) is refused before any work.
  if (const Expected<cpu::IsaChoice>& isa = cpu::active_isa_choice(); !isa) {
    std::fprintf(stderr, "fathom: %s\n", isa.status().message().c_str());
    return 2;
  }
  Args args(argv + 2, argv + argc);
  if (std::optional<int> rc = resolve_model_names(argv[1], args)) return *rc;
  for (const Command& c : kCommands)
    if (std::strcmp(argv[1], c.name) == 0) return c.fn(args);
  std::fprintf(stderr, "fathom: unknown command '%s' (see fathom --help)\n", argv[1]);
  return 2;
}

}  // namespace fathom::tools
