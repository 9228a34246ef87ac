#include "tokenizer/jinja_builtins.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "tokenizer/jinja_ops.h"
#include "tokenizer/jinja_strings.h"

namespace fathom::jinja {

namespace {

using Bound = std::vector<std::optional<Value>>;

Status type_error(const std::string& message) { return error(ErrorCode::kInvalidArgument, "TypeError: " + message); }

Value arg_or(const std::optional<Value>& v, Value fallback) { return v ? *v : std::move(fallback); }

// CallArgs without the first `skip` positional arguments (map/select pass the rest on).
CallArgs drop_positional(const CallArgs& args, size_t skip) {
  CallArgs rest;
  for (size_t i = skip; i < args.positional.size(); ++i) rest.positional.push_back(args.positional[i]);
  rest.keyword = args.keyword;
  return rest;
}

// jinja2's attribute getter for filters: "a.b" walks getitem per dotted part, digits index lists.
Expected<Value> attribute_path(const Value& item, const std::string& path) {
  Value current = item;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    FATHOM_ASSIGN_OR_RETURN(current, get_item(current, numeric ? Value(static_cast<int64_t>(std::atoll(part.c_str())))
                                                               : Value(part)));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return current;
}

Expected<int64_t> length_of(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return 0;
    case Value::Kind::kString: return static_cast<int64_t>(code_point_count(v.as_string()));
    case Value::Kind::kArray: return static_cast<int64_t>(v.as_array().items.size());
    case Value::Kind::kObject: return static_cast<int64_t>(v.as_object().entries.size());
    default: return type_error(std::string("object of type '") + v.type_name() + "' has no len()");
  }
}

Expected<std::string> tojson_filter(const Value& input, const CallArgs& args) {
  // transformers' override: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
  FATHOM_ASSIGN_OR_RETURN(Bound a, bind_arguments(args, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"}));
  JsonDumpOptions options;
  const bool ensure_ascii = a[0] && a[0]->truthy();
  if (a[1] && !a[1]->is_none()) {
    if (a[1]->is_string()) {
      options.indent = a[1]->as_string();
    } else if (a[1]->is_int() || a[1]->is_bool()) {
      options.indent = std::string(static_cast<size_t>(std::max<int64_t>(0, a[1]->as_int())), ' ');
    } else {
      return type_error("tojson indent must be an int or str");
    }
    options.item_separator = ",";
  }
  if (a[2] && !a[2]->is_none()) {
    if (!a[2]->is_array() || a[2]->as_array().items.size() != 2 || !a[2]->as_array().items[0].is_string() ||
        !a[2]->as_array().items[1].is_string()) {
      return type_error("tojson separators must be a pair of strings");
    }
    options.item_separator = a[2]->as_array().items[0].as_string();
    options.key_separator = a[2]->as_array().items[1].as_string();
  }
  options.sort_keys = a[3] && a[3]->truthy();
  FATHOM_ASSIGN_OR_RETURN(std::string json, to_json(input, options));
  if (!ensure_ascii) return json;
  // ensure_ascii: every non-ASCII code point becomes \uXXXX (UTF-16 surrogate pairs above BMP).
  std::string out;
  size_t pos = 0;
  while (pos < json.size()) {
    const char32_t cp = next_code_point(json, pos);
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
      continue;
    }
    const auto hex4 = [&](uint32_t unit) { out += strprintf("\\u%04x", unit); };
    if (cp >= 0x10000) {
      const uint32_t v = cp - 0x10000;
      hex4(0xD800 + (v >> 10));
      hex4(0xDC00 + (v & 0x3FF));
    } else {
      hex4(cp);
    }
  }
  return out;
}

// int filter: int(value) for numbers, int(str, base) then float(str) for strings, else default.
Value int_filter(const Value& input, int64_t fallback, int base) {
  if (input.is_int() || input.is_bool()) return Value(input.as_int());
  if (input.is_float()) {
    const double d = input.as_float();
    if (std::isfinite(d)) return Value(static_cast<int64_t>(std::trunc(d)));
    return Value(fallback);
  }
  if (!input.is_string()) return Value(fallback);
  std::string text = python_strip(input.as_string(), std::nullopt, true, true);
  std::string digits;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '_' && i > 0 && i + 1 < text.size()) continue;
    digits.push_back(text[i]);
  }
  if (!digits.empty()) {
    char* end = nullptr;
    errno = 0;
    const long long parsed = std::strtoll(digits.c_str(), &end, base);
    if (*end == '\0' && errno == 0 && digits.find_first_of(" \t") == std::string::npos) return Value(static_cast<int64_t>(parsed));
    const double as_float = std::strtod(digits.c_str(), &end);
    if (*end == '\0' && std::isfinite(as_float)) return Value(static_cast<int64_t>(std::trunc(as_float)));
  }
  return Value(fallback);
}

Value float_filter(const Value& input, double fallback) {
  if (input.is_number()) return Value(input.as_float());
  if (!input.is_string()) return Value(fallback);
  const std::string text = python_strip(input.as_string(), std::nullopt, true, true);
  char* end = nullptr;
  const double parsed = std::strtod(text.c_str(), &end);
  if (!text.empty() && *end == '\0') return Value(parsed);
  return Value(fallback);
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::string current;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n' || text[i] == '\r') {
      if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      lines.push_back(current);
      current.clear();
    } else {
      current.push_back(text[i]);
    }
  }
  if (!current.empty()) lines.push_back(current);
  return lines;
}

Expected<Value> indent_filter(const Value& input, const CallArgs& args) {
  FATHOM_ASSIGN_OR_RETURN(Bound a, bind_arguments(args, "indent", {"width", "first", "blank"}));
  const Value width = arg_or(a[0], Value(4));
  const std::string indentation = width.is_string() ? width.as_string()
                                                    : std::string(static_cast<size_t>(std::max<int64_t>(0, width.as_int())), ' ');
  // jinja2 appends a newline before splitting so that a trailing newline is kept.
  const std::vector<std::string> lines = split_lines(to_str(input) + "\n");
  std::string out;
  const bool blank = a[2] && a[2]->truthy();
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += "\n" + ((blank || !lines[i].empty()) ? indentation : std::string());
    out += lines[i];
  }
  if (a[1] && a[1]->truthy()) out = indentation + out;
  return Value(std::move(out));
}

Expected<Value> select_filter(std::string_view name, const Value& input, const CallArgs& args) {
  const bool by_attribute = name == "selectattr" || name == "rejectattr";
  const bool keep_when = name == "select" || name == "selectattr";
  FATHOM_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(input));
  size_t next_arg = 0;
  std::string attribute;
  if (by_attribute) {
    if (args.positional.empty() || !args.positional[0].is_string()) {
      return type_error(std::string(name) + "() needs an attribute name");
    }
    attribute = args.positional[0].as_string();
    next_arg = 1;
  }
  std::string test;
  if (args.positional.size() > next_arg) {
    if (!args.positional[next_arg].is_string()) return type_error(std::string(name) + "() test name must be a string");
    test = args.positional[next_arg].as_string();
    ++next_arg;
  }
  const CallArgs test_args = drop_positional(args, next_arg);
  std::vector<Value> kept;
  for (const Value& item : items) {
    Value subject = item;
    if (by_attribute) {
      FATHOM_ASSIGN_OR_RETURN(subject, attribute_path(item, attribute));
    }
    bool passed = false;
    if (test.empty()) {
      passed = subject.truthy();
    } else {
      FATHOM_ASSIGN_OR_RETURN(passed, apply_test(test, subject, test_args));
    }
    if (passed == keep_when) kept.push_back(item);
  }
  return Value::array(std::move(kept));
}

Expected<Value> map_filter(const Value& input, const CallArgs& args) {
  FATHOM_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(input));
  std::vector<Value> out;
  if (args.positional.empty()) {
    std::optional<std::string> attribute;
    std::optional<Value> fallback;
    for (const auto& [key, value] : args.keyword) {
      if (key == "attribute" && value.is_string()) attribute = value.as_string();
      else if (key == "default") fallback = value;
      else return type_error("map() got an unexpected keyword argument '" + key + "'");
    }
    if (!attribute) return type_error("map() needs a filter name or attribute=");
    for (const Value& item : items) {
      FATHOM_ASSIGN_OR_RETURN(Value v, attribute_path(item, *attribute));
      out.push_back(v.is_undefined() && fallback ? *fallback : v);
    }
    return Value::array(std::move(out));
  }
  if (!args.positional[0].is_string()) return type_error("map() filter name must be a string");
  const std::string filter = args.positional[0].as_string();
  const CallArgs rest = drop_positional(args, 1);
  for (const Value& item : items) {
    FATHOM_ASSIGN_OR_RETURN(Value v, apply_filter(filter, item, rest));
    out.push_back(std::move(v));
  }
  return Value::array(std::move(out));
}

// Sort key for sort/dictsort: strings fold case unless case_sensitive.
Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(python_lower(v.as_string()));
  return v;
}

Expected<std::vector<Value>> sorted(std::vector<Value> items, bool reverse, bool case_sensitive,
                                    const std::optional<std::string>& attribute, bool by_value_of_pair) {
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& item : items) {
    Value key = item;
    if (attribute) {
      FATHOM_ASSIGN_OR_RETURN(key, attribute_path(item, *attribute));
    }
    if (by_value_of_pair) key = item.as_array().items[1];
    keyed.emplace_back(sort_key(key, case_sensitive), std::move(item));
  }
  Status failure;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    auto less = reverse ? value_less(y.first, x.first) : value_less(x.first, y.first);
    if (!less) {
      failure = less.status();
      return false;
    }
    return *less;
  });
  if (!failure.is_ok()) return failure;
  std::vector<Value> out;
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return out;
}

Expected<Value> round_filter(const Value& input, const CallArgs& args) {
  FATHOM_ASSIGN_OR_RETURN(Bound a, bind_arguments(args, "round", {"precision", "method"}));
  const int64_t precision = a[0] ? a[0]->as_int() : 0;
  const std::string method = a[1] && a[1]->is_string() ? a[1]->as_string() : "common";
  if (!input.is_number()) return type_error(std::string("type ") + input.type_name() + " doesn't define __round__");
  if (method == "common") {
    if (!input.is_float() && precision >= 0) return Value(input.as_int());
    // printf rounds the exact binary value half-to-even, as python's round() does.
    char buffer[512];
    std::snprintf(buffer, sizeof(buffer), "%.*f", static_cast<int>(std::clamp<int64_t>(precision, 0, 300)), input.as_float());
    return Value(std::strtod(buffer, nullptr));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double scaled = input.as_float() * scale;
  if (method == "ceil") return Value(std::ceil(scaled) / scale);
  if (method == "floor") return Value(std::floor(scaled) / scale);
  return error(ErrorCode::kInvalidArgument, "FilterArgumentError: method must be common, ceil or floor");
}

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

Expected<Value> first_or_last(const Value& input, bool first) {
  if (input.is_undefined()) return Value::undefined(first ? "No first item, sequence was empty." : "No last item, sequence was empty.");
  FATHOM_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(input));
  if (items.empty()) return Value::undefined(first ? "No first item, sequence was empty." : "No last item, sequence was empty.");
  return first ? items.front() : items.back();
}

Expected<Value> min_max(const Value& input, const CallArgs& args, bool want_max) {
  FATHOM_ASSIGN_OR_RETURN(Bound a, bind_arguments(args, want_max ? "max" : "min", {"case_sensitive", "attribute"}));
  FATHOM_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(input));
  std::optional<std::string> attribute;
  if (a[1] && a[1]->is_string()) attribute = a[1]->as_string();
  FATHOM_ASSIGN_OR_RETURN(std::vector<Value> ordered, sorted(std::move(items), false, a[0] && a[0]->truthy(), attribute, false));
  if (ordered.empty()) return Value::undefined(want_max ? "No aggregated item, sequence was empty." : "No aggregated item, sequence was empty.");
  return want_max ? ordered.back() : ordered.front();
}

}  // namespace

Expected<Value> apply_filter(std::string_view name, const Value& input, const CallArgs& args) {
  if (name == "length" || name == "count") {
    FATHOM_ASSIGN_OR_RETURN(int64_t n, length_of(input));
    return Value(n);
  }
  if (name == "string") return Value(to_str(input));
  if (name == "safe") return input.is_string() ? input : Value(to_str(input));
  if (name == "tojson") {
    FATHOM_ASSIGN_OR_RETURN(std::string json, tojson_filter(input, args));
    return Value(std::move(json));
  }
  if (name == "trim") {
    FATHOM_ASSIGN_OR_RETURN(Bound a, bind_arguments(args, "trim", {"chars"}));
    std::optional<std::string> chars;
    if (a[0] && a[0]->is_string()) chars = a[0]->as_string();
    return Value(python_strip(to_str(input), chars, true, true));
  }
  if (name == "default" || name == "d") {
    FATHOM_ASSIGN_OR_RETURN(Bound a, bind_arguments(args, "default", {"default_value", "boolean"}));
    const bool boolean = a[1] && a[1]->truthy();
    if (input.is_undefined() || (boolean && !input.truthy())) return arg_or(a[0], Value(""));
    return input;
  }
  if (name == "join") {
    FATHOM_ASSIGN_OR_RETURN(Bound a, bind_arguments(args, "join", {"d", "attribute"}));
    const std::string separator = a[0] ? to_str(*a[0]) : "";
    FATHOM_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(input));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      Value item = items[i];
      if (a[1] && a[1]->is_string()) {
        FATHOM_ASSIGN_OR_RETURN(item, attribute_path(item, a[1]->as_string()));
      }
      if (i > 0) out += separator;
      out += to_str(item);
    }
    return Value(std::move(out));
  }
  if (name == "first" || name == "last") return first_or_last(input, name == "first");
  if (name == "upper") return Value(python_upper(to_str(input)));
  if (name == "lower") return Value(python_lower(to_str(input)));
  if (name == "capitalize") return Value(python_capitalize(to_str(input)));
  if (name == "title") return Value(python_title(to_str(input)));
  if (name == "replace") {
    FATHOM_ASSIGN_OR_RETURN(Bound a, bind_arguments(args, "replace", {"old", "new", "count"}));
    if (!a[0] || !a[1]) return type_error("replace() missing required arguments 'old' and 'new'");
    const int64_t count = a[2] && !a[2]->is_none() ? a[2]->as_int() : -1;
    return Value(python_replace(to_str(input), to_str(*a[0]), to_str(*a[1]), count));
  }
  if (name == "int") {
    FATHOM_ASSIGN_OR_RETURN(Bound a, bind_arguments(args, "int", {"default", "base"}));
    return int_filter(input, a[0] ? a[0]->as_int() : 0, a[1] ? static_cast<int>(a[1]->as_int()) : 10);
  }
  if (name == "float") {
    FATHOM_ASSIGN_OR_RETURN(Bound a, bind_arguments(args, "float", {"default"}));
    return float_filter(input, a[0] ? a[0]->as_float() : 0.0);
  }
  if (name == "abs") {
    if (input.is_float()) return Value(std::fabs(input.as_float()));
    if (input.is_number()) return Value(input.as_int() < 0 ? -input.as_int() : input.as_int());
    return type_error(std::string("bad operand type for abs(): '") + input.type_name() + "'");
  }
  if (name == "round") return round_filter(input, args);
  if (name == "list") {
    FATHOM_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(input));
    return Value::array(std::move(items));
  }
  if (name == "items") {
    if (input.is_undefined()) return Value::array({});
    if (!input.is_object()) return type_error("items filter needs a mapping");
    std::vector<Value> pairs;
    for (const auto& [key, value] : input.as_object().entries) pairs.push_back(Value::array({Value(key), value}, true));
    return Value::array(std::move(pairs));
  }
  if (name == "dictsort") {
    FATHOM_ASSIGN_OR_RETURN(Bound a, bind_arguments(args, "dictsort", {"case_sensitive", "by", "reverse"}));
    if (!input.is_object()) return type_error("dictsort filter needs a mapping");
    std::vector<Value> pairs;
    for (const auto& [key, value] : input.as_object().entries) pairs.push_back(Value::array({Value(key), value}, true));
    const bool by_value = a[1] && a[1]->is_string() && a[1]->as_string() == "value";
    FATHOM_ASSIGN_OR_RETURN(std::vector<Value> ordered,
                            sorted(std::move(pairs), a[2] && a[2]->truthy(), a[0] && a[0]->truthy(),
                                   by_value ? std::nullopt : std::optional<std::string>("0"), by_value));
    return Value::array(std::move(ordered));
  }
  if (name == "sort") {
    FATHOM_ASSIGN_OR_RETURN(Bound a, bind_arguments(args, "sort", {"reverse", "case_sensitive", "attribute"}));
    FATHOM_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(input));
    std::optional<std::string> attribute;
    if (a[2] && a[2]->is_string()) attribute = a[2]->as_string();
    FATHOM_ASSIGN_OR_RETURN(std::vector<Value> ordered,
                            sorted(std::move(items), a[0] && a[0]->truthy(), a[1] && a[1]->truthy(), attribute, false));
    return Value::array(std::move(ordered));
  }
  if (name == "reverse") {
    if (input.is_string()) {
      std::u32string cps = decode_utf8(input.as_string());
      std::reverse(cps.begin(), cps.end());
      return Value(encode_utf8(cps));
    }
    FATHOM_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(input));
    std::reverse(items.begin(), items.end());
    return Value::array(std::move(items));
  }
  if (name == "unique") {
    FATHOM_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(input));
    std::vector<Value> out;
    for (const Value& item : items) {
      const Value key = sort_key(item, false);
      if (std::none_of(out.begin(), out.end(), [&](const Value& seen) { return values_equal(sort_key(seen, false), key); })) {
        out.push_back(item);
      }
    }
    return Value::array(std::move(out));
  }
  if (name == "sum") {
    FATHOM_ASSIGN_OR_RETURN(Bound a, bind_arguments(args, "sum", {"attribute", "start"}));
    FATHOM_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(input));
    Value total = arg_or(a[1], Value(0));
    for (Value item : items) {
      if (a[0] && a[0]->is_string()) {
        FATHOM_ASSIGN_OR_RETURN(item, attribute_path(item, a[0]->as_string()));
      }
      FATHOM_ASSIGN_OR_RETURN(total, binary_operation("+", total, item));
    }
    return total;
  }
  if (name == "min" || name == "max") return min_max(input, args, name == "max");
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    return select_filter(name, input, args);
  }
  if (name == "map") return map_filter(input, args);
  if (name == "indent") return indent_filter(input, args);
  if (name == "escape" || name == "e") return Value(html_escape(to_str(input)));
  if (name == "wordcount") {
    return Value(static_cast<int64_t>(python_split(to_str(input), std::nullopt, -1, false).size()));
  }
  return error(ErrorCode::kUnsupported, "unsupported filter '" + std::string(name) + "'");
}

Expected<bool> apply_test(std::string_view name, const Value& input, const CallArgs& args) {
  const auto operand = [&]() -> Expected<Value> {
    if (args.positional.empty()) return type_error("test '" + std::string(name) + "' needs an argument");
    return args.positional[0];
  };
  if (name == "defined") return !input.is_undefined();
  if (name == "undefined") return input.is_undefined();
  if (name == "none") return input.is_none();
  if (name == "boolean") return input.is_bool();
  if (name == "true") return input.is_bool() && input.as_bool();
  if (name == "false") return input.is_bool() && !input.as_bool();
  if (name == "integer") return input.is_int();
  if (name == "float") return input.is_float();
  if (name == "number") return input.is_number();
  if (name == "string") return input.is_string();
  if (name == "mapping") return input.is_object();
  if (name == "callable") return input.is_callable();
  // jinja2's Undefined supports iter() and len(), so it counts as iterable and as a sequence.
  if (name == "iterable") return input.is_undefined() || input.is_string() || input.is_array() || input.is_object();
  if (name == "sequence") return input.is_undefined() || input.is_string() || input.is_array() || input.is_object();
  if (name == "lower") return input.is_string() && python_lower(input.as_string()) == input.as_string();
  if (name == "upper") return input.is_string() && python_upper(input.as_string()) == input.as_string();
  if (name == "odd" || name == "even") {
    if (!input.is_int() && !input.is_bool()) return type_error("odd/even test needs an integer");
    return (input.as_int() % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    FATHOM_ASSIGN_OR_RETURN(Value divisor, operand());
    if (!input.is_number() || !divisor.is_number()) return type_error("divisibleby needs numbers");
    FATHOM_ASSIGN_OR_RETURN(Value rest, binary_operation("%", input, divisor));
    return !rest.truthy();
  }
  if (name == "sameas") {
    FATHOM_ASSIGN_OR_RETURN(Value other, operand());
    if (input.is_none() || input.is_bool() || input.is_undefined()) return values_equal(input, other) && input.kind() == other.kind();
    return input.same_object(other);
  }
  if (name == "in") {
    FATHOM_ASSIGN_OR_RETURN(Value container, operand());
    return contains(container, input);
  }
  if (name == "eq" || name == "equalto" || name == "==") {
    FATHOM_ASSIGN_OR_RETURN(Value other, operand());
    return values_equal(input, other);
  }
  if (name == "ne" || name == "!=") {
    FATHOM_ASSIGN_OR_RETURN(Value other, operand());
    return !values_equal(input, other);
  }
  if (name == "lt" || name == "lessthan" || name == "<") {
    FATHOM_ASSIGN_OR_RETURN(Value other, operand());
    return value_less(input, other);
  }
  if (name == "gt" || name == "greaterthan" || name == ">") {
    FATHOM_ASSIGN_OR_RETURN(Value other, operand());
    return value_less(other, input);
  }
  if (name == "le" || name == "<=") {
    FATHOM_ASSIGN_OR_RETURN(Value other, operand());
    FATHOM_ASSIGN_OR_RETURN(bool greater, value_less(other, input));
    return !greater;
  }
  if (name == "ge" || name == ">=") {
    FATHOM_ASSIGN_OR_RETURN(Value other, operand());
    FATHOM_ASSIGN_OR_RETURN(bool less, value_less(input, other));
    return !less;
  }
  return error(ErrorCode::kUnsupported, "unsupported test '" + std::string(name) + "'");
}

namespace {

Expected<Value> range_function(const CallArgs& args) {
  if (!args.keyword.empty()) return type_error("range() takes no keyword arguments");
  std::vector<int64_t> bounds;
  for (const Value& v : args.positional) {
    if (!v.is_int() && !v.is_bool()) return type_error(std::string("'") + v.type_name() + "' object cannot be interpreted as an integer");
    bounds.push_back(v.as_int());
  }
  if (bounds.empty() || bounds.size() > 3) return type_error("range expected 1 to 3 arguments");
  const int64_t start = bounds.size() == 1 ? 0 : bounds[0];
  const int64_t stop = bounds.size() == 1 ? bounds[0] : bounds[1];
  const int64_t step = bounds.size() == 3 ? bounds[2] : 1;
  if (step == 0) return error(ErrorCode::kInvalidArgument, "ValueError: range() arg 3 must not be zero");
  std::vector<Value> out;
  // The sandbox caps ranges at 100000 items (jinja2.sandbox.MAX_RANGE).
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (out.size() >= 100000) return error(ErrorCode::kInvalidArgument, "OverflowError: range too big, maximum size for range is 100000");
    out.emplace_back(i);
  }
  return Value::array(std::move(out));
}

Expected<Value> namespace_function(const CallArgs& args) {
  Object attributes;
  for (const Value& v : args.positional) {
    if (!v.is_object()) return type_error("namespace() positional argument must be a mapping");
    for (const auto& [key, value] : v.as_object().entries) attributes.set(key, value);
  }
  for (const auto& [key, value] : args.keyword) attributes.set(key, value);
  for (const auto& [key, value] : attributes.entries) {
    if (value.holds_namespace()) return type_error("namespace() attribute '" + key + "' cannot hold a namespace");
  }
  return Value::make_namespace(std::move(attributes));
}

Expected<Value> dict_function(const CallArgs& args) {
  Object object;
  for (const Value& v : args.positional) {
    if (!v.is_object()) return type_error("dict() positional argument must be a mapping");
    for (const auto& [key, value] : v.as_object().entries) object.set(key, value);
  }
  for (const auto& [key, value] : args.keyword) object.set(key, value);
  return Value::object(std::move(object));
}

Expected<Value> raise_exception_function(const CallArgs& args) {
  const std::string message = args.positional.empty() ? "" : to_str(args.positional[0]);
  return error(ErrorCode::kInvalidArgument, "template raised an exception: " + message);
}

Expected<Value> strftime_now_function(const CallArgs& args) {
  FATHOM_ASSIGN_OR_RETURN(Bound a, bind_arguments(args, "strftime_now", {"format"}));
  if (!a[0] || !a[0]->is_string()) return type_error("strftime_now() needs a format string");
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buffer[512];
  const size_t n = std::strftime(buffer, sizeof(buffer), a[0]->as_string().c_str(), &local);
  return Value(std::string(buffer, n));
}

}  // namespace

Object make_globals() {
  Object globals;
  globals.set("range", Value::callable("range", range_function));
  globals.set("namespace", Value::callable("namespace", namespace_function));
  globals.set("dict", Value::callable("dict", dict_function));
  globals.set("raise_exception", Value::callable("raise_exception", raise_exception_function));
  globals.set("strftime_now", Value::callable("strftime_now", strftime_now_function));
  return globals;
}

}  // namespace fathom::jinja
