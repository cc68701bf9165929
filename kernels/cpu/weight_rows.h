#pragma once
// The rows of a weight matrix as the CPU kernels read them: a dot product of one row with a
// position (its Input: fp32, or quantized once per call), and rows expanded to fp32 (for SGEMM
// tiles and embedding lookups). Float weights widen in registers against fp32 activations. int8
// and q4 codes, and ggml's blocks (ggml_rows.h), take integer dot products with the activations
// quantized to int8 per block of 32 (int8_dot.h); int8 groups that split those blocks (16, 24)
// widen in registers instead. with_weight_rows() dispatches on the weight's storage once per
// call, so matmul, gated_matmul and embedding are each written once for every weight format.
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/ggml_rows.h"
#include "kernels/cpu/int8_dot.h"
#include "kernels/cpu/position_dots.h"
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

// The positions of a call, fp32 [n, k], as the float readers take them: in place for one
// position (dot), laid out in blocks for several (position_dots).
struct FloatInput {
  const float* xs;
  int64_t k;
  Tensor blocks;

  static FloatInput of(const float* xs, int64_t n, int64_t k) {
    return {xs, k, n > 1 ? position_blocks(xs, int(n), k) : Tensor()};
  }
  const float* at(int64_t pos) const { return xs + pos * k; }
};

// Rows of a float matrix [rows, cols] stored as T.
template <class T>
struct FloatRows {
  using Input = FloatInput;
  const T* w;
  int64_t cols;

  static FloatRows of(const Weight& m) { return {static_cast<const T*>(m.values.raw_data()), m.cols()}; }
  float dot(const float* x, int64_t r) const { return cpu::dot(x, w + r * cols, cols); }
  // Rows [r0, r0 + rows) against every position of `in` at once, for calls of several positions.
  void dots(const FloatInput& in, int64_t positions, int64_t r0, int64_t rows, float* out) const {
    position_dots(in.blocks, int(positions), w + r0 * cols, cols, rows, out);
  }
  void expand(int64_t r0, int64_t rows, float* dst) const { widen(w + r0 * cols, dst, rows * cols); }
};

// Rows [r0, r0 + rows) of `w` against each of the call's positions: out[r * kMaxPositions + pos]
// for row r0 + r. Float rows widen each weight vector once for all positions (position_dots.h);
// the quantized readers' dot products take the positions one at a time, their activations
// already quantized.
template <class Rows>
void rows_dots(const Rows& w, const typename Rows::Input& in, int64_t positions, int64_t r0, int64_t rows,
               float* out) {
  if constexpr (requires { w.dots(in, positions, r0, rows, out); }) {
    if (positions > 1) return w.dots(in, positions, r0, rows, out);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t pos = 0; pos < positions; ++pos) out[r * kMaxPositions + pos] = w.dot(in.at(pos), r0 + r);
}

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
    const auto* codes = reinterpret_cast<const uint8_t*>(q + r * cols);
    const GroupedBlocks<S, 32, 0> w{codes, scales_of(r), group / 32, log2_blocks(group)};
    return dot_bytes(x, w, cols / 32);
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
    const GroupedBlocks<S, 16, 8> w{codes_of(r), scales_of(r), group / 32, log2_blocks(group)};
    return dot_nibbles(x, w, cols / 32, whole_blocks(group));
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
  switch (w.dtype()) {
    case DType::kQ8_0: return f(Q8_0Rows::of(w));
    case DType::kQ4_0: return f(Q4_0Rows::of(w));
    case DType::kQ4_K: return f(Q4KRows::of(w));
    case DType::kQ6_K: return f(Q6KRows::of(w));
    default: break;
  }
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
