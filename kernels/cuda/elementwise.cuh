#pragma once
// Elementwise fp32 ops of two inputs (add, swiglu): one thread per 4 elements with 16-byte
// loads when every pointer allows it, one per element otherwise. The output may alias an input:
// each element is read before it is written, by the same thread.
#include "kernels/cuda/common.cuh"

namespace kuiper::kernels::cuda {

template <class Op>
__global__ void binary_vec4_kernel(const float4* a, const float4* b, float4* out, int64_t n4,
                                   Op op) {
  allow_dependent_launch();
  grid_dependency_wait();
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) {
    const float4 x = a[i], y = b[i];
    out[i] = make_float4(op(x.x, y.x), op(x.y, y.y), op(x.z, y.z), op(x.w, y.w));
  }
}

template <class Op>
__global__ void binary_kernel(const float* a, const float* b, float* out, int64_t n, Op op) {
  allow_dependent_launch();
  grid_dependency_wait();
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = op(a[i], b[i]);
}

template <class Op>
void launch_binary(const char* name, const Tensor& a, const Tensor& b, const Tensor& out,
                   const DeviceContext& ctx, Op op) {
  expect_tensor(name, "first input", a, DType::kF32);
  expect_tensor(name, "second input", b, DType::kF32);
  expect_tensor(name, "output", out, DType::kF32);
  const int64_t n = a.numel();
  expect_numel(name, "second input", b, n);
  expect_numel(name, "output", out, n);
  if (n == 0) return;
  constexpr int kThreads = 256;
  constexpr int64_t kMaxBlocks = 1 << 16;  // the loops stride over anything beyond
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  if (n % 4 == 0 && aligned16(pa) && aligned16(pb) && aligned16(po)) {
    const unsigned blocks = unsigned(std::min<int64_t>(blocks_for(n / 4, kThreads), kMaxBlocks));
    launch(binary_vec4_kernel<Op>, blocks, kThreads, 0, stream_of(ctx),
           reinterpret_cast<const float4*>(pa), reinterpret_cast<const float4*>(pb),
           reinterpret_cast<float4*>(po), n / 4, op);
  } else {
    const unsigned blocks = unsigned(std::min<int64_t>(blocks_for(n, kThreads), kMaxBlocks));
    launch(binary_kernel<Op>, blocks, kThreads, 0, stream_of(ctx), pa, pb, po, n, op);
  }
}

}  // namespace kuiper::kernels::cuda
