// fathom quantize: rewrite a GGUF model in a llama.cpp quantization mix (Q4_K_M, ...).
#include <chrono>
#include <cstdio>
#include <string>

#include "convert/imatrix.h"
#include "convert/quantize.h"
#include "gguf/gguf.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace fathom::tools {

int cmd_quantize(const Args& args) {
  std::string in_path, out_path, type_name, imatrix_path;
  bool keep_output_f16 = false, quiet = false;
  int threads = 0;
  MapOptions map;
  ArgParser p("fathom quantize IN.gguf OUT.gguf TYPE [--imatrix FILE] [--keep-output-f16] [-t N]",
              "Quantizes a model with llama.cpp's per-tensor mix (see docs/quantization.md): output.weight in\n"
              "Q6_K, attn_v/ffn_down of the first, last and every third layer in Q6_K for the _M types,\n"
              "norms, biases and the MoE router in F32. The output loads in llama.cpp.\n"
              "TYPE: " + [] {
                std::string names = wrap_help(quant::file_type_names(), 6);
                names.pop_back();  // the parser ends the description's line itself
                return names;
              }());
  p.add_positional("IN.gguf", "model to quantize (F32, F16, BF16, or already quantized)", &in_path);
  p.add_positional("OUT.gguf", "file to write", &out_path);
  p.add_positional("TYPE", "target type, e.g. Q4_K_M", &type_name);
  p.add_string("--imatrix", "FILE", "importance matrix from `fathom imatrix` (GGUF) or llama.cpp (.gguf/.dat)", &imatrix_path);
  p.add_flag("--keep-output-f16", "keep output.weight in F16 instead of Q6_K", &keep_output_f16);
  p.add_threads("threads (default: all cores)", &threads);
  add_map_options(p, &map);
  p.add_flag("-q,--quiet", "no progress output", &quiet);
  if (auto rc = p.parse(args)) return *rc;
  const std::optional<quant::FileType> ftype = quant::find_file_type(type_name);
  if (!ftype) return p.fail("unknown type '" + type_name + "' (known: " + quant::file_type_names() + ")");
  auto in = gguf::GgufFile::open(in_path, map);
  if (!in) {
    std::fprintf(stderr, "fathom quantize: %s\n", in.status().to_string().c_str());
    return 1;
  }
  convert::ImportanceMap imatrix;
  convert::QuantizeOptions o;
  o.ftype = *ftype;
  o.n_threads = threads;
  o.keep_output_f16 = keep_output_f16;
  if (!imatrix_path.empty()) {
    auto im = convert::read_imatrix(imatrix_path);
    if (!im) {
      std::fprintf(stderr, "fathom quantize: %s\n", im.status().to_string().c_str());
      return 1;
    }
    imatrix = std::move(im->values);
    o.imatrix = &imatrix;
    if (!quiet) std::fprintf(stderr, "quantize: importance data for %zu tensors from %s\n", imatrix.size(), imatrix_path.c_str());
  }
  o.on_warning = [&](const std::string& msg) { std::fprintf(stderr, "quantize: warning: %s\n", msg.c_str()); };
  const auto start = std::chrono::steady_clock::now();
  const bool tty = stderr_is_tty();
  if (!quiet) {
    o.on_tensor = [&](size_t i, size_t n, const std::string& name, DType type, uint64_t done, uint64_t total) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double eta = done > 0 ? s * static_cast<double>(total - done) / static_cast<double>(done) : 0.0;
      if (tty) {
        std::fprintf(stderr, "\r[%4zu/%4zu] %5.1f%%  %8.1f/%.1f MiB  ETA %5.0f s  %-32.32s %-5s", i, n,
                     total ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0, done / 1048576.0,
                     total / 1048576.0, eta, name.c_str(), dtype_name(type));
        if (i == n) std::fprintf(stderr, "\n");
      } else {
        std::fprintf(stderr, "[%4zu/%4zu] %-40s %-5s %8.1f/%.1f MiB\n", i, n, name.c_str(), dtype_name(type),
                     done / 1048576.0, total / 1048576.0);
      }
    };
  }
  auto report = convert::quantize_model(**in, out_path, o);
  if (!report) {
    std::fprintf(stderr, "fathom quantize: %s\n", report.status().to_string().c_str());
    return report.status().code() == ErrorCode::kInvalidArgument ? 2 : 1;
  }
  if (!quiet) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string types;
    for (const auto& [name, count] : report->type_counts) types += strprintf(" %s:%d", name.c_str(), count);
    std::fprintf(stderr, "quantize: %s -> %s (%s): %.1f MiB -> %.1f MiB in %.1f s; tensors by type:%s\n", in_path.c_str(),
                 out_path.c_str(), ftype->name, report->bytes_in / 1048576.0, report->bytes_out / 1048576.0, s,
                 types.c_str());
  }
  return 0;
}

}  // namespace fathom::tools
