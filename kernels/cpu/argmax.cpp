#include "kernels/cpu/cpu_kernels.h"

namespace kuiper::kernels::cpu {

void argmax(const Tensor& x, const Tensor& out, const DeviceContext&) {
  const int64_t rows = x.ndim() == 1 ? 1 : x.dim(0), cols = x.dim(-1);
  const float* data = x.data<float>();
  int32_t* best = out.data<int32_t>();
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = data + i * cols;
    int64_t arg = 0;
    for (int64_t k = 1; k < cols; ++k)
      if (row[k] > row[arg]) arg = k;
    best[i] = int32_t(arg);
  }
}

}  // namespace kuiper::kernels::cpu
