// Internal to the JSON Schema converter: `pattern` -> GBNF for a JSON string's content.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace fathom {

// GBNF (an expression, using the converter's `char` rule for the unanchored ends) matching the
// JSON spelling of exactly the strings the ECMAScript pattern matches somewhere (or as a whole
// with ^...$). Constructs outside the regular subset are errors naming them.
Expected<std::string> json_pattern_to_gbnf(std::string_view pattern);

}  // namespace fathom
