#pragma once
// Elementwise fp32 ops of two inputs (add, swiglu, gated_matmul's prefill): one thread per 4
// elements with 16-byte loads when every pointer allows it, one per element otherwise. The output
// may alias an input: each element is read before it is written, by the same thread.
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

// out = op(a, b) over `n` elements of device memory, on `stream`.
template <class Op>
void launch_binary(const float* a, const float* b, float* out, int64_t n, cudaStream_t stream,
                   Op op) {
  if (n == 0) return;
  constexpr int kThreads = 256;
  constexpr int64_t kMaxBlocks = 1 << 16;  // the loops stride over anything beyond
  if (n % 4 == 0 && aligned16(a) && aligned16(b) && aligned16(out)) {
    const unsigned blocks = unsigned(std::min<int64_t>(blocks_for(n / 4, kThreads), kMaxBlocks));
    launch(binary_vec4_kernel<Op>, blocks, kThreads, 0, stream,
           reinterpret_cast<const float4*>(a), reinterpret_cast<const float4*>(b),
           reinterpret_cast<float4*>(out), n / 4, op);
  } else {
    const unsigned blocks = unsigned(std::min<int64_t>(blocks_for(n, kThreads), kMaxBlocks));
    launch(binary_kernel<Op>, blocks, kThreads, 0, stream, a, b, out, n, op);
  }
}

// The same on tensors, checked: fp32, equal element counts.
template <class Op>
void launch_binary(const char* name, const Tensor& a, const Tensor& b, const Tensor& out,
                   const DeviceContext& ctx, Op op) {
  expect_tensor(name, "first input", a, DType::kF32);
  expect_tensor(name, "second input", b, DType::kF32);
  expect_tensor(name, "output", out, DType::kF32);
  const int64_t n = a.numel();
  expect_numel(name, "second input", b, n);
  expect_numel(name, "output", out, n);
  launch_binary(a.data<float>(), b.data<float>(), out.data<float>(), n, stream_of(ctx), op);
}

// silu(gate) * up: the gated feed-forward (swiglu, and gated_matmul's prefill).
struct SwiGluOp {
  // expf rather than __expf: the fast one is off by several ulp for large |gate|.
  __device__ float operator()(float gate, float up) const {
    return gate / (1.f + expf(-gate)) * up;
  }
};

}  // namespace kuiper::kernels::cuda
