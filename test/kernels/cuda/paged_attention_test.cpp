// kernels/cuda/attention.cu's paged attention (decode rows and short chunks on the split and
// cluster kernels, prefill chunks of 16-bit caches on kernels/cuda/paged_prefill.cu's tensor
// cores) and rope_store.cu's paged store: against the float64 reference on random block tables
// (test/kernels/paged_batch.h: shuffled blocks, NaN wherever no sequence's keys are), GQA 1-8,
// head_dim 48/64/128, blocks of 16 and 32, fp32/fp16/bf16 caches.
#include <string>

#include "kernels/cuda/attention.h"
#include "kuiper/model/rope_table.h"
#include "test/kernels/cuda/cuda_test_util.h"
#include "test/kernels/cuda/input_codes.h"
#include "test/kernels/paged_batch.h"
#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

using kernels::AttentionShape;
using kernels::cuda::AttentionDecodeConfig;

kernels::BatchRows rows_to_cuda(const kernels::BatchRows& r) {
  return {to_cuda(r.positions), to_cuda(r.slots),        to_cuda(r.row_seqs),
          to_cuda(r.seq_starts), to_cuda(r.block_tables), r.max_positions};
}
kernels::PagedCache cache_to_cuda(const kernels::PagedCache& c) {
  return {to_cuda(c.k), to_cuda(c.v), c.block_size};
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

// The CUDA kernel's output for batch b.
Tensor cuda_attention(const PagedBatch& b, const AttentionShape& shape, DType type) {
  const Tensor out = poisoned_cuda(DType::kF32, b.q.shape());
  kernel_registry().paged_attention.find(Device::kCUDA, type)(
      to_cuda(b.q), cache_to_cuda(b.cache), rows_to_cuda(b.rows), shape, out, Tensor(),
      cuda_ctx());
  return to_cpu(out);
}

// GQA ratios 1, 3, 2, 8, 8, 7 and 4.
const AttentionShape kShapes[] = {{4, 4, 64},  {6, 2, 48},  {8, 4, 128}, {8, 1, 128},
                                  {16, 2, 64}, {28, 4, 64}, {16, 4, 128}};

std::string describe(const AttentionShape& s, int bs, DType t) {
  return std::string(dtype_name(t)) + " heads " + std::to_string(s.n_heads) + "/" +
         std::to_string(s.n_kv_heads) + " head_dim " + std::to_string(s.head_dim) + " block " +
         std::to_string(bs);
}

// Decode rows only, each at a different length (two of them long enough to split across many
// blocks): the CUDA-core kernels, whose 16-bit loads widen exactly, so every dtype matches the
// reference to fp32 rounding; every decoding configuration.
TEST(CudaPagedAttention, DecodeRowsMatchReference) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(201);
  const std::vector<AttentionDecodeConfig> configs = {
      {}, {AttentionDecodeConfig::kSplit, 0, 0, -1}, {AttentionDecodeConfig::kCluster, 4, 8, 0},
      {AttentionDecodeConfig::kCluster, 16, 8, 1}, {AttentionDecodeConfig::kCluster, 1, 16, 0},
      {AttentionDecodeConfig::kCluster, 1, 8, 0, 32}, {AttentionDecodeConfig::kCluster, 1, 4, 0, 64}};
  for (const AttentionShape& shape : kShapes)
    for (int bs : {16, 32})
      for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
        const PagedBatch b({{0, 1}, {bs - 1, 1}, {bs, 1}, {100, 1}, {1500, 1}, {2047, 1}}, shape,
                           bs, type, rng);
        const Tensor want = reference::paged_attention(b.q, b.cache, b.rows, shape);
        for (const AttentionDecodeConfig& config : configs) {
          const ConfigScope scope(config);
          EXPECT_LT(max_rel_diff(cuda_attention(b, shape, type), want), 1e-4f)
              << describe(shape, bs, type) << " config kernel " << config.kernel << " cluster "
              << config.cluster;
        }
      }
}

// Tolerance of the tensor-core kernel (queries and probabilities rounded to the cache's type),
// as scaled_diff.
float tensor_core_tolerance(DType type) { return type == DType::kF16 ? 3e-3f : 2e-2f; }

// One decoding row also gives its output's codes for wo's GEMV (kernels.h: PagedAttentionFn):
// the cluster kernel's merge writes them where its slices are whole blocks of 8, a kernel of
// their own elsewhere (the split and tensor-core kernels, slices of other widths). They are
// exactly the host's codes of the output the launch wrote, NaN scales for a row past the cache.
TEST(CudaPagedAttention, OneDecodeRowWritesOutputCodes) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(207);
  std::vector<AttentionDecodeConfig> configs = {
      {}, {AttentionDecodeConfig::kSplit, 0, 0, -1}, {AttentionDecodeConfig::kCluster, 4, 8, 0},
      {AttentionDecodeConfig::kCluster, 16, 8, 1}, {AttentionDecodeConfig::kCluster, 1, 4, 0}};
  configs.emplace_back().tensor_cores = 1;
  for (const AttentionShape& shape : kShapes)
    for (DType type : {DType::kF32, DType::kF16})
      for (int length : {1, 100, 1500})
        for (const AttentionDecodeConfig& config : configs) {
          const ConfigScope scope(config);
          const PagedBatch b({{length - 1, 1}}, shape, 16, type, rng);
          const int64_t width = b.q.dim(1);
          const Tensor out = poisoned_cuda(DType::kF32, b.q.shape());
          const Tensor codes = poisoned_cuda(DType::kI8, {kernels::input_codes_bytes(width)});
          kernel_registry().paged_attention.find(Device::kCUDA, type)(
              to_cuda(b.q), cache_to_cuda(b.cache), rows_to_cuda(b.rows), shape, out, codes,
              cuda_ctx());
          const Tensor got = to_cpu(out);
          const std::string what = describe(shape, 16, type) + " keys " + std::to_string(length) +
                                   " config kernel " + std::to_string(config.kernel) +
                                   " cluster " + std::to_string(config.cluster) +
                                   " tensor cores " + std::to_string(config.tensor_cores);
          const Tensor want = reference::paged_attention(b.q, b.cache, b.rows, shape);
          if (config.tensor_cores == 1 && type != DType::kF32)
            EXPECT_LT(scaled_diff(got, want), tensor_core_tolerance(type)) << what;
          else
            EXPECT_LT(max_rel_diff(got, want), 1e-4f) << what;
          EXPECT_EQ(codes_differences(to_cpu(codes), input_codes(got.span<float>()), width), 0)
              << what << ": bytes of the codes that differ";
        }
  // Past the cache: NaN outputs, and NaN scales so that wo's output is NaN too.
  const AttentionShape shape{8, 2, 64};
  for (const AttentionDecodeConfig& config : configs) {
    const ConfigScope scope(config);
    const PagedBatch b({{40, 1}}, shape, 16, DType::kF16, rng);
    b.rows.positions.span<int32_t>()[0] = int32_t(b.rows.block_tables.dim(1) * 16);
    const int64_t width = b.q.dim(1);
    const Tensor codes = poisoned_cuda(DType::kI8, {kernels::input_codes_bytes(width)});
    kernel_registry().paged_attention.find(Device::kCUDA, DType::kF16)(
        to_cuda(b.q), cache_to_cuda(b.cache), rows_to_cuda(b.rows), shape,
        poisoned_cuda(DType::kF32, b.q.shape()), codes, cuda_ctx());
    const Tensor host = to_cpu(codes);
    const auto* scales =  // after the codes (kernels.h: input_codes_bytes)
        reinterpret_cast<const float*>(static_cast<const int8_t*>(host.raw_data()) + width);
    for (int64_t i = 0; i < width / kernels::kInputCodeBlock; ++i)
      EXPECT_TRUE(std::isnan(scales[i])) << "kernel " << config.kernel << " block " << i;
  }
}

// A batch of 80 decoding sequences (a serving step): enough (row, KV head) pairs for the
// many-rows plans: on 16-bit caches the tensor-core kernel (the default) or
// the cluster kernel (small stages, one block a pair), on fp32 ones the tiled kernel; random
// lengths up to 700 keys, so that rows take several rounds.
TEST(CudaPagedAttention, ManyDecodeRowsMatchReference) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(205);
  std::uniform_int_distribution<int> length(0, 700);
  std::vector<SeqSpec> seqs;
  for (int i = 0; i < 80; ++i) seqs.push_back({length(rng), 1});
  for (const AttentionShape& shape : kShapes)
    for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
      const PagedBatch b(seqs, shape, 16, type, rng);
      const Tensor want = reference::paged_attention(b.q, b.cache, b.rows, shape);
      for (int tensor_cores : {0, 1}) {
        AttentionDecodeConfig config;
        config.tensor_cores = tensor_cores;
        const ConfigScope scope(config);
        const Tensor got = cuda_attention(b, shape, type);
        if (tensor_cores == 0 || type == DType::kF32)
          EXPECT_LT(max_rel_diff(got, want), 1e-4f) << describe(shape, 16, type);
        else
          EXPECT_LT(scaled_diff(got, want), tensor_core_tolerance(type))
              << describe(shape, 16, type) << " tensor cores";
      }
    }
}

// Few decode rows forced onto the tensor-core kernel: lengths at block
// boundaries and long contexts (up to 2048 keys, 32 tiles walked by one block).
TEST(CudaPagedAttention, DecodeRowsOnTensorCoresMatchReference) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(206);
  AttentionDecodeConfig config;
  config.tensor_cores = 1;
  const ConfigScope scope(config);
  for (const AttentionShape& shape : kShapes)
    for (int bs : {16, 32})
      for (DType type : {DType::kF16, DType::kBF16}) {
        const PagedBatch b({{0, 1}, {bs - 1, 1}, {bs, 1}, {100, 1}, {1500, 1}, {2047, 1}}, shape,
                           bs, type, rng);
        EXPECT_LT(scaled_diff(cuda_attention(b, shape, type),
                              reference::paged_attention(b.q, b.cache, b.rows, shape)),
                  tensor_core_tolerance(type))
            << describe(shape, bs, type);
      }
}

// Decode rows and prefill chunks in one batch: fp32 chunks on the CUDA-core kernel, 16-bit ones
// on the tensor cores (queries and probabilities rounded to the cache's type).
TEST(CudaPagedAttention, MixedBatchMatchesReference) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(202);
  for (const AttentionShape& shape : kShapes)
    for (int bs : {16, 32})
      for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
        std::vector<SeqSpec> seqs = mixed_batch(bs);
        seqs.push_back({300, 130});  // a chunk of several query tiles after a long context
        seqs.push_back({0, 7});      // one row short of a chunk: the CUDA-core kernel's
        const PagedBatch b(seqs, shape, bs, type, rng);
        const float tolerance = type == DType::kF32 ? 1e-4f : tensor_core_tolerance(type);
        const Tensor want = reference::paged_attention(b.q, b.cache, b.rows, shape);
        // By default the other rows go to the tensor cores too where the batch's rows x KV
        // heads are many; forced, in every shape; short rows in blocks of 2 and of 4 warps.
        for (int tensor_cores : {-1, 1})
          for (int short_warps : {2, 4}) {
            AttentionDecodeConfig config;
            config.tensor_cores = tensor_cores;
            config.short_warps = short_warps;
            const ConfigScope scope(config);
            EXPECT_LT(scaled_diff(cuda_attention(b, shape, type), want), tolerance)
                << describe(shape, bs, type) << " tensor cores " << tensor_cores
                << " short rows' warps " << short_warps;
          }
      }
}

// A 512-row prompt from position 0 (the prefill benchmark's shape), one sequence.
TEST(CudaPagedAttention, LongPrefillMatchesReference) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(203);
  const AttentionShape shape{8, 1, 128};
  for (DType type : {DType::kF16, DType::kBF16}) {
    const PagedBatch b({{0, 512}}, shape, 16, type, rng);
    EXPECT_LT(scaled_diff(cuda_attention(b, shape, type),
                          reference::paged_attention(b.q, b.cache, b.rows, shape)),
              tensor_core_tolerance(type))
        << dtype_name(type);
  }
}

// A row past its block table cannot throw on the device: its output is NaN, the others are not.
TEST(CudaPagedAttention, RowPastItsBlockTableGivesNaN) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(204);
  const AttentionShape shape{4, 2, 64};
  for (DType type : {DType::kF32, DType::kF16}) {
    for (const std::vector<SeqSpec>& seqs :
         {std::vector<SeqSpec>{{5, 1}, {40, 1}}, std::vector<SeqSpec>{{5, 1}, {40, 9}}}) {
      const PagedBatch b(seqs, shape, 16, type, rng);
      const int64_t n = b.q.dim(0), bad = n - 1, width = b.q.dim(1);
      b.rows.positions.span<int32_t>()[bad] = int32_t(b.rows.block_tables.dim(1) * 16);
      const Tensor out = cuda_attention(b, shape, type);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t d = 0; d < width; ++d)
          EXPECT_EQ(std::isnan(out.span<float>()[i * width + d]), i == bad)
              << dtype_name(type) << " row " << i << " of " << n;
    }
  }
}

TEST(CudaPagedRopeStore, MatchesTheCpuKernel) {
  KUIPER_REQUIRE_CUDA();
  const AttentionShape shape{6, 2, 48};
  ModelConfig c;
  c.head_dim = shape.head_dim;
  const Tensor table = make_rope_table(c, 256);
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
    std::mt19937 rng(205);
    const PagedBatch b({{0, 7}, {30, 1}, {100, 5}}, shape, 16, type, rng);
    const int64_t n = b.q.dim(0), kw = b.cache.k.dim(1);
    const Tensor k = random_cpu(DType::kF32, {n, kw}, rng), v = random_cpu(DType::kF32, {n, kw}, rng);
    const kernels::PagedCache cache = cache_to_cuda(b.cache);
    const Tensor q = to_cuda(b.q);
    kernel_registry().paged_rope_store.find(Device::kCUDA, type)(
        q, to_cuda(k), to_cuda(v), rows_to_cuda(b.rows), to_cuda(table), shape.head_dim, cache,
        cuda_ctx());
    kernel_registry().paged_rope_store.find(Device::kCPU, type)(b.q, k, v, b.rows, table,
                                                                shape.head_dim, b.cache, cpu_ctx());
    EXPECT_LT(max_rel_diff(to_cpu(q), b.q), 1e-6f) << dtype_name(type);
    // Every cache row: the stored ones match, the others are left as they were (NaN or keys).
    const Tensor k_got = to_cpu(cache.k), v_got = to_cpu(cache.v);
    for (int64_t r = 0; r < k_got.dim(0); ++r) {
      const bool nan = std::isnan(element(b.cache.k, r * kw));
      if (nan) {
        EXPECT_TRUE(std::isnan(element(k_got, r * kw))) << "row " << r;
        continue;
      }
      // The rotation may round differently (FMA contraction): one ulp of the cache's type.
      const float ulp = type == DType::kF32 ? 1e-6f : type == DType::kF16 ? 1e-3f : 8e-3f;
      EXPECT_LT(max_rel_diff(k_got.rows(r, r + 1), b.cache.k.rows(r, r + 1)), ulp) << "row " << r;
      EXPECT_EQ(max_rel_diff(v_got.rows(r, r + 1), b.cache.v.rows(r, r + 1)), 0.f) << "row " << r;
    }
  }
}

TEST(CudaPagedRopeStore, SlotOutsideTheCacheStoresNothingAndGivesNaN) {
  KUIPER_REQUIRE_CUDA();
  const AttentionShape shape{4, 2, 64};
  ModelConfig c;
  c.head_dim = shape.head_dim;
  const Tensor table = make_rope_table(c, 64);
  std::mt19937 rng(206);
  const PagedBatch b({{3, 2}}, shape, 16, DType::kF32, rng);
  b.rows.slots.span<int32_t>()[1] = int32_t(b.cache.k.dim(0));
  const kernels::PagedCache cache = cache_to_cuda(b.cache);
  const Tensor q = to_cuda(b.q);
  kernel_registry().paged_rope_store.find(Device::kCUDA, DType::kF32)(
      q, to_cuda(random_cpu(DType::kF32, {2, 128}, rng)),
      to_cuda(random_cpu(DType::kF32, {2, 128}, rng)), rows_to_cuda(b.rows), to_cuda(table), 64,
      cache, cuda_ctx());
  const Tensor q_got = to_cpu(q);
  for (int64_t d = 0; d < 256; ++d) {
    EXPECT_FALSE(std::isnan(q_got.span<float>()[d]));
    EXPECT_TRUE(std::isnan(q_got.span<float>()[256 + d]));
  }
}

}  // namespace
}  // namespace kuiper::test
