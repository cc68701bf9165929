#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

TEST(CpuArgmax, FindsTheFirstLargestOfEachRow) {
  Tensor x(DType::kF32, {2, 5}), out(DType::kI32, {2});
  const float values[] = {1, 7, 3, 7, 0, -5, -4, -9, -4, -8};
  std::copy(values, values + 10, x.span<float>().begin());
  kernels::registry().argmax.find(Device::kCPU, DType::kF32)(x, out, DeviceContext::cpu());
  EXPECT_EQ(out.span<int32_t>()[0], 1);
  EXPECT_EQ(out.span<int32_t>()[1], 1);
}

}  // namespace
}  // namespace kuiper::test
