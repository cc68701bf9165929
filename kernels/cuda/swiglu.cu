// out = silu(gate) * up, elementwise (the gated feed-forward).
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/elementwise.cuh"

namespace kuiper::kernels::cuda {
namespace {

struct SwiGluOp {
  // expf rather than __expf: the fast one is off by several ulp for large |gate|.
  __device__ float operator()(float gate, float up) const {
    return gate / (1.f + expf(-gate)) * up;
  }
};

}  // namespace

void swiglu(const Tensor& gate, const Tensor& up, const Tensor& out, const DeviceContext& ctx) {
  launch_binary("swiglu", gate, up, out, ctx, SwiGluOp{});
}

}  // namespace kuiper::kernels::cuda
