#include "kernels/cpu/cpu_kernels.h"

namespace kuiper::kernels::cpu {

void rope(const Tensor& x, const Tensor& positions, const Tensor& cos_sin, int head_dim,
          const DeviceContext&) {
  const int64_t n = x.dim(0), width = x.dim(1), half = head_dim / 2;
  const int32_t* pos = positions.data<int32_t>();
  const float* table = cos_sin.data<float>();
  float* data = x.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    KUIPER_CHECK(pos[i] >= 0 && pos[i] < cos_sin.dim(0), "position ", pos[i],
                 " outside the rotary table of ", cos_sin.dim(0));
    const float* cs = table + int64_t(pos[i]) * half * 2;
    float* row = data + i * width;
    for (int64_t h = 0; h < width; h += head_dim) {
      for (int64_t j = 0; j < half; ++j) {
        const float c = cs[2 * j], s = cs[2 * j + 1];
        const float x0 = row[h + 2 * j], x1 = row[h + 2 * j + 1];
        row[h + 2 * j] = x0 * c - x1 * s;
        row[h + 2 * j + 1] = x0 * s + x1 * c;
      }
    }
  }
}

}  // namespace kuiper::kernels::cpu
