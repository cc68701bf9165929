#include "kuiper/model/config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include "kuiper/base/error.h"
#include "kuiper/tensor/weight.h"

namespace kuiper {

bool ModelConfig::is_eos(int32_t id) const {
  return std::find(eos_ids.begin(), eos_ids.end(), id) != eos_ids.end();
}

namespace {
// Far beyond any released model, yet small enough that products of two sizes (q_dim, a KV cache
// row, a layer's matrix) cannot overflow the int64 arithmetic that follows.
constexpr int64_t kMaxSize = int64_t(1) << 24;
constexpr int kMaxLayers = 1 << 12;
}  // namespace

void ModelConfig::validate() const {
  KUIPER_CHECK(architecture == "llama" || architecture == "qwen2", "unsupported architecture '",
               architecture, "' (supported: llama, qwen2)");
  KUIPER_CHECK(dim > 0 && hidden_dim > 0 && n_layers > 0 && n_heads > 0 && n_kv_heads > 0 &&
                   head_dim > 0 && vocab_size > 0 && max_seq_len > 0,
               "model sizes must be positive (dim ", dim, ", hidden_dim ", hidden_dim, ", layers ",
               n_layers, ", heads ", n_heads, ", kv heads ", n_kv_heads, ", head_dim ", head_dim,
               ", vocab ", vocab_size, ", max_seq_len ", max_seq_len, ")");
  for (const auto& [name, size] : {std::pair<const char*, int64_t>{"dim", dim},
                                   {"hidden_dim", hidden_dim}, {"vocab_size", vocab_size},
                                   {"max_seq_len", max_seq_len},
                                   {"n_heads * head_dim", int64_t(n_heads) * head_dim},
                                   {"n_kv_heads * head_dim", int64_t(n_kv_heads) * head_dim}})
    KUIPER_CHECK(size <= kMaxSize, name, " of ", size, " is beyond the supported ", kMaxSize);
  KUIPER_CHECK(n_layers <= kMaxLayers, n_layers, " layers are beyond the supported ", kMaxLayers);
  KUIPER_CHECK(n_kv_heads <= n_heads && n_heads % n_kv_heads == 0, n_heads,
               " query heads cannot share ", n_kv_heads, " kv heads");
  KUIPER_CHECK(head_dim % 2 == 0, "head_dim must be even for rotary embeddings, got ", head_dim);
  // Written so that NaN fails every check.
  KUIPER_CHECK(rope_theta > 0 && std::isfinite(rope_theta), "rope_theta must be positive and "
               "finite, got ", rope_theta);
  KUIPER_CHECK(norm_eps > 0 && norm_eps < 1, "norm_eps must lie in (0, 1), got ", norm_eps);
  if (rope_scaling.enabled) {
    // transformers' own rules for llama3 scaling; high == low would divide by zero.
    const RopeScaling& r = rope_scaling;
    KUIPER_CHECK(r.factor >= 1 && std::isfinite(r.factor), "rope_scaling.factor must be >= 1 and "
                 "finite, got ", r.factor);
    KUIPER_CHECK(r.low_freq_factor > 0 && r.high_freq_factor > r.low_freq_factor &&
                     std::isfinite(r.high_freq_factor),
                 "rope_scaling needs 0 < low_freq_factor < high_freq_factor (finite), got ",
                 r.low_freq_factor, " and ", r.high_freq_factor);
    KUIPER_CHECK(r.original_max_position > 0, "rope_scaling.original_max_position must be "
                 "positive, got ", r.original_max_position);
  }
  KUIPER_CHECK(dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16 ||
                   is_quantized(dtype) || is_ggml_block(dtype),
               "unsupported weight dtype ", dtype_name(dtype));
  KUIPER_CHECK(group_size >= 0, "group_size must not be negative, got ", group_size);
  KUIPER_CHECK(!is_quantized(dtype) || group_size > 0, dtype_name(dtype),
               " weights need a positive group_size, got ", group_size);
  KUIPER_CHECK(dtype != DType::kQ4 || group_size % kQ4Block == 0, "q4 weights need a group size "
               "that is a multiple of ", kQ4Block, ", got ", group_size);
  KUIPER_CHECK(rope_scaling.freq_factors.empty() ||
                   rope_scaling.freq_factors.size() == size_t(head_dim / 2),
               "rope frequency factors: ", rope_scaling.freq_factors.size(), " for head_dim ", head_dim);
  KUIPER_CHECK(bos_id == -1 || (bos_id >= 0 && bos_id < vocab_size), "bos id ", bos_id,
               " outside the vocabulary of ", vocab_size, " (-1: none)");
  for (int32_t id : eos_ids)
    KUIPER_CHECK(id >= 0 && id < vocab_size, "eos id ", id, " outside the vocabulary of ",
                 vocab_size);
  KUIPER_CHECK(tokenizer_vocab_size >= 0, "tokenizer_vocab_size must not be negative, got ",
               tokenizer_vocab_size);
}

}  // namespace kuiper
