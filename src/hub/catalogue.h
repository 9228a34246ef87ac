// Model names: the short names of the DeepSeek family (a table in catalogue.cpp that users can
// extend, documented in docs/models.md) and Hugging Face repository references, resolved to
// what `fathom pull` fetches.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace fathom::hub {

struct CatalogueEntry {
  const char* name;         // "deepseek-r1:1.5b"
  const char* repo;         // "unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF"
  const char* quant;        // the default file's quantization, matched in file names: "Q4_K_M"
  const char* description;  // one line for `fathom pull --list`
};

const std::vector<CatalogueEntry>& catalogue();

// What to pull: a repository and which of its GGUF files.
struct ModelRef {
  std::string name;      // the name in the store: "deepseek-r1:1.5b", "org/repo:Q4_K_M", "org/repo"
  std::string repo;      // "org/repo"
  std::string quant;     // quantization to pick from file names ("Q4_K_M"), or "" (see file)
  std::string file;      // an exact .gguf path in the repository, or ""
};

// Accepts a catalogue name, ORG/REPO, ORG/REPO:QUANT or ORG/REPO:PATH.gguf (optionally written
// hf.co/ORG/REPO...). Errors name what was wrong and list the catalogue for unknown names.
Expected<ModelRef> parse_model_ref(const std::string& text);

// Limits on names taken from the command line and from repository listings.
inline constexpr size_t kMaxRepoPart = 96;   // bytes of ORG and of REPO (Hugging Face's limit)
inline constexpr size_t kMaxRepoPath = 512;  // bytes of a file path inside a repository

// A repository file path that is safe to fetch and to name a local file after: relative, no
// "." or ".." component, printable ASCII without backslashes, at most kMaxRepoPath bytes.
bool is_safe_repo_path(const std::string& path);

}  // namespace fathom::hub
