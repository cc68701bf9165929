#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

TEST(CpuScatterRows, WritesRowsAtTheirPositions) {
  std::mt19937 rng(6);
  Tensor src(DType::kF32, {3, 10}), cache(DType::kF32, {8, 10}), positions(DType::kI32, {3});
  fill_uniform(src, rng);
  fill_uniform(cache, rng);
  const int32_t pos[] = {5, 2, 7};
  std::copy(pos, pos + 3, positions.span<int32_t>().begin());
  kernels::registry().scatter_rows.find(Device::kCPU, DType::kF32)(src, positions, cache,
                                                                  DeviceContext::cpu());
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 10; ++k) EXPECT_EQ(element(cache, pos[i] * 10 + k), element(src, i * 10 + k));
}

}  // namespace
}  // namespace kuiper::test
