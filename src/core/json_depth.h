// Nesting depth of JSON text, measured before parsing. nlohmann::json parses iteratively, but
// dump(), copies, comparisons and our own tree walks recurse once per level, so a document
// nested 200,000 deep parses fine and then overflows the stack. Every JSON that arrives from
// outside (request bodies, tokenizer.json, safetensors headers) is measured against a limit
// first.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace fathom {

// Arrays and objects nested in a JSON file we load (tokenizer.json, tokenizer_config.json,
// config.json, safetensors headers). Published files nest under 10 deep; the tokenizer loader
// walks pre-tokenizer Sequences recursively, so the limit bounds that recursion too.
inline constexpr int kMaxFileJsonDepth = 128;

// Byte offset of the first '[' or '{' that opens level max_depth + 1, or nullopt when the text
// stays within max_depth levels. Brackets inside strings do not count. Exact for valid JSON; for
// invalid JSON the parser rejects the text anyway.
std::optional<size_t> json_depth_exceeded_at(std::string_view text, int max_depth);

}  // namespace fathom
