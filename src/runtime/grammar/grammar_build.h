// Internal: the mutable builder shared by the GBNF parser; not part of the public API.
#pragma once

#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/grammar/grammar.h"

namespace fathom::grammar_internal {

using CodeRange = std::pair<uint32_t, uint32_t>;  // inclusive code point range

struct BuildElement {
  bool is_rule = false;
  int32_t value = 0;  // byte set id or rule id
};

struct GrammarBuilder {
  std::vector<std::string> names;                                   // [rule]
  std::vector<std::vector<std::vector<BuildElement>>> alternatives; // [rule][alternative][element]
  std::vector<bool> defined;                                        // [rule] has a definition
  std::unordered_map<std::string, int32_t> by_name;
  std::unordered_map<std::string, std::string> undefined_where;     // name -> " (line N)" of its first use
  std::vector<ByteSet> sets;
  std::map<ByteSet, int32_t> set_ids;
  std::map<std::vector<CodeRange>, int32_t> class_rules;            // reuse one rule per distinct class
  int64_t n_elements = 0;
  int32_t generated = 0;

  int32_t rule_id(const std::string& name);       // existing or a new undefined rule
  int32_t new_rule(const std::string& parent);    // a generated, defined rule "parent_N"
  int32_t byte_set(const ByteSet& s);
  BuildElement single_byte(uint8_t b);
  Expected<BuildElement> code_point_class(const std::vector<CodeRange>& normalized, const std::string& parent);
  // Appends e{min,max} (max < 0: unbounded) to out.
  Expected<BuildElement> repeat(BuildElement e, int64_t min, int64_t max, const std::string& parent,
                                std::vector<BuildElement>* out, const GrammarLimits& limits);
  Status check_size(const GrammarLimits& limits) const;
  Expected<std::shared_ptr<const Grammar>> finish(const std::string& root_name, std::string source, const GrammarLimits& limits);
};

void append_utf8(uint32_t cp, std::string* out);
// Sorted, merged ranges; with negate, their complement within [0, 0x10FFFF].
std::vector<CodeRange> normalize_ranges(std::vector<CodeRange> ranges, bool negate);

}  // namespace fathom::grammar_internal
