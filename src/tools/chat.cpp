// fathom chat: interactive multi-turn chat with the model's own chat template; the reasoning
// between <think> and </think> is shown dimmed (on a terminal) or marked, apart from the answer.
#include <cstdio>
#include <iostream>
#include <string>

#include "tokenizer/chat_template.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace fathom::tools {

namespace {

// Used when a model file carries no tokenizer.chat_template (e.g. base models).
constexpr const char* kFallbackTemplate =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}"
    "{% else %}{{ 'Assistant: ' + message['content'] + '\n\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

int cmd_chat(const Args& args) {
  ModelOptions model;
  SamplingOptions sampling;
  GrammarOptions grammar;
  std::string system_prompt;
  int n_predict = 2048;
  bool hide_thinking = false;
  ArgParser p("fathom chat -m FILE.gguf [options]",
              "Interactive chat. Type a message and press Enter; an empty line or Ctrl-D ends the chat,\n"
              "/reset starts a new conversation. Uses the chat template stored in the model file.");
  model.add_to(p);
  p.add_string("--system", "TEXT", "system prompt", &system_prompt);
  p.add_int("-n,--n-predict", "N", "tokens per answer at most (default 2048)", &n_predict);
  p.add_flag("--hide-thinking", "do not print the model's <think> reasoning", &hide_thinking);
  sampling.temperature = 0.6;  // DeepSeek-R1's recommended setting
  sampling.add_to(p);
  grammar.add_to(p);
  if (auto rc = p.parse(args)) return *rc;
  auto constraint = grammar.load();
  if (!constraint) {
    std::fprintf(stderr, "fathom chat: %s\n", constraint.status().to_string().c_str());
    return 2;
  }
  const Expected<EngineOptions> engine_options = model.to_engine_options();
  if (!engine_options) {
    std::fprintf(stderr, "fathom chat: %s\n", engine_options.status().to_string().c_str());
    return 2;
  }
  std::unique_ptr<Engine> engine = open_engine("chat", *engine_options);
  if (!engine) return 1;
  const Tokenizer& tok = engine->tokenizer();
  std::string tmpl = tok.chat_template().value_or("");
  if (tmpl.empty()) {
    std::fprintf(stderr, "fathom chat: the model has no chat template; using a plain 'User:/Assistant:' format\n");
    tmpl = kFallbackTemplate;
  }
  const std::string bos = tok.bos_id() >= 0 ? tok.token_text(tok.bos_id()) : "";
  const std::string eos = tok.eos_id() >= 0 ? tok.token_text(tok.eos_id()) : "";
  const bool tty = stdout_is_tty();
  const char* dim_on = tty ? "\033[2m" : "";
  const char* dim_off = tty ? "\033[0m" : "";

  std::vector<ChatMessage> history;
  if (!system_prompt.empty()) history.push_back({"system", system_prompt, ""});
  SamplingParams sp = sampling.to_params();
  sp.grammar = *constraint;  // each answer on its own is constrained
  for (;;) {
    if (tty) std::fputs("\n> ", stdout);
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line) || line.empty()) break;
    if (line == "/reset") {
      history.resize(system_prompt.empty() ? 0 : 1);
      std::fputs("(conversation reset)\n", stdout);
      continue;
    }
    history.push_back({"user", line, ""});
    auto rendered = apply_chat_template(tmpl, history, /*add_generation_prompt=*/true, bos, eos);
    if (!rendered) {
      std::fprintf(stderr, "fathom chat: chat template: %s\n", rendered.status().to_string().c_str());
      return 1;
    }
    const bool starts_thinking = ends_with(*rendered, "<think>\n") || ends_with(*rendered, "<think>");
    ReasoningSplitter splitter(starts_thinking);
    std::string answer;
    bool printed_reasoning = false, in_reasoning_block = false;
    auto show = [&](const ReasoningSplitter::Delta& d) {
      if (!d.reasoning.empty() && !hide_thinking) {
        if (!in_reasoning_block) {
          std::fputs(tty ? dim_on : "[thinking]\n", stdout);
          in_reasoning_block = true;
        }
        std::fputs(d.reasoning.c_str(), stdout);
        printed_reasoning = true;
      }
      if (!d.content.empty()) {
        if (in_reasoning_block) {
          std::fputs(tty ? dim_off : "\n[/thinking]\n", stdout);
          in_reasoning_block = false;
        }
        std::string text = d.content;
        if (answer.empty() && printed_reasoning) {  // the answer usually starts after blank lines
          const size_t first = text.find_first_not_of("\n");
          text = first == std::string::npos ? "" : text.substr(first);
          if (!text.empty()) std::fputs("\n", stdout);
        }
        answer += d.content;
        std::fputs(text.c_str(), stdout);
      }
      std::fflush(stdout);
    };
    GenerationRequest req;
    req.prompt = tokenize_prompt(tok, *rendered);
    req.max_tokens = n_predict;
    sp.seed += 1;  // a fresh stream per turn, still reproducible from --seed
    req.sampling = sp;
    Status failure;
    req.on_event = [&](const TokenEvent& ev) {
      show(splitter.push(ev.text));
      if (ev.finished) {
        show(splitter.flush());
        if (ev.reason == FinishReason::kError) failure = ev.status;
      }
    };
    auto id = engine->submit(std::move(req));
    if (!id) {
      std::fprintf(stderr, "fathom chat: %s\n", id.status().to_string().c_str());
      history.pop_back();
      continue;
    }
    if (Status st = engine->run_until_idle(); !st.is_ok()) failure = st;
    if (in_reasoning_block) std::fputs(tty ? dim_off : "\n[/thinking]\n", stdout);
    std::fputs("\n", stdout);
    if (!failure.is_ok()) {
      std::fprintf(stderr, "fathom chat: %s\n", failure.to_string().c_str());
      history.pop_back();
      continue;
    }
    history.push_back({"assistant", answer, ""});
  }
  return 0;
}

}  // namespace fathom::tools
