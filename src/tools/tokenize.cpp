// `fathom tokenize` and `fathom detokenize`: text <-> token ids with a model's tokenizer (GGUF
// metadata or a Hugging Face tokenizer.json), for checking prompts and debugging templates.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace fathom::tools {

namespace {

using json = nlohmann::ordered_json;

// Pieces can be partial UTF-8 sequences; JSON output shows those bytes as U+FFFD.
std::string to_json_text(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

Expected<std::unique_ptr<Tokenizer>> load(const std::string& path, const std::string& config) {
  auto tok = Tokenizer::from_file(path, config);
  if (tok) {
    for (const std::string& warning : (*tok)->warnings()) std::fprintf(stderr, "warning: %s\n", warning.c_str());
  }
  return tok;
}

// Parses "12", "12,13" or one JSON array "[12, 13]" into ids.
Expected<std::vector<int32_t>> parse_ids(const std::vector<std::string>& args) {
  std::vector<int32_t> ids;
  if (args.size() == 1 && !args[0].empty() && args[0].front() == '[') {
    const json parsed = json::parse(args[0], nullptr, /*allow_exceptions=*/false);
    if (!parsed.is_array()) return error(ErrorCode::kInvalidArgument, "ids: not a JSON array: " + args[0]);
    for (const json& v : parsed) {
      if (!v.is_number_integer()) return error(ErrorCode::kInvalidArgument, "ids: not an integer: " + v.dump());
      ids.push_back(v.get<int32_t>());
    }
    return ids;
  }
  for (const std::string& arg : args) {
    std::stringstream items(arg);
    std::string item;
    while (std::getline(items, item, ',')) {
      if (item.empty()) continue;
      char* end = nullptr;
      errno = 0;
      const long value = std::strtol(item.c_str(), &end, 10);
      if (*end != '\0' || errno != 0 || value < INT32_MIN || value > INT32_MAX) {
        return error(ErrorCode::kInvalidArgument, "ids: not an integer: " + item);
      }
      ids.push_back(static_cast<int32_t>(value));
    }
  }
  return ids;
}

}  // namespace

int cmd_tokenize(const Args& args) {
  std::string model, config, text, text_file;
  bool no_bos = false, special = false, pieces = false;
  ArgParser parser("fathom tokenize -m FILE.gguf|tokenizer.json [options] TEXT",
                   "Print the token ids of TEXT as a JSON array (BOS included when the model adds one).");
  parser.add_string("-m,--model", "FILE", "GGUF file or Hugging Face tokenizer.json", &model);
  parser.add_string("--config", "FILE", "tokenizer_config.json for a tokenizer.json (default: the one beside it)",
                    &config);
  parser.add_flag("--no-bos", "do not add BOS even if the model adds it by default", &no_bos);
  parser.add_flag("--special", "turn special-token text such as <|im_start|> into its token", &special);
  parser.add_flag("--pieces", "print [{\"id\": ..., \"piece\": ...}] instead of bare ids", &pieces);
  parser.add_string("-f,--file", "FILE", "read TEXT from a file instead of the command line ('-': standard input)",
                    &text_file);
  parser.add_positional("TEXT", "text to tokenize", &text, /*required=*/false);
  if (auto code = parser.parse(args)) return *code;
  if (model.empty()) return parser.fail("-m FILE is required");
  if (!text.empty() && !text_file.empty()) return parser.fail("TEXT and -f exclude each other; pass one");
  if (text.empty() && text_file.empty()) return parser.fail("no text; pass TEXT or -f FILE");
  if (!text_file.empty()) {
    auto file_text = read_input_file(text_file);
    if (!file_text) return parser.runtime_error(file_text.status().message());
    text = *file_text;
  }

  auto tok = load(model, config);
  if (!tok) {
    std::fprintf(stderr, "fathom tokenize: %s\n", tok.status().to_string().c_str());
    return 1;
  }
  const Tokenizer& t = **tok;
  const std::vector<int32_t> ids = t.encode(text, t.add_bos() && !no_bos, special);
  json out = json::array();
  for (int32_t id : ids) {
    if (pieces) out.push_back({{"id", id}, {"piece", t.token_to_piece(id, true)}});
    else out.push_back(id);
  }
  std::printf("%s\n", to_json_text(out).c_str());
  return 0;
}

int cmd_detokenize(const Args& args) {
  std::string model, config;
  bool special = false;
  std::vector<std::string> id_args;
  ArgParser parser("fathom detokenize -m FILE.gguf|tokenizer.json [--special] ID... | '[ID, ...]'",
                   "Print the text of token ids.");
  parser.add_string("-m,--model", "FILE", "GGUF file or Hugging Face tokenizer.json", &model);
  parser.add_string("--config", "FILE", "tokenizer_config.json for a tokenizer.json", &config);
  parser.add_flag("--special", "render control tokens (BOS, <|im_end|>, ...) as their text", &special);
  parser.add_rest("ID", "token ids, separate or as one JSON array", &id_args);
  if (auto code = parser.parse(args)) return *code;
  if (model.empty()) return parser.fail("-m FILE is required");
  auto ids = parse_ids(id_args);
  if (!ids) return parser.fail(ids.status().message());
  auto tok = load(model, config);
  if (!tok) {
    std::fprintf(stderr, "fathom detokenize: %s\n", tok.status().to_string().c_str());
    return 1;
  }
  const Tokenizer& t = **tok;
  for (int32_t id : *ids) {
    if (id < 0 || id >= t.n_vocab()) {
      std::fprintf(stderr, "fathom detokenize: token id %d is out of range (vocabulary has %d tokens: 0..%d)\n", id,
                   t.n_vocab(), t.n_vocab() - 1);
      return 1;
    }
  }
  const std::string text = t.decode(*ids, special);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return 0;
}

}  // namespace fathom::tools
