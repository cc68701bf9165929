#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

struct AttentionCase {
  int n, pos0, n_heads, n_kv_heads, head_dim;
};

class CpuAttention : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(CpuAttention, MatchesReference) {
  const auto [n, pos0, heads, kv_heads, hd] = GetParam();
  const kernels::AttentionShape shape{heads, kv_heads, hd};
  const int64_t max_seq = pos0 + n + 3;
  std::mt19937 rng(n * 1000 + pos0 + hd);
  Tensor q(DType::kF32, {n, heads * hd}), out(DType::kF32, {n, heads * hd});
  Tensor k(DType::kF32, {max_seq, kv_heads * hd}), v(DType::kF32, {max_seq, kv_heads * hd});
  Tensor positions(DType::kI32, {n});
  for (int i = 0; i < n; ++i) positions.span<int32_t>()[i] = pos0 + i;
  for (const Tensor* t : {&q, &k, &v}) fill_uniform(*t, rng);
  kernels::registry().attention.find(Device::kCPU, DType::kF32)(q, k, v, positions, shape, out,
                                                                DeviceContext::cpu());
  EXPECT_LT(max_rel_diff(out, reference::attention(q, k, v, positions, shape)), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuAttention,
                         ::testing::Values(AttentionCase{1, 0, 6, 2, 48}, AttentionCase{1, 37, 6, 2, 48},
                                           AttentionCase{5, 0, 4, 4, 64}, AttentionCase{9, 20, 8, 1, 128},
                                           AttentionCase{3, 11, 6, 3, 10}));

}  // namespace
}  // namespace kuiper::test
