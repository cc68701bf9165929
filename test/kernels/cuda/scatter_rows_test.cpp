// kernels/cuda/scatter_rows.cu against the CPU kernel (fp32 cache) and against the CPU result
// rounded on the host (16-bit caches).
#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

// The fp32 cache rounded to `dtype` on the host (round to nearest even, as the kernel).
Tensor narrowed(const Tensor& t, DType dtype) {
  Tensor out(dtype, t.shape());
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float v = t.span<float>()[i];
    if (dtype == DType::kF16) out.span<f16>()[i] = to_f16(v);
    else out.span<bf16>()[i] = to_bf16(v);
  }
  return out;
}

TEST(CudaScatterRows, MatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(71);
  const auto& r = kernel_registry();
  const int64_t max_seq = 600;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t width : {48, 256, 291}) {
      for (int64_t n : {1, 3, 17, 512}) {
        // Distinct rows in random order (a real batch writes consecutive ones).
        std::vector<int32_t> pos(static_cast<size_t>(max_seq));
        for (size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
        std::shuffle(pos.begin(), pos.end(), rng);
        pos.resize(size_t(n));
        const Tensor positions = ints_cpu(pos);
        const Tensor src = random_cpu(DType::kF32, {n, width}, rng);
        // The rows not written keep what the cache held before.
        const Tensor cache = random_cpu(DType::kF32, {max_seq, width}, rng);
        const Tensor dcache = to_cuda(dtype == DType::kF32 ? cache : narrowed(cache, dtype));
        r.scatter_rows.find(Device::kCPU, DType::kF32)(src, positions, cache, cpu_ctx());
        r.scatter_rows.find(Device::kCUDA, dtype)(to_cuda(src), to_cuda(positions), dcache,
                                                  cuda_ctx());
        const Tensor want = dtype == DType::kF32 ? cache : narrowed(cache, dtype);
        EXPECT_EQ(max_rel_diff(to_cpu(dcache), want), 0.f)
            << dtype_name(dtype) << " width " << width << " n " << n;
      }
    }
  }
}

TEST(CudaScatterRows, PositionOutsideTheCacheIsSkipped) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(72);
  const Tensor cache = random_cpu(DType::kF32, {8, 64}, rng);
  const Tensor src = random_cpu(DType::kF32, {2, 64}, rng);
  const Tensor dcache = to_cuda(cache);
  kernel_registry().scatter_rows.find(Device::kCUDA, DType::kF32)(
      to_cuda(src), to_cuda(ints_cpu({8, -1})), dcache, cuda_ctx());
  EXPECT_EQ(max_rel_diff(to_cpu(dcache), cache), 0.f);
}

}  // namespace
}  // namespace kuiper::test
