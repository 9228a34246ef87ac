#include "loadgen/workload.h"

#include <array>
#include <fstream>
#include <random>
#include <sstream>
#include <string_view>

namespace fathom::loadgen {

namespace {

// Short, common English words: each is a single token (with its leading space) in the GPT-2
// style vocabularies DeepSeek and Qwen use, so a prompt of N words is close to N tokens.
constexpr std::array<std::string_view, 96> kWords = {
    "the",   "of",    "and",   "to",    "in",    "is",    "was",   "for",   "on",    "with",  "as",    "by",
    "at",    "from",  "his",   "her",   "they",  "this",  "that",  "which", "or",    "an",    "be",    "are",
    "not",   "have",  "had",   "one",   "all",   "were",  "we",    "when",  "there", "can",   "more",  "if",
    "out",   "so",    "said",  "what",  "up",    "its",   "about", "into",  "than",  "them",  "only",  "other",
    "new",   "some",  "time",  "could", "these", "two",   "may",   "then",  "first", "any",   "like",  "now",
    "my",    "such",  "make",  "over",  "our",   "even",  "most",  "after", "also",  "did",   "many",  "before",
    "must",  "through", "back", "years", "where", "much",  "your",  "way",   "well",  "down",  "should", "because",
    "each",  "just",  "those", "people", "how",  "too",   "little", "state", "good",  "very",  "find",  "world",
};

// The generator for request `index` of a run seeded `seed`: independent streams per request.
std::mt19937_64 request_rng(uint64_t seed, int64_t index) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(index),
                    static_cast<uint32_t>(static_cast<uint64_t>(index) >> 32)};
  return std::mt19937_64(seq);
}

}  // namespace

std::string synthetic_text(int64_t n_words, uint64_t rng_seed) {
  std::mt19937_64 rng(rng_seed);
  std::uniform_int_distribution<size_t> pick(0, kWords.size() - 1);
  std::string text;
  for (int64_t i = 0; i < n_words; ++i) {
    if (i > 0) text.push_back(' ');
    text += kWords[pick(rng)];
  }
  return text;
}

std::string messages_to_text(const nlohmann::json& messages) {
  std::string text;
  if (!messages.is_array()) return text;
  for (const auto& m : messages) {
    if (!m.is_object()) continue;
    const std::string role = m.value("role", std::string("user"));
    const auto content = m.find("content");
    if (content == m.end() || !content->is_string()) continue;
    text += role + ": " + content->get<std::string>() + "\n";
  }
  return text;
}

std::vector<int32_t> fit_prompt_length(std::vector<int32_t> tokens, int64_t want, int32_t bos_id) {
  if (want <= 0 || tokens.empty()) return tokens;
  const size_t body_start = tokens[0] == bos_id && tokens.size() > 1 ? 1 : 0;
  const size_t body_len = tokens.size() - body_start;
  for (size_t i = 0; tokens.size() < static_cast<size_t>(want); ++i) tokens.push_back(tokens[body_start + i % body_len]);
  tokens.resize(static_cast<size_t>(want));
  return tokens;
}

Workload Workload::synthetic(plan::LengthDistribution prompt_len, plan::LengthDistribution output_len, uint64_t seed) {
  return Workload(std::move(prompt_len), std::move(output_len), seed);
}

Expected<Workload> Workload::from_jsonl(const std::string& path, plan::LengthDistribution output_len, uint64_t seed) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return error(ErrorCode::kNotFound, "dataset " + path + ": cannot open (pass a JSONL file, one request per line)");
  std::ostringstream text;
  text << in.rdbuf();
  return from_jsonl_text(text.str(), path, std::move(output_len), seed);
}

Expected<Workload> Workload::from_jsonl_text(const std::string& text, const std::string& name,
                                             plan::LengthDistribution output_len, uint64_t seed) {
  Workload w(output_len, output_len, seed);
  w.dataset_name_ = name;
  std::istringstream lines(text);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(lines, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const std::string where = strprintf("dataset %s line %lld", name.c_str(), static_cast<long long>(line_no));
    if (!j.is_object()) return error(ErrorCode::kInvalidArgument, where + ": not a JSON object");
    DatasetLine d;
    if (auto p = j.find("prompt"); p != j.end()) {
      if (!p->is_string()) return error(ErrorCode::kInvalidArgument, where + ": \"prompt\" must be a string");
      d.prompt = p->get<std::string>();
    }
    if (auto m = j.find("messages"); m != j.end()) {
      if (!m->is_array() || m->empty())
        return error(ErrorCode::kInvalidArgument, where + ": \"messages\" must be a non-empty array");
      d.messages = *m;
    }
    if (d.prompt.empty() && d.messages.is_null())
      return error(ErrorCode::kInvalidArgument, where + ": needs \"prompt\" or \"messages\"");
    if (auto t = j.find("max_tokens"); t != j.end()) {
      if (!t->is_number_integer() || t->get<int64_t>() < 1)
        return error(ErrorCode::kInvalidArgument, where + ": \"max_tokens\" must be a positive integer");
      d.max_tokens = t->get<int64_t>();
    }
    w.dataset_.push_back(std::move(d));
  }
  if (w.dataset_.empty()) return error(ErrorCode::kInvalidArgument, "dataset " + name + ": no requests in it");
  return w;
}

WorkItem Workload::item(int64_t index) const {
  std::mt19937_64 rng = request_rng(seed_, index);
  WorkItem w;
  w.index = index;
  if (dataset_.empty()) {
    w.prompt_tokens = prompt_len_.sample(rng);
    w.prompt = synthetic_text(w.prompt_tokens, rng());
    w.max_tokens = output_len_.sample(rng);
    return w;
  }
  const DatasetLine& d = dataset_[static_cast<size_t>(index) % dataset_.size()];
  w.prompt = d.prompt;
  w.messages = d.messages;
  w.max_tokens = d.max_tokens > 0 ? d.max_tokens : output_len_.sample(rng);
  return w;
}

std::string Workload::describe() const {
  if (dataset_.empty()) return "synthetic prompt " + prompt_len_.spec() + ", output " + output_len_.spec();
  return strprintf("dataset %s (%zu requests), output %s where unspecified", dataset_name_.c_str(), dataset_.size(),
                   output_len_.spec().c_str());
}

}  // namespace fathom::loadgen
