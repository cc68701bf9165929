#pragma once
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "kuiper/base/buffer.h"
#include "kuiper/base/file_bytes.h"
#include "kuiper/model/config.h"
#include "kuiper/tensor/tensor.h"
#include "kuiper/tensor/weight.h"

namespace kuiper {

class ArraySequence;
class GgufFile;

// A model file in memory (mapped by default), recognised by content: the project's own format
// (docs/model-format.md), llama.cpp's GGUF (llama and qwen2), llama2.c's v0 checkpoints and its versioned (ak42) v1 fp32 and v2 int8
// exports, and KuiperLLama's int8 export. Where the header leaves formats apart (llama2.c v0 and
// KuiperLLama), the file size decides: a file must fit exactly one layout. Tensors are views into the mapping, so
// nothing is read from disk until a kernel touches it.
class ModelFile {
 public:
  // Throws kuiper::Error naming the file and the problem: missing, truncated, not a model,
  // inconsistent sizes.
  static ModelFile open(const std::filesystem::path& path,
                        FileBytes::Mode mode = FileBytes::Mode::kMap);

  const ModelConfig& config() const { return config_; }
  const std::filesystem::path& path() const { return file_->path(); }
  std::string_view format() const { return format_; }
  bool has(std::string_view name) const { return tensors_.contains(name); }
  // The tensor `name`, which must exist with `shape` (the matrices' dtype comes from the file).
  Tensor tensor(std::string_view name, const Shape& shape) const;
  // Bytes of all tensors together (what a device copy of the weights needs).
  size_t tensor_bytes() const;
  // The matrix `name` [rows, cols]: its values, and for int8 its scales (tensor `name.scales`).
  Weight weight(std::string_view name, const Shape& shape) const;

  // The tokenizer the file carries: GGUF's tokenizer.ggml.* metadata (gguf() is then set), or a
  // kuiper file's embedded tokenizer.model / tokenizer.json bytes (empty when it has none).
  const GgufFile* gguf() const { return gguf_.get(); }
  std::string_view tokenizer_bytes() const { return tokenizer_bytes_; }

 private:
  struct Entry {
    DType dtype;
    Shape shape;
    size_t offset;                   // from the start of the file, or of `copy`
    std::shared_ptr<Buffer> copy{};  // a private copy (rows reordered at load); null: the file
  };
  // Refuses non-positive dimensions, tensors beyond the end of the file and repeated names.
  void add_tensor(std::string name, DType dtype, Shape shape, size_t offset);
  void check_no_overlap() const;
  void parse_kuiper();
  void parse_gguf();
  void add_rotary_reordered(const std::string& name, int n_heads);
  void parse_llama2c();
  void parse_llama2c_versioned();
  void add_sequence(const ArraySequence& seq);

  std::shared_ptr<const FileBytes> file_;
  std::shared_ptr<Buffer> buffer_;  // the whole mapping, as a CPU buffer
  std::string format_;
  ModelConfig config_;
  std::shared_ptr<const GgufFile> gguf_;
  std::string_view tokenizer_bytes_;  // views file_
  std::map<std::string, Entry, std::less<>> tensors_;
};

}  // namespace kuiper
