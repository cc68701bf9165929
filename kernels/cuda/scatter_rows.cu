// dst[positions[i], :] = src[i, :] (keys and values into the cache), converted to the cache's
// type. One block per source row; the destination row is read on the device. A position outside
// the cache cannot throw there, and writing it would corrupt memory: that row is skipped.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace kuiper::kernels::cuda {
namespace {

template <class T>
__global__ void scatter_rows_kernel(const float* src, const int32_t* positions, T* dst,
                                    int64_t max_rows, int width) {
  allow_dependent_launch();
  grid_dependency_wait();
  const int32_t pos = positions[blockIdx.x];
  if (pos < 0 || pos >= max_rows) return;
  const float* from = src + int64_t(blockIdx.x) * width;
  T* to = dst + int64_t(pos) * width;
  for (int d = threadIdx.x; d < width; d += blockDim.x) to[d] = from_f32<T>(from[d]);
}

}  // namespace

template <class T>
void scatter_rows(const Tensor& src, const Tensor& positions, const Tensor& dst,
                  const DeviceContext& ctx) {
  expect_tensor("scatter_rows", "source", src, DType::kF32);
  expect_tensor("scatter_rows", "positions", positions, DType::kI32);
  expect_tensor("scatter_rows", "destination", dst, dtype_of<T>());
  const int64_t width = dst.dim(-1), n = src.numel() / std::max<int64_t>(width, 1);
  KUIPER_CHECK(src.dim(-1) == width, "scatter_rows: rows of ", src.describe(), " and ",
               dst.describe(), " differ");
  expect_numel("scatter_rows", "positions", positions, n);
  if (n == 0) return;
  const int threads = int(std::min<int64_t>(256, (width + 31) / 32 * 32));
  launch(scatter_rows_kernel<DeviceType<T>>, unsigned(n), threads, 0, stream_of(ctx),
      src.data<float>(), positions.data<int32_t>(), reinterpret_cast<DeviceType<T>*>(dst.data<T>()),
      dst.dim(0), int(width));
}

template void scatter_rows<float>(const Tensor&, const Tensor&, const Tensor&, const DeviceContext&);
template void scatter_rows<f16>(const Tensor&, const Tensor&, const Tensor&, const DeviceContext&);
template void scatter_rows<bf16>(const Tensor&, const Tensor&, const Tensor&, const DeviceContext&);

}  // namespace kuiper::kernels::cuda
