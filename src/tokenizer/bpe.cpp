#include "tokenizer/bpe.h"

#include <queue>

#include "tokenizer/unicode.h"

namespace fathom {

BpeTokenizer::BpeTokenizer(Vocab vocab) : VocabTokenizer(std::move(vocab)) {}

Expected<std::unique_ptr<BpeTokenizer>> BpeTokenizer::create(Vocab vocab, const std::vector<std::string>& merges,
                                                             const std::vector<std::string>& patterns) {
  FATHOM_RETURN_IF_ERROR(vocab.validate());
  std::unique_ptr<BpeTokenizer> tok(new BpeTokenizer(std::move(vocab)));
  FATHOM_ASSIGN_OR_RETURN(tok->splitter_, RegexSplitter::compile(patterns));

  for (int b = 0; b < 256; ++b) {
    std::string symbol;
    unicode::append_utf8(symbol, unicode::byte_to_code_point(static_cast<uint8_t>(b)));
    tok->byte_token_[static_cast<size_t>(b)] = tok->token_id(symbol).value_or(-1);
  }

  tok->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& merge = merges[rank];
    // Split at the first space after position 0: a token cannot be empty, so "  x" would mean
    // left " "; byte-level tokens never contain a raw space, so this is unambiguous in practice.
    const size_t space = merge.find(' ', 1);
    if (space == std::string::npos) {
      return error(ErrorCode::kInvalidFile,
                   strprintf("merge %zu ('%s') is not two tokens separated by a space", rank, merge.c_str()));
    }
    const std::string_view left(merge.data(), space);
    const std::string_view right(merge.data() + space + 1, merge.size() - space - 1);
    const auto left_id = tok->token_id(left), right_id = tok->token_id(right);
    std::string joined(left);
    joined += right;
    const auto result = tok->token_id(joined);
    // A merge whose parts or result are not in the vocabulary can never fire; skip it.
    if (!left_id || !right_id || !result) continue;
    tok->merges_.emplace(pair_key(*left_id, *right_id), Merge{static_cast<int32_t>(rank), *result});
  }
  return tok;
}

void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>* out) const {
  // Symbols form a doubly linked list over the piece's bytes; a merge rewrites the left symbol
  // and unlinks the right one. Candidates wait in a min-heap keyed by (rank, position), the order
  // in which BPE applies merges; a candidate whose symbols changed since it was queued is stale
  // and skipped, so no heap entry is ever updated in place.
  struct Symbol {
    int32_t id;    // current token id; kDead once merged into its left neighbour
    int32_t prev;  // index of the previous live symbol, -1 at the start
    int32_t next;  // index of the next live symbol, -1 at the end
  };
  struct Candidate {
    int32_t rank;      // merge rank
    int32_t left;      // index of the left symbol
    int32_t left_id;   // left symbol's id when queued, to detect staleness
    int32_t right_id;  // right symbol's id when queued
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  constexpr int32_t kDead = -2;

  const int32_t n = static_cast<int32_t>(piece.size());
  if (n == 1) {
    const int32_t id = byte_token_[static_cast<uint8_t>(piece[0])];
    if (id >= 0) out->push_back(id);
    else if (vocab_.unk_id >= 0) out->push_back(vocab_.unk_id);
    return;
  }
  std::vector<Symbol> symbols(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_token_[static_cast<uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  const auto try_queue = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    const int32_t a = symbols[left].id, b = symbols[right].id;
    if (a < 0 || b < 0) return;
    auto it = merges_.find(pair_key(a, b));
    if (it != merges_.end()) queue.push({it->second.rank, left, a, b});
  };
  for (int32_t i = 0; i + 1 < n; ++i) try_queue(i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    if (left.id != c.left_id || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (right.id != c.right_id) continue;
    left.id = merges_.find(pair_key(c.left_id, c.right_id))->second.result;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    right.id = kDead;
    try_queue(left.prev);
    try_queue(c.left);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const int32_t id = symbols[i].id;
    if (id >= 0) out->push_back(id);
    else if (vocab_.unk_id >= 0) out->push_back(vocab_.unk_id);
  }
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_bos && vocab_.bos_id >= 0) ids.push_back(vocab_.bos_id);
  std::vector<Fragment> fragments;
  specials_.split(text, parse_special, &fragments);
  std::vector<TextSpan> pieces;
  for (const Fragment& fragment : fragments) {
    if (fragment.token >= 0) {
      ids.push_back(fragment.token);
      continue;
    }
    splitter_->split(fragment.text, &pieces);
    for (const TextSpan& span : pieces) encode_piece(fragment.text.substr(span.offset, span.length), &ids);
  }
  if (add_bos && vocab_.add_eos && vocab_.eos_id >= 0) ids.push_back(vocab_.eos_id);
  return ids;
}

std::string BpeTokenizer::token_to_piece(int32_t id, bool render_special) const {
  if (id < 0 || id >= n_vocab()) return std::string();
  const std::string& text = vocab_.tokens[static_cast<size_t>(id)];
  switch (vocab_.type(id)) {
    case TokenType::kUserDefined:
      return text;  // stored as raw text, not in the byte-level alphabet
    case TokenType::kControl:
    case TokenType::kUnknown:
      return render_special ? text : std::string();
    case TokenType::kUnused:
      return std::string();
    default:
      break;
  }
  std::string bytes;
  bytes.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    const int byte = unicode::byte_from_code_point(unicode::next_code_point(text, &pos));
    if (byte >= 0) bytes += static_cast<char>(byte);
    else bytes.append(text, start, pos - start);  // not byte-level: keep the character
  }
  return bytes;
}

}  // namespace fathom
