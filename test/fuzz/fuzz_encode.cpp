// Arbitrary bytes through the real tokenizers: byte-level BPE (Qwen2.5's and Llama 3's
// tokenizer.json, the committed tiny ones) and sentencepiece (Llama 2's tokenizer.model). The
// first input byte picks the tokenizer, the rest is the text. Invalid UTF-8 must be refused;
// valid text must encode to ids in the vocabulary that decode again.
#include <memory>
#include <vector>

#include "kuiper/tokenizer/tokenizer.h"
#include "kuiper/tokenizer/utf8.h"
#include "test/fuzz/fuzz_util.h"

namespace {

const std::vector<std::unique_ptr<kuiper::Tokenizer>>& tokenizers() {
  static const auto all = [] {
    std::vector<std::unique_ptr<kuiper::Tokenizer>> out;
    for (const auto& p : {kuiper::fuzz::source_file("test/data/tokenizer/tiny_bytelevel.json"),
                          kuiper::fuzz::source_file("test/data/tokenizer/tiny_removed.json"),
                          kuiper::fuzz::shared_file("models/qwen2-kjv/tokenizer.json"),
                          kuiper::fuzz::shared_file("models/llama3-kjv/tokenizer.json"),
                          kuiper::fuzz::shared_file("models/llama2/tokenizer.model")}) {
      if (!p.empty()) out.push_back(kuiper::Tokenizer::load(p));
    }
    return out;
  }();
  return all;
}

}  // namespace

// Loads the tokenizers before libFuzzer's per-input timeout starts counting.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tokenizers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kuiper;
  const auto& all = tokenizers();
  fuzz::InputReader input({data, size});
  const Tokenizer& tokenizer = *all[input.byte() % all.size()];
  const std::string text = input.rest();
  const bool valid = !find_invalid_utf8(text).has_value();
  try {
    const auto ids = tokenizer.encode(text, true);
    if (!valid) std::abort();  // invalid UTF-8 must be refused
    for (int32_t id : ids) {
      if (id < 0 || id >= tokenizer.vocab_size()) std::abort();
    }
    tokenizer.decode(ids);
  } catch (const Error&) {
    if (valid) throw;  // valid text must always encode
  }
  return 0;
}
