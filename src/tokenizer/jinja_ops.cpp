#include "tokenizer/jinja_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tokenizer/jinja_strings.h"

namespace fathom::jinja {

namespace {
constexpr size_t kMaxRepeatedLength = size_t{1} << 24;  // bytes or items a `*` repetition may produce
}  // namespace

namespace {

Status type_error(const std::string& message) { return error(ErrorCode::kInvalidArgument, "TypeError: " + message); }

// jinja2 names objects in "has no attribute" messages by this description.
std::string object_description(const Value& v) {
  if (v.is_none()) return "'None'";
  return std::string("'") + v.type_name() + " object'";
}

Value missing_attribute(const Value& object, const std::string& name) {
  return Value::undefined(object_description(object) + " has no attribute '" + name + "'");
}

// Python's index normalisation for a sequence of `size`: negative counts from the end.
std::optional<size_t> normalize_index(int64_t index, size_t size) {
  if (index < 0) index += static_cast<int64_t>(size);
  if (index < 0 || index >= static_cast<int64_t>(size)) return std::nullopt;
  return static_cast<size_t>(index);
}

std::optional<std::string> optional_string_arg(const std::optional<Value>& v) {
  if (!v || v->is_none() || v->is_undefined()) return std::nullopt;
  return to_str(*v);
}

Expected<std::string> string_arg(const std::optional<Value>& v, std::string_view method, std::string_view param) {
  if (!v) return type_error(std::string(method) + "() missing required argument '" + std::string(param) + "'");
  if (v->is_undefined()) return undefined_error(*v);
  if (!v->is_string()) {
    return type_error(std::string(method) + "() argument must be str, not " + v->type_name());
  }
  return v->as_string();
}

Expected<int64_t> int_arg(const std::optional<Value>& v, int64_t fallback) {
  if (!v || v->is_none()) return fallback;
  if (v->is_undefined()) return undefined_error(*v);
  if (!v->is_int() && !v->is_bool()) return type_error(std::string("an integer is required, not ") + v->type_name());
  return v->as_int();
}

// `s.startswith(x)` / `s.endswith(x)` where x may be a tuple of candidates.
Expected<Value> affix_test(const std::string& text, const std::optional<Value>& arg, bool prefix, std::string_view method) {
  std::vector<std::string> candidates;
  if (arg && arg->is_array()) {
    for (const Value& item : arg->as_array().items) {
      FATHOM_ASSIGN_OR_RETURN(std::string s, string_arg(item, method, "prefix"));
      candidates.push_back(std::move(s));
    }
  } else {
    FATHOM_ASSIGN_OR_RETURN(std::string s, string_arg(arg, method, "prefix"));
    candidates.push_back(std::move(s));
  }
  for (const auto& c : candidates) {
    if (c.size() > text.size()) continue;
    if (prefix ? text.compare(0, c.size(), c) == 0 : text.compare(text.size() - c.size(), c.size(), c) == 0) return Value(true);
  }
  return Value(false);
}

bool all_code_points(const std::string& text, bool (*predicate)(char32_t)) {
  if (text.empty()) return false;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!predicate(next_code_point(text, pos))) return false;
  }
  return true;
}

Expected<Value> call_string_method(const std::string& text, const std::string& name, const CallArgs& args) {
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    FATHOM_ASSIGN_OR_RETURN(auto a, bind_arguments(args, name, {"chars"}));
    return Value(python_strip(text, optional_string_arg(a[0]), name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    FATHOM_ASSIGN_OR_RETURN(auto a, bind_arguments(args, name, {"sep", "maxsplit"}));
    std::optional<std::string> sep = optional_string_arg(a[0]);
    if (sep && sep->empty()) return error(ErrorCode::kInvalidArgument, "ValueError: empty separator");
    FATHOM_ASSIGN_OR_RETURN(int64_t max_split, int_arg(a[1], -1));
    std::vector<Value> parts;
    for (auto& part : python_split(text, sep, max_split, name == "rsplit")) parts.emplace_back(std::move(part));
    return Value::array(std::move(parts));
  }
  if (name == "startswith" || name == "endswith") {
    FATHOM_ASSIGN_OR_RETURN(auto a, bind_arguments(args, name, {"prefix"}));
    return affix_test(text, a[0], name == "startswith", name);
  }
  if (name == "replace") {
    FATHOM_ASSIGN_OR_RETURN(auto a, bind_arguments(args, name, {"old", "new", "count"}));
    FATHOM_ASSIGN_OR_RETURN(std::string old_text, string_arg(a[0], name, "old"));
    FATHOM_ASSIGN_OR_RETURN(std::string new_text, string_arg(a[1], name, "new"));
    FATHOM_ASSIGN_OR_RETURN(int64_t count, int_arg(a[2], -1));
    return Value(python_replace(text, old_text, new_text, count));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    FATHOM_RETURN_IF_ERROR(bind_arguments(args, name, {}).status());
    if (name == "upper") return Value(python_upper(text));
    if (name == "lower") return Value(python_lower(text));
    if (name == "title") return Value(python_title(text));
    return Value(python_capitalize(text));
  }
  if (name == "find" || name == "rfind" || name == "count" || name == "index" || name == "rindex") {
    FATHOM_ASSIGN_OR_RETURN(auto a, bind_arguments(args, name, {"sub"}));
    FATHOM_ASSIGN_OR_RETURN(std::string sub, string_arg(a[0], name, "sub"));
    if (name == "count") {
      if (sub.empty()) return Value(static_cast<int64_t>(code_point_count(text) + 1));
      int64_t count = 0;
      for (size_t at = text.find(sub); at != std::string::npos; at = text.find(sub, at + sub.size())) ++count;
      return Value(count);
    }
    const size_t at = (name == "find" || name == "index") ? text.find(sub) : text.rfind(sub);
    if (at == std::string::npos) {
      if (name == "index" || name == "rindex") return error(ErrorCode::kInvalidArgument, "ValueError: substring not found");
      return Value(static_cast<int64_t>(-1));
    }
    return Value(static_cast<int64_t>(code_point_count(std::string_view(text).substr(0, at))));
  }
  if (name == "join") {
    FATHOM_ASSIGN_OR_RETURN(auto a, bind_arguments(args, name, {"iterable"}));
    if (!a[0]) return type_error("join() takes exactly one argument");
    FATHOM_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(*a[0]));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) {
        return type_error(strprintf("sequence item %zu: expected str instance, %s found", i, items[i].type_name()));
      }
      if (i > 0) out += text;
      out += items[i].as_string();
    }
    return Value(std::move(out));
  }
  if (name == "isspace") return Value(all_code_points(text, is_python_space));
  if (name == "isdigit") return Value(all_code_points(text, [](char32_t c) { return c >= '0' && c <= '9'; }));
  if (name == "isalpha") {
    return Value(all_code_points(text, [](char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }));
  }
  if (name == "isalnum") {
    return Value(all_code_points(text, [](char32_t c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    }));
  }
  if (name == "islower") return Value(python_lower(text) == text && python_upper(text) != text);
  if (name == "isupper") return Value(python_upper(text) == text && python_lower(text) != text);
  return error(ErrorCode::kUnsupported, "unsupported str method '" + name + "'");
}

Expected<Value> call_dict_method(const Object& object, const std::string& name, const CallArgs& args) {
  if (name == "items" || name == "keys" || name == "values") {
    FATHOM_RETURN_IF_ERROR(bind_arguments(args, name, {}).status());
    std::vector<Value> out;
    for (const auto& [key, value] : object.entries) {
      if (name == "items") {
        out.push_back(Value::array({Value(key), value}, /*is_tuple=*/true));
      } else {
        out.push_back(name == "keys" ? Value(key) : value);
      }
    }
    return Value::array(std::move(out));
  }
  if (name == "get") {
    FATHOM_ASSIGN_OR_RETURN(auto a, bind_arguments(args, name, {"key", "default"}));
    if (!a[0]) return type_error("get expected at least 1 argument, got 0");
    if (a[0]->is_string()) {
      if (const Value* found = object.find(a[0]->as_string())) return *found;
    }
    return a[1] ? *a[1] : Value::none();
  }
  return error(ErrorCode::kUnsupported, "unsupported dict method '" + name + "'");
}

// Names python resolves as methods before dict keys / as str attributes.
bool is_dict_method(std::string_view name) {
  return name == "items" || name == "keys" || name == "values" || name == "get" || name == "copy" ||
         name == "update" || name == "pop" || name == "popitem" || name == "setdefault" || name == "clear" ||
         name == "fromkeys";
}

bool is_string_method(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith", "replace", "upper",
      "lower", "title", "capitalize", "find", "rfind", "count", "index", "rindex", "join", "isspace",
      "isdigit", "isalpha", "isalnum", "islower", "isupper", "format", "splitlines", "center", "ljust",
      "rjust", "zfill", "partition", "rpartition", "casefold", "swapcase", "encode", "expandtabs"};
  return std::find(std::begin(kNames), std::end(kNames), name) != std::end(kNames);
}

bool is_list_method(std::string_view name) {
  return name == "append" || name == "extend" || name == "insert" || name == "pop" || name == "remove" ||
         name == "clear" || name == "sort" || name == "reverse" || name == "index" || name == "count" || name == "copy";
}

// ImmutableSandboxedEnvironment refuses methods that would modify a list or dict.
bool is_mutating(std::string_view name) {
  return name == "append" || name == "extend" || name == "insert" || name == "pop" || name == "remove" ||
         name == "clear" || name == "sort" || name == "reverse" || name == "update" || name == "popitem" ||
         name == "setdefault";
}

Value bound_method(const Value& receiver, const std::string& name) {
  return Value::callable(name, [receiver, name](const CallArgs& args) -> Expected<Value> {
    if ((receiver.is_array() || receiver.is_object()) && is_mutating(name)) {
      return error(ErrorCode::kInvalidArgument, "SecurityError: access to attribute '" + name + "' of '" +
                                                    receiver.type_name() + "' object is unsafe.");
    }
    if (receiver.is_string()) return call_string_method(receiver.as_string(), name, args);
    if (receiver.is_object()) return call_dict_method(receiver.as_object(), name, args);
    if (receiver.is_array() && (name == "index" || name == "count")) {
      FATHOM_ASSIGN_OR_RETURN(auto a, bind_arguments(args, name, {"value"}));
      if (!a[0]) return type_error(name + "() takes exactly one argument");
      const auto& items = receiver.as_array().items;
      int64_t count = 0;
      for (size_t i = 0; i < items.size(); ++i) {
        if (!values_equal(items[i], *a[0])) continue;
        if (name == "index") return Value(static_cast<int64_t>(i));
        ++count;
      }
      if (name == "index") return error(ErrorCode::kInvalidArgument, "ValueError: value is not in list");
      return Value(count);
    }
    return error(ErrorCode::kUnsupported, std::string("unsupported ") + receiver.type_name() + " method '" + name + "'");
  });
}

// Python slice bounds for a sequence of `size` (PySlice_AdjustIndices).
struct SliceBounds {
  int64_t start;  // first index visited
  int64_t stop;   // index where the walk stops (exclusive)
  int64_t step;   // stride, never 0
};

Expected<SliceBounds> slice_bounds(const Value& start, const Value& stop, const Value& step, int64_t size) {
  const auto present = [](const Value& v) { return !v.is_undefined() && !v.is_none(); };
  for (const Value* v : {&start, &stop, &step}) {
    if (present(*v) && !v->is_int() && !v->is_bool()) {
      return type_error("slice indices must be integers or None or have an __index__ method");
    }
  }
  SliceBounds b{0, 0, present(step) ? step.as_int() : 1};
  if (b.step == 0) return error(ErrorCode::kInvalidArgument, "ValueError: slice step cannot be zero");
  const auto clamp = [&](const Value& v, int64_t fallback) -> int64_t {
    if (!present(v)) return fallback;
    int64_t i = v.as_int();
    if (i < 0) {
      i += size;
      if (i < 0) i = b.step < 0 ? -1 : 0;
    } else if (i >= size) {
      i = b.step < 0 ? size - 1 : size;
    }
    return i;
  };
  b.start = clamp(start, b.step < 0 ? size - 1 : 0);
  b.stop = clamp(stop, b.step < 0 ? -1 : size);
  return b;
}

template <typename T>
std::vector<T> apply_slice(const std::vector<T>& items, const SliceBounds& b) {
  std::vector<T> out;
  if (b.step > 0) {
    for (int64_t i = b.start; i < b.stop; i += b.step) out.push_back(items[static_cast<size_t>(i)]);
  } else {
    for (int64_t i = b.start; i > b.stop; i += b.step) out.push_back(items[static_cast<size_t>(i)]);
  }
  return out;
}

Expected<Value> checked_int(__int128 value) {
  if (value > std::numeric_limits<int64_t>::max() || value < std::numeric_limits<int64_t>::min()) {
    return error(ErrorCode::kUnsupported, "integer result beyond 64 bits");
  }
  return Value(static_cast<int64_t>(value));
}

std::string operand_error(std::string_view op, const Value& a, const Value& b) {
  return "TypeError: unsupported operand type(s) for " + std::string(op) + ": '" + a.type_name() + "' and '" +
         b.type_name() + "'";
}

// printf-style `'%s' % value` for the conversions chat templates use (%s %d %i %r %%).
Expected<Value> percent_format(const std::string& format, const Value& arguments) {
  std::vector<Value> args;
  if (arguments.is_array() && arguments.as_array().is_tuple) {
    args = arguments.as_array().items;
  } else {
    args.push_back(arguments);
  }
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out.push_back(format[i]);
      continue;
    }
    if (++i >= format.size()) return error(ErrorCode::kInvalidArgument, "ValueError: incomplete format");
    const char conv = format[i];
    if (conv == '%') {
      out.push_back('%');
      continue;
    }
    if (next >= args.size()) return type_error("not enough arguments for format string");
    const Value& arg = args[next++];
    if (conv == 's') {
      out += to_str(arg);
    } else if (conv == 'r') {
      out += to_repr(arg);
    } else if (conv == 'd' || conv == 'i') {
      if (!arg.is_number()) return type_error(std::string("%d format: a real number is required, not ") + arg.type_name());
      out += std::to_string(arg.is_float() ? static_cast<int64_t>(arg.as_float()) : arg.as_int());
    } else {
      return error(ErrorCode::kUnsupported, strprintf("'%%%c' conversion in string formatting", conv));
    }
  }
  if (next < args.size()) return type_error("not all arguments converted during string formatting");
  return Value(std::move(out));
}

Expected<Value> numeric_operation(std::string_view op, const Value& a, const Value& b) {
  const bool use_float = a.is_float() || b.is_float();
  if (op == "/") {
    if (b.as_float() == 0.0) return error(ErrorCode::kInvalidArgument, "ZeroDivisionError: division by zero");
    return Value(a.as_float() / b.as_float());
  }
  if (use_float) {
    const double x = a.as_float();
    const double y = b.as_float();
    if (op == "+") return Value(x + y);
    if (op == "-") return Value(x - y);
    if (op == "*") return Value(x * y);
    if (op == "**") return Value(std::pow(x, y));
    if (y == 0.0) return error(ErrorCode::kInvalidArgument, "ZeroDivisionError: float modulo or floor division by zero");
    if (op == "//") return Value(std::floor(x / y));
    double r = std::fmod(x, y);
    if (r != 0.0 && ((r < 0) != (y < 0))) r += y;
    return Value(r);
  }
  const __int128 x = a.as_int();
  const __int128 y = b.as_int();
  if (op == "+") return checked_int(x + y);
  if (op == "-") return checked_int(x - y);
  if (op == "*") return checked_int(x * y);
  if (op == "**") {
    if (y < 0) return Value(std::pow(static_cast<double>(x), static_cast<double>(y)));
    __int128 result = 1;
    for (__int128 i = 0; i < y; ++i) {
      result *= x;
      if (result > std::numeric_limits<int64_t>::max() || result < std::numeric_limits<int64_t>::min()) {
        return error(ErrorCode::kUnsupported, "integer result beyond 64 bits");
      }
    }
    return checked_int(result);
  }
  if (y == 0) return error(ErrorCode::kInvalidArgument, "ZeroDivisionError: integer division or modulo by zero");
  __int128 q = x / y;
  if ((x % y != 0) && ((x < 0) != (y < 0))) --q;  // floor division
  if (op == "//") return checked_int(q);
  return checked_int(x - q * y);
}

}  // namespace

Status undefined_error(const Value& undefined) {
  const std::string& hint = undefined.undefined_hint();
  return error(ErrorCode::kInvalidArgument, "UndefinedError: " + (hint.empty() ? std::string("value is undefined") : hint));
}

Expected<std::vector<std::optional<Value>>> bind_arguments(const CallArgs& args, std::string_view function,
                                                           std::initializer_list<std::string_view> parameters) {
  std::vector<std::optional<Value>> bound(parameters.size());
  if (args.positional.size() > parameters.size()) {
    return type_error(strprintf("%.*s() takes at most %zu arguments (%zu given)", static_cast<int>(function.size()),
                                function.data(), parameters.size(), args.positional.size()));
  }
  for (size_t i = 0; i < args.positional.size(); ++i) bound[i] = args.positional[i];
  for (const auto& [key, value] : args.keyword) {
    const auto it = std::find(parameters.begin(), parameters.end(), std::string_view(key));
    if (it == parameters.end()) {
      return type_error(std::string(function) + "() got an unexpected keyword argument '" + key + "'");
    }
    auto& slot = bound[static_cast<size_t>(it - parameters.begin())];
    if (slot) return type_error(std::string(function) + "() got multiple values for argument '" + key + "'");
    slot = value;
  }
  return bound;
}

Expected<Value> get_attribute(const Value& object, const std::string& name) {
  switch (object.kind()) {
    case Value::Kind::kUndefined:
      return undefined_error(object);
    case Value::Kind::kObject:
      if (is_dict_method(name)) return bound_method(object, name);
      if (const Value* found = object.as_object().find(name)) return *found;
      return missing_attribute(object, name);
    case Value::Kind::kNamespace:
      if (const Value* found = object.namespace_attributes().find(name)) return *found;
      return missing_attribute(object, name);
    case Value::Kind::kString:
      if (is_string_method(name)) return bound_method(object, name);
      return missing_attribute(object, name);
    case Value::Kind::kArray:
      if (is_list_method(name)) return bound_method(object, name);
      return missing_attribute(object, name);
    default:
      return missing_attribute(object, name);
  }
}

Expected<Value> get_item(const Value& object, const Value& key) {
  if (object.is_undefined()) return undefined_error(object);
  if (object.is_object() && key.is_string()) {
    if (const Value* found = object.as_object().find(key.as_string())) return *found;
  }
  if ((object.is_array() || object.is_string()) && (key.is_int() || key.is_bool())) {
    if (object.is_array()) {
      const auto& items = object.as_array().items;
      if (auto i = normalize_index(key.as_int(), items.size())) return items[*i];
    } else {
      const std::u32string cps = decode_utf8(object.as_string());
      if (auto i = normalize_index(key.as_int(), cps.size())) return Value(encode_utf8(cps.substr(*i, 1)));
    }
    return Value::undefined(object_description(object) + " has no element " + to_str(key));
  }
  // jinja2 falls back to the attribute of that name (`d['items']` is the dict's key, else its method).
  if (key.is_string() && !object.is_none()) return get_attribute(object, key.as_string());
  return Value::undefined(object_description(object) + " has no element " + to_repr(key));
}

Expected<Value> get_slice(const Value& object, const Value& start, const Value& stop, const Value& step) {
  if (object.is_undefined()) return undefined_error(object);
  if (object.is_string()) {
    const std::u32string cps = decode_utf8(object.as_string());
    FATHOM_ASSIGN_OR_RETURN(SliceBounds b, slice_bounds(start, stop, step, static_cast<int64_t>(cps.size())));
    std::vector<char32_t> chars(cps.begin(), cps.end());
    const std::vector<char32_t> picked = apply_slice(chars, b);
    return Value(encode_utf8(std::u32string(picked.begin(), picked.end())));
  }
  if (object.is_array()) {
    const auto& items = object.as_array().items;
    FATHOM_ASSIGN_OR_RETURN(SliceBounds b, slice_bounds(start, stop, step, static_cast<int64_t>(items.size())));
    return Value::array(apply_slice(items, b), object.as_array().is_tuple);
  }
  return Value::undefined(object_description(object) + " is not subscriptable");
}

Expected<Value> binary_operation(std::string_view op, const Value& a, const Value& b) {
  if (op == "~") return Value(to_str(a) + to_str(b));
  if (a.is_undefined()) return undefined_error(a);
  if (b.is_undefined()) return undefined_error(b);
  if (a.is_number() && b.is_number()) return numeric_operation(op, a, b);
  if (op == "+") {
    if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
    if (a.is_array() && b.is_array() && a.as_array().is_tuple == b.as_array().is_tuple) {
      std::vector<Value> items = a.as_array().items;
      items.insert(items.end(), b.as_array().items.begin(), b.as_array().items.end());
      return Value::array(std::move(items), a.as_array().is_tuple);
    }
    if (a.is_string()) {
      return error(ErrorCode::kInvalidArgument,
                   std::string("TypeError: can only concatenate str (not \"") + b.type_name() + "\") to str");
    }
    if (a.is_array() && !a.as_array().is_tuple) {
      return error(ErrorCode::kInvalidArgument,
                   std::string("TypeError: can only concatenate list (not \"") + b.type_name() + "\") to list");
    }
  }
  if (op == "*") {
    const Value* seq = (a.is_string() || a.is_array()) ? &a : (b.is_string() || b.is_array()) ? &b : nullptr;
    const Value* count = seq == &a ? &b : &a;
    if (seq && (count->is_int() || count->is_bool())) {
      const int64_t n = std::max<int64_t>(0, count->as_int());
      // A template may render from a client's messages, so `'x' * 10**12` must be an error,
      // not an allocation that takes the server down.
      const size_t length = seq->is_string() ? seq->as_string().size() : seq->as_array().items.size();
      if (length > 0 && static_cast<uint64_t>(n) > kMaxRepeatedLength / length) {
        return error(ErrorCode::kInvalidArgument,
                     strprintf("MemoryError: repeating a sequence of length %zu %lld times exceeds %zu items", length,
                               static_cast<long long>(n), kMaxRepeatedLength));
      }
      if (seq->is_string()) {
        std::string out;
        for (int64_t i = 0; i < n; ++i) out += seq->as_string();
        return Value(std::move(out));
      }
      std::vector<Value> out;
      for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq->as_array().items.begin(), seq->as_array().items.end());
      return Value::array(std::move(out), seq->as_array().is_tuple);
    }
  }
  if (op == "%" && a.is_string()) return percent_format(a.as_string(), b);
  return error(ErrorCode::kInvalidArgument, operand_error(op, a, b));
}

Expected<Value> unary_minus(const Value& operand) {
  if (operand.is_undefined()) return undefined_error(operand);
  if (operand.is_float()) return Value(-operand.as_float());
  if (operand.is_int() || operand.is_bool()) return checked_int(-static_cast<__int128>(operand.as_int()));
  return type_error(std::string("bad operand type for unary -: '") + operand.type_name() + "'");
}

Expected<bool> contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;  // jinja2's Undefined iterates as empty
    case Value::Kind::kString:
      if (!item.is_string()) {
        return type_error(std::string("'in <string>' requires string as left operand, not ") + item.type_name());
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kArray:
      for (const Value& v : container.as_array().items) {
        if (values_equal(v, item)) return true;
      }
      return false;
    case Value::Kind::kObject:
      return item.is_string() && container.as_object().find(item.as_string()) != nullptr;
    default:
      return type_error(std::string("argument of type '") + container.type_name() + "' is not iterable");
  }
}

Expected<std::vector<Value>> iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return std::vector<Value>();
    case Value::Kind::kArray:
      return value.as_array().items;
    case Value::Kind::kObject: {
      std::vector<Value> keys;
      for (const auto& [key, item] : value.as_object().entries) keys.emplace_back(key);
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      const std::string& s = value.as_string();
      size_t pos = 0;
      while (pos < s.size()) {
        const size_t start = pos;
        next_code_point(s, pos);
        chars.emplace_back(s.substr(start, pos - start));
      }
      return chars;
    }
    default:
      return type_error(std::string("'") + value.type_name() + "' object is not iterable");
  }
}

Expected<Value> call_value(const Value& callee, const CallArgs& args) {
  if (callee.is_undefined()) return undefined_error(callee);
  if (!callee.is_callable()) return type_error(std::string("'") + callee.type_name() + "' object is not callable");
  return callee.as_callable().fn(args);
}

}  // namespace fathom::jinja
