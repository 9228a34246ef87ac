// What `fathom bench load` sends: synthetic prompts of a chosen length distribution, or the
// lines of a JSONL dataset. Request i is a pure function of (seed, i), so runs repeat exactly
// and a --duration run can ask for as many requests as it needs without pre-generating them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "plan/loadgen_math.h"

namespace fathom::loadgen {

struct WorkItem {
  int64_t index = 0;               // position in the run, from 0
  std::string prompt;              // completion prompt text ("" when only messages are given)
  nlohmann::json messages;         // chat messages [{role, content}], null when only a prompt is given
  int64_t prompt_tokens = 0;       // synthetic: the exact prompt length wanted, in tokens; 0: unknown
  int64_t max_tokens = 0;          // output tokens to ask for
};

class Workload {
 public:
  // Prompts of `prompt_len` words from a fixed word list (about one token per word with common
  // BPE vocabularies; the local target makes the count exact), outputs of `output_len` tokens.
  static Workload synthetic(plan::LengthDistribution prompt_len, plan::LengthDistribution output_len, uint64_t seed);
  // One request per non-empty line: {"prompt": "...", "max_tokens": N} or {"messages": [...]};
  // a line without max_tokens samples output_len. Lines are used in order and repeat when a run
  // asks for more requests than the file has. Errors name the file and line.
  static Expected<Workload> from_jsonl(const std::string& path, plan::LengthDistribution output_len, uint64_t seed);
  // Same, from the file's text (for tests); `name` is used in error messages.
  static Expected<Workload> from_jsonl_text(const std::string& text, const std::string& name,
                                            plan::LengthDistribution output_len, uint64_t seed);

  WorkItem item(int64_t index) const;
  std::string describe() const;  // "synthetic prompt 128, output uniform:64:256" or "dataset x.jsonl (40 lines)"

 private:
  struct DatasetLine {
    std::string prompt;        // "" when the line has messages only
    nlohmann::json messages;   // null when the line has a prompt only
    int64_t max_tokens = 0;    // 0: sample output_len_
  };
  Workload(plan::LengthDistribution prompt_len, plan::LengthDistribution output_len, uint64_t seed)
      : prompt_len_(std::move(prompt_len)), output_len_(std::move(output_len)), seed_(seed) {}

  plan::LengthDistribution prompt_len_;  // synthetic prompt lengths (unused for a dataset)
  plan::LengthDistribution output_len_;  // output lengths where the request does not say
  uint64_t seed_ = 0;                    // run seed; request i draws from (seed_, i)
  std::vector<DatasetLine> dataset_;     // empty: synthetic
  std::string dataset_name_;             // file name, for describe()
};

// `n_words` words of the fixed list, space-separated, drawn with `rng_seed`.
std::string synthetic_text(int64_t n_words, uint64_t rng_seed);

// Messages flattened to plain text for a completions endpoint ("role: content" per line).
std::string messages_to_text(const nlohmann::json& messages);
// A synthetic prompt's tokens made exactly `want` long: the text's tokens repeated (a leading
// bos_id stays only at the front) or cut. Empty tokens or want <= 0 return the tokens as they are.
std::vector<int32_t> fit_prompt_length(std::vector<int32_t> tokens, int64_t want, int32_t bos_id);

}  // namespace fathom::loadgen
