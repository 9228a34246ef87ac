// fathom run: one prompt in, generated text streamed to stdout, speed on stderr.
#include <cstdio>

#include "core/process.h"

#include "tokenizer/prompt.h"
#include "tools/commands.h"
#include "tools/common.h"
#include "tools/interrupt.h"

namespace fathom::tools {

namespace {

// The speed and memory lines after a generation (also after Ctrl-C, for what was done).
void print_statistics(Engine& engine, const RequestStats& stats, bool has_grammar) {
  const double pt = stats.prompt_seconds(), gt = stats.generation_seconds();
  const int64_t n_gen_timed = stats.n_generated > 1 ? stats.n_generated - 1 : 0;  // tokens after the first
  std::fprintf(stderr, "\nload: %.2f s | prompt: %lld tokens in %.3f s (%.1f tok/s) | generation: %lld tokens in %.3f s (%.1f tok/s)\n",
               engine.load_seconds(), static_cast<long long>(stats.n_prompt), pt, pt > 0 ? stats.n_prompt / pt : 0.0,
               static_cast<long long>(stats.n_generated), gt, gt > 0 ? n_gen_timed / gt : 0.0);
  if (has_grammar)
    std::fprintf(stderr, "grammar: %.1f ms masking and advancing (%.2f ms per token)\n", stats.grammar_seconds * 1e3,
                 stats.n_generated > 0 ? stats.grammar_seconds * 1e3 / static_cast<double>(stats.n_generated) : 0.0);
  const double mib = 1024.0 * 1024.0;
  std::fprintf(stderr, "memory: peak resident %.1f MiB (model file %.1f MiB, KV cache %.1f MiB)\n",
               static_cast<double>(peak_resident_bytes()) / mib, static_cast<double>(engine.model().file().total_file_size()) / mib,
               static_cast<double>(engine.kv_cache().total_bytes()) / mib);
}

}  // namespace

int cmd_run(const Args& args) {
  ModelOptions model;
  SamplingOptions sampling;
  GrammarOptions grammar;
  std::string prompt;
  std::string prompt_file;
  std::vector<std::string> stop;
  int n_predict = 128;
  bool ignore_eos = false;
  bool no_bos = false;
  bool quiet = false;
  ArgParser p("fathom run -m FILE.gguf -p PROMPT [options]",
              "Generates text after PROMPT and streams it to stdout as it is produced; load time, prompt\n"
              "and generation speed follow on stderr. Ctrl-C stops and prints the statistics so far.");
  model.add_to(p);
  p.add_string("-p,--prompt", "TEXT", "prompt text (special tokens like <|im_start|> are recognised)", &prompt);
  p.add_string("-f,--file", "FILE", "read the prompt from a file ('-': standard input)", &prompt_file);
  p.add_int("-n,--n-predict", "N", "tokens to generate at most (default 128)", &n_predict, Range::between(0, kMaxTokens));
  sampling.add_to(p);
  grammar.add_to(p);
  add_stop_option(p, &stop);
  p.add_flag("--ignore-eos", "keep generating past the end-of-text token", &ignore_eos);
  p.add_flag("--no-bos", "do not add the beginning-of-sequence token", &no_bos);
  p.add_flag("-q,--quiet", "print only the generated text (no prompt echo, no speed report)", &quiet);
  if (auto rc = p.parse(args)) return *rc;
  auto constraint = grammar.load();
  if (!constraint) return p.fail(constraint.status().message());
  if (!prompt.empty() && !prompt_file.empty()) return p.fail("-p and -f exclude each other; pass one");
  if (!prompt_file.empty()) {
    auto text = read_input_file(prompt_file);
    if (!text) return p.runtime_error(text.status().message());
    prompt = *text;
  }
  if (prompt.empty()) return p.fail("no prompt; pass -p TEXT or -f FILE");
  const Expected<EngineOptions> engine_options = model.to_engine_options();
  if (!engine_options) return p.fail(engine_options.status().message());
  std::unique_ptr<Engine> engine = open_engine("run", *engine_options, quiet);
  if (!engine) return 1;

  GenerationRequest req;
  req.prompt = tokenize_prompt(engine->tokenizer(), prompt, !no_bos);
  req.max_tokens = n_predict;
  req.sampling = sampling.to_params();
  req.sampling.grammar = *constraint;
  req.stop = stop;
  const bool has_grammar = req.sampling.grammar != nullptr;
  req.ignore_eos = ignore_eos;
  RequestStats stats;
  FinishReason reason = FinishReason::kNone;
  Status failure;
  req.on_event = [&](const TokenEvent& ev) {
    if (!ev.text.empty()) {
      std::fwrite(ev.text.data(), 1, ev.text.size(), stdout);
      std::fflush(stdout);
    }
    if (ev.finished) {
      stats = ev.stats;
      reason = ev.reason;
      if (ev.reason == FinishReason::kError) failure = ev.status;
    }
  };
  auto id = engine->submit(std::move(req));  // checks the prompt against the context before it is echoed
  if (!id) return p.runtime_error(id.status().message());
  if (!quiet) {
    std::fputs(prompt.c_str(), stdout);
    std::fflush(stdout);
  }
  SigintCatcher sigint;
  if (Status st = run_until_idle_or_interrupted(*engine, *id, sigint); !st.is_ok()) failure = st;
  const bool cancelled = reason == FinishReason::kCancelled;
  std::fputs("\n", stdout);
  std::fflush(stdout);
  if (!failure.is_ok()) return p.runtime_error(failure.to_string());
  if (cancelled) std::fprintf(stderr, "fathom run: interrupted\n");
  if (reason == FinishReason::kLength && stats.n_generated < n_predict)
    std::fprintf(stderr, "fathom run: stopped at the end of the context (%lld tokens); raise -c for more\n",
                 static_cast<long long>(engine->n_ctx()));
  if (!quiet || cancelled) print_statistics(*engine, stats, has_grammar);
  return cancelled ? 130 : 0;
}

}  // namespace fathom::tools
