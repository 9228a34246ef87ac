#include "loadgen/local_target.h"

#include "tokenizer/prompt.h"

namespace fathom::loadgen {

namespace {

// One request's progress, written on the engine thread and read by its sender.
struct Pending {
  RequestOutcome out;     // timings as events arrive
  bool finished = false;  // the final event has arrived
};

}  // namespace

Expected<std::unique_ptr<LocalTarget>> LocalTarget::create(const LocalTargetOptions& options) {
  auto t = std::unique_ptr<LocalTarget>(new LocalTarget(options));
  EngineOptions eo;
  eo.model_path = options.model_path;
  eo.n_threads = options.n_threads;
  eo.map = options.map;
  eo.n_ctx = options.n_ctx;
  eo.n_seq_max = std::max<int32_t>(1, options.n_seq_max);
  FATHOM_ASSIGN_OR_RETURN(t->engine_, Engine::create(eo));
  t->engine_thread_ = std::thread([raw = t.get()] { raw->engine_loop(); });
  return t;
}

LocalTarget::~LocalTarget() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (engine_thread_.joinable()) engine_thread_.join();
}

std::string LocalTarget::describe() const { return options_.model_path + " (local engine)"; }

void LocalTarget::engine_loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || submitted_ > 0; });
      if (stopping_) return;
      submitted_ = 0;  // a submit after this point wakes the next wait
    }
    while (engine_->has_work()) {
      const Status st = engine_->step();
      if (st.is_ok()) continue;
      // Not expected (a bad request ends only itself); fail the waiting senders rather than hang.
      std::lock_guard<std::mutex> lock(mutex_);
      engine_status_ = st;
      finished_.notify_all();
      return;
    }
  }
}

std::vector<int32_t> LocalTarget::prompt_tokens(const WorkItem& item) const {
  const Tokenizer& tok = engine_->tokenizer();
  std::string text = item.prompt;
  if (text.empty() && !item.messages.is_null()) {
    const ChatFormatter formatter(tok);
    std::vector<ChatMessage> messages;
    for (const auto& m : item.messages)
      if (m.is_object() && m.contains("content") && m["content"].is_string())
        messages.push_back({m.value("role", std::string("user")), m["content"].get<std::string>(), ""});
    // A model without a chat template, or whose template rejects the messages: role-prefixed lines.
    auto rendered = formatter.plain_fallback() ? Expected<std::string>(messages_to_text(item.messages))
                                               : formatter.render(messages);
    text = rendered ? *rendered : messages_to_text(item.messages);
  }
  return fit_prompt_length(tokenize_prompt(tok, text), item.prompt_tokens, tok.bos_id());
}

RequestOutcome LocalTarget::send(const WorkItem& item) {
  Pending pending;
  pending.out.prompt_tokens = item.prompt_tokens;
  GenerationRequest req;
  req.prompt = prompt_tokens(item);
  req.max_tokens = static_cast<int32_t>(item.max_tokens);
  req.ignore_eos = true;
  req.sampling.seed = options_.seed + static_cast<uint64_t>(item.index);
  req.on_event = [this, &pending](const TokenEvent& ev) {
    const double now = now_seconds();
    std::lock_guard<std::mutex> lock(mutex_);
    RequestOutcome& out = pending.out;
    if (ev.token >= 0) {
      if (out.chunk_times.empty()) out.t_first_token = now;
      out.chunk_times.push_back(now);
    }
    if (!ev.finished) return;
    out.t_end = now;
    out.prompt_tokens = ev.stats.n_prompt;
    out.output_tokens = static_cast<int64_t>(out.chunk_times.size());
    if (ev.reason == FinishReason::kError || ev.reason == FinishReason::kCancelled) {
      out.error = ErrorKind::kEngine;
      out.error_detail = ev.status.is_ok() ? finish_reason_name(ev.reason) : ev.status.to_string();
    }
    pending.finished = true;
    finished_.notify_all();
  };
  pending.out.t_sent = now_seconds();
  auto id = engine_->submit(std::move(req));
  if (!id) {
    pending.out.t_end = now_seconds();
    pending.out.error = ErrorKind::kEngine;
    pending.out.error_detail = id.status().to_string();
    return pending.out;
  }
  std::unique_lock<std::mutex> lock(mutex_);
  ++submitted_;
  wake_.notify_one();
  finished_.wait(lock, [&] { return pending.finished || !engine_status_.is_ok(); });
  if (!pending.finished) {
    // The engine thread has stopped; the event callback can no longer run.
    pending.out.t_end = now_seconds();
    pending.out.error = ErrorKind::kEngine;
    pending.out.error_detail = engine_status_.to_string();
  }
  return pending.out;
}

}  // namespace fathom::loadgen
