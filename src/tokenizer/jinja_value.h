// Values of the Jinja subset interpreter. They model the python objects a chat template sees
// (None, bool, int, float, str, list/tuple, dict, jinja2's Namespace, callables and jinja2's
// default Undefined), because rendering must match python's str()/repr()/json.dumps byte for byte.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/status.h"

namespace fathom::jinja {

class Value;

// Lists, dicts and namespaces nested in one value. Printing, comparing, tojson and destroying a
// value recurse once per level; namespaces carry values from one loop iteration to the next, so
// without a limit `{% set ns.x = [ns.x] %}` in a loop would nest without bound.
inline constexpr int kMaxValueDepth = 256;
// Elements plus string bytes in one value, counting shared parts each time they appear (as
// printing does): `{% set ns.x = [ns.x, ns.x] %}` doubles it per loop iteration while the
// memory used grows by one list.
inline constexpr int64_t kMaxValueWeight = int64_t{1} << 24;

// Arguments of a call: `f(1, x, key=2)`.
struct CallArgs {
  std::vector<Value> positional;                        // in call order
  std::vector<std::pair<std::string, Value>> keyword;   // name=value, in call order
};

// A builtin function, bound method or macro. Errors are values; the caller adds the position.
using NativeFunction = std::function<Expected<Value>(const CallArgs& args)>;

struct Callable {
  std::string name;   // for messages and str(): "namespace", "strip", macro name
  NativeFunction fn;  // the behaviour
};

// A python list (or tuple, which only differs in repr and equality).
struct Array {
  std::vector<Value> items;  // elements in order
  bool is_tuple = false;     // renders as (a, b) instead of [a, b]
  // Set by Value::array:
  int depth = 1;                 // levels of nesting, this one included
  int64_t weight = 1;            // see kMaxValueWeight (saturates)
  bool holds_namespace = false;  // some element is or holds a namespace
};

// A python dict with string keys; keeps insertion order because python dicts do and templates
// iterate them (`for k, v in args.items()`, `tool | tojson`).
struct Object {
  std::vector<std::pair<std::string, Value>> entries;  // key/value pairs in insertion order
  // Set by Value::object, which freezes a dict; a namespace's Object changes and ignores them.
  int depth = 1;                 // levels of nesting, this one included
  int64_t weight = 1;            // see kMaxValueWeight (saturates)
  bool holds_namespace = false;  // some value is or holds a namespace

  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  void set(const std::string& key, Value value);  // replaces in place or appends
};

class Value {
 public:
  enum class Kind : uint8_t { kUndefined, kNone, kBool, kInt, kFloat, kString, kArray, kObject, kNamespace, kCallable };

  Value() : v_(UndefinedState{}) {}  // an Undefined with no name
  Value(bool b) : v_(b) {}           // NOLINT: implicit, literals read naturally
  Value(int64_t i) : v_(i) {}        // NOLINT
  Value(int i) : v_(static_cast<int64_t>(i)) {}  // NOLINT
  Value(double d) : v_(d) {}         // NOLINT
  Value(std::string s) : v_(std::move(s)) {}     // NOLINT
  Value(const char* s) : v_(std::string(s)) {}   // NOLINT

  // jinja2's Undefined remembers why it is undefined so that a later misuse can say so.
  static Value undefined(std::string hint);
  static Value none();
  static Value array(std::vector<Value> items, bool is_tuple = false);
  static Value object(Object object);
  static Value make_namespace(Object attributes);
  static Value callable(std::string name, NativeFunction fn);
  static Value from_json(const nlohmann::ordered_json& json);
  static Value from_json(const nlohmann::json& json);

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  bool is_number() const { return is_bool() || is_int() || is_float(); }  // python: bool is an int
  bool is_string() const { return kind() == Kind::kString; }
  bool is_array() const { return kind() == Kind::kArray; }
  bool is_object() const { return kind() == Kind::kObject; }
  bool is_namespace() const { return kind() == Kind::kNamespace; }
  bool is_callable() const { return kind() == Kind::kCallable; }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return is_bool() ? (as_bool() ? 1 : 0) : std::get<int64_t>(v_); }  // bool or int
  double as_float() const;  // any number
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const Array& as_array() const { return *std::get<std::shared_ptr<Array>>(v_); }
  const Object& as_object() const { return *std::get<std::shared_ptr<Object>>(v_); }
  // Namespaces are the only mutable values (`{% set ns.x = 1 %}`); copies share the same object.
  Object& namespace_attributes() const { return *std::get<NamespaceRef>(v_).object; }
  const Callable& as_callable() const { return *std::get<std::shared_ptr<Callable>>(v_); }
  const std::string& undefined_hint() const { return std::get<UndefinedState>(v_).hint; }

  // Python truthiness; Undefined is falsy.
  bool truthy() const;
  // Python's type name, for error messages ("str", "dict", "NoneType", ...).
  const char* type_name() const;
  // Levels of lists, dicts and namespaces: 0 for a scalar, 1 for [1, 2], 2 for [[1]].
  int depth() const;
  // Elements and string bytes, shared parts counted each time (see kMaxValueWeight).
  int64_t weight() const;
  // Whether this is a namespace or contains one. A namespace may not hold another, which keeps
  // namespace values free of cycles (and of chains that grow a level per loop iteration).
  bool holds_namespace() const;
  // True for the same object (namespaces, callables), used by equality of identity-only kinds.
  bool same_object(const Value& other) const;

 private:
  struct UndefinedState {
    std::string hint;  // e.g. "'foo' is undefined" or "'dict object' has no attribute 'x'"
  };
  struct NoneState {};
  struct NamespaceRef {
    std::shared_ptr<Object> object;  // shared: `set ns.x` inside a loop is seen after the loop
  };
  // The order of alternatives matches Kind.
  std::variant<UndefinedState, NoneState, bool, int64_t, double, std::string, std::shared_ptr<Array>,
               std::shared_ptr<Object>, NamespaceRef, std::shared_ptr<Callable>>
      v_;
};

// python str(): what `{{ x }}`, `~` and `| string` produce. Undefined renders as "".
std::string to_str(const Value& value);
// python repr(): how values look inside printed lists and dicts.
std::string to_repr(const Value& value);
// python repr(float): shortest round-trip digits, "1e+16", "0.0001", "1.0", "inf".
std::string format_float(double value);
// python ==, with bool/int/float comparing numerically.
bool values_equal(const Value& a, const Value& b);
// python <: numbers, strings (code point order) and sequences; other pairs are a TypeError.
Expected<bool> value_less(const Value& a, const Value& b);

// json.dumps(value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys),
// the `tojson` that transformers installs for chat templates.
struct JsonDumpOptions {
  std::optional<std::string> indent;   // per-level indent text; none = single line
  std::string item_separator = ", ";   // between elements
  std::string key_separator = ": ";    // between key and value
  bool sort_keys = false;              // sort object keys (code point order)
};
Expected<std::string> to_json(const Value& value, const JsonDumpOptions& options);

}  // namespace fathom::jinja
