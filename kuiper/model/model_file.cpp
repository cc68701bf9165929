#include "kuiper/model/model_file.h"

#include <array>
#include <cstring>
#include <nlohmann/json.hpp>

#include "kuiper/base/error.h"

namespace kuiper {
namespace {

constexpr std::string_view kMagic = "KUIPERLM";
constexpr uint32_t kVersion = 1;
constexpr size_t kPrefixBytes = 24;  // magic, version, reserved, header length
constexpr size_t kAlignment = 64;
constexpr int32_t kLlama2cMagic = 0x616b3432;  // "ak42": llama2.c's versioned exports

template <class T>
T read_le(std::span<const std::byte> bytes, size_t at) {
  T v;
  std::memcpy(&v, bytes.data() + at, sizeof(T));
  return v;
}

template <class T>
T field(const nlohmann::json& j, const char* key) {
  KUIPER_CHECK(j.contains(key), "header lacks '", key, "'");
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("header field '", key, "' has the wrong type: ", j.at(key).dump());
  }
}

template <class T>
T field_or(const nlohmann::json& j, const char* key, T fallback) {
  return j.contains(key) && !j.at(key).is_null() ? field<T>(j, key) : fallback;
}

ModelConfig config_from_json(const nlohmann::json& j) {
  ModelConfig c;
  c.architecture = field<std::string>(j, "architecture");
  c.dim = field<int>(j, "dim");
  c.hidden_dim = field<int>(j, "hidden_dim");
  c.n_layers = field<int>(j, "n_layers");
  c.n_heads = field<int>(j, "n_heads");
  c.n_kv_heads = field_or<int>(j, "n_kv_heads", c.n_heads);
  c.head_dim = field_or<int>(j, "head_dim", c.n_heads > 0 ? c.dim / c.n_heads : 0);
  c.vocab_size = field<int>(j, "vocab_size");
  c.max_seq_len = field<int>(j, "max_seq_len");
  c.rope_theta = field_or<float>(j, "rope_theta", 10000.f);
  c.norm_eps = field_or<float>(j, "norm_eps", 1e-5f);
  c.tied_embeddings = field_or<bool>(j, "tied_embeddings", false);
  c.attention_bias = field_or<bool>(j, "attention_bias", false);
  const auto dtype = field<std::string>(j, "dtype");
  const auto parsed = dtype_from_name(dtype);
  KUIPER_CHECK(parsed.has_value(), "unknown dtype '", dtype, "'");
  c.dtype = *parsed;
  c.bos_id = field_or<int32_t>(j, "bos_id", -1);
  c.eos_ids = field_or<std::vector<int32_t>>(j, "eos_ids", {});
  c.add_bos = field_or<bool>(j, "add_bos", c.bos_id >= 0);
  c.chat_template = field_or<std::string>(j, "chat_template", "");
  c.tokenizer_vocab_size = field_or<int>(j, "tokenizer_vocab_size", 0);
  if (j.contains("rope_scaling") && !j.at("rope_scaling").is_null()) {
    const auto& s = j.at("rope_scaling");
    const auto type = field<std::string>(s, "type");
    KUIPER_CHECK(type == "llama3", "unsupported rope scaling '", type, "' (supported: llama3)");
    c.rope_scaling.enabled = true;
    c.rope_scaling.factor = field<float>(s, "factor");
    c.rope_scaling.low_freq_factor = field<float>(s, "low_freq_factor");
    c.rope_scaling.high_freq_factor = field<float>(s, "high_freq_factor");
    c.rope_scaling.original_max_position = field<int>(s, "original_max_position");
  }
  return c;
}

}  // namespace

ModelFile ModelFile::open(const std::filesystem::path& path, FileBytes::Mode mode) {
  ModelFile m;
  m.file_ = FileBytes::open(path, mode);
  const auto bytes = m.file_->bytes();
  m.buffer_ = Buffer::view(const_cast<std::byte*>(bytes.data()), bytes.size(), Device::kCPU, m.file_);
  try {
    if (bytes.size() >= kMagic.size() &&
        std::memcmp(bytes.data(), kMagic.data(), kMagic.size()) == 0) {
      m.parse_kuiper();
    } else {
      m.parse_llama2c();
    }
    m.config_.validate();
  } catch (const Error& e) {
    fail("model file ", path.string(), ": ", e.what());
  }
  return m;
}

void ModelFile::parse_kuiper() {
  const auto bytes = file_->bytes();
  KUIPER_CHECK(bytes.size() >= kPrefixBytes, "truncated: ", bytes.size(), " bytes");
  const auto version = read_le<uint32_t>(bytes, 8);
  KUIPER_CHECK(version == kVersion, "format version ", version, " is not supported (this build reads ",
               kVersion, "); re-export it with this version's tools/export.py");
  const auto header_len = read_le<uint64_t>(bytes, 16);
  KUIPER_CHECK(header_len <= bytes.size() - kPrefixBytes, "truncated: the header needs ", header_len,
               " bytes but the file has ", bytes.size());
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(
        std::string_view(reinterpret_cast<const char*>(bytes.data()) + kPrefixBytes, header_len));
  } catch (const nlohmann::json::exception& e) {
    fail("corrupt header: ", e.what());
  }
  KUIPER_CHECK(header.is_object() && header.contains("config") && header.contains("tensors"),
               "corrupt header: expected an object with 'config' and 'tensors'");
  format_ = "kuiper v1";
  config_ = config_from_json(header.at("config"));
  const size_t data_start = (kPrefixBytes + header_len + kAlignment - 1) / kAlignment * kAlignment;
  for (const auto& t : header.at("tensors")) {
    const auto name = field<std::string>(t, "name");
    const auto dtype_text = field<std::string>(t, "dtype");
    const auto dtype = dtype_from_name(dtype_text);
    KUIPER_CHECK(dtype.has_value(), "tensor ", name, " has unknown dtype '", dtype_text, "'");
    const auto dims = field<std::vector<int64_t>>(t, "shape");
    add_tensor(name, *dtype, Shape(std::span(dims)), data_start + field<size_t>(t, "offset"));
  }
}

void ModelFile::parse_llama2c() {
  const auto bytes = file_->bytes();
  std::array<int32_t, 7> h{};
  if (bytes.size() >= sizeof(h)) std::memcpy(h.data(), bytes.data(), sizeof(h));
  KUIPER_CHECK(h[0] != kLlama2cMagic,
               "llama2.c versioned exports (magic ak42) are not supported; convert the original "
               "checkpoint with tools/export.py");
  const auto [dim, hidden, layers, heads, kv_heads, signed_vocab, seq_len] = h;
  const int vocab = signed_vocab < 0 ? -signed_vocab : signed_vocab;
  const bool plausible = bytes.size() >= sizeof(h) && dim > 0 && hidden > 0 && layers > 0 &&
                         heads > 0 && kv_heads > 0 && vocab > 0 && seq_len > 0 &&
                         dim <= (1 << 16) && hidden <= (1 << 18) && layers <= 1024 &&
                         heads <= dim && kv_heads <= heads && vocab <= (1 << 22) &&
                         seq_len <= (1 << 22) && dim % heads == 0 && heads % kv_heads == 0;
  KUIPER_CHECK(plausible, "not a model file: it has neither the KUIPERLM header of tools/export.py "
                          "nor a plausible llama2.c header");
  ModelConfig& c = config_;
  c.architecture = "llama";
  c.dim = dim, c.hidden_dim = hidden, c.n_layers = layers, c.n_heads = heads, c.n_kv_heads = kv_heads;
  c.head_dim = dim / heads, c.vocab_size = vocab, c.max_seq_len = seq_len;
  c.tied_embeddings = signed_vocab > 0;
  c.dtype = DType::kF32;
  c.bos_id = 1, c.eos_ids = {2}, c.add_bos = true;
  format_ = "llama2.c v0";

  // The weights follow the header as stacked fp32 arrays, in this order.
  const int64_t kv_dim = int64_t(kv_heads) * c.head_dim;
  size_t at = sizeof(h);
  auto stacked = [&](const char* name, Shape per_layer) {
    for (int l = 0; l < layers; ++l) {
      add_tensor("layers." + std::to_string(l) + "." + name, DType::kF32, per_layer, at);
      at += size_t(per_layer.numel()) * 4;
    }
  };
  auto single = [&](const char* name, Shape shape) {
    add_tensor(name, DType::kF32, shape, at);
    at += size_t(shape.numel()) * 4;
  };
  single("tok_embeddings", {vocab, dim});
  stacked("attention_norm", {dim});
  stacked("wq", {dim, dim});
  stacked("wk", {kv_dim, dim});
  stacked("wv", {kv_dim, dim});
  stacked("wo", {dim, dim});
  stacked("ffn_norm", {dim});
  stacked("w1", {hidden, dim});
  stacked("w2", {dim, hidden});
  stacked("w3", {hidden, dim});
  single("norm", {dim});
  at += size_t(seq_len) * size_t(c.head_dim) * 4;  // freq_cis_real and freq_cis_imag: unused
  if (!c.tied_embeddings) single("output", {vocab, dim});
}

void ModelFile::add_tensor(std::string name, DType dtype, Shape shape, size_t offset) {
  const size_t size = file_->bytes().size();
  const size_t bytes = size_t(shape.numel()) * dtype_size(dtype);
  KUIPER_CHECK(offset <= size && bytes <= size - offset, "truncated: tensor '", name, "' ends at byte ",
               offset + bytes, " but the file has ", size, " bytes");
  tensors_.emplace(std::move(name), Entry{dtype, shape, offset});
}

Tensor ModelFile::tensor(std::string_view name, const Shape& shape) const {
  const auto it = tensors_.find(name);
  KUIPER_CHECK(it != tensors_.end(), "model file ", path().string(), " has no tensor '", name, "'");
  const Entry& e = it->second;
  KUIPER_CHECK(e.shape == shape, "model file ", path().string(), ": tensor '", name, "' has shape ",
               e.shape.str(), ", expected ", shape.str());
  return Tensor::view(buffer_, e.offset, e.dtype, e.shape);
}

}  // namespace kuiper
