#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/vec.h"

namespace kuiper::kernels::cpu {

void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
               const Tensor& positions, const AttentionShape& shape, const Tensor& out,
               const DeviceContext&) {
  const int64_t n = q.dim(0), hd = shape.head_dim, max_seq = k_cache.dim(0);
  const int64_t q_width = int64_t(shape.n_heads) * hd, kv_width = int64_t(shape.n_kv_heads) * hd;
  const int group = shape.n_heads / shape.n_kv_heads;
  const int32_t* pos = positions.data<int32_t>();
  const float* qs = q.data<float>();
  const float* ks = k_cache.data<float>();
  const float* vs = v_cache.data<float>();
  float* os = out.data<float>();
  const float scale = 1.f / std::sqrt(float(hd));
  for (int64_t i = 0; i < n; ++i)
    KUIPER_CHECK(pos[i] >= 0 && pos[i] < max_seq, "position ", pos[i], " outside the cache of ",
                 max_seq, " rows");

  // Decoding a short sequence is a few thousand multiply-adds: not worth waking threads for.
  const int64_t work = n * shape.n_heads * (pos[n - 1] + 1) * hd;
#pragma omp parallel if (work >= (int64_t(1) << 16))
  {
    std::vector<float> scores(static_cast<size_t>(max_seq));  // one per thread
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t i = 0; i < n; ++i) {
      for (int h = 0; h < shape.n_heads; ++h) {
        const int64_t len = pos[i] + 1;
        const int64_t kv_off = int64_t(h / group) * hd;
        const float* qh = qs + i * q_width + h * hd;
        for (int64_t t = 0; t < len; ++t) scores[t] = dot(qh, ks + t * kv_width + kv_off, hd) * scale;
        softmax_inplace(scores.data(), len);
        float* oh = os + i * q_width + h * hd;
        for (int64_t d = 0; d < hd; ++d) oh[d] = 0.f;
        for (int64_t t = 0; t < len; ++t) axpy(scores[t], vs + t * kv_width + kv_off, oh, hd);
      }
    }
  }
}

}  // namespace kuiper::kernels::cpu
