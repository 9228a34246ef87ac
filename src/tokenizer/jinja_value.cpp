#include "tokenizer/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "tokenizer/jinja_strings.h"

namespace fathom::jinja {

const Value* Object::find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k == key) return &v;
  }
  return nullptr;
}

Value* Object::find(std::string_view key) {
  for (auto& [k, v] : entries) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Object::set(const std::string& key, Value value) {
  if (Value* existing = find(key)) {
    *existing = std::move(value);
  } else {
    entries.emplace_back(key, std::move(value));
  }
}

Value Value::undefined(std::string hint) {
  Value v;
  v.v_ = UndefinedState{std::move(hint)};
  return v;
}

Value Value::none() {
  Value v;
  v.v_ = NoneState{};
  return v;
}

namespace {

// Weights add up past what any render could hold; saturating keeps the sum meaningful.
int64_t add_weight(int64_t a, int64_t b) { return std::min(a + b, kMaxValueWeight * 2); }

}  // namespace

Value Value::array(std::vector<Value> items, bool is_tuple) {
  Array array{std::move(items), is_tuple};
  for (const Value& item : array.items) {
    array.depth = std::max(array.depth, item.depth() + 1);
    array.weight = add_weight(array.weight, item.weight());
    array.holds_namespace = array.holds_namespace || item.holds_namespace();
  }
  Value v;
  v.v_ = std::make_shared<Array>(std::move(array));
  return v;
}

Value Value::object(Object object) {
  object.depth = 1;
  object.weight = 1;
  object.holds_namespace = false;
  for (const auto& [key, item] : object.entries) {
    object.depth = std::max(object.depth, item.depth() + 1);
    object.weight = add_weight(object.weight, add_weight(static_cast<int64_t>(key.size()), item.weight()));
    object.holds_namespace = object.holds_namespace || item.holds_namespace();
  }
  Value v;
  v.v_ = std::make_shared<Object>(std::move(object));
  return v;
}

int Value::depth() const {
  switch (kind()) {
    case Kind::kArray: return as_array().depth;
    case Kind::kObject: return as_object().depth;
    case Kind::kNamespace: {
      // Attributes never hold namespaces, so this loop does not recurse through namespaces.
      int depth = 1;
      for (const auto& [key, item] : namespace_attributes().entries) depth = std::max(depth, item.depth() + 1);
      return depth;
    }
    default: return 0;
  }
}

int64_t Value::weight() const {
  switch (kind()) {
    case Kind::kString: return std::min(static_cast<int64_t>(as_string().size()), kMaxValueWeight * 2);
    case Kind::kArray: return as_array().weight;
    case Kind::kObject: return as_object().weight;
    case Kind::kNamespace: {
      int64_t weight = 1;
      for (const auto& [key, item] : namespace_attributes().entries)
        weight = add_weight(weight, add_weight(static_cast<int64_t>(key.size()), item.weight()));
      return weight;
    }
    default: return 1;
  }
}

bool Value::holds_namespace() const {
  switch (kind()) {
    case Kind::kArray: return as_array().holds_namespace;
    case Kind::kObject: return as_object().holds_namespace;
    case Kind::kNamespace: return true;
    default: return false;
  }
}

Value Value::make_namespace(Object attributes) {
  Value v;
  v.v_ = NamespaceRef{std::make_shared<Object>(std::move(attributes))};
  return v;
}

Value Value::callable(std::string name, NativeFunction fn) {
  Value v;
  v.v_ = std::make_shared<Callable>(Callable{std::move(name), std::move(fn)});
  return v;
}

namespace {

template <typename Json>
Value value_from_json(const Json& json) {
  switch (json.type()) {
    case nlohmann::json::value_t::null:
      return Value::none();
    case nlohmann::json::value_t::boolean:
      return Value(json.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value(json.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const uint64_t u = json.template get<uint64_t>();
      // Python ints are unbounded; past int64 the nearest float is the closest we represent.
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<double>(u));
      return Value(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value(json.template get<double>());
    case nlohmann::json::value_t::string:
      return Value(json.template get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) items.push_back(value_from_json(item));
      return Value::array(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Object object;
      for (auto it = json.begin(); it != json.end(); ++it) object.entries.emplace_back(it.key(), value_from_json(it.value()));
      return Value::object(std::move(object));
    }
    default:
      return Value::none();  // binary / discarded: not produced by JSON text
  }
}

}  // namespace

Value Value::from_json(const nlohmann::ordered_json& json) { return value_from_json(json); }
Value Value::from_json(const nlohmann::json& json) { return value_from_json(json); }

double Value::as_float() const {
  if (is_float()) return std::get<double>(v_);
  return static_cast<double>(as_int());
}

bool Value::truthy() const {
  switch (kind()) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return as_bool();
    case Kind::kInt:
      return as_int() != 0;
    case Kind::kFloat:
      return as_float() != 0.0;
    case Kind::kString:
      return !as_string().empty();
    case Kind::kArray:
      return !as_array().items.empty();
    case Kind::kObject:
      return !as_object().entries.empty();
    case Kind::kNamespace:
    case Kind::kCallable:
      return true;
  }
  return false;
}

const char* Value::type_name() const {
  switch (kind()) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kArray: return as_array().is_tuple ? "tuple" : "list";
    case Kind::kObject: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kCallable: return "function";
  }
  return "object";
}

bool Value::same_object(const Value& other) const {
  if (kind() != other.kind()) return false;
  if (is_namespace()) return std::get<NamespaceRef>(v_).object == std::get<NamespaceRef>(other.v_).object;
  if (is_callable()) return std::get<std::shared_ptr<Callable>>(v_) == std::get<std::shared_ptr<Callable>>(other.v_);
  if (is_array()) return std::get<std::shared_ptr<Array>>(v_) == std::get<std::shared_ptr<Array>>(other.v_);
  if (is_object()) return std::get<std::shared_ptr<Object>>(v_) == std::get<std::shared_ptr<Object>>(other.v_);
  return false;
}

std::string format_float(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  // Shortest round-trip digits in scientific form, re-laid out by python's repr rule: plain
  // notation when the decimal exponent is in [-4, 16), otherwise d.ddde+XX.
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  std::string sci(buffer, result.ptr);
  const size_t e_pos = sci.find('e');
  std::string mantissa = sci.substr(0, e_pos);
  const int exponent = std::atoi(sci.c_str() + e_pos + 1);
  const bool negative = !mantissa.empty() && mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits.push_back(c);
  }
  // Appends only: GCC 12 reports a false -Wrestrict on `"." + std::string` chains here.
  std::string out = negative ? "-" : "";
  if (exponent < -4 || exponent >= 16) {
    out.push_back(digits[0]);
    if (digits.size() > 1) {
      out.push_back('.');
      out.append(digits, 1, std::string::npos);
    }
    char exp_text[16];
    std::snprintf(exp_text, sizeof(exp_text), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out.append(exp_text);
    return out;
  }
  if (exponent < 0) {
    out.append("0.");
    out.append(static_cast<size_t>(-exponent - 1), '0');
    out.append(digits);
    return out;
  }
  const size_t int_digits = static_cast<size_t>(exponent) + 1;
  if (digits.size() <= int_digits) {
    out.append(digits);
    out.append(int_digits - digits.size(), '0');
    out.append(".0");
  } else {
    out.append(digits, 0, int_digits);
    out.push_back('.');
    out.append(digits, int_digits, std::string::npos);
  }
  return out;
}

namespace {

void append_repr(const Value& value, std::string& out);

void append_sequence_repr(const Array& array, std::string& out) {
  out.push_back(array.is_tuple ? '(' : '[');
  for (size_t i = 0; i < array.items.size(); ++i) {
    if (i > 0) out.append(", ");
    append_repr(array.items[i], out);
  }
  if (array.is_tuple && array.items.size() == 1) out.push_back(',');
  out.push_back(array.is_tuple ? ')' : ']');
}

void append_mapping_repr(const Object& object, std::string& out) {
  out.push_back('{');
  bool first = true;
  for (const auto& [key, item] : object.entries) {
    if (!first) out.append(", ");
    first = false;
    out.append(python_string_repr(key));
    out.append(": ");
    append_repr(item, out);
  }
  out.push_back('}');
}

void append_repr(const Value& value, std::string& out) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      out.append("Undefined");
      return;
    case Value::Kind::kString:
      out.append(python_string_repr(value.as_string()));
      return;
    case Value::Kind::kArray:
      append_sequence_repr(value.as_array(), out);
      return;
    case Value::Kind::kObject:
      append_mapping_repr(value.as_object(), out);
      return;
    default:
      out.append(to_str(value));
  }
}

}  // namespace

std::string to_str(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return value.as_bool() ? "True" : "False";
    case Value::Kind::kInt:
      return std::to_string(value.as_int());
    case Value::Kind::kFloat:
      return format_float(value.as_float());
    case Value::Kind::kString:
      return value.as_string();
    case Value::Kind::kArray:
    case Value::Kind::kObject: {
      std::string out;
      append_repr(value, out);
      return out;
    }
    case Value::Kind::kNamespace: {
      std::string out = "<Namespace ";
      append_mapping_repr(value.namespace_attributes(), out);
      out.push_back('>');
      return out;
    }
    case Value::Kind::kCallable:
      return "<function " + value.as_callable().name + ">";
  }
  return "";
}

std::string to_repr(const Value& value) {
  std::string out;
  append_repr(value, out);
  return out;
}

bool values_equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.as_string() == b.as_string();
    case Value::Kind::kArray: {
      const Array& x = a.as_array();
      const Array& y = b.as_array();
      if (x.is_tuple != y.is_tuple || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i) {
        if (!values_equal(x.items[i], y.items[i])) return false;
      }
      return true;
    }
    case Value::Kind::kObject: {
      const Object& x = a.as_object();
      const Object& y = b.as_object();
      if (x.entries.size() != y.entries.size()) return false;
      for (const auto& [key, item] : x.entries) {
        const Value* other = y.find(key);
        if (!other || !values_equal(item, *other)) return false;
      }
      return true;
    }
    default:
      return a.same_object(b);
  }
}

Expected<bool> value_less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() < b.as_float();
    return a.as_int() < b.as_int();
  }
  // UTF-8 byte order is code point order, which is how python orders str.
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
  if (a.is_array() && b.is_array() && a.as_array().is_tuple == b.as_array().is_tuple) {
    const auto& x = a.as_array().items;
    const auto& y = b.as_array().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (values_equal(x[i], y[i])) continue;
      return value_less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  return error(ErrorCode::kInvalidArgument, strprintf("'<' not supported between instances of '%s' and '%s'",
                                                      a.type_name(), b.type_name()));
}

namespace {

Status append_json(const Value& value, const JsonDumpOptions& options, int depth, std::string& out) {
  const auto newline_indent = [&](int level) {
    out.push_back('\n');
    for (int i = 0; i < level; ++i) out.append(*options.indent);
  };
  switch (value.kind()) {
    case Value::Kind::kNone:
      out.append("null");
      return Status::ok();
    case Value::Kind::kBool:
      out.append(value.as_bool() ? "true" : "false");
      return Status::ok();
    case Value::Kind::kInt:
      out.append(std::to_string(value.as_int()));
      return Status::ok();
    case Value::Kind::kFloat: {
      const double d = value.as_float();
      if (std::isnan(d)) {
        out.append("NaN");
      } else if (std::isinf(d)) {
        out.append(d > 0 ? "Infinity" : "-Infinity");
      } else {
        out.append(format_float(d));
      }
      return Status::ok();
    }
    case Value::Kind::kString:
      append_json_string(value.as_string(), out);
      return Status::ok();
    case Value::Kind::kArray: {
      const auto& items = value.as_array().items;
      if (items.empty()) {
        out.append("[]");
        return Status::ok();
      }
      out.push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out.append(options.item_separator);
        if (options.indent) newline_indent(depth + 1);
        FATHOM_RETURN_IF_ERROR(append_json(items[i], options, depth + 1, out));
      }
      if (options.indent) newline_indent(depth);
      out.push_back(']');
      return Status::ok();
    }
    case Value::Kind::kObject: {
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& entry : value.as_object().entries) entries.push_back(&entry);
      if (entries.empty()) {
        out.append("{}");
        return Status::ok();
      }
      if (options.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return a->first < b->first; });
      }
      out.push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) out.append(options.item_separator);
        if (options.indent) newline_indent(depth + 1);
        append_json_string(entries[i]->first, out);
        out.append(options.key_separator);
        FATHOM_RETURN_IF_ERROR(append_json(entries[i]->second, options, depth + 1, out));
      }
      if (options.indent) newline_indent(depth);
      out.push_back('}');
      return Status::ok();
    }
    default:
      return error(ErrorCode::kInvalidArgument,
                   strprintf("Object of type %s is not JSON serializable", value.type_name()));
  }
}

}  // namespace

Expected<std::string> to_json(const Value& value, const JsonDumpOptions& options) {
  std::string out;
  FATHOM_RETURN_IF_ERROR(append_json(value, options, 0, out));
  return out;
}

}  // namespace fathom::jinja
