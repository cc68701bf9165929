#include "kernels/cpu/int8_dot.h"

#include <algorithm>
#include <cmath>

namespace kuiper::kernels::cpu {

Int8Input Int8Input::of(const float* xs, int64_t n, int64_t k) {
  Int8Input in;
  in.k = k;
  in.xs = xs;
  if (k % kBlock != 0) return in;  // no whole blocks: readers take the fp32 values
  const int64_t blocks = k / kBlock;
  in.q.resize(size_t(n * k));
  in.scale.resize(size_t(n * blocks));
  in.sum.resize(size_t(n * blocks));
  for (int64_t b = 0; b < n * blocks; ++b) {
    const float* x = xs + b * kBlock;
    float max = 0.f;
    for (int64_t j = 0; j < kBlock; ++j) max = std::max(max, std::fabs(x[j]));
    const float scale = max / 127.f, inverse = max > 0.f ? 127.f / max : 0.f;
    int32_t sum = 0;
    for (int64_t j = 0; j < kBlock; ++j) {
      const auto v = int8_t(std::lrint(x[j] * inverse));
      in.q[size_t(b * kBlock + j)] = v;
      sum += v;
    }
    in.scale[size_t(b)] = scale;
    in.sum[size_t(b)] = scale * float(sum);
  }
  return in;
}

}  // namespace kuiper::kernels::cpu
