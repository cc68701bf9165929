// Rotary embedding in place, one thread per rotated pair (2j, 2j+1) of a head. The position of
// each row is read on the device, so one launch serves every decoding step of a CUDA graph. A
// position outside the table cannot throw there: that row's pairs become NaN.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace kuiper::kernels::cuda {
namespace {

__global__ void rope_kernel(float* x, const int32_t* positions, const float* cos_sin,
                            int64_t max_pos, int64_t pairs_per_row, int half, int64_t total) {
  allow_dependent_launch();
  grid_dependency_wait();
  const int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= total) return;
  const int64_t row = p / pairs_per_row;
  const int j = int((p % pairs_per_row) % half);  // frequency index inside the head
  float2* pair = reinterpret_cast<float2*>(x) + p;  // rows hold whole pairs: width is even
  const int32_t pos = positions[row];
  if (pos < 0 || pos >= max_pos) {
    *pair = make_float2(__int_as_float(0x7fc00000), __int_as_float(0x7fc00000));
    return;
  }
  const float2 cs = reinterpret_cast<const float2*>(cos_sin)[int64_t(pos) * half + j];
  const float2 v = *pair;
  *pair = make_float2(v.x * cs.x - v.y * cs.y, v.x * cs.y + v.y * cs.x);
}

}  // namespace

void rope(const Tensor& x, const Tensor& positions, const Tensor& cos_sin, int head_dim,
          const DeviceContext& ctx) {
  expect_tensor("rope", "input", x, DType::kF32);
  expect_tensor("rope", "positions", positions, DType::kI32);
  expect_tensor("rope", "cos_sin", cos_sin, DType::kF32);
  KUIPER_CHECK(head_dim > 0 && head_dim % 2 == 0, "rope: head_dim ", head_dim, " is not even");
  const int64_t width = x.dim(-1), n = x.numel() / std::max<int64_t>(width, 1);
  KUIPER_CHECK(width % head_dim == 0, "rope: rows of ", width, " are not whole heads of ",
               head_dim);
  expect_numel("rope", "positions", positions, n);
  const int half = head_dim / 2;
  KUIPER_CHECK(cos_sin.ndim() >= 1 && cos_sin.numel() == cos_sin.dim(0) * half * 2, "rope: cos_sin ",
               cos_sin.describe(), " is not [max_seq, ", half, ", 2]");
  KUIPER_CHECK(reinterpret_cast<uintptr_t>(x.raw_data()) % 8 == 0,
               "rope: input is not 8-byte aligned");  // read as float2 pairs
  const int64_t total = n * width / 2;
  if (total == 0) return;
  constexpr int kThreads = 256;
  launch(rope_kernel, blocks_for(total, kThreads), kThreads, 0, stream_of(ctx),
      x.data<float>(), positions.data<int32_t>(), cos_sin.data<float>(), cos_sin.dim(0), width / 2,
      half, total);
}

}  // namespace kuiper::kernels::cuda
