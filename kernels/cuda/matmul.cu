// y[n, out] = x[n, in] * w[out, in]^T (+ bias), activations fp32, weights fp32/fp16/bf16.
//
// n == 1 (decoding) is a GEMV that must stream the weights at close to the memory bandwidth: it
// is nearly all of a decoding step's time. Each warp computes `kRows` output rows; each lane
// issues `kUnroll` 16-byte weight loads per row (coalesced: a warp reads 512 contiguous bytes a
// load) before it uses any, so many loads are in flight, and the pipelined variants issue the
// next batch before using the current one. Matrices with few rows split each row across several
// warps of a block (summed in shared memory) to keep ~16 warps per SM busy. The first batch of
// weights is loaded before the wait for the previous kernel (programmatic dependent launch, see
// common.cuh). Weights bypass L1, while the activation vector, which every warp reads, stays in
// L1. Products accumulate in fp32 and a warp shuffle reduces each row. Rows whose size or address
// do not allow 16-byte loads take a scalar kernel. Nothing here allocates, synchronizes or reads
// values on the host: it can be captured in a graph. Variants and the defaults per weight type
// were chosen with bench/gemv_bench.cpp on an H200 (gemv.h).
//
// n > 1 (prefill) goes to cuBLAS:
//  - fp32 weights: an fp32 GEMM with CUBLAS_COMPUTE_32F_PEDANTIC, which rules out TF32 whatever
//    the handle's math mode, so logits match the fp32 reference to ~1e-5.
//  - fp16/bf16 weights: cuBLAS has no fp32 x 16-bit GEMM, and rounding x to bf16 costs ~4e-3
//    of relative accuracy. So x is split into two 16-bit parts, x = hi + lo (hi = x rounded,
//    lo = the rounding error rounded), and y = W hi + W lo by two tensor-core GEMMs with fp32
//    accumulation: the error left is that of lo (~2^-16 of x for bf16), at twice the tensor-core
//    work, which prefill can afford. The parts live in the context's workspace.
#include <climits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/gemv.h"

namespace kuiper::kernels::cuda {
namespace {

// ---- n == 1 ------------------------------------------------------------------------------

// `split` warps of a block share each group of kRows rows, dividing the row's 16-byte vectors
// among them (more warps for matrices with few rows), and add their sums in shared memory.
// kPipeline: the next batch of loads is issued before the current one is used (twice the
// registers, but a warp never waits with nothing in flight).
template <class T, int kRows, int kUnroll, bool kPipeline>
__global__ void gemv_kernel(const float* __restrict__ x, const T* __restrict__ w,
                            const float* __restrict__ bias, float* __restrict__ y, int out, int in,
                            int split, bool early_trigger) {
  constexpr int kVec = 16 / sizeof(T);  // weights per 16-byte load
  __shared__ float partial[32][kRows];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int group = warp / split, sub = warp - group * split;
  const int row0 = (blockIdx.x * ((blockDim.x >> 5) / split) + group) * kRows;
  if (split == 1 && row0 >= out) return;  // with split > 1 every warp must reach the barrier
  const int nvec = row0 < out ? in / kVec : 0;
  const int stride = 32 * split;  // vectors between a lane's consecutive loads
  const int step = kUnroll * stride;
  const uint4* rows[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r)  // rows past the end re-read the last one; never stored
    rows[r] = reinterpret_cast<const uint4*>(w + int64_t(min(row0 + r, out - 1)) * in);
  const float4* x4 = reinterpret_cast<const float4*>(x);

  using Batch = uint4[kUnroll][kRows];
  auto load = [&](Batch& b, int base) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * stride;
#pragma unroll
      for (int r = 0; r < kRows; ++r) b[u][r] = i < nvec ? load_stream16(rows[r] + i) : uint4{};
    }
  };
  float acc[kRows] = {};
  auto use = [&](const Batch& b, int base) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * stride;
      if (i >= nvec) break;
      float xs[kVec];
#pragma unroll
      for (int k = 0; k < kVec / 4; ++k) {
        const float4 v = __ldg(x4 + int64_t(i) * (kVec / 4) + k);
        xs[4 * k] = v.x;
        xs[4 * k + 1] = v.y;
        xs[4 * k + 2] = v.z;
        xs[4 * k + 3] = v.w;
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        float ws[kVec];
        unpack16<T>(b[u][r], ws);
#pragma unroll
        for (int k = 0; k < kVec; ++k) acc[r] = fmaf(ws[k], xs[k], acc[r]);
      }
    }
  };

  // The weights do not depend on earlier kernels: the first loads go out before the wait.
  int base = sub * 32 + lane;
  Batch cur;
  load(cur, base);
  grid_dependency_wait();
  if (early_trigger) allow_dependent_launch();
  if constexpr (kPipeline) {
    Batch next;
    for (; base < nvec; base += step) {
      if (base + step < nvec) load(next, base + step);
      use(cur, base);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int r = 0; r < kRows; ++r) cur[u][r] = next[u][r];
    }
  } else {
    for (; base < nvec; base += step) {
      use(cur, base);
      if (base + step < nvec) load(cur, base + step);
    }
  }
  if (!early_trigger) allow_dependent_launch();  // only the sums and stores are left

#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = warp_sum(acc[r]);
  if (split > 1) {
    if (lane == 0)
#pragma unroll
      for (int r = 0; r < kRows; ++r) partial[warp][r] = acc[r];
    __syncthreads();
    if (sub != 0) return;
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      for (int s = 1; s < split; ++s) acc[r] += partial[warp + s][r];
  }
  if (lane == 0)
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      if (row0 + r < out) y[row0 + r] = acc[r] + (bias != nullptr ? bias[row0 + r] : 0.f);
}

// Any size and alignment: one warp per row, one element per lane at a time.
template <class T>
__global__ void gemv_scalar_kernel(const float* __restrict__ x, const T* __restrict__ w,
                                   const float* __restrict__ bias, float* __restrict__ y, int out,
                                   int in) {
  allow_dependent_launch();
  grid_dependency_wait();
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= out) return;
  const T* wr = w + int64_t(row) * in;
  float acc = 0.f;
  for (int k = lane; k < in; k += 32) acc = fmaf(to_f32(wr[k]), x[k], acc);
  acc = warp_sum(acc);
  if (lane == 0) y[row] = acc + (bias != nullptr ? bias[row] : 0.f);
}

// Rows per warp, loads per row and batch, warps per block, warps per row (0: auto_split),
// pipelined. Register use grows with rows x loads (x2 when pipelined); 8 loads in flight per lane
// did best on TinyLlama's shapes (bench/gemv_bench.cpp).
constexpr GemvVariant kVariants[] = {
    {1, 4, 4, 0, false}, {1, 4, 4, 0, true}, {1, 2, 4, 0, true}, {2, 2, 4, 0, true},
    {2, 4, 4, 0, false}, {4, 2, 4, 1, false}, {4, 1, 4, 0, true}, {1, 2, 8, 0, false},
    {1, 2, 8, 0, true},
};
constexpr int kNumVariants = int(std::size(kVariants));

struct GemvArgs {
  const float* x;
  const void* w;
  const float* bias;
  float* y;
  int out, in;
  cudaStream_t stream;
};

// Warps per group of rows when the variant leaves it open: the fewest (no shared-memory sum)
// that still give ~16 warps per SM, while each lane keeps at least two loads per row.
int auto_split(const GemvVariant& v, int out, int nvec) {
  const int64_t groups = (out + v.rows_per_warp - 1) / v.rows_per_warp;
  int split = 1;
  while (split < v.warps_per_block && groups * split < 16 * int64_t(sm_count()) &&
         nvec >= 64 * split * 2)
    split *= 2;
  return split;
}

template <class DT, int kV = 0>
void launch_variant(int v, const GemvArgs& a) {
  if constexpr (kV < kNumVariants) {
    if (v != kV) return launch_variant<DT, kV + 1>(v, a);
    constexpr GemvVariant c = kVariants[kV];
    const int split = c.warps_per_row != 0 ? c.warps_per_row
                                           : auto_split(c, a.out, a.in / int(16 / sizeof(DT)));
    const int rows_per_block = c.rows_per_warp * c.warps_per_block / split;
    launch(gemv_kernel<DT, c.rows_per_warp, c.unroll, c.pipelined>,
           blocks_for(a.out, rows_per_block), c.warps_per_block * 32, 0, a.stream, a.x,
           static_cast<const DT*>(a.w), a.bias, a.y, a.out, a.in, split, pdl_mode() == 2);
  } else {
    fail("gemv: no variant ", v);
  }
}

template <class T>
void gemv(int variant, const GemvArgs& a) {
  using DT = DeviceType<T>;
  constexpr int kVec = 16 / sizeof(T);
  if (a.in % kVec == 0 && aligned16(a.w) && aligned16(a.x)) {
    launch_variant<DT>(variant, a);
  } else {
    constexpr int kWarps = 4;
    launch(gemv_scalar_kernel<DT>, blocks_for(a.out, kWarps), kWarps * 32, 0, a.stream, a.x,
           static_cast<const DT*>(a.w), a.bias, a.y, a.out, a.in);
  }
}

// ---- n > 1 -------------------------------------------------------------------------------

__global__ void broadcast_rows_kernel(const float* bias, float* y, int64_t n, int out) {
  allow_dependent_launch();
  grid_dependency_wait();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n * out) y[i] = bias[i % out];
}

template <class DT>
__global__ void split_kernel(const float* x, DT* hi, DT* lo, int64_t count) {
  allow_dependent_launch();
  grid_dependency_wait();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const DT h = from_f32<DT>(x[i]);
  hi[i] = h;
  lo[i] = from_f32<DT>(x[i] - to_f32(h));
}

template <class T>
constexpr cudaDataType_t cuda_data_type() {
  if constexpr (std::is_same_v<T, float>) return CUDA_R_32F;
  if constexpr (std::is_same_v<T, f16>) return CUDA_R_16F;
  return CUDA_R_16BF;
}

template <class T>
void gemm(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y, int n, int in,
          int out, const DeviceContext& ctx) {
  cudaStream_t stream = stream_of(ctx);
  auto handle = static_cast<cublasHandle_t>(ctx.cublas_handle());
  constexpr int kThreads = 256;
  float beta = 0.f;
  if (!bias.empty()) {  // y starts as the bias, and the products are added to it
    launch(broadcast_rows_kernel, blocks_for(int64_t(n) * out, kThreads), kThreads, 0, stream,
           bias.data<float>(), y.data<float>(), int64_t(n), out);
    beta = 1.f;
  }
  // Column-major, cuBLAS sees w as in x out, x as in x n and y as out x n: y = w^T x.
  const float one = 1.f;
  const cudaDataType_t wt = cuda_data_type<T>();
  if constexpr (std::is_same_v<T, float>) {
    KUIPER_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one,
                                     w.data<float>(), wt, in, x.data<float>(), CUDA_R_32F, in,
                                     &beta, y.data<float>(), CUDA_R_32F, out,
                                     CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT));
  } else {
    using DT = DeviceType<T>;
    const int64_t count = int64_t(n) * in;
    const size_t part_bytes = (size_t(count) * sizeof(T) + 255) / 256 * 256;  // lo stays aligned
    char* scratch = static_cast<char*>(workspace(ctx, 2 * part_bytes).scratch);
    DT* hi = reinterpret_cast<DT*>(scratch);
    DT* lo = reinterpret_cast<DT*>(scratch + part_bytes);
    launch(split_kernel<DT>, blocks_for(count, kThreads), kThreads, 0, stream, x.data<float>(), hi,
           lo, count);
    for (const DT* part : {hi, lo}) {
      KUIPER_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one,
                                       w.data<T>(), wt, in, part, wt, in, &beta, y.data<float>(),
                                       CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      beta = 1.f;  // the second part adds to the first
    }
  }
}

struct MatmulShape {
  int n, in, out;
};

MatmulShape check_matmul(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                         DType wtype) {
  expect_tensor("matmul", "input", x, DType::kF32);
  expect_tensor("matmul", "weight", w, wtype);
  expect_tensor("matmul", "output", y, DType::kF32);
  KUIPER_CHECK(w.ndim() == 2, "matmul: weight ", w.describe(), " is not 2-d");
  const int64_t in = w.dim(1), out = w.dim(0);
  KUIPER_CHECK(x.dim(-1) == in, "matmul: input ", x.describe(), " does not match weight ",
               w.describe());
  const int64_t n = x.numel() / std::max<int64_t>(in, 1);
  expect_numel("matmul", "output", y, n * out);
  if (!bias.empty()) {
    expect_tensor("matmul", "bias", bias, DType::kF32);
    expect_numel("matmul", "bias", bias, out);
  }
  KUIPER_CHECK(n <= INT_MAX && in <= INT_MAX && out <= INT_MAX, "matmul: sizes beyond int range");
  return {int(n), int(in), int(out)};
}

}  // namespace

std::span<const GemvVariant> gemv_variants() { return kVariants; }

// r2u4w4a for fp32, r2u2w4ap for 16-bit weights: the best all-round on TinyLlama's shapes.
int gemv_default_variant(DType dtype) { return dtype == DType::kF32 ? 4 : 3; }

void gemv_with_variant(int variant, const Tensor& x, const Tensor& w, const Tensor& bias,
                       const Tensor& y, const DeviceContext& ctx) {
  const MatmulShape s = check_matmul(x, w, bias, y, w.dtype());
  KUIPER_CHECK(s.n == 1, "gemv: ", s.n, " rows, expected 1");
  const GemvArgs a{x.data<float>(), w.raw_data(), bias.empty() ? nullptr : bias.data<float>(),
                   y.data<float>(), s.out, s.in, stream_of(ctx)};
  switch (w.dtype()) {
    case DType::kF32: return gemv<float>(variant, a);
    case DType::kF16: return gemv<f16>(variant, a);
    case DType::kBF16: return gemv<bf16>(variant, a);
    default: fail("gemv: weights of ", dtype_name(w.dtype()));
  }
}

template <class T>
void matmul(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
            const DeviceContext& ctx) {
  const MatmulShape s = check_matmul(x, w, bias, y, dtype_of<T>());
  if (s.n == 0 || s.out == 0) return;
  if (s.n == 1) {
    const GemvArgs a{x.data<float>(), w.raw_data(), bias.empty() ? nullptr : bias.data<float>(),
                     y.data<float>(), s.out, s.in, stream_of(ctx)};
    gemv<T>(gemv_default_variant(dtype_of<T>()), a);
  } else {
    gemm<T>(x, w, bias, y, s.n, s.in, s.out, ctx);
  }
}

template void matmul<float>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                            const DeviceContext&);
template void matmul<f16>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                          const DeviceContext&);
template void matmul<bf16>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const DeviceContext&);

}  // namespace kuiper::kernels::cuda
