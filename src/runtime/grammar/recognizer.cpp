#include "runtime/grammar/recognizer.h"

#include <algorithm>

namespace fathom {

// ---- PlainRecognizer: the reference ----

PlainRecognizer::PlainRecognizer(std::shared_ptr<const Grammar> grammar, const RecognizerLimits& limits)
    : grammar_(std::move(grammar)), limits_(limits) {
  std::vector<std::vector<int32_t>> out;
  bool accepting = false;
  for (int32_t alt : grammar_->rule_alternatives[static_cast<size_t>(grammar_->root)]) expand({alt}, &out, &accepting, 0);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  stacks_ = std::move(out);
  accepting_ = accepting;
  if (static_cast<int64_t>(stacks_.size()) > limits_.max_stacks && status_.is_ok())
    status_ = error(ErrorCode::kOutOfRange, strprintf("the grammar needs more than %d parse stacks", limits_.max_stacks));
}

// Turns a stack whose top may be a rule reference or an alternative's end into stacks whose top
// is a byte set; reaching the bottom means the input so far is a complete parse.
void PlainRecognizer::expand(std::vector<int32_t> stack, std::vector<std::vector<int32_t>>* out, bool* accepting, int depth) {
  if (!status_.is_ok()) return;
  if (depth > limits_.max_stack_depth || static_cast<int32_t>(stack.size()) > limits_.max_stack_depth) {
    status_ = error(ErrorCode::kOutOfRange, strprintf("grammar nesting deeper than %d", limits_.max_stack_depth));
    return;
  }
  const GrammarElement& e = grammar_->elements[static_cast<size_t>(stack.back())];
  switch (e.kind) {
    case GrammarElement::kBytes:
      out->push_back(std::move(stack));
      return;
    case GrammarElement::kEnd:
      stack.pop_back();
      if (stack.empty()) *accepting = true;
      else expand(std::move(stack), out, accepting, depth + 1);
      return;
    case GrammarElement::kRule: {
      const int32_t continuation = stack.back() + 1;
      // Tail position: the caller's frame is finished, so it is not kept (right recursion stays flat).
      if (grammar_->elements[static_cast<size_t>(continuation)].kind == GrammarElement::kEnd) stack.pop_back();
      else stack.back() = continuation;
      for (int32_t alt : grammar_->rule_alternatives[static_cast<size_t>(e.value)]) {
        std::vector<int32_t> child = stack;
        child.push_back(alt);
        expand(std::move(child), out, accepting, depth + 1);
      }
      return;
    }
  }
}

bool PlainRecognizer::advance(uint8_t byte) {
  if (!status_.is_ok()) return false;
  std::vector<std::vector<int32_t>> out;
  bool accepting = false;
  for (const std::vector<int32_t>& s : stacks_) {
    const GrammarElement& e = grammar_->elements[static_cast<size_t>(s.back())];
    if (!byte_set_has(grammar_->byte_sets[static_cast<size_t>(e.value)], byte)) continue;
    std::vector<int32_t> next = s;
    next.back() += 1;
    expand(std::move(next), &out, &accepting, 0);
  }
  if (!status_.is_ok()) return false;
  if (out.empty() && !accepting) return false;
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (static_cast<int64_t>(out.size()) > limits_.max_stacks) {
    status_ = error(ErrorCode::kOutOfRange, strprintf("the grammar needs more than %d parse stacks", limits_.max_stacks));
    return false;
  }
  stacks_ = std::move(out);
  accepting_ = accepting;
  return true;
}

bool PlainRecognizer::advance(std::string_view bytes) {
  PlainRecognizer copy = *this;
  for (char c : bytes)
    if (!copy.advance(static_cast<uint8_t>(c))) {
      status_ = copy.status_;
      return false;
    }
  *this = std::move(copy);
  return true;
}

// ---- GrammarAutomaton: the fast twin ----

size_t GrammarAutomaton::VectorHash::operator()(const std::vector<int32_t>& v) const {
  uint64_t h = 0xcbf29ce484222325ull ^ v.size();
  for (int32_t x : v) h = (h ^ static_cast<uint32_t>(x)) * 0x100000001b3ull + (h >> 29);
  return static_cast<size_t>(h);
}

GrammarAutomaton::GrammarAutomaton(std::shared_ptr<const Grammar> grammar, const RecognizerLimits& limits)
    : grammar_(std::move(grammar)), limits_(limits), n_classes_(grammar_->n_byte_classes) {
  std::vector<int32_t> tops;
  bool accepting = false;
  bool ok = true;
  for (int32_t alt : grammar_->rule_alternatives[static_cast<size_t>(grammar_->root)]) ok = ok && expand(alt, -1, &tops, &accepting, 0);
  initial_ = ok ? intern(std::move(tops), accepting) : kOverflow;
}

int32_t GrammarAutomaton::node(int32_t pos, int32_t parent) {
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(pos)) << 32) | static_cast<uint32_t>(parent);
  auto [it, inserted] = node_ids_.emplace(key, static_cast<int32_t>(nodes_.size()));
  if (inserted) nodes_.push_back({pos, parent});
  return it->second;
}

// The same expansion as PlainRecognizer::expand, on shared nodes: (pos, parent) is a stack
// whose top entry is `pos`. False when a limit was hit.
bool GrammarAutomaton::expand(int32_t pos, int32_t parent, std::vector<int32_t>* tops, bool* accepting, int depth) {
  if (depth > limits_.max_stack_depth || static_cast<int32_t>(nodes_.size()) >= limits_.max_nodes) return false;
  const GrammarElement& e = grammar_->elements[static_cast<size_t>(pos)];
  switch (e.kind) {
    case GrammarElement::kBytes:
      tops->push_back(node(pos, parent));
      return static_cast<int32_t>(tops->size()) <= 4 * limits_.max_stacks;  // duplicates removed later
    case GrammarElement::kEnd:
      if (parent < 0) {
        *accepting = true;
        return true;
      } else {
        const Node p = nodes_[static_cast<size_t>(parent)];
        return expand(p.pos, p.parent, tops, accepting, depth + 1);
      }
    case GrammarElement::kRule: {
      const int32_t continuation = pos + 1;
      const int32_t frame = grammar_->elements[static_cast<size_t>(continuation)].kind == GrammarElement::kEnd ? parent : node(continuation, parent);
      for (int32_t alt : grammar_->rule_alternatives[static_cast<size_t>(e.value)])
        if (!expand(alt, frame, tops, accepting, depth + 1)) return false;
      return true;
    }
  }
  return false;
}

int32_t GrammarAutomaton::intern(std::vector<int32_t> tops, bool accepting) {
  std::sort(tops.begin(), tops.end());
  tops.erase(std::unique(tops.begin(), tops.end()), tops.end());
  if (static_cast<int32_t>(tops.size()) > limits_.max_stacks) return kOverflow;
  std::vector<int32_t> key = tops;
  key.push_back(accepting ? 1 : 0);
  auto it = config_ids_.find(key);
  if (it != config_ids_.end()) return it->second;
  if (static_cast<int32_t>(configs_.size()) >= limits_.max_configs) return kOverflow;
  const int32_t id = static_cast<int32_t>(configs_.size());
  configs_.push_back({std::move(tops), accepting});
  config_ids_.emplace(std::move(key), id);
  transitions_.resize(transitions_.size() + static_cast<size_t>(n_classes_), kUnknown);
  return id;
}

int32_t GrammarAutomaton::compute_next(int32_t config, uint8_t byte) {
  std::vector<int32_t> tops;
  bool accepting = false;
  bool ok = true;
  // Copied: expand() may grow configs_ and move the vector.
  const std::vector<int32_t> current = configs_[static_cast<size_t>(config)].tops;
  for (int32_t t : current) {
    const Node n = nodes_[static_cast<size_t>(t)];
    const GrammarElement& e = grammar_->elements[static_cast<size_t>(n.pos)];
    if (!byte_set_has(grammar_->byte_sets[static_cast<size_t>(e.value)], byte)) continue;
    if (!(ok = expand(n.pos + 1, n.parent, &tops, &accepting, 0))) break;
  }
  int32_t result = kDead;
  if (!ok) result = kOverflow;
  else if (!tops.empty() || accepting) result = intern(std::move(tops), accepting);
  transitions_[static_cast<size_t>(config) * static_cast<size_t>(n_classes_) + grammar_->byte_class[byte]] = result;
  return result;
}

}  // namespace fathom
