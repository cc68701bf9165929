// int8 weights with group scales on CUDA (matmul.cuh's GEMV and dequantized prefill GEMMs,
// gated_matmul, embedding) against float64 references of the dequantized weights
// (test/kernels/reference.h): every group size the format allows plus groups the vector path
// does not take (24: the scalar kernel), fp32 and fp16 scales, odd row counts, several outputs,
// norm prologue, biases, residual accumulate, n = 1 (every GEMV variant) and n > 1.
#include <sstream>

#include "kernels/cuda/gemv.h"
#include "test/kernels/cuda/cuda_test_util.h"
#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

struct Int8Case {
  int64_t in, group;
  std::vector<int64_t> outs;
  DType scale_dtype;
};
const Int8Case kCases[] = {
    {288, 32, {768}, DType::kF32},          {320, 64, {37, 5, 5}, DType::kF16},
    {384, 128, {29}, DType::kF32},          {2048, 64, {256, 64, 64}, DType::kF16},
    {72, 24, {33, 7}, DType::kF16},         {5632, 128, {65}, DType::kF32},
    {12352, 64, {9}, DType::kF16},  // too long to normalise in shared memory
};

Weight to_cuda(const Weight& w) { return {test::to_cuda(w.values), test::to_cuda(w.scales)}; }

std::string describe(const Int8Case& c, int64_t n, bool norm, bool bias, bool acc) {
  std::ostringstream s;
  s << "int8 g" << c.group << " " << dtype_name(c.scale_dtype) << " scales, n " << n << " in "
    << c.in << " outs";
  for (int64_t o : c.outs) s << " " << o;
  s << (norm ? " norm" : "") << (bias ? " bias" : "") << (acc ? " accumulate" : "");
  return s.str();
}

// Runs one matmul problem through `call` on the GPU and checks every output against float64.
template <class Call>
void check_matmul(const Int8Case& c, int64_t n, bool norm, bool bias, bool acc, std::mt19937& rng,
                  Call call, const std::string& what) {
  const Tensor x = random_cpu(DType::kF32, {n, c.in}, rng);
  const Tensor nw = norm ? random_cpu(DType::kF32, {c.in}, rng, 0.5f, 1.5f) : Tensor();
  const Tensor xn = norm ? reference::rmsnorm(x, nw, 1e-5f) : x;
  std::vector<MatmulOutput> outs;
  std::vector<Tensor> want;
  for (int64_t rows : c.outs) {
    const Weight w = random_weight(DType::kI8, rows, c.in, rng, c.group, c.scale_dtype);
    const Tensor b = bias ? random_cpu(DType::kF32, {rows}, rng) : Tensor();
    const Tensor start = random_cpu(DType::kF32, {n, rows}, rng);
    Tensor e = reference::matmul(xn, w, b);
    if (acc)
      for (int64_t k = 0; k < e.numel(); ++k) e.span<float>()[k] += start.span<float>()[k];
    want.push_back(e);
    outs.push_back({to_cuda(w), b.empty() ? Tensor() : test::to_cuda(b),
                    acc ? test::to_cuda(start) : poisoned_cuda(DType::kF32, {n, rows})});
  }
  call(MatmulInput{test::to_cuda(x), norm ? test::to_cuda(nw) : Tensor(), 1e-5f},
       std::span<const MatmulOutput>(outs));
  // n > 1 runs on tensor cores over fp16 dequantized weights and the input's two fp16 parts.
  const float tolerance = n > 1 ? 2e-3f : 1e-4f;
  for (size_t j = 0; j < outs.size(); ++j)
    EXPECT_LT(scaled_diff(to_cpu(outs[j].y), want[j]), tolerance)
        << describe(c, n, norm, bias, acc) << what << ", output " << j;
}

TEST(CudaInt8, MatmulMatchesFloat64Reference) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(91);
  const auto matmul = kernel_registry().matmul.find(Device::kCUDA, DType::kI8);
  for (const Int8Case& c : kCases)
    for (int64_t n : {1, 3, 40})
      for (bool norm : {false, true})
        for (bool acc : {false, true}) {
          if (n == 40 && c.in * c.outs[0] > 400000) continue;  // keeps the reference quick
          check_matmul(c, n, norm, !acc, acc, rng,
                       [&](const MatmulInput& in, std::span<const MatmulOutput> outs) {
                         matmul(in, outs, acc, cuda_ctx());
                       }, "");
        }
}

TEST(CudaInt8, EveryGemvVariantMatchesFloat64Reference) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(92);
  const int variants = int(kernels::cuda::gemv_variants().size());
  for (const Int8Case& c : {kCases[1], kCases[3], kCases[4]})
    for (int v = 0; v < variants; ++v)
      for (bool norm : {false, true})
        check_matmul(c, 1, norm, true, norm, rng,
                     [&](const MatmulInput& in, std::span<const MatmulOutput> outs) {
                       kernels::cuda::gemv_with_variant(v, in, outs, norm, cuda_ctx());
                     }, ", variant " + std::to_string(v));
}

TEST(CudaInt8, GatedMatmulMatchesFloat64Reference) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(93);
  const auto gated = kernel_registry().gated_matmul.find(Device::kCUDA, DType::kI8);
  const int variants = int(kernels::cuda::gemv_variants().size());
  for (const Int8Case& c : {kCases[0], kCases[1], kCases[4], kCases[5]})
    for (int64_t n : {1, 5})
      for (int v = 0; v < (n == 1 ? variants : 1); ++v) {
        const int64_t hidden = c.outs[0];
        const Tensor x = random_cpu(DType::kF32, {n, c.in}, rng);
        const Tensor nw = random_cpu(DType::kF32, {c.in}, rng, 0.5f, 1.5f);
        const Weight wg = random_weight(DType::kI8, hidden, c.in, rng, c.group, c.scale_dtype);
        const Weight wu = random_weight(DType::kI8, hidden, c.in, rng, c.group, c.scale_dtype);
        const Tensor xn = reference::rmsnorm(x, nw, 1e-5f);
        const Tensor want = reference::silu_times(reference::matmul(xn, wg, {}),
                                                  reference::matmul(xn, wu, {}));
        const Tensor y = poisoned_cuda(DType::kF32, {n, hidden});
        const MatmulInput in{test::to_cuda(x), test::to_cuda(nw), 1e-5f};
        if (n == 1)
          kernels::cuda::gated_gemv_with_variant(v, in, to_cuda(wg), to_cuda(wu), y, cuda_ctx());
        else
          gated(in, to_cuda(wg), to_cuda(wu), y, cuda_ctx());
        EXPECT_LT(scaled_diff(to_cpu(y), want), n > 1 ? 2e-3f : 1e-4f)
            << describe(c, n, true, false, false) << ", variant " << v;
      }
}

TEST(CudaInt8, EmbeddingDequantizesRows) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(94);
  for (DType scale_dtype : {DType::kF32, DType::kF16}) {
    const Weight table = random_weight(DType::kI8, 50, 96, rng, 32, scale_dtype);
    const Tensor tokens = ints_cpu({49, 0, 13, 13});
    const Tensor out = poisoned_cuda(DType::kF32, {4, 96});
    kernel_registry().embedding.find(Device::kCUDA, DType::kI8)(test::to_cuda(tokens),
                                                               to_cuda(table), out, cuda_ctx());
    const Tensor got = to_cpu(out);
    const int32_t ids[] = {49, 0, 13, 13};
    for (int i = 0; i < 4; ++i)
      for (int k = 0; k < 96; ++k)
        ASSERT_FLOAT_EQ(element(got, i * 96 + k), float(weight_element(table, ids[i], k)));
  }
}

TEST(CudaInt8, RejectsMismatchedScales) {
  KUIPER_REQUIRE_CUDA();
  const auto matmul = kernel_registry().matmul.find(Device::kCUDA, DType::kI8);
  const Tensor x(DType::kF32, {1, 64}, Device::kCUDA), y(DType::kF32, {1, 8}, Device::kCUDA);
  const Tensor codes(DType::kI8, {8, 64}, Device::kCUDA);
  const MatmulOutput no_scales{Weight(codes), Tensor(), y};
  EXPECT_THROW(matmul(plain(x), {&no_scales, 1}, false, cuda_ctx()), Error);
  const MatmulOutput bad_rows{Weight(codes, Tensor(DType::kF32, {7, 2}, Device::kCUDA)), Tensor(), y};
  EXPECT_THROW(matmul(plain(x), {&bad_rows, 1}, false, cuda_ctx()), Error);
  const MatmulOutput bad_group{Weight(codes, Tensor(DType::kF32, {8, 3}, Device::kCUDA)), Tensor(), y};
  EXPECT_THROW(matmul(plain(x), {&bad_group, 1}, false, cuda_ctx()), Error);
  const MatmulOutput good{Weight(codes, Tensor(DType::kF16, {8, 2}, Device::kCUDA)), Tensor(), y};
  EXPECT_NO_THROW(matmul(plain(x), {&good, 1}, false, cuda_ctx()));
}

}  // namespace
}  // namespace kuiper::test
