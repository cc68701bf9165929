#pragma once
#include <filesystem>
#include <memory>

#include "kuiper/tokenizer/tokenizer.h"

namespace kuiper {

// A sentencepiece `tokenizer.model` (Llama 2, TinyLlama, llama2.c's models).
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& path);

}  // namespace kuiper
