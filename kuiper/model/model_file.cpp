#include "kuiper/model/model_file.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>
#include <nlohmann/json.hpp>

#include "kuiper/base/error.h"
#include "kuiper/model/gguf_file.h"
#include "kuiper/model/gguf_model.h"

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

// A header value as T, exactly: integers must be JSON integers within T's range (no 288.5, no
// 1e12 for an int, no -1 for an offset), booleans JSON booleans, floats JSON numbers.
template <class T>
T json_value(const nlohmann::json& v, const char* key) {
  const auto wrong = [&](const char* expected) {
    fail("header field '", key, "' must be ", expected, ", got ", v.dump());
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) wrong("true or false");
    return v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    const bool fits = v.is_number_unsigned() ? std::in_range<T>(v.get<uint64_t>())
                      : v.is_number_integer() ? std::in_range<T>(v.get<int64_t>())
                                              : false;
    if (!fits) wrong(std::is_signed_v<T> ? "an integer in range" : "a non-negative integer in range");
    return v.get<T>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) wrong("a number");
    return v.get<T>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) wrong("a string");
    return v.get<std::string>();
  } else {  // std::vector of one of the above
    if (!v.is_array()) wrong("an array");
    T out;
    for (const auto& e : v) out.push_back(json_value<typename T::value_type>(e, key));
    return out;
  }
}

template <class T>
T field(const nlohmann::json& j, const char* key) {
  KUIPER_CHECK(j.is_object() && j.contains(key), "header lacks '", key, "'");
  return json_value<T>(j.at(key), key);
}

template <class T>
T field_or(const nlohmann::json& j, const char* key, T fallback) {
  // Absent means the default; null does not (a "rope_theta": null must not silently become 10000).
  return j.contains(key) ? field<T>(j, key) : fallback;
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
  c.group_size = field_or<int>(j, "group_size", 0);
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
    } else if (GgufFile::is_gguf(bytes)) {
      m.parse_gguf();
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
  config_.validate();  // the header's values first, then its tensor table
  const size_t data_start = (kPrefixBytes + header_len + kAlignment - 1) / kAlignment * kAlignment;
  KUIPER_CHECK(header.at("tensors").is_array(), "corrupt header: 'tensors' is not an array");
  for (const auto& t : header.at("tensors")) {
    const auto name = field<std::string>(t, "name");
    const auto dtype_text = field<std::string>(t, "dtype");
    const auto dtype = dtype_from_name(dtype_text);
    KUIPER_CHECK(dtype.has_value(), "tensor ", name, " has unknown dtype '", dtype_text, "'");
    const auto dims = field<std::vector<int64_t>>(t, "shape");
    const auto offset = field<uint64_t>(t, "offset");
    KUIPER_CHECK(offset % kAlignment == 0, "tensor '", name, "' at offset ", offset,
                 " is not aligned to ", kAlignment, " bytes");
    KUIPER_CHECK(offset <= bytes.size(), "truncated: tensor '", name, "' starts at offset ", offset,
                 " beyond the file's ", bytes.size(), " bytes");
    add_tensor(name, *dtype, Shape(std::span(dims)), data_start + offset);
  }
  if (header.contains("tokenizer") && !header.at("tokenizer").is_null()) {
    const auto& t = header.at("tokenizer");
    const auto offset = field<size_t>(t, "offset"), size = field<size_t>(t, "bytes");
    const size_t data_bytes = bytes.size() - std::min(data_start, bytes.size());
    KUIPER_CHECK(offset <= data_bytes && size <= data_bytes - offset,
                 "truncated: the embedded tokenizer ends at byte ", data_start + offset + size,
                 " but the file has ", bytes.size(), " bytes");
    const char* begin = reinterpret_cast<const char*>(bytes.data()) + data_start + offset;
    tokenizer_bytes_ = std::string_view(begin, size);
  }
  check_no_overlap();
}

// llama.cpp's GGUF (docs/model-format.md, "GGUF"): the config from the metadata, our tensor
// names from GGUF's, the tensors used in place (apart from Qwen2's reordered q/k rows).
void ModelFile::parse_gguf() {
  const auto bytes = file_->bytes();
  gguf_ = std::make_shared<const GgufFile>(bytes);
  const GgufFile& g = *gguf_;
  format_ = "gguf v" + std::to_string(g.version());
  config_ = gguf_model_config(g, bytes);
  const ModelConfig& c = config_;
  std::vector<std::string> names = {"tok_embeddings", "norm"};
  if (!c.tied_embeddings) names.push_back("output");
  for (int l = 0; l < c.n_layers; ++l) {
    for (const char* part : {"attention_norm", "wq", "wk", "wv", "wo", "bq", "bk", "bv", "ffn_norm",
                             "w1", "w2", "w3"}) {
      if (part[0] == 'b' && !c.attention_bias) continue;
      names.push_back("layers." + std::to_string(l) + "." + part);
    }
  }
  for (const std::string& name : names) {
    const std::string gguf_name = gguf_tensor_name(name);
    const GgufTensor* t = g.find_tensor(gguf_name);
    KUIPER_CHECK(t != nullptr, "GGUF file lacks tensor '", gguf_name, "'");
    const auto dtype = dtype_of_ggml(t->type);
    KUIPER_CHECK(dtype.has_value(), "tensor '", gguf_name, "' has ggml type ", ggml_type(t->type)->name,
                 ", which kuiper does not read (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)");
    KUIPER_CHECK(t->dims.size() <= 2, "tensor '", gguf_name, "' has ", t->dims.size(), " dimensions");
    KUIPER_CHECK(t->dims.size() == 2 || *dtype == DType::kF32, "tensor '", gguf_name, "' is ",
                 ggml_type(t->type)->name, "; kuiper reads norms and biases in F32 only");
    const std::vector<int64_t> dims(t->dims.rbegin(), t->dims.rend());  // GGUF lists rows last
    add_tensor(name, *dtype, Shape(std::span(dims)), t->offset);
  }
  if (c.architecture == "qwen2") {
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      add_rotary_reordered(p + "wq", c.n_heads);
      add_rotary_reordered(p + "wk", c.n_kv_heads);
      if (c.attention_bias) {
        add_rotary_reordered(p + "bq", c.n_heads);
        add_rotary_reordered(p + "bk", c.n_kv_heads);
      }
    }
  }
}

// llama.cpp's converter permutes Llama's Hugging Face q/k rows into the interleaved rotary order
// (pair j = dims 2j, 2j + 1 of a head) that our rope kernels take, but leaves Qwen2's in Hugging
// Face's rotate-half order (pair j = dims j, j + head_dim / 2), which llama.cpp runs with
// NeoX-style rope. So Qwen2's wq, wk, bq and bk are reordered here into a private copy, exactly
// as tools/export.py reorders them: within each head, row 2j <- row j, row 2j + 1 <- row
// j + head_dim / 2. A row of a block type holds whole blocks, so whole rows move for any dtype.
void ModelFile::add_rotary_reordered(const std::string& name, int n_heads) {
  Entry& e = tensors_.at(name);
  const int64_t head_dim = config_.head_dim, rows = e.shape[0], half = head_dim / 2;
  KUIPER_CHECK(rows == n_heads * head_dim, "tensor '", gguf_tensor_name(name), "' has ", rows,
               " rows, expected ", n_heads, " heads of ", head_dim);
  const size_t row_bytes = storage_bytes(e.dtype, e.shape.numel() / rows);
  auto copy = Buffer::allocate(row_bytes * size_t(rows), Device::kCPU);
  const auto* from = reinterpret_cast<const std::byte*>(buffer_->data()) + e.offset;
  auto* to = static_cast<std::byte*>(copy->data());
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t j = 0; j < half; ++j) {
      const int64_t base = h * head_dim;
      std::memcpy(to + (base + 2 * j) * row_bytes, from + (base + j) * row_bytes, row_bytes);
      std::memcpy(to + (base + 2 * j + 1) * row_bytes, from + (base + j + half) * row_bytes, row_bytes);
    }
  }
  e.offset = 0;
  e.copy = std::move(copy);
}

// The arrays of a headerless checkpoint, laid out one after another: llama2.c and KuiperLLama
// files are such sequences, and their sizes tell which layout a file is.
class ArraySequence {
 public:
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    size_t offset;
  };
  ArraySequence(size_t start, int layers) : at_(start), layers_(layers) {}

  // An fp32 array, or with group > 0 a matrix [rows, cols] of int8 codes followed by its fp32
  // scales of `group` consecutive codes of the flattened matrix. Only groups that tile the rows
  // can be served; others are recorded as the problem.
  void array(const std::string& name, Shape shape, int group = 0) {
    if (group == 0) {
      entries_.push_back({name, DType::kF32, shape, at_});
      at_ += size_t(shape.numel()) * 4;
      return;
    }
    const int64_t rows = shape[0], cols = shape[1], numel = shape.numel();
    entries_.push_back({name, DType::kI8, shape, at_});
    at_ += size_t(numel);
    if (cols % group == 0) {
      entries_.push_back({name + ".scales", DType::kF32, {rows, cols / group}, at_});
    } else if (problem_.empty()) {
      problem_ = "rows of " + std::to_string(cols) + " values in '" + name +
                 "' are not a multiple of the group size " + std::to_string(group) +
                 " (its groups run across rows, which kuiper's int8 kernels do not read)";
    }
    at_ += size_t(numel / group) * 4;
  }
  // array() of "layers.{l}.name" for every layer, one after another.
  void per_layer(const std::string& name, Shape shape, int group = 0) {
    for (int l = 0; l < layers_; ++l) array("layers." + std::to_string(l) + "." + name, shape, group);
  }
  void skip(size_t bytes) { at_ += bytes; }
  size_t end() const { return at_; }
  const std::string& problem() const { return problem_; }
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  size_t at_;
  int layers_;
  std::vector<Entry> entries_;
  std::string problem_;
};

namespace {

struct LegacySizes {
  int dim, hidden, layers, heads, kv_heads, vocab, seq_len;
  bool tied;
  int64_t head_dim() const { return dim / heads; }
  int64_t kv_dim() const { return int64_t(kv_heads) * head_dim(); }
  bool plausible() const {
    return dim > 0 && hidden > 0 && layers > 0 && heads > 0 && kv_heads > 0 && vocab > 0 &&
           seq_len > 0 && dim <= (1 << 16) && hidden <= (1 << 18) && layers <= 1024 &&
           heads <= dim && kv_heads <= heads && vocab <= (1 << 22) && seq_len <= (1 << 22) &&
           dim % heads == 0 && heads % kv_heads == 0;
  }
  // The per-layer matrices in llama2.c's order (v0 puts ffn_norm between wo and w1).
  std::array<std::pair<const char*, Shape>, 7> matrices() const {
    const int64_t d = dim, kv = kv_dim(), h = hidden;
    return {{{"wq", {d, d}}, {"wk", {kv, d}}, {"wv", {kv, d}}, {"wo", {d, d}}, {"w1", {h, d}},
             {"w2", {d, h}}, {"w3", {h, d}}}};
  }
  // What these files cannot say: llama2.c's conventions (rope theta 10000, eps 1e-5, BOS 1, EOS 2).
  ModelConfig config(DType dtype, int group_size) const {
    ModelConfig c;
    c.architecture = "llama";
    c.dim = dim, c.hidden_dim = hidden, c.n_layers = layers, c.n_heads = heads;
    c.n_kv_heads = kv_heads, c.head_dim = int(head_dim()), c.vocab_size = vocab;
    c.max_seq_len = seq_len, c.tied_embeddings = tied;
    c.dtype = dtype, c.group_size = group_size;
    c.bos_id = 1, c.eos_ids = {2}, c.add_bos = true;
    return c;
  }
};

constexpr int kMaxGroup = 1 << 16;

// KuiperLLama's int8 export (its tools/export.py, legacy_export_quant): eight int32 (llama2.c's
// seven sizes, the vocabulary negative for an unshared classifier, then the group size); per
// matrix kind, every layer's int8 codes each followed by its fp32 scales (groups over the
// flattened matrix), the unshared classifier likewise; then fp32 embeddings and norms.
ArraySequence kuiperllama_layout(const LegacySizes& s, int group) {
  ArraySequence seq(32, s.layers);
  for (const auto& [name, shape] : s.matrices()) seq.per_layer(name, shape, group);
  if (!s.tied) seq.array("output", {s.vocab, s.dim}, group);
  seq.array("tok_embeddings", {s.vocab, s.dim});
  seq.per_layer("attention_norm", {s.dim});
  seq.per_layer("ffn_norm", {s.dim});
  seq.array("norm", {s.dim});
  return seq;
}

}  // namespace

// The headerless layouts, told apart by magic and then by exact file size.
void ModelFile::parse_llama2c() {
  const auto bytes = file_->bytes();
  std::array<int32_t, 8> h{};
  std::memcpy(h.data(), bytes.data(), std::min(bytes.size(), sizeof(h)));
  if (bytes.size() >= 8 && h[0] == kLlama2cMagic) return parse_llama2c_versioned();
  // |h[5]| in 64 bits: -INT32_MIN overflows an int (a regression input of fuzz_legacy_model).
  const int vocab = int(std::min<int64_t>(std::abs(int64_t(h[5])), INT32_MAX));
  const LegacySizes s{h[0], h[1], h[2], h[3], h[4], vocab, h[6], h[5] > 0};
  KUIPER_CHECK(bytes.size() >= 28 && s.plausible(),
               "not a model file: it has neither the KUIPERLM header of tools/export.py nor a "
               "plausible llama2.c or KuiperLLama header");
  const int64_t dim = s.dim;

  // llama2.c v0: seven int32, then fp32 arrays; the rope table before the classifier is unused.
  ArraySequence v0(28, s.layers);
  v0.array("tok_embeddings", {vocab, dim});
  v0.per_layer("attention_norm", {dim});
  const auto matrices = s.matrices();
  for (int m = 0; m < 4; ++m) v0.per_layer(matrices[m].first, matrices[m].second);
  v0.per_layer("ffn_norm", {dim});
  for (int m = 4; m < 7; ++m) v0.per_layer(matrices[m].first, matrices[m].second);
  v0.array("norm", {dim});
  v0.skip(size_t(s.seq_len) * size_t(s.head_dim()) * 4);  // freq_cis_real and freq_cis_imag
  if (!s.tied) v0.array("output", {vocab, dim});

  // A plausible eighth int may be KuiperLLama's group size.
  const int group = h[7];
  std::optional<ArraySequence> kuiper_llama;
  if (group > 0 && group <= kMaxGroup) kuiper_llama = kuiperllama_layout(s, group);
  const bool is_v0 = v0.end() == bytes.size();
  const ArraySequence* seq = is_v0 ? &v0
                             : kuiper_llama && kuiper_llama->end() == bytes.size() ? &*kuiper_llama
                                                                                    : nullptr;
  if (seq == nullptr) {
    // Name both sizes where both layouts are possible: a KuiperLLama file a byte too long is not
    // a "truncated" llama2.c file.
    const size_t shortest = kuiper_llama ? std::min(v0.end(), kuiper_llama->end()) : v0.end();
    const std::string truncated = bytes.size() < shortest ? " (truncated)" : "";
    if (kuiper_llama)
      fail("the file has ", bytes.size(), " bytes, which fits neither llama2.c v0 (dim ", dim, ", ",
           s.layers, " layers, vocab ", vocab, ": ", v0.end(), " bytes) nor KuiperLLama int8 (group size ",
           group, ": ", kuiper_llama->end(), " bytes)", truncated);
    fail("the header reads as llama2.c v0 (dim ", dim, ", ", s.layers, " layers, vocab ", vocab,
         "), which needs ", v0.end(), " bytes, but the file has ", bytes.size(), truncated,
         "; nor does it fit KuiperLLama's int8 layout");
  }
  format_ = is_v0 ? "llama2.c v0" : "KuiperLLama int8";
  KUIPER_CHECK(seq->problem().empty(), format_, ": ", seq->problem());
  config_ = is_v0 ? s.config(DType::kF32, 0) : s.config(DType::kI8, group);
  add_sequence(*seq);
}

// llama2.c's export.py versions 1 (fp32) and 2 (int8 codes with fp32 scales, runq.c): a 256-byte
// header (magic, version, seven sizes, shared classifier flag, group size), the norms first,
// then the matrices; version 2 quantizes the embedding table too.
void ModelFile::parse_llama2c_versioned() {
  const auto bytes = file_->bytes();
  KUIPER_CHECK(bytes.size() >= 256, "truncated: a llama2.c (ak42) header is 256 bytes, the file has ",
               bytes.size());
  const auto version = read_le<int32_t>(bytes, 4);
  KUIPER_CHECK(version == 1 || version == 2, "llama2.c export version ", version,
               " is not supported (versions 1 and 2 are)");
  std::array<int32_t, 7> h{};
  std::memcpy(h.data(), bytes.data() + 8, sizeof(h));
  const auto shared = uint8_t(bytes[36]);
  const auto header_group = read_le<int32_t>(bytes, 37);
  const LegacySizes s{h[0], h[1], h[2], h[3], h[4], h[5], h[6], shared != 0};
  KUIPER_CHECK(s.plausible() && shared <= 1, "corrupt llama2.c v", version, " header");
  KUIPER_CHECK(version == 1 || (header_group > 0 && header_group <= kMaxGroup),
               "llama2.c v2 header: group size ", header_group, " is not positive");
  const int group = version == 2 ? header_group : 0;  // 0: fp32 matrices
  const int64_t dim = s.dim, vocab = s.vocab;
  ArraySequence seq(256, s.layers);
  seq.per_layer("attention_norm", {dim});
  seq.per_layer("ffn_norm", {dim});
  seq.array("norm", {dim});
  seq.array("tok_embeddings", {vocab, dim}, group);
  for (const auto& [name, shape] : s.matrices()) seq.per_layer(name, shape, group);
  if (!s.tied) seq.array("output", {vocab, dim}, group);
  KUIPER_CHECK(seq.end() == bytes.size(), "llama2.c v", version, " file of dim ", dim, ", ",
               s.layers, " layers, vocab ", vocab, (version == 2 ? ", group size " : ""),
               (version == 2 ? std::to_string(group) : std::string()), " needs ", seq.end(),
               " bytes, but the file has ", bytes.size(),
               (bytes.size() < seq.end() ? " (truncated)" : ""));
  KUIPER_CHECK(seq.problem().empty(), "llama2.c v2: ", seq.problem());
  config_ = s.config(version == 1 ? DType::kF32 : DType::kI8, group);
  format_ = "llama2.c v" + std::to_string(version);
  add_sequence(seq);
}

void ModelFile::add_sequence(const ArraySequence& seq) {
  for (const auto& e : seq.entries()) add_tensor(e.name, e.dtype, e.shape, e.offset);
}

void ModelFile::add_tensor(std::string name, DType dtype, Shape shape, size_t offset) {
  const size_t size = file_->bytes().size();
  // Bounded by the file's size as the product grows, so that numel() cannot overflow: no dtype
  // stores more than two values a byte.
  int64_t numel = 1;
  for (int64_t d : shape) {
    KUIPER_CHECK(d > 0, "tensor '", name, "' has shape ", shape.str(), ": dimensions must be positive");
    KUIPER_CHECK(d <= int64_t(2 * size) / numel, "truncated: tensor '", name, "' of shape ",
                 shape.str(), " is larger than the file's ", size, " bytes");
    numel *= d;
  }
  const size_t bytes = storage_bytes(dtype, numel);
  KUIPER_CHECK(offset <= size && bytes <= size - offset, "truncated: tensor '", name, "' ends at byte ",
               offset + bytes, " but the file has ", size, " bytes");
  KUIPER_CHECK(tensors_.emplace(name, Entry{dtype, shape, offset}).second, "tensor '", name,
               "' is listed twice");
}

void ModelFile::check_no_overlap() const {
  std::vector<std::pair<size_t, const std::string*>> starts;
  for (const auto& [name, e] : tensors_) starts.emplace_back(e.offset, &name);
  std::sort(starts.begin(), starts.end());
  for (size_t i = 1; i < starts.size(); ++i) {
    const Entry& prev = tensors_.find(*starts[i - 1].second)->second;
    const size_t prev_end = prev.offset + storage_bytes(prev.dtype, prev.shape.numel());
    KUIPER_CHECK(prev_end <= starts[i].first, "tensors '", *starts[i - 1].second, "' and '",
                 *starts[i].second, "' overlap (bytes ", prev.offset, "..", prev_end, " and from ",
                 starts[i].first, ")");
  }
}

Weight ModelFile::weight(std::string_view name, const Shape& shape) const {
  Tensor values = tensor(name, shape);
  if (!is_quantized(values.dtype())) return values;
  const std::string scales_name = std::string(name) + ".scales";
  const auto it = tensors_.find(scales_name);
  KUIPER_CHECK(it != tensors_.end(), "model file ", path().string(), ": ", dtype_name(values.dtype()),
               " tensor '", name, "' has no scales ('", scales_name, "')");
  const Entry& e = it->second;
  const int64_t groups = e.shape.ndim() == 2 ? e.shape[1] : 0;
  KUIPER_CHECK(e.shape.ndim() == 2 && e.shape[0] == shape[0] && groups > 0 && shape[1] % groups == 0,
               "model file ", path().string(), ": scales '", scales_name, "' have shape ",
               e.shape.str(), ", which does not divide ", shape.str(), " into groups of a row");
  const int64_t group = shape[1] / groups;
  KUIPER_CHECK(config_.group_size == 0 || group == config_.group_size, "model file ",
               path().string(), ": '", name, "' has groups of ", group, ", the header says ",
               config_.group_size);
  Weight w(values, Tensor::view(e.copy ? e.copy : buffer_, e.offset, e.dtype, e.shape));
  check_weight(w, name);
  return w;
}

size_t ModelFile::tensor_bytes() const {
  size_t total = 0;
  for (const auto& [name, e] : tensors_) total += storage_bytes(e.dtype, e.shape.numel());
  return total;
}

Tensor ModelFile::tensor(std::string_view name, const Shape& shape) const {
  const auto it = tensors_.find(name);
  KUIPER_CHECK(it != tensors_.end(), "model file ", path().string(), " has no tensor '", name, "'");
  const Entry& e = it->second;
  KUIPER_CHECK(e.shape == shape, "model file ", path().string(), ": tensor '", name, "' has shape ",
               e.shape.str(), ", expected ", shape.str());
  return Tensor::view(e.copy ? e.copy : buffer_, e.offset, e.dtype, e.shape);
}

}  // namespace kuiper
