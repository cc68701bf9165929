#include "kuiper/model/gguf_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
#include <map>

#include "kuiper/base/error.h"

namespace kuiper {
namespace {

const std::map<std::string_view, std::string_view, std::less<>> kLayerNames = {
    {"attention_norm", "attn_norm.weight"},
    {"wq", "attn_q.weight"},
    {"wk", "attn_k.weight"},
    {"wv", "attn_v.weight"},
    {"wo", "attn_output.weight"},
    {"bq", "attn_q.bias"},
    {"bk", "attn_k.bias"},
    {"bv", "attn_v.bias"},
    {"ffn_norm", "ffn_norm.weight"},
    {"w1", "ffn_gate.weight"},
    {"w2", "ffn_down.weight"},
    {"w3", "ffn_up.weight"},
};

// Spellings of tokens that end a turn or a document, which llama.cpp also treats as end of
// generation (llama-vocab.cpp) whether or not a *_token_id key names them.
constexpr std::string_view kEndOfGeneration[] = {"<|eot_id|>",    "<|im_end|>", "<|end_of_text|>",
                                                 "<|endoftext|>", "<|eom_id|>", "<end_of_turn>",
                                                 "</s>"};
// tokenizer.ggml.token_type: sentencepiece's CONTROL and UNUSED.
constexpr int64_t kControlToken = 3, kUnusedToken = 5;

// Our chat template names, found by the markers of the Jinja text (tools/checkpoints.py's
// chat_template_name does the same for Hugging Face files).
std::string chat_template_name(std::string_view jinja) {
  constexpr std::pair<std::string_view, std::string_view> kMarkers[] = {
      {"<|im_start|>", "chatml"},
      {"<|start_header_id|>", "llama3"},
      {"<|user|>", "zephyr"},
      {"[INST]", "llama2"}};
  for (const auto& [marker, name] : kMarkers)
    if (jinja.find(marker) != std::string_view::npos) return std::string(name);
  return "";
}

int positive_int(const GgufFile& f, const std::string& key) {
  const int64_t v = f.require_integer(key);
  KUIPER_CHECK(v > 0 && v <= (int64_t(1) << 30), "GGUF metadata '", key, "' must be positive, found ",
               v);
  return int(v);
}

// llama.cpp's converter stores Llama 3's rotary scaling as the tensor rope_freqs.weight: per
// frequency the divisor that transformers' llama3 rule applies (1 for high frequencies, the
// factor for low ones, blended between). kuiper takes those divisors as they are.
std::vector<float> rope_freq_factors(const GgufFile& f, std::span<const std::byte> bytes, int head_dim) {
  const GgufTensor* t = f.find_tensor("rope_freqs.weight");
  if (t == nullptr) return {};
  KUIPER_CHECK(t->type == 0 && t->dims.size() == 1 && t->dims[0] == head_dim / 2,
               "tensor 'rope_freqs.weight' must be F32 [", head_dim / 2, "] (head_dim / 2)");
  std::vector<float> factors(size_t(head_dim / 2));
  std::memcpy(factors.data(), bytes.data() + t->offset, factors.size() * sizeof(float));
  for (float x : factors)
    KUIPER_CHECK(x > 0 && std::isfinite(x), "tensor 'rope_freqs.weight' holds ", x,
                 "; rotary frequency divisors must be positive");
  return factors;
}

int32_t token_id(const GgufFile& f, const char* key) {
  const int64_t id = f.integer(key).value_or(-1);
  KUIPER_CHECK(id >= -1 && id <= std::numeric_limits<int32_t>::max(), "GGUF metadata '", key,
               "' is out of range: ", id);
  return int32_t(id);
}

}  // namespace

std::optional<DType> dtype_of_ggml(uint32_t ggml_type) {
  switch (ggml_type) {
    case 0: return DType::kF32;
    case 1: return DType::kF16;
    case 30: return DType::kBF16;
    case 8: return DType::kQ8_0;
    case 2: return DType::kQ4_0;
    case 12: return DType::kQ4_K;
    case 14: return DType::kQ6_K;
    default: return std::nullopt;
  }
}

std::string gguf_tensor_name(std::string_view name) {
  if (name == "tok_embeddings") return "token_embd.weight";
  if (name == "norm") return "output_norm.weight";
  if (name == "output") return "output.weight";
  if (name.starts_with("layers.")) {
    const std::string_view rest = name.substr(7);
    const size_t dot = rest.find('.');
    if (dot != std::string_view::npos) {
      const auto it = kLayerNames.find(rest.substr(dot + 1));
      if (it != kLayerNames.end())
        return "blk." + std::string(rest.substr(0, dot)) + "." + std::string(it->second);
    }
  }
  return std::string(name);
}

ModelConfig gguf_model_config(const GgufFile& f, std::span<const std::byte> bytes) {
  ModelConfig c;
  c.architecture = std::string(f.require_string("general.architecture"));
  KUIPER_CHECK(c.architecture == "llama" || c.architecture == "qwen2", "unsupported GGUF architecture '",
               c.architecture, "' (supported: llama, qwen2)");
  const std::string p = c.architecture + ".";
  c.dim = positive_int(f, p + "embedding_length");
  c.hidden_dim = positive_int(f, p + "feed_forward_length");
  c.n_layers = positive_int(f, p + "block_count");
  c.n_heads = positive_int(f, p + "attention.head_count");
  c.n_kv_heads =
      f.find(p + "attention.head_count_kv") ? positive_int(f, p + "attention.head_count_kv") : c.n_heads;
  c.head_dim = f.find(p + "attention.key_length") ? positive_int(f, p + "attention.key_length")
                                                  : c.dim / c.n_heads;
  if (f.find(p + "attention.value_length"))
    KUIPER_CHECK(positive_int(f, p + "attention.value_length") == c.head_dim, "GGUF metadata '", p,
                 "attention.value_length' differs from the key length ", c.head_dim, " (not supported)");
  if (f.find(p + "rope.dimension_count"))
    KUIPER_CHECK(positive_int(f, p + "rope.dimension_count") == c.head_dim, "GGUF metadata '", p,
                 "rope.dimension_count' is not head_dim ", c.head_dim,
                 " (partial rotary embeddings are not supported)");
  c.max_seq_len = positive_int(f, p + "context_length");
  c.rope_theta = float(f.number(p + "rope.freq_base").value_or(10000.0));
  if (const auto scaling = f.string(p + "rope.scaling.type"))
    KUIPER_CHECK(*scaling == "none", "unsupported rope scaling '", *scaling, "' in GGUF metadata '", p,
                 "rope.scaling.type' (supported: none, or Llama 3's rope_freqs.weight)");
  const auto eps = f.number(p + "attention.layer_norm_rms_epsilon");
  KUIPER_CHECK(eps.has_value(), "GGUF metadata lacks '", p, "attention.layer_norm_rms_epsilon'");
  c.norm_eps = float(*eps);
  c.rope_scaling.freq_factors = rope_freq_factors(f, bytes, c.head_dim);
  c.rope_scaling.enabled = !c.rope_scaling.freq_factors.empty();

  const GgufTensor* embedding = f.find_tensor("token_embd.weight");
  KUIPER_CHECK(embedding != nullptr, "GGUF file lacks tensor 'token_embd.weight'");
  KUIPER_CHECK(embedding->dims.size() == 2 && embedding->dims[1] <= (int64_t(1) << 30),
               "tensor 'token_embd.weight' must be 2-d [dim, vocab]");
  c.vocab_size = int(embedding->dims[1]);
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  c.attention_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  const GgufTensor* wq = f.find_tensor("blk.0.attn_q.weight");
  KUIPER_CHECK(wq != nullptr, "GGUF file lacks tensor 'blk.0.attn_q.weight'");
  const auto dtype = dtype_of_ggml(wq->type);
  c.dtype = dtype.value_or(DType::kF32);  // an unsupported type is refused when its tensor is read

  // Tokenizer facts the model needs: BOS, end of generation, the chat template.
  const std::string_view tok_model = f.string("tokenizer.ggml.model").value_or("");
  c.bos_id = token_id(f, "tokenizer.ggml.bos_token_id");
  c.add_bos = f.boolean("tokenizer.ggml.add_bos_token")
                  .value_or(tok_model == "llama" || f.string("tokenizer.ggml.pre") == "llama-bpe");
  c.add_bos = c.add_bos && c.bos_id >= 0;
  auto add_eos = [&](int64_t id) {
    if (std::find(c.eos_ids.begin(), c.eos_ids.end(), id) == c.eos_ids.end())
      c.eos_ids.push_back(int32_t(id));
  };
  for (const char* key :
       {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
    if (const int32_t id = token_id(f, key); id >= 0) add_eos(id);
  if (const GgufArray* tokens = f.array("tokenizer.ggml.tokens")) {
    const auto pieces = gguf_strings(*tokens, "tokenizer.ggml.tokens");
    const GgufArray* types = f.array("tokenizer.ggml.token_type");
    const auto kinds =
        types ? gguf_integers(*types, "tokenizer.ggml.token_type") : std::vector<int64_t>{};
    // The size of the tokenizer the file was made from: llama.cpp's converter pads a byte-level
    // BPE vocabulary to the embedding's rows with unused "[PAD<id>]" tokens, which the
    // tokenizer.json it came from (and the one load_gguf_tokenizer builds) does not have.
    size_t size = pieces.size();
    if (tok_model == "gpt2")
      while (size > 0 && size <= kinds.size() && kinds[size - 1] == kUnusedToken) --size;
    c.tokenizer_vocab_size = int(std::min<size_t>(size, size_t(1) << 30));
    for (size_t id = 0; id < pieces.size() && id < kinds.size(); ++id)
      if (kinds[id] == kControlToken &&
          std::find(std::begin(kEndOfGeneration), std::end(kEndOfGeneration), pieces[id]) !=
              std::end(kEndOfGeneration))
        add_eos(int64_t(id));
  }
  const auto jinja = f.string("tokenizer.chat_template");
  c.chat_template = jinja ? chat_template_name(*jinja) : c.architecture == "qwen2" ? "chatml" : "";
  return c;
}

}  // namespace kuiper
