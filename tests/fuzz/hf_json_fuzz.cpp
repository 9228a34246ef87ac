// Hugging Face tokenizer loading: input = tokenizer.json text, optionally followed by a NUL byte
// and tokenizer_config.json text. A loaded tokenizer must also encode and decode.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* text = reinterpret_cast<const char*>(data);
  const void* nul = std::memchr(text, '\0', size);
  const size_t json_size = nul ? static_cast<size_t>(static_cast<const char*>(nul) - text) : size;
  const std::string tokenizer_json(text, json_size);
  const std::string config_json = nul ? std::string(text + json_size + 1, text + size) : std::string();
  auto tok = fathom::Tokenizer::from_hf_json_text(tokenizer_json, "fuzz/tokenizer.json", config_json,
                                                  "fuzz/tokenizer_config.json");
  if (!tok) return 0;
  for (bool parse_special : {true, false}) {
    const std::vector<int32_t> ids = (*tok)->encode("ab a<s> \xF0\x9F\x98\x80 12 \xff", true, parse_special);
    (void)(*tok)->decode(ids, true);
  }
  return 0;
}
