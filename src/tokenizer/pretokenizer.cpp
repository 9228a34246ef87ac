#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace fathom {

namespace {

// Patterns as published in each model's tokenizer.json (the Split pre-tokenizers), in order.
// deepseek-llm spells its letter class out as explicit ranges (the cased letters) rather than
// \p{L}; they are written as code points because several endpoints (U+1F7D, U+1FBE, U+1FD3,
// U+1FDB, U+2126, U+212A) have NFC equivalents that an editor or copy may silently substitute,
// which breaks the ranges.
const char* const kDeepseekLlm[] = {
    "[\r\n]",
    "\\s?["
    "A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"
    "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}"
    "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}"
    "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"
    "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"
    "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"
    "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}"
    "\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}"
    "\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}"
    "\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"
    "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}"
    "\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}"
    "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}"
    "\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
    "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"
    "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"
    "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"
    "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}"
    "]+",
    "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
    "\\s+$",
    "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
    "\\p{N}+",
};
const char* const kDeepseekCoder[] = {
    "[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}",
};
const char* const kDeepseekV3[] = {
    "\\p{N}{1,3}",
    "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
};
const char* const kQwen2[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
const char* const kGpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

template <size_t N>
std::vector<std::string> to_vector(const char* const (&patterns)[N]) {
  return std::vector<std::string>(patterns, patterns + N);
}

// JIT stack sizes: the default 32 KiB suffices for ordinary text; a pathological input (a
// megabyte of one character class) retries once with the large stack.
constexpr size_t kJitStackStart = 32 * 1024;
constexpr size_t kJitStackMax = 64 * 1024 * 1024;

}  // namespace

struct RegexSplitter::Impl {
  std::vector<pcre2_code*> codes;  // one compiled pattern per pass, owned
  ~Impl() {
    for (pcre2_code* code : codes) pcre2_code_free(code);
  }
};

RegexSplitter::RegexSplitter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RegexSplitter::~RegexSplitter() = default;
size_t RegexSplitter::n_patterns() const { return impl_->codes.size(); }

Expected<std::unique_ptr<RegexSplitter>> RegexSplitter::compile(const std::vector<std::string>& patterns) {
  auto impl = std::make_unique<Impl>();
  for (const std::string& pattern : patterns) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    // MATCH_INVALID_UTF: user text may be malformed; such bytes must not abort the split.
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error_code,
                                     &error_offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof(message));
      return error(ErrorCode::kInvalidArgument,
                   strprintf("pre-tokenizer regex does not compile at offset %zu: %s (pattern: %s)",
                             static_cast<size_t>(error_offset), reinterpret_cast<const char*>(message),
                             pattern.c_str()));
    }
    // JIT is an optimization only: when unavailable, pcre2_match interprets.
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    impl->codes.push_back(code);
  }
  return std::unique_ptr<RegexSplitter>(new RegexSplitter(std::move(impl)));
}

namespace {

// Per-call PCRE2 state, so that one compiled splitter serves many threads.
class MatchState {
 public:
  MatchState() : data_(pcre2_match_data_create(1, nullptr)), context_(pcre2_match_context_create(nullptr)) {}
  ~MatchState() {
    if (stack_) pcre2_jit_stack_free(stack_);
    pcre2_match_context_free(context_);
    pcre2_match_data_free(data_);
  }
  MatchState(const MatchState&) = delete;
  MatchState& operator=(const MatchState&) = delete;

  // Finds the next match of code in subject at or after start; false when none.
  bool next(const pcre2_code* code, std::string_view subject, size_t start, size_t* match_begin,
            size_t* match_end) {
    for (;;) {
      const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), start, 0,
                                 data_, context_);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !stack_) {
        stack_ = pcre2_jit_stack_create(kJitStackStart, kJitStackMax, nullptr);
        pcre2_jit_stack_assign(context_, nullptr, stack_);
        continue;
      }
      if (rc < 0) return false;  // no match, or a resource limit: the rest stays one piece
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data_);
      *match_begin = ovector[0];
      *match_end = ovector[1];
      return true;
    }
  }

 private:
  pcre2_match_data* data_;           // ovector of the last match
  pcre2_match_context* context_;     // carries the JIT stack once one is needed
  pcre2_jit_stack* stack_ = nullptr;  // large JIT stack, made on first stack overflow
};

}  // namespace

void RegexSplitter::split(std::string_view text, std::vector<TextSpan>* pieces) const {
  pieces->clear();
  if (text.empty()) return;
  pieces->push_back({0, text.size()});
  MatchState state;
  std::vector<TextSpan> next;
  for (const pcre2_code* code : impl_->codes) {
    next.clear();
    for (const TextSpan& piece : *pieces) {
      const std::string_view subject = text.substr(piece.offset, piece.length);
      size_t pos = 0;  // end of the last emitted piece, relative to subject
      size_t search = 0;
      size_t begin = 0, end = 0;
      while (search <= subject.size() && state.next(code, subject, search, &begin, &end)) {
        if (end == begin) {
          // An empty match splits nothing; step over one character to avoid looping.
          search = end + 1;
          while (search < subject.size() && (static_cast<uint8_t>(subject[search]) & 0xC0) == 0x80) ++search;
          continue;
        }
        if (begin > pos) next.push_back({piece.offset + pos, begin - pos});
        next.push_back({piece.offset + begin, end - begin});
        pos = search = end;
      }
      if (pos < subject.size()) next.push_back({piece.offset + pos, subject.size() - pos});
    }
    pieces->swap(next);
  }
}

Expected<std::vector<std::string>> pre_tokenizer_patterns(std::string_view name) {
  if (name == "deepseek-llm") return to_vector(kDeepseekLlm);
  if (name == "deepseek-coder") return to_vector(kDeepseekCoder);
  if (name == "deepseek-v3") return to_vector(kDeepseekV3);
  if (name == "qwen2" || name == "deepseek-r1-qwen") return to_vector(kQwen2);
  if (name == "default" || name == "gpt2" || name == "gpt-2") return std::vector<std::string>{kGpt2};
  return error(ErrorCode::kUnsupported, strprintf("unknown pre-tokenizer '%.*s' (supported: %s)",
                                                  static_cast<int>(name.size()), name.data(),
                                                  supported_pre_tokenizers().c_str()));
}

std::string supported_pre_tokenizers() {
  return "deepseek-llm, deepseek-coder, deepseek-v3, qwen2, deepseek-r1-qwen, default, gpt2";
}

const char* gpt2_pattern() { return kGpt2; }

}  // namespace fathom
