// kernels/cuda/attention.cu against the CPU kernel: decoding (one query row: the cluster kernel,
// and the split kernel with its last-block merge) and prefill (many rows, causal), grouped-query
// ratios 1, 3, 4, 7, 8, 16 and 32, head_dim 48/64/128, fp32 caches and 16-bit caches (compared
// with the CPU kernel on the same values widened). Decoding runs every kernel configuration
// (kernels/cuda/attention.h) on the same inputs: cluster sizes 1-16, 8 and 16 warps a block.
#include <cmath>
#include <string>
#include <vector>

#include "kernels/cuda/attention.h"
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
    {{28, 4, 64}, 2048},  // ratio 7: a block of 7 warps
    {{16, 4, 128}, 700},  // ratio 4: two warps a head
    {{16, 1, 64}, 512},   // ratio 16: 16 warps
    {{32, 1, 64}, 300},   // ratio 32: beyond the cluster kernel, the split kernel serves
};

using kernels::cuda::AttentionDecodeConfig;

// Every decoding configuration: automatic, the split kernel, the cluster kernel with 1-16 blocks
// a cluster (1: a single block walks the whole cache in two-stage rounds), 8 or 16 warps, blocks
// packed or one an SM.
std::vector<AttentionDecodeConfig> decode_configs() {
  std::vector<AttentionDecodeConfig> configs = {{}, {AttentionDecodeConfig::kSplit, 0, 0, -1}};
  for (int cluster : {1, 2, 4, 8, 16})
    for (int warps : {8, 16})
      configs.push_back({AttentionDecodeConfig::kCluster, cluster, warps, 0});
  configs.push_back({AttentionDecodeConfig::kCluster, 16, 8, 1});
  return configs;
}

// Sets the decoding configuration for its lifetime.
class ConfigScope {
 public:
  explicit ConfigScope(const AttentionDecodeConfig& c)
      : saved_(kernels::cuda::attention_decode_config()) {
    kernels::cuda::set_attention_decode_config(c);
  }
  ~ConfigScope() { kernels::cuda::set_attention_decode_config(saved_); }
  ConfigScope(const ConfigScope&) = delete;
  ConfigScope& operator=(const ConfigScope&) = delete;

 private:
  AttentionDecodeConfig saved_;
};

std::string config_name(const AttentionDecodeConfig& c) {
  if (c.kernel == AttentionDecodeConfig::kAuto) return "auto";
  if (c.kernel == AttentionDecodeConfig::kSplit) return "split";
  return "cluster " + std::to_string(c.cluster) + " warps " + std::to_string(c.warps) +
         (c.spread > 0 ? " spread" : "");
}

class AttentionCase {
 public:
  AttentionCase(const CacheSetup& s, DType cache_type, std::mt19937& rng) : s_(s), type_(cache_type) {
    const int64_t kv_width = int64_t(s.shape.n_kv_heads) * s.shape.head_dim;
    k_ = random_cpu(cache_type, {s.max_seq, kv_width}, rng);
    v_ = random_cpu(cache_type, {s.max_seq, kv_width}, rng);
  }

  // Checks one batch of query rows at `positions`. Cache rows past the largest position are
  // NaN for the duration, so a kernel that reads beyond a row's keys fails the comparison.
  void check(const std::vector<int32_t>& positions, std::mt19937& rng,
             const std::vector<AttentionDecodeConfig>& configs = {{}}) const {
    const int64_t n = int64_t(positions.size());
    const int64_t q_width = int64_t(s_.shape.n_heads) * s_.shape.head_dim;
    const int32_t last = *std::max_element(positions.begin(), positions.end());
    const Tensor k = poison_after(k_, last), v = poison_after(v_, last);
    const Tensor q = random_cpu(DType::kF32, {n, q_width}, rng, -3.f, 3.f);
    const Tensor pos = ints_cpu(positions);

    const Tensor want(DType::kF32, {n, q_width});
    kernel_registry().attention.find(Device::kCPU, DType::kF32)(q, widened(k), widened(v), pos,
                                                               s_.shape, want, cpu_ctx());
    const Tensor q_d = to_cuda(q), k_d = to_cuda(k), v_d = to_cuda(v), pos_d = to_cuda(pos);
    for (const AttentionDecodeConfig& config : configs) {
      const ConfigScope scope(config);
      const Tensor out = poisoned_cuda(DType::kF32, {n, q_width});
      kernel_registry().attention.find(Device::kCUDA, type_)(q_d, k_d, v_d, pos_d, s_.shape, out,
                                                            cuda_ctx());
      EXPECT_LT(max_rel_diff(to_cpu(out), want), 2e-5f)
          << dtype_name(type_) << " heads " << s_.shape.n_heads << "/" << s_.shape.n_kv_heads
          << " head_dim " << s_.shape.head_dim << " max_seq " << s_.max_seq << " n " << n
          << " last position " << last << " config " << config_name(config);
    }
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
  const std::vector<AttentionDecodeConfig> configs = decode_configs();
  for (const CacheSetup& s : kSetups) {
    const AttentionCase c(s, DType::kF32, rng);
    const int32_t last = int32_t(s.max_seq - 1);
    // Around the 32-key slabs and split boundaries, mid-way, 2048 keys and the cache's end.
    for (int32_t p : {0, 1, 31, 32, 33, 100, 511, 512, last / 2, 2047, last})
      if (p <= last) c.check({p}, rng, configs);
  }
}

TEST(CudaAttention, SixteenBitDecodingMatchesCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(95);
  const std::vector<AttentionDecodeConfig> configs = decode_configs();
  for (DType type : {DType::kF16, DType::kBF16}) {
    for (const CacheSetup& s : {kSetups[0], kSetups[2], kSetups[3], kSetups[5]}) {
      const AttentionCase c(s, type, rng);
      for (int32_t p : {0, 33, 512, int32_t(s.max_seq - 1)}) c.check({p}, rng, configs);
    }
  }
}

TEST(CudaAttention, FewRowsMatchCpu) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(96);
  const std::vector<AttentionDecodeConfig> configs = decode_configs();
  for (const CacheSetup& s : {kSetups[0], kSetups[3], kSetups[6]}) {
    const AttentionCase c(s, DType::kF32, rng);
    // Rows of one small batch at different lengths (one cluster a row and KV head).
    c.check({5, 0, int32_t(s.max_seq - 1), 64}, rng, configs);
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
    for (const AttentionDecodeConfig& config : decode_configs()) {
      const ConfigScope scope(config);
      const Tensor out = poisoned_cuda(DType::kF32, {n, 256});
      kernel_registry().attention.find(Device::kCUDA, DType::kF32)(
          q, k, v, to_cuda(ints_cpu(pos)), shape, out, cuda_ctx());
      const Tensor host = to_cpu(out);
      for (int64_t i = 0; i < n; ++i) {
        const bool valid = pos[size_t(i)] >= 0 && pos[size_t(i)] < 64;
        for (int64_t d = 0; d < 256; ++d)
          EXPECT_EQ(std::isnan(host.span<float>()[i * 256 + d]), !valid)
              << "row " << i << " config " << config_name(config);
      }
    }
  }
}

}  // namespace
}  // namespace kuiper::test
