// out[i, :] = x[i, :] * rsqrt(mean(x[i, :]^2) + eps) * weight. One block per row: each thread
// sums the squares of its share of the row (16-byte loads where the row allows), a warp-shuffle
// and shared-memory reduction gives the block the total, then each thread scales its share.
// out may alias x: a thread writes only the elements it has itself read.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace kuiper::kernels::cuda {
namespace {

template <bool kVec4>
__global__ void rmsnorm_kernel(const float* x, const float* weight, float eps, float* out,
                               int dim) {
  allow_dependent_launch();
  grid_dependency_wait();
  __shared__ float scratch[32];
  const float* row = x + int64_t(blockIdx.x) * dim;
  float* row_out = out + int64_t(blockIdx.x) * dim;
  float ss = 0.f;
  if constexpr (kVec4) {
    const float4* r4 = reinterpret_cast<const float4*>(row);
    for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
      const float4 v = r4[i];
      ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += row[i] * row[i];
  }
  const float scale = rsqrtf(block_sum(ss, scratch) / float(dim) + eps);
  if constexpr (kVec4) {
    const float4* r4 = reinterpret_cast<const float4*>(row);
    const float4* w4 = reinterpret_cast<const float4*>(weight);
    float4* o4 = reinterpret_cast<float4*>(row_out);
    for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
      const float4 v = r4[i], w = w4[i];
      o4[i] = make_float4(v.x * scale * w.x, v.y * scale * w.y, v.z * scale * w.z,
                          v.w * scale * w.w);
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += blockDim.x) row_out[i] = row[i] * scale * weight[i];
  }
}

}  // namespace

void rmsnorm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out,
             const DeviceContext& ctx) {
  expect_tensor("rmsnorm", "input", x, DType::kF32);
  expect_tensor("rmsnorm", "weight", weight, DType::kF32);
  expect_tensor("rmsnorm", "output", out, DType::kF32);
  const int64_t dim = x.dim(-1), rows = x.numel() / std::max<int64_t>(dim, 1);
  expect_numel("rmsnorm", "weight", weight, dim);
  expect_numel("rmsnorm", "output", out, x.numel());
  if (rows == 0 || dim == 0) return;
  const float* px = x.data<float>();
  const float* pw = weight.data<float>();
  float* po = out.data<float>();
  const bool vec4 = dim % 4 == 0 && aligned16(px) && aligned16(pw) && aligned16(po);
  const int64_t work = vec4 ? dim / 4 : dim;  // one float4 (or float) per thread where possible
  const int threads = int(std::clamp<int64_t>((work + 31) / 32 * 32, 32, 1024));
  launch(vec4 ? rmsnorm_kernel<true> : rmsnorm_kernel<false>, unsigned(rows), threads, 0,
         stream_of(ctx), px, pw, eps, po, int(dim));
}

}  // namespace kuiper::kernels::cuda
