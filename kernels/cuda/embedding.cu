// out[i, :] = table[tokens[i], :] widened to fp32. One block per token. The token id is read on
// the device (it changes every decoding step); an id outside the table cannot throw there, so
// its row comes out as NaN, which the next layers carry through to the logits.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/ggml_blocks.cuh"

namespace kuiper::kernels::cuda {
namespace {

// Element d of table row `id` as fp32: a float table, or codes Q (Int8Codes or Q4Codes of a
// device scale type with one scale per `group` values of a row, or a ggml block type).
template <class T>
struct FloatTable {
  const T* table;
  __device__ float operator()(int64_t id, int dim, int d) const { return to_f32(table[id * dim + d]); }
};
template <class Q>
struct CodesTable {
  const void* codes;
  const void* scales;  // null for ggml blocks
  int group;
  __device__ float operator()(int64_t id, int dim, int d) const {
    return weight_value<Q>(weight_row<Q>(codes, id, dim), scale_row_of<Q>(scales, id, dim, group),
                           d, group);
  }
};

template <class Table>
__global__ void embedding_kernel(const int32_t* tokens, Table table, float* out, int64_t vocab,
                                 int dim) {
  allow_dependent_launch();
  grid_dependency_wait();
  const int32_t id = tokens[blockIdx.x];
  float* row_out = out + int64_t(blockIdx.x) * dim;
  const bool inside = id >= 0 && id < vocab;
  for (int d = threadIdx.x; d < dim; d += blockDim.x)
    row_out[d] = inside ? table(id, dim, d) : __int_as_float(0x7fc00000);
}

// Checks the arguments; returns (tokens, dim).
std::pair<int64_t, int64_t> check_embedding(const Tensor& tokens, const Weight& table,
                                            const Tensor& out, DType dtype) {
  expect_tensor("embedding", "tokens", tokens, DType::kI32);
  expect_tensor("embedding", "table", table.values, dtype);
  expect_tensor("embedding", "output", out, DType::kF32);
  check_weight(table, "embedding");
  const int64_t n = tokens.numel(), dim = table.cols();
  expect_numel("embedding", "output", out, n * dim);
  return {n, dim};
}

int threads_for(int64_t dim) { return int(std::min<int64_t>(256, (dim + 31) / 32 * 32)); }

}  // namespace

template <class T>
void embedding(const Tensor& tokens, const Weight& table, const Tensor& out,
               const DeviceContext& ctx) {
  const auto [n, dim] = check_embedding(tokens, table, out, dtype_of<T>());
  if (n == 0) return;
  using DT = DeviceType<T>;
  launch(embedding_kernel<FloatTable<DT>>, unsigned(n), threads_for(dim), 0, stream_of(ctx),
         tokens.data<int32_t>(),
         FloatTable<DT>{reinterpret_cast<const DT*>(table.values.data<T>())}, out.data<float>(),
         table.rows(), int(dim));
}

void embedding_quantized(const Tensor& tokens, const Weight& table, const Tensor& out,
                         const DeviceContext& ctx) {
  const auto [n, dim] = check_embedding(tokens, table, out, table.dtype());
  if (n == 0) return;
  with_codes(table, [&]<class Q>(Q) {
    using DQ = DeviceType<Q>;
    const CodesTable<DQ> codes{table.values.raw_data(),
                               table.quantized() ? table.scales.raw_data() : nullptr,
                               int(table.group())};
    launch(embedding_kernel<CodesTable<DQ>>, unsigned(n), threads_for(dim), 0, stream_of(ctx),
           tokens.data<int32_t>(), codes, out.data<float>(), table.rows(), int(dim));
  });
}

template void embedding<float>(const Tensor&, const Weight&, const Tensor&, const DeviceContext&);
template void embedding<f16>(const Tensor&, const Weight&, const Tensor&, const DeviceContext&);
template void embedding<bf16>(const Tensor&, const Weight&, const Tensor&, const DeviceContext&);

}  // namespace kuiper::kernels::cuda
