// Option groups and helpers shared by the generation subcommands.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "tools/args.h"

namespace fathom::tools {

struct SamplingOptions {
  double temperature = 0.8;
  int top_k = 40;
  double top_p = 0.95;
  double min_p = 0.05;
  double repeat_penalty = 1.0;
  int repeat_last_n = 64;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  int64_t seed = -1;  // -1: pick one from the clock (printed with --verbose)
  void add_to(ArgParser& p);
  SamplingParams to_params() const;
};

// --grammar-file and --json-schema (fathom run, fathom chat): constrained decoding.
struct GrammarOptions {
  std::string grammar_file;      // GBNF text
  std::string json_schema_file;  // JSON Schema
  void add_to(ArgParser& p);
  // nullptr when neither flag is given; an error naming the file for a bad or unreadable one.
  Expected<std::shared_ptr<const Grammar>> load() const;
};

// -ctk/--cache-type-k and -ctv/--cache-type-v (llama.cpp's names): the KV cache's element types,
// on every command that builds a KV cache. `prefix` names a second pair ("base-" gives
// --base-cache-type-k/-v) and `whose` says in --help which cache they set.
struct KvCacheTypeOptions {
  std::string k = "f16";
  std::string v = "f16";
  void add_to(ArgParser& p, const std::string& prefix = "", const std::string& whose = "the KV cache");
  // An error naming the flag and the accepted types for an unknown name.
  Expected<KvCacheTypes> parse() const;
  // parse() into *types, or prints "fathom CMD: <error>" and returns false (exit 2).
  bool parse_or_print(const char* command, KvCacheTypes* types) const;
};

struct ModelOptions {
  std::string model;   // -m FILE or the first argument
  int threads = 0;     // -t
  std::string device = "cpu";  // --device
  PlacementOptions placement;  // --gpu-layers, --cpu-moe, --n-cpu-moe, --override-tensor
  int64_t ctx = 0;     // -c
  KvCacheTypeOptions cache_types;  // -ctk, -ctv
  MapOptions map;      // --mlock, --no-mmap
  void add_to(ArgParser& p);
  // An error (exit 2) for an option value that names nothing, such as an unknown cache type.
  Expected<EngineOptions> to_engine_options() const;
};

// --chat-template JINJA / --chat-template-file FILE: a chat template replacing the model's.
struct ChatTemplateOptions {
  std::string text;  // --chat-template
  std::string file;  // --chat-template-file
  void add_to(ArgParser& p);
  // Sets *source to the override ("" keeps the model's); on failure prints it and returns the
  // exit code: 2 for both options given, 1 for a file that cannot be read.
  std::optional<int> load(const ArgParser& p, std::string* source) const;
};

// --mlock and --no-mmap: how a command that computes with the weights brings the file into memory.
void add_map_options(ArgParser& p, MapOptions* map);

// -m/--model FILE, also accepted as the first argument.
void add_model_option(ArgParser& p, std::string* path, const std::string& help = "GGUF model file (required)");
// --device: cpu, cuda[:N] or opencl[:N].
void add_device_option(ArgParser& p, std::string* device);
// --gpu-layers, --cpu-moe, --n-cpu-moe and --override-tensor (model/placement.h).
void add_placement_options(ArgParser& p, PlacementOptions* placement);
// -r/--reverse-prompt/--stop TEXT, repeatable: generation ends before the first match.
void add_stop_option(ArgParser& p, std::vector<std::string>* stop);
// A device named with an index (cuda:N, opencl:N) must exist on this machine: an error naming
// the devices there are, instead of the CPU fallback a device that fails to start gets.
Status check_device_exists(const std::string& device);
// The text of a -f FILE option; "-" reads standard input.
Expected<std::string> read_input_file(const std::string& path);
// Creates the engine or prints "fathom CMD: <error>" and returns nullptr.
// Unless quiet, prints where the model runs (Engine::placement_report) when an accelerator is in use.
std::unique_ptr<Engine> open_engine(const char* command, const EngineOptions& options, bool quiet = false);
void print_placement(const Engine& engine);
// The memory check before loading (model/memory_need.h), counting the weights' repacked copies:
// prints "fathom CMD: <why>" when the configuration does not fit in MemAvailable and returns
// false (exit 1), else a "fathom CMD: warning: ..." line for a context past the model's trained
// one and for a placement that does not fit in the CUDA device's free memory.
bool memory_fits(const char* command, const std::string& model_path, MemoryDemand demand, const MemoryWording& wording);
// While it lives, "loading FILE ... 2.4 s" on stderr when that is a terminal (with ", repacking
// weights 37%" once repacking reports), redrawn every 100 ms by a thread of its own and erased at
// the end: reading a large model and repacking its weights can take minutes, and a silent
// terminal looks hung. Off a terminal it prints nothing.
class LoadingIndicator {
 public:
  explicit LoadingIndicator(const std::string& what);
  ~LoadingIndicator();
  LoadingIndicator(const LoadingIndicator&) = delete;
  LoadingIndicator& operator=(const LoadingIndicator&) = delete;
  // A RepackProgress (backend/cpu/cpu_backend.h); any thread may call it.
  void repack_progress(uint64_t done_bytes, uint64_t total_bytes);

 private:
  std::atomic<int> repack_percent_{-1};  // -1 until repacking reports
  std::mutex mutex_;
  std::condition_variable stop_signal_;
  bool stop_ = false;   // guarded by mutex_
  std::thread thread_;  // the redrawing thread; not started off a terminal
};

// True when stdout/stderr is a terminal (for colour and progress output).
bool stdout_is_tty();
bool stderr_is_tty();

}  // namespace fathom::tools
