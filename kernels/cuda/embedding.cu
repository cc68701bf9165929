// out[i, :] = table[tokens[i], :] widened to fp32. One block per token. The token id is read on
// the device (it changes every decoding step); an id outside the table cannot throw there, so
// its row comes out as NaN, which the next layers carry through to the logits.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace kuiper::kernels::cuda {
namespace {

template <class T>
__global__ void embedding_kernel(const int32_t* tokens, const T* table, float* out, int64_t vocab,
                                 int dim) {
  allow_dependent_launch();
  grid_dependency_wait();
  const int32_t id = tokens[blockIdx.x];
  float* row_out = out + int64_t(blockIdx.x) * dim;
  if (id < 0 || id >= vocab) {
    for (int d = threadIdx.x; d < dim; d += blockDim.x) row_out[d] = __int_as_float(0x7fc00000);
    return;
  }
  const T* row = table + int64_t(id) * dim;
  for (int d = threadIdx.x; d < dim; d += blockDim.x) row_out[d] = to_f32(row[d]);
}

}  // namespace

template <class T>
void embedding(const Tensor& tokens, const Tensor& table, const Tensor& out,
               const DeviceContext& ctx) {
  expect_tensor("embedding", "tokens", tokens, DType::kI32);
  expect_tensor("embedding", "table", table, dtype_of<T>());
  expect_tensor("embedding", "output", out, DType::kF32);
  KUIPER_CHECK(table.ndim() == 2, "embedding: table is ", table.describe(), ", expected 2-d");
  const int64_t n = tokens.numel(), dim = table.dim(1);
  expect_numel("embedding", "output", out, n * dim);
  if (n == 0) return;
  const int threads = int(std::min<int64_t>(256, (dim + 31) / 32 * 32));
  launch(embedding_kernel<DeviceType<T>>, unsigned(n), threads, 0, stream_of(ctx),
      tokens.data<int32_t>(), reinterpret_cast<const DeviceType<T>*>(table.data<T>()),
      out.data<float>(), table.dim(0), int(dim));
}

template void embedding<float>(const Tensor&, const Tensor&, const Tensor&, const DeviceContext&);
template void embedding<f16>(const Tensor&, const Tensor&, const Tensor&, const DeviceContext&);
template void embedding<bf16>(const Tensor&, const Tensor&, const Tensor&, const DeviceContext&);

}  // namespace kuiper::kernels::cuda
