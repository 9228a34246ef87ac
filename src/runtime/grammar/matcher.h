// Token masks from a grammar: which tokens may come next so that the output stays a prefix of
// a sentence of the grammar.
//
// TokenTrie holds every token's bytes (Tokenizer::token_to_piece, exactly what the engine
// emits) in a prefix tree laid out in depth-first order; it is built once per tokenizer and
// shared. A mask is one pass over that array: each node costs one memoized automaton
// transition, and a dead transition skips the node's whole subtree. Masks are cached per
// automaton configuration, so a state seen before (string content, the same object key...)
// costs a copy. reference_token_mask() is the plain twin: every token checked on its own by
// PlainRecognizer.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "runtime/grammar/grammar.h"
#include "runtime/grammar/recognizer.h"

namespace fathom {

class Tokenizer;

struct TokenTrie {
  int32_t n_vocab = 0;                  // tokenizer vocabulary size
  std::vector<std::string> pieces;      // [n_vocab] bytes of each token ("" never matches)
  std::vector<int32_t> eog_ids;         // end-of-generation tokens (allowed when the grammar is complete)
  // Nodes in depth-first preorder; node 0 is the root (empty prefix).
  std::vector<uint8_t> byte;            // [node] byte on the edge from the parent
  std::vector<uint16_t> depth;          // [node] prefix length
  std::vector<int32_t> subtree_end;     // [node] first node after this node's subtree
  std::vector<int32_t> token_begin;     // [node + 1] CSR offsets into token_ids
  std::vector<int32_t> token_ids;       // tokens whose bytes end at each node, grouped by node
  int32_t max_depth = 0;                // longest token in bytes

  static std::shared_ptr<const TokenTrie> build(const Tokenizer& tokenizer);
  // From explicit pieces (tests); eog tokens get empty pieces.
  static std::shared_ptr<const TokenTrie> build(std::vector<std::string> pieces, std::vector<int32_t> eog_ids);
  size_t n_words() const { return (static_cast<size_t>(n_vocab) + 63) / 64; }
};

using TokenMask = std::vector<uint64_t>;  // [ceil(n_vocab / 64)] bit t set: token t allowed
inline bool mask_has(const TokenMask& m, int32_t t) { return (m[static_cast<size_t>(t) >> 6] >> (t & 63)) & 1; }

// A grammar compiled against one tokenizer: the automaton and the mask cache, shared by every
// request with the same grammar text (GrammarCache). Engine thread only: not thread-safe.
class CompiledGrammar {
 public:
  CompiledGrammar(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenTrie> trie, size_t max_cached_masks);
  GrammarAutomaton& automaton() { return automaton_; }
  const TokenTrie& trie() const { return *trie_; }
  const Grammar& grammar() const { return *grammar_; }
  // The allowed tokens in a configuration (cached).
  Expected<const TokenMask*> mask(int32_t config);
  // The uncached walk over the trie, for tests and benchmarks.
  Status compute_mask(int32_t config, TokenMask* out);
  size_t n_cached_masks() const { return masks_.size(); }

 private:
  std::shared_ptr<const Grammar> grammar_;
  std::shared_ptr<const TokenTrie> trie_;
  GrammarAutomaton automaton_;
  size_t max_cached_masks_;
  std::unordered_map<int32_t, TokenMask> masks_;  // configuration -> allowed tokens
  std::vector<int32_t> walk_states_;              // scratch: [depth] configuration on the current trie path
};

// Compiled grammars by grammar text, so requests with the same schema share masks. Bounded:
// the least recently used grammar is dropped past max_grammars (live matchers keep theirs).
class GrammarCache {
 public:
  explicit GrammarCache(size_t max_grammars = 16, size_t max_cached_masks = 2048)
      : max_grammars_(max_grammars), max_cached_masks_(max_cached_masks) {}
  std::shared_ptr<CompiledGrammar> get(const std::shared_ptr<const Grammar>& grammar, const std::shared_ptr<const TokenTrie>& trie);

 private:
  size_t max_grammars_;
  size_t max_cached_masks_;
  std::list<std::pair<std::string, std::shared_ptr<CompiledGrammar>>> entries_;  // most recently used first
};

// One sequence's position in the grammar.
class GrammarMatcher {
 public:
  static Expected<GrammarMatcher> create(std::shared_ptr<CompiledGrammar> compiled);
  // Sets every disallowed token's logit to -inf (logits [n_logits]; tokens past the tokenizer's
  // vocabulary are disallowed). An error when no token at all is allowed.
  Status apply_mask(float* logits, int64_t n_logits);
  // Advances over a token; an error when the grammar does not allow it.
  Status accept(int32_t token);
  bool is_complete() const { return ended_ || compiled_->automaton().accepting(config_); }  // end-of-generation allowed
  // Nothing but end-of-generation can follow (or it was accepted): generation is over.
  bool is_terminated() const { return ended_ || !compiled_->automaton().can_continue(config_); }
  int32_t config() const { return config_; }

 private:
  explicit GrammarMatcher(std::shared_ptr<CompiledGrammar> compiled, int32_t config) : compiled_(std::move(compiled)), config_(config) {}
  std::shared_ptr<CompiledGrammar> compiled_;
  int32_t config_;
  bool ended_ = false;  // an end-of-generation token was accepted
};

// The reference twin of CompiledGrammar::mask: each token fed byte by byte to a copy of the
// recognizer. `state` is the recognizer after the output so far.
TokenMask reference_token_mask(const PlainRecognizer& state, const TokenTrie& trie);

}  // namespace fathom
