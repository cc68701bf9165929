#pragma once
// Dot products of a run of float weight rows with the few positions of a batched decode step,
// for matmul's row-by-row pass. With several positions that pass is bound by arithmetic, not by
// DRAM, on few cores, so each weight vector is loaded and widened once for every position, each
// vector of x once for a few rows at a time, and the rows are walked one block of k at a time,
// so that the positions' slice of x stays in L1 while the rows stream past: 8 positions of 2048
// floats are 64 KB, twice Zen 3's L1D, and read from L2 for every row they held the FMAs to
// about one a cycle.
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

// v, which the compiler must now keep in a register. GCC folds a load into every FMA that uses
// it, so a vector of x multiplied with several rows' weights was loaded once for each row, and
// the loads, not the FMAs, bounded the loop (Zen 4 VM, 2 rows x 8 positions from L1: 40 GMAC/s
// a core with the folded loads, 51 with x loaded once).
inline __m256 in_register(__m256 v) {
#ifdef __AVX512VL__
  __asm__("" : "+v"(v));  // any of the 32 registers
#else
  __asm__("" : "+x"(v));
#endif
  return v;
}

// Registers for accumulators: 32 vector registers with AVX-512VL (its ymm16-31 serve AVX2 code
// too), 16 without; a few stay free for the rows' weights and a vector of x.
#ifdef __AVX512VL__
constexpr int kAccumulators = 24;
#else
constexpr int kAccumulators = 12;
#endif

// Rows a block_dots call multiplies at once for P positions: each vector of x loaded feeds R
// FMAs, and R * P accumulators (FMA chains) are in flight, as many as the registers allow. One
// row of 8 positions had 9 loads to 8 FMAs and only 8 chains, 4-cycle FMAs two a cycle: on the
// Zen 4 VM (AVX-512VL) 3 rows multiply 8 positions at 53 GMAC/s a core from L2
// against 44 for one row, and a TinyLlama layer's 8-position projections (cpu_matmul_bench, 2
// threads) take 5.35 ms against 6.55; 2 rows were 3% slower than 3 from DRAM, and 4 (32
// accumulators) spill registers and were no faster.
// (With 16 registers, 8 positions as two groups of 4 with 3 rows at once, the rows' block read
// twice, were slower: 7.4-7.6 against 5.8-6.4 ms a TinyLlama layer, an x86-64-v3 build on the
// Zen 4 VM.)
template <int P>
constexpr int rows_at_once() { return std::clamp(kAccumulators / P, 1, 4); }

// Lane p of sums[i]: sum_k x[p * stride + k] * w[i][k] for k < len, p < P (lanes past P are
// zero), for R rows at once, asking at each line of w[i] it reads for the line of ahead[i] (a
// later row's weights, or null) into L1 and of later[i] (the row's next block, or null) into
// L2. With R * P <= 4 two accumulators a position keep at least eight FMA chains in flight.
template <int P, int R, class T>
inline void block_dots(const float* x, int64_t stride, const T* const (&w)[R], int64_t len,
                       const T* const (&ahead)[R], const T* const (&later)[R], __m256 (&sums)[R]) {
  constexpr int kAcc = R * P <= 4 ? 2 : 1;
  constexpr int64_t kLine = 64 / sizeof(T);  // weights a cache line holds
  __m256 acc[kAcc][R][kMaxPositions];  // positions from P on stay zero
  for (auto& a : acc)
    for (auto& row : a)
      for (__m256& v : row) v = _mm256_setzero_ps();
  const auto fmas = [&](int a, int64_t k) {
    __m256 wv[R];
    for (int i = 0; i < R; ++i) wv[i] = load8(w[i] + k);
    for (int p = 0; p < P; ++p) {
      __m256 xv = _mm256_load_ps(x + p * stride + k);
      if constexpr (R > 1) xv = in_register(xv);
      for (int i = 0; i < R; ++i) acc[a][i][p] = _mm256_fmadd_ps(xv, wv[i], acc[a][i][p]);
    }
  };
  int64_t k = 0;
  for (; k + kLine <= len; k += kLine) {
    for (int i = 0; i < R; ++i)
      if (ahead[i]) _mm_prefetch(reinterpret_cast<const char*>(ahead[i] + k), _MM_HINT_T0);
    for (int i = 0; i < R; ++i)
      if (later[i]) _mm_prefetch(reinterpret_cast<const char*>(later[i] + k), _MM_HINT_T1);
    for (int64_t j = 0; j < kLine; j += 8) fmas(int(j / 8) % kAcc, k + j);
  }
  for (; k + 8 <= len; k += 8) fmas(0, k);
  for (int i = 0; i < R; ++i) {
    if constexpr (kAcc == 2)
      for (int p = 0; p < P; ++p) acc[0][i][p] = _mm256_add_ps(acc[0][i][p], acc[1][i][p]);
    sums[i] = sums_of(acc[0][i]);
    if (k < len) {
      alignas(32) float tail[kMaxPositions] = {};
      for (int p = 0; p < P; ++p)
        for (int64_t j = k; j < len; ++j) tail[p] += x[p * stride + j] * to_float(w[i][j]);
      sums[i] = _mm256_add_ps(sums[i], _mm256_load_ps(tail));
    }
  }
}

// position_dots for P positions: blocks of k outside, rows inside, R rows at a time (a last few
// one at a time), each row's partial sums added up in out. While a group's block is multiplied
// the next group's block is asked for into L1 (the hardware prefetcher does not follow rows a
// whole row apart), and the group's next block into L2: a whole pass over the rows ahead of its
// use, it comes from DRAM while the FMAs run instead of after the L1 prefetch asks for it (from
// DRAM, one thread: 8 positions 9% faster).
template <int P, class T>
inline void position_dots_of(const float* blocks, const T* w, int64_t n, int64_t rows, float* out) {
  constexpr int64_t kBlock = values_per_block(P);
  for (int64_t k0 = 0; k0 < n; k0 += kBlock) {
    const int64_t len = std::min(kBlock, n - k0);
    const float* x = blocks + k0 * P;
    // Row r's block in the order the rows are walked: past the last row, the next block's rows.
    const auto upcoming = [&](int64_t r) -> const T* {
      return r < rows ? w + r * n + k0 : k0 + len < n ? w + (r - rows) * n + k0 + len : nullptr;
    };
    const auto rows_of = [&]<int R>(int64_t r) {
      const T* row[R];
      const T* ahead[R];
      const T* later[R];
      for (int i = 0; i < R; ++i) {
        row[i] = w + (r + i) * n + k0, ahead[i] = upcoming(r + i + std::max(R, 2));
        later[i] = k0 + len < n ? row[i] + kBlock : nullptr;
      }
      __m256 sums[R];
      block_dots<P, R>(x, kBlock, row, len, ahead, later, sums);
      for (int i = 0; i < R; ++i) {
        float* o = out + (r + i) * kMaxPositions;
        _mm256_storeu_ps(o, k0 == 0 ? sums[i] : _mm256_add_ps(_mm256_loadu_ps(o), sums[i]));
      }
    };
    constexpr int R = rows_at_once<P>();
    int64_t r = 0;
    for (; r + R <= rows; r += R) rows_of.template operator()<R>(r);
    for (; r < rows; ++r) rows_of.template operator()<1>(r);
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
