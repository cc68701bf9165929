// Rotary embedding of the queries (in place) and keys, and the keys and values appended to the
// cache, in one launch: one thread per pair of adjacent elements of a row, over the row's query
// pairs, key pairs and value pairs (so decoding's single row gets a few blocks, prefill's rows
// many). Rotated keys and the values go straight to the cache row of the position, converted to
// the cache's type (paged caches: to the row's slot); k and v themselves are not changed. The
// position and slot are read on the device, so one launch serves every decoding step of a CUDA
// graph. A position outside the table or the cache, or a slot outside the cache, cannot throw
// there: that row's queries become NaN and nothing is written to the caches.
#include <climits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/paged_batch.h"

namespace kuiper::kernels::cuda {
namespace {

__device__ __forceinline__ float2 rotate(float2 v, float2 cs) {
  return make_float2(v.x * cs.x - v.y * cs.y, v.x * cs.y + v.y * cs.x);
}

__device__ __forceinline__ void store_pair(float* dst, float2 v) {
  *reinterpret_cast<float2*>(dst) = v;
}
__device__ __forceinline__ void store_pair(__half* dst, float2 v) {
  *reinterpret_cast<__half2*>(dst) = __floats2half2_rn(v.x, v.y);
}
__device__ __forceinline__ void store_pair(__nv_bfloat16* dst, float2 v) {
  *reinterpret_cast<__nv_bfloat162*>(dst) = __floats2bfloat162_rn(v.x, v.y);
}

struct RopeStoreParams {
  float2* q;  // [n, q_pairs]
  const float2* k;  // [n, kv_pairs]
  const float2* v;
  const int32_t* positions;
  const int32_t* slots;   // cache row of each row's key and value; null: the position
  const float2* cos_sin;  // [max_pos, half]
  int max_pos;     // rows of the table (and of a contiguous cache: the smaller)
  int cache_rows;  // rows of the cache
  int q_pairs, kv_pairs, half;
  int64_t total;  // n * (q_pairs + 2 * kv_pairs)
};

template <class CT>
__global__ void rope_store_kernel(RopeStoreParams p, CT* k_cache, CT* v_cache) {
  grid_dependency_wait();
  allow_dependent_launch();
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= p.total) return;
  const int units = p.q_pairs + 2 * p.kv_pairs;
  const int64_t row = t / units;
  int u = int(t - row * units);
  const int32_t pos = p.positions[row];
  const int32_t slot = p.slots != nullptr ? p.slots[row] : pos;
  const bool valid = pos >= 0 && pos < p.max_pos && slot >= 0 && slot < p.cache_rows;
  if (u < p.q_pairs) {
    float2* pair = p.q + row * p.q_pairs + u;
    if (!valid) {
      *pair = make_float2(__int_as_float(0x7fc00000), __int_as_float(0x7fc00000));
      return;
    }
    *pair = rotate(*pair, p.cos_sin[int64_t(pos) * p.half + u % p.half]);
    return;
  }
  if (!valid) return;
  u -= p.q_pairs;
  const int64_t cache_pair = int64_t(slot) * p.kv_pairs;
  if (u < p.kv_pairs) {
    const float2 rotated =
        rotate(p.k[row * p.kv_pairs + u], p.cos_sin[int64_t(pos) * p.half + u % p.half]);
    store_pair(k_cache + 2 * (cache_pair + u), rotated);
  } else {
    u -= p.kv_pairs;
    store_pair(v_cache + 2 * (cache_pair + u), p.v[row * p.kv_pairs + u]);
  }
}

// The launch for both caches: key and value of row i to cache row slots[i] (paged), or to the
// row of its position where slots is empty (contiguous).
template <class T>
void store_rows(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                const Tensor& positions, const Tensor& slots, const Tensor& cos_sin, int head_dim,
                const Tensor& k_cache, const Tensor& v_cache, const DeviceContext& ctx) {
  expect_tensor(op, "key cache", k_cache, dtype_of<T>());
  const RopeStoreTarget t =
      check_rope_store(op, q, k, v, positions, slots, cos_sin, head_dim, k_cache, v_cache);
  const int64_t n = positions.numel();
  if (n == 0) return;
  for (const Tensor* x : {&q, &k, &v})  // read as float pairs
    KUIPER_CHECK(reinterpret_cast<uintptr_t>(x->raw_data()) % 8 == 0, op, ": ", x->describe(),
                 " is not 8-byte aligned");
  for (const Tensor* c : {&k_cache, &v_cache})  // written in pairs
    KUIPER_CHECK(reinterpret_cast<uintptr_t>(c->raw_data()) % (2 * sizeof(T)) == 0, op, ": ",
                 c->describe(), " is not aligned to pairs");
  RopeStoreParams p{};
  p.q = reinterpret_cast<float2*>(q.data<float>());
  p.k = reinterpret_cast<const float2*>(k.data<float>());
  p.v = reinterpret_cast<const float2*>(v.data<float>());
  p.positions = t.positions;
  p.slots = t.slots;
  p.cos_sin = reinterpret_cast<const float2*>(t.cos_sin);
  p.max_pos = t.max_pos;
  p.cache_rows = t.cache_rows;
  p.q_pairs = int(q.numel() / n / 2);
  p.kv_pairs = t.kv_width / 2;
  p.half = t.half;
  p.total = n * (p.q_pairs + 2 * int64_t(p.kv_pairs));
  constexpr int kThreads = 256;
  using CT = DeviceType<T>;
  launch(rope_store_kernel<CT>, blocks_for(p.total, kThreads), kThreads, 0, stream_of(ctx), p,
         static_cast<CT*>(t.k_cache), static_cast<CT*>(t.v_cache));
}

}  // namespace

RopeStoreTarget check_rope_store(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& positions, const Tensor& slots,
                                 const Tensor& cos_sin, int head_dim, const Tensor& k_cache,
                                 const Tensor& v_cache) {
  expect_tensor(op, "queries", q, DType::kF32);
  expect_tensor(op, "keys", k, DType::kF32);
  expect_tensor(op, "values", v, DType::kF32);
  expect_tensor(op, "positions", positions, DType::kI32);
  expect_tensor(op, "cos_sin", cos_sin, DType::kF32);
  const DType cache_dtype = k_cache.dtype();
  KUIPER_CHECK(cache_dtype == DType::kF32 || cache_dtype == DType::kF16 ||
                   cache_dtype == DType::kBF16,
               op, ": key cache ", k_cache.describe(), " is not fp32, fp16 or bf16");
  expect_tensor(op, "value cache", v_cache, cache_dtype);
  KUIPER_CHECK(head_dim > 0 && head_dim % 2 == 0, op, ": head_dim ", head_dim, " is not even");
  const int64_t n = positions.numel();
  const int64_t q_width = q.numel() / std::max<int64_t>(n, 1);
  const int64_t kv_width = k_cache.dim(-1), max_seq = k_cache.dim(0);
  KUIPER_CHECK(q_width % head_dim == 0 && kv_width % head_dim == 0, op, ": rows of ", q_width,
               " and ", kv_width, " are not whole heads of ", head_dim);
  expect_numel(op, "queries", q, n * q_width);
  expect_numel(op, "keys", k, n * kv_width);
  expect_numel(op, "values", v, n * kv_width);
  expect_numel(op, "value cache", v_cache, k_cache.numel());
  if (!slots.empty()) {
    expect_tensor(op, "slots", slots, DType::kI32);
    expect_numel(op, "slots", slots, n);
  }
  KUIPER_CHECK(k_cache.numel() == max_seq * kv_width, op, ": key cache ", k_cache.describe(),
               " is not [rows, ", kv_width, "]");
  const int half = head_dim / 2;
  KUIPER_CHECK(cos_sin.ndim() >= 1 && cos_sin.numel() == cos_sin.dim(0) * half * 2, op,
               ": cos_sin ", cos_sin.describe(), " is not [max_seq, ", half, ", 2]");
  KUIPER_CHECK(q_width <= INT_MAX && kv_width <= INT_MAX, op, ": sizes beyond int range");
  RopeStoreTarget t{};
  t.positions = positions.data<int32_t>();
  t.slots = slots.empty() ? nullptr : slots.data<int32_t>();
  t.cos_sin = cos_sin.data<float>();
  t.k_cache = k_cache.raw_data();
  t.v_cache = v_cache.raw_data();
  t.cache_dtype = cache_dtype;
  // A contiguous cache also bounds the positions; a paged one bounds the slots only.
  t.max_pos = int(std::min<int64_t>({cos_sin.dim(0), slots.empty() ? max_seq : INT_MAX, INT_MAX}));
  t.cache_rows = int(std::min<int64_t>(max_seq, INT_MAX));
  t.half = half;
  t.kv_width = int(kv_width);
  return t;
}

template <class T>
void rope_store(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions,
                const Tensor& cos_sin, int head_dim, const Tensor& k_cache, const Tensor& v_cache,
                const DeviceContext& ctx) {
  store_rows<T>("rope_store", q, k, v, positions, Tensor(), cos_sin, head_dim, k_cache, v_cache,
                ctx);
}

template <class T>
void paged_rope_store(const Tensor& q, const Tensor& k, const Tensor& v, const BatchRows& rows,
                      const Tensor& cos_sin, int head_dim, const PagedCache& cache,
                      const DeviceContext& ctx) {
  constexpr const char* op = "paged_rope_store";
  check_paged_batch(op, rows, cache, k.dim(-1), Device::kCUDA);
  store_rows<T>(op, q, k, v, rows.positions, rows.slots, cos_sin, head_dim, cache.k, cache.v, ctx);
}

template void rope_store<float>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                const Tensor&, int, const Tensor&, const Tensor&,
                                const DeviceContext&);
template void rope_store<f16>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const Tensor&, int, const Tensor&, const Tensor&,
                              const DeviceContext&);
template void rope_store<bf16>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               const Tensor&, int, const Tensor&, const Tensor&,
                               const DeviceContext&);

template PagedRopeStoreFn paged_rope_store<float>;
template PagedRopeStoreFn paged_rope_store<f16>;
template PagedRopeStoreFn paged_rope_store<bf16>;

}  // namespace kuiper::kernels::cuda
