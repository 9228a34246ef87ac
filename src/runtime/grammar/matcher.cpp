#include "runtime/grammar/matcher.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "tokenizer/tokenizer.h"

namespace fathom {

std::shared_ptr<const TokenTrie> TokenTrie::build(const Tokenizer& tokenizer) {
  std::vector<std::string> pieces(static_cast<size_t>(tokenizer.n_vocab()));
  std::vector<int32_t> eog;
  for (int32_t id = 0; id < tokenizer.n_vocab(); ++id) {
    if (tokenizer.is_end_of_generation(id)) eog.push_back(id);
    else pieces[static_cast<size_t>(id)] = tokenizer.token_to_piece(id, /*render_special=*/false);
  }
  return build(std::move(pieces), std::move(eog));
}

std::shared_ptr<const TokenTrie> TokenTrie::build(std::vector<std::string> pieces, std::vector<int32_t> eog_ids) {
  auto t = std::make_shared<TokenTrie>();
  t->n_vocab = static_cast<int32_t>(pieces.size());
  for (int32_t id : eog_ids) pieces[static_cast<size_t>(id)].clear();
  t->eog_ids = std::move(eog_ids);
  std::vector<int32_t> order;
  for (int32_t id = 0; id < t->n_vocab; ++id)
    if (!pieces[static_cast<size_t>(id)].empty()) order.push_back(id);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return pieces[static_cast<size_t>(a)] < pieces[static_cast<size_t>(b)] || (pieces[static_cast<size_t>(a)] == pieces[static_cast<size_t>(b)] && a < b);
  });
  t->byte.push_back(0);
  t->depth.push_back(0);
  std::vector<int32_t> path{0};  // node ids of the current prefix, path[d] at depth d
  std::vector<std::pair<int32_t, int32_t>> token_nodes;  // (node, token), nodes nondecreasing
  std::vector<int32_t> end_of;   // filled when a node's subtree closes
  end_of.push_back(-1);
  const std::string* prev = nullptr;
  for (int32_t id : order) {
    const std::string& s = pieces[static_cast<size_t>(id)];
    size_t common = 0;
    if (prev) while (common < s.size() && common < prev->size() && s[common] == (*prev)[common]) ++common;
    while (path.size() > common + 1) {
      end_of[static_cast<size_t>(path.back())] = static_cast<int32_t>(t->byte.size());
      path.pop_back();
    }
    for (size_t d = common; d < s.size(); ++d) {
      path.push_back(static_cast<int32_t>(t->byte.size()));
      t->byte.push_back(static_cast<uint8_t>(s[d]));
      t->depth.push_back(static_cast<uint16_t>(d + 1));
      end_of.push_back(-1);
    }
    token_nodes.push_back({path.back(), id});
    t->max_depth = std::max(t->max_depth, static_cast<int32_t>(s.size()));
    prev = &s;
  }
  const int32_t n_nodes = static_cast<int32_t>(t->byte.size());
  for (int32_t n : path) end_of[static_cast<size_t>(n)] = n_nodes;
  t->subtree_end = std::move(end_of);
  t->token_begin.assign(static_cast<size_t>(n_nodes) + 1, 0);
  for (const auto& [n, id] : token_nodes) ++t->token_begin[static_cast<size_t>(n) + 1];
  std::partial_sum(t->token_begin.begin(), t->token_begin.end(), t->token_begin.begin());
  for (const auto& tn : token_nodes) t->token_ids.push_back(tn.second);
  t->pieces = std::move(pieces);
  return t;
}

CompiledGrammar::CompiledGrammar(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenTrie> trie, size_t max_cached_masks)
    : grammar_(grammar), trie_(std::move(trie)), automaton_(std::move(grammar)), max_cached_masks_(max_cached_masks) {}

Status CompiledGrammar::compute_mask(int32_t config, TokenMask* out) {
  const TokenTrie& t = *trie_;
  out->assign(t.n_words(), 0);
  walk_states_.resize(static_cast<size_t>(t.max_depth) + 1);
  walk_states_[0] = config;
  bool overflow = false;
  const int32_t n_nodes = static_cast<int32_t>(t.byte.size());
  for (int32_t i = 1; i < n_nodes;) {
    const int32_t s = automaton_.next(walk_states_[t.depth[static_cast<size_t>(i)] - 1u], t.byte[static_cast<size_t>(i)]);
    if (s < 0) {
      overflow = overflow || s == GrammarAutomaton::kOverflow;
      i = t.subtree_end[static_cast<size_t>(i)];
      continue;
    }
    walk_states_[t.depth[static_cast<size_t>(i)]] = s;
    for (int32_t k = t.token_begin[static_cast<size_t>(i)]; k < t.token_begin[static_cast<size_t>(i) + 1]; ++k) {
      const int32_t id = t.token_ids[static_cast<size_t>(k)];
      (*out)[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
    }
    ++i;
  }
  if (overflow)
    return error(ErrorCode::kOutOfRange, strprintf("the grammar's parse grew past its limits (%d stacks, %d configurations); simplify the grammar",
                                                   automaton_.limits().max_stacks, automaton_.limits().max_configs));
  if (automaton_.accepting(config))
    for (int32_t id : t.eog_ids) (*out)[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
  return Status::ok();
}

Expected<const TokenMask*> CompiledGrammar::mask(int32_t config) {
  auto it = masks_.find(config);
  if (it != masks_.end()) return &it->second;
  // A pure cache: dropping it all when full is always correct and keeps memory bounded.
  if (masks_.size() >= max_cached_masks_) masks_.clear();
  TokenMask m;
  FATHOM_RETURN_IF_ERROR(compute_mask(config, &m));
  return &masks_.emplace(config, std::move(m)).first->second;
}

std::shared_ptr<CompiledGrammar> GrammarCache::get(const std::shared_ptr<const Grammar>& grammar, const std::shared_ptr<const TokenTrie>& trie) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->first == grammar->source && &it->second->trie() == trie.get()) {
      entries_.splice(entries_.begin(), entries_, it);
      return entries_.front().second;
    }
  }
  auto compiled = std::make_shared<CompiledGrammar>(grammar, trie, max_cached_masks_);
  entries_.emplace_front(grammar->source, compiled);
  while (entries_.size() > max_grammars_) entries_.pop_back();
  return compiled;
}

Expected<GrammarMatcher> GrammarMatcher::create(std::shared_ptr<CompiledGrammar> compiled) {
  const int32_t initial = compiled->automaton().initial();
  if (initial < 0)
    return error(ErrorCode::kInvalidArgument, "the grammar's start rule grew past the recognizer's limits; simplify the grammar");
  return GrammarMatcher(std::move(compiled), initial);
}

Status GrammarMatcher::apply_mask(float* logits, int64_t n_logits) {
  const TokenTrie& t = compiled_->trie();
  if (ended_) {
    // After end-of-generation only end-of-generation (the engine stops before asking).
    TokenMask m(t.n_words(), 0);
    for (int32_t id : t.eog_ids) m[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
    for (int64_t i = 0; i < n_logits; ++i)
      if (i >= t.n_vocab || !mask_has(m, static_cast<int32_t>(i))) logits[i] = -INFINITY;
    return Status::ok();
  }
  FATHOM_ASSIGN_OR_RETURN(const TokenMask* m, compiled_->mask(config_));
  bool any = false;
  const int64_t n = std::min<int64_t>(n_logits, t.n_vocab);
  for (int64_t w = 0; w * 64 < n; ++w) {
    const uint64_t bits = (*m)[static_cast<size_t>(w)];
    any = any || bits != 0;
    if (bits == ~uint64_t{0}) continue;
    const int64_t end = std::min<int64_t>(n, (w + 1) * 64);
    for (int64_t i = w * 64; i < end; ++i)
      if (!((bits >> (i & 63)) & 1)) logits[i] = -INFINITY;
  }
  for (int64_t i = n; i < n_logits; ++i) logits[i] = -INFINITY;
  if (!any) return error(ErrorCode::kInvalidArgument, "the grammar allows no token of this vocabulary here (dead end)");
  return Status::ok();
}

Status GrammarMatcher::accept(int32_t token) {
  const TokenTrie& t = compiled_->trie();
  if (token < 0 || token >= t.n_vocab) return error(ErrorCode::kInvalidArgument, strprintf("token %d is outside the vocabulary", token));
  GrammarAutomaton& a = compiled_->automaton();
  if (std::find(t.eog_ids.begin(), t.eog_ids.end(), token) != t.eog_ids.end()) {
    if (!is_complete()) return error(ErrorCode::kInvalidArgument, "end of generation before the grammar is complete");
    ended_ = true;
    return Status::ok();
  }
  const std::string& piece = t.pieces[static_cast<size_t>(token)];
  if (ended_ || piece.empty()) return error(ErrorCode::kInvalidArgument, strprintf("the grammar does not allow token %d here", token));
  int32_t c = config_;
  for (char ch : piece) {
    c = a.next(c, static_cast<uint8_t>(ch));
    if (c == GrammarAutomaton::kOverflow) return error(ErrorCode::kOutOfRange, "the grammar's parse grew past its limits");
    if (c < 0) return error(ErrorCode::kInvalidArgument, strprintf("the grammar does not allow token %d here", token));
  }
  config_ = c;
  return Status::ok();
}

TokenMask reference_token_mask(const PlainRecognizer& state, const TokenTrie& trie) {
  TokenMask m(trie.n_words(), 0);
  for (int32_t id = 0; id < trie.n_vocab; ++id) {
    const std::string& piece = trie.pieces[static_cast<size_t>(id)];
    if (piece.empty()) continue;
    PlainRecognizer r = state;
    if (r.advance(piece)) m[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
  }
  if (state.accepting())
    for (int32_t id : trie.eog_ids) m[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
  return m;
}

}  // namespace fathom
