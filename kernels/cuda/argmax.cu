// out[i] = index of the largest x[i, :], the first one on ties (as the CPU kernel). One block per
// row; each thread scans its strided share, then (value, index) pairs are reduced across the warp
// and the block, smaller index winning on equal values. Rows of whole 16-byte vectors go a float4
// a load, kBatch loads in flight a thread: a strided loop of single loads, each compared before
// the next went out, was a chain of ~31 L2 round trips for TinyLlama's 32000 logits (9 us a
// step) and ~125 for Llama 3's 128256.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace kuiper::kernels::cuda {
namespace {

struct Best {
  float value;
  int64_t index;
};

__device__ __forceinline__ Best better(Best a, Best b) {
  return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
}

__device__ __forceinline__ Best warp_best(Best v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const Best other{__shfl_xor_sync(0xffffffffu, v.value, o),
                     __shfl_xor_sync(0xffffffffu, v.index, o)};
    v = better(v, other);
  }
  return v;
}

constexpr int kBatch = 8;  // float4 loads in flight a thread

__global__ void argmax_kernel(const float* x, int64_t cols, int32_t* out) {
  allow_dependent_launch();
  grid_dependency_wait();
  __shared__ float values[32];
  __shared__ int64_t indices[32];
  const float* row = x + int64_t(blockIdx.x) * cols;
  // Start with "nothing seen" so that a thread without elements never wins.
  Best best{-INFINITY, INT64_MAX};
  if (cols % 4 == 0 && reinterpret_cast<uintptr_t>(row) % 16 == 0) {
    const auto* row4 = reinterpret_cast<const float4*>(row);
    const int64_t n4 = cols / 4;
    for (int64_t base = threadIdx.x; base < n4; base += kBatch * int64_t(blockDim.x)) {
      float4 v[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b)
        if (const int64_t i = base + b * int64_t(blockDim.x); i < n4) v[b] = row4[i];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int64_t i = base + b * int64_t(blockDim.x);
        if (i >= n4) break;
        best = better(best, Best{v[b].x, 4 * i});
        best = better(best, Best{v[b].y, 4 * i + 1});
        best = better(best, Best{v[b].z, 4 * i + 2});
        best = better(best, Best{v[b].w, 4 * i + 3});
      }
    }
  } else {
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) best = better(best, Best{row[i], i});
  }
  best = warp_best(best);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    values[warp] = best.value;
    indices[warp] = best.index;
  }
  __syncthreads();
  if (warp == 0) {
    best = lane < int(blockDim.x >> 5) ? Best{values[lane], indices[lane]}
                                       : Best{-INFINITY, INT64_MAX};
    best = warp_best(best);
    // A row of NaN or -inf only: index 0, as the CPU kernel's scan answers.
    if (lane == 0) out[blockIdx.x] = int32_t(best.index == INT64_MAX ? 0 : best.index);
  }
}

}  // namespace

void argmax(const Tensor& x, const Tensor& out, const DeviceContext& ctx) {
  expect_tensor("argmax", "input", x, DType::kF32);
  expect_tensor("argmax", "output", out, DType::kI32);
  const int64_t cols = x.dim(-1), rows = x.numel() / std::max<int64_t>(cols, 1);
  expect_numel("argmax", "output", out, rows);
  if (rows == 0) return;
  KUIPER_CHECK(cols > 0, "argmax of rows with no elements");
  // A warp per 32 values (per 128 for rows of vectors), up to 1024 threads.
  const int64_t units = cols % 4 == 0 ? cols / 4 : cols;
  const int threads = int(std::clamp<int64_t>((units + 31) / 32 * 32, 32, 1024));
  launch(argmax_kernel, unsigned(rows), threads, 0, stream_of(ctx), x.data<float>(), cols,
         out.data<int32_t>());
}

}  // namespace kuiper::kernels::cuda
