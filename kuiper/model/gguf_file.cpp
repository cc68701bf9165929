#include "kuiper/model/gguf_file.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

#include "kuiper/base/error.h"

namespace kuiper {
namespace {

constexpr GgmlType kGgmlTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 40},      {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74},  {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

// Arrays may nest (the spec allows arrays of arrays); deeper than this is no real file and
// would only exhaust the stack.
constexpr int kMaxArrayDepth = 8;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS

// Reads little-endian values from the bytes, checking each read against the end.
class Cursor {
 public:
  explicit Cursor(std::span<const std::byte> bytes) : bytes_(bytes) {}

  size_t pos() const { return pos_; }
  size_t left() const { return bytes_.size() - pos_; }

  template <class T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view string(std::string_view what) {
    const auto length = read<uint64_t>(what);
    need(length, what);
    const std::string_view s(reinterpret_cast<const char*>(bytes_.data()) + pos_, size_t(length));
    pos_ += size_t(length);
    return s;
  }
  // A count of elements that each take at least `min_bytes`: one that cannot fit is truncation,
  // caught before anything is reserved for it.
  uint64_t count(size_t min_bytes, std::string_view what) {
    const auto n = read<uint64_t>(what);
    KUIPER_CHECK(min_bytes == 0 || n <= left() / min_bytes, "truncated: ", what, " counts ", n,
                 " entries of at least ", min_bytes, " bytes, but only ", left(), " bytes are left");
    return n;
  }

 private:
  void need(uint64_t n, std::string_view what) const {
    KUIPER_CHECK(n <= left(), "truncated: ", what, " at byte ", pos_, " needs ", n,
                 " bytes, the file has ", bytes_.size());
  }
  std::span<const std::byte> bytes_;
  size_t pos_ = 0;
};

// The fewest bytes a value of type t takes (for the array count check).
size_t min_bytes(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool: return 1;
    case GgufType::kUint16:
    case GgufType::kInt16: return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32: return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64: return 8;
    case GgufType::kString: return 8;     // its length
    case GgufType::kArray: return 4 + 8;  // element type and count
  }
  return 1;
}

GgufType read_type(Cursor& c, std::string_view what) {
  const auto t = c.read<uint32_t>(what);
  KUIPER_CHECK(t <= uint32_t(GgufType::kFloat64), what, ": unknown metadata value type ", t);
  return GgufType(t);
}

GgufValue read_value(Cursor& c, GgufType type, std::string_view key, int depth) {
  GgufValue v{type, uint64_t{0}};
  switch (type) {
    case GgufType::kUint8: v.value = uint64_t(c.read<uint8_t>(key)); break;
    case GgufType::kUint16: v.value = uint64_t(c.read<uint16_t>(key)); break;
    case GgufType::kUint32: v.value = uint64_t(c.read<uint32_t>(key)); break;
    case GgufType::kUint64: v.value = c.read<uint64_t>(key); break;
    case GgufType::kInt8: v.value = int64_t(c.read<int8_t>(key)); break;
    case GgufType::kInt16: v.value = int64_t(c.read<int16_t>(key)); break;
    case GgufType::kInt32: v.value = int64_t(c.read<int32_t>(key)); break;
    case GgufType::kInt64: v.value = c.read<int64_t>(key); break;
    case GgufType::kFloat32: v.value = double(c.read<float>(key)); break;
    case GgufType::kFloat64: v.value = c.read<double>(key); break;
    case GgufType::kBool: {
      const auto b = c.read<uint8_t>(key);
      KUIPER_CHECK(b <= 1, "metadata '", key, "': a bool must be 0 or 1, found ", int(b));
      v.value = b == 1;
      break;
    }
    case GgufType::kString: v.value = c.string(key); break;
    case GgufType::kArray: {
      KUIPER_CHECK(depth < kMaxArrayDepth, "metadata '", key, "': arrays nested deeper than ",
                   kMaxArrayDepth);
      GgufArray a;
      a.type = read_type(c, key);
      const uint64_t n = c.count(min_bytes(a.type), key);
      a.items.reserve(size_t(n));
      for (uint64_t i = 0; i < n; ++i) a.items.push_back(read_value(c, a.type, key, depth + 1));
      v.value = std::move(a);
      break;
    }
  }
  return v;
}

// a * b, or nullopt when it overflows.
std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return std::nullopt;
  return a * b;
}

[[noreturn]] void wrong_type(std::string_view key, GgufType found, std::string_view expected) {
  fail("metadata '", key, "' holds a ", gguf_type_name(found), ", expected ", expected);
}

}  // namespace

std::string_view gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::kUint8: return "uint8";
    case GgufType::kInt8: return "int8";
    case GgufType::kUint16: return "uint16";
    case GgufType::kInt16: return "int16";
    case GgufType::kUint32: return "uint32";
    case GgufType::kInt32: return "int32";
    case GgufType::kFloat32: return "float32";
    case GgufType::kBool: return "bool";
    case GgufType::kString: return "string";
    case GgufType::kArray: return "array";
    case GgufType::kUint64: return "uint64";
    case GgufType::kInt64: return "int64";
    case GgufType::kFloat64: return "float64";
  }
  return "?";
}

const GgmlType* ggml_type(uint32_t id) {
  for (const GgmlType& t : kGgmlTypes)
    if (t.id == id) return &t;
  return nullptr;
}

bool GgufFile::is_gguf(std::span<const std::byte> bytes) {
  uint32_t magic = 0;
  if (bytes.size() < sizeof(magic)) return false;
  std::memcpy(&magic, bytes.data(), sizeof(magic));
  return magic == kMagic;
}

GgufFile::GgufFile(std::span<const std::byte> bytes) {
  KUIPER_CHECK(is_gguf(bytes), "not a GGUF file (no GGUF magic)");
  Cursor c(bytes);
  c.read<uint32_t>("magic");
  version_ = c.read<uint32_t>("version");
  KUIPER_CHECK(version_ == kVersion, "GGUF version ", version_, " is not supported (this build reads ",
               kVersion, (version_ == (kVersion << 24) ? "; the file is big-endian" : ""), ")");
  // A tensor info takes at least a name length, a dimension count, a type and an offset.
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.count(8 + 4 + 1, "metadata count");
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string_view key = c.string("metadata key");
    const GgufType type = read_type(c, key);
    GgufValue value = read_value(c, type, key, 0);
    KUIPER_CHECK(metadata_.emplace(key, std::move(value)).second, "metadata key '", key,
                 "' appears twice");
  }
  if (const auto a = integer("general.alignment")) {
    KUIPER_CHECK(*a > 0 && *a <= (1 << 30) && std::has_single_bit(uint64_t(*a)),
                 "general.alignment must be a power of two, found ", *a);
    alignment_ = uint32_t(*a);
  }

  KUIPER_CHECK(n_tensors <= c.left() / (8 + 4 + 4 + 8), "truncated: ", n_tensors,
               " tensor infos cannot fit in the ", c.left(), " bytes left");
  tensors_.reserve(size_t(n_tensors));
  std::vector<uint64_t> relative_offsets;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    t.name = c.string("tensor name");
    const auto n_dims = c.read<uint32_t>(t.name);
    KUIPER_CHECK(n_dims >= 1 && n_dims <= kMaxDims, "tensor '", t.name, "' has ", n_dims,
                 " dimensions (1 to ", kMaxDims, " are allowed)");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const auto dim = c.read<uint64_t>(t.name);
      const auto product = checked_mul(numel, dim);
      KUIPER_CHECK(dim > 0 && product && *product <= uint64_t(std::numeric_limits<int64_t>::max()),
                   "tensor '", t.name, "': bad dimension ", dim);
      numel = *product;
      t.dims.push_back(int64_t(dim));
    }
    t.type = c.read<uint32_t>(t.name);
    const GgmlType* type = ggml_type(t.type);
    KUIPER_CHECK(type != nullptr, "tensor '", t.name, "' has unknown ggml type ", t.type);
    KUIPER_CHECK(t.dims[0] % type->block_values == 0, "tensor '", t.name, "': rows of ", t.dims[0],
                 " values are not whole ", type->name, " blocks of ", type->block_values);
    const auto bytes_total =
        checked_mul(numel / uint64_t(type->block_values), uint64_t(type->block_bytes));
    KUIPER_CHECK(bytes_total.has_value(), "tensor '", t.name, "' is too large");
    t.bytes = size_t(*bytes_total);
    const auto offset = c.read<uint64_t>(t.name);
    KUIPER_CHECK(offset % alignment_ == 0, "tensor '", t.name, "': data offset ", offset,
                 " is not a multiple of the alignment ", alignment_);
    relative_offsets.push_back(offset);
    KUIPER_CHECK(tensor_index_.emplace(t.name, tensors_.size()).second, "tensor '", t.name,
                 "' appears twice");
    tensors_.push_back(std::move(t));
  }
  const size_t end_of_infos = c.pos();
  const size_t padding = (alignment_ - end_of_infos % alignment_) % alignment_;
  // With no tensors, the padding may be left out at the end of the file.
  KUIPER_CHECK(tensors_.empty() || padding <= bytes.size() - end_of_infos,
               "truncated: the file ends before its tensor data");
  data_start_ = std::min(end_of_infos + padding, bytes.size());
  const size_t data_bytes = bytes.size() - data_start_;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    GgufTensor& t = tensors_[i];
    KUIPER_CHECK(relative_offsets[i] <= data_bytes && t.bytes <= data_bytes - relative_offsets[i],
                 "truncated: tensor '", t.name, "' needs bytes ", relative_offsets[i], "..",
                 relative_offsets[i] + t.bytes, " of the data, which has ", data_bytes);
    t.offset = data_start_ + size_t(relative_offsets[i]);
  }
  // Overlapping tensors: no writer makes them, and one would alias another's storage.
  std::vector<const GgufTensor*> by_offset;
  for (const GgufTensor& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    KUIPER_CHECK(by_offset[i - 1]->offset + by_offset[i - 1]->bytes <= by_offset[i]->offset, "tensors '",
                 by_offset[i - 1]->name, "' and '", by_offset[i]->name, "' overlap");
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

std::optional<int64_t> GgufFile::integer(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* i = std::get_if<int64_t>(&v->value)) return *i;
  if (const auto* u = std::get_if<uint64_t>(&v->value)) {
    KUIPER_CHECK(*u <= uint64_t(std::numeric_limits<int64_t>::max()), "metadata '", key,
                 "' is out of range: ", *u);
    return int64_t(*u);
  }
  wrong_type(key, v->type, "an integer");
}

std::optional<double> GgufFile::number(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* f = std::get_if<double>(&v->value)) return *f;
  if (std::holds_alternative<int64_t>(v->value) || std::holds_alternative<uint64_t>(v->value))
    return double(*integer(key));
  wrong_type(key, v->type, "a number");
}

std::optional<bool> GgufFile::boolean(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* b = std::get_if<bool>(&v->value)) return *b;
  wrong_type(key, v->type, "a bool");
}

std::optional<std::string_view> GgufFile::string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* s = std::get_if<std::string_view>(&v->value)) return *s;
  wrong_type(key, v->type, "a string");
}

const GgufArray* GgufFile::array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return nullptr;
  if (const auto* a = std::get_if<GgufArray>(&v->value)) return a;
  wrong_type(key, v->type, "an array");
}

int64_t GgufFile::require_integer(std::string_view key) const {
  const auto v = integer(key);
  KUIPER_CHECK(v.has_value(), "GGUF metadata lacks '", key, "'");
  return *v;
}

std::string_view GgufFile::require_string(std::string_view key) const {
  const auto v = string(key);
  KUIPER_CHECK(v.has_value(), "GGUF metadata lacks '", key, "'");
  return *v;
}

std::vector<int64_t> gguf_integers(const GgufArray& a, std::string_view key) {
  std::vector<int64_t> out;
  out.reserve(a.items.size());
  for (const GgufValue& v : a.items) {
    if (const auto* i = std::get_if<int64_t>(&v.value)) {
      out.push_back(*i);
    } else if (const auto* u = std::get_if<uint64_t>(&v.value);
               u != nullptr && *u <= uint64_t(std::numeric_limits<int64_t>::max())) {
      out.push_back(int64_t(*u));
    } else {
      fail("metadata '", key, "' is an array of ", gguf_type_name(a.type), ", expected integers");
    }
  }
  return out;
}

std::vector<std::string_view> gguf_strings(const GgufArray& a, std::string_view key) {
  KUIPER_CHECK(a.type == GgufType::kString, "metadata '", key, "' is an array of ",
               gguf_type_name(a.type), ", expected strings");
  std::vector<std::string_view> out;
  out.reserve(a.items.size());
  for (const GgufValue& v : a.items) out.push_back(std::get<std::string_view>(v.value));
  return out;
}

std::vector<float> gguf_floats(const GgufArray& a, std::string_view key) {
  std::vector<float> out;
  out.reserve(a.items.size());
  for (const GgufValue& v : a.items) {
    if (const auto* f = std::get_if<double>(&v.value))
      out.push_back(float(*f));
    else if (const auto* i = std::get_if<int64_t>(&v.value))
      out.push_back(float(*i));
    else if (const auto* u = std::get_if<uint64_t>(&v.value))
      out.push_back(float(*u));
    else
      fail("metadata '", key, "' is an array of ", gguf_type_name(a.type), ", expected numbers");
  }
  return out;
}

}  // namespace kuiper
