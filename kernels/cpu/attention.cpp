#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/vec.h"
#include "kernels/paged_batch.h"

namespace kuiper::kernels::cpu {
namespace {

// One query head over keys 0..len-1: oh = softmax(qh . K^T * scale) . V, key t's row of the
// caches at row_of(t) (ks, vs already offset to the KV head). `scores` holds len floats. The
// contiguous and the paged cache run this same sequence of operations, so their fp32 results are
// identical.
template <class T, class RowOf>
void attend_head(const float* qh, const T* ks, const T* vs, int64_t len, const RowOf& row_of,
                 int64_t kv_width, int64_t hd, float scale, float* scores, float* oh) {
  for (int64_t t = 0; t < len; ++t) scores[t] = dot(qh, ks + row_of(t) * kv_width, hd) * scale;
  softmax_inplace(scores, len);
  for (int64_t d = 0; d < hd; ++d) oh[d] = 0.f;
  for (int64_t t = 0; t < len; ++t) axpy(scores[t], vs + row_of(t) * kv_width, oh, hd);
}

// Decoding a short sequence is a few thousand multiply-adds: not worth waking threads for.
constexpr int64_t kThreadedWork = int64_t(1) << 16;

}  // namespace

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

  const auto same_row = [](int64_t t) { return t; };
  const int64_t work = n * shape.n_heads * (pos[n - 1] + 1) * hd;
#pragma omp parallel if (work >= kThreadedWork)
  {
    std::vector<float> scores(static_cast<size_t>(max_seq));  // one per thread
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t i = 0; i < n; ++i) {
      for (int h = 0; h < shape.n_heads; ++h) {
        const int64_t kv_off = int64_t(h / group) * hd;
        attend_head(qs + i * q_width + h * hd, ks + kv_off, vs + kv_off, pos[i] + 1, same_row,
                    kv_width, hd, scale, scores.data(), os + i * q_width + h * hd);
      }
    }
  }
}

template <class T>
void paged_attention(const Tensor& q, const PagedCache& cache, const BatchRows& rows,
                     const AttentionShape& shape, const Tensor& out,
                     const Tensor& /*out_codes: for CUDA's GEMV*/, const DeviceContext&) {
  constexpr const char* op = "paged_attention";
  const int64_t hd = shape.head_dim;
  KUIPER_CHECK(shape.n_heads > 0 && shape.n_kv_heads > 0 && hd > 0 &&
                   shape.n_heads % shape.n_kv_heads == 0,
               op, ": ", shape.n_heads, " heads do not share ", shape.n_kv_heads,
               " KV heads evenly (head_dim ", hd, ")");
  const int64_t q_width = int64_t(shape.n_heads) * hd, kv_width = int64_t(shape.n_kv_heads) * hd;
  const PagedBatchShape s = check_paged_batch(op, rows, cache, kv_width, Device::kCPU);
  const int64_t n = s.n, bs = cache.block_size;
  KUIPER_CHECK(q.dtype() == DType::kF32 && out.dtype() == DType::kF32 &&
                   q.numel() == n * q_width && out.numel() == n * q_width,
               op, ": q ", q.describe(), " and out ", out.describe(), " are not fp32 [", n, ", ",
               q_width, "]");
  const int32_t* pos = rows.positions.data<int32_t>();
  const int32_t* seqs = rows.row_seqs.data<int32_t>();
  const int32_t* tables = rows.block_tables.data<int32_t>();
  int64_t longest = 0;
  for (int64_t i = 0; i < n; ++i) {
    KUIPER_CHECK(seqs[i] >= 0 && seqs[i] < s.n_seqs, op, ": row ", i, " of sequence ", seqs[i],
                 ", the batch has ", s.n_seqs);
    KUIPER_CHECK(pos[i] >= 0 && pos[i] < s.max_blocks * bs, op, ": row ", i, " at position ",
                 pos[i], ", beyond a block table of ", s.max_blocks, " blocks of ", bs);
    const int32_t* table = tables + seqs[i] * s.max_blocks;
    for (int64_t j = 0; j <= pos[i] / bs; ++j)
      KUIPER_CHECK(table[j] >= 0 && table[j] < s.cache_rows / bs, op, ": block table ", seqs[i],
                   " lists block ", table[j], " at ", j, ", the cache has ", s.cache_rows / bs);
    longest = std::max<int64_t>(longest, pos[i] + 1);
  }

  const int group = shape.n_heads / shape.n_kv_heads;
  const float* qs = q.data<float>();
  const T* ks = cache.k.data<T>();
  const T* vs = cache.v.data<T>();
  float* os = out.data<float>();
  const float scale = 1.f / std::sqrt(float(hd));
  int64_t work = 0;
  for (int64_t i = 0; i < n; ++i) work += (pos[i] + 1) * q_width;
#pragma omp parallel if (work >= kThreadedWork)
  {
    std::vector<float> scores(static_cast<size_t>(longest));  // one per thread
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t i = 0; i < n; ++i) {
      for (int h = 0; h < shape.n_heads; ++h) {
        const int32_t* table = tables + seqs[i] * s.max_blocks;
        const auto cache_row = [table, bs](int64_t t) { return table[t / bs] * bs + t % bs; };
        const int64_t kv_off = int64_t(h / group) * hd;
        attend_head(qs + i * q_width + h * hd, ks + kv_off, vs + kv_off, pos[i] + 1, cache_row,
                    kv_width, hd, scale, scores.data(), os + i * q_width + h * hd);
      }
    }
  }
}

template PagedAttentionFn paged_attention<float>;
template PagedAttentionFn paged_attention<f16>;
template PagedAttentionFn paged_attention<bf16>;

}  // namespace kuiper::kernels::cpu
