#pragma once
#include <filesystem>
#include <memory>
#include <string>

#include "kuiper/tokenizer/tokenizer.h"

namespace kuiper {

// Byte-level BPE from a Hugging Face tokenizer.json (Llama 3, Qwen2.5).
std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::filesystem::path& path);

struct TokenizerJson;
// The same from a tokenizer.json's content (read from a file, embedded in a model file, or built
// from GGUF metadata); `name` stands for its file in messages.
std::unique_ptr<Tokenizer> make_bpe_tokenizer(const TokenizerJson& content, const std::string& name);

}  // namespace kuiper
