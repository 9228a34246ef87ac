// jinja2's builtin filters and tests, and the globals of transformers' chat-template
// environment (namespace, range, dict, raise_exception, strftime_now). An unknown filter or test
// is a kUnsupported error naming it.
#pragma once

#include <string_view>

#include "core/status.h"
#include "tokenizer/jinja_value.h"

namespace fathom::jinja {

// `input | name(args)`.
Expected<Value> apply_filter(std::string_view name, const Value& input, const CallArgs& args);
// `input is name(args)`.
Expected<bool> apply_test(std::string_view name, const Value& input, const CallArgs& args);
// The functions every template can call; looked up after the template's own variables.
Object make_globals();

}  // namespace fathom::jinja
