// kernels/cuda/softmax.cu against the CPU kernel.
#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

TEST(CudaSoftmax, MatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(31);
  const auto& r = kernel_registry();
  for (int64_t rows : {1, 3, 17}) {
    for (int64_t cols : {1, 7, 291, 1024, 32000}) {
      // Logit-like spread: probabilities from ~1 down to ~e-40 (a relative check with a tiny
      // floor catches errors in the small ones too). The CPU kernel sums 32000 exponentials one
      // by one in fp32, which alone is off by ~1e-5.
      const Tensor x = random_cpu(DType::kF32, {rows, cols}, rng, -20.f, 20.f);
      const Tensor want = random_cpu(DType::kF32, {rows, cols}, rng);
      want.copy_from(x);
      r.softmax.find(Device::kCPU, DType::kF32)(want, cpu_ctx());
      const Tensor dx = to_cuda(x);
      r.softmax.find(Device::kCUDA, DType::kF32)(dx, cuda_ctx());
      EXPECT_LT(max_rel_diff(to_cpu(dx), want, 1e-30f), 5e-5f) << rows << " x " << cols;
    }
  }
}

TEST(CudaSoftmax, OneDimensional) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(32);
  const Tensor x = random_cpu(DType::kF32, {5000}, rng, -5.f, 5.f);
  const Tensor want(DType::kF32, {5000});
  want.copy_from(x);
  kernel_registry().softmax.find(Device::kCPU, DType::kF32)(want, cpu_ctx());
  const Tensor dx = to_cuda(x);
  kernel_registry().softmax.find(Device::kCUDA, DType::kF32)(dx, cuda_ctx());
  EXPECT_LT(max_rel_diff(to_cpu(dx), want, 1e-30f), 1e-5f);
}

}  // namespace
}  // namespace kuiper::test
