// Model files from strangers: the kuiper header and tensor table, llama2.c's v0 / ak42 layouts
// and KuiperLLama's (the loader tells them apart by content, so one target reaches them all;
// the corpora of fuzz_model_file and fuzz_legacy_model start it from different layouts).
// A file that opens must also build a CPU model and run one position without a fault.
#include <algorithm>

#include "kuiper/model/llama_model.h"
#include "test/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kuiper;
  const fuzz::MemoryFile file({data, size});
  fuzz::refusals_allowed([&] {
    ModelFile model_file = ModelFile::open(file.path());
    const ModelConfig& c = model_file.config();
    // A short context keeps the KV cache small whatever max_seq_len says; the weights' sizes
    // are bounded by the input's.
    const ModelOptions options{.context = std::min(c.max_seq_len, 4), .max_batch = 2};
    LlamaModel model(std::move(model_file), options);
    const int32_t tokens[] = {0, c.vocab_size - 1};
    model.forward(tokens, 0);
  });
  return 0;
}
