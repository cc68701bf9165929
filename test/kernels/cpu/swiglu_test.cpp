#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

TEST(CpuSwiGlu, IsSiluOfGateTimesUp) {
  std::mt19937 rng(7);
  Tensor gate(DType::kF32, {3, 101}), up(DType::kF32, {3, 101}), out(DType::kF32, {3, 101});
  fill_uniform(gate, rng, -6, 6);
  fill_uniform(up, rng);
  kernels::registry().swiglu.find(Device::kCPU, DType::kF32)(gate, up, out, DeviceContext::cpu());
  for (int64_t k = 0; k < out.numel(); ++k) {
    const double g = element(gate, k);
    EXPECT_NEAR(element(out, k), g / (1 + std::exp(-g)) * element(up, k), 1e-5);
  }
}

}  // namespace
}  // namespace kuiper::test
