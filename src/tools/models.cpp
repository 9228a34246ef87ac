// The model store commands: fathom list, rm, show (pulled models) and ps (what a running
// server has loaded).
#include <nlohmann/json.hpp>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>

#include "gguf/gguf.h"
#include "hub/http.h"
#include "plan/model_shape.h"
#include "tools/args.h"
#include "tools/model_store.h"

namespace fathom::tools {

namespace {

std::string human_size(uint64_t bytes) {
  const double gib = static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0);
  return gib >= 1 ? strprintf("%.1f GiB", gib) : strprintf("%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

std::string local_time(int64_t seconds) {
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  return buf;
}

std::string human_count(int64_t n) {
  if (n >= 1000000000) return strprintf("%.2f B", static_cast<double>(n) / 1e9);
  if (n >= 1000000) return strprintf("%.2f M", static_cast<double>(n) / 1e6);
  return strprintf("%lld", static_cast<long long>(n));
}

Expected<hub::ModelStore> store_or_print(const char* command) {
  Expected<hub::ModelStore> store = open_model_store();
  if (!store) std::fprintf(stderr, "fathom %s: %s\n", command, store.status().message().c_str());
  return store;
}

}  // namespace

int cmd_list(const Args& args) {
  ArgParser p("fathom list", "List the models in the store (fathom pull adds them), sorted by name.");
  if (std::optional<int> rc = p.parse(args)) return *rc;
  Expected<hub::ModelStore> store = store_or_print("list");
  if (!store) return 1;
  Expected<std::vector<hub::Manifest>> models = store->list();
  if (!models) {
    std::fprintf(stderr, "fathom list: %s\n", models.status().message().c_str());
    return 1;
  }
  if (models->empty()) {
    std::printf("no models in %s (get one: fathom pull deepseek-r1:1.5b)\n", store->root().c_str());
    return 0;
  }
  std::printf("%-48s %10s  %-8s  %s\n", "NAME", "SIZE", "QUANT", "MODIFIED");
  for (const hub::Manifest& m : *models)
    std::printf("%-48s %10s  %-8s  %s\n", m.name.c_str(), human_size(m.total_size()).c_str(), m.quant.empty() ? "-" : m.quant.c_str(),
                local_time(m.pulled_at).c_str());
  return 0;
}

int cmd_rm(const Args& args) {
  std::string name;
  ArgParser p("fathom rm NAME", "Delete a pulled model (its files and manifest) from the store.");
  p.add_positional("NAME", "model name, as fathom list shows it", &name);
  if (std::optional<int> rc = p.parse(args)) return *rc;
  Expected<hub::ModelStore> store = store_or_print("rm");
  if (!store) return 1;
  if (Status st = store->remove(name); !st) {
    std::fprintf(stderr, "fathom rm: %s\n", st.message().c_str());
    return 1;
  }
  std::printf("deleted %s\n", name.c_str());
  return 0;
}

int cmd_show(const Args& args) {
  std::string name;
  ArgParser p("fathom show NAME", "Show a pulled model (or a GGUF file): where it came from, architecture, parameters, context, "
                                  "chat template and quantization mix.");
  p.add_positional("NAME", "model name (fathom list) or GGUF file", &name);
  if (std::optional<int> rc = p.parse(args)) return *rc;
  Expected<hub::ModelStore> store = store_or_print("show");
  if (!store) return 1;
  Expected<std::optional<hub::Manifest>> manifest = store->find(name);
  if (!manifest) {
    std::fprintf(stderr, "fathom show: %s\n", manifest.status().message().c_str());
    return 1;
  }
  std::error_code ec;
  if (!*manifest && !std::filesystem::exists(name, ec)) {
    std::fprintf(stderr, "fathom show: '%s' is neither a pulled model (fathom list) nor a file\n", name.c_str());
    return 1;
  }
  const std::string path = *manifest ? store->model_path(**manifest) : name;
  Expected<std::unique_ptr<gguf::GgufFile>> file = gguf::GgufFile::open(path);
  Expected<plan::ModelDesc> desc = file ? plan::model_from_gguf(path) : Expected<plan::ModelDesc>(file.status());
  if (!desc) {
    std::fprintf(stderr, "fathom show: %s\n", desc.status().message().c_str());
    return 1;
  }
  auto line = [](const char* key, const std::string& value) { std::printf("  %-14s %s\n", key, value.c_str()); };
  std::printf("%s\n", name.c_str());
  if (*manifest) {
    const hub::Manifest& m = **manifest;
    line("source", m.repo + " @ " + m.revision.substr(0, 12) + " (" + m.endpoint + ")");
    line("pulled", local_time(m.pulled_at));
    line("files", strprintf("%zu, %s, in %s", m.files.size(), human_size(m.total_size()).c_str(), store->model_dir(m.name).c_str()));
  } else {
    line("file", path + strprintf(" (%d part%s, %s)", (*file)->split_count(), (*file)->split_count() == 1 ? "" : "s",
                                  human_size((*file)->total_file_size()).c_str()));
  }
  const plan::ModelShape& s = desc->shape;
  int64_t n_params = 0;
  std::map<std::string, std::pair<int, uint64_t>> mix;  // dtype -> (tensors, bytes)
  for (const plan::TensorShape& t : desc->tensors) {
    n_params += t.n_elements();
    auto& [count, bytes] = mix[dtype_name(t.dtype)];
    ++count;
    bytes += t.file_bytes;
  }
  line("architecture", s.arch + (s.name.empty() ? "" : " (" + s.name + ")"));
  line("parameters", human_count(n_params) + (s.is_moe() ? strprintf(" (MoE: %lld experts, %lld used)", static_cast<long long>(s.n_expert),
                                                                     static_cast<long long>(s.n_expert_used))
                                                         : ""));
  line("layers", strprintf("%lld, n_embd %lld, %lld heads (%lld kv)%s", static_cast<long long>(s.n_layer), static_cast<long long>(s.n_embd),
                           static_cast<long long>(s.n_head), static_cast<long long>(s.n_head_kv), s.is_mla() ? ", MLA" : ""));
  line("context", strprintf("%lld tokens (trained)", static_cast<long long>(s.n_ctx_train)));
  line("vocabulary", strprintf("%lld tokens", static_cast<long long>(s.n_vocab)));
  const std::optional<std::string> tmpl = (*file)->get_string("tokenizer.chat_template");
  line("chat template", tmpl ? strprintf("yes (%zu characters)", tmpl->size()) : "none");
  std::string quant_mix;
  for (const auto& [dtype, stats] : mix)
    quant_mix += strprintf("%s%s: %d tensors, %s", quant_mix.empty() ? "" : "; ", dtype.c_str(), stats.first,
                           human_size(stats.second).c_str());
  line("quantization", (desc->file_type.empty() ? "" : desc->file_type + " - ") + quant_mix);
  return 0;
}

int cmd_ps(const Args& args) {
  std::string host = "127.0.0.1", api_key;
  int port = 8080;
  ArgParser p("fathom ps [--host H] [--port P]", "Ask a running fathom server which model it has loaded and whether it is ready.");
  p.add_string("--host", "H", "server address (default 127.0.0.1)", &host);
  p.add_int("--port", "P", "server port (default 8080)", &port, Range::between(1, 65535));
  p.add_string("--api-key", "KEY", "bearer key, when the server was started with API keys", &api_key);
  if (std::optional<int> rc = p.parse(args)) return *rc;
  if (port < 1 || port > 65535) {
    std::fprintf(stderr, "fathom ps: --port %d is not 1..65535\n", port);
    return 2;
  }
  const std::string base = strprintf("http://%s:%d", host.find(':') != std::string::npos ? ("[" + host + "]").c_str() : host.c_str(), port);
  const hub::HttpClient client(api_key, /*connect_timeout_s=*/5);
  constexpr size_t kMaxAnswer = 1 << 20;
  Expected<hub::HttpResponse> health = client.get(base + "/health", kMaxAnswer);
  if (!health) {
    std::fprintf(stderr, "fathom ps: no server at %s (%s)\n", base.c_str(), health.status().message().c_str());
    return 1;
  }
  const nlohmann::json h = nlohmann::json::parse(health->body, nullptr, false);
  const std::string state = h.is_object() && h.contains("status") && h["status"].is_string() ? h["status"].get<std::string>() : "unknown";
  std::printf("server %s: %s\n", base.c_str(), state.c_str());
  if (health->status != 200) return 0;
  Expected<hub::HttpResponse> models = client.get(base + "/v1/models", kMaxAnswer);
  if (!models || models->status != 200) {
    std::fprintf(stderr, "fathom ps: GET /v1/models: %s\n",
                 !models ? models.status().message().c_str()
                         : strprintf("HTTP %ld%s", models->status, models->status == 401 ? " (pass --api-key)" : "").c_str());
    return 1;
  }
  const nlohmann::json list = nlohmann::json::parse(models->body, nullptr, false);
  if (!list.is_object() || !list.contains("data") || !list["data"].is_array()) {
    std::fprintf(stderr, "fathom ps: GET /v1/models did not answer a model list\n");
    return 1;
  }
  std::printf("%-48s %8s  %s\n", "MODEL", "CONTEXT", "LOADED");
  for (const nlohmann::json& m : list["data"]) {
    if (!m.is_object()) continue;
    const std::string id = m.value("id", "?");
    const int64_t ctx = m.contains("context_length") && m["context_length"].is_number_integer() ? m["context_length"].get<int64_t>() : 0;
    const int64_t created = m.contains("created") && m["created"].is_number_integer() ? m["created"].get<int64_t>() : 0;
    std::printf("%-48s %8lld  %s\n", id.c_str(), static_cast<long long>(ctx), created ? local_time(created).c_str() : "-");
  }
  return 0;
}

}  // namespace fathom::tools
