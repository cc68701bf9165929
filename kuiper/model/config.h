#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kuiper/base/dtype.h"

namespace kuiper {

// Llama 3's long-context rotary scaling (rope_type "llama3" in Hugging Face configs).
struct RopeScaling {
  bool enabled = false;
  float factor = 1.f;
  float low_freq_factor = 1.f;
  float high_freq_factor = 4.f;
  int original_max_position = 8192;
  // When not empty (GGUF's rope_freqs.weight): frequency j is divided by freq_factors[j] instead
  // of by the rule above; head_dim / 2 entries.
  std::vector<float> freq_factors;
};

// Everything the runtime needs to know about a model, read from its file (docs/model-format.md).
// The Llama-family differences (Qwen2's biases, Llama 3's rope scaling, tied classifier) are
// data here, not code paths elsewhere.
struct ModelConfig {
  std::string architecture = "llama";  // "llama" or "qwen2"
  int dim = 0;
  int hidden_dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int max_seq_len = 0;
  float rope_theta = 10000.f;
  RopeScaling rope_scaling;
  float norm_eps = 1e-5f;
  bool tied_embeddings = false;
  bool attention_bias = false;
  DType dtype = DType::kF32;  // of the matrices
  int group_size = 0;         // int8 matrices: values per scale (0 for float matrices)
  int32_t bos_id = -1;        // -1: none
  std::vector<int32_t> eos_ids;
  bool add_bos = true;
  std::string chat_template;     // llama2 | zephyr | llama3 | chatml | "" (unknown)
  int tokenizer_vocab_size = 0;  // 0: not recorded

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  bool is_eos(int32_t id) const;
  // Throws kuiper::Error unless the sizes are consistent.
  void validate() const;
};

}  // namespace kuiper
