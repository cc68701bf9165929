#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/vec.h"

namespace kuiper::kernels::cpu {

void embedding(const Tensor& tokens, const Tensor& table, const Tensor& out, const DeviceContext&) {
  const int64_t n = tokens.numel(), vocab = table.dim(0), dim = table.dim(1);
  const int32_t* ids = tokens.data<int32_t>();
  float* y = out.data<float>();
  with_float_type(table.dtype(), [&]<class T>(T) {
    const T* rows = static_cast<const T*>(table.raw_data());
    for (int64_t i = 0; i < n; ++i) {
      KUIPER_CHECK(ids[i] >= 0 && ids[i] < vocab, "token id ", ids[i], " outside the vocabulary of ",
                   vocab);
      widen(rows + ids[i] * dim, y + i * dim, dim);
    }
  });
}

}  // namespace kuiper::kernels::cpu
