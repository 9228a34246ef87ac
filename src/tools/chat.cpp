// fathom chat: interactive multi-turn chat with the model's own chat template; the reasoning
// between <think> and </think> is shown dimmed (on a terminal) or marked, apart from the answer.
// On a terminal the input line is edited with libedit (history, arrows, Ctrl-R); Ctrl-C stops a
// reply and returns to the prompt, Ctrl-C on a line of text clears it, Ctrl-C at an empty prompt
// or Ctrl-D ends the chat. Piped input is read line by line with the same commands.
#include <editline/readline.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

#include "tokenizer/prompt.h"
#include "tools/commands.h"
#include "tools/common.h"
#include "tools/interrupt.h"

namespace fathom::tools {

namespace {

constexpr const char* kCommandHelp =
    "/help                 this list\n"
    "/bye                  end the chat (also Ctrl-D, or Ctrl-C at an empty prompt)\n"
    "/clear                start a new conversation (the system prompt stays)\n"
    "/set temperature T    sampling temperature from 0 (greedy) to 100\n"
    "/set system TEXT      system prompt (empty TEXT removes it); starts a new conversation\n"
    "/set think on|off     let the model reason in <think> first, or skip it with an empty block\n"
    "/save FILE            write the conversation as JSON\n"
    "/load FILE            read a conversation written by /save\n"
    "Ctrl-C while the model answers stops the answer and keeps what it wrote; on a line\n"
    "of text it clears the line.\n";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Ctrl-C at the prompt, as in shells and llama-cli: it clears a line that has text and ends the
// chat at an empty one. SIGINT interrupts libedit's wait for a key (read_key_or_interrupt hands
// libedit Ctrl-C's code instead), and that key runs on_ctrl_c_key, which sees the line. libedit
// cannot clear the line from a key function (its rl_replace_line and rl_delete_text change
// nothing), so the key function leaves the request here and the next key read returns Ctrl-U,
// libedit's kill-line. libedit's callbacks take no context: this flag is file-static for that.
bool g_clear_line_next = false;

constexpr int kCtrlU = 21;

int read_key(FILE* in) {
  if (g_clear_line_next) {
    g_clear_line_next = false;
    return kCtrlU;
  }
  return read_key_or_interrupt(in);
}

int on_ctrl_c_key(int /*count*/, int /*key*/) {
  if (rl_end > 0) g_clear_line_next = true;
  else rl_done = 1;  // readline returns NULL: the chat ends, as at Ctrl-D
  return 0;
}

// One line of user input: libedit on a terminal (editing and history), getline otherwise.
class LineReader {
 public:
  LineReader() : tty_(isatty(STDIN_FILENO) != 0) {
    if (!tty_) return;
    rl_getc_function = read_key;
    rl_initialize();
    rl_add_defun("fathom-ctrl-c", on_ctrl_c_key, kCtrlC);
  }
  bool tty() const { return tty_; }
  // nullopt at the end of input, or when Ctrl-C ended an empty prompt line. Read while a
  // SigintCatcher lives.
  std::optional<std::string> read(const char* prompt) {
    if (!tty_) {
      std::string line;
      if (!std::getline(std::cin, line)) return std::nullopt;
      return line;
    }
    char* raw = readline(prompt);
    if (!raw) {
      std::fputs("\n", stdout);
      return std::nullopt;
    }
    std::string line(raw);
    std::free(raw);
    if (!line.empty()) add_history(line.c_str());
    return line;
  }

 private:
  bool tty_;
};

// The conversation and the settings /set changes.
struct ChatState {
  std::string system_prompt;
  std::vector<ChatMessage> turns;  // user and assistant messages, in order
  bool think = true;               // false: the prompt closes the <think> block the template opens
  SamplingParams sampling;

  std::vector<ChatMessage> messages() const {
    std::vector<ChatMessage> all;
    if (!system_prompt.empty()) all.push_back({"system", system_prompt, ""});
    all.insert(all.end(), turns.begin(), turns.end());
    return all;
  }
};

Status save_conversation(const ChatState& state, const std::string& path) {
  nlohmann::json doc = {{"system", state.system_prompt}, {"messages", nlohmann::json::array()}};
  for (const ChatMessage& m : state.turns) doc["messages"].push_back({{"role", m.role}, {"content", m.content}});
  std::ofstream out(path);
  out << doc.dump(2) << "\n";
  if (!out) return error(ErrorCode::kIo, "cannot write '" + path + "'");
  return Status::ok();
}

Status load_conversation(ChatState* state, const std::string& path) {
  FATHOM_ASSIGN_OR_RETURN(const std::string text, read_text_file(path));
  const nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("messages") || !doc["messages"].is_array())
    return error(ErrorCode::kInvalidArgument, path + ": not a conversation saved by /save (JSON with \"messages\")");
  std::vector<ChatMessage> turns;
  for (const nlohmann::json& m : doc["messages"]) {
    if (!m.is_object() || !m.value("role", nlohmann::json()).is_string() || !m.value("content", nlohmann::json()).is_string())
      return error(ErrorCode::kInvalidArgument, path + ": each message needs string \"role\" and \"content\"");
    const std::string role = m["role"];
    if (role != "user" && role != "assistant")
      return error(ErrorCode::kInvalidArgument, path + ": message role '" + role + "' is not user or assistant");
    turns.push_back({role, m["content"], ""});
  }
  state->turns = std::move(turns);
  if (doc.contains("system") && doc["system"].is_string()) state->system_prompt = doc["system"];
  return Status::ok();
}

// Runs a /command; false for /bye.
bool run_command(const std::string& line, ChatState* state) {
  std::istringstream words(line);
  std::string command, argument;
  words >> command;
  std::getline(words >> std::ws, argument);
  if (command == "/bye") return false;
  if (command == "/help" || command == "/?") {
    std::fputs(kCommandHelp, stderr);
  } else if (command == "/clear" || command == "/reset") {
    state->turns.clear();
    std::fputs("(conversation cleared)\n", stderr);
  } else if (command == "/save" || command == "/load") {
    if (argument.empty()) {
      std::fprintf(stderr, "%s needs a FILE\n", command.c_str());
    } else if (Status st = command == "/save" ? save_conversation(*state, argument) : load_conversation(state, argument);
               !st.is_ok()) {
      std::fprintf(stderr, "fathom chat: %s\n", st.message().c_str());
    } else {
      std::fprintf(stderr, "(%s %zu messages %s %s)\n", command == "/save" ? "saved" : "loaded", state->turns.size(),
                   command == "/save" ? "to" : "from", argument.c_str());
    }
  } else if (command == "/set") {
    std::istringstream rest(argument);
    std::string key, value;
    rest >> key;
    std::getline(rest >> std::ws, value);
    char* end = nullptr;
    const double t = std::strtod(value.c_str(), &end);
    if ((key == "temperature" || key == "temp") && !value.empty() && *end == '\0' && Range::between(0, 100).contains(t)) {
      state->sampling.temperature = static_cast<float>(t);
      std::fprintf(stderr, "(temperature %g)\n", t);
    } else if (key == "system") {
      state->system_prompt = value;
      state->turns.clear();
      std::fputs(value.empty() ? "(system prompt removed; new conversation)\n" : "(system prompt set; new conversation)\n", stderr);
    } else if (key == "think" && (value == "on" || value == "off")) {
      state->think = value == "on";
      std::fprintf(stderr, "(thinking %s)\n", value.c_str());
    } else {
      std::fputs("usage: /set temperature T (0 to 100) | /set system TEXT | /set think on|off\n", stderr);
    }
  } else {
    std::fprintf(stderr, "unknown command %s; /help lists them\n", command.c_str());
  }
  return true;
}

// The prompt text of the conversation so far, opening the assistant's turn.
Expected<std::string> render_prompt(const ChatFormatter& formatter, const ChatState& state) {
  FATHOM_ASSIGN_OR_RETURN(std::string text, formatter.render(state.messages()));
  const bool template_opens_think = ends_with(text, "<think>\n") || ends_with(text, "<think>");
  if (!state.think && template_opens_think) text += ends_with(text, "\n") ? "\n</think>\n\n" : "\n\n</think>\n\n";
  return text;
}

// Tokens a reply may take before the context is full: the prompt of a turn must leave this
// many free, min(-n, a quarter of the context), at least 1.
int64_t reply_room(int64_t n_ctx, int n_predict) { return std::max<int64_t>(1, std::min<int64_t>(n_predict, n_ctx / 4)); }

// The next turn's prompt (state->turns ending with the new user message). When it and the
// reply room do not fit in n_ctx tokens, the oldest exchanges (a user message and the
// assistant's answer) are dropped from state->turns until they do; the system prompt and the
// new message always stay. *dropped counts the exchanges dropped. kOutOfRange, turns
// untouched, when even the system prompt and the new message leave no room.
struct FittedPrompt {
  std::vector<int32_t> tokens;
  bool starts_thinking = false;  // the prompt ends inside an opened <think> block
};
Expected<FittedPrompt> fit_prompt(const Engine& engine, const ChatFormatter& formatter, ChatState* state, int n_predict,
                                  int* dropped) {
  const int64_t room = reply_room(engine.n_ctx(), n_predict);
  *dropped = 0;
  for (size_t first = 0;; ++*dropped) {
    ChatState trial = *state;
    trial.turns.erase(trial.turns.begin(), trial.turns.begin() + static_cast<std::ptrdiff_t>(first));
    FATHOM_ASSIGN_OR_RETURN(const std::string text, render_prompt(formatter, trial));
    std::vector<int32_t> tokens = tokenize_prompt(engine.tokenizer(), text);
    if (static_cast<int64_t>(tokens.size()) + room <= engine.n_ctx()) {
      state->turns = std::move(trial.turns);
      return FittedPrompt{std::move(tokens), ends_with(text, "<think>\n") || ends_with(text, "<think>")};
    }
    if (first + 1 >= state->turns.size())
      return error(ErrorCode::kOutOfRange,
                   strprintf("the message%s takes %zu tokens; with %lld left for the reply that is more than the context "
                             "holds (%lld tokens): shorten it or raise --ctx-size",
                             state->system_prompt.empty() ? "" : " and the system prompt", tokens.size(),
                             static_cast<long long>(room), static_cast<long long>(engine.n_ctx())));
    // One exchange: the oldest message, and the assistant's answer after it.
    ++first;
    if (first + 1 < state->turns.size() && state->turns[first].role == "assistant") ++first;
  }
}

// Streams one answer; returns it (partial when Ctrl-C stopped it or the context filled up), or an error.
Expected<std::string> answer(Engine& engine, FittedPrompt prompt, const ChatState& state, const SigintCatcher& sigint,
                             bool hide_thinking, bool tty, int n_predict, const std::vector<std::string>& stop) {
  ReasoningSplitter splitter(prompt.starts_thinking);
  std::string reply;
  bool printed_reasoning = false, in_reasoning_block = false;
  auto show = [&](const ReasoningSplitter::Delta& d) {
    if (!d.reasoning.empty() && !hide_thinking) {
      if (!in_reasoning_block) {
        std::fputs(tty ? "\033[2m" : "[thinking]\n", stdout);
        in_reasoning_block = true;
      }
      std::fputs(d.reasoning.c_str(), stdout);
      printed_reasoning = true;
    }
    if (!d.content.empty()) {
      if (in_reasoning_block) {
        std::fputs(tty ? "\033[0m" : "\n[/thinking]\n", stdout);
        in_reasoning_block = false;
      }
      std::string text = d.content;
      if (reply.empty() && printed_reasoning) {  // the answer usually starts after blank lines
        const size_t first = text.find_first_not_of("\n");
        text = first == std::string::npos ? "" : text.substr(first);
        if (!text.empty()) std::fputs("\n", stdout);
      }
      reply += d.content;
      std::fputs(text.c_str(), stdout);
    }
    std::fflush(stdout);
  };
  GenerationRequest req;
  req.prompt = std::move(prompt.tokens);
  req.max_tokens = n_predict;
  req.sampling = state.sampling;
  req.stop = stop;
  Status failure;
  FinishReason reason = FinishReason::kNone;
  int64_t n_generated = 0;
  req.on_event = [&](const TokenEvent& ev) {
    show(splitter.push(ev.text));
    if (ev.finished) {
      show(splitter.flush());
      reason = ev.reason;
      n_generated = ev.stats.n_generated;
      if (ev.reason == FinishReason::kError) failure = ev.status;
    }
  };
  FATHOM_ASSIGN_OR_RETURN(const RequestId id, engine.submit(std::move(req)));
  if (Status st = run_until_idle_or_interrupted(engine, id, sigint); !st.is_ok()) failure = st;
  if (in_reasoning_block) std::fputs(tty ? "\033[0m" : "\n[/thinking]\n", stdout);
  std::fputs(reason == FinishReason::kCancelled ? "\n(stopped)\n" : "\n", stdout);
  std::fflush(stdout);
  // The engine ends a reply with "length" at -n tokens or at the end of the context.
  if (reason == FinishReason::kLength && n_generated < n_predict)
    std::fputs("(context full: the answer stopped at the end of the context; the next turn drops the oldest turns)\n", stderr);
  FATHOM_RETURN_IF_ERROR(failure);
  return reply;
}

}  // namespace

int cmd_chat(const Args& args) {
  ModelOptions model;
  SamplingOptions sampling;
  GrammarOptions grammar;
  ChatState state;
  ChatTemplateOptions chat_template;
  std::vector<std::string> stop;
  int n_predict = 2048;
  bool hide_thinking = false;
  ArgParser p("fathom chat -m FILE.gguf [options]",
              "Interactive chat with the model's chat template. Type a message and press Enter; /help lists\n"
              "the commands (/bye, /clear, /set, /save, /load). Ctrl-C stops an answer or clears the line;\n"
              "Ctrl-C at an empty prompt or Ctrl-D ends the chat. Input piped into it is read line by line.\n"
              "When the conversation outgrows the context (-c), the oldest turns are dropped (the system\n"
              "prompt stays) so that the prompt leaves min(-n, a quarter of the context) tokens for the\n"
              "reply; stderr says so.");
  model.add_to(p);
  p.add_string("-sys,--system-prompt,--system", "TEXT", "system prompt", &state.system_prompt);
  chat_template.add_to(p);
  p.add_int("-n,--n-predict", "N", "tokens per answer at most (default 2048)", &n_predict, Range::between(1, kMaxTokens));
  p.add_flag("--hide-thinking", "do not print the model's <think> reasoning", &hide_thinking);
  add_stop_option(p, &stop);
  sampling.temperature = 0.6;  // DeepSeek-R1's recommended setting
  sampling.add_to(p);
  grammar.add_to(p);
  if (auto rc = p.parse(args)) return *rc;
  auto constraint = grammar.load();
  if (!constraint) return p.fail(constraint.status().message());
  std::string template_text;
  if (auto rc = chat_template.load(p, &template_text)) return *rc;
  LineReader input;
  const bool tty = input.tty() && stdout_is_tty();
  const Expected<EngineOptions> engine_options = model.to_engine_options();
  if (!engine_options) {
    std::fprintf(stderr, "fathom chat: %s\n", engine_options.status().to_string().c_str());
    return 2;
  }
  std::unique_ptr<Engine> engine = open_engine("chat", *engine_options);
  if (!engine) return 1;
  const ChatFormatter formatter(engine->tokenizer(), template_text);
  if (formatter.plain_fallback())
    std::fprintf(stderr, "fathom chat: the model has no chat template; using a plain 'User:/Assistant:' format\n");
  if (input.tty()) std::fputs("(/help for commands, Ctrl-D or /bye to end)\n", stderr);

  state.sampling = sampling.to_params();
  state.sampling.grammar = *constraint;  // each answer on its own is constrained
  SigintCatcher sigint;
  for (;;) {
    sigint.reset();
    const std::optional<std::string> line = input.read(">>> ");
    if (!line) break;  // Ctrl-D, end of input, or Ctrl-C at an empty prompt
    if (line->empty()) {
      if (input.tty()) continue;
      break;  // piped input: an empty line ends the chat, as before
    }
    if ((*line)[0] == '/') {
      if (!run_command(*line, &state)) break;
      continue;
    }
    state.turns.push_back({"user", *line, ""});
    int dropped = 0;
    auto prompt = fit_prompt(*engine, formatter, &state, n_predict, &dropped);
    if (!prompt) {
      if (prompt.status().code() != ErrorCode::kOutOfRange) {
        std::fprintf(stderr, "fathom chat: chat template: %s\n", prompt.status().to_string().c_str());
        return 1;
      }
      std::fprintf(stderr, "fathom chat: %s\n", prompt.status().message().c_str());
      state.turns.pop_back();
      continue;
    }
    if (dropped > 0)
      std::fprintf(stderr, "(context full: dropped the %s)\n",
                   dropped == 1 ? "oldest turn" : (std::to_string(dropped) + " oldest turns").c_str());
    state.sampling.seed += 1;  // a fresh stream per turn, still reproducible from --seed
    auto reply = answer(*engine, std::move(prompt).value(), state, sigint, hide_thinking, tty, n_predict, stop);
    if (!reply) {
      std::fprintf(stderr, "fathom chat: %s\n", reply.status().message().c_str());
      state.turns.pop_back();
      continue;
    }
    state.turns.push_back({"assistant", *reply, ""});
  }
  return 0;
}

}  // namespace fathom::tools
