#pragma once
// What a GGUF file (llama.cpp's convert_hf_to_gguf.py layout) means to kuiper: its metadata as a
// ModelConfig and its tensor names as the ones the model asks ModelFile for.
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "kuiper/base/dtype.h"
#include "kuiper/model/config.h"
#include "kuiper/model/gguf_file.h"

namespace kuiper {

// Architectures `llama` and `qwen2`; `bytes` are the file's (for rope_freqs.weight). Throws
// kuiper::Error naming the key for missing or unsupported metadata (architecture, rope scaling,
// partial rotary dimensions).
ModelConfig gguf_model_config(const GgufFile& file, std::span<const std::byte> bytes);

// The GGUF name of one of our tensors: "tok_embeddings" -> "token_embd.weight",
// "layers.3.wq" -> "blk.3.attn_q.weight", "layers.3.bq" -> "blk.3.attn_q.bias", ...
std::string gguf_tensor_name(std::string_view name);

// The DType of a ggml type kuiper serves (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K), else nullopt.
std::optional<DType> dtype_of_ggml(uint32_t ggml_type);

}  // namespace kuiper
