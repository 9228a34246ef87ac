// JSON Schema -> GBNF. The grammar generates a subset of the documents the schema accepts:
// properties appear in schema order, extra properties are never generated when `properties`
// is given (the strict reading of additionalProperties), numbers have bounded digits and
// whitespace is bounded, so the model can neither stall on spaces nor run away on digits.
// Anything that would constrain the document beyond what is generated is refused by name.
#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_map>

#include "runtime/grammar/grammar.h"
#include "runtime/grammar/json_pattern.h"

namespace fathom {

namespace {

// Keywords that describe but do not constrain: accepted and ignored.
const std::set<std::string>& annotation_keywords() {
  static const std::set<std::string> k{"title", "description", "$schema", "$id", "$comment", "default", "examples",
                                       "deprecated", "readOnly", "writeOnly", "$defs", "definitions"};
  return k;
}

std::string gbnf_literal(const std::string& bytes) {
  std::string out = "\"";
  for (unsigned char c : bytes) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      out += strprintf("\\x%02X", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// A constant JSON value as grammar text: scalars verbatim (compact), objects and arrays with the
// same optional whitespace as everywhere else, so a pretty-printed constant matches too.
std::string value_literal(const nlohmann::ordered_json& v) {
  if (v.is_object()) {
    if (v.empty()) return "\"{\" ws \"}\"";
    std::string out = "\"{\" ws";
    bool first = true;
    for (const auto& [key, value] : v.items()) {
      out += std::string(first ? "" : " \",\" ws") + " " + gbnf_literal(nlohmann::ordered_json(key).dump()) + " ws \":\" ws " + value_literal(value) + " ws";
      first = false;
    }
    return "( " + out + " \"}\" )";
  }
  if (v.is_array()) {
    if (v.empty()) return "\"[\" ws \"]\"";
    std::string out = "\"[\" ws";
    for (size_t i = 0; i < v.size(); ++i) out += std::string(i ? " \",\" ws" : "") + " " + value_literal(v[i]) + " ws";
    return "( " + out + " \"]\" )";
  }
  return gbnf_literal(v.dump());
}

// The fixed rules every schema grammar may use (emitted only when referenced).
struct Primitive {
  const char* name;
  const char* body;
  std::vector<const char*> deps;
};
const std::vector<Primitive>& primitives() {
  static const std::vector<Primitive> p{
      {"ws", "", {}},  // filled in from the options
      {"hex", "[0-9a-fA-F]", {}},
      // \u escapes of surrogates are excluded: JSON parsers reject lone surrogates.
      {"char", "[^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" ( [0-9a-cA-CefEF] hex hex hex | [dD] [0-7] hex hex ) )", {"hex"}},
      {"string", "\"\\\"\" char* \"\\\"\"", {"char"}},
      {"integer", "\"-\"? ( \"0\" | [1-9] [0-9]{0,15} )", {}},
      {"number", "integer ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?", {"integer"}},
      {"boolean", "\"true\" | \"false\"", {}},
      {"null", "\"null\"", {}},
      {"value", "object | array | string | number | boolean | null", {"object", "array", "string", "number", "boolean", "null"}},
      {"object", "\"{\" ws ( string ws \":\" ws value ws ( \",\" ws string ws \":\" ws value ws )* )? \"}\"", {"ws", "string", "value"}},
      {"array", "\"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\"", {"ws", "value"}},
      {"date", "[0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] )", {}},
      {"time", "( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{1,9} )? ( \"Z\" | [+-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )", {}},
      {"date-time", "date \"T\" time", {"date", "time"}},
      {"uuid", "hex{8} \"-\" hex{4} \"-\" hex{4} \"-\" hex{4} \"-\" hex{12}", {"hex"}},
  };
  return p;
}

class SchemaConverter {
 public:
  explicit SchemaConverter(const JsonSchemaOptions& options) : options_(options) {}

  Expected<std::string> convert(const nlohmann::ordered_json& schema) {
    root_ = &schema;
    FATHOM_ASSIGN_OR_RETURN(std::string body, visit(schema, "root", 0));
    return gbnf_text(body);
  }

  // root ::= before_1 args_1 after_1 | ...; each alternative's schema is its own document, so
  // its $refs (and "#") resolve within it.
  Expected<std::string> convert_tool_call(const std::vector<FramedArguments>& alternatives, ArgumentSyntax syntax) {
    const nlohmann::ordered_json any_object = {{"type", "object"}};
    std::string root;
    for (size_t i = 0; i < alternatives.size(); ++i) {
      const FramedArguments& a = alternatives[i];
      root_ = a.schema.is_null() ? &any_object : &a.schema;
      ref_rules_.clear();
      self_rule_ = add_rule("arguments", "");  // reserved first, so that "#" may refer to it
      const std::string& path = a.label;
      auto body = syntax == ArgumentSyntax::kDsml ? visit_dsml_parameters(*root_, path) : visit(*root_, path, 0);
      if (!body) return body.status();
      set_rule(self_rule_, *body);
      root += (root.empty() ? "" : " | ") + gbnf_literal(a.before) + " " + self_rule_ + " " + gbnf_literal(a.after);
    }
    if (root.empty()) return error(ErrorCode::kInvalidArgument, "a tool call grammar needs at least one function");
    return gbnf_text(root);
  }

 private:
  std::string gbnf_text(const std::string& root_body) {
    std::string out = "root ::= " + root_body + "\n";
    for (const auto& [name, rule] : rules_) out += name + " ::= " + rule + "\n";
    std::set<std::string> emitted;
    for (const std::string& p : used_) emit_primitive(p, &emitted, &out);
    return out;
  }
  void set_rule(const std::string& name, const std::string& body) {
    for (auto& r : rules_)
      if (r.first == name) r.second = body;
  }
  void emit_primitive(const std::string& name, std::set<std::string>* emitted, std::string* out) {
    if (!emitted->insert(name).second) return;
    for (const Primitive& p : primitives()) {
      if (name != p.name) continue;
      if (name == "ws") *out += strprintf("ws ::= ( \" \" | \"\\n\" [ \\t]{0,%d} )?\n", options_.max_whitespace);
      else *out += name + " ::= " + p.body + "\n";
      for (const char* d : p.deps) emit_primitive(d, emitted, out);
    }
  }
  std::string literal(const nlohmann::ordered_json& v) {
    if (v.is_structured()) use("ws");
    return value_literal(v);
  }
  std::string use(const std::string& primitive) {
    used_.insert(primitive);
    return primitive;
  }
  std::string add_rule(const std::string& hint, const std::string& body) {
    std::string base;
    for (char c : hint) base += (std::isalnum(static_cast<unsigned char>(c)) || c == '-') ? c : '-';
    if (base.empty()) base = "r";
    std::string name = base;
    for (int i = 2; names_.count(name) || name == "root" || is_primitive(name); ++i) name = base + "-" + std::to_string(i);
    names_.insert(name);
    rules_.push_back({name, body});
    return name;
  }
  static bool is_primitive(const std::string& name) {
    for (const Primitive& p : primitives())
      if (name == p.name) return true;
    return false;
  }
  Status unsupported(const std::string& path, const std::string& what) const {
    return error(ErrorCode::kUnsupported, "JSON schema at " + path + ": " + what);
  }

  Expected<std::string> visit(const nlohmann::ordered_json& s, const std::string& path, int depth) {
    if (depth > options_.max_depth)
      return error(ErrorCode::kOutOfRange, strprintf("JSON schema at %s: nested deeper than %d (JsonSchemaOptions::max_depth)", path.c_str(), options_.max_depth));
    if (s.is_boolean()) {
      if (s.get<bool>()) return use("value");
      return unsupported(path, "the schema 'false' accepts no document");
    }
    if (!s.is_object()) return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": a schema must be an object or a boolean");
    static const std::set<std::string> known{"type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
                                             "enum", "const", "anyOf", "oneOf", "$ref", "format", "minLength", "maxLength", "pattern",
                                             "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
    for (const auto& [key, value] : s.items()) {
      if (!known.count(key) && !annotation_keywords().count(key))
        return unsupported(path, "keyword '" + key + "' is not supported (fathom cannot guarantee it, so it refuses the schema)");
    }
    if (s.contains("$ref")) return visit_ref(s, path, depth);
    if (s.contains("const")) return literal(s["const"]);
    if (s.contains("enum")) {
      if (!s["enum"].is_array() || s["enum"].empty()) return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": 'enum' must be a non-empty array");
      std::string alts;
      for (const auto& v : s["enum"]) alts += (alts.empty() ? "" : " | ") + literal(v);
      return "( " + alts + " )";
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (!s.contains(key)) continue;
      if (!s[key].is_array() || s[key].empty()) return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": '" + key + "' must be a non-empty array");
      std::string alts;
      for (size_t i = 0; i < s[key].size(); ++i) {
        FATHOM_ASSIGN_OR_RETURN(std::string alt, visit(s[key][i], path + "/" + key + "/" + std::to_string(i), depth + 1));
        alts += (alts.empty() ? "" : " | ") + alt;
      }
      return add_rule(path_hint(path), alts);
    }
    if (!s.contains("type")) {
      if (s.contains("properties") || s.contains("additionalProperties")) return visit_object(s, path, depth);
      if (s.contains("items")) return visit_array(s, path, depth);
      return use("value");
    }
    const nlohmann::ordered_json& type = s["type"];
    if (type.is_array()) {
      std::string alts;
      for (const auto& t : type) {
        if (!t.is_string()) return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": 'type' entries must be strings");
        FATHOM_ASSIGN_OR_RETURN(std::string alt, visit_type(s, t.get<std::string>(), path, depth));
        alts += (alts.empty() ? "" : " | ") + alt;
      }
      if (alts.empty()) return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": 'type' is an empty array");
      return add_rule(path_hint(path), alts);
    }
    if (!type.is_string()) return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": 'type' must be a string or an array of strings");
    return visit_type(s, type.get<std::string>(), path, depth);
  }

  static std::string path_hint(const std::string& path) {
    const size_t slash = path.find_last_of('/');
    std::string last = slash == std::string::npos ? path : path.substr(slash + 1);
    return last.empty() ? "r" : last;
  }

  Expected<std::string> visit_type(const nlohmann::ordered_json& s, const std::string& type, const std::string& path, int depth) {
    auto refuse_others = [&](std::initializer_list<const char*> keys) -> Status {
      for (const char* k : keys)
        if (s.contains(k)) return unsupported(path, std::string("keyword '") + k + "' does not apply to type '" + type + "'");
      return Status::ok();
    };
    if (type != "string") FATHOM_RETURN_IF_ERROR(refuse_others({"format", "minLength", "maxLength", "pattern"}));
    if (type != "object") FATHOM_RETURN_IF_ERROR(refuse_others({"properties", "required", "additionalProperties"}));
    if (type != "array") FATHOM_RETURN_IF_ERROR(refuse_others({"items", "minItems", "maxItems"}));
    if (type != "integer") FATHOM_RETURN_IF_ERROR(refuse_others({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}));
    if (type == "string") return visit_string(s, path);
    if (type == "number") return use("number");
    if (type == "integer") return visit_integer(s, path);
    if (type == "boolean") return use("boolean");
    if (type == "null") return use("null");
    if (type == "object") return visit_object(s, path, depth);
    if (type == "array") return visit_array(s, path, depth);
    return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": unknown type '" + type + "'");
  }

  Expected<int64_t> count(const nlohmann::ordered_json& s, const char* key, const std::string& path) {
    const auto& v = s[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0)
      return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": '" + key + "' must be a non-negative integer");
    if (v.get<int64_t>() > options_.limits.max_repetition)
      return unsupported(path, strprintf("'%s' above %d (GrammarLimits::max_repetition)", key, options_.limits.max_repetition));
    return v.get<int64_t>();
  }

  static std::string bounds(int64_t min, int64_t max) {
    if (max < 0) return strprintf("{%lld,}", static_cast<long long>(min));
    return strprintf("{%lld,%lld}", static_cast<long long>(min), static_cast<long long>(max));
  }

  // Integers in [minimum, maximum] as digit patterns; an open side stops at the 16 digits the
  // integer rule allows anyway.
  Expected<std::string> visit_integer(const nlohmann::ordered_json& s, const std::string& path) {
    constexpr int64_t kLimit = 9999999999999999;  // 16 digits
    int64_t lo = -kLimit, hi = kLimit;
    bool bounded = false;
    for (const char* key : {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}) {
      if (!s.contains(key)) continue;
      if (!s[key].is_number()) return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": '" + key + "' must be a number");
      const double v = s[key].get<double>();
      const std::string k = key;
      const bool is_min = k == "minimum" || k == "exclusiveMinimum";
      const bool exclusive = k.rfind("exclusive", 0) == 0;
      double bound = is_min ? std::ceil(v) : std::floor(v);
      if (exclusive && bound == v) bound += is_min ? 1 : -1;
      bound = std::clamp(bound, static_cast<double>(-kLimit), static_cast<double>(kLimit));
      if (is_min) lo = std::max(lo, static_cast<int64_t>(bound));
      else hi = std::min(hi, static_cast<int64_t>(bound));
      bounded = true;
    }
    if (!bounded) return use("integer");
    if (lo > hi) return unsupported(path, "no integer lies between the minimum and the maximum");
    std::vector<std::string> alts;
    if (lo < 0) alts.push_back("\"-\" " + positive_range(std::max<int64_t>(1, -std::min<int64_t>(hi, -1)), -lo));
    if (hi >= 0) alts.push_back(positive_range(std::max<int64_t>(lo, 0), hi));
    std::string body;
    for (const std::string& a : alts) body += (body.empty() ? "" : " | ") + a;
    return add_rule(path_hint(path) + "-int", body);
  }

  // Decimal numbers in [a, b], 0 <= a <= b, without leading zeros.
  static std::string positive_range(int64_t a, int64_t b) {
    std::vector<std::string> alts;
    const std::string sa = std::to_string(a), sb = std::to_string(b);
    for (size_t len = sa.size(); len <= sb.size(); ++len) {
      std::string lo = sa;
      if (len != sa.size()) {
        lo.assign(len, '0');
        lo[0] = '1';
      }
      const std::string hi = len == sb.size() ? sb : std::string(len, '9');
      alts.push_back(same_length_range(lo, hi));
    }
    std::string out;
    for (const std::string& alt : alts) out += (out.empty() ? "( " : " | ") + alt;
    return out + " )";
  }

  // Digit strings of one length between lo and hi (inclusive), by their first differing digit.
  static std::string same_length_range(const std::string& lo, const std::string& hi) {
    if (lo.empty()) return "\"\"";
    const std::string lo_rest = lo.substr(1), hi_rest = hi.substr(1);
    if (lo[0] == hi[0]) return gbnf_literal(lo.substr(0, 1)) + (lo_rest.empty() ? "" : " " + same_length_range(lo_rest, hi_rest));
    std::vector<std::string> alts;
    char first = lo[0], last = hi[0];
    const size_t n = lo_rest.size();
    if (lo_rest.find_first_not_of('0') != std::string::npos) {
      alts.push_back(gbnf_literal(lo.substr(0, 1)) + " " + same_length_range(lo_rest, std::string(n, '9')));
      ++first;
    }
    if (hi_rest.find_first_not_of('9') != std::string::npos) {
      alts.push_back(gbnf_literal(hi.substr(0, 1)) + " " + same_length_range(std::string(n, '0'), hi_rest));
      --last;
    }
    if (first <= last) alts.push_back(std::string("[") + first + "-" + last + "]" + (n ? strprintf(" [0-9]{%zu}", n) : ""));
    std::string out;
    for (const std::string& alt : alts) out += (out.empty() ? "( " : " | ") + alt;
    return out + " )";
  }

  struct LengthBounds {
    int64_t min = 0;   // minLength
    int64_t max = -1;  // maxLength (-1: none)
  };
  Expected<LengthBounds> length_bounds(const nlohmann::ordered_json& s, const std::string& path) {
    LengthBounds b;
    if (s.contains("minLength")) {
      FATHOM_ASSIGN_OR_RETURN(b.min, count(s, "minLength", path));
    }
    if (s.contains("maxLength")) {
      FATHOM_ASSIGN_OR_RETURN(b.max, count(s, "maxLength", path));
    }
    if (b.max >= 0 && b.max < b.min) return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": maxLength is below minLength");
    return b;
  }

  Expected<std::string> visit_string(const nlohmann::ordered_json& s, const std::string& path) {
    if (s.contains("pattern")) {
      if (s.contains("format") || s.contains("minLength") || s.contains("maxLength"))
        return unsupported(path, "'pattern' together with 'format', 'minLength' or 'maxLength' (their intersection is not built)");
      if (!s["pattern"].is_string()) return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": 'pattern' must be a string");
      auto body = json_pattern_to_gbnf(s["pattern"].get<std::string>());
      if (!body) return unsupported(path, "'pattern' " + s["pattern"].dump() + ": " + body.status().message());
      use("char");
      return add_rule(path_hint(path) + "-pattern", "\"\\\"\" " + *body + " \"\\\"\"");
    }
    if (s.contains("format")) {
      if (s.contains("minLength") || s.contains("maxLength")) return unsupported(path, "'format' together with 'minLength'/'maxLength'");
      const std::string f = s["format"].is_string() ? s["format"].get<std::string>() : "";
      if (f != "date" && f != "time" && f != "date-time" && f != "uuid")
        return unsupported(path, "string format '" + f + "' is not supported (supported: date, time, date-time, uuid)");
      return "\"\\\"\" " + use(f) + " \"\\\"\"";
    }
    FATHOM_ASSIGN_OR_RETURN(const LengthBounds length, length_bounds(s, path));
    const int64_t min = length.min, max = length.max;
    if (min == 0 && max < 0) return use("string");
    use("char");
    return "\"\\\"\" char" + bounds(min, max) + " \"\\\"\"";
  }

  Expected<std::string> visit_array(const nlohmann::ordered_json& s, const std::string& path, int depth) {
    std::string item = use("value");
    if (s.contains("items")) {
      FATHOM_ASSIGN_OR_RETURN(item, visit(s["items"], path + "/items", depth + 1));
    }
    int64_t min = 0, max = -1;
    if (s.contains("minItems")) {
      FATHOM_ASSIGN_OR_RETURN(min, count(s, "minItems", path));
    }
    if (s.contains("maxItems")) {
      FATHOM_ASSIGN_OR_RETURN(max, count(s, "maxItems", path));
    }
    if (max >= 0 && max < min) return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": maxItems is below minItems");
    const std::string ws = use("ws");
    if (max == 0) return add_rule(path_hint(path), "\"[\" ws \"]\"");
    const std::string item_rule = add_rule(path_hint(path) + "-item", item);
    const std::string more = "( \",\" ws " + item_rule + " ws )" + bounds(min > 0 ? min - 1 : 0, max < 0 ? -1 : max - 1);
    const std::string list = item_rule + " ws " + more;
    return add_rule(path_hint(path), "\"[\" " + ws + " " + (min > 0 ? list : "( " + list + " )?") + " \"]\"");
  }

  Expected<std::string> visit_object(const nlohmann::ordered_json& s, const std::string& path, int depth) {
    const std::string ws = use("ws");
    if (!s.contains("properties")) {
      if (s.contains("required") && !s["required"].empty())
        return unsupported(path, "'required' without 'properties'");
      const nlohmann::ordered_json* extra = s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
      if (extra && extra->is_boolean() && !extra->get<bool>()) return add_rule(path_hint(path), "\"{\" ws \"}\"");
      std::string value = use("value");
      if (extra && extra->is_object()) {
      FATHOM_ASSIGN_OR_RETURN(value, visit(*extra, path + "/additionalProperties", depth + 1));
    }
      const std::string member = add_rule(path_hint(path) + "-member", use("string") + " ws \":\" ws " + value + " ws");
      return add_rule(path_hint(path), "\"{\" ws ( " + member + " ( \",\" ws " + member + " )* )? \"}\"");
    }
    FATHOM_ASSIGN_OR_RETURN(std::set<std::string> required, required_properties(s, path));
    const auto& props = s["properties"];
    // One rule per property "key": value, then their sequence.
    std::vector<std::string> members;
    std::vector<bool> is_required;
    for (const auto& [key, sub] : props.items()) {
      FATHOM_ASSIGN_OR_RETURN(std::string value, visit(sub, path + "/properties/" + key, depth + 1));
      members.push_back(add_rule(path_hint(path) + "-" + key, gbnf_literal(nlohmann::ordered_json(key).dump()) + " ws \":\" ws " + value + " ws"));
      is_required.push_back(required.count(key) > 0);
    }
    return add_rule(path_hint(path), "\"{\" ws " + member_sequence(path, members, is_required, "\",\" ws ") + " \"}\"");
  }

  // The names in 'required', each checked to be one of 'properties' (which must be an object).
  Expected<std::set<std::string>> required_properties(const nlohmann::ordered_json& s, const std::string& path) {
    if (!s["properties"].is_object()) return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": 'properties' must be an object");
    std::set<std::string> required;
    if (!s.contains("required")) return required;
    if (!s["required"].is_array()) return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": 'required' must be an array");
    for (const auto& r : s["required"]) {
      if (!r.is_string() || !s["properties"].contains(r.get<std::string>()))
        return unsupported(path, "required property " + r.dump() + " is not in 'properties'");
      required.insert(r.get<std::string>());
    }
    return required;
  }

  // The members in order, optional ones skippable, `separator` between two written ones: from
  // the last member back, two rules per position, the rest when nothing was written yet (no
  // separator) and when something was. Returns the first rule ("" when there are no members).
  std::string member_sequence(const std::string& path, const std::vector<std::string>& members,
                              const std::vector<bool>& is_required, const std::string& separator) {
    std::string first_rest, later_rest;  // rule names ("" = nothing follows)
    for (size_t i = members.size(); i-- > 0;) {
      const std::string after = later_rest.empty() ? "" : " " + later_rest;
      std::string first = members[i] + after;
      std::string later = separator + members[i] + after;
      if (!is_required[i]) {
        first += " | " + (first_rest.empty() ? "" : first_rest);
        later += " | " + (later_rest.empty() ? "" : later_rest);
      }
      first_rest = add_rule(path_hint(path) + "-first" + std::to_string(i), first);
      later_rest = add_rule(path_hint(path) + "-rest" + std::to_string(i), later);
    }
    return first_rest;
  }

  // A string schema the DSML raw form can carry: the value's alternatives as raw text (string=
  // "true"), or "" when the value must be written as JSON (string="false").
  Expected<std::string> dsml_raw_string(const nlohmann::ordered_json& s, const std::string& path) {
    if (!s.is_object()) return std::string();
    for (const auto& [key, value] : s.items())
      if (key != "type" && key != "minLength" && key != "maxLength" && key != "enum" && key != "const" &&
          !annotation_keywords().count(key))
        return std::string();
    std::vector<nlohmann::ordered_json> values;
    if (s.contains("const")) values.push_back(s["const"]);
    if (s.contains("enum") && s["enum"].is_array()) values.insert(values.end(), s["enum"].begin(), s["enum"].end());
    if (!values.empty()) {
      std::string alts;
      for (const auto& v : values) {
        if (!v.is_string() || v.get<std::string>().find('<') != std::string::npos) return std::string();
        alts += (alts.empty() ? "" : " | ") + gbnf_literal(v.get<std::string>());
      }
      return "( " + alts + " )";
    }
    if (s.value("type", nlohmann::ordered_json()) != "string") return std::string();
    FATHOM_ASSIGN_OR_RETURN(const LengthBounds length, length_bounds(s, path));
    const int64_t min = length.min, max = length.max;
    return "[^<]" + bounds(min, max);
  }

  // A function's parameters as DSML: one parameter element per property.
  Expected<std::string> visit_dsml_parameters(const nlohmann::ordered_json& s, const std::string& path) {
    auto parameter = [&](const std::string& key_rule, const std::string& value_alternatives) {
      return gbnf_literal("<｜DSML｜parameter name=\"") + " " + key_rule + " " + gbnf_literal("\" string=\"") + " ( " +
             value_alternatives + " ) " + gbnf_literal("</｜DSML｜parameter>\n");
    };
    if (!s.is_object() || s.value("type", nlohmann::ordered_json("object")) != "object")
      return unsupported(path, "DSML tool calls write the arguments as named parameters, so 'parameters' must be an object schema");
    for (const auto& [key, value] : s.items())
      if (key != "type" && key != "properties" && key != "required" && key != "additionalProperties" && !annotation_keywords().count(key))
        return unsupported(path, "keyword '" + key + "' on the parameters of a DSML tool call");
    if (!s.contains("properties")) {
      if (s.contains("additionalProperties") && s["additionalProperties"] == false) return std::string("\"\"");
      // Any parameters: a name without quotes or '<', any raw text or JSON value.
      const std::string any = parameter("[^\"<]{1,64}", "\"true\\\">\" [^<]* | \"false\\\">\" " + use("value"));
      return add_rule(path_hint(path) + "-any", "( " + any + " )*");
    }
    FATHOM_ASSIGN_OR_RETURN(std::set<std::string> required, required_properties(s, path));
    const auto& props = s["properties"];
    std::vector<std::string> members;
    std::vector<bool> is_required;
    for (const auto& [key, sub] : props.items()) {
      if (key.empty() || key.find_first_of("\"<") != std::string::npos)
        return unsupported(path, "property name " + nlohmann::ordered_json(key).dump() + " cannot be a DSML parameter name");
      const std::string sub_path = path + "/properties/" + key;
      FATHOM_ASSIGN_OR_RETURN(std::string raw, dsml_raw_string(sub, sub_path));
      FATHOM_ASSIGN_OR_RETURN(std::string value, visit(sub, sub_path, 1));
      std::string alternatives = "\"false\\\">\" " + value;
      if (!raw.empty()) alternatives = "\"true\\\">\" " + raw + " | " + alternatives;
      members.push_back(add_rule(path_hint(path) + "-" + key, parameter(gbnf_literal(key), alternatives)));
      is_required.push_back(required.count(key) > 0);
    }
    const std::string first = member_sequence(path, members, is_required, "");
    return first.empty() ? std::string("\"\"") : first;
  }

  Expected<std::string> visit_ref(const nlohmann::ordered_json& s, const std::string& path, int depth) {
    if (s.size() > 1) {
      for (const auto& [key, value] : s.items())
        if (key != "$ref" && !annotation_keywords().count(key)) return unsupported(path, "keyword '" + key + "' beside '$ref'");
    }
    if (!s["$ref"].is_string()) return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": '$ref' must be a string");
    const std::string ref = s["$ref"].get<std::string>();
    auto it = ref_rules_.find(ref);
    if (it != ref_rules_.end()) return it->second;
    std::string section, name;
    for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
      if (ref.rfind(prefix, 0) == 0) {
        section = std::string(prefix).substr(2, std::string(prefix).size() - 3);
        name = ref.substr(std::string(prefix).size());
      }
    }
    if (ref == "#") return self_rule_;
    if (section.empty() || name.find('/') != std::string::npos)
      return unsupported(path, "'$ref' " + ref + " (only #, #/$defs/NAME and #/definitions/NAME are supported)");
    if (!root_->contains(section) || !(*root_)[section].contains(name))
      return error(ErrorCode::kInvalidArgument, "JSON schema at " + path + ": '$ref' " + ref + " points at nothing");
    // The rule name is reserved before the visit so that recursive references end here.
    const std::string rule = add_rule("def-" + name, "");
    ref_rules_[ref] = rule;
    FATHOM_ASSIGN_OR_RETURN(std::string body, visit((*root_)[section][name], "#/" + section + "/" + name, depth + 1));
    set_rule(rule, body);
    return rule;
  }

  const nlohmann::ordered_json* root_ = nullptr;  // the document being converted ($ref targets)
  std::string self_rule_ = "root";                // the rule "#" refers to
  const JsonSchemaOptions& options_;
  std::vector<std::pair<std::string, std::string>> rules_;  // generated rules in order
  std::set<std::string> names_;
  std::set<std::string> used_;                               // primitives referenced
  std::unordered_map<std::string, std::string> ref_rules_;   // $ref -> rule name
};

}  // namespace

Expected<std::string> json_schema_to_gbnf(const nlohmann::ordered_json& schema, const JsonSchemaOptions& options) {
  return SchemaConverter(options).convert(schema);
}

Expected<std::string> tool_call_gbnf(const std::vector<FramedArguments>& alternatives, ArgumentSyntax syntax,
                                     const JsonSchemaOptions& options) {
  return SchemaConverter(options).convert_tool_call(alternatives, syntax);
}

Expected<std::shared_ptr<const Grammar>> tool_call_grammar(const std::vector<FramedArguments>& alternatives,
                                                           ArgumentSyntax syntax, const JsonSchemaOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(std::string gbnf, tool_call_gbnf(alternatives, syntax, options));
  auto g = grammar_from_gbnf(gbnf, options.limits);
  if (!g) return error(g.status().code(), "tool call grammar: " + g.status().message());
  return g;
}

Expected<std::shared_ptr<const Grammar>> grammar_from_json_schema(const nlohmann::ordered_json& schema, const JsonSchemaOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(std::string gbnf, json_schema_to_gbnf(schema, options));
  auto g = grammar_from_gbnf(gbnf, options.limits);
  if (!g) return error(g.status().code(), "JSON schema: " + g.status().message());
  return g;
}

Expected<std::shared_ptr<const Grammar>> grammar_from_json_schema_text(std::string_view schema_json, const JsonSchemaOptions& options) {
  nlohmann::ordered_json schema = nlohmann::ordered_json::parse(schema_json, nullptr, /*allow_exceptions=*/false);
  if (schema.is_discarded()) return error(ErrorCode::kInvalidArgument, "the JSON schema is not valid JSON");
  return grammar_from_json_schema(schema, options);
}

std::string json_object_gbnf() {
  nlohmann::ordered_json schema = {{"type", "object"}};
  return json_schema_to_gbnf(schema).value();
}

std::shared_ptr<const Grammar> json_object_grammar() {
  // Built from a constant, so failure is a bug, not an input error.
  auto g = grammar_from_gbnf(json_object_gbnf());
  FATHOM_CHECK_MSG(g.has_value(), g.status().to_string());
  return *g;
}

std::shared_ptr<const Grammar> json_value_grammar() {
  auto g = grammar_from_json_schema(nlohmann::ordered_json::object());
  FATHOM_CHECK_MSG(g.has_value(), g.status().to_string());
  return *g;
}

}  // namespace fathom
