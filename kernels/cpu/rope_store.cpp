#include <cstring>

#include "kernels/cpu/cpu_kernels.h"

namespace kuiper::kernels::cpu {
namespace {

// Rotates every head of one row: dst = rotate(src) by the angles in cs; dst may be src.
void rotate_row(const float* src, float* dst, int64_t width, int64_t head_dim, const float* cs) {
  for (int64_t h = 0; h < width; h += head_dim) {
    for (int64_t j = 0; j < head_dim / 2; ++j) {
      const float c = cs[2 * j], s = cs[2 * j + 1];
      const float x0 = src[h + 2 * j], x1 = src[h + 2 * j + 1];
      dst[h + 2 * j] = x0 * c - x1 * s;
      dst[h + 2 * j + 1] = x0 * s + x1 * c;
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

}  // namespace kuiper::kernels::cpu
