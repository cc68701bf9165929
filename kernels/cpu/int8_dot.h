#pragma once
// Integer dot products of quantized weight rows with the activations quantized to int8 per block
// of 32 values (Int8Input, once per call), as llama.cpp's Q8_0 and Q4_0 do: one maddubs a 32-value
// block instead of four widen-and-FMA steps. Every quantized storage is a sequence of 32-value
// blocks; what differs is where a block's codes and scales are, which a "block layout" says:
//   codes(b)            block b's codes (32 bytes of int8, or 16 of nibbles, ...)
//   scale(b), min(b)    the weight scale of block b, and what its codes' offset costs per unit of
//                       x's block sum (w = scale * code - min); kMins: whether there is one
//   load8(b, s, m)      the same for blocks b .. b + 7 as vectors (AVX2)
//   kStride             bytes between the codes of consecutive blocks (for prefetching)
// so one loop (scaled_blocks) serves our int8 and q4 (codes and group scales apart) and ggml's
// Q8_0, Q4_0, Q4_K and Q6_K (scales inside the blocks, ggml_rows.h).
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/vec.h"

namespace kuiper::kernels::cpu {

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

// An fp16 value at an address of any alignment.
inline float load_f16(const void* p) {
  f16 h;
  std::memcpy(&h, p, sizeof h);
  return to_float(h);
}

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

// Codes of `kCodeBytes` a block, contiguous, with one scale S per group of per_group blocks
// (our int8 and q4, kuiper/tensor/weight.h), the codes standing for code - kOffset.
template <class S, int kCodeBytes, int kOffset>
struct GroupedBlocks {
  static constexpr bool kMins = kOffset != 0;
  static constexpr int64_t kStride = kCodeBytes;
  const uint8_t* q;
  const S* s;
  int64_t per_group;
  int shift;  // log2(per_group) when that is 1, 2, 4 or 8 (the vector loop)

  const uint8_t* codes(int64_t b) const { return q + b * kCodeBytes; }
  float scale(int64_t b) const { return to_float(s[b / per_group]); }
  float min(int64_t b) const { return float(kOffset) * scale(b); }
#ifdef KUIPER_CPU_AVX2
  void load8(int64_t b, __m256& scales, __m256& mins) const {
    scales = group_scales8(s + (b >> shift), shift);
    if constexpr (kMins) mins = _mm256_mul_ps(scales, _mm256_set1_ps(float(kOffset)));
  }
#endif
};

// ggml's 32-value blocks of kBytes, an fp16 scale and then the codes (Q8_0, Q4_0), standing
// for code - kOffset.
template <int kBytes, int kOffset>
struct Blocks32 {
  static constexpr bool kMins = kOffset != 0;
  static constexpr int64_t kStride = kBytes;
  const uint8_t* row;

  const uint8_t* codes(int64_t b) const { return row + b * kBytes + 2; }
  float scale(int64_t b) const { return load_f16(row + b * kBytes); }
  float min(int64_t b) const { return float(kOffset) * scale(b); }
#ifdef KUIPER_CPU_AVX2
  void load8(int64_t b, __m256& scales, __m256& mins) const {
    // Inserted one by one: 8 stores and a 16-byte load of them would stall store forwarding.
    auto d = [&](int j) {
      uint16_t h;
      std::memcpy(&h, row + (b + j) * kBytes, 2);
      return short(h);
    };
    scales = _mm256_cvtph_ps(_mm_setr_epi16(d(0), d(1), d(2), d(3), d(4), d(5), d(6), d(7)));
    if constexpr (kMins) mins = _mm256_mul_ps(scales, _mm256_set1_ps(float(kOffset)));
  }
#endif
};

#ifdef KUIPER_CPU_AVX2
// sum over the 32-value blocks b of a row of scale(b) * x.scale[b] * products(b) (8 int32
// partial sums of block b's integer products), less sum_b min(b) * x.sum[b] (the codes' offset).
// 8 blocks at a time: their sums reduced into one vector (a lane a block) by horizontal adds,
// times their 8 scale products in one FMA, the minimums' share in another (3-5% faster than a
// permute and an FMA a block).
template <class Layout, class Products>
inline float scaled_blocks(const Int8Input::Row& x, const Layout& w, int64_t blocks,
                           Products products) {
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, offsets = _mm256_setzero_ps();
  float tail_offsets = 0.f;
  int64_t b = 0;
  for (; b + 8 <= blocks; b += 8) {
    const char* next = reinterpret_cast<const char*>(w.codes(b));
    for (int64_t line = 0; line < 8 * Layout::kStride; line += 64)
      _mm_prefetch(next + line + kPrefetchBytes, _MM_HINT_T0);
    __m256 scales, mins;
    w.load8(b, scales, mins);
    const __m256 both = _mm256_mul_ps(scales, _mm256_loadu_ps(x.scale + b));
    if constexpr (Layout::kMins) offsets = _mm256_fmadd_ps(mins, _mm256_loadu_ps(x.sum + b), offsets);
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
    acc[b & 1] = _mm256_fmadd_ps(_mm256_set1_ps(w.scale(b) * x.scale[b]),
                                 _mm256_cvtepi32_ps(products(b)), acc[b & 1]);
    if constexpr (Layout::kMins) tail_offsets += w.min(b) * x.sum[b];
  }
  return hsum(_mm256_add_ps(acc[0], acc[1])) - (tail_offsets + hsum(offsets));
}
#endif

// scaled_blocks without SIMD: block_dot(b) is block b's integer dot product.
template <class Layout, class BlockDot>
inline float scaled_blocks_scalar(const Int8Input::Row& x, const Layout& w, int64_t blocks,
                                  BlockDot block_dot) {
  float sum = 0.f, offsets = 0.f;
  for (int64_t b = 0; b < blocks; ++b) {
    sum += w.scale(b) * x.scale[b] * float(block_dot(b));
    if constexpr (Layout::kMins) offsets += w.min(b) * x.sum[b];
  }
  return sum - offsets;
}

// Whether groups of `group` values are 1, 2, 4 or 8 whole blocks of 32 (the vector loops).
inline bool whole_blocks(int64_t group) {
  const int64_t per = group / 32;
  return group % 32 == 0 && per <= 8 && (per & (per - 1)) == 0;
}
// log2 of the blocks a group of `group` values holds (GroupedBlocks::shift, for whole_blocks groups).
inline int log2_blocks(int64_t group) {
  return group >= 32 ? __builtin_ctzll(uint64_t(group / 32)) : 0;
}

// The dot product of x with `blocks` blocks of nibble codes (16 bytes a block, byte j holding
// value j in its low nibble and j + 16 in its high one: our q4, ggml's Q4_0). `vector`: the
// layout's load8 is valid (the vector loop).
template <class Layout>
inline float dot_nibbles(const Int8Input::Row& x, const Layout& w, int64_t blocks, bool vector) {
#ifdef KUIPER_CPU_AVX2
  if (vector) {
    const __m128i low4 = _mm_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    return scaled_blocks(x, w, blocks, [&](int64_t b) {
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.codes(b)));
      const __m256i codes =
          _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), low4), _mm_and_si128(raw, low4));
      const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + 32 * b));
      // unsigned codes (<= 15) times signed values: pair sums fit int16 without saturating.
      return _mm256_madd_epi16(_mm256_maddubs_epi16(codes, xq), ones);
    });
  }
#endif
  (void)vector;
  return scaled_blocks_scalar(x, w, blocks, [&](int64_t b) {
    const uint8_t* q = w.codes(b);
    int32_t dot = 0;
    for (int64_t j = 0; j < 16; ++j) {
      dot += int32_t(q[j] & 15) * x.q[32 * b + j];
      dot += int32_t(q[j] >> 4) * x.q[32 * b + j + 16];
    }
    return dot;
  });
}

// The dot product of x with `blocks` blocks of 32 int8 codes (our int8 in groups of 1, 2, 4 or 8
// blocks, ggml's Q8_0).
template <class Layout>
inline float dot_bytes(const Int8Input::Row& x, const Layout& w, int64_t blocks) {
#ifdef KUIPER_CPU_AVX2
  const __m256i ones = _mm256_set1_epi16(1);
  return scaled_blocks(x, w, blocks, [&](int64_t b) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.codes(b)));
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + 32 * b));
    // maddubs takes unsigned x signed bytes: |w| times x with w's sign (|codes| <= 127, so the
    // pair sums fit int16).
    const __m256i products = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(xq, q));
    return _mm256_madd_epi16(products, ones);
  });
#else
  return scaled_blocks_scalar(x, w, blocks, [&](int64_t b) {
    const auto* q = reinterpret_cast<const int8_t*>(w.codes(b));
    int32_t dot = 0;
    for (int64_t j = 0; j < 32; ++j) dot += int32_t(q[j]) * x.q[32 * b + j];
    return dot;
  });
#endif
}

}  // namespace kuiper::kernels::cpu
