#include "demo/generator.h"

#include <chrono>

#include "kuiper/tokenizer/utf8.h"

namespace kuiper::demo {
namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

Generator::Generator(LlamaModel& model, const Tokenizer& tokenizer, const SamplerOptions& sampler)
    : model_(model), tokenizer_(tokenizer), sampler_(sampler) {}

void Generator::rewind(int32_t pos) {
  KUIPER_CHECK(pos >= 0 && pos <= pos_, "cannot rewind to position ", pos, " from ", pos_);
  pos_ = pos;
}

int32_t Generator::next_token(std::span<const int32_t> tokens) {
  const int32_t pos = pos_;
  pos_ += int32_t(tokens.size());
  if (sampler_.greedy()) return model_.forward_greedy(tokens, pos);
  return sampler_.sample(model_.forward(tokens, pos).span<float>());
}

Generator::Result Generator::generate(std::span<const int32_t> prompt, int max_new,
                                      const std::function<void(std::string_view)>& on_text,
                                      const std::atomic<bool>* interrupt) {
  Result r;
  KUIPER_CHECK(!prompt.empty(), "nothing to generate from: the prompt has no tokens");
  KUIPER_CHECK(pos_ + int64_t(prompt.size()) <= model_.context(), "the prompt needs ",
               pos_ + prompt.size(), " positions but the context holds ", model_.context(),
               " tokens (-c/--ctx)");
  auto start = std::chrono::steady_clock::now();
  int32_t next = next_token(prompt);
  r.stats.prefill_tokens = int(prompt.size());
  r.stats.prefill_seconds = seconds_since(start);

  Utf8Stream utf8;
  start = std::chrono::steady_clock::now();
  r.stop = Stop::kLimit;
  for (int produced = 0; produced < max_new; ++produced) {
    r.ids.push_back(next);
    if (model_.config().is_eos(next)) {
      r.stop = Stop::kEos;
      break;
    }
    // A model's vocabulary may be larger than its tokenizer's (Qwen2.5 pads it): such ids print
    // nothing.
    if (next < tokenizer_.vocab_size()) on_text(utf8.push(tokenizer_.decode_token(next)));
    if (interrupt && interrupt->load()) {
      r.stop = Stop::kInterrupted;
      break;
    }
    if (produced + 1 == max_new) break;
    if (pos_ >= model_.context()) {  // no room to feed the token back
      r.stop = Stop::kContextFull;
      break;
    }
    next = next_token({&next, 1});
  }
  on_text(utf8.flush());
  r.stats.generated_tokens = int(r.ids.size());
  r.stats.decode_seconds = seconds_since(start);
  return r;
}

}  // namespace kuiper::demo
