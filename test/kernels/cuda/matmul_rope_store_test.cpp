// kernels/cuda/matmul.cu's matmul_rope_store (the q/k/v projection with the rotation and the
// cache stores folded into the GEMV's epilogue) against the same projection followed by
// paged_rope_store: every GEMV variant (those whose blocks take whole pairs of rows fold it,
// the others fall back), float, int8, q4 and ggml weights, input codes, biases, the three cache
// types, n > 1, and a slot outside the cache (NaN queries, nothing stored).
#include <cmath>

#include "kernels/cuda/gemv.h"
#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

constexpr int kHeadDim = 64, kBlockSize = 16, kBlocks = 8;

Tensor rope_table(int64_t max_seq) {
  Tensor t(DType::kF32, {max_seq, kHeadDim / 2, 2});
  auto v = t.span<float>();
  for (int64_t p = 0; p < max_seq; ++p)
    for (int j = 0; j < kHeadDim / 2; ++j) {
      const double angle = double(p) * std::pow(10000.0, -2.0 * j / kHeadDim);
      v[(p * kHeadDim / 2 + j) * 2] = float(std::cos(angle));
      v[(p * kHeadDim / 2 + j) * 2 + 1] = float(std::sin(angle));
    }
  return t;
}

// Rows at `positions` of one sequence whose blocks the table scatters over the cache.
kernels::BatchRows batch_rows(const std::vector<int32_t>& positions, int64_t max_seq) {
  const std::vector<int32_t> table = {3, 1, 4, 0, 5, 2, 7, 6};
  std::vector<int32_t> slots, seqs(positions.size(), 0);
  for (int32_t p : positions)
    slots.push_back(p < 0 ? -1 : table[size_t(p / kBlockSize)] * kBlockSize + p % kBlockSize);
  return {to_cuda(ints_cpu(positions)), to_cuda(ints_cpu(slots)), to_cuda(ints_cpu(seqs)),
          to_cuda(ints_cpu({0, int32_t(positions.size())})),
          to_cuda(ints_cpu(table).reshape({1, kBlocks})), int(max_seq)};
}

struct Case {
  DType dtype;
  int64_t group;
  bool codes;  // the input comes as codes (int8, q4)
};

// Both sides run the same GEMV variant on the same input (its codes too, where given), so q,
// k and v agree before the rotation; the caches start random, so a store to a wrong row shows.
TEST(CudaMatmulRopeStore, FoldedMatchesProjectionThenRopeStore) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(71);
  const int64_t in = 256, heads = 6, kv_heads = 2, max_seq = kBlocks * kBlockSize;
  const Tensor table = to_cuda(rope_table(max_seq));
  const int variants = int(kernels::cuda::gemv_variants().size());
  const auto& r = kernel_registry();
  for (const Case c : {Case{DType::kF32, 0, false}, Case{DType::kF16, 0, false},
                       Case{DType::kBF16, 0, false}, Case{DType::kI8, 64, false},
                       Case{DType::kI8, 64, true}, Case{DType::kQ4, 32, true},
                       Case{DType::kQ8_0, 0, false}})
    for (DType cache_type : {DType::kF32, DType::kF16, DType::kBF16})
      for (int v = 0; v < variants; ++v) {
        std::vector<Weight> w;
        std::vector<Tensor> bias;
        for (int64_t rows : {heads * kHeadDim, kv_heads * kHeadDim, kv_heads * kHeadDim}) {
          w.push_back(to_cuda(random_weight(c.dtype, rows, in, rng, c.group, DType::kF16)));
          bias.push_back(to_cuda(random_cpu(DType::kF32, {rows}, rng)));
        }
        const Tensor x = to_cuda(random_cpu(DType::kF32, {1, in}, rng));
        const Tensor norm = to_cuda(random_cpu(DType::kF32, {in}, rng, 0.5f, 1.5f));
        MatmulInput input{x, norm, 1e-5f};
        if (c.codes) {  // x's codes, written by a residual GEMV as the model's wo writes them
          const Tensor codes = poisoned_cuda(DType::kI8, {kernels::input_codes_bytes(in)});
          const Tensor y = to_cuda(random_cpu(DType::kF32, {1, in}, rng));
          const Weight wx = to_cuda(random_weight(DType::kI8, in, in, rng, 64, DType::kF16));
          const MatmulOutput out{wx, Tensor(), y, codes, norm};
          const Tensor h = to_cuda(random_cpu(DType::kF32, {1, in}, rng));
          kernels::cuda::gemv_with_variant(5, plain(h), {&out, 1}, true, cuda_ctx());
          input = {y, norm, 1e-5f, codes};
        }
        const int32_t pos = 37;  // block 2 of the table: cache block 4
        const kernels::BatchRows rows = batch_rows({pos}, max_seq);
        const Tensor k_start = random_cpu(cache_type, {max_seq, kv_heads * kHeadDim}, rng);
        const Tensor v_start = random_cpu(cache_type, {max_seq, kv_heads * kHeadDim}, rng);
        // The reference: the same variant's projection, then paged_rope_store.
        std::vector<Tensor> want_y, got_y;
        std::vector<MatmulOutput> want_outs, got_outs;
        for (size_t j = 0; j < 3; ++j) {
          want_y.push_back(poisoned_cuda(DType::kF32, {1, w[j].rows()}));
          got_y.push_back(poisoned_cuda(DType::kF32, {1, w[j].rows()}));
          want_outs.push_back({w[j], bias[j], want_y[j]});
          got_outs.push_back({w[j], bias[j], got_y[j]});
        }
        const kernels::PagedCache want_cache{to_cuda(k_start), to_cuda(v_start), kBlockSize};
        kernels::cuda::gemv_with_variant(v, input, want_outs, false, cuda_ctx());
        r.paged_rope_store.find(Device::kCUDA, cache_type)(want_y[0], want_y[1], want_y[2], rows,
                                                           table, kHeadDim, want_cache, cuda_ctx());
        const kernels::PagedCache got_cache{to_cuda(k_start), to_cuda(v_start), kBlockSize};
        kernels::cuda::gemv_rope_store_with_variant(v, input, got_outs,
                                                    {rows, table, kHeadDim, got_cache}, cuda_ctx());
        const std::string what = std::string(dtype_name(c.dtype)) + (c.codes ? " codes, " : ", ") +
                                 std::string(dtype_name(cache_type)) + " cache, variant " +
                                 std::to_string(v);
        // The rotation's products may fuse differently in the two kernels: a last-bit difference,
        // which a 16-bit cache may round to neighbouring values.
        const float k_tolerance = cache_type == DType::kF32   ? 1e-6f
                                  : cache_type == DType::kF16 ? 1e-3f
                                                              : 8e-3f;
        EXPECT_LT(max_rel_diff(to_cpu(got_y[0]), to_cpu(want_y[0])), 1e-6f) << what;
        EXPECT_LT(max_rel_diff(widened(to_cpu(got_cache.k)), widened(to_cpu(want_cache.k))),
                  k_tolerance)
            << what;
        EXPECT_EQ(max_rel_diff(widened(to_cpu(got_cache.v)), widened(to_cpu(want_cache.v))), 0.f)
            << what;
      }
}

// Several rows (prefill) take the GEMMs and then paged_rope_store; a slot outside the cache
// (or a negative position) in a decoding row gives NaN queries and stores nothing.
TEST(CudaMatmulRopeStore, PrefillRowsAndBadSlots) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(72);
  const int64_t in = 128, max_seq = kBlocks * kBlockSize;
  const Tensor table = to_cuda(rope_table(max_seq));
  const auto& r = kernel_registry();
  for (const int64_t n : {int64_t(1), int64_t(5)}) {
    std::vector<Weight> w;
    for (int j = 0; j < 3; ++j)
      w.push_back(to_cuda(random_weight(DType::kI8, kHeadDim * (j == 0 ? 2 : 1), in, rng, 32,
                                        DType::kF16)));
    const Tensor x = to_cuda(random_cpu(DType::kF32, {n, in}, rng));
    std::vector<Tensor> want_y, got_y;
    std::vector<MatmulOutput> want_outs, got_outs;
    for (size_t j = 0; j < 3; ++j) {
      want_y.push_back(poisoned_cuda(DType::kF32, {n, w[j].rows()}));
      got_y.push_back(poisoned_cuda(DType::kF32, {n, w[j].rows()}));
      want_outs.push_back({w[j], Tensor(), want_y[j]});
      got_outs.push_back({w[j], Tensor(), got_y[j]});
    }
    std::vector<int32_t> positions;
    for (int64_t i = 0; i < n; ++i) positions.push_back(int32_t(20 + i));
    const kernels::BatchRows rows = batch_rows(positions, max_seq);
    const Tensor start = random_cpu(DType::kF16, {max_seq, kHeadDim}, rng);
    const kernels::PagedCache want_cache{to_cuda(start), to_cuda(start), kBlockSize};
    const kernels::PagedCache got_cache{to_cuda(start), to_cuda(start), kBlockSize};
    r.matmul.find(Device::kCUDA, DType::kI8)(plain(x), want_outs, false, cuda_ctx());
    r.paged_rope_store.find(Device::kCUDA, DType::kF16)(want_y[0], want_y[1], want_y[2], rows,
                                                        table, kHeadDim, want_cache, cuda_ctx());
    r.matmul_rope_store.find(Device::kCUDA, DType::kI8)(plain(x), got_outs,
                                                        {rows, table, kHeadDim, got_cache},
                                                        cuda_ctx());
    EXPECT_LT(max_rel_diff(to_cpu(got_y[0]), to_cpu(want_y[0])), 1e-6f) << n << " rows";
    EXPECT_LT(max_rel_diff(widened(to_cpu(got_cache.k)), widened(to_cpu(want_cache.k))), 1e-3f)
        << n << " rows";
    EXPECT_EQ(max_rel_diff(widened(to_cpu(got_cache.v)), widened(to_cpu(want_cache.v))), 0.f)
        << n << " rows";
  }
  // One decoding row whose slot lies past the cache, then one at a negative position.
  std::vector<Weight> w;
  std::vector<MatmulOutput> outs;
  for (int j = 0; j < 3; ++j) {
    w.push_back(to_cuda(random_weight(DType::kQ4, kHeadDim, in, rng, 32, DType::kF16)));
    outs.push_back({w.back(), Tensor(), poisoned_cuda(DType::kF32, {1, kHeadDim})});
  }
  const Tensor x = to_cuda(random_cpu(DType::kF32, {1, in}, rng));
  const Tensor start = random_cpu(DType::kF32, {max_seq, kHeadDim}, rng);
  for (const bool past_the_cache : {true, false}) {
    kernels::BatchRows rows = batch_rows({past_the_cache ? 3 : -1}, max_seq);
    if (past_the_cache) rows.slots = to_cuda(ints_cpu({int32_t(max_seq)}));
    const kernels::PagedCache cache{to_cuda(start), to_cuda(start), kBlockSize};
    r.matmul_rope_store.find(Device::kCUDA, DType::kQ4)(plain(x), outs,
                                                        {rows, table, kHeadDim, cache}, cuda_ctx());
    const Tensor q = to_cpu(outs[0].y);
    for (int64_t d = 0; d < kHeadDim; ++d) EXPECT_TRUE(std::isnan(q.span<float>()[d])) << d;
    EXPECT_EQ(max_rel_diff(to_cpu(cache.k), start), 0.f);
    EXPECT_EQ(max_rel_diff(to_cpu(cache.v), start), 0.f);
  }
}

TEST(CudaMatmulRopeStore, RejectsWhatIsNotQKV) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(73);
  const int64_t max_seq = kBlocks * kBlockSize;
  const Tensor table = to_cuda(rope_table(max_seq));
  const kernels::BatchRows rows = batch_rows({5}, max_seq);
  const Tensor cache_k(DType::kF32, {max_seq, kHeadDim}, Device::kCUDA);
  const kernels::PagedCache cache{cache_k, cache_k, kBlockSize};
  const Weight w = to_cuda(random_weight(DType::kF16, kHeadDim, 64, rng));
  const Tensor x = to_cuda(random_cpu(DType::kF32, {1, 64}, rng));
  const auto fn = kernel_registry().matmul_rope_store.find(Device::kCUDA, DType::kF16);
  const Tensor y(DType::kF32, {1, kHeadDim}, Device::kCUDA);
  const std::vector<MatmulOutput> two = {{w, Tensor(), y}, {w, Tensor(), y}};
  EXPECT_THROW(fn(plain(x), two, {rows, table, kHeadDim, cache}, cuda_ctx()), Error);
  const Tensor wide(DType::kF32, {1, 2 * kHeadDim}, Device::kCUDA);
  const Weight w_wide = to_cuda(random_weight(DType::kF16, 2 * kHeadDim, 64, rng));
  // k wider than the cache's rows
  const std::vector<MatmulOutput> bad_k = {
      {w, Tensor(), y}, {w_wide, Tensor(), wide}, {w_wide, Tensor(), wide}};
  EXPECT_THROW(fn(plain(x), bad_k, {rows, table, kHeadDim, cache}, cuda_ctx()), Error);
  const Tensor k(DType::kF32, {1, kHeadDim}, Device::kCUDA), v(DType::kF32, {1, kHeadDim},
                                                                Device::kCUDA);
  const std::vector<MatmulOutput> good = {{w, Tensor(), y}, {w, Tensor(), k}, {w, Tensor(), v}};
  EXPECT_NO_THROW(fn(plain(x), good, {rows, table, kHeadDim, cache}, cuda_ctx()));
}

}  // namespace
}  // namespace kuiper::test
