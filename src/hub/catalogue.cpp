#include "hub/catalogue.h"

#include <algorithm>
#include <cctype>

namespace fathom::hub {

const std::vector<CatalogueEntry>& catalogue() {
  // Public GGUF repositories on Hugging Face. Add a row to name another model; docs/models.md
  // lists the same table. The quantization picks the default file (Q4_K_M: the usual size and
  // quality trade-off); `fathom pull REPO:QUANT` takes any other.
  static const std::vector<CatalogueEntry> kEntries = {
      {"deepseek-r1:1.5b", "unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF", "Q4_K_M", "R1 distilled into Qwen2.5-Math-1.5B"},
      {"deepseek-r1:7b", "unsloth/DeepSeek-R1-Distill-Qwen-7B-GGUF", "Q4_K_M", "R1 distilled into Qwen2.5-Math-7B"},
      {"deepseek-r1:8b", "unsloth/DeepSeek-R1-Distill-Llama-8B-GGUF", "Q4_K_M", "R1 distilled into Llama-3.1-8B"},
      {"deepseek-r1:14b", "unsloth/DeepSeek-R1-Distill-Qwen-14B-GGUF", "Q4_K_M", "R1 distilled into Qwen2.5-14B"},
      {"deepseek-r1:32b", "unsloth/DeepSeek-R1-Distill-Qwen-32B-GGUF", "Q4_K_M", "R1 distilled into Qwen2.5-32B"},
      {"deepseek-r1:70b", "unsloth/DeepSeek-R1-Distill-Llama-70B-GGUF", "Q4_K_M", "R1 distilled into Llama-3.3-70B"},
      {"deepseek-r1:671b", "unsloth/DeepSeek-R1-GGUF", "Q4_K_M", "DeepSeek-R1, 671B MoE (multi-part, ~400 GB)"},
      {"deepseek-v3", "unsloth/DeepSeek-V3-GGUF", "Q4_K_M", "DeepSeek-V3, 671B MoE (multi-part, ~400 GB)"},
      {"deepseek-coder-v2-lite", "bartowski/DeepSeek-Coder-V2-Lite-Instruct-GGUF", "Q4_K_M",
       "DeepSeek-Coder-V2-Lite-Instruct, 16B MoE with MLA"},
      {"deepseek-llm:7b", "TheBloke/deepseek-llm-7B-chat-GGUF", "Q4_K_M", "DeepSeek LLM 7B chat (llama layout)"},
      {"deepseek-coder:6.7b", "TheBloke/deepseek-coder-6.7B-instruct-GGUF", "Q4_K_M", "DeepSeek Coder 6.7B instruct"},
  };
  return kEntries;
}

namespace {

bool is_repo_part(const std::string& s) {
  if (s.empty() || s.size() > kMaxRepoPart || s == "." || s == ".." || s.front() == '-' || s.front() == '.')
    return false;
  return std::all_of(s.begin(), s.end(),
                     [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_' || c == '.'; });
}

bool is_quant_name(const std::string& s) {
  return !s.empty() && s.size() <= 32 &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '-'; });
}

bool ends_with_gguf(const std::string& s) {
  if (s.size() < 5) return false;
  std::string tail = s.substr(s.size() - 5);
  std::transform(tail.begin(), tail.end(), tail.begin(), [](unsigned char c) { return std::tolower(c); });
  return tail == ".gguf";
}

std::string catalogue_names() {
  std::string names;
  for (const CatalogueEntry& e : catalogue()) names += std::string(names.empty() ? "" : ", ") + e.name;
  return names;
}

}  // namespace

bool is_safe_repo_path(const std::string& path) {
  if (path.empty() || path.size() > kMaxRepoPath || path.front() == '/') return false;
  for (unsigned char c : path)
    if (c < 0x20 || c > 0x7e || c == '\\') return false;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    const std::string part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

Expected<ModelRef> parse_model_ref(const std::string& text) {
  for (const CatalogueEntry& e : catalogue())
    if (text == e.name) return ModelRef{e.name, e.repo, e.quant, ""};
  std::string ref = text;
  for (const char* prefix : {"hf.co/", "huggingface.co/", "https://huggingface.co/"})
    if (ref.rfind(prefix, 0) == 0) ref = ref.substr(std::string(prefix).size());
  const size_t slash = ref.find('/');
  if (slash == std::string::npos)
    return error(ErrorCode::kNotFound,
                 strprintf("unknown model '%s': not in the catalogue (%s); name a Hugging Face repository as "
                           "ORG/REPO[:QUANT|:FILE.gguf]",
                           text.c_str(), catalogue_names().c_str()));
  const size_t colon = ref.find(':', slash);
  const std::string org = ref.substr(0, slash);
  const std::string repo = ref.substr(slash + 1, colon == std::string::npos ? std::string::npos : colon - slash - 1);
  if (!is_repo_part(org) || !is_repo_part(repo))
    return error(ErrorCode::kInvalidArgument,
                 strprintf("'%s' is not a repository name: expected ORG/REPO with letters, digits, '-', '_' and '.' "
                           "(at most %zu each)",
                           text.c_str(), kMaxRepoPart));
  ModelRef out;
  out.repo = org + "/" + repo;
  out.name = out.repo;
  if (colon == std::string::npos) return out;
  const std::string tag = ref.substr(colon + 1);
  if (ends_with_gguf(tag)) {
    if (!is_safe_repo_path(tag))
      return error(ErrorCode::kInvalidArgument, strprintf("'%s' is not a file path inside a repository", tag.c_str()));
    out.file = tag;
  } else if (is_quant_name(tag)) {
    out.quant = tag;
  } else {
    return error(ErrorCode::kInvalidArgument,
                 strprintf("'%s': after ':' give a quantization (Q4_K_M, Q8_0, ...) or a file ending in .gguf",
                           text.c_str()));
  }
  out.name = out.repo + ":" + tag;
  return out;
}

}  // namespace fathom::hub
