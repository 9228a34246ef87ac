// Metadata values: type names, factories, accessors and the human-readable rendering used by
// `fathom inspect`.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "gguf/gguf.h"

namespace fathom::gguf {

namespace {

// Strings longer than this are cut in displays; tokenizer chat templates run to kilobytes.
constexpr size_t kMaxDisplayStringBytes = 120;

bool is_integer_type(ValueType t) {
  switch (t) {
    case ValueType::kUint8: case ValueType::kInt8: case ValueType::kUint16: case ValueType::kInt16:
    case ValueType::kUint32: case ValueType::kInt32: case ValueType::kUint64: case ValueType::kInt64:
      return true;
    default:
      return false;
  }
}

bool is_signed_type(ValueType t) {
  return t == ValueType::kInt8 || t == ValueType::kInt16 || t == ValueType::kInt32 || t == ValueType::kInt64;
}

// Shortest decimal that reads back as the same float (so 1e-5f prints "1e-05", not
// "9.99999975e-06"); the same for double with up to 17 digits.
std::string format_float(double v, bool single_precision) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  const int max_digits = single_precision ? 9 : 17;
  for (int digits = 6; digits <= max_digits; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (single_precision ? std::strtof(buf, nullptr) == static_cast<float>(v) : std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

// Renders an element of a numeric array, which is held as a double.
std::string format_number(double v, ValueType elem_type) {
  if (elem_type == ValueType::kBool) return v != 0.0 ? "true" : "false";
  if (elem_type == ValueType::kFloat32) return format_float(v, true);
  if (elem_type == ValueType::kFloat64) return format_float(v, false);
  // Integers are exact below 2^53; larger uint64/int64 elements were already rounded on read.
  if (std::fabs(v) < 9007199254740992.0) return std::to_string(static_cast<int64_t>(v));
  return format_float(v, false);
}

// Quotes and escapes a string, cutting it (at a UTF-8 character boundary) past max_bytes.
std::string quote(const std::string& s, size_t max_bytes) {
  size_t n = s.size();
  if (n > max_bytes) {
    n = max_bytes;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // continuation byte
  }
  std::string out = "\"";
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "\\x%02x", c);
          out += hex;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  if (n < s.size()) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

Value make_integer(ValueType type, int64_t i, uint64_t u) {
  Value v;
  v.type = type;
  v.i64 = i;
  v.u64 = u;
  v.f64 = is_signed_type(type) ? static_cast<double>(i) : static_cast<double>(u);
  return v;
}

Value make_signed(ValueType type, int64_t i) { return make_integer(type, i, static_cast<uint64_t>(i)); }
Value make_unsigned(ValueType type, uint64_t u) { return make_integer(type, static_cast<int64_t>(u), u); }

}  // namespace

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::kUint8: return "u8";
    case ValueType::kInt8: return "i8";
    case ValueType::kUint16: return "u16";
    case ValueType::kInt16: return "i16";
    case ValueType::kUint32: return "u32";
    case ValueType::kInt32: return "i32";
    case ValueType::kFloat32: return "f32";
    case ValueType::kBool: return "bool";
    case ValueType::kString: return "string";
    case ValueType::kArray: return "array";
    case ValueType::kUint64: return "u64";
    case ValueType::kInt64: return "i64";
    case ValueType::kFloat64: return "f64";
  }
  return "unknown";
}

size_t Value::array_size() const {
  if (type != ValueType::kArray) return 0;
  if (elem_type == ValueType::kString) return strings.size();
  if (elem_type == ValueType::kArray) return arrays.size();
  return numbers.size();
}

bool Value::is_integer() const { return is_integer_type(type); }
bool Value::is_float() const { return type == ValueType::kFloat32 || type == ValueType::kFloat64; }

std::string Value::to_display_string(size_t max_items) const {
  if (is_integer()) return is_signed_type(type) ? std::to_string(i64) : std::to_string(u64);
  switch (type) {
    case ValueType::kFloat32: return format_float(f64, true);
    case ValueType::kFloat64: return format_float(f64, false);
    case ValueType::kBool: return b ? "true" : "false";
    case ValueType::kString: return quote(str, kMaxDisplayStringBytes);
    case ValueType::kArray: break;
    default: return "?";
  }
  const size_t n = array_size();
  const size_t shown = n < max_items ? n : max_items;
  std::string out = "[";
  for (size_t i = 0; i < shown; ++i) {
    if (i) out += ", ";
    if (elem_type == ValueType::kString) {
      out += quote(strings[i], kMaxDisplayStringBytes);
    } else if (elem_type == ValueType::kArray) {
      out += arrays[i].to_display_string(max_items);
    } else {
      out += format_number(numbers[i], elem_type);
    }
  }
  if (shown < n) out += std::string(shown ? ", " : "") + "... (" + std::to_string(n) + " items)";
  return out + "]";
}

Value Value::make_string(std::string s) {
  Value v;
  v.type = ValueType::kString;
  v.str = std::move(s);
  return v;
}
Value Value::make_u8(uint8_t v) { return make_unsigned(ValueType::kUint8, v); }
Value Value::make_i8(int8_t v) { return make_signed(ValueType::kInt8, v); }
Value Value::make_u16(uint16_t v) { return make_unsigned(ValueType::kUint16, v); }
Value Value::make_i16(int16_t v) { return make_signed(ValueType::kInt16, v); }
Value Value::make_u32(uint32_t v) { return make_unsigned(ValueType::kUint32, v); }
Value Value::make_i32(int32_t v) { return make_signed(ValueType::kInt32, v); }
Value Value::make_u64(uint64_t v) { return make_unsigned(ValueType::kUint64, v); }
Value Value::make_i64(int64_t v) { return make_signed(ValueType::kInt64, v); }

Value Value::make_f32(float f) {
  Value v;
  v.type = ValueType::kFloat32;
  v.f64 = f;
  return v;
}

Value Value::make_f64(double f) {
  Value v;
  v.type = ValueType::kFloat64;
  v.f64 = f;
  return v;
}

Value Value::make_bool(bool b) {
  Value v;
  v.type = ValueType::kBool;
  v.b = b;
  return v;
}

Value Value::make_string_array(std::vector<std::string> s) {
  Value v;
  v.type = ValueType::kArray;
  v.elem_type = ValueType::kString;
  v.strings = std::move(s);
  return v;
}

Value Value::make_array(ValueType elem_type, std::vector<double> numbers) {
  Value v;
  v.type = ValueType::kArray;
  v.elem_type = elem_type;
  v.numbers = std::move(numbers);
  return v;
}

Value Value::make_array_of_arrays(std::vector<Value> arrays) {
  Value v;
  v.type = ValueType::kArray;
  v.elem_type = ValueType::kArray;
  v.arrays = std::move(arrays);
  return v;
}

}  // namespace fathom::gguf
