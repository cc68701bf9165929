#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/weight_rows.h"

namespace kuiper::kernels::cpu {

void embedding(const Tensor& tokens, const Weight& table, const Tensor& out, const DeviceContext&) {
  const int64_t n = tokens.numel(), vocab = table.rows(), dim = table.cols();
  const int32_t* ids = tokens.data<int32_t>();
  float* y = out.data<float>();
  with_weight_rows(table, [&](const auto& rows) {
    for (int64_t i = 0; i < n; ++i) {
      KUIPER_CHECK(ids[i] >= 0 && ids[i] < vocab, "token id ", ids[i], " outside the vocabulary of ",
                   vocab);
      rows.expand(ids[i], 1, y + i * dim);
    }
  });
}

}  // namespace kuiper::kernels::cpu
