#include "kuiper/model/rope_table.h"
#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

TEST(CpuRope, MatchesReference) {
  ModelConfig c;
  c.head_dim = 48;
  const Tensor table = make_rope_table(c, 64);
  std::mt19937 rng(3);
  Tensor x(DType::kF32, {5, 6 * 48}), positions(DType::kI32, {5});
  fill_uniform(x, rng);
  for (int i = 0; i < 5; ++i) positions.span<int32_t>()[i] = 3 + 11 * i;
  const Tensor expected = reference::rope(x, positions, table, 48);
  kernels::registry().rope.find(Device::kCPU, DType::kF32)(x, positions, table, 48,
                                                          DeviceContext::cpu());
  EXPECT_LT(max_rel_diff(x, expected), 1e-5);
}

TEST(CpuRope, PositionZeroIsIdentity) {
  ModelConfig c;
  c.head_dim = 64;
  const Tensor table = make_rope_table(c, 4);
  std::mt19937 rng(4);
  Tensor x(DType::kF32, {1, 128}), positions(DType::kI32, {1});
  fill_uniform(x, rng);
  positions.span<int32_t>()[0] = 0;
  const Tensor before = x.to(Device::kCPU);
  kernels::registry().rope.find(Device::kCPU, DType::kF32)(x, positions, table, 64,
                                                          DeviceContext::cpu());
  EXPECT_EQ(max_rel_diff(x, before), 0.f);
}

}  // namespace
}  // namespace kuiper::test
