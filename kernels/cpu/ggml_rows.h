#pragma once
// Row readers of ggml's block types (kuiper/base/ggml_blocks.h), for weight_rows.h's dispatch:
// integer dot products with the activations quantized once per call (int8_dot.h) and rows
// dequantized to fp32 (SGEMM tiles, embedding lookups). Q8_0 and Q4_0 take the loops of our
// int8 and q4 with their scales read from the blocks; Q4_K and Q6_K split their 256-value
// super-blocks into the same 32-value blocks, with each sub-block's scale (and Q4_K's minimum)
// from the super-block's packed scales.
#include <cstring>

#include "kernels/cpu/int8_dot.h"
#include "kuiper/base/ggml_blocks.h"
#include "kuiper/tensor/weight.h"

namespace kuiper::kernels::cpu {

// Rows [rows, cols] of blocks B of kType; the row addressing every block reader shares.
template <DType kType, class B>
struct BlockRows {
  using Input = Int8Input;
  using Block = B;
  static constexpr int64_t kValues = block_values(kType);
  const uint8_t* data;
  int64_t cols;

  int64_t blocks() const { return cols / kValues; }
  const uint8_t* row(int64_t r) const { return data + r * blocks() * int64_t(sizeof(B)); }
  // Block i of row r (2-byte aligned at best: read its fields, never vector loads of it as B).
  const B& block(int64_t r, int64_t i) const {
    return reinterpret_cast<const B*>(row(r))[i];
  }
};

struct Q8_0Rows : BlockRows<DType::kQ8_0, BlockQ8_0> {
  static Q8_0Rows of(const Weight& w) { return {{static_cast<const uint8_t*>(w.values.raw_data()), w.cols()}}; }
  float dot(const Int8Input::Row& x, int64_t r) const {
    return dot_bytes(x, Blocks32<sizeof(BlockQ8_0), 0>{row(r)}, blocks());
  }
  void expand(int64_t r0, int64_t rows, float* dst) const;
};

struct Q4_0Rows : BlockRows<DType::kQ4_0, BlockQ4_0> {
  static Q4_0Rows of(const Weight& w) { return {{static_cast<const uint8_t*>(w.values.raw_data()), w.cols()}}; }
  float dot(const Int8Input::Row& x, int64_t r) const {
    return dot_nibbles(x, Blocks32<sizeof(BlockQ4_0), 8>{row(r)}, blocks(), true);
  }
  void expand(int64_t r0, int64_t rows, float* dst) const;
};

// A Q4_K row as 32-value blocks: block b is sub-block b % 8 of super-block b / 8, whose codes are
// the low (even b) or high (odd b) nibbles of 32 bytes; w = d * scale * u - dmin * min.
struct Q4KBlocks {
  static constexpr bool kMins = true;
  static constexpr int64_t kStride = sizeof(BlockQ4_K) / 8;  // bytes a 32-value block, on average
  const BlockQ4_K* super;

  const uint8_t* codes(int64_t b) const { return super[b >> 3].qs + 32 * ((b & 7) >> 1); }
  static Q4KScalesMins scales_mins(const BlockQ4_K& s) {
    uint32_t w[3];
    std::memcpy(w, s.scales, sizeof w);
    return q4k_scales_mins(w[0], w[1], w[2]);
  }
  static uint8_t byte(const uint32_t (&words)[2], int64_t j) {
    return uint8_t(words[j >> 2] >> (8 * (j & 3)));
  }
  float scale(int64_t b) const {
    const BlockQ4_K& s = super[b >> 3];
    return to_float(s.d) * float(byte(scales_mins(s).scales, b & 7));
  }
  float min(int64_t b) const {
    const BlockQ4_K& s = super[b >> 3];
    return to_float(s.dmin) * float(byte(scales_mins(s).mins, b & 7));
  }
#ifdef KUIPER_CPU_AVX2
  // b: a multiple of 8 (one super-block); scaled_blocks' vector loop only takes such steps.
  void load8(int64_t b, __m256& scales, __m256& mins) const {
    const BlockQ4_K& s = super[b >> 3];
    const Q4KScalesMins sm = scales_mins(s);
    auto widen8 = [](const uint32_t (&words)[2]) {
      int64_t bytes;
      std::memcpy(&bytes, words, sizeof bytes);
      return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bytes)));
    };
    scales = _mm256_mul_ps(_mm256_set1_ps(to_float(s.d)), widen8(sm.scales));
    mins = _mm256_mul_ps(_mm256_set1_ps(to_float(s.dmin)), widen8(sm.mins));
  }
#endif
};

struct Q4KRows : BlockRows<DType::kQ4_K, BlockQ4_K> {
  static Q4KRows of(const Weight& w) { return {{static_cast<const uint8_t*>(w.values.raw_data()), w.cols()}}; }
  float dot(const Int8Input::Row& x, int64_t r) const;
  void expand(int64_t r0, int64_t rows, float* dst) const;
};

// A Q6_K row as 32-value blocks: block b is values 32 (b % 8) .. of super-block b / 8, all with
// the super-block's d as their scale; the sub-scales of their two 16-value halves go into the
// integer products.
struct Q6KBlocks {
  static constexpr bool kMins = false;
  static constexpr int64_t kStride = sizeof(BlockQ6_K) / 8;
  const BlockQ6_K* super;

  const uint8_t* codes(int64_t b) const { return super[b >> 3].ql; }
  float scale(int64_t b) const { return to_float(super[b >> 3].d); }
  float min(int64_t) const { return 0.f; }
#ifdef KUIPER_CPU_AVX2
  void load8(int64_t b, __m256& scales, __m256&) const {
    scales = _mm256_set1_ps(to_float(super[b >> 3].d));
  }
#endif
};

struct Q6KRows : BlockRows<DType::kQ6_K, BlockQ6_K> {
  static Q6KRows of(const Weight& w) { return {{static_cast<const uint8_t*>(w.values.raw_data()), w.cols()}}; }
  float dot(const Int8Input::Row& x, int64_t r) const;
  void expand(int64_t r0, int64_t rows, float* dst) const;
};

}  // namespace kuiper::kernels::cpu
