#pragma once
// The GEMV variants compiled into matmul.cu and gated_matmul.cu (the n == 1 path of matmul and
// gated_matmul), for the benchmark that chose the defaults (bench/gemv_bench.cpp) and the tests.
// Plain C++: callers need no CUDA headers.
#include <span>

#include "kernels/kernels.h"

namespace kuiper::kernels::cuda {

struct GemvVariant {
  int rows_per_warp;    // output rows one warp computes together (sharing the x loads); gated:
                        // half as many rows of each of the two matrices (at least one)
  int unroll;           // 16-byte weight loads per row that each lane issues before using them
  int warps_per_block;
  int warps_per_row;    // warps sharing one group of rows (splitting it); 0: chosen per shape
  bool pipelined;       // the next batch of loads goes out before the current one is used
};

std::span<const GemvVariant> gemv_variants();
// The variant used for n == 1 with weights of `dtype` (an index into gemv_variants()), by
// matmul or (gated) by gated_matmul, given its input's codes (MatmulInput::codes) or not.
int gemv_default_variant(DType dtype, bool gated = false, bool input_codes = false);
// matmul / gated_matmul for n == 1 through one variant (rows that do not allow 16-byte loads
// take the scalar kernel whatever the variant).
void gemv_with_variant(int variant, const MatmulInput& in, std::span<const MatmulOutput> outs,
                       bool accumulate, const DeviceContext& ctx);
// matmul_rope_store for n == 1 through one variant (the rotation in the GEMV's epilogue where
// the variant's blocks take whole pairs of rows, else rope_store's launch after).
void gemv_rope_store_with_variant(int variant, const MatmulInput& in,
                                  std::span<const MatmulOutput> outs, const RopeStoreArgs& rope,
                                  const DeviceContext& ctx);
void gated_gemv_with_variant(int variant, const MatmulInput& in, const Weight& w_gate,
                             const Weight& w_up, const Tensor& y, const Tensor& y_codes,
                             const DeviceContext& ctx);

// KUIPER_CUDA_GEMV_TRACE=1 (measurement): gemv_trace_reset() clears the stamps of the GEMV
// launches (gemv_trace.cuh) and returns whether tracing is on; gemv_trace_dump() prints those
// recorded since, one line a launch in the order they started.
bool gemv_trace_reset();
void gemv_trace_dump();

}  // namespace kuiper::kernels::cuda
