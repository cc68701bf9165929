#pragma once
// A GGUF file's structure (ggml's docs/gguf.md, version 3, little-endian): metadata key/values,
// tensor infos and where the tensor data starts. Parsing only: every count, length and offset is
// checked against the bytes before use, so any input either parses or throws kuiper::Error (the
// parser is fuzzed, test/fuzz/fuzz_gguf.cpp). Strings and tensors view the bytes, which the caller
// keeps alive.
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace kuiper {

// gguf_metadata_value_type, numbered as in the file.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
std::string_view gguf_type_name(GgufType t);

struct GgufValue;
struct GgufArray {
  GgufType type = GgufType::kUint8;  // of the elements
  std::vector<GgufValue> items;
};
// One metadata value: integers widened to int64 or uint64 (by signedness), floats to double.
struct GgufValue {
  GgufType type = GgufType::kUint8;
  std::variant<uint64_t, int64_t, double, bool, std::string_view, GgufArray> value;
};

// ggml's tensor types as GGUF numbers them (ggml_type), with their block sizes.
struct GgmlType {
  uint32_t id;
  std::string_view name;
  int block_values;
  int block_bytes;
};
// nullptr for a number this reader does not know.
const GgmlType* ggml_type(uint32_t id);

struct GgufTensor {
  std::string_view name;
  uint32_t type = 0;          // ggml_type
  std::vector<int64_t> dims;  // as in the file: dims[0] is the innermost (a row's length)
  size_t offset = 0;          // from the start of the file
  size_t bytes = 0;
};

class GgufFile {
 public:
  static constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
  static constexpr uint32_t kVersion = 3;
  static constexpr uint32_t kDefaultAlignment = 32;

  // Whether `bytes` start with GGUF's magic.
  static bool is_gguf(std::span<const std::byte> bytes);
  // Throws kuiper::Error naming what is wrong: version, truncation (and where), bad types,
  // duplicate keys or tensor names, unknown tensor types, misaligned or overlapping data.
  explicit GgufFile(std::span<const std::byte> bytes);

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  size_t data_start() const { return data_start_; }
  const std::map<std::string_view, GgufValue, std::less<>>& metadata() const { return metadata_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(std::string_view name) const;

  // Typed metadata lookups: nullopt / nullptr when the key is absent; kuiper::Error naming the key
  // when it holds another type (any integer type serves integer(); integers serve number()).
  const GgufValue* find(std::string_view key) const;
  std::optional<int64_t> integer(std::string_view key) const;
  std::optional<double> number(std::string_view key) const;
  std::optional<bool> boolean(std::string_view key) const;
  std::optional<std::string_view> string(std::string_view key) const;
  const GgufArray* array(std::string_view key) const;
  // The same, throwing kuiper::Error naming the key when it is absent.
  int64_t require_integer(std::string_view key) const;
  std::string_view require_string(std::string_view key) const;

 private:
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  size_t data_start_ = 0;
  std::map<std::string_view, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string_view, size_t, std::less<>> tensor_index_;
};

// Elements of an array as int64 (any integer type) / strings / floats; kuiper::Error naming `key`
// for another element type.
std::vector<int64_t> gguf_integers(const GgufArray& a, std::string_view key);
std::vector<std::string_view> gguf_strings(const GgufArray& a, std::string_view key);
std::vector<float> gguf_floats(const GgufArray& a, std::string_view key);

}  // namespace kuiper
