// Jinja parser: tokens to syntax tree, with jinja2's operator precedence (filters and `is`
// tests bind tighter than arithmetic: `a + b | f` is `a + (b | f)`). Constructs outside the
// supported subset (include, extends, block, call, filter blocks, recursive loops, ...) are a
// kUnsupported error naming the construct and its position.
#pragma once

#include <memory>
#include <string_view>

#include "core/status.h"
#include "tokenizer/jinja_ast.h"

namespace fathom::jinja {

Expected<std::unique_ptr<Template>> parse_template(std::string_view source, const LexOptions& options);

}  // namespace fathom::jinja
