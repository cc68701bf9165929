#pragma once
#include <memory>

#include "kuiper/model/model_file.h"
#include "kuiper/tokenizer/tokenizer.h"

namespace kuiper {

// The tokenizer a model file carries (GGUF metadata, or a kuiper file's embedded tokenizer.model /
// tokenizer.json), or nullptr when it has none (older kuiper files, llama2.c files).
std::unique_ptr<Tokenizer> embedded_tokenizer(const ModelFile& file);

}  // namespace kuiper
