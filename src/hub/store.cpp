#include "hub/store.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "core/mapped_file.h"
#include "hub/catalogue.h"

namespace fathom::hub {

namespace fs = std::filesystem;

namespace {

constexpr char kManifestName[] = "manifest.json";
constexpr size_t kMaxManifestBytes = 1 << 20;
constexpr size_t kMaxManifestFiles = 1024;

nlohmann::json to_json(const Manifest& m) {
  nlohmann::json files = nlohmann::json::array();
  for (const ManifestFile& f : m.files)
    files.push_back({{"name", f.name}, {"repo_path", f.repo_path}, {"size", f.size}, {"sha256", f.sha256}});
  return {{"name", m.name},         {"repo", m.repo},           {"revision", m.revision}, {"quant", m.quant},
          {"endpoint", m.endpoint}, {"pulled_at", m.pulled_at}, {"files", files}};
}

bool is_sha256(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isxdigit(c); });
}

// A file name inside the model directory: one path component.
bool is_file_name(const std::string& s) { return is_safe_repo_path(s) && s.find('/') == std::string::npos; }

Expected<Manifest> from_json(const std::string& path, const std::string& text) {
  auto bad = [&](const std::string& why) {
    return error(ErrorCode::kInvalidFile, strprintf("%s: %s (remove the model with `fathom rm` and pull it again)",
                                                    path.c_str(), why.c_str()));
  };
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return bad("not a JSON object");
  Manifest m;
  try {
    m.name = j.at("name").get<std::string>();
    m.repo = j.at("repo").get<std::string>();
    m.revision = j.at("revision").get<std::string>();
    m.quant = j.at("quant").get<std::string>();
    m.endpoint = j.at("endpoint").get<std::string>();
    m.pulled_at = j.at("pulled_at").get<int64_t>();
    const nlohmann::json& files = j.at("files");
    if (!files.is_array() || files.empty() || files.size() > kMaxManifestFiles) return bad("'files' is not a list of 1..1024");
    for (const nlohmann::json& f : files) {
      ManifestFile mf{f.at("name").get<std::string>(), f.at("repo_path").get<std::string>(), f.at("size").get<uint64_t>(),
                      f.at("sha256").get<std::string>()};
      if (!is_file_name(mf.name) || !is_sha256(mf.sha256)) return bad("bad file entry '" + mf.name + "'");
      m.files.push_back(std::move(mf));
    }
  } catch (const nlohmann::json::exception& e) {
    return bad(e.what());
  }
  return m;
}

}  // namespace

uint64_t Manifest::total_size() const {
  uint64_t total = 0;
  for (const ManifestFile& f : files) total += f.size;
  return total;
}

Expected<std::string> store_root(const char* fathom_models, const char* xdg_cache_home, const char* home) {
  auto set = [](const char* v) { return v != nullptr && v[0] != '\0'; };
  if (set(fathom_models)) return std::string(fathom_models);
  if (set(xdg_cache_home)) return std::string(xdg_cache_home) + "/fathom/models";
  if (set(home)) return std::string(home) + "/.cache/fathom/models";
  return error(ErrorCode::kInvalidArgument, "no model directory: set FATHOM_MODELS (or HOME)");
}

std::string ModelStore::model_dir(const std::string& name) const {
  std::string dir;
  for (unsigned char c : name) {
    if (std::isalnum(c) || c == '.' || c == '_' || c == '-')
      dir += static_cast<char>(c);
    else
      dir += strprintf("%%%02X", c);
  }
  if (!dir.empty() && dir.front() == '.') dir = "%2E" + dir.substr(1);  // never "." or ".." or hidden
  return root_ + "/" + dir;
}

Expected<std::optional<Manifest>> ModelStore::find(const std::string& name) const {
  if (name.empty()) return std::optional<Manifest>();
  const std::string path = model_dir(name) + "/" + kManifestName;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::optional<Manifest>();
  if (fs::file_size(path, ec) > kMaxManifestBytes) return error(ErrorCode::kInvalidFile, path + ": larger than 1 MiB");
  FATHOM_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  FATHOM_ASSIGN_OR_RETURN(Manifest m, from_json(path, text));
  if (m.name != name) return error(ErrorCode::kInvalidFile, strprintf("%s: names model '%s', not '%s'", path.c_str(), m.name.c_str(), name.c_str()));
  return std::optional<Manifest>(std::move(m));
}

Expected<std::vector<Manifest>> ModelStore::list() const {
  std::vector<Manifest> out;
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) return out;
  for (const fs::directory_entry& entry : fs::directory_iterator(root_, ec)) {
    const std::string path = entry.path().string() + "/" + kManifestName;
    std::error_code file_ec;
    if (!fs::is_regular_file(path, file_ec)) continue;  // a pull in progress, or not ours
    if (fs::file_size(path, file_ec) > kMaxManifestBytes) return error(ErrorCode::kInvalidFile, path + ": larger than 1 MiB");
    FATHOM_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
    FATHOM_ASSIGN_OR_RETURN(Manifest m, from_json(path, text));
    out.push_back(std::move(m));
  }
  if (ec) return error(ErrorCode::kIo, strprintf("cannot list '%s': %s", root_.c_str(), ec.message().c_str()));
  std::sort(out.begin(), out.end(), [](const Manifest& a, const Manifest& b) { return a.name < b.name; });
  return out;
}

std::string ModelStore::model_path(const Manifest& m) const { return model_dir(m.name) + "/" + m.files.front().name; }

Status ModelStore::install(const Manifest& m) const {
  const std::string path = model_dir(m.name) + "/" + kManifestName;
  const std::string tmp = strprintf("%s.tmp.%d", path.c_str(), static_cast<int>(getpid()));
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << to_json(m).dump(2) << "\n";
    out.flush();
    if (!out) return error(ErrorCode::kIo, "cannot write " + tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return error(ErrorCode::kIo, strprintf("cannot write '%s': %s", path.c_str(), ec.message().c_str()));
  }
  return Status::ok();
}

Status ModelStore::remove(const std::string& name) const {
  const std::string dir = model_dir(name);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return error(ErrorCode::kNotFound, strprintf("no model '%s' in %s (see fathom list)", name.c_str(), root_.c_str()));
  fs::remove_all(dir, ec);
  if (ec) return error(ErrorCode::kIo, strprintf("cannot remove '%s': %s", dir.c_str(), ec.message().c_str()));
  return Status::ok();
}

}  // namespace fathom::hub
