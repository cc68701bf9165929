#pragma once
// The GEMV variants compiled into matmul.cu, for the benchmark that chose the default
// (bench/gemv_bench.cpp). Plain C++: callers need no CUDA headers.
#include <span>

#include "kernels/kernels.h"

namespace kuiper::kernels::cuda {

struct GemvVariant {
  int rows_per_warp;    // output rows one warp computes together (sharing the x loads)
  int unroll;           // 16-byte weight loads per row that each lane issues before using them
  int warps_per_block;
  int warps_per_row;    // warps sharing one group of rows (splitting it); 0: chosen per shape
  bool pipelined;       // the next batch of loads goes out before the current one is used
};

std::span<const GemvVariant> gemv_variants();
// The variant matmul uses for n == 1 with weights of `dtype` (an index into gemv_variants()).
int gemv_default_variant(DType dtype);
// y[1, out] = x[1, in] * w^T (+ bias) with one variant; needs in % (16 / sizeof(weight)) == 0.
void gemv_with_variant(int variant, const Tensor& x, const Tensor& w, const Tensor& bias,
                       const Tensor& y, const DeviceContext& ctx);

}  // namespace kuiper::kernels::cuda
