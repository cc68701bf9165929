#pragma once
// Dot products of a run of float weight rows with the few positions of a batched decode step,
// for matmul's row-by-row pass. With several positions that pass is bound by arithmetic, not by
// DRAM, on few cores, so each weight vector is loaded and widened once for every position, and
// the rows are walked one block of k at a time, so that the positions' slice of x stays in L1
// while the rows stream past: 8 positions of 2048 floats are 64 KB, twice Zen 3's L1D, and read
// from L2 for every row they held the FMAs to about one a cycle.
#include <algorithm>
#include <cstdint>

#include "kernels/cpu/vec.h"
#include "kuiper/tensor/tensor.h"

namespace kuiper::kernels::cpu {

// Positions a call takes at most; the results of a row are kMaxPositions floats apart.
constexpr int kMaxPositions = 8;

// Values of k a block holds: P positions' slices fill 16 KB, half of L1D, leaving the other
// half to the weights streaming through.
constexpr int64_t values_per_block(int positions) { return (4096 / positions) & ~int64_t(7); }

// The positions xs [positions, n] of a call laid out for position_dots, once per call: block b
// holds, one position after another, each position's values_per_block values of k from
// b * values_per_block on (the last block's padded). In place, rows of x a multiple of 4 KB
// apart (2048 floats: 8 KB) fall into the same L1 sets, and eight of them and the weights
// streaming past do not fit those sets' eight ways; a block is one contiguous stretch instead.
inline Tensor position_blocks(const float* xs, int positions, int64_t n) {
  const int64_t block = values_per_block(positions), blocks = (n + block - 1) / block;
  Tensor packed(DType::kF32, {blocks * positions * block});
  float* out = packed.data<float>();
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t k0 = b * block, len = std::min(block, n - k0);
    for (int p = 0; p < positions; ++p) std::copy_n(xs + p * n + k0, len, out + (b * positions + p) * block);
  }
  return packed;
}

#ifdef KUIPER_CPU_AVX2
// [sum(v[0]), ..., sum(v[7])]: the eight horizontal sums in one vector.
inline __m256 sums_of(const __m256 (&v)[kMaxPositions]) {
  const __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  const __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
  // a = [s0 s1 s2 s3 | s0' s1' s2' s3'] with s = low lanes' sums, s' = high lanes'; b for 4..7.
  return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}

// Lane p: sum_k x[p * stride + k] * w[k] for k < len, p < P (lanes past P are zero), asking
// for the cache line of `ahead` (a later row's weights, or null) at each line of w it reads.
// P <= 4 keeps two accumulators a position, so that at least eight FMA chains are in flight.
template <int P, class T>
inline __m256 block_dots(const float* x, int64_t stride, const T* w, int64_t len, const T* ahead) {
  constexpr int kAcc = P <= 4 ? 2 : 1;
  constexpr int64_t kLine = 64 / sizeof(T);  // weights a cache line holds
  __m256 acc[kAcc][kMaxPositions];  // positions from P on stay zero
  for (auto& a : acc)
    for (__m256& v : a) v = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + kLine <= len; k += kLine) {
    if (ahead) _mm_prefetch(reinterpret_cast<const char*>(ahead + k), _MM_HINT_T0);
    for (int64_t j = 0; j < kLine; j += 8) {
      const int a = int(j / 8) % kAcc;
      const __m256 wv = load8(w + k + j);
      for (int p = 0; p < P; ++p)
        acc[a][p] = _mm256_fmadd_ps(_mm256_load_ps(x + p * stride + k + j), wv, acc[a][p]);
    }
  }
  for (; k + 8 <= len; k += 8) {
    const __m256 wv = load8(w + k);
    for (int p = 0; p < P; ++p) acc[0][p] = _mm256_fmadd_ps(_mm256_load_ps(x + p * stride + k), wv, acc[0][p]);
  }
  if constexpr (kAcc == 2)
    for (int p = 0; p < P; ++p) acc[0][p] = _mm256_add_ps(acc[0][p], acc[1][p]);
  __m256 sums = sums_of(acc[0]);
  if (k < len) {
    alignas(32) float tail[kMaxPositions] = {};
    for (int p = 0; p < P; ++p)
      for (int64_t j = k; j < len; ++j) tail[p] += x[p * stride + j] * to_float(w[j]);
    sums = _mm256_add_ps(sums, _mm256_load_ps(tail));
  }
  return sums;
}

// position_dots for P positions: blocks of k outside, rows inside, each row's partial sums added
// up in out. The weights of the row two ahead are asked for while a row's block is multiplied
// (the hardware prefetcher does not follow rows a whole row apart).
template <int P, class T>
inline void position_dots_of(const float* blocks, const T* w, int64_t n, int64_t rows, float* out) {
  constexpr int64_t kBlock = values_per_block(P), kAhead = 2;
  for (int64_t k0 = 0; k0 < n; k0 += kBlock) {
    const int64_t len = std::min(kBlock, n - k0);
    const float* x = blocks + k0 * P;
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = w + r * n + k0;
      // The same block of the row kAhead on, or the next block's first rows.
      const T* ahead = r + kAhead < rows ? row + kAhead * n
                       : k0 + len < n    ? w + (r + kAhead - rows) * n + k0 + len
                                         : nullptr;
      const __m256 sums = block_dots<P>(x, kBlock, row, len, ahead);
      float* o = out + r * kMaxPositions;
      _mm256_storeu_ps(o, k0 == 0 ? sums : _mm256_add_ps(_mm256_loadu_ps(o), sums));
    }
  }
}
#endif

// out[r * kMaxPositions + p] = sum_k xs[p * n + k] * w[r * n + k] for the rows of w [rows, n]
// and the positions of xs [positions, n], 2 <= positions <= kMaxPositions, given as their
// position_blocks. Sums in another order than dot(), which single positions keep.
template <class T>
inline void position_dots(const Tensor& blocks, int positions, const T* w, int64_t n, int64_t rows, float* out) {
  const float* x = blocks.data<float>();
#ifdef KUIPER_CPU_AVX2
  switch (positions) {
    case 2: return position_dots_of<2>(x, w, n, rows, out);
    case 3: return position_dots_of<3>(x, w, n, rows, out);
    case 4: return position_dots_of<4>(x, w, n, rows, out);
    case 5: return position_dots_of<5>(x, w, n, rows, out);
    case 6: return position_dots_of<6>(x, w, n, rows, out);
    case 7: return position_dots_of<7>(x, w, n, rows, out);
    case 8: return position_dots_of<8>(x, w, n, rows, out);
    default: fail("position_dots: ", positions, " positions");
  }
#else
  const int64_t block = values_per_block(positions);
  for (int64_t r = 0; r < rows; ++r)
    for (int p = 0; p < positions; ++p) {
      float sum = 0.f;
      for (int64_t k0 = 0; k0 < n; k0 += block)
        sum += dot(x + k0 * positions + p * block, w + r * n + k0, std::min(block, n - k0));
      out[r * kMaxPositions + p] = sum;
    }
#endif
}

}  // namespace kuiper::kernels::cpu
