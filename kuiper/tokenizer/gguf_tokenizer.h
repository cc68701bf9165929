#pragma once
#include <memory>

#include "kuiper/model/gguf_file.h"
#include "kuiper/tokenizer/tokenizer.h"

namespace kuiper {

// The tokenizer a GGUF file describes in its tokenizer.ggml.* metadata: `llama` (tokens, scores,
// token types) as a sentencepiece model, `gpt2` (tokens, merges, token types and the
// pre-tokenizer named by tokenizer.ggml.pre: llama-bpe, qwen2 or gpt2) as our byte-level BPE.
// nullptr when the file has no tokenizer.ggml.model; kuiper::Error naming the key for metadata
// that is missing, inconsistent or of a kind not supported.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& file);

}  // namespace kuiper
