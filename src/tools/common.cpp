#include "tools/common.h"

#include <unistd.h>

#include <chrono>
#include <optional>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "backend/device_spec.h"
#include "core/mapped_file.h"
#include "plan/devices.h"
#include "runtime/grammar/grammar.h"

namespace fathom::tools {

void SamplingOptions::add_to(ArgParser& p) {
  p.add_float("--temp", "T", "sampling temperature; 0 = greedy (default 0.8)", &temperature, Range::between(0, 100));
  p.add_int("--top-k", "K", "keep the K most likely tokens; 0 = off (default 40)", &top_k, Range::between(0, 1 << 24));
  p.add_float("--top-p", "P", "nucleus sampling mass; 1 = off (default 0.95)", &top_p, Range::between(0, 1));
  p.add_float("--min-p", "M", "drop tokens below M x the top probability; 0 = off (default 0.05)", &min_p,
              Range::between(0, 1));
  p.add_float("--repeat-penalty", "R", "penalize recently seen tokens; 1 = off (default 1.0)", &repeat_penalty,
              Range{0, 100, /*min_exclusive=*/true});
  p.add_int("--repeat-last-n", "N", "window of the repeat penalty in tokens (default 64)", &repeat_last_n,
            Range::between(0, 1 << 24));
  p.add_float("--presence-penalty", "P", "subtract P from the logit of every token already generated (default 0)",
              &presence_penalty, Range::between(-2, 2));
  p.add_float("--frequency-penalty", "F", "subtract F per earlier occurrence of a generated token (default 0)",
              &frequency_penalty, Range::between(-2, 2));
  p.add_int("-s,--seed", "S", "random seed; the same seed gives the same text (default: random)", &seed,
            Range::at_least(-1));
}

SamplingParams SamplingOptions::to_params() const {
  SamplingParams s;
  s.temperature = static_cast<float>(temperature);
  s.top_k = top_k;
  s.top_p = static_cast<float>(top_p);
  s.min_p = static_cast<float>(min_p);
  s.repeat_penalty = static_cast<float>(repeat_penalty);
  s.repeat_last_n = repeat_last_n;
  s.presence_penalty = static_cast<float>(presence_penalty);
  s.frequency_penalty = static_cast<float>(frequency_penalty);
  s.seed = seed >= 0 ? static_cast<uint64_t>(seed)
                     : static_cast<uint64_t>(std::chrono::high_resolution_clock::now().time_since_epoch().count());
  return s;
}

void GrammarOptions::add_to(ArgParser& p) {
  p.add_string("--grammar-file", "FILE", "constrain the output to a GBNF grammar (llama.cpp format, start rule 'root')", &grammar_file);
  p.add_string("--json-schema", "FILE", "constrain the output to JSON valid under this JSON Schema file", &json_schema_file);
}

Expected<std::shared_ptr<const Grammar>> GrammarOptions::load() const {
  if (!grammar_file.empty() && !json_schema_file.empty())
    return error(ErrorCode::kInvalidArgument, "--grammar-file and --json-schema exclude each other; pass one");
  const std::string& path = grammar_file.empty() ? json_schema_file : grammar_file;
  if (path.empty()) return std::shared_ptr<const Grammar>();
  auto text = read_text_file(path);
  if (!text) return text.status();
  auto grammar = grammar_file.empty() ? grammar_from_json_schema_text(*text) : grammar_from_gbnf(*text);
  if (!grammar) return error(grammar.status().code(), path + ": " + grammar.status().message());
  return grammar;
}

void ModelOptions::add_to(ArgParser& p) {
  add_model_option(p, &model);
  p.add_threads("CPU threads (default: all cores)", &threads);
  add_device_option(p, &device);
  add_placement_options(p, &placement);
  p.add_int("-c,--ctx-size,--ctx", "N",
            "context length per sequence (default: min(model's, 4096)); its KV cache must fit in available "
            "memory, checked before loading",
            &ctx, Range::between(1, kMaxTokens));
  add_map_options(p, &map);
  cache_types.add_to(p);
}

void add_map_options(ArgParser& p, MapOptions* map) {
  p.add_flag("--mlock", "lock the model's bytes in RAM so they are never paged out; fails when `ulimit -l` is too low",
             &map->lock);
  p.add_flag("--no-mmap", "read the model file into memory instead of mapping it", &map->read);
}

void ChatTemplateOptions::add_to(ArgParser& p) {
  p.add_string("--chat-template", "JINJA", "chat template text to use instead of the model's", &text);
  p.add_string("--chat-template-file", "FILE", "chat template file to use instead of the model's", &file);
}

std::optional<int> ChatTemplateOptions::load(const ArgParser& p, std::string* source) const {
  if (!text.empty() && !file.empty()) return p.fail("--chat-template and --chat-template-file exclude each other");
  *source = text;
  if (file.empty()) return std::nullopt;
  Expected<std::string> read = read_text_file(file);
  if (!read) return p.runtime_error("--chat-template-file: " + read.status().message());
  *source = std::move(*read);
  return std::nullopt;
}

void KvCacheTypeOptions::add_to(ArgParser& p, const std::string& prefix, const std::string& whose) {
  const std::string short_k = prefix.empty() ? "-ctk," : "", short_v = prefix.empty() ? "-ctv," : "";
  p.add_string(short_k + "--" + prefix + "cache-type-k", "TYPE", "element type of the K rows of " + whose + ": f16 (default), bf16, q8_0, q4_0 or f32", &k);
  p.add_string(short_v + "--" + prefix + "cache-type-v", "TYPE", "element type of the V rows of " + whose + ": f16 (default), bf16, q8_0, q4_0 or f32", &v);
}

Expected<KvCacheTypes> KvCacheTypeOptions::parse() const {
  KvCacheTypes types;
  const std::pair<const std::string*, DType*> fields[] = {{&k, &types.k}, {&v, &types.v}};
  for (const auto& [name, type] : fields) {
    const std::optional<DType> t = parse_kv_cache_type(*name);
    if (!t)
      return error(ErrorCode::kInvalidArgument, strprintf("--cache-type-%c: unknown KV cache type '%s'; use f16, bf16, q8_0, q4_0 or f32",
                                                          name == &k ? 'k' : 'v', name->c_str()));
    *type = *t;
  }
  return types;
}

void add_model_option(ArgParser& p, std::string* path, const std::string& help) {
  p.add_string("-m,--model", "FILE", help, path);
  p.add_positional_alias("MODEL", "-m");
}

void add_device_option(ArgParser& p, std::string* device) {
  p.add_string("--device", "DEV",
               "cpu (default), cuda (CUDA device 0), cuda:N, opencl (first GPU, else first OpenCL device) or "
               "opencl:N (`fathom devices` numbering); a named device must exist; one that fails to start "
               "falls back to cpu",
               device);
}

void add_placement_options(ArgParser& p, PlacementOptions* placement) {
  p.add_int("-ngl,--gpu-layers,--n-gpu-layers", "N",
            "with --device: the last N layers on the accelerator, the rest on the CPU; N > layers also moves "
            "the output head (default: all)",
            &placement->gpu_layers, Range::between(0, 1 << 16));
  p.add_flag("--cpu-moe", "with --device: routed MoE experts on the CPU, attention, shared experts and the KV cache on the accelerator", &placement->cpu_moe);
  p.add_int("--n-cpu-moe", "N", "with --device: --cpu-moe for the first N layers only", &placement->n_cpu_moe,
            Range::between(0, 1 << 16));
  p.add_list("-ot,--override-tensor", "REGEX=DEV", "tensors whose name matches REGEX on DEV (cpu, gpu, cuda or opencl); repeatable, the first match wins over the other placement options", &placement->overrides);
}

bool KvCacheTypeOptions::parse_or_print(const char* command, KvCacheTypes* types) const {
  const Expected<KvCacheTypes> parsed = parse();
  if (!parsed) {
    std::fprintf(stderr, "fathom %s: %s\n", command, parsed.status().to_string().c_str());
    return false;
  }
  *types = *parsed;
  return true;
}


void add_stop_option(ArgParser& p, std::vector<std::string>* stop) {
  p.add_list("-r,--reverse-prompt,--stop", "TEXT", "end the answer before TEXT; repeatable", stop);
}

Status check_device_exists(const std::string& device) {
  const bool cuda = device.rfind("cuda:", 0) == 0;
  if (!cuda && device.rfind("opencl:", 0) != 0) return Status::ok();
  FATHOM_ASSIGN_OR_RETURN(const int index, parse_device_spec(device, cuda ? "cuda" : "opencl"));
  const plan::ApiProbe probe = cuda ? plan::probe_cuda() : plan::probe_opencl();
  if (!probe.available)
    return error(ErrorCode::kNotFound, "--device " + device + ": no " + probe.api + " here (" + probe.reason + ")");
  if (index >= static_cast<int>(probe.devices.size()))
    return error(ErrorCode::kNotFound, strprintf("--device %s: this machine has %zu %s device(s), numbered from 0 (see `fathom devices`)",
                                                 device.c_str(), probe.devices.size(), probe.api.c_str()));
  return Status::ok();
}

Expected<std::string> read_input_file(const std::string& path) {
  if (path != "-") return read_text_file(path);
  std::ostringstream text;
  text << std::cin.rdbuf();
  return text.str();
}

Expected<EngineOptions> ModelOptions::to_engine_options() const {
  EngineOptions o;
  FATHOM_ASSIGN_OR_RETURN(o.kv_types, cache_types.parse());
  o.model_path = model;
  o.map = map;
  o.n_threads = threads;
  o.device = device;
  o.placement = placement;
  o.n_ctx = ctx;
  return o;
}

std::unique_ptr<Engine> open_engine(const char* command, const EngineOptions& options, bool quiet) {
  if (options.model_path.empty()) {
    std::fprintf(stderr, "fathom %s: no model given; pass -m FILE.gguf\n", command);
    return nullptr;
  }
  if (Status st = check_device_exists(options.device); !st.is_ok()) {
    std::fprintf(stderr, "fathom %s: %s\n", command, st.message().c_str());
    return nullptr;
  }
  MemoryDemand demand = engine_memory_demand(options);
  demand.count_weight_copies = true;
  if (!memory_fits(command, options.model_path, demand, MemoryWording{})) return nullptr;
  std::optional<LoadingIndicator> loading;
  EngineOptions load_options = options;
  if (!quiet) {
    loading.emplace(options.model_path);
    load_options.on_repack_progress = [&loading](uint64_t done, uint64_t total) { loading->repack_progress(done, total); };
  }
  auto engine = Engine::create(load_options);
  loading.reset();
  if (!engine) {
    std::fprintf(stderr, "fathom %s: %s\n", command, engine.status().to_string().c_str());
    return nullptr;
  }
  if (!quiet) print_placement(**engine);
  return std::move(engine).value();
}

bool memory_fits(const char* command, const std::string& model_path, MemoryDemand demand, const MemoryWording& wording) {
  std::vector<std::string> warnings;
  const Status st = check_memory_for(model_path, demand, wording, &warnings);
  if (!st.is_ok()) {  // one line: it names the trained context too
    std::fprintf(stderr, "fathom %s: %s\n", command, st.message().c_str());
    return false;
  }
  for (const std::string& w : warnings) std::fprintf(stderr, "fathom %s: warning: %s\n", command, w.c_str());
  return true;
}

void print_placement(const Engine& engine) {
  const std::vector<std::string> lines = engine.placement_report();
  for (size_t i = 0; i < lines.size(); ++i) std::fprintf(stderr, "%s %s\n", i == 0 ? "placement" : "         ", lines[i].c_str());
}

LoadingIndicator::LoadingIndicator(const std::string& what) {
  if (!stderr_is_tty()) return;
  thread_ = std::thread([this, what] {
    const auto start = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_signal_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stop_; })) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const int percent = repack_percent_.load();
      if (percent < 0) std::fprintf(stderr, "\rloading %s ... %.1f s", what.c_str(), seconds);
      else std::fprintf(stderr, "\rloading %s ... %.1f s, repacking weights %d%%", what.c_str(), seconds, percent);
    }
    std::fputs("\r\033[K", stderr);
  });
}

void LoadingIndicator::repack_progress(uint64_t done_bytes, uint64_t total_bytes) {
  if (total_bytes > 0) repack_percent_.store(static_cast<int>(100.0 * static_cast<double>(done_bytes) / static_cast<double>(total_bytes)));
}

LoadingIndicator::~LoadingIndicator() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  stop_signal_.notify_one();
  thread_.join();
}

bool stdout_is_tty() { return isatty(STDOUT_FILENO) != 0; }
bool stderr_is_tty() { return isatty(STDERR_FILENO) != 0; }

}  // namespace fathom::tools
