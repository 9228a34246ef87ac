// `fathom pull`: fetches a model's GGUF file(s) from a Hugging Face repository (or a mirror
// speaking the same API) into the model store, the way huggingface_hub does it:
//   GET {endpoint}/api/models/{repo}?blobs=true  -> commit sha, files with sizes and LFS sha256
//   GET {endpoint}/{repo}/resolve/{commit}/{file} -> redirects to the bytes (Range to resume)
// Each file is written to NAME.partial in the model's directory, resumed from its length by the
// next pull after an interruption, checked against the repository's sha256 and size, and only
// then renamed; the manifest is written after the last file, so a model is either complete in
// the store or absent.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "hub/catalogue.h"
#include "hub/store.h"

namespace fathom::hub {

inline constexpr char kDefaultEndpoint[] = "https://huggingface.co";
inline constexpr uint64_t kMaxFileBytes = 1ull << 41;  // 2 TiB: larger sizes in a listing are refused
inline constexpr size_t kMaxModelInfoBytes = 32 << 20;  // the /api/models answer

// One file of a repository listing.
struct RepoFile {
  std::string path;    // "DeepSeek-R1-Q4_K_M/DeepSeek-R1-Q4_K_M-00001-of-00009.gguf"
  uint64_t size = 0;   // bytes
  std::string sha256;  // the LFS object id, "" for a file not in LFS
};

struct RepoInfo {
  std::string revision;         // commit sha (40 hex digits) or "main" when none was given
  std::vector<RepoFile> files;  // siblings, in listing order
};

// Parses an /api/models/{repo}?blobs=true answer. Errors name the field that is missing or
// out of bounds.
Expected<RepoInfo> parse_repo_info(const std::string& json);

// The files of `ref` among a repository's files: an exact FILE; else the .gguf files whose
// name carries the quantization as a token (Q4_K_M in "x-Q4_K_M.gguf" or "Q4_K_M/x-00001-of-00002.gguf");
// else the repository's only model, or its Q4_K_M. The parts of a split model are returned
// together, in order, and must all be present. An ambiguous or empty choice is an error that
// lists the quantizations the repository has.
Expected<std::vector<RepoFile>> select_files(const std::vector<RepoFile>& files, const ModelRef& ref);

struct PullProgress {
  std::string file;         // file name being fetched
  size_t file_index = 0;    // 0-based
  size_t n_files = 0;
  uint64_t done = 0;        // bytes of this file present (resumed ones included)
  uint64_t total = 0;       // bytes of this file
  uint64_t resumed_at = 0;  // bytes that were already on disk when this transfer began
  std::string sha256;       // the file's LFS sha256 from the listing, "" when none
};

struct PullOptions {
  std::string endpoint = kDefaultEndpoint;  // no trailing slash needed
  std::string token;                        // Hugging Face token, "" for none
  long stall_timeout_s = 60;                // a transfer without data this long is interrupted
  std::function<void(const PullProgress&)> on_progress;  // called as bytes arrive
  std::function<void(const std::string&)> on_message;    // one line per step ("verifying ...")
  // Polled during the pull (about once a second and as data arrives); returning true stops it
  // with kCancelled, keeping what was fetched in the .partial file for a later pull to resume.
  std::function<bool()> cancelled;
};

struct PullResult {
  Manifest manifest;
  uint64_t bytes_fetched = 0;     // bytes transferred by this pull
  uint64_t bytes_resumed = 0;     // bytes of .partial files kept from an earlier pull
  bool already_present = false;   // the store had the same files; nothing was fetched
};

// An endpoint is an http:// or https:// URL.
Status check_endpoint(const std::string& endpoint);

Expected<PullResult> pull_model(const ModelRef& ref, const ModelStore& store, const PullOptions& options);

}  // namespace fathom::hub
