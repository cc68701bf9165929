// tokenizer.json from strangers: the streamed vocabulary and merges, normalizers,
// pre-tokenizers (regexes), added tokens and post-processors. The input is the file, then after
// a 0 byte a text to encode with whatever loaded.
#include "kuiper/tokenizer/tokenizer.h"
#include "test/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kuiper;
  fuzz::InputReader input({data, size});
  const std::string json = input.text_until(0);
  const std::string text = input.rest();
  const fuzz::MemoryFile file({reinterpret_cast<const uint8_t*>(json.data()), json.size()});
  fuzz::refusals_allowed([&] {
    const auto tokenizer = Tokenizer::load(file.path());
    for (int32_t id : tokenizer->encode(text, true)) {
      if (id < 0 || id >= tokenizer->vocab_size()) std::abort();
      tokenizer->decode_token(id);
    }
  });
  return 0;
}
