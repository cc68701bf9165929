// y = x * w^T. One position (decoding) is a GEMV that streams the weights once, widening 16-bit
// weights in registers; many positions (prefill) go to OpenBLAS's SGEMM through armadillo, with
// 16-bit weights widened one tile of rows at a time so the fp32 copy stays cache-sized.
#include <armadillo>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/vec.h"

namespace kuiper::kernels::cpu {
namespace {

constexpr int64_t kTileRows = 256;
// Below this many weights a GEMV is too short to pay for waking other threads.
constexpr int64_t kParallelGemvWeights = int64_t(1) << 18;

template <class T>
void gemv(const float* x, const T* w, float* y, int64_t rows, int64_t in) {
#pragma omp parallel for schedule(static) if (rows * in >= kParallelGemvWeights)
  for (int64_t r = 0; r < rows; ++r) y[r] = dot(x, w + r * in, in);
}

// Column-major views: a row-major [rows, cols] block is a column-major cols x rows matrix.
arma::fmat view(const float* p, int64_t rows, int64_t cols) {
  return arma::fmat(const_cast<float*>(p), arma::uword(cols), arma::uword(rows), false, true);
}

void gemm(const float* x, const float* w, float* y, int64_t n, int64_t in, int64_t out) {
  arma::fmat Y = view(y, n, out);
  Y = view(w, out, in).t() * view(x, n, in);
}

template <class T>
void gemm_widening(const float* x, const T* w, float* y, int64_t n, int64_t in, int64_t out) {
  const arma::fmat X = view(x, n, in);
  arma::fmat Y = view(y, n, out);
  std::vector<float> tile(size_t(kTileRows * in));
  for (int64_t r0 = 0; r0 < out; r0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, out - r0);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) widen(w + (r0 + r) * in, tile.data() + r * in, in);
    Y.rows(arma::uword(r0), arma::uword(r0 + rows - 1)) = view(tile.data(), rows, in).t() * X;
  }
}

}  // namespace

void matmul(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
            const DeviceContext&) {
  const int64_t n = x.dim(0), in = x.dim(1), out = w.dim(0);
  const float* xs = x.data<float>();
  float* ys = y.data<float>();
  with_float_type(w.dtype(), [&]<class T>(T) {
    const T* ws = static_cast<const T*>(w.raw_data());
    if (n == 1) {
      gemv(xs, ws, ys, out, in);
    } else if constexpr (std::is_same_v<T, float>) {
      gemm(xs, ws, ys, n, in, out);
    } else {
      gemm_widening(xs, ws, ys, n, in, out);
    }
  });
  if (!bias.empty()) {
    const float* b = bias.data<float>();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t r = 0; r < out; ++r) ys[i * out + r] += b[r];
  }
}

}  // namespace kuiper::kernels::cpu
