#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kuiper/base/error.h"
#include "kuiper/model/llama_model.h"
#include "kuiper/sampler/sampler.h"
#include "kuiper/tokenizer/tokenizer.h"

namespace kuiper::engine {

// What a request asks for besides its prompt.
struct GenerationParams {
  SamplerOptions sampling{.temperature = 0.f};  // temperature 0: greedy
  int max_tokens = 256;                         // new tokens at most
  // Generation ends at the model's end-of-sequence ids and at these; the stop token itself is
  // counted but gives no text.
  std::vector<int32_t> stop_ids;
  // Generation ends when the text contains one of these; the text ends before the match.
  std::vector<std::string> stop_strings;
  bool ignore_eos = false;  // generate max_tokens whatever comes (benchmarks)
};

enum class FinishReason { kStop, kLength, kCancelled, kError };
std::string_view finish_reason_name(FinishReason r);  // "stop", "length", "cancelled", "error"

// What a request's callback receives: new text and tokens since the last update, and once, at
// the end, finished == true with the reason.
struct Update {
  std::string text;             // complete UTF-8; held back while it might begin a stop string
  std::vector<int32_t> tokens;  // the ids sampled since the last update
  bool finished = false;
  FinishReason reason = FinishReason::kStop;
  std::string error;  // kError: why (e.g. a device failure)
  int prompt_tokens = 0;
  int completion_tokens = 0;  // so far
};

struct Request {
  std::vector<int32_t> prompt;
  GenerationParams params;
  // Called on the thread that runs the engine (step / run_until_idle / serve), never
  // concurrently for one request; the last call has finished == true. Must not block for long:
  // every other sequence waits meanwhile.
  std::function<void(const Update&)> on_update;
};

using RequestId = uint64_t;

// Why submit() refused a request; the server maps them to HTTP statuses (400, 503).
class Refused : public Error {
 public:
  enum class Kind { kInvalid, kTooLong, kQueueFull };
  Refused(Kind kind, const std::string& message) : Error(message), kind(kind) {}
  Kind kind;
};

struct EngineOptions {
  int max_running = 64;    // sequences decoded together
  int token_budget = 512;  // rows of one step: every running sequence's decode row + prefill chunks
  int max_waiting = 1024;  // requests queued beyond the running ones; more are refused
};

struct EngineStats {
  int running = 0;
  int waiting = 0;
  int kv_blocks_used = 0;
  int kv_blocks_total = 0;
  int64_t preemptions = 0;       // sequences whose cache was dropped to make room (recomputed)
  int64_t prompt_tokens = 0;     // totals since start
  int64_t generated_tokens = 0;
};

// Continuous batching over one model: requests are admitted while cache blocks are free, and each
// step feeds every running sequence's next token plus prefill chunks in one forward pass.
class Engine {
 public:
  Engine(LlamaModel& model, const Tokenizer& tokenizer, const EngineOptions& options = {});
  // Without a tokenizer updates carry token ids only, no text (benchmarks of random models).
  explicit Engine(LlamaModel& model, const EngineOptions& options = {});
  ~Engine();

  // Thread-safe. Throws Refused when the request can never run (empty prompt, prompt plus one
  // token longer than a sequence may be) or the queue is full.
  RequestId submit(Request request);
  // Thread-safe. The request finishes with kCancelled before the next step, its cache blocks
  // back in the pool; an unknown or finished id is ignored.
  void cancel(RequestId id);

  // One scheduling step on the calling thread; false when there was nothing to do.
  bool step();
  // Steps until no request is left (CLI, tests, benchmarks).
  void run_until_idle();
  // Steps on the calling thread, sleeping while idle, until stop() (the server's engine thread).
  // Requests still running then finish with kCancelled.
  void serve();
  void stop();

  EngineStats stats() const;
  // The most tokens (prompt + generated) one sequence may hold.
  int max_sequence_tokens() const;
  const LlamaModel& model() const;
  const Tokenizer& tokenizer() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace kuiper::engine
