#include <cstring>

#include "kernels/cpu/cpu_kernels.h"

namespace kuiper::kernels::cpu {

void scatter_rows(const Tensor& src, const Tensor& positions, const Tensor& dst,
                  const DeviceContext&) {
  const int64_t n = src.dim(0), width = src.dim(1);
  const int32_t* pos = positions.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    KUIPER_CHECK(pos[i] >= 0 && pos[i] < dst.dim(0), "position ", pos[i], " outside the cache of ",
                 dst.dim(0), " rows");
    std::memcpy(dst.data<float>() + pos[i] * width, src.data<float>() + i * width,
                size_t(width) * sizeof(float));
  }
}

}  // namespace kuiper::kernels::cpu
