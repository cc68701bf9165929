#pragma once
// Naive float64 references for the kernels: the obvious loop of each formula in kernels.h.
#include <cmath>
#include <vector>

#include "kernels/kernels.h"
#include "test/test_util.h"

namespace kuiper::test::reference {

// y = x w^T (+ bias) with w dequantized (weight_element).
inline Tensor matmul(const Tensor& x, const Weight& w, const Tensor& bias) {
  const int64_t n = x.dim(0), in = x.dim(1), out = w.rows();
  Tensor y(DType::kF32, {n, out});
  for (int64_t i = 0; i < n; ++i)
    for (int64_t r = 0; r < out; ++r) {
      double s = bias.empty() ? 0.0 : element(bias, r);
      for (int64_t k = 0; k < in; ++k) s += double(element(x, i * in + k)) * weight_element(w, r, k);
      y.span<float>()[i * out + r] = float(s);
    }
  return y;
}

// x rounded as the integer dot products of q4 weights take it: per block of 32 values of a row,
// scale max|x| / 127 and the nearest multiple of it (the multiplication by 127 / max|x| in fp32,
// as kernels/cpu/weight_rows.cpp does, so that the codes are the same).
inline Tensor int8_blocks(const Tensor& x, size_t block = 32) {
  Tensor y(DType::kF32, x.shape());
  const auto in = x.span<float>();
  const auto out = y.span<float>();
  for (size_t b = 0; b < in.size(); b += block) {
    float max = 0.f;
    for (size_t j = b; j < b + block; ++j) max = std::max(max, std::fabs(in[j]));
    const float inverse = max > 0.f ? 127.f / max : 0.f;
    for (size_t j = b; j < b + block; ++j) out[j] = float(std::nearbyint(in[j] * inverse) * (double(max) / 127.0));
  }
  return y;
}

inline Tensor rmsnorm(const Tensor& x, const Tensor& weight, float eps) {
  const int64_t n = x.dim(0), dim = x.dim(1);
  Tensor y(DType::kF32, {n, dim});
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t k = 0; k < dim; ++k) ss += double(element(x, i * dim + k)) * element(x, i * dim + k);
    const double scale = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t k = 0; k < dim; ++k)
      y.span<float>()[i * dim + k] = float(element(x, i * dim + k) * scale * element(weight, k));
  }
  return y;
}

inline void softmax(std::vector<double>& v) {
  double max = v[0], sum = 0;
  for (double x : v) max = std::max(max, x);
  for (double& x : v) sum += (x = std::exp(x - max));
  for (double& x : v) x /= sum;
}

inline Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions,
                        const kernels::AttentionShape& s) {
  const int64_t n = q.dim(0), hd = s.head_dim, qw = q.dim(1), kw = k.dim(1);
  Tensor out(DType::kF32, {n, qw});
  for (int64_t i = 0; i < n; ++i) {
    const int64_t len = positions.span<int32_t>()[i] + 1;
    for (int h = 0; h < s.n_heads; ++h) {
      const int64_t g = h / (s.n_heads / s.n_kv_heads);
      std::vector<double> p(size_t(len), 0.0);
      for (int64_t t = 0; t < len; ++t) {
        for (int64_t d = 0; d < hd; ++d)
          p[t] += double(element(q, i * qw + h * hd + d)) * element(k, t * kw + g * hd + d);
        p[t] /= std::sqrt(double(hd));
      }
      softmax(p);
      for (int64_t d = 0; d < hd; ++d) {
        double o = 0;
        for (int64_t t = 0; t < len; ++t) o += p[t] * element(v, t * kw + g * hd + d);
        out.span<float>()[i * qw + h * hd + d] = float(o);
      }
    }
  }
  return out;
}

// Paged attention (kernels.h: PagedAttentionFn) read through each row's block table.
inline Tensor paged_attention(const Tensor& q, const kernels::PagedCache& cache,
                              const kernels::BatchRows& rows, const kernels::AttentionShape& s) {
  const int64_t n = q.dim(0), hd = s.head_dim, qw = q.dim(1), kw = cache.k.dim(1);
  const int64_t bs = cache.block_size, max_blocks = rows.block_tables.dim(1);
  Tensor out(DType::kF32, {n, qw});
  for (int64_t i = 0; i < n; ++i) {
    const int64_t len = rows.positions.span<int32_t>()[i] + 1;
    const int32_t* table = rows.block_tables.span<int32_t>().data() +
                           rows.row_seqs.span<int32_t>()[i] * max_blocks;
    std::vector<int64_t> at(static_cast<size_t>(len));  // cache row of each key
    for (int64_t t = 0; t < len; ++t) at[size_t(t)] = (table[t / bs] * bs + t % bs) * kw;
    for (int h = 0; h < s.n_heads; ++h) {
      const int64_t g = h / (s.n_heads / s.n_kv_heads) * hd;
      std::vector<double> p(size_t(len), 0.0);
      for (int64_t t = 0; t < len; ++t) {
        for (int64_t d = 0; d < hd; ++d)
          p[t] += double(element(q, i * qw + h * hd + d)) * element(cache.k, at[size_t(t)] + g + d);
        p[t] /= std::sqrt(double(hd));
      }
      softmax(p);
      for (int64_t d = 0; d < hd; ++d) {
        double o = 0;
        for (int64_t t = 0; t < len; ++t) o += p[t] * element(cache.v, at[size_t(t)] + g + d);
        out.span<float>()[i * qw + h * hd + d] = float(o);
      }
    }
  }
  return out;
}

inline Tensor silu_times(const Tensor& gate, const Tensor& up) {
  Tensor y(DType::kF32, gate.shape());
  for (int64_t k = 0; k < y.numel(); ++k) {
    const double g = element(gate, k);
    y.span<float>()[k] = float(g / (1 + std::exp(-g)) * element(up, k));
  }
  return y;
}

inline Tensor rope(const Tensor& x, const Tensor& positions, const Tensor& cos_sin, int head_dim) {
  Tensor y(DType::kF32, x.shape());
  const int64_t n = x.dim(0), w = x.dim(1), half = head_dim / 2;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t pos = positions.span<int32_t>()[i];
    for (int64_t h = 0; h < w; h += head_dim)
      for (int64_t j = 0; j < half; ++j) {
        const double c = element(cos_sin, (pos * half + j) * 2), s = element(cos_sin, (pos * half + j) * 2 + 1);
        const double x0 = element(x, i * w + h + 2 * j), x1 = element(x, i * w + h + 2 * j + 1);
        y.span<float>()[i * w + h + 2 * j] = float(x0 * c - x1 * s);
        y.span<float>()[i * w + h + 2 * j + 1] = float(x0 * s + x1 * c);
      }
  }
  return y;
}

}  // namespace kuiper::test::reference
