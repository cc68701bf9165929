// kernels/cuda/swiglu.cu against the CPU kernel.
#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

TEST(CudaSwiGlu, MatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(11);
  const auto& r = kernel_registry();
  for (int64_t n : {1, 3, 17}) {
    for (int64_t dim : {1, 7, 768, 5632}) {
      // Gates up to +-12 reach both ends of the sigmoid.
      const Tensor gate = random_cpu(DType::kF32, {n, dim}, rng, -12.f, 12.f);
      const Tensor up = random_cpu(DType::kF32, {n, dim}, rng);
      const Tensor want(DType::kF32, {n, dim});
      r.swiglu.find(Device::kCPU, DType::kF32)(gate, up, want, cpu_ctx());
      const Tensor out = poisoned_cuda(DType::kF32, {n, dim});
      r.swiglu.find(Device::kCUDA, DType::kF32)(to_cuda(gate), to_cuda(up), out, cuda_ctx());
      EXPECT_LT(max_rel_diff(to_cpu(out), want, 1e-6f), 1e-5f) << "n " << n << " dim " << dim;
    }
  }
}

TEST(CudaSwiGlu, OutputMayAliasGateOrUp) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(12);
  const auto swiglu = kernel_registry().swiglu.find(Device::kCUDA, DType::kF32);
  const Tensor gate = random_cpu(DType::kF32, {3, 768}, rng, -6.f, 6.f);
  const Tensor up = random_cpu(DType::kF32, {3, 768}, rng);
  const Tensor want(DType::kF32, {3, 768});
  kernel_registry().swiglu.find(Device::kCPU, DType::kF32)(gate, up, want, cpu_ctx());
  Tensor g = to_cuda(gate), u = to_cuda(up);
  swiglu(g, u, g, cuda_ctx());
  EXPECT_LT(max_rel_diff(to_cpu(g), want, 1e-6f), 1e-5f);
  g = to_cuda(gate);
  swiglu(g, u, u, cuda_ctx());
  EXPECT_LT(max_rel_diff(to_cpu(u), want, 1e-6f), 1e-5f);
}

}  // namespace
}  // namespace kuiper::test
