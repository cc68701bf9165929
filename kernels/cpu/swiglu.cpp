#include <cmath>

#include "kernels/cpu/cpu_kernels.h"

namespace kuiper::kernels::cpu {

void swiglu(const Tensor& gate, const Tensor& up, const Tensor& out, const DeviceContext&) {
  const int64_t n = gate.numel();
  const float* g = gate.data<float>();
  const float* u = up.data<float>();
  float* y = out.data<float>();
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t k = 0; k < n; ++k) y[k] = g[k] / (1.f + std::exp(-g[k])) * u[k];
}

}  // namespace kuiper::kernels::cpu
