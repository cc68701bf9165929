#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "kuiper/model/llama_model.h"
#include "kuiper/sampler/sampler.h"
#include "kuiper/tokenizer/tokenizer.h"

namespace kuiper::demo {

// Drives a model through a token stream: prefill a batch of tokens at the current position,
// then decode one token at a time, streaming text. Keeps the position, so a conversation can
// continue where the last call stopped (the KV cache holds everything before position()).
class Generator {
 public:
  struct Stats {
    int prefill_tokens = 0;
    double prefill_seconds = 0;
    int generated_tokens = 0;
    double decode_seconds = 0;  // from the first generated token to the last
  };
  enum class Stop { kEos, kLimit, kContextFull, kInterrupted };
  struct Result {
    std::vector<int32_t> ids;  // generated, including the stop token when one ended it
    Stop stop = Stop::kLimit;
    Stats stats;
  };

  Generator(LlamaModel& model, const Tokenizer& tokenizer, const SamplerOptions& sampler);

  int32_t position() const { return pos_; }
  // Forgets everything from position `pos` on (the cache rows there will be overwritten).
  void rewind(int32_t pos);

  // Prefills `prompt` at the current position, then generates up to max_new tokens, calling
  // on_text with each complete UTF-8 piece. Stops at an end-of-sequence id, at max_new, at the
  // end of the context, or when `interrupt` becomes true. The last generated id is not yet in
  // the cache: a conversation that goes on passes it at the start of its next prompt.
  Result generate(std::span<const int32_t> prompt, int max_new,
                  const std::function<void(std::string_view)>& on_text,
                  const std::atomic<bool>* interrupt = nullptr);

 private:
  int32_t next_token(std::span<const int32_t> tokens);

  LlamaModel& model_;
  const Tokenizer& tokenizer_;
  Sampler sampler_;
  int32_t pos_ = 0;
};

}  // namespace kuiper::demo
