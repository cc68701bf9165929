#include "kuiper/engine/engine.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <unordered_set>

#include "kernels/kernels.h"
#include "kuiper/base/allocator.h"
#include "kuiper/engine/block_pool.h"
#include "kuiper/engine/stop_text.h"
#include "kuiper/tokenizer/utf8.h"

namespace kuiper::engine {

std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "?";
}

namespace {

// A request on its way through the engine. `tokens` is the prompt followed by what has been
// generated; the first `cached` of them have their keys and values in the cache blocks. A
// preempted sequence keeps its tokens and sampler, so recomputing its cache changes nothing.
struct Sequence {
  RequestId id = 0;
  Request request;
  std::vector<int32_t> tokens;
  int prompt_tokens = 0;
  int cached = 0;
  std::vector<int32_t> blocks;
  Sampler sampler;
  Utf8Stream utf8;
  StopText stop_text;
  Update update;  // what the next callback reports

  Sequence(RequestId id, Request r)
      : id(id),
        request(std::move(r)),
        tokens(request.prompt),
        prompt_tokens(int(tokens.size())),
        sampler(request.params.sampling),
        stop_text(request.params.stop_strings) {
    update.prompt_tokens = prompt_tokens;
  }
  int generated() const { return int(tokens.size()) - prompt_tokens; }
  int uncached() const { return int(tokens.size()) - cached; }
};

using SequencePtr = std::unique_ptr<Sequence>;

// The model bounds what one step may hold.
EngineOptions fitted(EngineOptions o, const LlamaModel& m) {
  o.max_running = std::min(o.max_running, m.max_sequences());
  o.token_budget = std::min(o.token_budget, m.max_batch());
  return o;
}

int blocks_for(int tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

}  // namespace

struct Engine::State {
  LlamaModel& model;
  const Tokenizer* tokenizer;  // null: no text
  EngineOptions options;
  BlockPool pool;
  int block_size;
  int max_tokens;  // per sequence

  // Shared with submitting threads.
  mutable std::mutex mutex;
  std::condition_variable wake;
  std::deque<SequencePtr> incoming;
  std::unordered_set<RequestId> cancelled;
  RequestId next_id = 1;
  bool stopping = false;
  EngineStats published;  // stats as of the last step

  // The engine thread's own.
  std::deque<SequencePtr> waiting;   // admitted in order; preempted ones go back to the front
  std::vector<SequencePtr> running;  // in order of admission
  EngineStats stats;
  Tensor next_ids;  // int32 [max_running] on the model's device: greedy picks

  State(LlamaModel& m, const Tokenizer* t, const EngineOptions& o)
      : model(m),
        tokenizer(t),
        options(fitted(o, m)),
        pool(m.kv_blocks()),
        block_size(m.kv_block_size()),
        max_tokens(std::min(m.context(), m.kv_blocks() * m.kv_block_size())),
        next_ids(DType::kI32, {std::max(o.max_running, 1)}, m.device()) {
    KUIPER_CHECK(options.max_running > 0, "the engine must run at least one sequence");
    KUIPER_CHECK(options.token_budget >= options.max_running,
                 "the token budget must cover one decode row per running sequence");
  }

  void take_incoming();
  void count_waiting();         // takes the mutex
  void count_waiting_locked();  // the caller holds it
  void finish(Sequence& s, FinishReason reason, std::string error = {});
  void drop_cancelled();
  void admit();
  void preempt(SequencePtr s);
  bool reserve_decode_blocks();
  bool run_step();
  void advance(Sequence& s, int32_t next);
  void publish();
};

void Engine::State::take_incoming() {
  std::lock_guard lock(mutex);
  for (auto& s : incoming) {
    stats.prompt_tokens += s->prompt_tokens;
    waiting.push_back(std::move(s));
  }
  incoming.clear();
  count_waiting_locked();
}

// submit() counts incoming + published.waiting against the queue limit, so the count follows
// every change of `waiting` as it happens, not at the step's publish(): a request taken in stays
// counted, and one admitted (whose first token a client may see before the step ends) is not.
void Engine::State::count_waiting_locked() { published.waiting = int(waiting.size()); }
void Engine::State::count_waiting() {
  std::lock_guard lock(mutex);
  count_waiting_locked();
}

void Engine::State::finish(Sequence& s, FinishReason reason, std::string error) {
  pool.release(s.blocks);
  s.update.text += s.stop_text.push(s.utf8.flush());
  s.update.text += s.stop_text.flush();
  s.update.finished = true;
  s.update.reason = reason;
  s.update.error = std::move(error);
  s.update.completion_tokens = s.generated();
  if (s.request.on_update) s.request.on_update(s.update);
}

void Engine::State::drop_cancelled() {
  std::unordered_set<RequestId> ids;
  {
    std::lock_guard lock(mutex);
    ids.swap(cancelled);
  }
  if (ids.empty()) return;
  auto drop = [&](auto& list) {
    std::erase_if(list, [&](SequencePtr& s) {
      if (!ids.contains(s->id)) return false;
      finish(*s, FinishReason::kCancelled);
      return true;
    });
  };
  drop(running);
  drop(waiting);
}

// Admits waiting sequences in order while there is room: a running slot, and blocks for every
// token they bring plus the one they generate next.
void Engine::State::admit() {
  while (!waiting.empty() && int(running.size()) < options.max_running) {
    Sequence& s = *waiting.front();
    const int need = blocks_for(int(s.tokens.size()) + 1, block_size);
    if (!pool.allocate(need, s.blocks)) break;
    running.push_back(std::move(waiting.front()));
    waiting.pop_front();
  }
  // submit() refuses what could never fit, so an idle pool always admits the first waiting one.
  if (running.empty() && !waiting.empty()) {
    finish(*waiting.front(), FinishReason::kError, "the KV cache cannot hold this sequence");
    waiting.pop_front();
  }
}

// Frees a running sequence's cache and queues it first among the waiting: it is recomputed from
// its tokens when blocks are free again.
void Engine::State::preempt(SequencePtr s) {
  pool.release(s->blocks);
  s->cached = 0;
  ++stats.preemptions;
  waiting.push_front(std::move(s));
  count_waiting();
}

// Every running sequence needs a cache block for the token it feeds next; when the pool runs dry
// the most recently admitted sequences give theirs up. False when nothing is left to run.
bool Engine::State::reserve_decode_blocks() {
  for (size_t i = 0; i < running.size();) {
    Sequence& s = *running[i];
    const int need = blocks_for(int(s.tokens.size()), block_size) - int(s.blocks.size());
    if (need <= 0 || pool.allocate(need, s.blocks)) {
      ++i;
      continue;
    }
    preempt(std::move(running.back()));  // the newest, possibly s itself
    running.pop_back();
  }
  return !running.empty();
}

// Feeds one forward pass: every running sequence's uncached tokens, decode rows first, prefill
// chunks from the remaining token budget. Samples the sequences whose last token was fed.
bool Engine::State::run_step() {
  if (!reserve_decode_blocks()) return false;
  std::vector<SequenceChunk> chunks;
  std::vector<Sequence*> fed, sampled;
  int budget = options.token_budget;
  auto feed = [&](Sequence& s, int n) {
    const bool last = n == s.uncached();
    chunks.push_back({std::span(s.tokens).subspan(size_t(s.cached), size_t(n)), s.cached,
                      s.blocks, last});
    fed.push_back(&s);
    if (last) sampled.push_back(&s);
    budget -= n;
  };
  for (auto& s : running)
    if (s->uncached() == 1) feed(*s, 1);
  for (auto& s : running)
    if (s->uncached() > 1 && budget > 0) feed(*s, std::min(budget, s->uncached()));
  if (chunks.empty()) return false;

  const Tensor logits = model.forward_batch(chunks);
  for (size_t i = 0; i < chunks.size(); ++i) fed[i]->cached += int(chunks[i].tokens.size());

  // Greedy picks come from one argmax over the device logits; sampling reads its rows on the host.
  const auto n = int64_t(sampled.size());
  std::vector<int32_t> greedy(size_t(n), -1);
  if (std::any_of(sampled.begin(), sampled.end(), [](Sequence* s) { return s->sampler.greedy(); })) {
    const Tensor picks = next_ids.rows(0, n);
    kernels::registry().argmax.find(model.device(), DType::kF32)(logits, picks, model.device_context());
    copy_bytes(greedy.data(), Device::kCPU, picks.raw_data(), model.device(),
               size_t(n) * sizeof(int32_t), &model.device_context());
  }
  Tensor host_row;
  for (int64_t r = 0; r < n; ++r) {
    Sequence& s = *sampled[size_t(r)];
    if (s.sampler.greedy()) {
      advance(s, greedy[size_t(r)]);
      continue;
    }
    if (host_row.empty()) host_row = Tensor(DType::kF32, {1, logits.dim(1)});
    host_row.copy_from(logits.rows(r, r + 1), &model.device_context());
    advance(s, s.sampler.sample(host_row.span<float>()));
  }
  // Finished sequences leave; their blocks went back to the pool in finish().
  std::erase_if(running, [](const SequencePtr& s) { return s->update.finished; });
  return true;
}

// Appends a sampled token, streams its text and ends the sequence where it should end.
void Engine::State::advance(Sequence& s, int32_t next) {
  const GenerationParams& p = s.request.params;
  s.tokens.push_back(next);
  s.update.tokens.push_back(next);
  ++stats.generated_tokens;
  const bool stop_id = (!p.ignore_eos && model.config().is_eos(next)) ||
                       std::find(p.stop_ids.begin(), p.stop_ids.end(), next) != p.stop_ids.end();
  bool stop_string = false;
  // A model's vocabulary may be larger than its tokenizer's (Qwen2.5 pads it): such ids print
  // nothing.
  if (!stop_id && tokenizer && next < tokenizer->vocab_size()) {
    s.update.text += s.stop_text.push(s.utf8.push(tokenizer->decode_token(next)));
    stop_string = s.stop_text.stopped();
  }
  if (stop_id || stop_string) return finish(s, FinishReason::kStop);
  if (s.generated() >= p.max_tokens || int(s.tokens.size()) >= max_tokens)
    return finish(s, FinishReason::kLength);
  s.update.completion_tokens = s.generated();
  if (s.request.on_update) s.request.on_update(s.update);
  s.update.text.clear();
  s.update.tokens.clear();
}

void Engine::State::publish() {
  stats.running = int(running.size());
  stats.kv_blocks_used = pool.used();
  stats.kv_blocks_total = pool.total();
  stats.waiting = int(waiting.size());  // stats() adds the requests not yet taken in
  std::lock_guard lock(mutex);
  published = stats;
}

Engine::Engine(LlamaModel& model, const Tokenizer& tokenizer, const EngineOptions& options)
    : state_(std::make_unique<State>(model, &tokenizer, options)) {
  state_->publish();
}

Engine::Engine(LlamaModel& model, const EngineOptions& options)
    : state_(std::make_unique<State>(model, nullptr, options)) {
  state_->publish();
}

Engine::~Engine() = default;

RequestId Engine::submit(Request request) {
  State& st = *state_;
  const auto n = int64_t(request.prompt.size());
  if (n == 0) throw Refused(Refused::Kind::kInvalid, "the prompt has no tokens");
  if (request.params.max_tokens <= 0)
    throw Refused(Refused::Kind::kInvalid,
                  str_cat("max_tokens must be positive, got ", request.params.max_tokens));
  for (int32_t id : request.prompt)
    if (id < 0 || id >= st.model.config().vocab_size)
      throw Refused(Refused::Kind::kInvalid, str_cat("token id ", id, " is outside the vocabulary of ",
                                                     st.model.config().vocab_size));
  if (n + 1 > st.max_tokens)
    throw Refused(Refused::Kind::kTooLong,
                  str_cat("the prompt has ", n, " tokens but a sequence holds at most ", st.max_tokens,
                          " (prompt and at least one new token)"));
  // Checked here so that a bad sampling option is the submitter's error, not the engine's.
  try {
    Sampler check(request.params.sampling);
  } catch (const Error& e) {
    throw Refused(Refused::Kind::kInvalid, e.what());
  }
  std::lock_guard lock(st.mutex);
  if (int(st.incoming.size() + st.published.waiting) >= st.options.max_waiting)
    throw Refused(Refused::Kind::kQueueFull,
                  str_cat("the queue is full (", st.options.max_waiting, " waiting requests)"));
  const RequestId id = st.next_id++;
  st.incoming.push_back(std::make_unique<Sequence>(id, std::move(request)));
  st.wake.notify_one();
  return id;
}

void Engine::cancel(RequestId id) {
  std::lock_guard lock(state_->mutex);
  state_->cancelled.insert(id);
  state_->wake.notify_one();
}

bool Engine::step() {
  State& st = *state_;
  st.take_incoming();
  st.drop_cancelled();
  st.admit();
  st.count_waiting();
  bool worked = false;
  try {
    worked = st.run_step();
  } catch (const Error& e) {
    // A failed forward pass (e.g. a device fault) ends every running sequence with the reason;
    // the waiting ones still get their turn.
    for (auto& s : st.running) st.finish(*s, FinishReason::kError, e.what());
    st.running.clear();
    worked = true;
  }
  st.publish();
  return worked;
}

void Engine::run_until_idle() {
  while (step() || stats().waiting > 0) {
  }
}

void Engine::serve() {
  State& st = *state_;
  for (;;) {
    {
      std::lock_guard lock(st.mutex);
      if (st.stopping) break;
    }
    if (step()) continue;
    std::unique_lock lock(st.mutex);
    if (st.stopping) break;
    st.wake.wait(lock, [&] { return st.stopping || !st.incoming.empty() || !st.cancelled.empty(); });
    if (st.stopping) break;
  }
  st.take_incoming();
  for (auto& s : st.running) st.finish(*s, FinishReason::kCancelled);
  for (auto& s : st.waiting) st.finish(*s, FinishReason::kCancelled);
  st.running.clear();
  st.waiting.clear();
  st.publish();
}

void Engine::stop() {
  std::lock_guard lock(state_->mutex);
  state_->stopping = true;
  state_->wake.notify_all();
}

EngineStats Engine::stats() const {
  std::lock_guard lock(state_->mutex);
  EngineStats s = state_->published;
  s.waiting = int(state_->incoming.size()) + s.waiting;
  return s;
}

int Engine::max_sequence_tokens() const { return state_->max_tokens; }
const LlamaModel& Engine::model() const { return state_->model; }
const Tokenizer& Engine::tokenizer() const {
  KUIPER_CHECK(state_->tokenizer, "this engine has no tokenizer");
  return *state_->tokenizer;
}

}  // namespace kuiper::engine
