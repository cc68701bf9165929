#include "kuiper/model/config.h"

#include <algorithm>

#include "kuiper/base/error.h"
#include "kuiper/tensor/weight.h"

namespace kuiper {

bool ModelConfig::is_eos(int32_t id) const {
  return std::find(eos_ids.begin(), eos_ids.end(), id) != eos_ids.end();
}

void ModelConfig::validate() const {
  KUIPER_CHECK(architecture == "llama" || architecture == "qwen2", "unsupported architecture '",
               architecture, "' (supported: llama, qwen2)");
  KUIPER_CHECK(dim > 0 && hidden_dim > 0 && n_layers > 0 && n_heads > 0 && n_kv_heads > 0 &&
                   head_dim > 0 && vocab_size > 0 && max_seq_len > 0,
               "model sizes must be positive (dim ", dim, ", hidden_dim ", hidden_dim, ", layers ",
               n_layers, ", heads ", n_heads, ", kv heads ", n_kv_heads, ", head_dim ", head_dim,
               ", vocab ", vocab_size, ", max_seq_len ", max_seq_len, ")");
  KUIPER_CHECK(n_heads % n_kv_heads == 0, n_heads, " query heads cannot share ", n_kv_heads,
               " kv heads");
  KUIPER_CHECK(head_dim % 2 == 0, "head_dim must be even for rotary embeddings, got ", head_dim);
  KUIPER_CHECK(dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16 ||
                   is_quantized(dtype) || is_ggml_block(dtype),
               "unsupported weight dtype ", dtype_name(dtype));
  KUIPER_CHECK(!is_quantized(dtype) || group_size > 0, dtype_name(dtype),
               " weights need a positive group_size, got ", group_size);
  KUIPER_CHECK(dtype != DType::kQ4 || group_size % kQ4Block == 0, "q4 weights need a group size "
               "that is a multiple of ", kQ4Block, ", got ", group_size);
  KUIPER_CHECK(rope_scaling.freq_factors.empty() ||
                   rope_scaling.freq_factors.size() == size_t(head_dim / 2),
               "rope frequency factors: ", rope_scaling.freq_factors.size(), " for head_dim ", head_dim);
  KUIPER_CHECK(bos_id < vocab_size, "bos id ", bos_id, " outside the vocabulary of ", vocab_size);
  for (int32_t id : eos_ids)
    KUIPER_CHECK(id >= 0 && id < vocab_size, "eos id ", id, " outside the vocabulary of ",
                 vocab_size);
}

}  // namespace kuiper
