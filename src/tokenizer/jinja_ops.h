// Operations on values with jinja2/python semantics: attribute and item access (jinja2's
// getattr/getitem fallbacks, sandboxed methods), slicing, arithmetic, `in`, iteration and
// argument binding. Errors are values without a position; the evaluator adds it.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "tokenizer/jinja_value.h"

namespace fathom::jinja {

// `obj.name`: for dicts and strings a method name gives the bound method (python getattr comes
// first), otherwise a dict key; a missing attribute is Undefined, an Undefined `obj` an error.
Expected<Value> get_attribute(const Value& object, const std::string& name);
// `obj[key]`: item first, then the attribute of that name; missing gives Undefined.
Expected<Value> get_item(const Value& object, const Value& key);
// `obj[start:stop:step]` on strings (by code point) and lists; absent bounds are Undefined/None.
Expected<Value> get_slice(const Value& object, const Value& start, const Value& stop, const Value& step);

// + - * / // % ** ~ with python's rules (bool is an int, str + int is a TypeError, ...).
Expected<Value> binary_operation(std::string_view op, const Value& left, const Value& right);
Expected<Value> unary_minus(const Value& operand);
// `item in container`.
Expected<bool> contains(const Value& container, const Value& item);
// What `for x in value` visits: list items, dict keys, string characters; Undefined is empty.
Expected<std::vector<Value>> iterate(const Value& value);
// Calls a callable value; anything else is a TypeError (an Undefined reports why it is one).
Expected<Value> call_value(const Value& callee, const CallArgs& args);

// Binds call arguments to named parameters like a python signature; absent ones are nullopt.
Expected<std::vector<std::optional<Value>>> bind_arguments(const CallArgs& args, std::string_view function,
                                                           std::initializer_list<std::string_view> parameters);
// The failure jinja2 raises when an Undefined is used for more than printing or testing.
Status undefined_error(const Value& undefined);

}  // namespace fathom::jinja
