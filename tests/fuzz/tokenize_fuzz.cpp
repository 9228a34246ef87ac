// Encoding arbitrary bytes with real vocabularies: byte-level BPE (qwen2, deepseek-llm) and the
// SentencePiece vocabulary of the stories-260k model, loaded once. qwen2 must give back the input
// exactly when it decodes what it encoded. deepseek-llm cannot: its user-defined tokens 100002..
// 100014 ("ø", "ÿ", ...) double as the byte-level symbols of bytes such as 0xFF, so one id stands
// for both the raw byte and the character's UTF-8 (llama.cpp decodes them the same way).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace {

struct Vocabs {
  std::unique_ptr<fathom::Tokenizer> round_trip;  // qwen2: decode(encode(x)) == x for any bytes
  std::unique_ptr<fathom::Tokenizer> ambiguous;   // deepseek-llm, see above
  std::unique_ptr<fathom::Tokenizer> spm;         // adds a prefix space
};

std::unique_ptr<fathom::Tokenizer> load(const std::string& relative) {
  auto t = fathom::Tokenizer::from_file(std::string(FATHOM_SHARED_DIR) + "/" + relative);
  if (!t) {
    std::fprintf(stderr, "cannot load %s: %s\n", relative.c_str(), t.status().to_string().c_str());
    __builtin_trap();
  }
  return std::move(t).value();
}

const Vocabs& vocabs() {
  static const Vocabs v = [] {
    Vocabs out;
    out.round_trip = load("testdata/vocab/ggml-vocab-qwen2.gguf");
    out.ambiguous = load("testdata/vocab/ggml-vocab-deepseek-llm.gguf");
    out.spm = load("models/tinyllamas-stories-260k-f32.gguf");
    return out;
  }();
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)vocabs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const fathom::Tokenizer& qwen2 = *vocabs().round_trip;
  if (qwen2.decode(qwen2.encode(text, false, false), true) != text) {
    std::fprintf(stderr, "qwen2 round trip changed the text\n");
    __builtin_trap();
  }
  (void)qwen2.encode(text, true, true);
  for (const auto* tok : {vocabs().ambiguous.get(), vocabs().spm.get()}) {
    for (bool parse_special : {false, true}) (void)tok->decode(tok->encode(text, true, parse_special), false);
  }
  return 0;
}
