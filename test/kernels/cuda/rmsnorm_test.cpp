// kernels/cuda/rmsnorm.cu against the CPU kernel.
#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

void check_rmsnorm(int64_t n, int64_t dim, bool in_place, std::mt19937& rng) {
  const auto& r = kernel_registry();
  const Tensor x = random_cpu(DType::kF32, {n, dim}, rng, -3.f, 3.f);
  const Tensor w = random_cpu(DType::kF32, {dim}, rng, 0.5f, 1.5f);
  const Tensor want(DType::kF32, {n, dim});
  r.rmsnorm.find(Device::kCPU, DType::kF32)(x, w, 1e-5f, want, cpu_ctx());
  const Tensor dx = to_cuda(x);
  const Tensor out = in_place ? dx : poisoned_cuda(DType::kF32, {n, dim});
  r.rmsnorm.find(Device::kCUDA, DType::kF32)(dx, to_cuda(w), 1e-5f, out, cuda_ctx());
  EXPECT_LT(max_rel_diff(to_cpu(out), want), 1e-5f)
      << "n " << n << " dim " << dim << (in_place ? " in place" : "");
}

TEST(CudaRmsNorm, MatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(21);
  for (int64_t n : {1, 3, 17, 512})
    for (int64_t dim : {5, 128, 288, 291, 2048, 5632}) check_rmsnorm(n, dim, false, rng);
}

TEST(CudaRmsNorm, InPlace) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(22);
  for (int64_t dim : {288, 291, 2048}) check_rmsnorm(3, dim, true, rng);
}

}  // namespace
}  // namespace kuiper::test
