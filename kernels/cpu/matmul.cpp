// Projections of one input: y = norm(x) w^T (+ bias) (+ y). One position (decoding) is a GEMV
// that streams every output's weights once in a single parallel loop, widening 16-bit weights in
// registers; many positions (prefill) go to OpenBLAS's SGEMM through armadillo, with 16-bit
// weights widened one tile of rows at a time so the fp32 copy stays cache-sized.
#include <armadillo>
#include <array>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/vec.h"

namespace kuiper::kernels::cpu {
namespace {

constexpr int64_t kTileRows = 256;
// Below this many weights a GEMV is too short to pay for waking other threads.
constexpr int64_t kParallelGemvWeights = int64_t(1) << 15;

// Column-major views: a row-major [rows, cols] block is a column-major cols x rows matrix.
arma::fmat view(const float* p, int64_t rows, int64_t cols) {
  return arma::fmat(const_cast<float*>(p), arma::uword(cols), arma::uword(rows), false, true);
}

// Y (+)= X W^T for W [out, in] of storage type T, into Y [n, out].
template <class T>
void gemm(const float* x, const T* w, float* y, int64_t n, int64_t in, int64_t out, bool accumulate) {
  const arma::fmat X = view(x, n, in);
  arma::fmat Y = view(y, n, out);
  if constexpr (std::is_same_v<T, float>) {
    if (accumulate) Y += view(w, out, in).t() * X;
    else Y = view(w, out, in).t() * X;
    return;
  }
  std::vector<float> tile(static_cast<size_t>(kTileRows * in));
  for (int64_t r0 = 0; r0 < out; r0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, out - r0);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) widen(w + (r0 + r) * in, tile.data() + r * in, in);
    auto block = Y.rows(arma::uword(r0), arma::uword(r0 + rows - 1));
    if (accumulate) block += view(tile.data(), rows, in).t() * X;
    else block = view(tile.data(), rows, in).t() * X;
  }
}

template <class T>
const T* weights_of(const Tensor& w) {
  return static_cast<const T*>(w.raw_data());
}

}  // namespace

Tensor normalized(const MatmulInput& in) {
  if (in.norm.empty()) return in.x;
  Tensor xn(DType::kF32, in.x.shape());
  rmsnorm(in.x, in.norm, in.eps, xn, DeviceContext::cpu());
  return xn;
}

void matmul(const MatmulInput& in, std::span<const MatmulOutput> outs, bool accumulate,
            const DeviceContext&) {
  const Tensor x = normalized(in);
  const int64_t n = x.dim(0), k = x.dim(1);
  const float* xs = x.data<float>();
  with_float_type(outs[0].weight.dtype(), [&]<class T>(T) {
    if (n == 1) {
      // Every output's rows in one parallel loop: one fork/join per call, not per projection.
      // Rows can be short (288 weights), so nothing is looked up per row but the part it is in.
      struct Part {
        const T* w;
        const float* bias;
        float* y;
        int64_t first_row;
      };
      std::array<Part, 4> parts{};
      KUIPER_CHECK(outs.size() <= parts.size(), "matmul: at most ", parts.size(), " outputs");
      int64_t total = 0;
      for (size_t i = 0; i < outs.size(); ++i) {
        const MatmulOutput& o = outs[i];
        parts[i] = {weights_of<T>(o.weight), o.bias.empty() ? nullptr : o.bias.data<float>(),
                    o.y.data<float>(), total};
        total += o.weight.dim(0);
      }
      const size_t n_parts = outs.size();
#pragma omp parallel for schedule(static) if (total * k >= kParallelGemvWeights)
      for (int64_t r = 0; r < total; ++r) {
        size_t i = 0;
        while (i + 1 < n_parts && r >= parts[i + 1].first_row) ++i;
        const Part& p = parts[i];
        const int64_t row = r - p.first_row;
        float v = dot(xs, p.w + row * k, k);
        if (p.bias) v += p.bias[row];
        p.y[row] = accumulate ? p.y[row] + v : v;
      }
      return;
    }
    for (const MatmulOutput& o : outs) {
      const int64_t out = o.weight.dim(0);
      float* ys = o.y.data<float>();
      gemm(xs, weights_of<T>(o.weight), ys, n, k, out, accumulate);
      if (o.bias.empty()) continue;
      const float* b = o.bias.data<float>();
      for (int64_t i = 0; i < n; ++i)
        for (int64_t r = 0; r < out; ++r) ys[i * out + r] += b[r];
    }
  });
}

void gated_matmul(const MatmulInput& in, const Tensor& w_gate, const Tensor& w_up, const Tensor& y,
                  const DeviceContext&) {
  const Tensor x = normalized(in);
  const int64_t n = x.dim(0), k = x.dim(1), hidden = w_gate.dim(0);
  const float* xs = x.data<float>();
  float* ys = y.data<float>();
  const auto silu = [](float g) { return g / (1.f + std::exp(-g)); };
  with_float_type(w_gate.dtype(), [&]<class T>(T) {
    const T *wg = weights_of<T>(w_gate), *wu = weights_of<T>(w_up);
    if (n == 1) {
#pragma omp parallel for schedule(static) if (2 * hidden * k >= kParallelGemvWeights)
      for (int64_t r = 0; r < hidden; ++r) ys[r] = silu(dot(xs, wg + r * k, k)) * dot(xs, wu + r * k, k);
      return;
    }
    std::vector<float> gate(static_cast<size_t>(n * hidden));
    gemm(xs, wg, gate.data(), n, k, hidden, false);
    gemm(xs, wu, ys, n, k, hidden, false);
#pragma omp parallel for if (n * hidden > (1 << 16))
    for (int64_t i = 0; i < n * hidden; ++i) ys[i] *= silu(gate[size_t(i)]);
  });
}

}  // namespace kuiper::kernels::cpu
