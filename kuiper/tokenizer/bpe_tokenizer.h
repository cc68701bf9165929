#pragma once
#include <filesystem>
#include <memory>

#include "kuiper/tokenizer/tokenizer.h"

namespace kuiper {

// Byte-level BPE from a Hugging Face tokenizer.json (Llama 3, Qwen2.5).
std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::filesystem::path& path);

}  // namespace kuiper
