#include "tokenizer/spm.h"

#include <cstdio>
#include <queue>

#include "tokenizer/unicode.h"

namespace fathom {

namespace {
constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK
constexpr std::string_view kUnknownPiece = "\xE2\x96\x85";  // U+2585, what llama.cpp prints for <unk>
}  // namespace

Expected<std::unique_ptr<SpmTokenizer>> SpmTokenizer::create(Vocab vocab, bool add_space_prefix) {
  FATHOM_RETURN_IF_ERROR(vocab.validate());
  if (vocab.scores.empty()) vocab.scores.assign(vocab.tokens.size(), 0.0f);
  std::unique_ptr<SpmTokenizer> tok(new SpmTokenizer(std::move(vocab)));
  tok->add_space_prefix_ = add_space_prefix;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    tok->byte_token_[static_cast<size_t>(b)] = tok->token_id(name).value_or(-1);
  }
  return tok;
}

void SpmTokenizer::append_bytes(std::string_view text, std::vector<int32_t>* out) const {
  for (char c : text) {
    const int32_t id = byte_token_[static_cast<uint8_t>(c)];
    if (id >= 0) out->push_back(id);
    else if (vocab_.unk_id >= 0) out->push_back(vocab_.unk_id);
  }
}

void SpmTokenizer::encode_escaped(std::string_view text, std::vector<int32_t>* out) const {
  // Symbols are byte ranges of text in a linked list; a bigram is queued only when the joined
  // text is a token, best score first and leftmost on ties. Stale bigrams (one side merged since)
  // are recognised by their size no longer matching.
  struct Symbol {
    int32_t prev;    // previous live symbol, -1 at the start
    int32_t next;    // next live symbol, -1 at the end
    size_t offset;   // first byte in text
    size_t length;   // bytes; 0 once merged into the left neighbour
  };
  struct Bigram {
    float score;    // score of the joined token
    int32_t left;   // left symbol index
    int32_t right;  // right symbol index
    size_t length;  // bytes of the joined text when queued
    bool operator<(const Bigram& o) const { return score != o.score ? score < o.score : left > o.left; }
  };

  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = std::min(unicode::utf8_sequence_length(static_cast<uint8_t>(text[pos])), text.size() - pos);
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({index - 1, -1, pos, n});
    if (index > 0) symbols[index - 1].next = index;
    pos += n;
  }
  std::priority_queue<Bigram> queue;
  const auto try_bigram = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const size_t length = symbols[left].length + symbols[right].length;
    auto id = token_id(text.substr(symbols[left].offset, length));
    if (!id) return;
    queue.push({vocab_.scores[static_cast<size_t>(*id)], left, right, length});
  };
  for (size_t i = 1; i < symbols.size(); ++i) try_bigram(static_cast<int32_t>(i) - 1, static_cast<int32_t>(i));

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& left = symbols[b.left];
    Symbol& right = symbols[b.right];
    if (left.length == 0 || right.length == 0 || left.length + right.length != b.length) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = b.left;
    try_bigram(left.prev, b.left);
    try_bigram(b.left, left.next);
  }
  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    const std::string_view piece = text.substr(symbols[i].offset, symbols[i].length);
    if (auto id = token_id(piece)) out->push_back(*id);
    else append_bytes(piece, out);
  }
}

std::vector<int32_t> SpmTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> ids;
  if (add_bos && vocab_.bos_id >= 0) ids.push_back(vocab_.bos_id);
  std::vector<Fragment> fragments;
  specials_.split(text, parse_special, &fragments);
  bool after_special = true;  // the prompt start counts as "after a special token"
  std::string escaped;
  for (const Fragment& fragment : fragments) {
    if (fragment.token >= 0) {
      ids.push_back(fragment.token);
      after_special = true;
      continue;
    }
    escaped.clear();
    if (add_space_prefix_ && after_special) escaped += kSpaceMark;
    for (char c : fragment.text) {
      if (c == ' ') escaped += kSpaceMark;
      else escaped += c;
    }
    encode_escaped(escaped, &ids);
    after_special = false;
  }
  if (add_bos && vocab_.add_eos && vocab_.eos_id >= 0) ids.push_back(vocab_.eos_id);
  return ids;
}

std::string SpmTokenizer::token_to_piece(int32_t id, bool render_special) const {
  if (id < 0 || id >= n_vocab()) return std::string();
  const std::string& text = vocab_.tokens[static_cast<size_t>(id)];
  switch (vocab_.type(id)) {
    case TokenType::kControl:
      return render_special ? text : std::string();
    case TokenType::kUnknown:
      return std::string(kUnknownPiece);
    case TokenType::kUnused:
      return std::string();
    case TokenType::kUserDefined:
      return text;
    case TokenType::kByte: {
      unsigned value = 0;
      if (text.size() == 6 && std::sscanf(text.c_str(), "<0x%02X>", &value) == 1) {
        return std::string(1, static_cast<char>(value));
      }
      return text;
    }
    default:
      break;
  }
  std::string piece;
  piece.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    if (text.compare(pos, kSpaceMark.size(), kSpaceMark) == 0) {
      piece += ' ';
      pos += kSpaceMark.size();
    } else {
      piece += text[pos++];
    }
  }
  return piece;
}

}  // namespace fathom
