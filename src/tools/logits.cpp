// fathom logits: the top next-token logits of a prompt, to compare engines position by position.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <numeric>

#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/prompt.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace fathom::tools {

int cmd_logits(const Args& args) {
  std::string model_path, prompt;
  int top = 10, threads = 0;
  std::string device = "cpu";
  bool all_positions = false, as_json = false, no_bos = false;
  ArgParser p("fathom logits -m FILE.gguf -p TEXT [--top K] [--all-positions] [--json]",
              "Runs the prompt (with BOS as the model's metadata says) and prints the top-K next-token ids\n"
              "with their raw logits, for the last position or every position.");
  add_model_option(p, &model_path);
  p.add_string("-p,--prompt", "TEXT", "prompt text", &prompt);
  p.add_int("--top", "K", "logits to print per position (default 10)", &top, Range::between(1, 1 << 20));
  p.add_flag("--all-positions", "print every position, not only the last", &all_positions);
  p.add_flag("--json", "print JSON", &as_json);
  p.add_flag("--no-bos", "do not add the beginning-of-sequence token", &no_bos);
  p.add_threads("CPU threads (default: all cores)", &threads);
  add_device_option(p, &device);
  LoadOptions lo;
  add_placement_options(p, &lo.placement);
  add_map_options(p, &lo.map);
  if (auto rc = p.parse(args)) return *rc;
  if (model_path.empty() || prompt.empty()) return p.fail("pass -m FILE.gguf and -p TEXT");
  if (Status st = check_device_exists(device); !st.is_ok()) return p.runtime_error(st.message());
  lo.n_threads = threads;
  lo.device = device;
  auto model = Model::load(model_path, lo);
  if (!model) {
    std::fprintf(stderr, "fathom logits: %s\n", model.status().to_string().c_str());
    return 1;
  }
  auto tok = Tokenizer::from_gguf((*model)->file());
  if (!tok) {
    std::fprintf(stderr, "fathom logits: %s\n", tok.status().to_string().c_str());
    return 1;
  }
  const std::vector<int32_t> ids = tokenize_prompt(**tok, prompt, !no_bos);
  const ModelConfig& c = (*model)->config();
  if (ids.empty()) return p.fail("the prompt has no tokens");
  KvCacheShape shape = (*model)->kv_shape(static_cast<int64_t>(ids.size()));
  KvCache kv(shape, static_cast<int32_t>((ids.size() + shape.block_size - 1) / shape.block_size));
  Batch batch;
  for (size_t i = 0; i < ids.size(); ++i) batch.add(ids[i], static_cast<int32_t>(i), 0, all_positions || i + 1 == ids.size());
  std::vector<float> logits;
  if (Status st = (*model)->forward(batch, kv, logits); !st.is_ok()) {
    std::fprintf(stderr, "fathom logits: %s\n", st.to_string().c_str());
    return 1;
  }
  const int64_t n_vocab = c.n_vocab;
  const int k = std::max(1, std::min<int>(top, static_cast<int>(n_vocab)));
  nlohmann::json out;
  out["tokens"] = ids;
  out["positions"] = nlohmann::json::array();
  const int64_t n_rows = batch.n_logits();
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* row = logits.data() + r * n_vocab;
    std::vector<int32_t> order(static_cast<size_t>(n_vocab));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    const int64_t pos = all_positions ? r : static_cast<int64_t>(ids.size()) - 1;
    nlohmann::json entry;
    entry["position"] = pos;
    entry["top"] = nlohmann::json::array();
    for (int i = 0; i < k; ++i)
      entry["top"].push_back({{"id", order[static_cast<size_t>(i)]}, {"logit", row[order[static_cast<size_t>(i)]]},
                              {"piece", (*tok)->token_to_piece(order[static_cast<size_t>(i)], true)}});
    out["positions"].push_back(entry);
  }
  if (as_json) {
    std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  std::printf("prompt tokens (%zu):", ids.size());
  for (int32_t id : ids) std::printf(" %d", id);
  std::printf("\n");
  for (const auto& entry : out["positions"]) {
    std::printf("position %lld:\n", static_cast<long long>(entry["position"].get<int64_t>()));
    for (const auto& t : entry["top"])
      std::printf("  %8d  %12.6f  %s\n", t["id"].get<int>(), t["logit"].get<double>(),
                  nlohmann::json(t["piece"].get<std::string>()).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  return 0;
}

}  // namespace fathom::tools
