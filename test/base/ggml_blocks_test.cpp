// Hand-made ggml blocks whose values are known: the float64 reference of the kernel tests
// (test_util.cpp weight_element) and the CPU kernels' dequantization (embedding) must both give
// them. The encoders follow ggml_blocks.h's description of each layout.
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/kernels.h"
#include "kuiper/base/ggml_blocks.h"
#include "test/test_util.h"

namespace kuiper::test {
namespace {

// A weight of one row made of `blocks`, and its values as the CPU embedding dequantizes them.
template <class B>
Weight one_row(DType dtype, const std::vector<B>& blocks) {
  Tensor t(dtype, {1, int64_t(blocks.size()) * block_values(dtype)});
  std::memcpy(t.raw_data(), blocks.data(), t.bytes());
  return t;
}
std::vector<float> cpu_row(const Weight& w) {
  Tensor tokens(DType::kI32, {1}), out(DType::kF32, {1, w.cols()});
  tokens.span<int32_t>()[0] = 0;
  kernels::registry().embedding.find(Device::kCPU, w.dtype())(tokens, w, out, DeviceContext::cpu());
  return {out.span<float>().begin(), out.span<float>().end()};
}

void expect_values(const Weight& w, const std::vector<double>& want) {
  ASSERT_EQ(w.cols(), int64_t(want.size()));
  const std::vector<float> got = cpu_row(w);
  for (size_t k = 0; k < want.size(); ++k) {
    EXPECT_EQ(weight_element(w, 0, int64_t(k)), want[k]) << dtype_name(w.dtype()) << " value " << k;
    EXPECT_EQ(got[k], float(want[k])) << dtype_name(w.dtype()) << " value " << k;
  }
}

TEST(GgmlBlocks, Q8_0IsScaleTimesCode) {
  BlockQ8_0 b{to_f16(0.5f), {}};
  std::vector<double> want;
  for (int j = 0; j < 32; ++j) {
    b.qs[j] = int8_t(j == 31 ? -128 : 4 * j - 64);
    want.push_back(0.5 * b.qs[j]);
  }
  expect_values(one_row(DType::kQ8_0, std::vector{b}), want);
}

TEST(GgmlBlocks, Q4_0HoldsValuesJAndJPlus16InOneByte) {
  BlockQ4_0 b{to_f16(0.25f), {}};
  std::vector<double> want(32);
  for (int j = 0; j < 16; ++j) {
    b.qs[j] = uint8_t(j | (15 - j) << 4);
    want[j] = 0.25 * (j - 8);
    want[j + 16] = 0.25 * (15 - j - 8);
  }
  expect_values(one_row(DType::kQ4_0, std::vector{b}), want);
}

TEST(GgmlBlocks, Q4_KSubBlocksHaveSixBitScalesAndMinimums) {
  const int scale[8] = {1, 2, 3, 63, 17, 33, 50, 63}, min[8] = {0, 5, 10, 63, 16, 31, 47, 20};
  BlockQ4_K b{to_f16(0.5f), to_f16(0.25f), {}, {}};
  for (int j = 0; j < 4; ++j) {  // sub-blocks 0-3: low 6 bits of bytes j and j + 4
    b.scales[j] = uint8_t(scale[j]);
    b.scales[j + 4] = uint8_t(min[j]);
  }
  for (int j = 4; j < 8; ++j) {  // 4-7: nibbles of byte j + 4, top bits in bytes j - 4 and j
    b.scales[j + 4] = uint8_t((scale[j] & 15) | (min[j] & 15) << 4);
    b.scales[j - 4] |= uint8_t((scale[j] >> 4) << 6);
    b.scales[j] |= uint8_t((min[j] >> 4) << 6);
  }
  std::vector<double> want(256);
  for (int pair = 0; pair < 4; ++pair)
    for (int l = 0; l < 32; ++l) {
      const int low = (l + pair) % 16, high = 15 - l % 16;
      b.qs[32 * pair + l] = uint8_t(low | high << 4);
      want[64 * pair + l] = 0.5 * scale[2 * pair] * low - 0.25 * min[2 * pair];
      want[64 * pair + 32 + l] = 0.5 * scale[2 * pair + 1] * high - 0.25 * min[2 * pair + 1];
    }
  // A second super-block with other scales: rows walk blocks in order.
  BlockQ4_K c = b;
  c.d = to_f16(-1.f);
  std::vector<double> both = want;
  for (int k = 0; k < 256; ++k) {
    const int j = k / 32, l = k % 32, u = j % 2 == 0 ? (l + j / 2) % 16 : 15 - l % 16;
    both.push_back(-1.0 * scale[j] * u - 0.25 * min[j]);
  }
  expect_values(one_row(DType::kQ4_K, std::vector{b, c}), both);
}

TEST(GgmlBlocks, Q6_KCodesAreSixBitsInTwoArrays) {
  BlockQ6_K b{};
  b.d = to_f16(0.5f);
  for (int k = 0; k < 16; ++k) b.scales[k] = int8_t(k == 15 ? -128 : 3 * k - 20);
  std::vector<double> want(256);
  for (int v = 0; v < 256; ++v) {
    const int q = (v * 7 + v / 64) % 64;
    const int half = v / 128, quarter = v % 128 / 32, l = v % 32;
    uint8_t& low = b.ql[64 * half + 32 * (quarter % 2) + l];
    low |= uint8_t(quarter < 2 ? q & 15 : (q & 15) << 4);
    b.qh[32 * half + l] |= uint8_t((q >> 4) << (2 * quarter));
    want[v] = 0.5 * b.scales[v / 16] * (q - 32);
  }
  expect_values(one_row(DType::kQ6_K, std::vector{b}), want);
}

TEST(GgmlBlocks, WeightsTakeNoScalesAndWholeBlocks) {
  EXPECT_NO_THROW(check_weight(Weight(Tensor(DType::kQ4_K, {3, 512})), "w"));
  EXPECT_THROW(check_weight(Weight(Tensor(DType::kQ4_K, {3, 288})), "w"), Error);
  EXPECT_THROW(check_weight(Weight(Tensor(DType::kQ8_0, {3, 48})), "w"), Error);
  EXPECT_THROW(check_weight(Weight(Tensor(DType::kQ8_0, {3, 64}), Tensor(DType::kF32, {3, 2})), "w"),
               Error);
}

}  // namespace
}  // namespace kuiper::test
