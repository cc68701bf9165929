#pragma once
// Storage types for 16-bit floats and their conversions on the host. CUDA kernels reinterpret
// them as __half / __nv_bfloat16; the bit layouts are identical.
#include <bit>
#include <cstdint>
#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace kuiper {

struct f16 {
  uint16_t bits;
};
struct bf16 {
  uint16_t bits;
};

inline float to_float(bf16 v) { return std::bit_cast<float>(uint32_t(v.bits) << 16); }

inline bf16 to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {uint16_t((u >> 16) | 0x40)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                            // round to nearest even
  return {uint16_t(u >> 16)};
}

inline float to_float(f16 v) {
#if defined(__F16C__)
  return _cvtsh_ss(v.bits);
#else
  const uint32_t sign = uint32_t(v.bits & 0x8000u) << 16;
  uint32_t exp = (v.bits >> 10) & 0x1fu;
  uint32_t mant = v.bits & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return std::bit_cast<float>(sign);
    exp = 127 - 15 + 1;
    while (!(mant & 0x400u)) { mant <<= 1; --exp; }
    return std::bit_cast<float>(sign | (exp << 23) | ((mant & 0x3ffu) << 13));
  }
  return std::bit_cast<float>(sign | ((exp + 127 - 15) << 23) | (mant << 13));
#endif
}

inline f16 to_f16(float f) {
#if defined(__F16C__)
  return {_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)};
#else
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return {uint16_t(sign | 0x7e00u)};
  if (abs >= 0x477ff000u) return {uint16_t(sign | 0x7c00u)};  // overflow to inf
  if (abs < 0x38800000u) {                                     // subnormal or zero
    const float scaled = std::bit_cast<float>(abs) * 16777216.0f;  // * 2^24
    return {uint16_t(sign | uint16_t(__builtin_nearbyintf(scaled)))};
  }
  uint32_t r = abs + 0xc8000fffu + ((abs >> 13) & 1u);  // rebias exponent and round to nearest even
  return {uint16_t(sign | uint16_t(r >> 13))};
#endif
}

inline float to_float(float v) { return v; }

}  // namespace kuiper
