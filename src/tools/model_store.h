// The model store as the CLI sees it: where it is (FATHOM_MODELS, XDG_CACHE_HOME, HOME) and the
// one place pulled model names become file paths for every command that takes a model.
#pragma once

#include <optional>

#include "hub/store.h"
#include "tools/commands.h"

namespace fathom::tools {

// The store at the root the environment names.
Expected<hub::ModelStore> open_model_store();

// Replaces the value of each model option (-m, --model, --model-file, --base, also written
// --opt=VALUE) that is not an existing file but a pulled model's name with the path of that
// model's (first) file. A name that looks like a model name (a catalogue name or one with ':')
// but is not pulled prints how to pull it and returns exit code 1; nullopt to go on. For
// `serve`, a pulled name also becomes the model id clients see (--model-alias) unless one is given.
std::optional<int> resolve_model_names(const std::string& command, Args& args);

}  // namespace fathom::tools
