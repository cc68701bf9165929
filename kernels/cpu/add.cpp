#include "kernels/cpu/cpu_kernels.h"

namespace kuiper::kernels::cpu {

void add(const Tensor& a, const Tensor& b, const Tensor& out, const DeviceContext&) {
  const int64_t n = a.numel();
  const float* x = a.data<float>();
  const float* y = b.data<float>();
  float* z = out.data<float>();
#pragma omp parallel for simd if (n > (1 << 16))
  for (int64_t k = 0; k < n; ++k) z[k] = x[k] + y[k];
}

}  // namespace kuiper::kernels::cpu
