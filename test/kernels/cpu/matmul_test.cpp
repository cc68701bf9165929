#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

struct MatmulCase {
  DType dtype;
  int64_t n, in, out;
  bool bias;
};

class CpuMatmul : public ::testing::TestWithParam<MatmulCase> {};

TEST_P(CpuMatmul, MatchesReference) {
  const auto [dtype, n, in, out, with_bias] = GetParam();
  std::mt19937 rng(int(n * 131 + in * 7 + out));
  Tensor x(DType::kF32, {n, in}), w(dtype, {out, in}), y(DType::kF32, {n, out});
  Tensor bias = with_bias ? Tensor(DType::kF32, {out}) : Tensor();
  fill_uniform(x, rng);
  fill_uniform(w, rng);
  if (with_bias) fill_uniform(bias, rng);
  kernels::registry().matmul.find(Device::kCPU, dtype)(x, w, bias, y, DeviceContext::cpu());
  EXPECT_LT(max_rel_diff(y, reference::matmul(x, w, bias)), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CpuMatmul,
    ::testing::Values(MatmulCase{DType::kF32, 1, 288, 768, false}, MatmulCase{DType::kF32, 1, 291, 37, true},
                      MatmulCase{DType::kF32, 7, 288, 96, false}, MatmulCase{DType::kF32, 33, 65, 300, true},
                      MatmulCase{DType::kF16, 1, 288, 768, false}, MatmulCase{DType::kF16, 1, 45, 29, true},
                      MatmulCase{DType::kF16, 9, 200, 600, false}, MatmulCase{DType::kBF16, 1, 288, 96, true},
                      MatmulCase{DType::kBF16, 1, 33, 17, false}, MatmulCase{DType::kBF16, 17, 130, 513, false}));

}  // namespace
}  // namespace kuiper::test
