// kernels/cuda/rope_store.cu against the CPU kernel: queries rotated in place, rotated keys and
// values in the cache rows of their positions, other cache rows untouched; 16-bit caches against
// the CPU's fp32 cache rounded on the host. Values are copied bit for bit; rotations may differ in
// the last bit (fused multiply-adds on either side).
#include <cmath>

#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

// The table of a real model: frequency j turns by pos * theta^(-2j / head_dim).
Tensor rope_table(int64_t max_seq, int head_dim, double theta) {
  Tensor t(DType::kF32, {max_seq, head_dim / 2, 2});
  auto v = t.span<float>();
  for (int64_t p = 0; p < max_seq; ++p)
    for (int j = 0; j < head_dim / 2; ++j) {
      const double angle = double(p) * std::pow(theta, -2.0 * j / head_dim);
      v[(p * head_dim / 2 + j) * 2] = float(std::cos(angle));
      v[(p * head_dim / 2 + j) * 2 + 1] = float(std::sin(angle));
    }
  return t;
}

// An fp32 tensor rounded to `dtype` on the host (round to nearest even, as the kernel).
Tensor narrowed(const Tensor& t, DType dtype) {
  if (dtype == DType::kF32) return t;
  Tensor out(dtype, t.shape());
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float v = t.span<float>()[i];
    if (dtype == DType::kF16) out.span<f16>()[i] = to_f16(v);
    else out.span<bf16>()[i] = to_bf16(v);
  }
  return out;
}

Tensor copy_of(const Tensor& t) {
  Tensor c(t.dtype(), t.shape());
  c.copy_from(t);
  return c;
}

struct HeadsCase {
  int heads, kv_heads;
};

TEST(CudaRopeStore, MatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(61);
  const auto& r = kernel_registry();
  const int64_t max_seq = 600;
  for (int head_dim : {48, 64, 128}) {
    const Tensor table = rope_table(max_seq, head_dim, 10000.0);
    const Tensor dtable = to_cuda(table);
    for (const HeadsCase h : {HeadsCase{1, 1}, HeadsCase{6, 2}, HeadsCase{32, 4}}) {
      const int64_t q_width = int64_t(h.heads) * head_dim,
                    kv_width = int64_t(h.kv_heads) * head_dim;
      for (int64_t n : {1, 3, 17, 512}) {
        // Distinct positions in random order, the first and last rows of the table among them.
        std::vector<int32_t> pos(static_cast<size_t>(max_seq));
        for (size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
        std::shuffle(pos.begin() + 1, pos.end() - 1, rng);
        std::swap(pos[size_t(n) - 1], pos.back());
        pos.resize(size_t(n));
        const Tensor positions = ints_cpu(pos);
        const Tensor q = random_cpu(DType::kF32, {n, q_width}, rng);
        const Tensor k = random_cpu(DType::kF32, {n, kv_width}, rng);
        const Tensor v = random_cpu(DType::kF32, {n, kv_width}, rng);
        // The rows not written keep what the caches held before.
        const Tensor k_cache = random_cpu(DType::kF32, {max_seq, kv_width}, rng);
        const Tensor v_cache = random_cpu(DType::kF32, {max_seq, kv_width}, rng);
        const Tensor want_q = copy_of(q), want_k = copy_of(k_cache), want_v = copy_of(v_cache);
        r.rope_store.find(Device::kCPU, DType::kF32)(want_q, k, v, positions, table, head_dim,
                                                     want_k, want_v, cpu_ctx());
        for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
          const Tensor dq = to_cuda(q);
          const Tensor dk_cache = to_cuda(narrowed(k_cache, dtype));
          const Tensor dv_cache = to_cuda(narrowed(v_cache, dtype));
          r.rope_store.find(Device::kCUDA, dtype)(dq, to_cuda(k), to_cuda(v), to_cuda(positions),
                                                  dtable, head_dim, dk_cache, dv_cache, cuda_ctx());
          const std::string what = std::string(dtype_name(dtype)) + " head_dim " +
                                   std::to_string(head_dim) + " heads " + std::to_string(h.heads) +
                                   "/" + std::to_string(h.kv_heads) + " n " + std::to_string(n);
          // One fp32 ulp apart may round to neighbouring 16-bit values.
          const float k_tolerance = dtype == DType::kF32   ? 1e-6f
                                    : dtype == DType::kF16 ? 1e-3f
                                                           : 8e-3f;
          EXPECT_LT(max_rel_diff(to_cpu(dq), want_q), 1e-6f) << what;
          EXPECT_LT(max_rel_diff(to_cpu(dk_cache), narrowed(want_k, dtype)), k_tolerance) << what;
          EXPECT_EQ(max_rel_diff(to_cpu(dv_cache), narrowed(want_v, dtype)), 0.f) << what;
        }
      }
    }
  }
}

// A position outside the table or the cache cannot throw on the device: the row's queries become
// NaN and the caches are left alone.
TEST(CudaRopeStore, PositionOutsideTheCacheGivesNaNAndNoWrite) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(62);
  const Tensor table = to_cuda(rope_table(16, 64, 10000.0));
  const Tensor q = to_cuda(random_cpu(DType::kF32, {3, 128}, rng));
  const Tensor k = to_cuda(random_cpu(DType::kF32, {3, 64}, rng));
  const Tensor v = to_cuda(random_cpu(DType::kF32, {3, 64}, rng));
  const Tensor cache = random_cpu(DType::kF32, {16, 64}, rng);
  const Tensor k_cache = to_cuda(cache), v_cache = to_cuda(cache);
  kernel_registry().rope_store.find(Device::kCUDA, DType::kF32)(
      q, k, v, to_cuda(ints_cpu({16, -1, 15})), table, 64, k_cache, v_cache, cuda_ctx());
  const Tensor host_q = to_cpu(q);
  for (int64_t d = 0; d < 128; ++d) {
    EXPECT_TRUE(std::isnan(host_q.span<float>()[d]));
    EXPECT_TRUE(std::isnan(host_q.span<float>()[128 + d]));
    EXPECT_FALSE(std::isnan(host_q.span<float>()[256 + d]));
  }
  // Only row 15 changed.
  const Tensor host_k = to_cpu(k_cache), host_v = to_cpu(v_cache);
  EXPECT_EQ(max_rel_diff(host_k.rows(0, 15), cache.rows(0, 15)), 0.f);
  EXPECT_EQ(max_rel_diff(host_v.rows(0, 15), cache.rows(0, 15)), 0.f);
  EXPECT_EQ(max_rel_diff(host_v.rows(15, 16), to_cpu(v).rows(2, 3)), 0.f);
}

}  // namespace
}  // namespace kuiper::test
