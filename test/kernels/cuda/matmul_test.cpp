// kernels/cuda/matmul.cu against the CPU kernel: one, three and five outputs (with and without
// biases), the input normalised on the way in or not, y accumulated into or overwritten, n = 1
// (the GEMV, and every compiled variant of it) and n > 1 (cuBLAS), fp32, fp16 and bf16 weights.
#include <sstream>

#include "kernels/cuda/gemv.h"
#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

struct MatmulCase {
  int64_t in;
  std::vector<int64_t> outs;
};
// Model-like sizes and odd ones (291: no 16-byte rows; 37 and 5: partial blocks of rows; five
// outputs: more than one launch holds; 12296: too long to normalise in shared memory).
const std::vector<MatmulCase> kCases = {
    {288, {768}},       {768, {288}},     {291, {37}},         {48, {5}},
    {2048, {256}},      {5632, {64}},     {64, {5632}},        {288, {288, 96, 96}},
    {291, {37, 5, 64}}, {2048, {2048, 256, 256}}, {288, {16, 32, 48, 8, 40}}, {12296, {8}},
};

// The CPU tensors of one call: input, norm weight, and per output weight, bias and y's start.
struct Problem {
  Tensor x, norm;
  std::vector<Tensor> weights, biases, starts;
  float eps = 1e-5f;
};

Problem make_problem(DType dtype, const MatmulCase& c, int64_t n, bool with_norm, bool with_bias,
                     std::mt19937& rng) {
  Problem p;
  p.x = random_cpu(DType::kF32, {n, c.in}, rng);
  if (with_norm) p.norm = random_cpu(DType::kF32, {c.in}, rng, 0.5f, 1.5f);
  for (size_t j = 0; j < c.outs.size(); ++j) {
    const int64_t out = c.outs[j];
    p.weights.push_back(random_cpu(dtype, {out, c.in}, rng));
    // With several outputs, every other one has a bias.
    const bool bias = with_bias && (c.outs.size() == 1 || j % 2 == 0);
    p.biases.push_back(bias ? random_cpu(DType::kF32, {out}, rng) : Tensor());
    p.starts.push_back(random_cpu(DType::kF32, {n, out}, rng));
  }
  return p;
}

// The CPU kernel, one output at a time.
std::vector<Tensor> cpu_matmul(const Problem& p, bool accumulate) {
  std::vector<Tensor> ys;
  for (size_t j = 0; j < p.weights.size(); ++j) {
    Tensor y(DType::kF32, p.starts[j].shape());
    y.copy_from(p.starts[j]);
    ys.push_back(y);
    const MatmulOutput out{p.weights[j], p.biases[j], y};
    kernel_registry().matmul.find(Device::kCPU, p.weights[0].dtype())(
        {p.x, p.norm, p.eps}, {&out, 1}, accumulate, cpu_ctx());
  }
  return ys;
}

// The CUDA call on copies of the problem (y poisoned unless accumulating): `call` runs it.
template <class Call>
std::vector<Tensor> cuda_matmul(const Problem& p, bool accumulate, Call call) {
  std::vector<MatmulOutput> outs;
  for (size_t j = 0; j < p.weights.size(); ++j) {
    const Tensor y =
        accumulate ? to_cuda(p.starts[j]) : poisoned_cuda(DType::kF32, p.starts[j].shape());
    outs.push_back(
        {to_cuda(p.weights[j]), p.biases[j].empty() ? Tensor() : to_cuda(p.biases[j]), y});
  }
  const MatmulInput in{to_cuda(p.x), p.norm.empty() ? Tensor() : to_cuda(p.norm), p.eps};
  call(in, std::span<const MatmulOutput>(outs));
  std::vector<Tensor> ys;
  for (const MatmulOutput& o : outs) ys.push_back(to_cpu(o.y));
  return ys;
}

std::string describe(DType dtype, const MatmulCase& c, int64_t n, bool norm, bool bias, bool acc) {
  std::ostringstream s;
  s << dtype_name(dtype) << " n " << n << " in " << c.in << " outs";
  for (int64_t o : c.outs) s << " " << o;
  s << (norm ? " norm" : "") << (bias ? " bias" : "") << (acc ? " accumulate" : "");
  return s.str();
}

TEST(CudaMatmul, MatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(81);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const auto matmul = kernel_registry().matmul.find(Device::kCUDA, dtype);
    for (const MatmulCase& c : kCases) {
      int64_t weights = 0;
      for (int64_t o : c.outs) weights += o * c.in;
      for (int64_t n : {1, 3, 17, 512}) {
        if (n == 512 && weights > 2048 * 256) continue;  // keeps the CPU reference quick
        for (bool norm : {false, true})
          for (bool bias : {false, true})
            for (bool acc : {false, true}) {
              const Problem p = make_problem(dtype, c, n, norm, bias, rng);
              const std::vector<Tensor> want = cpu_matmul(p, acc);
              const std::vector<Tensor> got = cuda_matmul(
                  p, acc, [&](const MatmulInput& in, std::span<const MatmulOutput> outs) {
                    matmul(in, outs, acc, cuda_ctx());
                  });
              // 16-bit weights with n > 1 run on tensor cores over the input rounded to 16 bits.
              // Everything else ~1e-5.
              const float tolerance = n > 1 && dtype != DType::kF32 ? gemm16_tolerance(dtype) : 1e-4f;
              for (size_t j = 0; j < want.size(); ++j)
                EXPECT_LT(scaled_diff(got[j], want[j]), tolerance)
                    << describe(dtype, c, n, norm, bias, acc) << ", output " << j;
            }
      }
    }
  }
}

TEST(CudaMatmul, EveryGemvVariantMatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(82);
  const auto variants = kernels::cuda::gemv_variants();
  const MatmulCase cases[] = {{2048, {256}}, {288, {37}}, {5632, {9}}, {2048, {512, 64, 64}}};
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (const MatmulCase& c : cases) {
      for (bool norm : {false, true}) {
        const bool acc = norm;  // the model's two uses: norm (q, k, v) or accumulate (wo, w2)
        const Problem p = make_problem(dtype, c, 1, norm, true, rng);
        const std::vector<Tensor> want = cpu_matmul(p, acc);
        for (int v = 0; v < int(variants.size()); ++v) {
          const std::vector<Tensor> got =
              cuda_matmul(p, acc, [&](const MatmulInput& in, std::span<const MatmulOutput> outs) {
                kernels::cuda::gemv_with_variant(v, in, outs, acc, cuda_ctx());
              });
          for (size_t j = 0; j < want.size(); ++j)
            EXPECT_LT(scaled_diff(got[j], want[j]), 1e-4f)
                << describe(dtype, c, 1, norm, true, acc) << ", variant " << v << ", output " << j;
        }
      }
    }
  }
}

// Two outputs of one shape (k and v) run as one batched GEMM whose second matrices are the
// first's offset apart (kernels/cuda/matmul.cuh: gemm_pair_products): here views of one
// allocation in either order, weights and outputs: in order one batched call, reversed (negative
// offsets, which the GEMM kernels cannot take) two calls.
TEST(CudaMatmul, PairedOutputsInEitherOrderMatchCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(84);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const auto matmul = kernel_registry().matmul.find(Device::kCUDA, dtype);
    for (const MatmulCase& c : {MatmulCase{2048, {256, 256}}, MatmulCase{291, {37, 37}}}) {
      const int64_t n = 17, out = c.outs[0];
      for (bool reversed : {false, true}) {
        const Problem p = make_problem(dtype, c, n, true, false, rng);
        const std::vector<Tensor> want = cpu_matmul(p, true);
        const Tensor w = to_cuda(random_cpu(dtype, {2 * out, c.in}, rng));
        const Tensor y = to_cuda(random_cpu(DType::kF32, {2 * n, out}, rng));
        std::vector<MatmulOutput> outs;
        for (int j = 0; j < 2; ++j) {
          const int64_t at = reversed ? 1 - j : j;
          const Tensor wj = w.rows(at * out, (at + 1) * out), yj = y.rows(at * n, (at + 1) * n);
          wj.copy_from(to_cuda(p.weights[j]), &cuda_ctx());
          yj.copy_from(to_cuda(p.starts[j]), &cuda_ctx());
          outs.push_back({wj, Tensor(), yj});
        }
        matmul({to_cuda(p.x), to_cuda(p.norm), p.eps}, outs, true, cuda_ctx());
        for (int j = 0; j < 2; ++j)
          EXPECT_LT(scaled_diff(to_cpu(outs[j].y), want[j]),
                    dtype == DType::kF32 ? 1e-4f : gemm16_tolerance(dtype))
              << describe(dtype, c, n, true, false, true) << (reversed ? " reversed" : "")
              << ", output " << j;
      }
    }
  }
}

// fp32 weights must not go through TF32 (10-bit mantissas): logits would drift by ~1e-3, where
// two fp32 GEMMs (cuBLAS and OpenBLAS) summing 2048 products differ by ~1e-5.
TEST(CudaMatmul, Fp32GemmIsFullPrecision) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(83);
  const Problem p = make_problem(DType::kF32, {2048, {256}}, 64, false, false, rng);
  const std::vector<Tensor> want = cpu_matmul(p, false);
  const auto matmul = kernel_registry().matmul.find(Device::kCUDA, DType::kF32);
  const std::vector<Tensor> got =
      cuda_matmul(p, false, [&](const MatmulInput& in, std::span<const MatmulOutput> outs) {
        matmul(in, outs, false, cuda_ctx());
      });
  EXPECT_LT(max_rel_diff(got[0], want[0]), 5e-5f);
}

TEST(CudaMatmul, RejectsMismatchedShapes) {
  KUIPER_REQUIRE_CUDA();
  const auto matmul = kernel_registry().matmul.find(Device::kCUDA, DType::kF16);
  const Tensor w(DType::kF16, {8, 64}, Device::kCUDA);
  const Tensor x(DType::kF32, {1, 64}, Device::kCUDA);
  const Tensor y(DType::kF32, {1, 8}, Device::kCUDA);
  const MatmulOutput good{w, Tensor(), y};
  // Input width, output size, norm size, bias size, weight dtype, aliasing.
  const Tensor x63(DType::kF32, {1, 63}, Device::kCUDA);
  EXPECT_THROW(matmul(plain(x63), {&good, 1}, false, cuda_ctx()), Error);
  const MatmulOutput short_y{w, Tensor(), Tensor(DType::kF32, {1, 7}, Device::kCUDA)};
  EXPECT_THROW(matmul(plain(x), {&short_y, 1}, false, cuda_ctx()), Error);
  EXPECT_THROW(matmul({x, Tensor(DType::kF32, {63}, Device::kCUDA), 1e-5f}, {&good, 1}, false,
                      cuda_ctx()),
               Error);
  const MatmulOutput bad_bias{w, Tensor(DType::kF32, {9}, Device::kCUDA), y};
  EXPECT_THROW(matmul(plain(x), {&bad_bias, 1}, false, cuda_ctx()), Error);
  const MatmulOutput fp32_w{Tensor(DType::kF32, {8, 64}, Device::kCUDA), Tensor(), y};
  EXPECT_THROW(matmul(plain(x), {&fp32_w, 1}, false, cuda_ctx()), Error);
  const Tensor xy(DType::kF32, {1, 72}, Device::kCUDA);
  const MatmulOutput aliased{w, Tensor(), xy.reshape({72}).rows(60, 68).reshape({1, 8})};
  EXPECT_THROW(matmul(plain(xy.reshape({72}).rows(0, 64).reshape({1, 64})), {&aliased, 1}, false,
                      cuda_ctx()),
               Error);
  EXPECT_NO_THROW(matmul(plain(x), {&good, 1}, false, cuda_ctx()));
}

}  // namespace
}  // namespace kuiper::test
