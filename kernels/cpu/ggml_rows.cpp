#include "kernels/cpu/ggml_rows.h"

namespace kuiper::kernels::cpu {

void Q8_0Rows::expand(int64_t r0, int64_t rows, float* dst) const {
  for (int64_t r = r0; r < r0 + rows; ++r)
    for (int64_t i = 0; i < blocks(); ++i, dst += 32) {
      const BlockQ8_0& b = block(r, i);
      const float d = to_float(b.d);
      for (int j = 0; j < 32; ++j) dst[j] = d * float(b.qs[j]);
    }
}

void Q4_0Rows::expand(int64_t r0, int64_t rows, float* dst) const {
  for (int64_t r = r0; r < r0 + rows; ++r)
    for (int64_t i = 0; i < blocks(); ++i, dst += 32) {
      const BlockQ4_0& b = block(r, i);
      const float d = to_float(b.d);
      for (int j = 0; j < 16; ++j) {
        dst[j] = d * float(int(b.qs[j] & 15) - 8);
        dst[j + 16] = d * float(int(b.qs[j] >> 4) - 8);
      }
    }
}

float Q4KRows::dot(const Int8Input::Row& x, int64_t r) const {
  const Q4KBlocks w{&block(r, 0)};
  const int64_t n = 8 * blocks();
#ifdef KUIPER_CPU_AVX2
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i ones = _mm256_set1_epi16(1);
  return scaled_blocks(x, w, n, [&](int64_t b) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.codes(b)));
    // Low nibbles for even sub-blocks, high for odd: a shift by 0 or 4, no branch.
    const __m256i codes = _mm256_and_si256(_mm256_srl_epi16(raw, _mm_cvtsi64_si128(4 * (b & 1))), low4);
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + 32 * b));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(codes, xq), ones);
  });
#else
  return scaled_blocks_scalar(x, w, n, [&](int64_t b) {
    const uint8_t* q = w.codes(b);
    const int shift = (b & 1) ? 4 : 0;
    int32_t dot = 0;
    for (int64_t j = 0; j < 32; ++j) dot += int32_t((q[j] >> shift) & 15) * x.q[32 * b + j];
    return dot;
  });
#endif
}

void Q4KRows::expand(int64_t r0, int64_t rows, float* dst) const {
  for (int64_t r = r0; r < r0 + rows; ++r)
    for (int64_t i = 0; i < blocks(); ++i) {
      const Q4KBlocks w{&block(r, i)};
      for (int64_t b = 0; b < 8; ++b, dst += 32) {
        const float scale = w.scale(b), min = w.min(b);
        const uint8_t* q = w.codes(b);
        const int shift = (b & 1) ? 4 : 0;
        for (int j = 0; j < 32; ++j) dst[j] = scale * float((q[j] >> shift) & 15) - min;
      }
    }
}

namespace {

// Code j (0..31, less 32) of 32-value block b (0..7) of a Q6_K super-block: ggml_blocks.h.
int q6k_code(const BlockQ6_K& s, int64_t b, int64_t j) {
  const int64_t half = b >> 2, quarter = b & 3;
  const uint8_t low = s.ql[64 * half + 32 * (quarter & 1) + j];
  const uint8_t high = s.qh[32 * half + j];
  return int(((quarter >= 2 ? low >> 4 : low) & 15) | (((high >> (2 * quarter)) & 3) << 4)) - 32;
}

}  // namespace

float Q6KRows::dot(const Int8Input::Row& x, int64_t r) const {
  const Q6KBlocks w{&block(r, 0)};
  const int64_t n = 8 * blocks();
#ifdef KUIPER_CPU_AVX2
  const __m256i low4 = _mm256_set1_epi8(0x0f), three = _mm256_set1_epi8(3);
  const __m256i offset = _mm256_set1_epi8(32);
  return scaled_blocks(x, w, n, [&](int64_t b) {
    const BlockQ6_K& s = w.super[b >> 3];
    const int64_t half = (b & 7) >> 2, quarter = b & 3;
    const __m256i ql = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(s.ql + 64 * half + 32 * (quarter & 1)));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.qh + 32 * half));
    const __m256i low = _mm256_and_si256(_mm256_srl_epi16(ql, _mm_cvtsi64_si128(4 * (quarter >> 1))), low4);
    const __m256i high =
        _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi64_si128(2 * quarter)), three);
    // codes - 32 in [-32, 31]; as in dot_bytes, |w| times x with w's sign.
    const __m256i q = _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(high, 4)), offset);
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + 32 * b));
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(xq, q));
    // Each 16-value half times its sub-scale: pair sums <= 2 * 32 * 127 and scales <= 128 in
    // magnitude, so the int32 sums cannot overflow.
    const int64_t sub = 2 * (b & 7);
    const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(s.scales[sub + 1]), _mm_set1_epi16(s.scales[sub]));
    return _mm256_madd_epi16(pairs, scales);
  });
#else
  return scaled_blocks_scalar(x, w, n, [&](int64_t b) {
    const BlockQ6_K& s = w.super[b >> 3];
    int32_t dot = 0;
    for (int64_t j = 0; j < 32; ++j)
      dot += s.scales[2 * (b & 7) + j / 16] * q6k_code(s, b & 7, j) * x.q[32 * b + j];
    return dot;
  });
#endif
}

void Q6KRows::expand(int64_t r0, int64_t rows, float* dst) const {
  for (int64_t r = r0; r < r0 + rows; ++r)
    for (int64_t i = 0; i < blocks(); ++i) {
      const BlockQ6_K& s = block(r, i);
      const float d = to_float(s.d);
      for (int64_t b = 0; b < 8; ++b, dst += 32)
        for (int64_t j = 0; j < 32; ++j)
          dst[j] = d * float(s.scales[2 * b + j / 16]) * float(q6k_code(s, b, j));
    }
}

}  // namespace kuiper::kernels::cpu
