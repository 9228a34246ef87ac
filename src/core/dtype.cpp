#include "core/dtype.h"

#include <cctype>
#include <string>

#include "core/status.h"

namespace fathom {

namespace {

struct Entry {
  DType type;
  DTypeTraits traits;
};

// Block sizes/bytes follow the GGUF specification (ggml.c type_traits).
constexpr Entry kTable[] = {
    {DType::F32, {"f32", 1, 4, false}},       {DType::F16, {"f16", 1, 2, false}},
    {DType::Q4_0, {"q4_0", 32, 18, true}},    {DType::Q4_1, {"q4_1", 32, 20, true}},
    {DType::Q5_0, {"q5_0", 32, 22, true}},    {DType::Q5_1, {"q5_1", 32, 24, true}},
    {DType::Q8_0, {"q8_0", 32, 34, true}},    {DType::Q8_1, {"q8_1", 32, 36, true}},
    {DType::Q2_K, {"q2_K", 256, 84, true}},   {DType::Q3_K, {"q3_K", 256, 110, true}},
    {DType::Q4_K, {"q4_K", 256, 144, true}},  {DType::Q5_K, {"q5_K", 256, 176, true}},
    {DType::Q6_K, {"q6_K", 256, 210, true}},  {DType::Q8_K, {"q8_K", 256, 292, true}},
    {DType::I8, {"i8", 1, 1, false}},         {DType::I16, {"i16", 1, 2, false}},
    {DType::I32, {"i32", 1, 4, false}},       {DType::I64, {"i64", 1, 8, false}},
    {DType::F64, {"f64", 1, 8, false}},       {DType::BF16, {"bf16", 1, 2, false}},
    // i-quants and ternary types (block layouts in quant/blocks.h).
    {DType::IQ2_XXS, {"iq2_xxs", 256, 66, true}}, {DType::IQ2_XS, {"iq2_xs", 256, 74, true}},
    {DType::IQ2_S, {"iq2_s", 256, 82, true}},     {DType::IQ3_XXS, {"iq3_xxs", 256, 98, true}},
    {DType::IQ3_S, {"iq3_s", 256, 110, true}},    {DType::IQ1_S, {"iq1_s", 256, 50, true}},
    {DType::IQ1_M, {"iq1_m", 256, 56, true}},     {DType::IQ4_NL, {"iq4_nl", 32, 18, true}},
    {DType::IQ4_XS, {"iq4_xs", 256, 136, true}},  {DType::TQ1_0, {"tq1_0", 256, 54, true}},
    {DType::TQ2_0, {"tq2_0", 256, 66, true}},
};

}  // namespace

std::optional<DTypeTraits> dtype_traits(uint32_t type_id) {
  for (const Entry& e : kTable)
    if (static_cast<uint32_t>(e.type) == type_id) return e.traits;
  return std::nullopt;
}

const DTypeTraits& traits(DType t) {
  for (const Entry& e : kTable)
    if (e.type == t) return e.traits;
  check_failed(__FILE__, __LINE__, "known dtype", "traits() called with an unknown type id");
}

const char* dtype_name(DType t) { return traits(t).name; }

std::optional<DType> parse_dtype(std::string_view name) {
  std::string lower;
  for (char c : name) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  for (const Entry& e : kTable) {
    std::string n = e.traits.name;
    for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (n == lower) return e.type;
  }
  return std::nullopt;
}

}  // namespace fathom
