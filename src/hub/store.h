// The model store: one directory per pulled model under a root (FATHOM_MODELS, else
// $XDG_CACHE_HOME/fathom/models, else ~/.cache/fathom/models), holding the model's files and a
// manifest.json. A model exists in the store once its manifest is written, which pull does
// last, after every file is verified: a directory without one is a pull in progress (its
// *.partial files are resumed by the next pull).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace fathom::hub {

struct ManifestFile {
  std::string name;       // file name in the model's directory ("m-00001-of-00003.gguf")
  std::string repo_path;  // path in the source repository
  uint64_t size = 0;      // bytes
  std::string sha256;     // 64 hex digits (verified at pull)
};

struct Manifest {
  std::string name;       // "deepseek-r1:1.5b"
  std::string repo;       // "unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF"
  std::string revision;   // the commit the files came from, or the branch when none was reported
  std::string quant;      // "Q4_K_M", or "" when the file name names none
  std::string endpoint;   // where it was pulled from
  int64_t pulled_at = 0;  // seconds since the epoch (UTC)
  std::vector<ManifestFile> files;  // a single file, or the parts of a split model in order
  uint64_t total_size() const;
};

// The root from the environment values (nullptr or "" when unset): fathom_models, else
// xdg_cache_home/fathom/models, else home/.cache/fathom/models. An error when all are unset.
Expected<std::string> store_root(const char* fathom_models, const char* xdg_cache_home, const char* home);

class ModelStore {
 public:
  explicit ModelStore(std::string root) : root_(std::move(root)) {}
  const std::string& root() const { return root_; }

  // The directory of a model name (its characters outside [A-Za-z0-9._-] percent-encoded, so
  // "org/repo:Q4_K_M" is one directory level).
  std::string model_dir(const std::string& name) const;
  // Every model with a manifest, sorted by name. A malformed manifest is an error naming it.
  Expected<std::vector<Manifest>> list() const;
  // The manifest of a pulled model, nullopt when the name is not in the store.
  Expected<std::optional<Manifest>> find(const std::string& name) const;
  // The path to load: the model's first file.
  std::string model_path(const Manifest& m) const;
  // Writes the manifest (atomically: a temporary file renamed over it).
  Status install(const Manifest& m) const;
  // Deletes the model's directory, files and manifest (a pull in progress too). kNotFound when
  // there is neither.
  Status remove(const std::string& name) const;

 private:
  std::string root_;  // directory holding one subdirectory per model
};

}  // namespace fathom::hub
