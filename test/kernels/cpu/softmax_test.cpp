#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

TEST(CpuSoftmax, RowsSumToOneAndMatchReference) {
  std::mt19937 rng(9);
  Tensor x(DType::kF32, {3, 1000});
  fill_uniform(x, rng, -20, 20);
  const Tensor before = x.to(Device::kCPU);
  kernels::registry().softmax.find(Device::kCPU, DType::kF32)(x, DeviceContext::cpu());
  for (int64_t i = 0; i < 3; ++i) {
    std::vector<double> row(1000);
    for (int k = 0; k < 1000; ++k) row[k] = element(before, i * 1000 + k);
    reference::softmax(row);
    for (int k = 0; k < 1000; ++k) EXPECT_NEAR(element(x, i * 1000 + k), row[k], 1e-6);
  }
}

}  // namespace
}  // namespace kuiper::test
