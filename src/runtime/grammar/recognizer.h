// Pushdown recognizers over a Grammar's bytes.
//
// PlainRecognizer is the reference: explicit copies of every parse stack, advanced byte by byte,
// no sharing and no memory. GrammarAutomaton is the fast twin: stacks are hash-consed linked
// nodes, a parser configuration (set of stacks) is interned to a dense id, and byte transitions
// between configurations are memoized per byte class, so a trie walk costs one table lookup per
// trie node. Tests check that both accept exactly the same byte strings and token masks.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "runtime/grammar/grammar.h"

namespace fathom {

// Explicit limits on what one grammar's parse may grow to; exceeding one is an error value.
struct RecognizerLimits {
  int32_t max_stacks = 4096;       // simultaneous parse stacks (ambiguity)
  int32_t max_stack_depth = 4096;  // nesting of rules on one stack
  int32_t max_nodes = 4'000'000;   // automaton: distinct stack nodes
  int32_t max_configs = 400'000;   // automaton: distinct configurations
};

class PlainRecognizer {
 public:
  PlainRecognizer(std::shared_ptr<const Grammar> grammar, const RecognizerLimits& limits = {});
  // Consumes one byte; false (and the state is unchanged) when no stack accepts it. An error
  // (too many stacks) also returns false and sets status().
  bool advance(uint8_t byte);
  bool advance(std::string_view bytes);  // all or nothing
  bool accepting() const { return accepting_; }                 // a complete parse ends here
  bool can_continue() const { return !stacks_.empty(); }       // some byte may follow
  const Status& status() const { return status_; }

 private:
  void expand(std::vector<int32_t> stack, std::vector<std::vector<int32_t>>* out, bool* accepting, int depth);

  std::shared_ptr<const Grammar> grammar_;
  RecognizerLimits limits_;
  std::vector<std::vector<int32_t>> stacks_;  // each: element positions, bottom first; top is a kBytes element
  bool accepting_ = false;
  Status status_;
};

class GrammarAutomaton {
 public:
  static constexpr int32_t kDead = -1;      // no stack survives
  static constexpr int32_t kOverflow = -3;  // a RecognizerLimits bound was hit
  explicit GrammarAutomaton(std::shared_ptr<const Grammar> grammar, const RecognizerLimits& limits = {});

  int32_t initial() const { return initial_; }  // kOverflow when even the start overflowed
  // Configuration after one byte: kDead, kOverflow or a configuration id.
  int32_t next(int32_t config, uint8_t byte) {
    const size_t at = static_cast<size_t>(config) * static_cast<size_t>(n_classes_) + grammar_->byte_class[byte];
    const int32_t v = transitions_[at];
    return v != kUnknown ? v : compute_next(config, byte);
  }
  bool accepting(int32_t config) const { return configs_[static_cast<size_t>(config)].accepting; }
  bool can_continue(int32_t config) const { return !configs_[static_cast<size_t>(config)].tops.empty(); }
  const Grammar& grammar() const { return *grammar_; }
  size_t n_configs() const { return configs_.size(); }
  const RecognizerLimits& limits() const { return limits_; }

 private:
  static constexpr int32_t kUnknown = -2;
  struct Node {
    int32_t pos;     // element index: top nodes point at kBytes, others at a continuation
    int32_t parent;  // node id, -1 at the bottom
  };
  struct Config {
    std::vector<int32_t> tops;  // sorted node ids, each a stack whose top is a kBytes element
    bool accepting = false;
  };
  struct VectorHash {
    size_t operator()(const std::vector<int32_t>& v) const;
  };
  int32_t node(int32_t pos, int32_t parent);
  bool expand(int32_t pos, int32_t parent, std::vector<int32_t>* tops, bool* accepting, int depth);
  int32_t intern(std::vector<int32_t> tops, bool accepting);
  int32_t compute_next(int32_t config, uint8_t byte);

  std::shared_ptr<const Grammar> grammar_;
  RecognizerLimits limits_;
  int32_t n_classes_ = 0;
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int32_t> node_ids_;  // (pos, parent) -> node id
  std::vector<Config> configs_;
  std::unordered_map<std::vector<int32_t>, int32_t, VectorHash> config_ids_;  // tops + accepting flag -> id
  std::vector<int32_t> transitions_;  // [config][byte class] next configuration, or kUnknown/kDead/kOverflow
  int32_t initial_ = kOverflow;
};

}  // namespace fathom
