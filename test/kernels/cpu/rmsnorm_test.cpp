#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

TEST(CpuRmsNorm, MatchesReferenceAndWorksInPlace) {
  for (auto [n, dim] : {std::pair<int64_t, int64_t>{1, 288}, {5, 291}, {3, 7}}) {
    std::mt19937 rng(int(n * dim));
    Tensor x(DType::kF32, {n, dim}), w(DType::kF32, {dim}), y(DType::kF32, {n, dim});
    fill_uniform(x, rng, -3, 3);
    fill_uniform(w, rng);
    const Tensor expected = reference::rmsnorm(x, w, 1e-5f);
    const auto rmsnorm = kernels::registry().rmsnorm.find(Device::kCPU, DType::kF32);
    rmsnorm(x, w, 1e-5f, y, DeviceContext::cpu());
    EXPECT_LT(max_rel_diff(y, expected), 1e-5);
    rmsnorm(x, w, 1e-5f, x, DeviceContext::cpu());
    EXPECT_LT(max_rel_diff(x, expected), 1e-5);
  }
}

}  // namespace
}  // namespace kuiper::test
