#pragma once
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "kuiper/tokenizer/tokenizer.h"

namespace kuiper {

// A sentencepiece `tokenizer.model` (Llama 2, TinyLlama, llama2.c's models).
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& path);
// The same from a serialized ModelProto (a tokenizer.model's bytes); `name` stands for its file
// in messages.
std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(std::string_view model_proto, const std::string& name);

}  // namespace kuiper
