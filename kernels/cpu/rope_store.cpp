#include <cstring>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/vec.h"
#include "kernels/paged_batch.h"

namespace kuiper::kernels::cpu {
namespace {

// Rotates every head of one row: dst = rotate(src) by the angles in cs, stored as T; dst may be
// src.
template <class T>
void rotate_row(const float* src, T* dst, int64_t width, int64_t head_dim, const float* cs) {
  for (int64_t h = 0; h < width; h += head_dim) {
    for (int64_t j = 0; j < head_dim / 2; ++j) {
      const float c = cs[2 * j], s = cs[2 * j + 1];
      const float x0 = src[h + 2 * j], x1 = src[h + 2 * j + 1];
      dst[h + 2 * j] = from_float<T>(x0 * c - x1 * s);
      dst[h + 2 * j + 1] = from_float<T>(x0 * s + x1 * c);
    }
  }
}

}  // namespace

void rope_store(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions,
                const Tensor& cos_sin, int head_dim, const Tensor& k_cache, const Tensor& v_cache,
                const DeviceContext&) {
  const int64_t n = q.dim(0), q_width = q.dim(1), kv_width = k.dim(1), half = head_dim / 2;
  const int32_t* pos = positions.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = pos[i];
    KUIPER_CHECK(p >= 0 && p < cos_sin.dim(0) && p < k_cache.dim(0), "position ", p,
                 " outside the rotary table of ", cos_sin.dim(0), " or the cache of ",
                 k_cache.dim(0), " rows");
    const float* cs = cos_sin.data<float>() + p * half * 2;
    float* q_row = q.data<float>() + i * q_width;
    rotate_row(q_row, q_row, q_width, head_dim, cs);
    rotate_row(k.data<float>() + i * kv_width, k_cache.data<float>() + p * kv_width, kv_width,
               head_dim, cs);
    std::memcpy(v_cache.data<float>() + p * kv_width, v.data<float>() + i * kv_width,
                size_t(kv_width) * sizeof(float));
  }
}

template <class T>
void paged_rope_store(const Tensor& q, const Tensor& k, const Tensor& v, const BatchRows& rows,
                      const Tensor& cos_sin, int head_dim, const PagedCache& cache,
                      const DeviceContext&) {
  constexpr const char* op = "paged_rope_store";
  KUIPER_CHECK(head_dim > 0 && head_dim % 2 == 0, op, ": head_dim ", head_dim, " is not even");
  const PagedBatchShape s = check_paged_batch(op, rows, cache, k.dim(-1), Device::kCPU);
  const int64_t n = s.n, q_width = q.numel() / std::max<int64_t>(n, 1), kv_width = s.kv_width;
  const int64_t half = head_dim / 2;
  KUIPER_CHECK(q.numel() == n * q_width && k.numel() == n * kv_width && v.numel() == n * kv_width &&
                   q_width % head_dim == 0 && kv_width % head_dim == 0,
               op, ": q ", q.describe(), ", k ", k.describe(), " and v ", v.describe(),
               " are not ", n, " rows of whole heads of ", head_dim);
  const int32_t* pos = rows.positions.data<int32_t>();
  const int32_t* slots = rows.slots.data<int32_t>();
  T* k_cache = cache.k.data<T>();
  T* v_cache = cache.v.data<T>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = pos[i], slot = slots[i];
    KUIPER_CHECK(p >= 0 && p < cos_sin.dim(0), op, ": position ", p, " outside the rotary table of ",
                 cos_sin.dim(0), " rows");
    KUIPER_CHECK(slot >= 0 && slot < s.cache_rows, op, ": slot ", slot, " outside the cache of ",
                 s.cache_rows, " rows");
    const float* cs = cos_sin.data<float>() + p * half * 2;
    float* q_row = q.data<float>() + i * q_width;
    rotate_row(q_row, q_row, q_width, head_dim, cs);
    rotate_row(k.data<float>() + i * kv_width, k_cache + slot * kv_width, kv_width, head_dim, cs);
    const float* v_row = v.data<float>() + i * kv_width;
    for (int64_t c = 0; c < kv_width; ++c) v_cache[slot * kv_width + c] = from_float<T>(v_row[c]);
  }
}

template PagedRopeStoreFn paged_rope_store<float>;
template PagedRopeStoreFn paged_rope_store<f16>;
template PagedRopeStoreFn paged_rope_store<bf16>;

}  // namespace kuiper::kernels::cpu
