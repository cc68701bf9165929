#pragma once
// Vector helpers shared by the CPU kernels: weights of any storage type are widened to fp32 in
// registers, so one template serves fp32, fp16 and bf16 matrices.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kuiper/base/dtype.h"
#include "kuiper/base/error.h"
#include "kuiper/base/half.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define KUIPER_CPU_AVX2 1
#endif

namespace kuiper::kernels::cpu {

#if defined(KUIPER_CPU_AVX2) && defined(__AVX512F__)
// 512-bit loads: a single core streams weights from DRAM about 15% faster with them.
#define KUIPER_CPU_AVX512 1
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const f16* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 load16(const bf16* p) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
#endif

#ifdef KUIPER_CPU_AVX2
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const f16* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 load8(const bf16* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

// How far ahead of its loads dot() asks for weights: the hardware prefetcher alone leaves a single
// core short of DRAM bandwidth, most of all for 16-bit weights (8 GB/s without, 12 with).
constexpr int kPrefetchBytes = 4096;

// Asks for the cache line 1 KB past the 32 16-bit weights at w: on the Zen 3 VM fp16 decode went
// from ~6.2 to ~7.4 tokens/s with 1 KB ahead instead of 4 KB (2 KB: ~6.3). fp32 weights are
// left to the hardware prefetcher, which streams them faster alone there: a TinyLlama layer's
// fp32 projections on one thread read 14-16 GB/s asking for every line 4 KB ahead and 16-18
// GB/s without (bench/cpu_matmul_bench), and one-thread decode went from 3.2 to 3.7 tokens/s.
template <class T>
inline void prefetch32(const T* w) {
#ifdef KUIPER_CPU_AVX2
  if constexpr (sizeof(T) == 2)
    _mm_prefetch(reinterpret_cast<const char*>(w) + kPrefetchBytes / 4, _MM_HINT_T0);
#endif
}

// sum_k x[k] * w[k], accumulated in fp32.
template <class T>
inline float dot(const float* x, const T* w, int64_t n) {
  int64_t k = 0;
  float sum = 0.f;
#if defined(KUIPER_CPU_AVX512)
  __m512 b0 = _mm512_setzero_ps(), b1 = b0;
  for (; k + 32 <= n; k += 32) {
    prefetch32(w + k);
    b0 = _mm512_fmadd_ps(load16(x + k), load16(w + k), b0);
    b1 = _mm512_fmadd_ps(load16(x + k + 16), load16(w + k + 16), b1);
  }
  for (; k + 16 <= n; k += 16) b0 = _mm512_fmadd_ps(load16(x + k), load16(w + k), b0);
  sum = _mm512_reduce_add_ps(_mm512_add_ps(b0, b1));
#elif defined(KUIPER_CPU_AVX2)
  // Four independent accumulators keep the FMA pipes busy while loads are in flight.
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (; k + 32 <= n; k += 32) {
    prefetch32(w + k);
    a0 = _mm256_fmadd_ps(load8(x + k), load8(w + k), a0);
    a1 = _mm256_fmadd_ps(load8(x + k + 8), load8(w + k + 8), a1);
    a2 = _mm256_fmadd_ps(load8(x + k + 16), load8(w + k + 16), a2);
    a3 = _mm256_fmadd_ps(load8(x + k + 24), load8(w + k + 24), a3);
  }
  for (; k + 8 <= n; k += 8) a0 = _mm256_fmadd_ps(load8(x + k), load8(w + k), a0);
  sum = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#endif
  for (; k < n; ++k) sum += x[k] * to_float(w[k]);
  return sum;
}

// y[k] += a * x[k], x widened to fp32 (fp32, fp16 or bf16).
template <class T>
inline void axpy(float a, const T* x, float* y, int64_t n) {
  int64_t k = 0;
#ifdef KUIPER_CPU_AVX2
  const __m256 va = _mm256_set1_ps(a);
  for (; k + 8 <= n; k += 8)
    _mm256_storeu_ps(y + k, _mm256_fmadd_ps(va, load8(x + k), _mm256_loadu_ps(y + k)));
#endif
  for (; k < n; ++k) y[k] += a * to_float(x[k]);
}

// dst[k] = float(src[k])
template <class T>
inline void widen(const T* src, float* dst, int64_t n) {
  int64_t k = 0;
#ifdef KUIPER_CPU_AVX2
  for (; k + 8 <= n; k += 8) _mm256_storeu_ps(dst + k, load8(src + k));
#endif
  for (; k < n; ++k) dst[k] = to_float(src[k]);
}

// f rounded to the storage type T (fp32: itself).
template <class T>
inline T from_float(float f) {
  if constexpr (std::is_same_v<T, f16>) return to_f16(f);
  else if constexpr (std::is_same_v<T, bf16>) return to_bf16(f);
  else return f;
}

// Softmax of x[0..n) in place.
inline void softmax_inplace(float* x, int64_t n) {
  float max = x[0];
  for (int64_t k = 1; k < n; ++k) max = std::fmax(max, x[k]);
  float sum = 0.f;
  for (int64_t k = 0; k < n; ++k) {
    x[k] = std::exp(x[k] - max);
    sum += x[k];
  }
  const float inv = 1.f / sum;
  for (int64_t k = 0; k < n; ++k) x[k] *= inv;
}

// Runs f(T{}) with T the C++ type of a floating-point storage dtype.
template <class F>
decltype(auto) with_float_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kF32: return f(float{});
    case DType::kF16: return f(f16{});
    case DType::kBF16: return f(bf16{});
    default: fail("expected a floating-point dtype, got ", dtype_name(dtype));
  }
}

}  // namespace kuiper::kernels::cpu
