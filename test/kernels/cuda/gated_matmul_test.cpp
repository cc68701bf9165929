// kernels/cuda/gated_matmul.cu against the CPU kernel: the input normalised on the way in or not,
// n = 1 (the GEMV, and every compiled variant of it) and n > 1 (cuBLAS and swiglu), fp32, fp16
// and bf16 weights.
#include "kernels/cuda/gemv.h"
#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

struct GatedCase {
  int64_t in, hidden;
};
// Model-like sizes and odd ones (291: no 16-byte rows; 37 and 5: partial blocks of rows;
// 12296: too long to normalise in shared memory).
constexpr GatedCase kCases[] = {{288, 768}, {768, 288},  {291, 37},
                                {48, 5},    {2048, 256}, {12296, 8}};

struct Problem {
  Tensor x, norm, w_gate, w_up;
  float eps = 1e-5f;
};

Problem make_problem(DType dtype, GatedCase c, int64_t n, bool with_norm, std::mt19937& rng) {
  Problem p;
  p.x = random_cpu(DType::kF32, {n, c.in}, rng);
  if (with_norm) p.norm = random_cpu(DType::kF32, {c.in}, rng, 0.5f, 1.5f);
  p.w_gate = random_cpu(dtype, {c.hidden, c.in}, rng);
  p.w_up = random_cpu(dtype, {c.hidden, c.in}, rng);
  return p;
}

Tensor cpu_gated(const Problem& p) {
  const Tensor y(DType::kF32, {p.x.dim(0), p.w_gate.dim(0)});
  kernel_registry().gated_matmul.find(Device::kCPU, p.w_gate.dtype())(
      {p.x, p.norm, p.eps}, p.w_gate, p.w_up, y, Tensor(), cpu_ctx());
  return y;
}

// The CUDA call on copies of the problem; `adjacent`: the gate's and up's weights in one
// allocation, gate first, as the model places them (n > 1 then takes one batched GEMM).
template <class Call>
Tensor cuda_gated(const Problem& p, Call call, bool adjacent = false) {
  const Tensor y = poisoned_cuda(DType::kF32, {p.x.dim(0), p.w_gate.dim(0)});
  Tensor wg = to_cuda(p.w_gate), wu = to_cuda(p.w_up);
  if (adjacent) {
    const int64_t rows = p.w_gate.dim(0);
    const Tensor both(p.w_gate.dtype(), {2 * rows, p.w_gate.dim(1)}, Device::kCUDA);
    wg = both.rows(0, rows);
    wu = both.rows(rows, 2 * rows);
    wg.copy_from(to_cuda(p.w_gate), &cuda_ctx());
    wu.copy_from(to_cuda(p.w_up), &cuda_ctx());
  }
  call(MatmulInput{to_cuda(p.x), p.norm.empty() ? Tensor() : to_cuda(p.norm), p.eps}, wg, wu, y);
  return to_cpu(y);
}

TEST(CudaGatedMatmul, MatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(91);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const auto gated = kernel_registry().gated_matmul.find(Device::kCUDA, dtype);
    for (const GatedCase c : kCases) {
      for (int64_t n : {1, 3, 17, 512}) {
        if (n == 512 && c.in * c.hidden > 2048 * 256) continue;  // keeps the CPU reference quick
        for (bool norm : {false, true}) {
          const Problem p = make_problem(dtype, c, n, norm, rng);
          const Tensor want = cpu_gated(p);
          const bool adjacent = norm;  // both layouts, without doubling the cases
          const Tensor got = cuda_gated(
              p,
              [&](const MatmulInput& in, const Tensor& wg, const Tensor& wu, const Tensor& y) {
                gated(in, wg, wu, y, Tensor(), cuda_ctx());
              },
              adjacent);
          // silu(g) * u carries the rounding of g and u, sums of in products each, times the
          // other factor: measured against the output's typical size. 16-bit weights with n > 1:
          // tensor cores over the input rounded to 16 bits, as in matmul_test, in both products
          // (up to 3.2e-3 fp16, 2.2e-2 bf16 seen).
          const float tolerance =
              n > 1 && dtype != DType::kF32 ? 3 * gemm16_tolerance(dtype) : 1e-4f;
          EXPECT_LT(scaled_diff(got, want), tolerance)
              << dtype_name(dtype) << " n " << n << " in " << c.in << " hidden " << c.hidden
              << (norm ? " norm, adjacent weights" : "");
        }
      }
    }
  }
}

TEST(CudaGatedMatmul, EveryGemvVariantMatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(92);
  const auto variants = kernels::cuda::gemv_variants();
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (const GatedCase c : {GatedCase{2048, 256}, GatedCase{288, 37}, GatedCase{5632, 9}}) {
      for (bool norm : {false, true}) {
        const Problem p = make_problem(dtype, c, 1, norm, rng);
        const Tensor want = cpu_gated(p);
        for (int v = 0; v < int(variants.size()); ++v) {
          const Tensor got = cuda_gated(p, [&](const MatmulInput& in, const Tensor& wg,
                                               const Tensor& wu, const Tensor& y) {
            kernels::cuda::gated_gemv_with_variant(v, in, wg, wu, y, Tensor(), cuda_ctx());
          });
          EXPECT_LT(scaled_diff(got, want), 1e-4f)
              << dtype_name(dtype) << " variant " << v << " in " << c.in << " hidden " << c.hidden
              << (norm ? " norm" : "");
        }
      }
    }
  }
}

TEST(CudaGatedMatmul, RejectsMismatchedShapes) {
  KUIPER_REQUIRE_CUDA();
  const auto gated = kernel_registry().gated_matmul.find(Device::kCUDA, DType::kBF16);
  const Tensor x(DType::kF32, {1, 64}, Device::kCUDA);
  const Tensor wg(DType::kBF16, {8, 64}, Device::kCUDA), wu(DType::kBF16, {8, 64}, Device::kCUDA);
  const Tensor y(DType::kF32, {1, 8}, Device::kCUDA);
  EXPECT_THROW(gated(plain(x), wg, Tensor(DType::kBF16, {9, 64}, Device::kCUDA), y, {}, cuda_ctx()),
               Error);
  EXPECT_THROW(gated(plain(x), wg, Tensor(DType::kF16, {8, 64}, Device::kCUDA), y, {}, cuda_ctx()),
               Error);
  EXPECT_THROW(gated(plain(x), wg, wu, Tensor(DType::kF32, {1, 9}, Device::kCUDA), {}, cuda_ctx()),
               Error);
  EXPECT_THROW(gated({x, Tensor(DType::kF32, {65}, Device::kCUDA), 1e-5f}, wg, wu, y, {}, cuda_ctx()),
               Error);
  EXPECT_NO_THROW(gated(plain(x), wg, wu, y, {}, cuda_ctx()));
}

}  // namespace
}  // namespace kuiper::test
