// kernels/cuda/rope.cu against the CPU kernel.
#include <cmath>

#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

// The table of a real model: frequency j turns by pos * theta^(-2j / head_dim).
Tensor rope_table(int64_t max_seq, int head_dim, double theta) {
  Tensor t(DType::kF32, {max_seq, head_dim / 2, 2});
  auto v = t.span<float>();
  for (int64_t p = 0; p < max_seq; ++p)
    for (int j = 0; j < head_dim / 2; ++j) {
      const double angle = double(p) * std::pow(theta, -2.0 * j / head_dim);
      v[(p * head_dim / 2 + j) * 2] = float(std::cos(angle));
      v[(p * head_dim / 2 + j) * 2 + 1] = float(std::sin(angle));
    }
  return t;
}

TEST(CudaRope, MatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(61);
  const auto& r = kernel_registry();
  const int64_t max_seq = 2048;
  for (int head_dim : {48, 64, 128}) {
    const Tensor table = rope_table(max_seq, head_dim, 10000.0);
    const Tensor dtable = to_cuda(table);
    for (int heads : {1, 2, 6, 32}) {
      for (int64_t n : {1, 3, 17, 512}) {
        std::vector<int32_t> pos(static_cast<size_t>(n));
        for (auto& p : pos) p = int32_t(rng() % max_seq);
        pos.front() = 0;
        pos.back() = int32_t(max_seq - 1);
        const Tensor positions = ints_cpu(pos);
        const Tensor x = random_cpu(DType::kF32, {n, int64_t(heads) * head_dim}, rng);
        const Tensor want(DType::kF32, x.shape());
        want.copy_from(x);
        r.rope.find(Device::kCPU, DType::kF32)(want, positions, table, head_dim, cpu_ctx());
        const Tensor dx = to_cuda(x);
        r.rope.find(Device::kCUDA, DType::kF32)(dx, to_cuda(positions), dtable, head_dim,
                                                cuda_ctx());
        EXPECT_LT(max_rel_diff(to_cpu(dx), want), 1e-6f)
            << "head_dim " << head_dim << " heads " << heads << " n " << n;
      }
    }
  }
}

TEST(CudaRope, PositionOutsideTheTableGivesNaN) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(62);
  const Tensor table = to_cuda(rope_table(16, 64, 10000.0));
  const Tensor x = to_cuda(random_cpu(DType::kF32, {2, 128}, rng));
  kernel_registry().rope.find(Device::kCUDA, DType::kF32)(x, to_cuda(ints_cpu({15, 16})), table, 64,
                                                          cuda_ctx());
  const Tensor host = to_cpu(x);
  for (int64_t d = 0; d < 128; ++d) {
    EXPECT_FALSE(std::isnan(host.span<float>()[d]));
    EXPECT_TRUE(std::isnan(host.span<float>()[128 + d]));
  }
}

}  // namespace
}  // namespace kuiper::test
