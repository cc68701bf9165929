#include <cmath>

#include "kernels/cpu/cpu_kernels.h"

namespace kuiper::kernels::cpu {

void rmsnorm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out,
             const DeviceContext&) {
  const int64_t n = x.dim(0), dim = x.dim(1);
  const float* in = x.data<float>();
  const float* w = weight.data<float>();
  float* y = out.data<float>();
#pragma omp parallel for if (n > 1)
  for (int64_t i = 0; i < n; ++i) {
    const float* row = in + i * dim;
    float ss = 0.f;
    for (int64_t k = 0; k < dim; ++k) ss += row[k] * row[k];
    const float scale = 1.f / std::sqrt(ss / float(dim) + eps);
    for (int64_t k = 0; k < dim; ++k) y[i * dim + k] = row[k] * scale * w[k];
  }
}

}  // namespace kuiper::kernels::cpu
