// fathom imatrix: collect an importance matrix (per-column mean x^2 of every matmul input) over
// a calibration text, for `fathom quantize --imatrix`.
#include <algorithm>
#include <cstdio>
#include <string>

#include "convert/imatrix.h"
#include "core/mapped_file.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace fathom::tools {

int cmd_imatrix(const Args& args) {
  std::string model_path, text_path, out_path = "imatrix.gguf";
  int64_t ctx = 512, chunks = -1;
  int threads = 0;
  bool process_output = false;
  convert::ImatrixOptions o;
  ArgParser p("fathom imatrix -m MODEL.gguf -f TEXT.txt -o FILE [--chunk N] [--chunks N]",
              "Runs the text through the model in chunks and records, for every matmul weight, the sum of\n"
              "squared input activations per column and the token count. Writes llama.cpp's GGUF imatrix\n"
              "format (or the legacy binary format when FILE ends in .dat).");
  add_model_option(p, &model_path, "GGUF model (F32/F16/BF16 is best)");
  p.add_string("-f,--file", "FILE", "calibration text ('-': standard input)", &text_path);
  p.add_string("-o,--output", "FILE", "output file (default imatrix.gguf)", &out_path);
  p.add_int("--chunk,-c,--ctx-size,--ctx", "N", "tokens per chunk (default 512)", &ctx, Range::between(2, kMaxTokens));
  p.add_int("--chunks", "N", "process at most N chunks (default: all)", &chunks, Range::between(1, 1 << 30));
  p.add_threads("CPU threads (default: all cores)", &threads);
  p.add_flag("--process-output", "also collect output.weight", &process_output);
  add_map_options(p, &o.map);
  if (auto rc = p.parse(args)) return *rc;
  if (model_path.empty() || text_path.empty()) return p.fail("pass -m MODEL.gguf and -f TEXT.txt");
  auto text = read_input_file(text_path);
  if (!text) return p.runtime_error(text.status().message());
  MemoryDemand demand;  // one chunk of ctx tokens per forward pass
  demand.n_ctx = std::max<int64_t>(ctx, 1);
  demand.step_tokens = demand.n_ctx;
  demand.logit_rows = demand.n_ctx / 2;
  if (!memory_fits("imatrix", model_path, demand, {"-c", "", "", "lower -c/--chunk"})) return 1;
  o.n_ctx = ctx;
  o.n_chunks = chunks;
  o.n_threads = threads;
  o.process_output = process_output;
  const bool tty = stderr_is_tty();
  o.on_chunk = [tty](int64_t c, int64_t n, double ppl) {
    std::fprintf(stderr, tty ? "\rimatrix: chunk %lld/%lld  PPL %.4f" : "imatrix: chunk %lld/%lld  PPL %.4f\n",
                 static_cast<long long>(c), static_cast<long long>(n), ppl);
    if (tty && c == n) std::fprintf(stderr, "\n");
  };
  auto data = convert::collect_imatrix(model_path, *text, o);
  if (!data) {
    std::fprintf(stderr, "fathom imatrix: %s\n", data.status().to_string().c_str());
    return data.status().code() == ErrorCode::kInvalidArgument ? 2 : 1;
  }
  data->datasets.push_back(text_path);
  if (Status st = convert::write_imatrix(*data, out_path); !st) {
    std::fprintf(stderr, "fathom imatrix: %s\n", st.to_string().c_str());
    return 1;
  }
  std::fprintf(stderr, "imatrix: wrote %zu entries from %lld chunks of %lld tokens to %s\n", data->entries.size(),
               static_cast<long long>(data->chunk_count), static_cast<long long>(ctx), out_path.c_str());
  return 0;
}

}  // namespace fathom::tools
