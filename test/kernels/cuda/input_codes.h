#pragma once
// The codes of a GEMV input as the kernel that writes it quantizes them (kernels.h:
// MatmulInput::codes), computed on the host, and a comparison of two such tensors.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>

#include "kernels/kernels.h"
#include "kuiper/tensor/tensor.h"

namespace kuiper::test {

// x (one row of `in` values) as its producer quantizes it for the GEMVs that read it
// (kernels.h: MatmulInput::codes): codes of x times norm (or x) in blocks of 8, one fp32 scale a
// block, then each block's sum of x^2.
inline Tensor input_codes(std::span<const float> x, std::span<const float> norm = {}) {
  const int64_t in = int64_t(x.size()), block = kernels::kInputCodeBlock;
  Tensor codes(DType::kI8, {kernels::input_codes_bytes(in)});
  auto* q = static_cast<int8_t*>(codes.raw_data());
  auto* scale = reinterpret_cast<float*>(q + in);
  float* sums = scale + in / block;
  for (int64_t b = 0; b < in; b += block) {
    float max = 0.f, v[8], ss = 0.f;
    for (int64_t j = 0; j < block; ++j) {
      v[j] = norm.empty() ? x[b + j] : x[b + j] * norm[b + j];
      max = std::max(max, std::fabs(v[j]));
      ss += x[b + j] * x[b + j];
    }
    const float inverse = max > 0.f ? 127.f / max : 0.f;
    for (int64_t j = 0; j < block; ++j) q[b + j] = int8_t(std::nearbyint(v[j] * inverse));
    scale[b / block] = max / 127.f;
    sums[b / block] = ss;
  }
  return codes;
}

// The codes and scales of two codes tensors differ nowhere, and the block sums only by their
// rounding (the kernel adds them in a tree, perhaps fused): the count of what differs.
inline int64_t codes_differences(const Tensor& got, const Tensor& want, int64_t in) {
  const auto* g = static_cast<const int8_t*>(got.raw_data());
  const auto* w = static_cast<const int8_t*>(want.raw_data());
  const int64_t exact = in + in / kernels::kInputCodeBlock * int64_t(sizeof(float));
  int64_t wrong = 0;
  for (int64_t i = 0; i < exact; ++i) wrong += g[i] != w[i];
  const auto* gs = reinterpret_cast<const float*>(g + exact);
  const auto* ws = reinterpret_cast<const float*>(w + exact);
  for (int64_t i = 0; i < in / kernels::kInputCodeBlock; ++i)
    wrong += !(std::fabs(gs[i] - ws[i]) <= 1e-6f * std::fabs(ws[i]));
  return wrong;
}

}  // namespace kuiper::test
