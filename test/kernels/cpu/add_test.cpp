#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

TEST(CpuAdd, AddsAndMayAliasItsOutput) {
  std::mt19937 rng(8);
  Tensor a(DType::kF32, {4, 77}), b(DType::kF32, {4, 77});
  fill_uniform(a, rng);
  fill_uniform(b, rng);
  const Tensor before = a.to(Device::kCPU);
  kernels::registry().add.find(Device::kCPU, DType::kF32)(a, b, a, DeviceContext::cpu());
  for (int64_t k = 0; k < a.numel(); ++k) EXPECT_EQ(element(a, k), element(before, k) + element(b, k));
}

}  // namespace
}  // namespace kuiper::test
