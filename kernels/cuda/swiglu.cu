// out = silu(gate) * up, elementwise (the gated feed-forward).
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/elementwise.cuh"

namespace kuiper::kernels::cuda {

void swiglu(const Tensor& gate, const Tensor& up, const Tensor& out, const DeviceContext& ctx) {
  launch_binary("swiglu", gate, up, out, ctx, SwiGluOp{});
}

}  // namespace kuiper::kernels::cuda
