#include "kuiper/model/embedded_tokenizer.h"

#include "kuiper/base/error.h"
#include "kuiper/tokenizer/gguf_tokenizer.h"

namespace kuiper {

std::unique_ptr<Tokenizer> embedded_tokenizer(const ModelFile& file) {
  try {
    if (file.gguf() != nullptr) return load_gguf_tokenizer(*file.gguf());
    if (!file.tokenizer_bytes().empty())
      return Tokenizer::from_bytes(file.tokenizer_bytes(), "embedded in " + file.path().string());
    return nullptr;
  } catch (const Error& e) {
    fail("model file ", file.path().string(), ": tokenizer: ", e.what());
  }
}

}  // namespace kuiper
