// Softmax of each row in place. One block per row, three passes over it (max, sum of
// exponentials, scale); the row is re-read from L2, which holds it.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace kuiper::kernels::cuda {
namespace {

__global__ void softmax_kernel(float* x, int64_t cols) {
  allow_dependent_launch();
  grid_dependency_wait();
  __shared__ float scratch[32];
  float* row = x + int64_t(blockIdx.x) * cols;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, row[i]);
  m = block_max(m, scratch);
  float sum = 0.f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) sum += expf(row[i] - m);
  const float inv = 1.f / block_sum(sum, scratch);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) row[i] = expf(row[i] - m) * inv;
}

}  // namespace

void softmax(const Tensor& x, const DeviceContext& ctx) {
  expect_tensor("softmax", "input", x, DType::kF32);
  const int64_t cols = x.dim(-1), rows = x.numel() / std::max<int64_t>(cols, 1);
  if (rows == 0 || cols == 0) return;
  const int threads = int(std::clamp<int64_t>((cols + 31) / 32 * 32, 32, 1024));
  launch(softmax_kernel, unsigned(rows), threads, 0, stream_of(ctx), x.data<float>(), cols);
}

}  // namespace kuiper::kernels::cuda
