#include "hub/pull.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>

#include "gguf/gguf.h"
#include "hub/http.h"
#include "hub/sha256.h"

namespace fathom::hub {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxRepoFiles = 100000;  // siblings accepted in a listing
constexpr char kFallbackQuant[] = "Q4_K_M";

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool is_gguf(const std::string& path) { return path.size() > 5 && lower(path.substr(path.size() - 5)) == ".gguf"; }

std::string base_name(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool is_hex_digest(const std::string& s, size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isxdigit(c); });
}

// The quantization a GGUF file name carries ("Q4_K_M", "IQ2_XXS", "Q8_0", "BF16"), or "".
std::string quant_of(const std::string& path) {
  static const std::regex kQuant("(?:^|[-._/])(I?Q[0-9]_[A-Z0-9_]*[A-Z0-9]|BF16|F16|F32)(?=[-./]|$)", std::regex::icase);
  std::smatch m;
  const std::string name = base_name(path);
  return std::regex_search(name, m, kQuant) ? m[1].str() : "";
}

// True when `token` occurs in `path` between separators (start, end, '-', '.', '_', '/').
bool has_token(const std::string& path, const std::string& token) {
  const std::string p = lower(path), t = lower(token);
  auto is_sep = [](char c) { return c == '-' || c == '.' || c == '_' || c == '/'; };
  for (size_t at = p.find(t); at != std::string::npos; at = p.find(t, at + 1)) {
    const bool start_ok = at == 0 || is_sep(p[at - 1]);
    const size_t end = at + t.size();
    const bool end_ok = end == p.size() || p[end] == '-' || p[end] == '.' || p[end] == '/';
    if (start_ok && end_ok) return true;
  }
  return false;
}

// Files grouped into models: a split model's parts under its prefix, other files alone.
std::map<std::string, std::vector<RepoFile>> group_models(const std::vector<RepoFile>& files) {
  std::map<std::string, std::vector<RepoFile>> groups;
  for (const RepoFile& f : files) {
    const std::optional<gguf::SplitName> split = gguf::parse_split_path(f.path);
    groups[split ? strprintf("%s (%d parts)", split->prefix.c_str(), split->split_count) : f.path].push_back(f);
  }
  return groups;
}

std::string quant_list(const std::vector<RepoFile>& ggufs) {
  std::set<std::string> quants;
  for (const RepoFile& f : ggufs)
    if (std::string q = quant_of(f.path); !q.empty()) quants.insert(q);
  std::string out;
  for (const std::string& q : quants) out += (out.empty() ? "" : ", ") + q;
  return out.empty() ? "none named in the file names" : out;
}

// The parts of a split model in order, checked complete; a single file as is.
Expected<std::vector<RepoFile>> complete_model(std::vector<RepoFile> group, const std::string& repo) {
  const std::optional<gguf::SplitName> split = gguf::parse_split_path(group.front().path);
  if (!split) return group;
  std::sort(group.begin(), group.end(), [](const RepoFile& a, const RepoFile& b) { return a.path < b.path; });
  for (int i = 0; i < split->split_count; ++i) {
    const std::string want = gguf::split_path(split->prefix, i, split->split_count);
    if (static_cast<size_t>(i) >= group.size() || group[i].path != want)
      return error(ErrorCode::kInvalidFile, strprintf("%s: part %s of the split model is missing", repo.c_str(), want.c_str()));
  }
  if (group.size() != static_cast<size_t>(split->split_count))
    return error(ErrorCode::kInvalidFile, strprintf("%s: %s has parts beyond its count", repo.c_str(), split->prefix.c_str()));
  return group;
}

}  // namespace

Expected<RepoInfo> parse_repo_info(const std::string& json) {
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return error(ErrorCode::kInvalidFile, "the model listing is not a JSON object");
  RepoInfo info;
  info.revision = "main";
  if (auto it = j.find("sha"); it != j.end() && it->is_string() && is_hex_digest(it->get<std::string>(), 40))
    info.revision = it->get<std::string>();
  const auto siblings = j.find("siblings");
  if (siblings == j.end() || !siblings->is_array())
    return error(ErrorCode::kInvalidFile, "the model listing has no 'siblings' list of files");
  if (siblings->size() > kMaxRepoFiles)
    return error(ErrorCode::kInvalidFile, strprintf("the model listing has %zu files (at most %zu)", siblings->size(), kMaxRepoFiles));
  for (const nlohmann::json& s : *siblings) {
    if (!s.is_object() || !s.contains("rfilename") || !s["rfilename"].is_string())
      return error(ErrorCode::kInvalidFile, "a file in the model listing has no 'rfilename'");
    RepoFile f;
    f.path = s["rfilename"].get<std::string>();
    if (!is_gguf(f.path)) continue;  // only model files need sizes and digests
    if (!is_safe_repo_path(f.path))
      return error(ErrorCode::kInvalidFile, strprintf("the listing names an unsafe path '%s'", f.path.c_str()));
    if (!s.contains("size") || !s["size"].is_number_unsigned())
      return error(ErrorCode::kInvalidFile,
                   strprintf("the listing gives no size for %s (the endpoint does not answer ?blobs=true)", f.path.c_str()));
    f.size = s["size"].get<uint64_t>();
    if (f.size > kMaxFileBytes)
      return error(ErrorCode::kInvalidFile, strprintf("%s: size %llu is past the 2 TiB limit", f.path.c_str(),
                                                      static_cast<unsigned long long>(f.size)));
    if (auto lfs = s.find("lfs"); lfs != s.end() && lfs->is_object()) {
      const std::string sha = lfs->value("sha256", "");
      if (!is_hex_digest(sha, 64)) return error(ErrorCode::kInvalidFile, strprintf("%s: bad LFS sha256 '%s'", f.path.c_str(), sha.c_str()));
      f.sha256 = lower(sha);
    }
    info.files.push_back(std::move(f));
  }
  return info;
}

Expected<std::vector<RepoFile>> select_files(const std::vector<RepoFile>& files, const ModelRef& ref) {
  std::vector<RepoFile> ggufs;
  for (const RepoFile& f : files)
    if (is_gguf(f.path)) ggufs.push_back(f);
  if (ggufs.empty()) return error(ErrorCode::kNotFound, strprintf("%s has no .gguf files", ref.repo.c_str()));
  if (!ref.file.empty()) {
    const std::optional<gguf::SplitName> split = gguf::parse_split_path(ref.file);
    std::vector<RepoFile> group;
    for (const RepoFile& f : ggufs) {
      const std::optional<gguf::SplitName> s = gguf::parse_split_path(f.path);
      const bool same_model = split && s && s->prefix == split->prefix && s->split_count == split->split_count;
      if (f.path == ref.file || same_model) group.push_back(f);
    }
    if (group.empty())
      return error(ErrorCode::kNotFound, strprintf("%s has no file %s (quantizations: %s)", ref.repo.c_str(), ref.file.c_str(),
                                                   quant_list(ggufs).c_str()));
    return complete_model(std::move(group), ref.repo);
  }
  std::map<std::string, std::vector<RepoFile>> groups = group_models(ggufs);
  if (ref.quant.empty() && groups.size() == 1) return complete_model(groups.begin()->second, ref.repo);
  const std::string quant = ref.quant.empty() ? kFallbackQuant : ref.quant;
  std::vector<RepoFile> matching;
  for (const RepoFile& f : ggufs)
    if (has_token(f.path, quant)) matching.push_back(f);
  groups = group_models(matching);
  if (groups.empty())
    return error(ErrorCode::kNotFound, strprintf("%s has no %s file; its quantizations: %s (pull %s:QUANT)", ref.repo.c_str(),
                                                 quant.c_str(), quant_list(ggufs).c_str(), ref.repo.c_str()));
  if (groups.size() > 1) {
    std::string names;
    for (const auto& [name, group] : groups) names += "\n  " + ref.repo + ":" + group.front().path;
    return error(ErrorCode::kInvalidArgument,
                 strprintf("%s has %zu %s models; name one file:%s", ref.repo.c_str(), groups.size(), quant.c_str(), names.c_str()));
  }
  return complete_model(groups.begin()->second, ref.repo);
}

namespace {

// The error for a non-2xx answer, with Hugging Face's own explanation when it sends one.
Status http_error(const HttpResponse& r, const std::string& what, const ModelRef& ref, const PullOptions& o) {
  std::string detail;
  if (auto it = r.headers.find("x-error-message"); it != r.headers.end()) detail = " (" + it->second + ")";
  if (r.status == 401 || r.status == 403)
    return error(ErrorCode::kInvalidArgument,
                 strprintf("%ld %s for %s at %s%s: %s", r.status, r.status == 401 ? "Unauthorized" : "Forbidden", what.c_str(),
                           o.endpoint.c_str(), detail.c_str(),
                           o.token.empty() ? "the repository is gated or private (or does not exist); set HF_TOKEN to a "
                                             "Hugging Face access token that can read it and accept the model's terms on its page"
                                           : "the token in HF_TOKEN is not allowed to read it (accept the model's terms on its "
                                             "page, or use a token with read access)"));
  if (r.status == 404)
    return error(ErrorCode::kNotFound, strprintf("404 Not Found: %s at %s%s; check the name (fathom pull --help lists the "
                                                 "catalogue)",
                                                 what.c_str(), o.endpoint.c_str(), detail.c_str()));
  return error(ErrorCode::kUnavailable,
               strprintf("HTTP %ld for %s at %s%s", r.status, what.c_str(), o.endpoint.c_str(), detail.c_str()));
}

uint64_t file_size_or_zero(const std::string& path) {
  std::error_code ec;
  const uint64_t n = fs::file_size(path, ec);
  return ec ? 0 : n;
}

std::string human_size(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return u == 0 ? strprintf("%llu B", static_cast<unsigned long long>(bytes)) : strprintf("%.1f %s", v, units[u]);
}

// One file's transfer into its .partial file.
class FileDownload {
 public:
  FileDownload(const HttpClient& client, const ModelRef& ref, const PullOptions& options, const RepoFile& file,
               std::string partial, PullProgress progress)
      : client_(client), ref_(ref), options_(options), file_(file), partial_(std::move(partial)), progress_(std::move(progress)) {}

  // Fetches what the .partial file lacks and returns the verified sha256 digest.
  Expected<std::string> run(const std::string& url, uint64_t* fetched, uint64_t* resumed) {
    uint64_t offset = file_size_or_zero(partial_);
    if (offset > file_.size) {  // not this file: start over
      std::remove(partial_.c_str());
      offset = 0;
    }
    if (offset > 0) FATHOM_RETURN_IF_ERROR(hash_file_prefix(partial_, offset, hasher_));
    *resumed += offset;
    progress_.done = progress_.resumed_at = offset;
    if (offset > 0 && options_.on_message)
      options_.on_message(strprintf("resuming %s at %s of %s", progress_.file.c_str(), human_size(offset).c_str(),
                                    human_size(file_.size).c_str()));
    if (offset < file_.size) FATHOM_RETURN_IF_ERROR(transfer(url, offset, fetched));
    if (file_.size == 0) FATHOM_RETURN_IF_ERROR(create_empty());
    const std::string digest = hasher_.hex_digest();
    if (!file_.sha256.empty() && digest != file_.sha256) {
      std::remove(partial_.c_str());
      return error(ErrorCode::kInvalidFile,
                   strprintf("sha256 mismatch for %s: expected %s, got %s; the download is corrupt and was deleted, "
                             "run `fathom pull %s` again",
                             file_.path.c_str(), file_.sha256.c_str(), digest.c_str(), ref_.name.c_str()));
    }
    return digest;
  }

 private:
  Status create_empty() {
    std::FILE* f = std::fopen(partial_.c_str(), "wb");
    if (!f || std::fclose(f) != 0) return error(ErrorCode::kIo, strprintf("cannot create '%s'", partial_.c_str()));
    return Status::ok();
  }

  Status interrupted(const std::string& why) const {
    return error(ErrorCode::kIo, strprintf("download of %s interrupted after %llu of %llu bytes (%s); run `fathom pull %s` "
                                           "again to resume",
                                           file_.path.c_str(), static_cast<unsigned long long>(progress_.done),
                                           static_cast<unsigned long long>(file_.size), why.c_str(), ref_.name.c_str()));
  }

  // A 206 must continue exactly where the .partial file ends.
  Status check_range(const HttpResponse& head, uint64_t offset) const {
    const auto it = head.headers.find("content-range");
    unsigned long long start = 0, end = 0, total = 0;
    if (it == head.headers.end() || std::sscanf(it->second.c_str(), "bytes %llu-%llu/%llu", &start, &end, &total) != 3 ||
        start != offset || total != file_.size)
      return error(ErrorCode::kInvalidFile,
                   strprintf("%s: the server answered the range request from byte %llu with Content-Range '%s' (expected "
                             "bytes %llu-%llu/%llu)",
                             file_.path.c_str(), static_cast<unsigned long long>(offset),
                             it == head.headers.end() ? "" : it->second.c_str(), static_cast<unsigned long long>(offset),
                             static_cast<unsigned long long>(file_.size - 1), static_cast<unsigned long long>(file_.size)));
    return Status::ok();
  }

  Status transfer(const std::string& url, uint64_t offset, uint64_t* fetched) {
    std::FILE* out = std::fopen(partial_.c_str(), "ab");
    if (!out) return error(ErrorCode::kIo, strprintf("cannot write '%s': %s", partial_.c_str(), std::strerror(errno)));
    Status sink_error;
    auto on_start = [&](const HttpResponse& head) -> Status {
      if (head.status == 206) return check_range(head, offset);
      if (offset > 0) {  // the server sent the whole file instead of the rest
        if (ftruncate(fileno(out), 0) != 0) return error(ErrorCode::kIo, "cannot truncate " + partial_);
        hasher_.reset();
        progress_.done = progress_.resumed_at = 0;
      }
      return Status::ok();
    };
    auto sink = [&](const char* data, size_t n) {
      if (progress_.done + n > file_.size) {
        sink_error = error(ErrorCode::kInvalidFile, strprintf("%s: the server sent more than the %llu bytes the listing gives",
                                                              file_.path.c_str(), static_cast<unsigned long long>(file_.size)));
        return false;
      }
      if (std::fwrite(data, 1, n, out) != n) {
        sink_error = write_error();
        return false;
      }
      hasher_.update(data, n);
      progress_.done += n;
      *fetched += n;
      if (options_.on_progress) options_.on_progress(progress_);
      return true;
    };
    Expected<HttpResponse> r = client_.download(url, offset, on_start, sink, options_.stall_timeout_s, options_.cancelled);
    const bool flushed = std::fflush(out) == 0;
    if (!flushed && sink_error) sink_error = write_error();
    std::fclose(out);
    if (!sink_error) {
      if (sink_error.code() == ErrorCode::kInvalidFile) std::remove(partial_.c_str());
      return sink_error;
    }
    if (!r) {
      if (r.status().code() == ErrorCode::kInvalidFile) std::remove(partial_.c_str());
      return r.status().code() == ErrorCode::kIo || r.status().code() == ErrorCode::kUnavailable
                 ? interrupted(r.status().message())
                 : r.status();
    }
    if (r->status == 416) {  // the range is past the file: it changed upstream
      std::remove(partial_.c_str());
      return error(ErrorCode::kIo, strprintf("%s changed on the server (416 for a resumed range); the partial download "
                                             "was deleted, run `fathom pull %s` again",
                                             file_.path.c_str(), ref_.name.c_str()));
    }
    if (r->status < 200 || r->status >= 300) return http_error(*r, file_.path + " in " + ref_.repo, ref_, options_);
    if (progress_.done != file_.size) return interrupted("the connection closed early");
    return Status::ok();
  }

  Status write_error() const {
    const int err = errno;
    if (err == ENOSPC)
      return error(ErrorCode::kIo, strprintf("disk full writing %s (%llu bytes kept); free space and run `fathom pull %s` "
                                             "again to resume",
                                             partial_.c_str(), static_cast<unsigned long long>(progress_.done),
                                             ref_.name.c_str()));
    return error(ErrorCode::kIo, strprintf("cannot write '%s': %s", partial_.c_str(), std::strerror(err)));
  }

  const HttpClient& client_;
  const ModelRef& ref_;
  const PullOptions& options_;
  const RepoFile& file_;
  std::string partial_;    // NAME.partial in the model directory
  PullProgress progress_;  // reported to options_.on_progress
  Sha256 hasher_;          // over bytes [0, progress_.done) of the file
};

// True when the store already holds exactly these files (same names, sizes and digests).
bool store_has(const ModelStore& store, const Manifest& m, const std::vector<RepoFile>& files) {
  if (m.files.size() != files.size()) return false;
  for (size_t i = 0; i < files.size(); ++i) {
    const ManifestFile& f = m.files[i];
    if (f.repo_path != files[i].path || f.size != files[i].size || (!files[i].sha256.empty() && f.sha256 != files[i].sha256) ||
        file_size_or_zero(store.model_dir(m.name) + "/" + f.name) != f.size)
      return false;
  }
  return true;
}

Status check_free_space(const std::string& dir, uint64_t needed) {
  struct statvfs st {};
  if (statvfs(dir.c_str(), &st) != 0) return error(ErrorCode::kIo, strprintf("cannot stat '%s': %s", dir.c_str(), std::strerror(errno)));
  const uint64_t free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  if (free_bytes < needed)
    return error(ErrorCode::kIo, strprintf("not enough disk space in %s: the download needs %s more, %s is free (free space, "
                                           "or set FATHOM_MODELS to a directory on a larger disk)",
                                           dir.c_str(), human_size(needed).c_str(), human_size(free_bytes).c_str()));
  return Status::ok();
}

}  // namespace

Status check_endpoint(const std::string& endpoint) {
  if (endpoint.rfind("http://", 0) != 0 && endpoint.rfind("https://", 0) != 0)
    return error(ErrorCode::kInvalidArgument, strprintf("endpoint '%s' is not an http:// or https:// URL", endpoint.c_str()));
  return Status::ok();
}

Expected<PullResult> pull_model(const ModelRef& ref, const ModelStore& store, const PullOptions& options) {
  FATHOM_RETURN_IF_ERROR(check_endpoint(options.endpoint));
  std::string endpoint = options.endpoint;
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  const HttpClient client(options.token);
  FATHOM_ASSIGN_OR_RETURN(HttpResponse listing, client.get(endpoint + "/api/models/" + ref.repo + "?blobs=true", kMaxModelInfoBytes));
  if (listing.status != 200) return http_error(listing, ref.repo, ref, options);
  Expected<RepoInfo> info = parse_repo_info(listing.body);
  if (!info) return error(info.status().code(), ref.repo + " at " + endpoint + ": " + info.status().message());
  FATHOM_ASSIGN_OR_RETURN(std::vector<RepoFile> files, select_files(info->files, ref));

  PullResult result;
  Manifest& m = result.manifest;
  m.name = ref.name;
  m.repo = ref.repo;
  m.revision = info->revision;
  m.quant = ref.quant.empty() ? quant_of(files.front().path) : ref.quant;
  m.endpoint = endpoint;
  FATHOM_ASSIGN_OR_RETURN(std::optional<Manifest> existing, store.find(ref.name));
  if (existing && store_has(store, *existing, files)) {
    result.manifest = *existing;
    result.already_present = true;
    return result;
  }
  std::set<std::string> names;
  for (const RepoFile& f : files)
    if (!names.insert(base_name(f.path)).second)
      return error(ErrorCode::kInvalidFile, strprintf("%s: two selected files are named %s", ref.repo.c_str(), base_name(f.path).c_str()));

  const std::string dir = store.model_dir(ref.name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return error(ErrorCode::kIo, strprintf("cannot create '%s': %s", dir.c_str(), ec.message().c_str()));
  uint64_t needed = 0;
  for (const RepoFile& f : files) {
    const std::string final_path = dir + "/" + base_name(f.path);
    if (file_size_or_zero(final_path) == f.size && fs::exists(final_path, ec)) continue;
    needed += f.size - std::min(f.size, file_size_or_zero(final_path + ".partial"));
  }
  FATHOM_RETURN_IF_ERROR(check_free_space(dir, needed));
  if (options.on_message)
    options.on_message(strprintf("pulling %s: %s at %s, %zu file%s, %s", ref.name.c_str(), ref.repo.c_str(),
                                 info->revision.substr(0, 12).c_str(), files.size(), files.size() == 1 ? "" : "s",
                                 human_size(needed).c_str()));

  for (size_t i = 0; i < files.size(); ++i) {
    if (options.cancelled && options.cancelled()) return error(ErrorCode::kCancelled, "the pull of " + ref.name + " was cancelled");
    const RepoFile& f = files[i];
    const std::string name = base_name(f.path), final_path = dir + "/" + name, partial = final_path + ".partial";
    std::string digest;
    if (fs::exists(final_path, ec) && file_size_or_zero(final_path) == f.size) {  // kept from an earlier pull
      Sha256 hasher;
      FATHOM_RETURN_IF_ERROR(hash_file_prefix(final_path, f.size, hasher));
      digest = hasher.hex_digest();
      if (!f.sha256.empty() && digest != f.sha256) fs::remove(final_path, ec);
    }
    if (!fs::exists(final_path, ec)) {
      PullProgress progress{name, i, files.size(), 0, f.size, 0, f.sha256};
      FileDownload download(client, ref, options, f, partial, progress);
      const std::string url = endpoint + "/" + ref.repo + "/resolve/" + info->revision + "/" + url_encode_path(f.path);
      FATHOM_ASSIGN_OR_RETURN(digest, download.run(url, &result.bytes_fetched, &result.bytes_resumed));
      fs::rename(partial, final_path, ec);
      if (ec) return error(ErrorCode::kIo, strprintf("cannot rename '%s': %s", partial.c_str(), ec.message().c_str()));
    }
    m.files.push_back({name, f.path, f.size, digest});
  }
  m.pulled_at = static_cast<int64_t>(std::time(nullptr));
  FATHOM_RETURN_IF_ERROR(store.install(m));
  return result;
}

}  // namespace fathom::hub
