#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

struct MatmulCase {
  DType dtype;
  int64_t n, in;
  std::vector<int64_t> outs;  // rows of each projection
  bool bias, norm, accumulate;
  int64_t group = 0;          // int8, q4: values per scale
  DType scale_dtype = DType::kF32;
};

class CpuMatmul : public ::testing::TestWithParam<MatmulCase> {};

// The input as the kernel multiplies it: q4, int8 and ggml's block weights decoding a few positions (up to 8,
// where matmul.cpp goes row by row) take x rounded to int8 blocks, unless int8 groups split
// those blocks; GEMM tiles take it as it is.
// (weight_rows.h is not included here: its inline SIMD code must be compiled with the
// library's flags only.)
Tensor reference_input(DType dtype, int64_t n, int64_t group, const Tensor& x) {
  const int64_t blocks = group / 32;  // kernels/cpu/weight_rows.h whole_blocks()
  const bool whole_blocks = group % 32 == 0 && blocks <= 8 && (blocks & (blocks - 1)) == 0;
  const bool integer =
      dtype == DType::kQ4 || is_ggml_block(dtype) || (dtype == DType::kI8 && whole_blocks);
  return integer && n <= 8 ? reference::int8_blocks(x) : x;
}

TEST_P(CpuMatmul, MatchesReference) {
  const MatmulCase& c = GetParam();
  std::mt19937 rng(int(c.n * 131 + c.in * 7 + c.outs.size()));
  Tensor x(DType::kF32, {c.n, c.in}), norm;
  fill_uniform(x, rng, -2, 2);
  if (c.norm) {
    norm = Tensor(DType::kF32, {c.in});
    fill_uniform(norm, rng);
  }
  const Tensor xn =
      reference_input(c.dtype, c.n, c.group, c.norm ? reference::rmsnorm(x, norm, 1e-5f) : x);
  std::vector<kernels::MatmulOutput> outs;
  std::vector<Tensor> expected;
  for (int64_t rows : c.outs) {
    kernels::MatmulOutput o{random_weight(c.dtype, rows, c.in, rng, c.group, c.scale_dtype), Tensor(),
                            Tensor(DType::kF32, {c.n, rows})};
    if (c.bias) {
      o.bias = Tensor(DType::kF32, {rows});
      fill_uniform(o.bias, rng);
    }
    fill_uniform(o.y, rng);
    Tensor e = reference::matmul(xn, o.weight, o.bias);
    if (c.accumulate)
      for (int64_t k = 0; k < e.numel(); ++k) e.span<float>()[k] += o.y.span<float>()[k];
    expected.push_back(e);
    outs.push_back(o);
  }
  kernels::registry().matmul.find(Device::kCPU, c.dtype)({x, norm, 1e-5f}, outs, c.accumulate,
                                                        DeviceContext::cpu());
  for (size_t i = 0; i < outs.size(); ++i) EXPECT_LT(max_rel_diff(outs[i].y, expected[i]), 1e-4) << i;
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CpuMatmul,
    ::testing::Values(MatmulCase{DType::kF32, 1, 288, {768}, false, false, false},
                      MatmulCase{DType::kF32, 1, 291, {37, 5, 5}, true, true, false},
                      MatmulCase{DType::kF32, 7, 288, {96}, false, true, true},
                      MatmulCase{DType::kF32, 33, 65, {300, 20, 20}, true, false, false},
                      MatmulCase{DType::kF16, 1, 288, {768}, false, false, true},
                      MatmulCase{DType::kF16, 1, 45, {29, 3, 3}, true, true, false},
                      MatmulCase{DType::kF16, 9, 200, {600}, false, false, true},
                      // Batched decode rows: 2 to 8 positions at once (position_dots.h), rows
                      // whose length leaves a tail past the vector loop.
                      MatmulCase{DType::kF16, 5, 45, {29, 3, 3}, true, true, false},
                      MatmulCase{DType::kF32, 8, 291, {37}, false, true, true},
                      MatmulCase{DType::kBF16, 3, 130, {66, 2, 2}, true, false, false},
                      MatmulCase{DType::kF16, 2, 24, {9}, false, false, true},
                      // Rows longer than a block of k (position_dots.h: 512 values at 8
                      // positions, 680 at 6, 1024 at 4), with a tail past the last block's vectors.
                      MatmulCase{DType::kF16, 8, 1100, {300, 40, 40}, true, true, true},
                      MatmulCase{DType::kF32, 6, 2050, {129}, false, false, false},
                      MatmulCase{DType::kBF16, 4, 1030, {70, 9}, true, false, true},
                      MatmulCase{DType::kBF16, 1, 288, {96, 32, 32}, true, true, false},
                      MatmulCase{DType::kBF16, 1, 33, {17}, false, false, false},
                      MatmulCase{DType::kBF16, 17, 130, {513, 2, 2}, true, true, true},
                      // int8: decode rows and a GEMM tile, every group size the format allows,
                      // fp32 and fp16 scales, and groups the vector loop does not take (16, 24).
                      MatmulCase{DType::kI8, 1, 288, {768}, false, false, false, 32},
                      MatmulCase{DType::kI8, 1, 320, {37, 5, 5}, true, true, false, 64, DType::kF16},
                      MatmulCase{DType::kI8, 3, 384, {29}, false, true, true, 128},
                      MatmulCase{DType::kI8, 1, 96, {33, 7}, true, false, true, 24, DType::kF16},
                      MatmulCase{DType::kI8, 2, 48, {19}, false, false, false, 16},
                      MatmulCase{DType::kI8, 33, 192, {300, 20, 20}, true, true, false, 64},
                      MatmulCase{DType::kI8, 9, 256, {513}, false, false, true, 32, DType::kF16},
                      // q4: blocks of 32, groups of 32, 64, 128; 9 blocks a row (no 4-block
                      // step), fp16 and fp32 scales, decode rows and GEMM tiles.
                      MatmulCase{DType::kQ4, 1, 288, {768}, false, false, false, 32, DType::kF16},
                      MatmulCase{DType::kQ4, 1, 320, {37, 5, 5}, true, true, false, 64, DType::kF16},
                      MatmulCase{DType::kQ4, 3, 384, {29}, false, true, true, 128},
                      MatmulCase{DType::kQ4, 8, 96, {33, 7}, true, false, true, 96, DType::kF16},
                      MatmulCase{DType::kQ4, 33, 192, {300, 20, 20}, true, true, false, 64, DType::kF16},
                      MatmulCase{DType::kQ4, 9, 256, {513}, false, false, true, 32},
                      MatmulCase{DType::kQ4, 1, 512, {40}, true, true, false, 128, DType::kF16},
                      MatmulCase{DType::kQ4, 2, 1024, {17}, false, false, true, 256, DType::kF16},
                      // ggml's blocks: rows of 9 blocks of 32 (one past the 8-block step) or
                      // 1-3 super-blocks of 256, odd row counts, decode rows and GEMM tiles.
                      MatmulCase{DType::kQ8_0, 1, 288, {37, 5, 5}, true, true, false},
                      MatmulCase{DType::kQ8_0, 3, 256, {29}, false, false, true},
                      MatmulCase{DType::kQ8_0, 33, 192, {300, 20, 20}, true, true, false},
                      MatmulCase{DType::kQ4_0, 1, 288, {37, 5, 5}, true, true, false},
                      MatmulCase{DType::kQ4_0, 8, 256, {29}, false, false, true},
                      MatmulCase{DType::kQ4_0, 17, 96, {131}, true, false, true},
                      MatmulCase{DType::kQ4_K, 1, 256, {37, 5, 5}, true, true, false},
                      MatmulCase{DType::kQ4_K, 1, 768, {768}, false, false, false},
                      MatmulCase{DType::kQ4_K, 5, 512, {29}, false, true, true},
                      MatmulCase{DType::kQ4_K, 33, 256, {300, 20, 20}, true, true, false},
                      MatmulCase{DType::kQ6_K, 1, 256, {37, 5, 5}, true, true, false},
                      MatmulCase{DType::kQ6_K, 1, 768, {768}, false, false, false},
                      MatmulCase{DType::kQ6_K, 5, 512, {29}, false, true, true},
                      MatmulCase{DType::kQ6_K, 33, 256, {300, 20, 20}, true, true, false}));

TEST(CpuGatedMatmul, IsSiluOfGateTimesUp) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kI8, DType::kQ4, DType::kQ8_0,
                     DType::kQ4_0, DType::kQ4_K, DType::kQ6_K}) {
    for (int64_t n : {1, 6, 8, 11}) {
      std::mt19937 rng(int(n) + int(dtype));
      const bool quantized = dtype == DType::kI8 || dtype == DType::kQ4;
      // Float rows: more than one block of k at 6 and 8 positions (position_dots.h).
      const int64_t in = block_values(dtype) == 256 ? 512 : quantized || is_ggml_block(dtype) ? 96 : 1101;
      const int64_t hidden = 301, group = quantized ? 32 : 0;
      Tensor x(DType::kF32, {n, in}), norm(DType::kF32, {in}), y(DType::kF32, {n, hidden});
      const Weight w_gate = random_weight(dtype, hidden, in, rng, group, DType::kF16);
      const Weight w_up = random_weight(dtype, hidden, in, rng, group, DType::kF16);
      for (const Tensor* t : {&x, &norm}) fill_uniform(*t, rng);
      const Tensor xn = reference_input(dtype, n, group, reference::rmsnorm(x, norm, 1e-6f));
      const Tensor expected = reference::silu_times(reference::matmul(xn, w_gate, {}),
                                                    reference::matmul(xn, w_up, {}));
      kernels::registry().gated_matmul.find(Device::kCPU, dtype)({x, norm, 1e-6f}, w_gate, w_up, y,
                                                                Tensor(), DeviceContext::cpu());
      // Past 8 positions the GEMM is OpenBLAS's fp32 SGEMM: over these 1101 products its
      // rounding leaves up to 7.3e-5 on silu(g) * u with its Haswell (AVX2) kernels and 1.1e-4
      // with its SkylakeX (AVX-512) ones (bf16 weights, a Sapphire Rapids machine).
      EXPECT_LT(max_rel_diff(y, expected), n > 8 ? 3e-4 : 1e-4) << dtype_name(dtype) << " n=" << n;
    }
  }
}

}  // namespace
}  // namespace kuiper::test
