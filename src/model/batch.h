// A forward batch: a flat list of tokens from one or more sequences. A prompt is a batch whose
// tokens share a sequence id; a decode step for eight users is eight tokens of eight sequences;
// prefill chunks and decodes mix freely. Tokens of one sequence appear in position order and
// continue where that sequence's cache ends.
#pragma once

#include <cstdint>
#include <vector>

namespace fathom {

struct Batch {
  std::vector<int32_t> tokens;     // [n_tokens] token ids
  std::vector<int32_t> positions;  // [n_tokens] position of each token in its sequence
  std::vector<int32_t> seq_ids;    // [n_tokens] sequence id of each token
  std::vector<uint8_t> logits;     // [n_tokens] 1 where the caller wants this token's logits

  void add(int32_t token, int32_t position, int32_t seq_id, bool want_logits) {
    tokens.push_back(token);
    positions.push_back(position);
    seq_ids.push_back(seq_id);
    logits.push_back(want_logits ? 1 : 0);
  }
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  int64_t n_logits() const {
    int64_t n = 0;
    for (uint8_t l : logits) n += l;
    return n;
  }
  void clear() {
    tokens.clear();
    positions.clear();
    seq_ids.clear();
    logits.clear();
  }
};

}  // namespace fathom
