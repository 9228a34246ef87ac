// fathom perplexity / fathom kl-divergence: quality of a model, and of a quantization against
// its base, on a text, with llama.cpp's chunking (see convert/perplexity.h).
#include <algorithm>
#include <cstdio>
#include <string>

#include "convert/perplexity.h"
#include "core/mapped_file.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace fathom::tools {

namespace {

std::unique_ptr<Model> load_or_print(const char* cmd, const std::string& path, int threads, const MapOptions& map) {
  LoadOptions lo;
  lo.n_threads = threads;
  lo.map = map;
  auto m = Model::load(path, lo);
  if (!m) {
    std::fprintf(stderr, "fathom %s: %s\n", cmd, m.status().to_string().c_str());
    return nullptr;
  }
  return std::move(m).value();
}

// A chunk is one forward pass of ctx tokens on one sequence, logits kept for its scored half.
MemoryDemand eval_memory_demand(int64_t ctx, const KvCacheTypes& kv_types) {
  MemoryDemand d;
  d.kv_types = kv_types;
  d.n_ctx = std::max<int64_t>(ctx, 1);
  d.step_tokens = d.n_ctx;
  d.logit_rows = d.n_ctx / 2;
  return d;
}

// Progress: one rewritten line per chunk on a terminal, one line per chunk in a log.
std::function<void(int64_t, int64_t, double)> progress(const char* label) {
  const bool tty = stderr_is_tty();
  return [label, tty](int64_t c, int64_t n, double v) {
    std::fprintf(stderr, "%s%s: chunk %lld/%lld  %s %.4f%s", tty ? "\r" : "", label, static_cast<long long>(c),
                 static_cast<long long>(n), label[0] == 'k' ? "mean KL" : "PPL", v, tty && c != n ? "" : "\n");
  };
}

// -c/--ctx-size/--ctx and --chunks of perplexity and kl-divergence.
void add_chunk_options(ArgParser& p, int64_t* ctx, int64_t* chunks) {
  p.add_int("-c,--ctx-size,--ctx", "N", "tokens per chunk (default 512)", ctx, Range::between(2, kMaxTokens));
  p.add_int("--chunks", "N", "evaluate at most N chunks (default: all)", chunks, Range::between(1, 1 << 30));
}

}  // namespace

int cmd_perplexity(const Args& args) {
  std::string model_path, text_path;
  int64_t ctx = 512, chunks = -1;
  int threads = 0;
  MapOptions map;
  ArgParser p("fathom perplexity -m MODEL.gguf -f TEXT.txt [--ctx N] [--chunks N] [-t N]",
              "Perplexity as llama.cpp's llama-perplexity computes it: chunks of --ctx tokens, each scored on\n"
              "its second half. Prints PPL +/- its standard error.");
  add_model_option(p, &model_path, "GGUF model");
  p.add_string("-f,--file", "FILE", "text file ('-': standard input)", &text_path);
  add_chunk_options(p, &ctx, &chunks);
  p.add_threads("CPU threads (default: all cores)", &threads);
  add_map_options(p, &map);
  KvCacheTypeOptions cache_types;
  cache_types.add_to(p);
  if (auto rc = p.parse(args)) return *rc;
  if (model_path.empty() || text_path.empty()) return p.fail("pass -m MODEL.gguf and -f TEXT.txt");
  convert::EvalOptions o;
  if (!cache_types.parse_or_print("perplexity", &o.kv_types)) return 2;
  auto text = read_input_file(text_path);
  if (!text) return p.runtime_error(text.status().message());
  if (!memory_fits("perplexity", model_path, eval_memory_demand(ctx, o.kv_types), {"-c", "", "", "lower -c/--ctx"})) return 1;
  auto model = load_or_print("perplexity", model_path, threads, map);
  if (!model) return 1;
  auto tok = Tokenizer::from_gguf(model->file());
  if (!tok) {
    std::fprintf(stderr, "fathom perplexity: %s\n", tok.status().to_string().c_str());
    return 1;
  }
  o.n_ctx = ctx;
  o.n_chunks = chunks;
  o.on_chunk = progress("perplexity");
  auto r = convert::perplexity(*model, **tok, *text, o);
  if (!r) {
    std::fprintf(stderr, "fathom perplexity: %s\n", r.status().to_string().c_str());
    return r.status().code() == ErrorCode::kInvalidArgument ? 2 : 1;
  }
  std::printf("PPL = %.4f +/- %.5f  (%lld chunks of %lld tokens, %lld tokens scored)\n", r->ppl, r->ppl_stderr,
              static_cast<long long>(r->n_chunks), static_cast<long long>(ctx), static_cast<long long>(r->n_scored));
  return 0;
}

int cmd_kl_divergence(const Args& args) {
  std::string base_path, text_path;
  std::vector<std::string> model_paths;
  int64_t ctx = 512, chunks = -1;
  int threads = 0;
  MapOptions map;
  ArgParser p("fathom kl-divergence --base BASE.gguf -m QUANT.gguf [-m QUANT2.gguf ...] -f TEXT.txt",
              "Runs the models on the same chunks and compares their next-token distributions with the\n"
              "base's: mean KL(base || model) +/- stderr, top-1 agreement, both perplexities and their ratio,\n"
              "KL percentiles. With several -m the base runs once per chunk and a table compares them all.");
  p.add_string("--base", "FILE", "reference model (e.g. F16/F32)", &base_path);
  p.add_list("-m,--model", "FILE", "model to compare (e.g. its quantization); repeat for several", &model_paths);
  p.add_string("-f,--file", "FILE", "text file ('-': standard input)", &text_path);
  add_chunk_options(p, &ctx, &chunks);
  p.add_threads("CPU threads per model (default: all cores)", &threads);
  add_map_options(p, &map);
  KvCacheTypeOptions cache_types, base_cache_types;
  cache_types.add_to(p, "", "the compared models' KV caches");
  base_cache_types.add_to(p, "base-", "the base model's KV cache");
  if (auto rc = p.parse(args)) return *rc;
  if (base_path.empty() || model_paths.empty() || text_path.empty())
    return p.fail("pass --base BASE.gguf, -m QUANT.gguf and -f TEXT.txt");
  convert::EvalOptions o;
  if (!cache_types.parse_or_print("kl-divergence", &o.kv_types) ||
      !base_cache_types.parse_or_print("kl-divergence", &o.base_kv_types))
    return 2;
  auto text = read_input_file(text_path);
  if (!text) return p.runtime_error(text.status().message());
  auto base = load_or_print("kl-divergence", base_path, threads, map);
  if (!base) return 1;
  std::vector<std::unique_ptr<Model>> owned;
  std::vector<Model*> models;
  for (const std::string& path : model_paths) {
    owned.push_back(load_or_print("kl-divergence", path, threads, map));
    if (!owned.back()) return 1;
    models.push_back(owned.back().get());
  }
  auto tok = Tokenizer::from_gguf(base->file());
  if (!tok) {
    std::fprintf(stderr, "fathom kl-divergence: %s\n", tok.status().to_string().c_str());
    return 1;
  }
  o.n_ctx = ctx;
  o.n_chunks = chunks;
  o.on_chunk = progress("kl-divergence");
  auto results = convert::kl_divergence(*base, models, **tok, *text, o);
  if (!results) {
    std::fprintf(stderr, "fathom kl-divergence: %s\n", results.status().to_string().c_str());
    return results.status().code() == ErrorCode::kInvalidArgument ? 2 : 1;
  }
  const convert::KlResult& first = results->front();
  std::printf("tokens scored:     %lld (%lld chunks of %lld)\n", static_cast<long long>(first.n_scored),
              static_cast<long long>(first.base.n_chunks), static_cast<long long>(ctx));
  std::printf("PPL base:          %.4f +/- %.5f\n", first.base.ppl, first.base.ppl_stderr);
  if (results->size() == 1) {
    const convert::KlResult& r = first;
    std::printf("mean KL:           %.6f +/- %.6f nats\n", r.kl_mean, r.kl_stderr);
    std::printf("top-1 agreement:   %.3f%% +/- %.3f%%\n", 100.0 * r.top1_agree, 100.0 * r.top1_stderr);
    std::printf("PPL model:         %.4f +/- %.5f\n", r.quant.ppl, r.quant.ppl_stderr);
    std::printf("PPL ratio:         %.5f\n", r.ppl_ratio);
    std::printf("KL percentiles:    median %.6f  p90 %.6f  p95 %.6f  p99 %.6f  max %.6f\n", r.kl_median, r.kl_p90,
                r.kl_p95, r.kl_p99, r.kl_max);
    return 0;
  }
  std::printf("\n| model | size (MiB) | mean KL (nats) | top-1 agreement | PPL ratio | KL p99 |\n|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < models.size(); ++i) {
    const convert::KlResult& r = (*results)[i];
    const std::string& path = model_paths[i];
    const std::string name = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
    std::printf("| %s | %.1f | %.6f ± %.6f | %.2f%% ± %.2f%% | %.5f | %.5f |\n", name.c_str(),
                static_cast<double>(models[i]->file().file_size()) / (1024.0 * 1024.0), r.kl_mean, r.kl_stderr,
                100.0 * r.top1_agree, 100.0 * r.top1_stderr, r.ppl_ratio, r.kl_p99);
  }
  return 0;
}

}  // namespace fathom::tools
