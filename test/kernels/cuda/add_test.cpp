// kernels/cuda/add.cu against the CPU kernel.
#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

TEST(CudaAdd, MatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(1);
  const auto& r = kernel_registry();
  for (int64_t n : {1, 3, 17}) {
    for (int64_t dim : {1, 5, 288, 291, 5632}) {
      const Tensor a = random_cpu(DType::kF32, {n, dim}, rng), b = random_cpu(DType::kF32, {n, dim}, rng);
      const Tensor want(DType::kF32, {n, dim});
      r.add.find(Device::kCPU, DType::kF32)(a, b, want, cpu_ctx());
      const Tensor out = poisoned_cuda(DType::kF32, {n, dim});
      r.add.find(Device::kCUDA, DType::kF32)(to_cuda(a), to_cuda(b), out, cuda_ctx());
      EXPECT_EQ(max_rel_diff(to_cpu(out), want), 0.f) << "n " << n << " dim " << dim;
    }
  }
}

TEST(CudaAdd, OutputMayAliasEitherInput) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(2);
  const auto add = kernel_registry().add.find(Device::kCUDA, DType::kF32);
  const Tensor a = random_cpu(DType::kF32, {3, 291}, rng), b = random_cpu(DType::kF32, {3, 291}, rng);
  const Tensor want(DType::kF32, {3, 291});
  kernel_registry().add.find(Device::kCPU, DType::kF32)(a, b, want, cpu_ctx());
  const Tensor da = to_cuda(a), db = to_cuda(b);
  add(da, db, da, cuda_ctx());
  EXPECT_EQ(max_rel_diff(to_cpu(da), want), 0.f);
  const Tensor da2 = to_cuda(a);
  add(da2, db, db, cuda_ctx());
  EXPECT_EQ(max_rel_diff(to_cpu(db), want), 0.f);
}

TEST(CudaAdd, UnalignedRowsTakeTheScalarPath) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(3);
  // Rows 1.. of a [4, 291] tensor start 291 floats in: not 16-byte aligned.
  const Tensor a = random_cpu(DType::kF32, {4, 291}, rng), b = random_cpu(DType::kF32, {4, 291}, rng);
  const Tensor want(DType::kF32, {3, 291});
  kernel_registry().add.find(Device::kCPU, DType::kF32)(a.rows(1, 4), b.rows(1, 4), want, cpu_ctx());
  const Tensor out = poisoned_cuda(DType::kF32, {4, 291});
  kernel_registry().add.find(Device::kCUDA, DType::kF32)(to_cuda(a).rows(1, 4), to_cuda(b).rows(1, 4),
                                                        out.rows(1, 4), cuda_ctx());
  EXPECT_EQ(max_rel_diff(to_cpu(out).rows(1, 4), want), 0.f);
}

}  // namespace
}  // namespace kuiper::test
