// kernels/cuda/argmax.cu against the CPU kernel.
#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

std::vector<int32_t> run_argmax(const Tensor& x, Device device) {
  const int64_t rows = x.numel() / x.dim(-1);
  const auto fn = kernel_registry().argmax.find(device, DType::kF32);
  if (device == Device::kCPU) {
    const Tensor out(DType::kI32, {rows});
    fn(x, out, cpu_ctx());
    return {out.span<int32_t>().begin(), out.span<int32_t>().end()};
  }
  const Tensor out = poisoned_cuda(DType::kI32, {rows});
  fn(to_cuda(x), out, cuda_ctx());
  const Tensor host = to_cpu(out);
  return {host.span<int32_t>().begin(), host.span<int32_t>().end()};
}

TEST(CudaArgmax, MatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(41);
  for (int64_t rows : {1, 3, 17}) {
    // Rows of whole float4 vectors (4, 32000, 128256, 151936) take 16-byte loads; the others
    // single ones.
    for (int64_t cols : {1, 2, 4, 31, 291, 32000, 128256, 151936}) {
      const Tensor x = random_cpu(DType::kF32, {rows, cols}, rng, -10.f, 10.f);
      EXPECT_EQ(run_argmax(x, Device::kCUDA), run_argmax(x, Device::kCPU)) << rows << " x " << cols;
    }
  }
}

TEST(CudaArgmax, FirstIndexWinsTies) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(42);
  const int64_t cols = 32000;
  Tensor x = random_cpu(DType::kF32, {3, cols}, rng, -1.f, 1.f);
  auto v = x.span<float>();
  // Equal maxima far apart (different threads and warps find them), and at the row's ends.
  v[0 * cols + 31999] = 5.f;
  v[0 * cols + 7777] = 5.f;
  v[0 * cols + 20000] = 5.f;
  v[1 * cols + 0] = 2.f;
  v[1 * cols + 31999] = 2.f;
  v[2 * cols + 1025] = 3.f;
  v[2 * cols + 1024] = 3.f;
  EXPECT_EQ(run_argmax(x, Device::kCUDA), (std::vector<int32_t>{7777, 0, 1024}));
  EXPECT_EQ(run_argmax(x, Device::kCPU), (std::vector<int32_t>{7777, 0, 1024}));
}

}  // namespace
}  // namespace kuiper::test
