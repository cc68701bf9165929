// kernels/cpu/attention.cpp's paged attention and rope_store.cpp's paged store: against the
// float64 reference on random block tables (decode rows and prefill chunks in one batch), GQA
// 1-8, head_dim 48/64/128, blocks of 16 and 32, fp32/fp16/bf16 caches; the fp32 cache bit for
// bit like the contiguous kernel; bad rows refused.
#include <string>

#include "kuiper/model/rope_table.h"
#include "test/kernels/paged_batch.h"
#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

using kernels::AttentionShape;

struct PagedCase {
  AttentionShape shape;
  int block_size;
  DType cache_type;
};

std::string case_name(const ::testing::TestParamInfo<PagedCase>& info) {
  const PagedCase& c = info.param;
  return std::to_string(c.shape.n_heads) + "x" + std::to_string(c.shape.n_kv_heads) + "_d" +
         std::to_string(c.shape.head_dim) + "_b" + std::to_string(c.block_size) + "_" +
         std::string(dtype_name(c.cache_type));
}

std::vector<PagedCase> cases() {
  std::vector<PagedCase> all;
  for (const AttentionShape& shape :
       {AttentionShape{4, 4, 64}, AttentionShape{6, 2, 48}, AttentionShape{8, 4, 128},
        AttentionShape{8, 1, 128}, AttentionShape{16, 2, 64}, AttentionShape{16, 4, 128}})
    for (int bs : {16, 32})
      for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) all.push_back({shape, bs, t});
  return all;
}

class CpuPagedAttention : public ::testing::TestWithParam<PagedCase> {};

TEST_P(CpuPagedAttention, MatchesReference) {
  const auto& [shape, bs, type] = GetParam();
  std::mt19937 rng(uint32_t(shape.n_heads * 100 + shape.head_dim + bs));
  const PagedBatch b(mixed_batch(bs), shape, bs, type, rng);
  const Tensor out(DType::kF32, b.q.shape());
  kernels::registry().paged_attention.find(Device::kCPU, type)(b.q, b.cache, b.rows, shape, out,
                                                               Tensor(), DeviceContext::cpu());
  // 16-bit caches widen exactly, so every dtype is fp32 arithmetic on the reference's values.
  EXPECT_LT(max_rel_diff(out, reference::paged_attention(b.q, b.cache, b.rows, shape)), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuPagedAttention, ::testing::ValuesIn(cases()), case_name);

// The fp32 paged kernel does what the contiguous one does, in the same order: the same bits.
TEST(CpuPagedAttentionFp32, SameBitsAsContiguousAttention) {
  const AttentionShape shape{6, 2, 48};
  std::mt19937 rng(7);
  const PagedBatch b(mixed_batch(16), shape, 16, DType::kF32, rng);
  const auto& rows = b.rows;
  const Tensor paged(DType::kF32, b.q.shape());
  kernels::registry().paged_attention.find(Device::kCPU, DType::kF32)(b.q, b.cache, rows, shape,
                                                                      paged, Tensor(),
                                                                      DeviceContext::cpu());
  const int64_t n_seqs = rows.block_tables.dim(0), kw = b.cache.k.dim(1), qw = b.q.dim(1);
  for (int64_t s = 0; s < n_seqs; ++s) {
    const int32_t begin = rows.seq_starts.span<int32_t>()[s];
    const int32_t end = rows.seq_starts.span<int32_t>()[s + 1];
    const int32_t len = rows.positions.span<int32_t>()[end - 1] + 1;
    Tensor k(DType::kF32, {len, kw}), v(DType::kF32, {len, kw});
    for (int32_t t = 0; t < len; ++t) {
      k.rows(t, t + 1).copy_from(b.cache.k.rows(b.cache_row(s, t), b.cache_row(s, t) + 1));
      v.rows(t, t + 1).copy_from(b.cache.v.rows(b.cache_row(s, t), b.cache_row(s, t) + 1));
    }
    const Tensor q = b.q.rows(begin, end), out(DType::kF32, {end - begin, qw});
    kernels::registry().attention.find(Device::kCPU, DType::kF32)(
        q, k, v, rows.positions.rows(begin, end), shape, out, DeviceContext::cpu());
    EXPECT_EQ(max_rel_diff(paged.rows(begin, end), out), 0.f) << "sequence " << s;
  }
}

TEST(CpuPagedAttentionBadRows, PositionPastTheBlockTableOrABadBlockIsRefused) {
  const AttentionShape shape{4, 2, 64};
  std::mt19937 rng(8);
  for (const int what : {0, 1, 2}) {
    const PagedBatch b({{5, 1}, {20, 3}}, shape, 16, DType::kF32, rng);
    const Tensor out(DType::kF32, b.q.shape());
    if (what == 0) b.rows.positions.span<int32_t>()[0] = int32_t(b.rows.block_tables.dim(1) * 16);
    if (what == 1) b.rows.block_tables.span<int32_t>()[0] = int32_t(b.cache.k.dim(0) / 16);
    if (what == 2) b.rows.row_seqs.span<int32_t>()[1] = 2;
    EXPECT_THROW(kernels::registry().paged_attention.find(Device::kCPU, DType::kF32)(
                     b.q, b.cache, b.rows, shape, out, Tensor(), DeviceContext::cpu()),
                 Error)
        << "case " << what;
  }
}

TEST(CpuPagedRopeStore, RotatesQueriesAndStoresAtTheSlots) {
  const AttentionShape shape{6, 2, 48};
  ModelConfig c;
  c.head_dim = shape.head_dim;
  const Tensor table = make_rope_table(c, 256);
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
    std::mt19937 rng(9);
    const PagedBatch b({{0, 7}, {30, 1}, {100, 5}}, shape, 16, type, rng);
    const int64_t n = b.q.dim(0), kw = b.cache.k.dim(1);
    Tensor q(DType::kF32, b.q.shape()), k(DType::kF32, {n, kw}), v(DType::kF32, {n, kw});
    q.copy_from(b.q);
    fill_uniform(k, rng);
    fill_uniform(v, rng);
    const Tensor q_want = reference::rope(q, b.rows.positions, table, shape.head_dim);
    const Tensor k_want = reference::rope(k, b.rows.positions, table, shape.head_dim);
    kernels::registry().paged_rope_store.find(Device::kCPU, type)(
        q, k, v, b.rows, table, shape.head_dim, b.cache, DeviceContext::cpu());
    EXPECT_LT(max_rel_diff(q, q_want), 1e-5);
    const float tolerance = type == DType::kF32 ? 1e-5f : type == DType::kF16 ? 1e-3f : 8e-3f;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t slot = b.rows.slots.span<int32_t>()[i];
      EXPECT_LT(max_rel_diff(b.cache.k.rows(slot, slot + 1), k_want.rows(i, i + 1)), tolerance);
      EXPECT_LT(max_rel_diff(b.cache.v.rows(slot, slot + 1), v.rows(i, i + 1)), tolerance);
    }
  }
}

TEST(CpuPagedRopeStore, SlotOutsideTheCacheIsRefused) {
  const AttentionShape shape{4, 2, 64};
  ModelConfig c;
  c.head_dim = shape.head_dim;
  const Tensor table = make_rope_table(c, 64);
  std::mt19937 rng(10);
  const PagedBatch b({{3, 2}}, shape, 16, DType::kF32, rng);
  Tensor k(DType::kF32, {2, 128}), v(DType::kF32, {2, 128});
  b.rows.slots.span<int32_t>()[1] = int32_t(b.cache.k.dim(0));
  EXPECT_THROW(kernels::registry().paged_rope_store.find(Device::kCPU, DType::kF32)(
                   b.q, k, v, b.rows, table, 64, b.cache, DeviceContext::cpu()),
               Error);
}

}  // namespace
}  // namespace kuiper::test
