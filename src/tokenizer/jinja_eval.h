// Jinja evaluator: renders a parsed template against a context. Scoping follows jinja2: `if`
// shares its scope, each `for` iteration gets a fresh scope whose assignments vanish at the end
// of the iteration (hence `namespace()` in chat templates), and macros see their arguments
// plus the template's top-level variables.
#pragma once

#include <string>

#include "core/status.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_value.h"

namespace fathom::jinja {

// Renders `tmpl` with `context` (a dict value: the template's variables). Runtime errors name
// the failing expression's position.
Expected<std::string> render(const Template& tmpl, const Value& context);

}  // namespace fathom::jinja
