// kernels/cuda/attention.cu against the CPU kernel: decoding (one query row, keys split across
// blocks) and prefill (many rows, causal), grouped-query ratios 1, 3 and 8, head_dim 48/64/128,
// fp32 caches and 16-bit caches (compared with the CPU kernel on the same values widened).
#include <cmath>

#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

struct CacheSetup {
  kernels::AttentionShape shape;
  int64_t max_seq;
};

constexpr CacheSetup kSetups[] = {
    {{6, 2, 48}, 2048},   // the test model: ratio 3, head_dim 48
    {{4, 4, 64}, 600},    // ratio 1
    {{8, 1, 128}, 1024},  // ratio 8, one KV head: the most splitting
    {{32, 4, 64}, 2048},  // TinyLlama: ratio 8
    {{3, 1, 48}, 64},
};

class AttentionCase {
 public:
  AttentionCase(const CacheSetup& s, DType cache_type, std::mt19937& rng) : s_(s), type_(cache_type) {
    const int64_t kv_width = int64_t(s.shape.n_kv_heads) * s.shape.head_dim;
    k_ = random_cpu(cache_type, {s.max_seq, kv_width}, rng);
    v_ = random_cpu(cache_type, {s.max_seq, kv_width}, rng);
  }

  // Checks one batch of query rows at `positions`. Cache rows past the largest position are
  // NaN for the duration, so a kernel that reads beyond a row's keys fails the comparison.
  void check(const std::vector<int32_t>& positions, std::mt19937& rng) const {
    const int64_t n = int64_t(positions.size());
    const int64_t q_width = int64_t(s_.shape.n_heads) * s_.shape.head_dim;
    const int32_t last = *std::max_element(positions.begin(), positions.end());
    const Tensor k = poison_after(k_, last), v = poison_after(v_, last);
    const Tensor q = random_cpu(DType::kF32, {n, q_width}, rng, -3.f, 3.f);
    const Tensor pos = ints_cpu(positions);

    const Tensor want(DType::kF32, {n, q_width});
    kernel_registry().attention.find(Device::kCPU, DType::kF32)(q, widened(k), widened(v), pos,
                                                               s_.shape, want, cpu_ctx());
    const Tensor out = poisoned_cuda(DType::kF32, {n, q_width});
    kernel_registry().attention.find(Device::kCUDA, type_)(to_cuda(q), to_cuda(k), to_cuda(v),
                                                          to_cuda(pos), s_.shape, out, cuda_ctx());
    EXPECT_LT(max_rel_diff(to_cpu(out), want), 2e-5f)
        << dtype_name(type_) << " heads " << s_.shape.n_heads << "/" << s_.shape.n_kv_heads
        << " head_dim " << s_.shape.head_dim << " max_seq " << s_.max_seq << " n " << n
        << " last position " << last;
  }

 private:
  Tensor poison_after(const Tensor& cache, int32_t last) const {
    Tensor t(cache.dtype(), cache.shape());
    t.copy_from(cache);
    const int64_t width = cache.dim(1);
    for (int64_t i = (last + 1) * width; i < t.numel(); ++i) {
      if (type_ == DType::kF32) t.span<float>()[i] = NAN;
      else if (type_ == DType::kF16) t.span<f16>()[i] = f16{0x7e00};
      else t.span<bf16>()[i] = bf16{0x7fc0};
    }
    return t;
  }

  CacheSetup s_;
  DType type_;
  Tensor k_, v_;
};

TEST(CudaAttention, DecodingMatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(91);
  for (const CacheSetup& s : kSetups) {
    const AttentionCase c(s, DType::kF32, rng);
    const int32_t last = int32_t(s.max_seq - 1);
    // Around the split boundaries (32 keys a split at least), mid-way and the cache's end.
    for (int32_t p : {0, 1, 31, 32, 33, 100, 511, last / 2, last}) c.check({std::min(p, last)}, rng);
  }
}

TEST(CudaAttention, PrefillMatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(92);
  for (const CacheSetup& s : kSetups) {
    const AttentionCase c(s, DType::kF32, rng);
    for (int64_t n : {3, 17, 512}) {
      if (n > s.max_seq) continue;
      // A chunk of a prompt: consecutive positions after what earlier chunks wrote.
      const int32_t start = int32_t(rng() % (s.max_seq - n + 1));
      std::vector<int32_t> pos(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) pos[size_t(i)] = start + int32_t(i);
      c.check(pos, rng);
    }
    // Rows in any order, with repeats: each row only depends on its own position.
    std::vector<int32_t> pos(17);
    for (auto& p : pos) p = int32_t(rng() % s.max_seq);
    pos[3] = pos[5];
    c.check(pos, rng);
  }
}

TEST(CudaAttention, SixteenBitCachesMatchCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(93);
  for (DType type : {DType::kF16, DType::kBF16}) {
    for (const CacheSetup& s : {kSetups[0], kSetups[3]}) {
      const AttentionCase c(s, type, rng);
      c.check({700}, rng);
      std::vector<int32_t> pos(17);
      for (int i = 0; i < 17; ++i) pos[size_t(i)] = 40 + i;
      c.check(pos, rng);
    }
  }
}

TEST(CudaAttention, PositionOutsideTheCacheGivesNaN) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(94);
  const kernels::AttentionShape shape{4, 2, 64};
  const Tensor k = to_cuda(random_cpu(DType::kF32, {64, 128}, rng));
  const Tensor v = to_cuda(random_cpu(DType::kF32, {64, 128}, rng));
  for (const std::vector<int32_t>& pos : {std::vector<int32_t>{64}, std::vector<int32_t>{5, -1, 7}}) {
    const int64_t n = int64_t(pos.size());
    const Tensor q = to_cuda(random_cpu(DType::kF32, {n, 256}, rng));
    const Tensor out = poisoned_cuda(DType::kF32, {n, 256});
    kernel_registry().attention.find(Device::kCUDA, DType::kF32)(q, k, v, to_cuda(ints_cpu(pos)),
                                                                shape, out, cuda_ctx());
    const Tensor host = to_cpu(out);
    for (int64_t i = 0; i < n; ++i) {
      const bool valid = pos[size_t(i)] >= 0 && pos[size_t(i)] < 64;
      for (int64_t d = 0; d < 256; ++d)
        EXPECT_EQ(std::isnan(host.span<float>()[i * 256 + d]), !valid) << "row " << i;
    }
  }
}

}  // namespace
}  // namespace kuiper::test
