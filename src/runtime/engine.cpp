#include "runtime/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <optional>

#include "core/mapped_file.h"
#include "core/process.h"
#include "gguf/gguf.h"
#include "model/memory_need.h"
#include "runtime/context_shift.h"
#include "runtime/stop_strings.h"

namespace fathom {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "?";
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Per-request state on the engine thread.
// The SchedSequence base is the scheduler's view (tokens and cache progress), so a scheduled
// sequence converts back to its request with a static_cast.
struct Engine::Active : SchedSequence {
  RequestId id = 0;
  GenerationRequest request;
  std::unique_ptr<Sampler> sampler;
  Utf8StreamDecoder utf8;     // token bytes -> complete UTF-8 text
  StopStringMatcher stop;     // withholds text that may begin a stop string
  std::optional<GrammarMatcher> grammar;  // when the request has a grammar: its parse so far
  RequestStats stats;
  int64_t n_prompt = 0;
  RequestId prefill_leader = 0;  // a request with the same prompt whose prefill this one waits for (0: none)
};

MemoryDemand engine_memory_demand(const EngineOptions& options) {
  MemoryDemand d;
  d.n_ctx = options.n_ctx;
  d.n_seq = options.n_seq_max;
  d.block_size = options.block_size;
  d.kv_types = options.kv_types;
  d.step_tokens = options.step_token_budget;
  // A step samples at most one row per scheduled sequence, into the engine's logits or the
  // model's forward_top buffer: both grow to it.
  const int64_t running = options.max_running > 0 ? options.max_running : options.n_seq_max;
  d.logit_rows = 2 * std::min<int64_t>(running, options.step_token_budget);
  d.device = options.device;
  d.placement = options.placement;
  d.count_weight_copies = false;
  return d;
}

Expected<std::unique_ptr<Engine>> Engine::create(const EngineOptions& options) {
  const double t0 = now_seconds();
  auto e = std::unique_ptr<Engine>(new Engine());
  LoadOptions lo;
  lo.n_threads = options.n_threads;
  lo.device = options.device;
  lo.placement = options.placement;
  lo.on_repack_progress = options.on_repack_progress;
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> gguf_file, gguf::GgufFile::open(options.model_path, options.map));
  FATHOM_ASSIGN_OR_RETURN(e->model_, Model::from_file(std::move(gguf_file), lo));
  FATHOM_ASSIGN_OR_RETURN(e->tokenizer_, Tokenizer::from_gguf(e->model_->file()));
  const ModelConfig& c = e->model_->config();
  if (e->tokenizer_->n_vocab() > c.n_vocab)
    return error(ErrorCode::kInvalidFile, strprintf("%s: tokenizer has %d tokens but the embedding only %lld rows",
                                                    options.model_path.c_str(), e->tokenizer_->n_vocab(), static_cast<long long>(c.n_vocab)));
  e->n_ctx_ = effective_context(c, options.n_ctx);
  if (options.block_size <= 0 || options.n_seq_max <= 0 || options.step_token_budget <= 0)
    return error(ErrorCode::kInvalidArgument, "block size, sequence count and step budget must be positive");
  if (options.context_shift_keep < -1 || options.context_shift_keep > e->n_ctx_ - 2)
    return error(ErrorCode::kInvalidArgument,
                 strprintf("--context-shift=%lld keeps more tokens than a shift can: the context holds %lld, so keep at most %lld",
                           static_cast<long long>(options.context_shift_keep), static_cast<long long>(e->n_ctx_),
                           static_cast<long long>(e->n_ctx_ - 2)));
  e->context_shift_keep_ = options.context_shift_keep;
  // The weights are loaded (their copies already taken, so MemAvailable has them): what is left
  // to allocate is the KV pool, all at once below, and the scratch the steps grow.
  const MemoryDemand demand = engine_memory_demand(options);
  FATHOM_ASSIGN_OR_RETURN(const MemoryNeed need, memory_need(e->model_->file(), c, demand, 0));
  if (options.check_memory) {
    const Expected<HostMemory> host = read_host_memory();
    if (host) {
      MemoryWording wording;
      wording.ctx_flag = "n_ctx";
      wording.seq_flag = "n_seq_max";
      wording.remedy = "lower n_ctx or n_seq_max (in fathom run/serve: -c/--ctx-size, -np/--parallel)";
      FATHOM_RETURN_IF_ERROR(check_memory(need, host->available_bytes, c, demand, wording));
    }
  }
  FATHOM_RETURN_IF_ERROR(check_pool_addressable(need.kv_blocks, options.block_size));
  KvCacheShape shape = with_types(e->model_->kv_shape(e->n_ctx_), options.kv_types);
  shape.block_size = options.block_size;
  e->kv_ = std::make_unique<KvCache>(shape, static_cast<int32_t>(need.kv_blocks));
  SchedulerOptions so;
  so.step_token_budget = options.step_token_budget;
  so.max_running = options.max_running > 0 ? options.max_running : options.n_seq_max;
  e->scheduler_ = std::make_unique<Scheduler>(so);
  if (options.prefix_cache) {
    e->kv_->enable_prefix_cache();
    KvCache* kv = e->kv_.get();
    e->scheduler_->set_admit_hook([kv](SchedSequence& s) { s.n_computed = kv->reuse_prefix(s.seq_id, s.tokens); });
  }
  const gguf::GgufFile& file = e->model_->file();
  e->persist_key_.fingerprint = fingerprint_model_file(file.file_data(), file.file_size(), file.data_offset());
  e->persist_key_.architecture = c.arch_name;
  e->load_seconds_ = now_seconds() - t0;
  return e;
}

std::vector<std::string> Engine::placement_report() const {
  const Placement& p = model_->placement();
  if (p.device == "cpu") return {};
  const KvCacheShape& shape = kv_->shape();
  const int64_t n_layer = std::max<int64_t>(1, shape.n_layer);
  std::vector<std::string> lines = p.describe(static_cast<uint64_t>(kv_->total_bytes()) / static_cast<uint64_t>(n_layer));
  // Matrices placed on the device whose type its matmul kernels do not take run on the CPU.
  std::map<DType, std::vector<std::string>> on_cpu;  // by weight type: tensor names
  for (const TensorPlacement& t : p.tensors) {
    const gguf::TensorInfo* info = model_->file().find_tensor(t.name);
    if (t.where != Placed::kDevice || info == nullptr || info->view.n_dims < 2 || t.name == "token_embd.weight") continue;
    if (!model_->backend().on_device(Op::kMatmul, info->view.dtype)) on_cpu[info->view.dtype].push_back(t.name);
  }
  for (const auto& [type, names] : on_cpu)
    lines.push_back(strprintf("%zu %s matrices (%s%s) multiply on the CPU: the %s backend has no %s matmul kernel", names.size(),
                              dtype_name(type), names[0].c_str(), names.size() > 1 ? ", ..." : "", p.device.c_str(),
                              dtype_name(type)));
  // The cache's element types the device's attention kernels do not read (MLA has no V rows).
  std::vector<std::string> uncovered;
  if (!model_->backend().on_device(Op::kAttention, shape.k_type)) uncovered.push_back(strprintf("K %s", dtype_name(shape.k_type)));
  if (shape.v_width > 0 && !model_->backend().on_device(Op::kAttention, shape.v_type))
    uncovered.push_back(strprintf("V %s", dtype_name(shape.v_type)));
  if (!uncovered.empty()) {
    std::string covered;
    for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0})
      if (model_->backend().on_device(Op::kAttention, t)) covered += std::string(covered.empty() ? "" : ", ") + dtype_name(t);
    lines.push_back(strprintf("KV cache %s: attention runs on the CPU (the %s attention kernels read %s caches; -ctk f16 -ctv "
                              "f16 keeps it on the device)",
                              uncovered.size() == 2 ? (uncovered[0] + ", " + uncovered[1]).c_str() : uncovered[0].c_str(),
                              p.device.c_str(), covered.c_str()));
  }
  return lines;
}

Expected<KvPersistSaveStats> Engine::save_prefix_cache(const std::string& path) const {
  return fathom::save_prefix_cache(*kv_, persist_key_, path);
}

Expected<KvPersistRestoreStats> Engine::restore_prefix_cache(const std::string& path) {
  return fathom::restore_prefix_cache(*kv_, persist_key_, path);
}

Engine::~Engine() = default;

Expected<RequestId> Engine::submit(GenerationRequest request) {
  if (request.prompt.empty()) return error(ErrorCode::kInvalidArgument, "the prompt is empty");
  if (static_cast<int64_t>(request.prompt.size()) >= n_ctx_)
    return error(ErrorCode::kOutOfRange, strprintf("the prompt has %zu tokens; the context holds %lld (raise --ctx-size)",
                                                   request.prompt.size(), static_cast<long long>(n_ctx_)));
  for (int32_t t : request.prompt)
    if (t < 0 || t >= model_->config().n_vocab)
      return error(ErrorCode::kInvalidArgument, strprintf("prompt token id %d is out of range", t));
  if (request.max_tokens < 0) return error(ErrorCode::kInvalidArgument, "max_tokens must not be negative");
  for (const auto& [token, bias] : request.logit_bias)
    if (token < 0 || token >= model_->config().n_vocab || !std::isfinite(bias))
      return error(ErrorCode::kInvalidArgument, strprintf("logit_bias: token id %d is out of range or its bias is not finite", token));
  auto a = std::make_unique<Active>();
  a->request = std::move(request);
  a->n_prompt = static_cast<int64_t>(a->request.prompt.size());
  a->tokens = a->request.prompt;
  a->sampler = std::make_unique<Sampler>(a->request.sampling);
  for (int32_t t : a->request.prompt) a->sampler->accept(t, /*is_prompt=*/true);
  a->stop = StopStringMatcher(a->request.stop);
  a->stats.n_prompt = a->n_prompt;
  a->stats.t_submit = now_seconds();
  std::lock_guard<std::mutex> lock(mutex_);
  a->id = next_id_++;
  a->seq_id = static_cast<int32_t>(a->id & 0x7fffffff);
  const RequestId id = a->id;
  incoming_.push_back(std::move(a));
  return id;
}

void Engine::cancel(RequestId id) {
  std::lock_guard<std::mutex> lock(mutex_);
  cancelled_.push_back(id);
}

bool Engine::has_work() {
  std::lock_guard<std::mutex> lock(mutex_);
  return !incoming_.empty() || !active_.empty() || !cancelled_.empty();
}

void Engine::admit_incoming() {
  std::vector<std::unique_ptr<Active>> incoming;
  std::vector<RequestId> cancelled;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    incoming.swap(incoming_);
    cancelled.swap(cancelled_);
  }
  for (auto& a : incoming) {
    Active* raw = a.get();
    active_[raw->id] = std::move(a);
    if (raw->request.max_tokens == 0) {
      finish(*raw, FinishReason::kLength, Status::ok());
      continue;
    }
    if (raw->request.sampling.grammar) {
      // Here, not in submit(): the trie and the grammar cache belong to the engine thread.
      if (!token_trie_) token_trie_ = TokenTrie::build(*tokenizer_);
      auto matcher = GrammarMatcher::create(grammar_cache_.get(raw->request.sampling.grammar, token_trie_));
      if (!matcher) {
        finish(*raw, FinishReason::kError, matcher.status());
        continue;
      }
      raw->grammar.emplace(std::move(matcher).value());
    }
    raw->prefill_leader = prefill_leader_for(*raw);
    if (raw->prefill_leader) deferred_.push_back(raw->id);
    else scheduler_->enqueue(raw);
  }
  for (RequestId id : cancelled) {
    auto it = active_.find(id);
    if (it != active_.end()) finish(*it->second, FinishReason::kCancelled, Status::ok());
  }
  release_deferred();
}

// n > 1 (or any requests with one prompt, arriving together): the first is prefilled, the
// others wait until its prompt blocks are in the prefix cache and are then admitted with them
// (the scheduler's admit hook), so the prompt is computed once rather than n times.
RequestId Engine::prefill_leader_for(const Active& a) const {
  if (!kv_->prefix_cache_enabled() || a.n_prompt <= kv_->shape().block_size) return 0;  // no whole block to share
  for (const auto& [id, other] : active_)
    if (id != a.id && other->prefill_leader == 0 && other->stats.n_context_shifts == 0 && other->n_computed < other->n_prompt &&
        other->request.prompt == a.request.prompt)
      return id;
  return 0;
}

void Engine::release_deferred() {
  auto released = [&](RequestId id) {
    auto it = active_.find(id);
    if (it == active_.end()) return true;  // finished or cancelled while waiting
    Active& a = *it->second;
    auto leader = active_.find(a.prefill_leader);
    if (leader != active_.end() && leader->second->stats.n_context_shifts == 0 &&
        leader->second->n_computed < leader->second->n_prompt)
      return false;
    a.prefill_leader = 0;
    scheduler_->enqueue(&a);
    return true;
  };
  deferred_.erase(std::remove_if(deferred_.begin(), deferred_.end(), released), deferred_.end());
}

void Engine::finish(Active& a, FinishReason reason, Status status, bool release_held_text) {
  TokenEvent ev;
  ev.id = a.id;
  ev.finished = true;
  ev.reason = reason;
  ev.status = std::move(status);
  // Text withheld as a possible stop-string start is released, unless a stop string matched.
  if (release_held_text) ev.text = a.stop.flush(a.utf8.flush());
  a.stats.t_end = now_seconds();
  if (a.stats.t_first_token == 0.0) a.stats.t_first_token = a.stats.t_end;
  ev.stats = a.stats;
  scheduler_->remove(&a);
  kv_->free_sequence(a.seq_id);
  const RequestId id = a.id;
  if (a.request.on_event) a.request.on_event(ev);
  active_.erase(id);
}

void Engine::emit_token(Active& a, int32_t token, const float* logits) {
  a.tokens.push_back(token);
  a.sampler->accept(token);
  ++a.stats.n_generated;
  if (a.stats.n_generated == 1) a.stats.t_first_token = now_seconds();
  if (!a.request.ignore_eos && tokenizer_->is_end_of_generation(token)) {
    finish(a, FinishReason::kStop, Status::ok());
    return;
  }
  TokenEvent ev;
  ev.id = a.id;
  ev.token = token;
  if (a.request.logprobs > 0) {
    // The chosen token first (its own log probability), then the top n alternatives.
    const int64_t n_vocab = model_->config().n_vocab;
    ev.top_logprobs.push_back({token, Sampler::logprob_of(logits, n_vocab, token)});
    const std::vector<TokenLogprob> top = a.sampler->top_logprobs(logits, n_vocab, a.request.logprobs);
    ev.top_logprobs.insert(ev.top_logprobs.end(), top.begin(), top.end());
  }
  const StopStringMatcher::Result r = a.stop.push(a.utf8.push(tokenizer_->token_to_piece(token, false)));
  ev.text = r.text;
  if (r.matched) {
    ev.finished = false;
    if (a.request.on_event) a.request.on_event(ev);
    finish(a, FinishReason::kStop, Status::ok(), /*release_held_text=*/false);
    return;
  }
  if (a.grammar && a.grammar->is_terminated()) {
    // The grammar admits nothing more: the output is complete.
    if (a.request.on_event) a.request.on_event(ev);
    finish(a, FinishReason::kStop, Status::ok());
    return;
  }
  const bool at_length = a.stats.n_generated >= a.request.max_tokens;
  const bool at_context = static_cast<int64_t>(a.tokens.size()) >= n_ctx_;
  if (a.request.on_event) a.request.on_event(ev);
  if (at_context && !at_length && context_shift_keep_ >= 0) shift_context(a);
  else if (at_length || at_context) finish(a, FinishReason::kLength, Status::ok());
}

void Engine::shift_context(Active& a) {
  // The sampled token is not cached yet: tokens[0, n_computed) are, and n_computed = n_ctx - 1.
  const ContextShift shift = plan_context_shift(a.n_computed, context_shift_keep_);
  ShiftPath taken = ShiftPath::kRotate;
  a.n_computed = apply_context_shift(*model_, *kv_, a.seq_id, a.tokens, a.n_computed, shift, &taken);
  ++a.stats.n_context_shifts;
}

// The row is the engine's scratch, rewritten by the next forward pass, so it is biased in place.
// The sampler's penalties and the reported log probabilities then see the biased logits.
static void apply_logit_bias(const std::vector<std::pair<int32_t, float>>& bias, float* row) {
  for (const auto& [token, value] : bias) {
    // OpenAI documents -100 as a ban; a finite -100 would not ban a token 100 logits ahead.
    if (value <= -100.0f) row[token] = -std::numeric_limits<float>::infinity();
    else row[token] += value;
  }
}

Status Engine::step() {
  admit_incoming();
  const std::vector<ScheduledChunk> chunks = scheduler_->schedule(*kv_);
  if (chunks.empty()) return Status::ok();
  batch_.clear();
  std::vector<Active*> sampled;  // requests whose last scheduled token yields logits, in batch order
  for (const ScheduledChunk& c : chunks) {
    const bool completes = c.seq->n_computed + c.n_tokens == static_cast<int64_t>(c.seq->tokens.size());
    for (int64_t i = 0; i < c.n_tokens; ++i) {
      const int64_t pos = c.seq->n_computed + i;
      batch_.add(c.seq->tokens[static_cast<size_t>(pos)], static_cast<int32_t>(pos), c.seq->seq_id, completes && i == c.n_tokens - 1);
    }
    if (completes) sampled.push_back(static_cast<Active*>(c.seq));
  }
  // When every row's sampler needs only its largest logits (greedy, top-k, no penalties, no
  // logprobs), only those come back: a device then sends k values per row, not the vocabulary.
  int64_t k = 0;
  bool only_top = !sampled.empty();
  for (const Active* a : sampled) {
    // A bias can lift a token from outside the top k, so biased rows need the whole row.
    const int64_t need = a->request.logprobs > 0 || !a->request.logit_bias.empty()
                             ? 0 : Sampler::candidates_needed(a->sampler->params(), kMaxTopCandidates);
    only_top = only_top && need > 0;
    k = std::max(k, need);
  }
  if (!only_top) k = 0;
  top_.k = k;
  const Status st = k > 0 ? model_->forward_top(batch_, *kv_, top_) : model_->forward(batch_, *kv_, logits_);
  if (!st.is_ok()) {
    // The step failed as a whole (e.g. a lone sequence outgrew the cache): end its requests.
    for (const ScheduledChunk& c : chunks) finish(*static_cast<Active*>(c.seq), FinishReason::kError, st);
    return Status::ok();
  }
  for (const ScheduledChunk& c : chunks) {
    c.seq->n_computed += c.n_tokens;
    kv_->cache_computed_blocks(c.seq->seq_id, c.seq->tokens, c.seq->n_computed);
  }
  const int64_t n_vocab = model_->config().n_vocab;
  for (size_t r = 0; r < sampled.size(); ++r) {
    Active* a = sampled[r];
    if (k > 0) {
      const size_t at = r * static_cast<size_t>(top_.k);
      emit_token(*a, a->sampler->sample_top(top_.ids.data() + at, top_.values.data() + at, top_.k), nullptr);
      continue;
    }
    float* row = logits_.data() + static_cast<int64_t>(r) * n_vocab;
    apply_logit_bias(a->request.logit_bias, row);  // before the mask: a bias cannot revive a masked token
    if (a->grammar) {
      const double t0 = now_seconds();
      const Status ms = a->grammar->apply_mask(row, n_vocab);
      a->stats.grammar_seconds += now_seconds() - t0;
      if (!ms.is_ok()) {
        finish(*a, FinishReason::kError, ms);
        continue;
      }
    }
    const int32_t token = a->sampler->sample(row, n_vocab);
    if (a->grammar) {
      const double t0 = now_seconds();
      const Status as = a->grammar->accept(token);
      a->stats.grammar_seconds += now_seconds() - t0;
      if (!as.is_ok()) {
        finish(*a, FinishReason::kError, as);
        continue;
      }
    }
    emit_token(*a, token, row);
  }
  return Status::ok();
}

Status Engine::run_until_idle() {
  while (has_work()) FATHOM_RETURN_IF_ERROR(step());
  return Status::ok();
}

}  // namespace fathom
