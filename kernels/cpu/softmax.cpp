#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/vec.h"

namespace kuiper::kernels::cpu {

void softmax(const Tensor& x, const DeviceContext&) {
  const int64_t rows = x.ndim() == 1 ? 1 : x.dim(0), cols = x.dim(-1);
  float* data = x.data<float>();
#pragma omp parallel for if (rows > 1)
  for (int64_t i = 0; i < rows; ++i) softmax_inplace(data + i * cols, cols);
}

}  // namespace kuiper::kernels::cpu
