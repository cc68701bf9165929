#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

TEST(CpuEmbedding, GathersRowsOfEveryDtype) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    std::mt19937 rng(5);
    Tensor table(dtype, {50, 37}), tokens(DType::kI32, {4}), out(DType::kF32, {4, 37});
    fill_uniform(table, rng);
    const int32_t ids[] = {0, 49, 7, 7};
    std::copy(ids, ids + 4, tokens.span<int32_t>().begin());
    kernels::registry().embedding.find(Device::kCPU, dtype)(tokens, table, out, DeviceContext::cpu());
    for (int i = 0; i < 4; ++i)
      for (int k = 0; k < 37; ++k)
        ASSERT_EQ(element(out, i * 37 + k), element(table, ids[i] * 37 + k)) << dtype_name(dtype);
  }
}

TEST(CpuEmbedding, RejectsIdsOutsideTheVocabulary) {
  Tensor table(DType::kF32, {10, 4}), tokens(DType::kI32, {1}), out(DType::kF32, {1, 4});
  tokens.span<int32_t>()[0] = 10;
  EXPECT_THROW(kernels::registry().embedding.find(Device::kCPU, DType::kF32)(tokens, table, out,
                                                                            DeviceContext::cpu()),
               Error);
}

TEST(CpuEmbedding, DequantizesInt8AndQ4Rows) {
  for (DType dtype : {DType::kI8, DType::kQ4})
    for (DType scale_dtype : {DType::kF32, DType::kF16}) {
      std::mt19937 rng(6);
      const int64_t dim = 96, group = dtype == DType::kI8 ? 16 : 32;
      const Weight table = random_weight(dtype, 50, dim, rng, group, scale_dtype);
      Tensor tokens(DType::kI32, {3}), out(DType::kF32, {3, dim});
      const int32_t ids[] = {49, 0, 13};
      std::copy(ids, ids + 3, tokens.span<int32_t>().begin());
      kernels::registry().embedding.find(Device::kCPU, dtype)(tokens, table, out,
                                                             DeviceContext::cpu());
      for (int i = 0; i < 3; ++i)
        for (int k = 0; k < dim; ++k)
          ASSERT_FLOAT_EQ(element(out, i * dim + k), float(weight_element(table, ids[i], k)))
              << dtype_name(dtype) << " " << k;
    }
}

TEST(CpuEmbedding, DequantizesGgmlBlocks) {
  for (DType dtype : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_K, DType::kQ6_K}) {
    std::mt19937 rng(7);
    const int64_t dim = 512;
    const Weight table = random_weight(dtype, 51, dim, rng);
    const Tensor tokens = Tensor(DType::kI32, {3});
    Tensor out(DType::kF32, {3, dim});
    const int32_t ids[] = {50, 0, 13};
    std::copy(ids, ids + 3, tokens.span<int32_t>().begin());
    kernels::registry().embedding.find(Device::kCPU, dtype)(tokens, table, out, DeviceContext::cpu());
    for (int i = 0; i < 3; ++i)
      for (int k = 0; k < dim; ++k)
        ASSERT_NEAR(element(out, i * dim + k), weight_element(table, ids[i], k),
                    4e-6 + 2e-6 * std::fabs(weight_element(table, ids[i], k)))
            << dtype_name(dtype) << " " << k;  // Q4_K's minimums subtract in fp32
  }
}

}  // namespace
}  // namespace kuiper::test
