// int8 and q4 weights with group scales, and ggml's q8_0, q4_0, q4_k and q6_k blocks, on CUDA
// (matmul.cuh's integer GEMV and dequantized prefill GEMMs, gated_matmul, embedding) against
// float64 references of the dequantized weights (test/kernels/reference.h): every group size the
// formats allow plus groups the vector path does not take (24, 96: the scalar kernel), fp32 and
// fp16 scales, rows of 1 to 49 blocks, odd row counts, several outputs, norm prologue, biases,
// residual accumulate, n = 1 (every GEMV variant) and n > 1. The integer GEMV multiplies the
// input rounded to int8 blocks; its reference takes the same.
#include <sstream>

#include "kernels/cuda/gemv.h"
#include "test/kernels/cuda/cuda_test_util.h"
#include "test/kernels/cuda/input_codes.h"
#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

struct QuantCase {
  DType dtype;
  int64_t in, group;
  std::vector<int64_t> outs;
  DType scale_dtype;
};
const QuantCase kCases[] = {
    {DType::kI8, 288, 32, {768}, DType::kF32},
    {DType::kI8, 320, 64, {37, 5, 5}, DType::kF16},
    {DType::kI8, 384, 128, {29}, DType::kF32},
    {DType::kI8, 2048, 64, {256, 64, 64}, DType::kF16},
    {DType::kI8, 72, 24, {33, 7}, DType::kF16},
    {DType::kI8, 5632, 128, {65}, DType::kF32},
    {DType::kI8, 12352, 64, {9}, DType::kF16},  // too long to normalise in shared memory
    {DType::kQ4, 288, 32, {768}, DType::kF16},
    {DType::kQ4, 320, 64, {37, 5, 5}, DType::kF16},
    {DType::kQ4, 384, 128, {29}, DType::kF32},
    {DType::kQ4, 2048, 32, {256, 64, 64}, DType::kF16},
    {DType::kQ4, 288, 96, {33, 7}, DType::kF16},  // the scalar kernel
    {DType::kQ4, 5632, 128, {65}, DType::kF32},
    {DType::kQ4, 12352, 64, {9}, DType::kF16},
    // ggml's blocks (no group, no scales tensor): 9 blocks of 32 a row, 8 and 22 super-blocks
    // (TinyLlama's 2048 and 5632), and inputs too long to normalise in shared memory.
    {DType::kQ8_0, 288, 0, {37, 5, 5}, DType::kF32},
    {DType::kQ8_0, 2048, 0, {256, 64, 64}, DType::kF32},
    {DType::kQ8_0, 5632, 0, {65}, DType::kF32},
    {DType::kQ4_0, 288, 0, {37, 5, 5}, DType::kF32},
    {DType::kQ4_0, 2048, 0, {256, 64, 64}, DType::kF32},
    {DType::kQ4_0, 12352, 0, {9}, DType::kF32},
    {DType::kQ4_K, 256, 0, {37, 5, 5}, DType::kF32},
    {DType::kQ4_K, 2048, 0, {256, 64, 64}, DType::kF32},
    {DType::kQ4_K, 5632, 0, {65}, DType::kF32},
    {DType::kQ4_K, 12544, 0, {9}, DType::kF32},
    {DType::kQ6_K, 256, 0, {37, 5, 5}, DType::kF32},
    {DType::kQ6_K, 2048, 0, {256, 64, 64}, DType::kF32},
    {DType::kQ6_K, 5632, 0, {65}, DType::kF32},
    {DType::kQ6_K, 12544, 0, {9}, DType::kF32},
};
// Cases for the variant sweeps: every dtype, several outputs, the scalar kernel.
const QuantCase* const kSweepCases[] = {&kCases[1],  &kCases[3],  &kCases[4],  &kCases[8],
                                        &kCases[10], &kCases[11], &kCases[14], &kCases[18],
                                        &kCases[20], &kCases[22], &kCases[24], &kCases[26]};

// Whether the GEMV of a case takes integer dot products (matmul.cuh's vector path).
bool integer_gemv(const QuantCase& c) {
  if (is_ggml_block(c.dtype)) return true;  // whole blocks, aligned (cudaMalloc'd) rows
  const int64_t per_load = c.dtype == DType::kQ4 ? 32 : 16;
  return c.in % 32 == 0 && c.group >= per_load && (c.group & (c.group - 1)) == 0;
}

// The input the GEMV multiplies: x (times norm) rounded to int8 blocks as stage_codes does it
// (blocks of 32; of 8 as the kernels writing the input's codes do), then scaled by the norm's
// rsqrt(mean(x^2) + eps).
Tensor integer_gemv_input(const Tensor& x, const Tensor& norm, float eps, size_t block = 32) {
  if (norm.empty()) return reference::int8_blocks(x, block);
  const int64_t dim = x.dim(1);
  Tensor v(DType::kF32, x.shape());
  for (int64_t k = 0; k < x.numel(); ++k) v.span<float>()[k] = x.span<float>()[k] * norm.span<float>()[k % dim];
  Tensor q = reference::int8_blocks(v, block);
  for (int64_t i = 0; i < x.dim(0); ++i) {
    double ss = 0;
    for (int64_t k = 0; k < dim; ++k) ss += double(x.span<float>()[i * dim + k]) * x.span<float>()[i * dim + k];
    const double r = 1.0 / std::sqrt(ss / double(dim) + eps);
    for (int64_t k = 0; k < dim; ++k) q.span<float>()[i * dim + k] = float(q.span<float>()[i * dim + k] * r);
  }
  return q;
}

// The input as a case's kernel multiplies it (n rows).
Tensor kernel_input(const QuantCase& c, int64_t n, const Tensor& x, const Tensor& norm) {
  if (n == 1 && integer_gemv(c)) return integer_gemv_input(x, norm, 1e-5f);
  return norm.empty() ? x : reference::rmsnorm(x, norm, 1e-5f);
}

std::string describe(const QuantCase& c, int64_t n, bool norm, bool bias, bool acc) {
  std::ostringstream s;
  s << dtype_name(c.dtype);
  if (!is_ggml_block(c.dtype)) s << " g" << c.group << " " << dtype_name(c.scale_dtype) << " scales";
  s << ", n " << n << " in " << c.in << " outs";
  for (int64_t o : c.outs) s << " " << o;
  s << (norm ? " norm" : "") << (bias ? " bias" : "") << (acc ? " accumulate" : "");
  return s.str();
}

// Runs one matmul problem through `call` on the GPU and checks every output against float64.
template <class Call>
void check_matmul(const QuantCase& c, int64_t n, bool norm, bool bias, bool acc, std::mt19937& rng,
                  Call call, const std::string& what) {
  const Tensor x = random_cpu(DType::kF32, {n, c.in}, rng);
  const Tensor nw = norm ? random_cpu(DType::kF32, {c.in}, rng, 0.5f, 1.5f) : Tensor();
  const Tensor xn = kernel_input(c, n, x, nw);
  std::vector<MatmulOutput> outs;
  std::vector<Tensor> want;
  for (int64_t rows : c.outs) {
    const Weight w = random_weight(c.dtype, rows, c.in, rng, c.group, c.scale_dtype);
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
  // n > 1 runs on tensor cores over fp16 dequantized weights and the input rounded to fp16.
  const float tolerance = n > 1 ? gemm16_tolerance(DType::kF16) : 1e-4f;
  for (size_t j = 0; j < outs.size(); ++j)
    EXPECT_LT(scaled_diff(to_cpu(outs[j].y), want[j]), tolerance)
        << describe(c, n, norm, bias, acc) << what << ", output " << j;
}

TEST(CudaQuantized, MatmulMatchesFloat64Reference) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(91);
  for (const QuantCase& c : kCases)
    for (int64_t n : {1, 3, 40})
      for (bool norm : {false, true})
        for (bool acc : {false, true}) {
          if (n == 40 && c.in * c.outs[0] > 400000) continue;  // keeps the reference quick
          check_matmul(c, n, norm, !acc, acc, rng,
                       [&](const MatmulInput& in, std::span<const MatmulOutput> outs) {
                         kernel_registry().matmul.find(Device::kCUDA, c.dtype)(in, outs, acc,
                                                                               cuda_ctx());
                       }, "");
        }
}

TEST(CudaQuantized, EveryGemvVariantMatchesFloat64Reference) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(92);
  const int variants = int(kernels::cuda::gemv_variants().size());
  for (const QuantCase* c : kSweepCases)
    for (int v = 0; v < variants; ++v)
      for (bool norm : {false, true})
        check_matmul(*c, 1, norm, true, norm, rng,
                     [&](const MatmulInput& in, std::span<const MatmulOutput> outs) {
                       kernels::cuda::gemv_with_variant(v, in, outs, norm, cuda_ctx());
                     }, ", variant " + std::to_string(v));
}

TEST(CudaQuantized, GatedMatmulMatchesFloat64Reference) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(93);
  const int variants = int(kernels::cuda::gemv_variants().size());
  for (const QuantCase& c : {kCases[0], kCases[1], kCases[4], kCases[5], kCases[7], kCases[11],
                             kCases[12], kCases[14], kCases[16], kCases[18], kCases[21], kCases[22],
                             kCases[24], kCases[26]})
    for (int64_t n : {1, 5})
      for (int v = 0; v < (n == 1 ? variants : 1); ++v) {
        const int64_t hidden = c.outs[0];
        const Tensor x = random_cpu(DType::kF32, {n, c.in}, rng);
        const Tensor nw = random_cpu(DType::kF32, {c.in}, rng, 0.5f, 1.5f);
        const Weight wg = random_weight(c.dtype, hidden, c.in, rng, c.group, c.scale_dtype);
        const Weight wu = random_weight(c.dtype, hidden, c.in, rng, c.group, c.scale_dtype);
        const Tensor xn = kernel_input(c, n, x, nw);
        const Tensor want = reference::silu_times(reference::matmul(xn, wg, {}),
                                                  reference::matmul(xn, wu, {}));
        const Tensor y = poisoned_cuda(DType::kF32, {n, hidden});
        const MatmulInput in{test::to_cuda(x), test::to_cuda(nw), 1e-5f};
        if (n == 1)
          kernels::cuda::gated_gemv_with_variant(v, in, to_cuda(wg), to_cuda(wu), y, Tensor(), cuda_ctx());
        else
          kernel_registry().gated_matmul.find(Device::kCUDA, c.dtype)(in, to_cuda(wg), to_cuda(wu),
                                                                      y, Tensor(), cuda_ctx());
        // silu(g) * u carries the rounding of both products (n > 1: over the input in fp16).
        EXPECT_LT(scaled_diff(to_cpu(y), want), n > 1 ? 3 * gemm16_tolerance(DType::kF16) : 1e-4f)
            << describe(c, n, true, false, false) << ", variant " << v;
      }
}

// A GEMV of int8/q4 codes given its input's codes multiplies those (blocks of 8; with a norm,
// the codes of x times it, and the rms scale from their block sums) and never reads x: x is
// poisoned (NaN) here. Every variant, several outputs, bias, accumulate.
TEST(CudaQuantized, EveryGemvVariantReadsInputCodes) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(96);
  const int variants = int(kernels::cuda::gemv_variants().size());
  for (const QuantCase& c : kCases) {
    if (is_ggml_block(c.dtype) || !integer_gemv(c) || c.in > 12288) continue;
    for (int v = 0; v < variants; ++v)
      for (bool norm : {false, true}) {
        const bool acc = !norm;
        const Tensor x = random_cpu(DType::kF32, {1, c.in}, rng);
        const Tensor nw = norm ? random_cpu(DType::kF32, {c.in}, rng, 0.5f, 1.5f) : Tensor();
        const Tensor xq = integer_gemv_input(x, nw, 1e-5f, kernels::kInputCodeBlock);
        std::vector<MatmulOutput> outs;
        std::vector<Tensor> want;
        for (int64_t rows : c.outs) {
          const Weight w = random_weight(c.dtype, rows, c.in, rng, c.group, c.scale_dtype);
          const Tensor b = random_cpu(DType::kF32, {rows}, rng);
          const Tensor start = random_cpu(DType::kF32, {1, rows}, rng);
          Tensor e = reference::matmul(xq, w, b);
          if (acc)
            for (int64_t k = 0; k < e.numel(); ++k) e.span<float>()[k] += start.span<float>()[k];
          want.push_back(e);
          outs.push_back({to_cuda(w), test::to_cuda(b),
                          acc ? test::to_cuda(start) : poisoned_cuda(DType::kF32, {1, rows})});
        }
        const auto nspan = norm ? nw.span<float>() : std::span<const float>();
        MatmulInput in{poisoned_cuda(DType::kF32, {1, c.in}), norm ? test::to_cuda(nw) : Tensor(),
                       1e-5f, test::to_cuda(input_codes(x.span<float>(), nspan))};
        kernels::cuda::gemv_with_variant(v, in, outs, acc, cuda_ctx());
        for (size_t j = 0; j < outs.size(); ++j)
          EXPECT_LT(scaled_diff(to_cpu(outs[j].y), want[j]), 1e-4f)
              << describe(c, 1, norm, true, acc) << ", input codes, variant " << v << ", output "
              << j;
      }
  }
}

// The gated GEMV asked for its output's codes writes input_codes(y) beside y: in the kernel
// where its chunks are whole blocks of 8 rows, after it otherwise (the scalar kernel, other
// variants), for every weight type; and given its own input's codes (int8, q4) it reads those.
TEST(CudaQuantized, GatedGemvWritesOutputCodes) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(97);
  const int variants = int(kernels::cuda::gemv_variants().size());
  struct Case {
    DType dtype;
    int64_t in, group, hidden;
  };
  for (const Case c : {Case{DType::kI8, 288, 32, 768}, Case{DType::kQ4, 2048, 32, 256},
                       Case{DType::kQ4, 288, 96, 352}, Case{DType::kI8, 72, 24, 96},
                       Case{DType::kQ8_0, 288, 0, 160}, Case{DType::kF16, 320, 0, 224}})
    for (int v = 0; v < variants; ++v)
      for (bool codes_in : {false, true}) {
        // Input codes are read by the vector path of int8/q4 codes only (elsewhere x is).
        if (codes_in && !((c.dtype == DType::kI8 || c.dtype == DType::kQ4) &&
                          integer_gemv(QuantCase{c.dtype, c.in, c.group, {}, DType::kF16})))
          continue;
        const Tensor x = random_cpu(DType::kF32, {1, c.in}, rng);
        const Tensor nw = random_cpu(DType::kF32, {c.in}, rng, 0.5f, 1.5f);
        const Weight wg = random_weight(c.dtype, c.hidden, c.in, rng, c.group, DType::kF16);
        const Weight wu = random_weight(c.dtype, c.hidden, c.in, rng, c.group, DType::kF16);
        const Tensor y = poisoned_cuda(DType::kF32, {1, c.hidden});
        const Tensor codes = poisoned_cuda(DType::kI8, {kernels::input_codes_bytes(c.hidden)});
        const MatmulInput in =
            codes_in ? MatmulInput{poisoned_cuda(DType::kF32, {1, c.in}), test::to_cuda(nw), 1e-5f,
                                   test::to_cuda(input_codes(x.span<float>(), nw.span<float>()))}
                     : MatmulInput{test::to_cuda(x), test::to_cuda(nw), 1e-5f};
        kernels::cuda::gated_gemv_with_variant(v, in, to_cuda(wg), to_cuda(wu), y, codes,
                                               cuda_ctx());
        const Tensor got_y = to_cpu(y);
        const std::string what = std::string(dtype_name(c.dtype)) + " in " + std::to_string(c.in) +
                                 " hidden " + std::to_string(c.hidden) + ", variant " +
                                 std::to_string(v) + (codes_in ? ", input codes" : "");
        EXPECT_EQ(codes_differences(to_cpu(codes), input_codes(got_y.span<float>()), c.hidden), 0)
            << what << ": bytes of the codes that differ";
        if (codes_in) {
          const Tensor xq = integer_gemv_input(x, nw, 1e-5f, kernels::kInputCodeBlock);
          const Tensor want = reference::silu_times(reference::matmul(xq, wg, {}),
                                                    reference::matmul(xq, wu, {}));
          EXPECT_LT(scaled_diff(got_y, want), 1e-4f) << what;
        }
      }
}

// wo and w2 (one output, accumulating into the residual stream) write the codes of their
// result times the next norm's weight, with the blocks' sums of the result's squares.
TEST(CudaQuantized, ResidualGemvWritesOutputCodesForTheNextNorm) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(98);
  const int variants = int(kernels::cuda::gemv_variants().size());
  for (const QuantCase& c : {kCases[3], kCases[10], kCases[5], kCases[12], kCases[4], kCases[15]})
    for (int v = 0; v < variants; ++v)
      for (bool norm : {false, true}) {
        const int64_t rows = (c.outs[0] + 31) / 32 * 32;  // codes take whole blocks of 32
        const Tensor x = random_cpu(DType::kF32, {1, c.in}, rng);
        const Tensor nw = norm ? random_cpu(DType::kF32, {rows}, rng, 0.5f, 1.5f) : Tensor();
        const Weight w = random_weight(c.dtype, rows, c.in, rng, c.group, c.scale_dtype);
        const Tensor y = test::to_cuda(random_cpu(DType::kF32, {1, rows}, rng));
        const Tensor codes = poisoned_cuda(DType::kI8, {kernels::input_codes_bytes(rows)});
        const MatmulOutput out{to_cuda(w), Tensor(), y, codes, norm ? test::to_cuda(nw) : Tensor()};
        kernels::cuda::gemv_with_variant(v, plain(test::to_cuda(x)), {&out, 1}, true, cuda_ctx());
        const Tensor got_y = to_cpu(y);
        EXPECT_EQ(codes_differences(to_cpu(codes),
                                    input_codes(got_y.span<float>(),
                                                norm ? nw.span<float>() : std::span<const float>()),
                                    rows),
                  0)
            << describe(c, 1, false, false, true) << " rows " << rows << (norm ? " norm" : "")
            << ", variant " << v << ": bytes of the codes that differ";
      }
}

// Llama-3.1-8B's q/k/v shape through the default path, given the input's codes and a norm: more
// rows than r1u2w8's resident blocks take in one round, so on an H200 one_round_variant runs
// r2u2w8 (chunks of 16 rows in one round); elsewhere r1u2w8's blocks loop over two rounds.
TEST(CudaQuantized, TallGemvOfManyChunksMatchesReference) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(99);
  const int64_t in = 4096;
  for (const DType dtype : {DType::kI8, DType::kQ4}) {
    const Tensor x = random_cpu(DType::kF32, {1, in}, rng);
    const Tensor nw = random_cpu(DType::kF32, {in}, rng, 0.5f, 1.5f);
    const Tensor xq = integer_gemv_input(x, nw, 1e-5f, kernels::kInputCodeBlock);
    std::vector<MatmulOutput> outs;
    std::vector<Tensor> want;
    for (int64_t rows : {4096, 1024, 1024}) {
      const Weight w = random_weight(dtype, rows, in, rng, dtype == DType::kI8 ? 64 : 32,
                                     DType::kF32);
      want.push_back(reference::matmul(xq, w, {}));
      outs.push_back({to_cuda(w), Tensor(), poisoned_cuda(DType::kF32, {1, rows})});
    }
    const MatmulInput input{poisoned_cuda(DType::kF32, {1, in}), test::to_cuda(nw), 1e-5f,
                            test::to_cuda(input_codes(x.span<float>(), nw.span<float>()))};
    kernel_registry().matmul.find(Device::kCUDA, dtype)(input, outs, false, cuda_ctx());
    for (size_t j = 0; j < outs.size(); ++j)
      EXPECT_LT(scaled_diff(to_cpu(outs[j].y), want[j]), 1e-4f) << dtype_name(dtype) << " " << j;
  }
}

TEST(CudaQuantized, RejectsBadInputCodes) {
  KUIPER_REQUIRE_CUDA();
  const auto matmul = kernel_registry().matmul.find(Device::kCUDA, DType::kI8);
  const Tensor x(DType::kF32, {1, 64}, Device::kCUDA), y(DType::kF32, {1, 8}, Device::kCUDA);
  const MatmulOutput out{Weight(Tensor(DType::kI8, {8, 64}, Device::kCUDA),
                                Tensor(DType::kF32, {8, 2}, Device::kCUDA)),
                         Tensor(), y};
  const Tensor short_codes(DType::kI8, {kernels::input_codes_bytes(64) - 1}, Device::kCUDA);
  EXPECT_THROW(matmul({x, {}, 0.f, short_codes}, {&out, 1}, false, cuda_ctx()), Error);
  const Tensor float_codes(DType::kF32, {kernels::input_codes_bytes(64)}, Device::kCUDA);
  EXPECT_THROW(matmul({x, {}, 0.f, float_codes}, {&out, 1}, false, cuda_ctx()), Error);
  const Tensor codes(DType::kI8, {kernels::input_codes_bytes(64)}, Device::kCUDA);
  EXPECT_NO_THROW(matmul({x, {}, 0.f, codes}, {&out, 1}, false, cuda_ctx()));
}

TEST(CudaQuantized, EmbeddingDequantizesRows) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(94);
  for (DType dtype : {DType::kI8, DType::kQ4})
  for (DType scale_dtype : {DType::kF32, DType::kF16}) {
    const Weight table = random_weight(dtype, 50, 96, rng, 32, scale_dtype);
    const Tensor tokens = ints_cpu({49, 0, 13, 13});
    const Tensor out = poisoned_cuda(DType::kF32, {4, 96});
    kernel_registry().embedding.find(Device::kCUDA, dtype)(test::to_cuda(tokens), to_cuda(table),
                                                          out, cuda_ctx());
    const Tensor got = to_cpu(out);
    const int32_t ids[] = {49, 0, 13, 13};
    for (int i = 0; i < 4; ++i)
      for (int k = 0; k < 96; ++k)
        ASSERT_FLOAT_EQ(element(got, i * 96 + k), float(weight_element(table, ids[i], k)))
            << dtype_name(dtype) << " " << k;
  }
}

TEST(CudaQuantized, EmbeddingDequantizesGgmlBlocks) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(95);
  for (DType dtype : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_K, DType::kQ6_K}) {
    const int64_t dim = 768;
    const Weight table = random_weight(dtype, 51, dim, rng);
    const Tensor tokens = ints_cpu({50, 0, 13, 13});
    const Tensor out = poisoned_cuda(DType::kF32, {4, dim});
    kernel_registry().embedding.find(Device::kCUDA, dtype)(test::to_cuda(tokens), to_cuda(table),
                                                          out, cuda_ctx());
    const Tensor got = to_cpu(out);
    const int32_t ids[] = {50, 0, 13, 13};
    for (int i = 0; i < 4; ++i)
      for (int k = 0; k < dim; ++k) {
        const double want = weight_element(table, ids[i], k);
        ASSERT_NEAR(element(got, i * dim + k), want, 4e-6 + 2e-6 * std::fabs(want))
            << dtype_name(dtype) << " " << k;  // Q4_K's minimums subtract in fp32
      }
  }
}

TEST(CudaQuantized, RejectsMismatchedScales) {
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
  const Tensor q4(DType::kQ4, {8, 64}, Device::kCUDA);  // q4 groups must tile its 32-value blocks
  const MatmulOutput q4_group16{Weight(q4, Tensor(DType::kF16, {8, 4}, Device::kCUDA)), Tensor(), y};
  EXPECT_THROW(kernel_registry().matmul.find(Device::kCUDA, DType::kQ4)(plain(x), {&q4_group16, 1},
                                                                        false, cuda_ctx()),
               Error);
}

}  // namespace
}  // namespace kuiper::test
