// Projections of one input: y = norm(x) w^T (+ bias) (+ y). A few positions (decoding, short
// chunks) stream every output's weights once in a single parallel loop, each weight row reused
// for every position: float weights widened in registers once for all of them (position_dots.h),
// int8 and q4 codes and ggml's blocks multiplied with the positions quantized to int8
// (weight_rows.h). Many positions (prefill) split the output rows into tiles across threads;
// each thread runs OpenBLAS's SGEMM (through armadillo) on its tile, expanding 16-bit or
// quantized weights into a cache-sized fp32 copy first. OpenBLAS itself stays single-threaded:
// two thread pools spinning for the same cores make both crawl.
#include <algorithm>
#include <armadillo>
#include <array>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/vec.h"
#include "kernels/cpu/weight_rows.h"

namespace kuiper::kernels::cpu {
namespace {

constexpr int64_t kTileRows = 256;
// Up to kMaxPositions positions (position_dots.h) a row-by-row pass beats packing the weights
// for a GEMM. Its rows go to the threads in runs, one run at a time to whichever thread is free:
// a thread that falls behind (another process on its core, a slower share of DRAM) takes fewer
// runs instead of keeping the other waiting at the end of the loop. Runs of at most 32 rows (and
// at least eight a thread where the matrix allows) leave little to wait for; on the Zen 3 VM
// they made a TinyLlama layer's single-position projections 5% (fp16) and 11% (fp32) faster
// on 2 threads than an equal static split, and 8 positions as fast as runs of 64 or 128.
constexpr int64_t kMaxRunRows = 32;
int64_t rows_per_run(int64_t rows) {
  return std::clamp(rows / (8 * int64_t(threads())), int64_t(1), kMaxRunRows);
}
// Below this many weights (times positions) a pass is too short to pay for waking other threads.
constexpr int64_t kParallelWork = int64_t(1) << 15;

// Column-major views: a row-major [rows, cols] block is a column-major cols x rows matrix.
arma::fmat view(const float* p, int64_t rows, int64_t cols) {
  return arma::fmat(const_cast<float*>(p), arma::uword(cols), arma::uword(rows), false, true);
}

// Y[:, r0:r0+rows] (+)= X W[r0:r0+rows]^T for one tile of output rows; Y is [n, out].
void gemm_tile(const arma::fmat& X, const float* w_tile, int64_t rows, int64_t in, arma::fmat& Y,
               int64_t r0, bool accumulate) {
  auto block = Y.rows(arma::uword(r0), arma::uword(r0 + rows - 1));
  if (accumulate) block += view(w_tile, rows, in).t() * X;
  else block = view(w_tile, rows, in).t() * X;
}

// Y (+)= X W^T for the rows of W [out, in], into Y [n, out]. fp32 weights are used in place;
// any other storage is expanded tile by tile into a cache-sized fp32 copy.
template <class Rows>
void gemm(const float* x, const Rows& w, float* y, int64_t n, int64_t in, int64_t out, bool accumulate) {
  constexpr bool kInPlace = std::is_same_v<Rows, FloatRows<float>>;
  const arma::fmat X = view(x, n, in);
  arma::fmat Y = view(y, n, out);
  const int64_t tiles = (out + kTileRows - 1) / kTileRows;
#pragma omp parallel
  {
    std::vector<float> expanded(kInPlace ? 0 : static_cast<size_t>(kTileRows * in));
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t r0 = t * kTileRows, rows = std::min(kTileRows, out - r0);
      const float* tile = nullptr;
      if constexpr (kInPlace) {
        tile = w.w + r0 * in;
      } else {
        w.expand(r0, rows, expanded.data());
        tile = expanded.data();
      }
      gemm_tile(X, tile, rows, in, Y, r0, accumulate);
    }
  }
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
  with_weight_rows(outs[0].weight, [&]<class Rows>(const Rows&) {
    if (n <= kMaxPositions) {
      // Every output's rows in one parallel loop: one fork/join per call, not per projection.
      // Rows can be short (288 weights), so nothing is looked up per run of rows but the part
      // it is in; a run never crosses from one part into the next.
      struct Part {
        Rows w;
        const float* bias;
        float* y;
        int64_t first_run, rows;
      };
      std::array<Part, 4> parts{};
      KUIPER_CHECK(outs.size() <= parts.size(), "matmul: at most ", parts.size(), " outputs");
      int64_t total = 0, runs = 0;
      for (const MatmulOutput& o : outs) total += o.weight.rows();
      const int64_t run_rows = rows_per_run(total);
      for (size_t i = 0; i < outs.size(); ++i) {
        const MatmulOutput& o = outs[i];
        parts[i] = {rows_of<Rows>(outs[0].weight, o.weight), o.bias.empty() ? nullptr : o.bias.data<float>(),
                    o.y.data<float>(), runs, o.weight.rows()};
        runs += (o.weight.rows() + run_rows - 1) / run_rows;
      }
      const size_t n_parts = outs.size();
      const auto input = Rows::Input::of(xs, n, k);
#pragma omp parallel for schedule(dynamic) if (total * k * n >= kParallelWork)
      for (int64_t run = 0; run < runs; ++run) {
        size_t i = 0;
        while (i + 1 < n_parts && run >= parts[i + 1].first_run) ++i;
        const Part& p = parts[i];
        const int64_t r0 = (run - p.first_run) * run_rows, rows = std::min(run_rows, p.rows - r0);
        std::array<float, kMaxRunRows * kMaxPositions> dots;
        rows_dots(p.w, input, n, r0, rows, dots.data());
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t row = r0 + r;
          for (int64_t pos = 0; pos < n; ++pos) {
            float v = dots[size_t(r * kMaxPositions + pos)];
            if (p.bias) v += p.bias[row];
            float& y = p.y[pos * p.rows + row];
            y = accumulate ? y + v : v;
          }
        }
      }
      return;
    }
    for (const MatmulOutput& o : outs) {
      const int64_t out = o.weight.rows();
      float* ys = o.y.data<float>();
      gemm(xs, rows_of<Rows>(outs[0].weight, o.weight), ys, n, k, out, accumulate);
      if (o.bias.empty()) continue;
      const float* b = o.bias.data<float>();
      for (int64_t i = 0; i < n; ++i)
        for (int64_t r = 0; r < out; ++r) ys[i * out + r] += b[r];
    }
  });
}

void gated_matmul(const MatmulInput& in, const Weight& w_gate, const Weight& w_up, const Tensor& y,
                  const Tensor& /*y_codes: for CUDA GEMVs*/, const DeviceContext&) {
  const Tensor x = normalized(in);
  const int64_t n = x.dim(0), k = x.dim(1), hidden = w_gate.rows();
  const float* xs = x.data<float>();
  float* ys = y.data<float>();
  const auto silu = [](float g) { return g / (1.f + std::exp(-g)); };
  with_weight_rows(w_gate, [&]<class Rows>(const Rows& wg) {
    const Rows wu = rows_of<Rows>(w_gate, w_up);
    if (n <= kMaxPositions) {
      const auto input = Rows::Input::of(xs, n, k);
      const int64_t run_rows = rows_per_run(hidden), runs = (hidden + run_rows - 1) / run_rows;
#pragma omp parallel for schedule(dynamic) if (2 * hidden * k * n >= kParallelWork)
      for (int64_t run = 0; run < runs; ++run) {
        const int64_t r0 = run * run_rows, rows = std::min(run_rows, hidden - r0);
        std::array<float, kMaxRunRows * kMaxPositions> gate, up;
        rows_dots(wg, input, n, r0, rows, gate.data());
        rows_dots(wu, input, n, r0, rows, up.data());
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t pos = 0; pos < n; ++pos) {
            const size_t i = size_t(r * kMaxPositions + pos);
            ys[pos * hidden + r0 + r] = silu(gate[i]) * up[i];
          }
      }
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
