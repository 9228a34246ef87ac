// fathom pull: fetch a model from Hugging Face (or a mirror) into the model store.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "hub/pull.h"
#include "tools/args.h"
#include "tools/common.h"
#include "tools/model_store.h"

namespace fathom::tools {

namespace {

std::string summary_with_catalogue() {
  std::string s =
      "Download a model's GGUF file(s) from a Hugging Face repository into the model store\n"
      "(FATHOM_MODELS, else $XDG_CACHE_HOME/fathom/models, else ~/.cache/fathom/models); then\n"
      "`fathom run -m NAME` and every other command take NAME. Multi-part GGUFs are fetched whole;\n"
      "an interrupted pull resumes where it stopped; files are checked against Hugging Face's sha256.\n"
      "HF_ENDPOINT (a mirror) and HF_TOKEN (gated or private repositories) are honoured.\n\n"
      "NAME is ORG/REPO, ORG/REPO:QUANT (e.g. unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF:Q4_K_M),\n"
      "ORG/REPO:FILE.gguf, or one of these names (docs/models.md):\n";
  for (const hub::CatalogueEntry& e : hub::catalogue())
    s += strprintf("  %-24s %s:%s\n", e.name, e.repo, e.quant);
  s += "\nexample: fathom pull deepseek-r1:1.5b && fathom run -m deepseek-r1:1.5b -p \"Why is the sky blue?\"";
  return s;
}

std::string mib(uint64_t bytes) { return strprintf("%.1f", static_cast<double>(bytes) / (1024.0 * 1024.0)); }

std::string clock_time(double seconds) {
  const long s = static_cast<long>(seconds + 0.5);
  return s >= 3600 ? strprintf("%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60) : strprintf("%ld:%02ld", s / 60, s % 60);
}

// Progress on stderr: a bar redrawn in place on a terminal, else one line per 10% of a file.
class PullProgressPrinter {
 public:
  explicit PullProgressPrinter(bool is_terminal) : is_terminal_(is_terminal) {}

  void update(const hub::PullProgress& p) {
    using clock = std::chrono::steady_clock;
    const auto now = clock::now();
    if (p.file != file_) {
      file_ = p.file;
      start_ = now;
      last_draw_ = clock::time_point();
      last_tenth_ = static_cast<int>(10 * p.resumed_at / std::max<uint64_t>(p.total, 1));
    }
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double speed = elapsed > 0 ? static_cast<double>(p.done - p.resumed_at) / elapsed : 0;
    const double eta = speed > 0 ? static_cast<double>(p.total - p.done) / speed : 0;
    const int percent = static_cast<int>(100 * p.done / std::max<uint64_t>(p.total, 1));
    const std::string numbers = strprintf("%3d%%  %s/%s MiB  %s MiB/s  ETA %s", percent, mib(p.done).c_str(), mib(p.total).c_str(),
                                          mib(static_cast<uint64_t>(speed)).c_str(), speed > 0 ? clock_time(eta).c_str() : "--:--");
    const std::string label = p.n_files > 1 ? strprintf("[%zu/%zu] %s", p.file_index + 1, p.n_files, p.file.c_str()) : p.file;
    const bool finished = p.done == p.total;
    if (is_terminal_) {
      if (!finished && now - last_draw_ < std::chrono::milliseconds(100)) return;
      last_draw_ = now;
      constexpr int kBarWidth = 24;
      const int filled = kBarWidth * percent / 100;
      std::fprintf(stderr, "\r%s [%s%s] %s\033[K", label.c_str(), std::string(filled, '#').c_str(),
                   std::string(kBarWidth - filled, '.').c_str(), numbers.c_str());
      if (finished) std::fprintf(stderr, "\n");
      return;
    }
    const int tenth = percent / 10;
    if (tenth == last_tenth_) return;
    last_tenth_ = tenth;
    std::fprintf(stderr, "%s %s\n", label.c_str(), numbers.c_str());
  }

 private:
  bool is_terminal_;                                // redraw in place instead of printing lines
  std::string file_;                                // file of the last update
  std::chrono::steady_clock::time_point start_;     // when that file's transfer began
  std::chrono::steady_clock::time_point last_draw_; // terminal: last redraw (at most 10 a second)
  int last_tenth_ = 0;                              // lines: the last 10% step printed
};

}  // namespace

int cmd_pull(const Args& args) {
  std::string name, endpoint;
  ArgParser p("fathom pull NAME [--endpoint URL]", summary_with_catalogue());
  p.add_positional("NAME", "catalogue name, ORG/REPO, ORG/REPO:QUANT or ORG/REPO:FILE.gguf", &name);
  p.add_string("--endpoint", "URL", "Hugging Face API and file server (default: $HF_ENDPOINT, else https://huggingface.co)", &endpoint);
  if (std::optional<int> rc = p.parse(args)) return *rc;

  Expected<hub::ModelRef> ref = hub::parse_model_ref(name);
  if (!ref) {
    std::fprintf(stderr, "fathom pull: %s\n", ref.status().message().c_str());
    return 2;
  }
  Expected<hub::ModelStore> store = open_model_store();
  if (!store) {
    std::fprintf(stderr, "fathom pull: %s\n", store.status().message().c_str());
    return 1;
  }
  hub::PullOptions options;
  const char* env_endpoint = std::getenv("HF_ENDPOINT");
  const char* env_token = std::getenv("HF_TOKEN");
  options.endpoint = !endpoint.empty() ? endpoint : (env_endpoint && *env_endpoint ? env_endpoint : hub::kDefaultEndpoint);
  options.token = env_token ? env_token : "";
  if (Status st = hub::check_endpoint(options.endpoint); !st) {
    std::fprintf(stderr, "fathom pull: %s\n", st.message().c_str());
    return 2;
  }
  PullProgressPrinter printer(stderr_is_tty());
  options.on_progress = [&](const hub::PullProgress& progress) { printer.update(progress); };
  options.on_message = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };

  Expected<hub::PullResult> result = hub::pull_model(*ref, *store, options);
  if (!result) {
    if (stderr_is_tty()) std::fprintf(stderr, "\n");
    std::fprintf(stderr, "fathom pull: %s\n", result.status().message().c_str());
    return 1;
  }
  const hub::Manifest& m = result->manifest;
  if (result->already_present) {
    std::printf("%s is up to date (%s, %zu file%s, %s MiB)\n", m.name.c_str(), m.repo.c_str(), m.files.size(),
                m.files.size() == 1 ? "" : "s", mib(m.total_size()).c_str());
    return 0;
  }
  std::printf("pulled %s: %zu file%s, %llu bytes (fetched %llu, resumed %llu) into %s\n", m.name.c_str(), m.files.size(),
              m.files.size() == 1 ? "" : "s", static_cast<unsigned long long>(m.total_size()),
              static_cast<unsigned long long>(result->bytes_fetched), static_cast<unsigned long long>(result->bytes_resumed),
              store->model_dir(m.name).c_str());
  std::printf("run it: fathom run -m %s -p \"Hello\"\n", m.name.c_str());
  return 0;
}

}  // namespace fathom::tools
