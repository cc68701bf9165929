// The GGUF parser on files built byte by byte here: every value type read back, and each kind of
// damage one kuiper::Error naming it (test/fuzz/fuzz_gguf.cpp covers the rest).
#include "kuiper/model/gguf_file.h"

#include <cstring>

#include "kuiper/base/error.h"
#include "test/test_util.h"

namespace kuiper::test {
namespace {

// Writes a GGUF file: header, key/values, tensor infos, padding, data.
class GgufBuilder {
 public:
  template <class T>
  GgufBuilder& raw(T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    kv_.insert(kv_.end(), p, p + sizeof(T));
    return *this;
  }
  GgufBuilder& str(std::string_view s) {
    raw<uint64_t>(s.size());
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    kv_.insert(kv_.end(), p, p + s.size());
    return *this;
  }
  // A key with its value type; the value follows with raw() / str().
  GgufBuilder& key(std::string_view k, GgufType t) {
    ++n_kv_;
    return str(k).raw<uint32_t>(uint32_t(t));
  }
  GgufBuilder& tensor(std::string_view name, std::vector<uint64_t> dims, uint32_t type,
                      uint64_t offset) {
    tensors_.push_back({std::string(name), std::move(dims), type, offset});
    return *this;
  }
  std::vector<std::byte> bytes(uint32_t version = 3, size_t alignment = 32,
                               size_t data_bytes = 0) const {
    GgufBuilder out;
    out.raw<uint32_t>(GgufFile::kMagic)
        .raw<uint32_t>(version)
        .raw<uint64_t>(tensors_.size())
        .raw<uint64_t>(n_kv_);
    out.kv_.insert(out.kv_.end(), kv_.begin(), kv_.end());
    for (const auto& t : tensors_) {
      out.str(t.name).raw<uint32_t>(uint32_t(t.dims.size()));
      for (uint64_t d : t.dims) out.raw<uint64_t>(d);
      out.raw<uint32_t>(t.type).raw<uint64_t>(t.offset);
    }
    out.kv_.resize((out.kv_.size() + alignment - 1) / alignment * alignment + data_bytes);
    return out.kv_;
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type;
    uint64_t offset;
  };
  std::vector<std::byte> kv_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

// Every metadata type, a nested array, and two tensors (F32 [2, 3] and Q8_0 [64, 2]).
GgufBuilder sample() {
  GgufBuilder b;
  b.key("u8", GgufType::kUint8).raw<uint8_t>(200);
  b.key("i8", GgufType::kInt8).raw<int8_t>(-100);
  b.key("u16", GgufType::kUint16).raw<uint16_t>(60000);
  b.key("i16", GgufType::kInt16).raw<int16_t>(-30000);
  b.key("u32", GgufType::kUint32).raw<uint32_t>(4000000000u);
  b.key("i32", GgufType::kInt32).raw<int32_t>(-2000000000);
  b.key("u64", GgufType::kUint64).raw<uint64_t>(1ull << 40);
  b.key("i64", GgufType::kInt64).raw<int64_t>(-(1ll << 40));
  b.key("f32", GgufType::kFloat32).raw<float>(0.5f);
  b.key("f64", GgufType::kFloat64).raw<double>(0.25);
  b.key("yes", GgufType::kBool).raw<uint8_t>(1);
  b.key("name", GgufType::kString).str("kjv");
  b.key("words", GgufType::kArray)
      .raw<uint32_t>(uint32_t(GgufType::kString))
      .raw<uint64_t>(2)
      .str("a b")
      .str("");
  b.key("nested", GgufType::kArray).raw<uint32_t>(uint32_t(GgufType::kArray)).raw<uint64_t>(1);
  b.raw<uint32_t>(uint32_t(GgufType::kInt16)).raw<uint64_t>(2).raw<int16_t>(-1).raw<int16_t>(7);
  b.tensor("a", {3, 2}, 0, 0);
  b.tensor("q", {64, 2}, 8, 32);  // 2 rows of 2 Q8_0 blocks of 34 bytes
  return b;
}

void expect_error(const std::vector<std::byte>& bytes, const std::string& fragment) {
  try {
    GgufFile f(bytes);
    ADD_FAILURE() << "parsed; expected an error mentioning '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(GgufFile, ReadsEveryValueType) {
  const auto bytes = sample().bytes(3, 32, 32 + 4 * 34);
  const GgufFile f(bytes);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.integer("u8"), 200);
  EXPECT_EQ(f.integer("i8"), -100);
  EXPECT_EQ(f.integer("u16"), 60000);
  EXPECT_EQ(f.integer("i16"), -30000);
  EXPECT_EQ(f.integer("u32"), 4000000000ll);
  EXPECT_EQ(f.integer("i32"), -2000000000);
  EXPECT_EQ(f.integer("u64"), 1ll << 40);
  EXPECT_EQ(f.integer("i64"), -(1ll << 40));
  EXPECT_EQ(f.number("f32"), 0.5);
  EXPECT_EQ(f.number("f64"), 0.25);
  EXPECT_EQ(f.number("u8"), 200.0);  // integers serve as numbers
  EXPECT_EQ(f.boolean("yes"), true);
  EXPECT_EQ(f.string("name"), "kjv");
  EXPECT_EQ(gguf_strings(*f.array("words"), "words"), (std::vector<std::string_view>{"a b", ""}));
  const GgufArray& nested = *f.array("nested");
  ASSERT_EQ(nested.items.size(), 1u);
  EXPECT_EQ(gguf_integers(std::get<GgufArray>(nested.items[0].value), "nested"),
            (std::vector<int64_t>{-1, 7}));
  EXPECT_EQ(f.integer("absent"), std::nullopt);
  EXPECT_THROW(f.string("u8"), Error);
  EXPECT_THROW(f.integer("name"), Error);
  EXPECT_THROW(f.require_integer("absent"), Error);

  ASSERT_EQ(f.tensors().size(), 2u);
  const GgufTensor& a = *f.find_tensor("a");
  EXPECT_EQ(a.dims, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(a.bytes, 24u);
  EXPECT_EQ(a.offset, f.data_start());
  EXPECT_EQ(f.data_start() % 32, 0u);
  EXPECT_EQ(f.find_tensor("q")->bytes, 4u * 34);
  EXPECT_EQ(f.find_tensor("q")->offset, f.data_start() + 32);
}

TEST(GgufFile, EveryTruncationIsAnError) {
  const auto bytes = sample().bytes(3, 32, 32 + 4 * 34);
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::vector<std::byte> head(bytes.begin(), bytes.begin() + std::ptrdiff_t(n));
    EXPECT_THROW(GgufFile{head}, Error) << n << " of " << bytes.size() << " bytes";
  }
}

TEST(GgufFile, DamageIsNamed) {
  expect_error(sample().bytes(2, 32, 200), "GGUF version 2 is not supported");
  expect_error(sample().bytes(3u << 24, 32, 200), "big-endian");
  expect_error(sample().bytes(3, 32, 32 + 4 * 34 - 1), "truncated: tensor 'q'");
  {
    GgufBuilder b;
    b.key("k", GgufType::kUint8).raw<uint8_t>(1).key("k", GgufType::kUint8).raw<uint8_t>(2);
    expect_error(b.bytes(), "metadata key 'k' appears twice");
  }
  {
    GgufBuilder b;
    b.key("k", GgufType(13)).raw<uint8_t>(1);
    expect_error(b.bytes(), "unknown metadata value type 13");
  }
  {
    GgufBuilder b;
    b.key("b", GgufType::kBool).raw<uint8_t>(2);
    expect_error(b.bytes(), "a bool must be 0 or 1");
  }
  {
    GgufBuilder b;
    b.key("general.alignment", GgufType::kUint32).raw<uint32_t>(48);
    expect_error(b.bytes(), "general.alignment must be a power of two");
  }
  {
    GgufBuilder b;  // 2^62 entries of one byte each cannot be there
    b.key("a", GgufType::kArray).raw<uint32_t>(uint32_t(GgufType::kUint8)).raw<uint64_t>(1ull << 62);
    expect_error(b.bytes(), "truncated: a counts");
  }
  {
    GgufBuilder b;  // arrays of arrays, deeper than any file needs
    b.key("deep", GgufType::kArray);
    for (int i = 0; i < 20; ++i) b.raw<uint32_t>(uint32_t(GgufType::kArray)).raw<uint64_t>(1);
    expect_error(b.bytes(), "nested deeper");
  }
  expect_error(GgufBuilder().tensor("t", {4}, 0, 8).bytes(3, 32, 64),
               "not a multiple of the alignment 32");
  expect_error(GgufBuilder().tensor("t", {4}, 99, 0).bytes(3, 32, 64), "unknown ggml type 99");
  expect_error(GgufBuilder().tensor("t", {48, 1}, 8, 0).bytes(3, 32, 64), "not whole Q8_0 blocks");
  expect_error(GgufBuilder().tensor("t", {4, 0}, 0, 0).bytes(3, 32, 64), "bad dimension 0");
  expect_error(GgufBuilder().tensor("t", {1ull << 40, 1ull << 40}, 0, 0).bytes(3, 32, 64),
               "bad dimension");
  expect_error(GgufBuilder().tensor("t", {1, 1, 1, 1, 1}, 0, 0).bytes(3, 32, 64), "5 dimensions");
  expect_error(GgufBuilder().tensor("t", {16}, 0, 0).tensor("t", {4}, 0, 64).bytes(3, 32, 128),
               "'t' appears twice");
  expect_error(GgufBuilder().tensor("t", {16}, 0, 0).tensor("u", {4}, 0, 32).bytes(3, 32, 128),
               "overlap");
  const std::vector<std::byte> not_gguf(16, std::byte{'x'});
  expect_error(not_gguf, "not a GGUF file");
}

}  // namespace
}  // namespace kuiper::test
