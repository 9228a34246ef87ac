#include "tools/model_store.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "hub/catalogue.h"

namespace fathom::tools {

Expected<hub::ModelStore> open_model_store() {
  FATHOM_ASSIGN_OR_RETURN(std::string root,
                          hub::store_root(std::getenv("FATHOM_MODELS"), std::getenv("XDG_CACHE_HOME"), std::getenv("HOME")));
  return hub::ModelStore(std::move(root));
}

namespace {

// The path for one -m value, or an exit code.
Expected<std::string> resolve_one(const std::string& value, const hub::ModelStore& store) {
  std::error_code ec;
  if (value.empty() || std::filesystem::exists(value, ec)) return value;
  FATHOM_ASSIGN_OR_RETURN(std::optional<hub::Manifest> manifest, store.find(value));
  if (manifest) return store.model_path(*manifest);
  bool known_name = value.find(':') != std::string::npos;
  for (const hub::CatalogueEntry& e : hub::catalogue()) known_name |= value == e.name;
  if (known_name)
    return error(ErrorCode::kNotFound, strprintf("'%s' is neither a file nor a pulled model (models in %s: fathom list); "
                                                 "get it with: fathom pull %s",
                                                 value.c_str(), store.root().c_str(), value.c_str()));
  return value;  // the command reports the missing file
}

}  // namespace

std::optional<int> resolve_model_names(const std::string& command, Args& args) {
  static constexpr const char* kModelOptions[] = {"-m", "--model", "--model-file", "--base"};
  std::optional<hub::ModelStore> store;
  std::string pulled_name;  // the last name that resolved to a pulled model
  for (size_t i = 0; i < args.size(); ++i) {
    std::string* value = nullptr;
    std::string prefix;
    for (const char* opt : kModelOptions) {
      const std::string o = opt;
      if (args[i] == o && i + 1 < args.size()) {
        value = &args[++i];
      } else if (o.rfind("--", 0) == 0 && args[i].rfind(o + "=", 0) == 0) {
        prefix = o + "=";
        value = &args[i];
      }
      if (value) break;
    }
    if (!value) continue;
    if (!store) {
      Expected<hub::ModelStore> opened = open_model_store();
      if (!opened) return std::nullopt;  // no store: names stay as given
      store = std::move(opened).value();
    }
    Expected<std::string> path = resolve_one(value->substr(prefix.size()), *store);
    if (!path) {
      std::fprintf(stderr, "fathom: %s\n", path.status().message().c_str());
      return 1;
    }
    if (*path != value->substr(prefix.size())) pulled_name = value->substr(prefix.size());
    *value = prefix + *path;
  }
  const bool has_alias = std::any_of(args.begin(), args.end(), [](const std::string& a) { return a.rfind("--model-alias", 0) == 0; });
  if (command == "serve" && !pulled_name.empty() && !has_alias) {
    args.push_back("--model-alias");
    args.push_back(pulled_name);
  }
  return std::nullopt;
}

}  // namespace fathom::tools
