#pragma once
// The rows of a weight matrix as the CPU kernels read them: a dot product of one row with a
// position (its Input: fp32, or quantized once per call), and rows expanded to fp32 (for SGEMM
// tiles and embedding lookups). Float weights widen in registers against fp32 activations. int8
// and q4 codes take integer dot products with the activations quantized to int8 per block of 32,
// as llama.cpp's Q8_0 and Q4_0 do (one maddubs a 32-value block instead of four widen-and-FMA
// steps); int8 groups that split those blocks (16, 24) widen in registers instead.
// with_weight_rows() dispatches on the weight's storage once per call, so matmul, gated_matmul
// and embedding are each written once for every weight format.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu/vec.h"
#include "kuiper/tensor/weight.h"

namespace kuiper::kernels::cpu {

#ifdef KUIPER_CPU_AVX2
// 8 int8 codes widened to fp32.
inline __m256 load8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
#endif
#ifdef KUIPER_CPU_AVX512
inline __m512 load16(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
#endif

// sum_k x[k] * q[k] * scale[k / group], in fp32: per group a vector partial sum, scaled once.
template <class S>
inline float dot_q8(const float* x, const int8_t* q, const S* scale, int64_t n, int64_t group) {
  float sum = 0.f;
  int64_t g = 0, k = 0;
  if (group % 32 == 0) {
#if defined(KUIPER_CPU_AVX512)
    __m512 acc = _mm512_setzero_ps();
    for (; k < n; k += group, ++g) {
      __m512 p0 = _mm512_setzero_ps(), p1 = p0;
      for (int64_t j = k; j < k + group; j += 32) {
        _mm_prefetch(reinterpret_cast<const char*>(q + j) + kPrefetchBytes, _MM_HINT_T0);
        p0 = _mm512_fmadd_ps(load16(x + j), load16(q + j), p0);
        p1 = _mm512_fmadd_ps(load16(x + j + 16), load16(q + j + 16), p1);
      }
      acc = _mm512_fmadd_ps(_mm512_set1_ps(to_float(scale[g])), _mm512_add_ps(p0, p1), acc);
    }
    return _mm512_reduce_add_ps(acc);
#elif defined(KUIPER_CPU_AVX2)
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (; k < n; k += group, ++g) {
      __m256 p0 = _mm256_setzero_ps(), p1 = p0, p2 = p0, p3 = p0;
      for (int64_t j = k; j < k + group; j += 32) {
        _mm_prefetch(reinterpret_cast<const char*>(q + j) + kPrefetchBytes, _MM_HINT_T0);
        p0 = _mm256_fmadd_ps(load8(x + j), load8(q + j), p0);
        p1 = _mm256_fmadd_ps(load8(x + j + 8), load8(q + j + 8), p1);
        p2 = _mm256_fmadd_ps(load8(x + j + 16), load8(q + j + 16), p2);
        p3 = _mm256_fmadd_ps(load8(x + j + 24), load8(q + j + 24), p3);
      }
      const __m256 s = _mm256_set1_ps(to_float(scale[g]));
      acc0 = _mm256_fmadd_ps(s, _mm256_add_ps(p0, p1), acc0);
      acc1 = _mm256_fmadd_ps(s, _mm256_add_ps(p2, p3), acc1);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
#endif
  }
  for (; k < n; k += group, ++g) {
    float part = 0.f;
    for (int64_t j = k; j < k + group; ++j) part += x[j] * float(q[j]);
    sum += to_float(scale[g]) * part;
  }
  return sum;
}

// The positions of a call, fp32 [n, k], as the float readers take them.
struct FloatInput {
  const float* xs;
  int64_t k;

  static FloatInput of(const float* xs, int64_t, int64_t k) { return {xs, k}; }
  const float* at(int64_t pos) const { return xs + pos * k; }
};

// The positions quantized to int8 in blocks of 32 (scale max|x| / 127, nearest), for readers
// whose dot products are integer ones: quantized once per call, used by every row.
struct Int8Input {
  static constexpr int64_t kBlock = 32;
  struct Row {
    const int8_t* q;
    const float* scale;  // per block
    const float* sum;    // per block: scale * sum(q), the share of a constant code offset
    const float* x;      // the fp32 values, for groups that split blocks
  };
  std::vector<int8_t> q;
  std::vector<float> scale, sum;
  const float* xs = nullptr;
  int64_t k = 0;

  static Int8Input of(const float* xs, int64_t n, int64_t k);
  Row at(int64_t pos) const {
    if (q.empty()) return {nullptr, nullptr, nullptr, xs + pos * k};  // no whole blocks
    return {q.data() + pos * k, scale.data() + pos * (k / kBlock), sum.data() + pos * (k / kBlock),
            xs + pos * k};
  }
};

#ifdef KUIPER_CPU_AVX2
// The scales of 8 consecutive 32-value blocks, from s (their first group's scale) for groups of
// 32 << shift values (shift 0..3): 8 >> shift scales loaded, each repeated 1 << shift times.
template <class S>
inline __m256 group_scales8(const S* s, int shift) {
  __m256 v;
  if constexpr (std::is_same_v<S, f16>) {
    __m128i h;
    switch (shift) {
      case 0: h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s)); break;
      case 1: h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s)); break;
      case 2: h = _mm_cvtsi32_si128(*reinterpret_cast<const int32_t*>(s)); break;
      default: h = _mm_cvtsi32_si128(s[0].bits); break;
    }
    v = _mm256_cvtph_ps(h);
  } else {
    alignas(32) float f[8] = {};
    for (int j = 0; j < (8 >> shift); ++j) f[j] = s[j];
    v = _mm256_load_ps(f);
  }
  if (shift == 0) return v;
  const __m256i lane = _mm256_srli_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), shift);
  return _mm256_permutevar8x32_ps(v, lane);
}
#endif

#ifdef KUIPER_CPU_AVX2
// sum over the 32-value blocks b of a row of w(b) * x.scale[b] * products(b) (8 int32 partial
// sums of block b's integer products), less offset * sum_b w(b) * x.sum[b] (a constant code
// offset), with w(b) = scale[b >> shift] the weight group's scale. 8 blocks at a time: their
// sums reduced into one vector (a lane a block) by horizontal adds, times their 8 scale products
// in one FMA, the offset's share in another (3-5% faster than a permute and an FMA a block).
template <class S, class Products>
inline float scaled_blocks(const Int8Input::Row& x, const S* scale, int64_t blocks, int shift,
                           float offset, const char* codes, int64_t block_bytes, Products products) {
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, offsets = _mm256_setzero_ps();
  float tail_offsets = 0.f;
  int64_t b = 0;
  for (; b + 8 <= blocks; b += 8) {
    for (int64_t line = 0; line < 8 * block_bytes; line += 64)
      _mm_prefetch(codes + b * block_bytes + line + kPrefetchBytes, _MM_HINT_T0);
    const __m256 ws = group_scales8(scale + (b >> shift), shift);
    const __m256 both = _mm256_mul_ps(ws, _mm256_loadu_ps(x.scale + b));
    offsets = _mm256_fmadd_ps(ws, _mm256_loadu_ps(x.sum + b), offsets);
    // The 8 blocks' integer sums, one a lane: a tree of horizontal adds, then one FMA.
    const __m256i h01 = _mm256_hadd_epi32(products(b), products(b + 1));
    const __m256i h23 = _mm256_hadd_epi32(products(b + 2), products(b + 3));
    const __m256i h45 = _mm256_hadd_epi32(products(b + 4), products(b + 5));
    const __m256i h67 = _mm256_hadd_epi32(products(b + 6), products(b + 7));
    const __m256i h0123 = _mm256_hadd_epi32(h01, h23), h4567 = _mm256_hadd_epi32(h45, h67);
    const __m256i sums = _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                                          _mm256_permute2x128_si256(h0123, h4567, 0x31));
    acc[0] = _mm256_fmadd_ps(both, _mm256_cvtepi32_ps(sums), acc[0]);
  }
  for (; b < blocks; ++b) {
    const float w = to_float(scale[b >> shift]);
    acc[b & 1] = _mm256_fmadd_ps(_mm256_set1_ps(w * x.scale[b]), _mm256_cvtepi32_ps(products(b)),
                                 acc[b & 1]);
    tail_offsets += w * x.sum[b];
  }
  return hsum(_mm256_add_ps(acc[0], acc[1])) - offset * (tail_offsets + hsum(offsets));
}
#endif

// scaled_blocks without SIMD, for any group of whole blocks: block_dot(b) is block b's integer
// dot product.
template <class S, class BlockDot>
inline float scaled_blocks_scalar(const Int8Input::Row& x, const S* scale, int64_t blocks,
                                  int64_t per_group, float offset, BlockDot block_dot) {
  float sum = 0.f, offsets = 0.f;
  for (int64_t b = 0; b < blocks; ++b) {
    const float w = to_float(scale[b / per_group]);
    sum += w * x.scale[b] * float(block_dot(b));
    offsets += w * x.sum[b];
  }
  return sum - offset * offsets;
}

// Whether groups of `group` values are 1, 2, 4 or 8 whole blocks of 32 (the vector loops).
inline bool whole_blocks(int64_t group) {
  const int64_t per = group / 32;
  return group % 32 == 0 && per <= 8 && (per & (per - 1)) == 0;
}

// sum_k x[k] * (u[k] - 8) * scale[k / group] for q4 codes u in blocks of 32 (weight.h); integer
// products of the codes and x's int8 values per block, scaled by both blocks' scales; the code
// offset 8 is taken off once at the end through x's block sums.
template <class S>
inline float dot_q4(const Int8Input::Row& x, const uint8_t* q, const S* scale, int64_t n,
                    int64_t group) {
  const int64_t blocks = n / 32, per_group = group / 32;
#ifdef KUIPER_CPU_AVX2
  if (whole_blocks(group)) {
    const __m128i low4 = _mm_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    return scaled_blocks(x, scale, blocks, __builtin_ctzll(uint64_t(per_group)), 8.f,
                         reinterpret_cast<const char*>(q), 16, [&](int64_t b) {
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16 * b));
      const __m256i codes =
          _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), low4), _mm_and_si128(raw, low4));
      const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + 32 * b));
      // unsigned codes (<= 15) times signed values: pair sums fit int16 without saturating.
      return _mm256_madd_epi16(_mm256_maddubs_epi16(codes, xq), ones);
    });
  }
#endif
  return scaled_blocks_scalar(x, scale, blocks, per_group, 8.f, [&](int64_t b) {
    int32_t dot = 0;
    for (int64_t j = 0; j < 16; ++j) {
      dot += int32_t(q[16 * b + j] & 15) * x.q[32 * b + j];
      dot += int32_t(q[16 * b + j] >> 4) * x.q[32 * b + j + 16];
    }
    return dot;
  });
}

// sum_k x[k] * q[k] * scale[k / group] for int8 codes q, groups of 1, 2, 4 or 8 blocks of 32
// (whole_blocks): integer products with x's int8 values per block, as dot_q4.
template <class S>
inline float dot_i8(const Int8Input::Row& x, const int8_t* q, const S* scale, int64_t n,
                    int64_t group) {
  const int64_t blocks = n / 32, per_group = group / 32;
#ifdef KUIPER_CPU_AVX2
  const __m256i ones = _mm256_set1_epi16(1);
  return scaled_blocks(x, scale, blocks, __builtin_ctzll(uint64_t(per_group)), 0.f,
                       reinterpret_cast<const char*>(q), 32, [&](int64_t b) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * b));
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + 32 * b));
    // maddubs takes unsigned x signed bytes: |w| times x with w's sign (|codes| <= 127, so the
    // pair sums fit int16).
    const __m256i products = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xq, w));
    return _mm256_madd_epi16(products, ones);
  });
#else
  return scaled_blocks_scalar(x, scale, blocks, per_group, 0.f, [&](int64_t b) {
    int32_t dot = 0;
    for (int64_t j = 0; j < 32; ++j) dot += int32_t(q[32 * b + j]) * x.q[32 * b + j];
    return dot;
  });
#endif
}

// Rows of a float matrix [rows, cols] stored as T.
template <class T>
struct FloatRows {
  using Input = FloatInput;
  const T* w;
  int64_t cols;

  static FloatRows of(const Weight& m) { return {static_cast<const T*>(m.values.raw_data()), m.cols()}; }
  float dot(const float* x, int64_t r) const { return cpu::dot(x, w + r * cols, cols); }
  void expand(int64_t r0, int64_t rows, float* dst) const { widen(w + r0 * cols, dst, rows * cols); }
};

// Rows of int8 codes [rows, cols] with scales S [rows, cols / group].
template <class S>
struct Int8Rows {
  using Input = Int8Input;
  const int8_t* q;
  const S* scales;
  int64_t cols, group;

  static Int8Rows of(const Weight& m) {
    return {static_cast<const int8_t*>(m.values.raw_data()),
            static_cast<const S*>(m.scales.raw_data()), m.cols(), m.group()};
  }

  const S* scales_of(int64_t r) const { return scales + r * (cols / group); }
  float dot(const Int8Input::Row& x, int64_t r) const {
    if (!whole_blocks(group)) return dot_q8(x.x, q + r * cols, scales_of(r), cols, group);
    return dot_i8(x, q + r * cols, scales_of(r), cols, group);
  }
  void expand(int64_t r0, int64_t rows, float* dst) const {
    for (int64_t r = r0; r < r0 + rows; ++r) {
      const S* s = scales_of(r);
      float* out = dst + (r - r0) * cols;
      for (int64_t g = 0; g < cols / group; ++g) {
        const float scale = to_float(s[g]);
        const int8_t* in = q + r * cols + g * group;
        for (int64_t j = 0; j < group; ++j) out[g * group + j] = scale * float(in[j]);
      }
    }
  }
};

// Rows of q4 codes [rows, cols] (blocks of 32 values in 16 bytes, weight.h) with scales S
// [rows, cols / group].
template <class S>
struct Q4Rows {
  using Input = Int8Input;
  const uint8_t* q;
  const S* scales;
  int64_t cols, group;

  static Q4Rows of(const Weight& m) {
    return {static_cast<const uint8_t*>(m.values.raw_data()),
            static_cast<const S*>(m.scales.raw_data()), m.cols(), m.group()};
  }

  const S* scales_of(int64_t r) const { return scales + r * (cols / group); }
  const uint8_t* codes_of(int64_t r) const { return q + r * (cols / 2); }
  float dot(const Int8Input::Row& x, int64_t r) const {
    return dot_q4(x, codes_of(r), scales_of(r), cols, group);
  }
  void expand(int64_t r0, int64_t rows, float* dst) const {
    for (int64_t r = r0; r < r0 + rows; ++r) {
      const S* s = scales_of(r);
      const uint8_t* in = codes_of(r);
      float* out = dst + (r - r0) * cols;
      for (int64_t b = 0; b < cols / 32; ++b) {
        const float scale = to_float(s[b * 32 / group]);
        for (int64_t j = 0; j < 16; ++j) {
          out[32 * b + j] = scale * float(int(in[16 * b + j] & 15) - 8);
          out[32 * b + j + 16] = scale * float(int(in[16 * b + j] >> 4) - 8);
        }
      }
    }
  }
};

// Runs f(rows) with the row reader for w's storage; every weight of one call must share it
// (matmul's outputs, the gate and up projections), so callers pass the first and check the rest.
template <class F>
decltype(auto) with_weight_rows(const Weight& w, F&& f) {
  if (w.quantized()) {
    const bool half = w.scales.dtype() == DType::kF16;
    if (w.dtype() == DType::kQ4) return half ? f(Q4Rows<f16>::of(w)) : f(Q4Rows<float>::of(w));
    KUIPER_CHECK(w.dtype() == DType::kI8, "cpu: no kernel for quantized ", dtype_name(w.dtype()));
    return half ? f(Int8Rows<f16>::of(w)) : f(Int8Rows<float>::of(w));
  }
  return with_float_type(w.dtype(), [&]<class T>(T) { return f(FloatRows<T>::of(w)); });
}

// The reader of `w`, another weight of the call that `first` (read as Rows) belongs to.
template <class Rows>
Rows rows_of(const Weight& first, const Weight& w) {
  KUIPER_CHECK(same_storage(first, w), "cpu: weights of one call must share their storage, got ",
               first.describe(), " and ", w.describe());
  return Rows::of(w);
}

}  // namespace kuiper::kernels::cpu
