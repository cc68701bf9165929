// tokenizer.model (a sentencepiece protobuf) from strangers. The input is the file, then after
// a 0xff byte (which no short protobuf prefix needs) a text to encode; every piece is decoded.
#include "kuiper/tokenizer/tokenizer.h"
#include "test/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kuiper;
  fuzz::InputReader input({data, size});
  const std::string proto = input.text_until(0xff);
  const std::string text = input.rest();
  const fuzz::MemoryFile file({reinterpret_cast<const uint8_t*>(proto.data()), proto.size()});
  fuzz::refusals_allowed([&] {
    const auto tokenizer = Tokenizer::load(file.path());
    for (int32_t id = 0; id < tokenizer->vocab_size(); ++id) tokenizer->decode_token(id);
    for (int32_t id : tokenizer->encode(text, true)) {
      if (id < 0 || id >= tokenizer->vocab_size()) std::abort();
    }
  });
  return 0;
}
