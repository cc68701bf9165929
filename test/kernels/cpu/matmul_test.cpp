#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

struct MatmulCase {
  DType dtype;
  int64_t n, in;
  std::vector<int64_t> outs;  // rows of each projection
  bool bias, norm, accumulate;
};

class CpuMatmul : public ::testing::TestWithParam<MatmulCase> {};

TEST_P(CpuMatmul, MatchesReference) {
  const MatmulCase& c = GetParam();
  std::mt19937 rng(int(c.n * 131 + c.in * 7 + c.outs.size()));
  Tensor x(DType::kF32, {c.n, c.in}), norm;
  fill_uniform(x, rng, -2, 2);
  if (c.norm) {
    norm = Tensor(DType::kF32, {c.in});
    fill_uniform(norm, rng);
  }
  const Tensor xn = c.norm ? reference::rmsnorm(x, norm, 1e-5f) : x;
  std::vector<kernels::MatmulOutput> outs;
  std::vector<Tensor> expected;
  for (int64_t rows : c.outs) {
    kernels::MatmulOutput o{Tensor(c.dtype, {rows, c.in}), Tensor(), Tensor(DType::kF32, {c.n, rows})};
    fill_uniform(o.weight, rng);
    if (c.bias) {
      o.bias = Tensor(DType::kF32, {rows});
      fill_uniform(o.bias, rng);
    }
    fill_uniform(o.y, rng);
    Tensor e = reference::matmul(xn, o.weight, o.bias);
    if (c.accumulate)
      for (int64_t k = 0; k < e.numel(); ++k) e.span<float>()[k] += o.y.span<float>()[k];
    expected.push_back(e);
    outs.push_back(o);
  }
  kernels::registry().matmul.find(Device::kCPU, c.dtype)({x, norm, 1e-5f}, outs, c.accumulate,
                                                        DeviceContext::cpu());
  for (size_t i = 0; i < outs.size(); ++i) EXPECT_LT(max_rel_diff(outs[i].y, expected[i]), 1e-4) << i;
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CpuMatmul,
    ::testing::Values(MatmulCase{DType::kF32, 1, 288, {768}, false, false, false},
                      MatmulCase{DType::kF32, 1, 291, {37, 5, 5}, true, true, false},
                      MatmulCase{DType::kF32, 7, 288, {96}, false, true, true},
                      MatmulCase{DType::kF32, 33, 65, {300, 20, 20}, true, false, false},
                      MatmulCase{DType::kF16, 1, 288, {768}, false, false, true},
                      MatmulCase{DType::kF16, 1, 45, {29, 3, 3}, true, true, false},
                      MatmulCase{DType::kF16, 9, 200, {600}, false, false, true},
                      MatmulCase{DType::kBF16, 1, 288, {96, 32, 32}, true, true, false},
                      MatmulCase{DType::kBF16, 1, 33, {17}, false, false, false},
                      MatmulCase{DType::kBF16, 17, 130, {513, 2, 2}, true, true, true}));

TEST(CpuGatedMatmul, IsSiluOfGateTimesUp) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t n : {1, 6}) {
      std::mt19937 rng(int(n) + int(dtype));
      const int64_t in = 77, hidden = 301;
      Tensor x(DType::kF32, {n, in}), norm(DType::kF32, {in}), y(DType::kF32, {n, hidden});
      Tensor w_gate(dtype, {hidden, in}), w_up(dtype, {hidden, in});
      for (const Tensor* t : {&x, &norm, &w_gate, &w_up}) fill_uniform(*t, rng);
      const Tensor xn = reference::rmsnorm(x, norm, 1e-6f);
      const Tensor expected = reference::silu_times(reference::matmul(xn, w_gate, {}),
                                                    reference::matmul(xn, w_up, {}));
      kernels::registry().gated_matmul.find(Device::kCPU, dtype)({x, norm, 1e-6f}, w_gate, w_up, y,
                                                                DeviceContext::cpu());
      EXPECT_LT(max_rel_diff(y, expected), 1e-4) << dtype_name(dtype) << " n=" << n;
    }
  }
}

}  // namespace
}  // namespace kuiper::test
