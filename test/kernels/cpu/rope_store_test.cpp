#include "kuiper/model/rope_table.h"
#include "test/kernels/reference.h"

namespace kuiper::test {
namespace {

TEST(CpuRopeStore, RotatesQueriesAndStoresRotatedKeysAndValues) {
  for (const int head_dim : {48, 64}) {
    ModelConfig c;
    c.head_dim = head_dim;
    const Tensor table = make_rope_table(c, 64);
    std::mt19937 rng(head_dim);
    const int64_t n = 5, q_width = 6 * head_dim, kv_width = 2 * head_dim;
    Tensor q(DType::kF32, {n, q_width}), k(DType::kF32, {n, kv_width}), v(DType::kF32, {n, kv_width});
    Tensor k_cache(DType::kF32, {64, kv_width}), v_cache(DType::kF32, {64, kv_width});
    Tensor positions(DType::kI32, {n});
    for (const Tensor* t : {&q, &k, &v, &k_cache, &v_cache}) fill_uniform(*t, rng);
    for (int i = 0; i < n; ++i) positions.span<int32_t>()[i] = 3 + 11 * i;
    const Tensor q_expected = reference::rope(q, positions, table, head_dim);
    const Tensor k_expected = reference::rope(k, positions, table, head_dim);
    kernels::registry().rope_store.find(Device::kCPU, DType::kF32)(
        q, k, v, positions, table, head_dim, k_cache, v_cache, DeviceContext::cpu());
    EXPECT_LT(max_rel_diff(q, q_expected), 1e-5);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t p = positions.span<int32_t>()[i];
      EXPECT_LT(max_rel_diff(k_cache.rows(p, p + 1), k_expected.rows(i, i + 1)), 1e-5);
      EXPECT_EQ(max_rel_diff(v_cache.rows(p, p + 1), v.rows(i, i + 1)), 0.f);
    }
  }
}

TEST(CpuRopeStore, PositionZeroIsIdentity) {
  ModelConfig c;
  c.head_dim = 64;
  const Tensor table = make_rope_table(c, 4);
  std::mt19937 rng(4);
  Tensor q(DType::kF32, {1, 128}), k(DType::kF32, {1, 64}), v(DType::kF32, {1, 64});
  Tensor k_cache(DType::kF32, {4, 64}), v_cache(DType::kF32, {4, 64}), positions(DType::kI32, {1});
  for (const Tensor* t : {&q, &k, &v}) fill_uniform(*t, rng);
  positions.span<int32_t>()[0] = 0;
  const Tensor before = q.to(Device::kCPU);
  kernels::registry().rope_store.find(Device::kCPU, DType::kF32)(
      q, k, v, positions, table, 64, k_cache, v_cache, DeviceContext::cpu());
  EXPECT_EQ(max_rel_diff(q, before), 0.f);
  EXPECT_EQ(max_rel_diff(k_cache.rows(0, 1), k), 0.f);
}

}  // namespace
}  // namespace kuiper::test
