// libFuzzer target: the GGUF parser and the metadata -> ModelConfig mapping on arbitrary bytes.
// Every input must either parse or throw kuiper::Error: no crash, leak, hang or other exception.
// Seeds: python3 test/fuzz/gguf_seeds.py DIR.
#include <cstddef>
#include <cstdint>
#include <span>

#include "kuiper/base/error.h"
#include "kuiper/model/gguf_file.h"
#include "kuiper/model/gguf_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const kuiper::GgufFile file(bytes);
    kuiper::gguf_model_config(file, bytes);
  } catch (const kuiper::Error&) {
    // A clear error is the expected outcome for nearly every input.
  }
  return 0;
}
