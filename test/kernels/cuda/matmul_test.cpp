// kernels/cuda/matmul.cu against the CPU kernel: the GEMV (n == 1, every compiled variant) and
// the cuBLAS path (n > 1), for fp32, fp16 and bf16 weights, with and without bias.
#include "kernels/cuda/gemv.h"
#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

struct MatmulCase {
  int64_t in, out;
};
// Model-like sizes and odd ones (291: no 16-byte rows; 37 and 5: partial blocks of rows).
constexpr MatmulCase kCases[] = {{288, 768}, {768, 288}, {291, 37}, {48, 5}, {2048, 256},
                                 {5632, 64}, {64, 5632}};

Tensor cpu_matmul(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const Tensor y(DType::kF32, {x.dim(0), w.dim(0)});
  kernel_registry().matmul.find(Device::kCPU, w.dtype())(x, w, bias, y, cpu_ctx());
  return y;
}

TEST(CudaMatmul, MatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(81);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const auto matmul = kernel_registry().matmul.find(Device::kCUDA, dtype);
    for (const auto [in, out] : kCases) {
      const Tensor w = random_cpu(dtype, {out, in}, rng);
      const Tensor dw = to_cuda(w);
      for (int64_t n : {1, 3, 17, 512}) {
        if (n == 512 && in * out > 2048 * 256) continue;  // keeps the CPU reference quick
        for (bool with_bias : {false, true}) {
          const Tensor x = random_cpu(DType::kF32, {n, in}, rng);
          const Tensor bias = with_bias ? random_cpu(DType::kF32, {out}, rng) : Tensor();
          const Tensor want = cpu_matmul(x, w, bias);
          const Tensor y = poisoned_cuda(DType::kF32, {n, out});
          matmul(to_cuda(x), dw, with_bias ? to_cuda(bias) : Tensor(), y, cuda_ctx());
          // 16-bit weights with n > 1 run on tensor cores, whose fp32 accumulation is not
          // IEEE: ~2e-4 seen, within the 1e-3 the model needs. Everything else ~1e-5.
          const float tolerance = n > 1 && dtype != DType::kF32 ? 1e-3f : 1e-4f;
          EXPECT_LT(max_rel_diff(to_cpu(y), want), tolerance)
              << dtype_name(dtype) << " n " << n << " in " << in << " out " << out
              << (with_bias ? " with bias" : "");
        }
      }
    }
  }
}

TEST(CudaMatmul, EveryGemvVariantMatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(82);
  const auto variants = kernels::cuda::gemv_variants();
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (const auto [in, out] : {MatmulCase{2048, 256}, MatmulCase{288, 37}, MatmulCase{5632, 9}}) {
      const Tensor w = random_cpu(dtype, {out, in}, rng);
      const Tensor x = random_cpu(DType::kF32, {1, in}, rng);
      const Tensor bias = random_cpu(DType::kF32, {out}, rng);
      const Tensor want = cpu_matmul(x, w, bias);
      const Tensor dw = to_cuda(w), dx = to_cuda(x), db = to_cuda(bias);
      for (int v = 0; v < int(variants.size()); ++v) {
        const Tensor y = poisoned_cuda(DType::kF32, {1, out});
        kernels::cuda::gemv_with_variant(v, dx, dw, db, y, cuda_ctx());
        EXPECT_LT(max_rel_diff(to_cpu(y), want), 1e-4f)
            << dtype_name(dtype) << " variant " << v << " in " << in << " out " << out;
      }
    }
  }
}

// fp32 weights must not go through TF32 (10-bit mantissas): logits would drift by ~1e-3, where
// two fp32 GEMMs (cuBLAS and OpenBLAS) summing 2048 products differ by ~1e-5.
TEST(CudaMatmul, Fp32GemmIsFullPrecision) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(83);
  const Tensor w = random_cpu(DType::kF32, {256, 2048}, rng);
  const Tensor x = random_cpu(DType::kF32, {64, 2048}, rng);
  const Tensor want = cpu_matmul(x, w, Tensor());
  const Tensor y = poisoned_cuda(DType::kF32, {64, 256});
  kernel_registry().matmul.find(Device::kCUDA, DType::kF32)(to_cuda(x), to_cuda(w), Tensor(), y,
                                                            cuda_ctx());
  EXPECT_LT(max_rel_diff(to_cpu(y), want), 5e-5f);
}

TEST(CudaMatmul, RejectsMismatchedShapes) {
  KUIPER_REQUIRE_CUDA();
  const Tensor w(DType::kF16, {8, 64}, Device::kCUDA);
  const Tensor x(DType::kF32, {1, 63}, Device::kCUDA);
  const Tensor y(DType::kF32, {1, 8}, Device::kCUDA);
  EXPECT_THROW(kernel_registry().matmul.find(Device::kCUDA, DType::kF16)(x, w, Tensor(), y,
                                                                         cuda_ctx()),
               Error);
}

}  // namespace
}  // namespace kuiper::test
