// kernels/cuda/embedding.cu against the CPU kernel.
#include <cmath>

#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

TEST(CudaEmbedding, MatchesCpuForEveryTableType) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(51);
  const auto& r = kernel_registry();
  const int64_t vocab = 1000;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t dim : {48, 288, 291, 2048}) {
      const Tensor table = random_cpu(dtype, {vocab, dim}, rng);
      const Tensor dtable = to_cuda(table);
      for (int64_t n : {1, 3, 17}) {
        std::vector<int32_t> ids(static_cast<size_t>(n));
        for (auto& id : ids) id = int32_t(rng() % vocab);
        ids.front() = 0;
        ids.back() = int32_t(vocab - 1);
        const Tensor tokens = ints_cpu(ids);
        const Tensor want(DType::kF32, {n, dim});
        r.embedding.find(Device::kCPU, dtype)(tokens, table, want, cpu_ctx());
        const Tensor out = poisoned_cuda(DType::kF32, {n, dim});
        r.embedding.find(Device::kCUDA, dtype)(to_cuda(tokens), dtable, out, cuda_ctx());
        EXPECT_EQ(max_rel_diff(to_cpu(out), want), 0.f)
            << dtype_name(dtype) << " dim " << dim << " n " << n;
      }
    }
  }
}

TEST(CudaEmbedding, TokenOutsideTheTableGivesNaN) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(52);
  const Tensor table = to_cuda(random_cpu(DType::kF32, {10, 64}, rng));
  const Tensor out = poisoned_cuda(DType::kF32, {3, 64});
  kernel_registry().embedding.find(Device::kCUDA, DType::kF32)(to_cuda(ints_cpu({3, 10, -1})),
                                                               table, out, cuda_ctx());
  const Tensor host = to_cpu(out);
  for (int64_t d = 0; d < 64; ++d) {
    EXPECT_FALSE(std::isnan(host.span<float>()[d]));
    EXPECT_TRUE(std::isnan(host.span<float>()[64 + d]));
    EXPECT_TRUE(std::isnan(host.span<float>()[128 + d]));
  }
}

TEST(CudaEmbedding, RejectsMisplacedTensors) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(53);
  const Tensor table = random_cpu(DType::kF32, {10, 64}, rng);  // left on the CPU
  const Tensor out = poisoned_cuda(DType::kF32, {1, 64});
  EXPECT_THROW(kernel_registry().embedding.find(Device::kCUDA, DType::kF32)(
                   to_cuda(ints_cpu({1})), table, out, cuda_ctx()),
               Error);
}

}  // namespace
}  // namespace kuiper::test
