// The SwiGLU feed-forward's first half: y = silu(norm(x) w_gate^T) * (norm(x) w_up^T).
// n == 1: one GEMV launch (matmul.cuh) in which each warp streams the same rows of both matrices
// and writes silu(g) * u; the input is normalised in each block's prologue. n > 1: the gate's
// GEMM into the workspace and the up projection's into y, one batched cuBLAS call over one
// prepared input (matmul.cuh: gemm_pair_products), then y = silu(gate) * y.
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/matmul.cuh"

namespace kuiper::kernels::cuda {
namespace {

struct GatedShape {
  InputShape s;
  int hidden;
};

GatedShape check_gated(const MatmulInput& in, const Weight& w_gate, const Weight& w_up,
                       const Tensor& y, DType wtype) {
  const InputShape s = check_input("gated_matmul", in);
  const int hidden = check_projection("gated_matmul", w_gate, wtype, Tensor(), y, s.n, s.in);
  check_projection("gated_matmul", w_up, wtype, Tensor(), y, s.n, s.in);
  KUIPER_CHECK(same_storage(w_gate, w_up),
               "gated_matmul: gate and up weights must share group size and scale dtype");
  const char* px = static_cast<const char*>(in.x.raw_data());
  const char* py = static_cast<const char*>(y.raw_data());
  KUIPER_CHECK(py >= px + in.x.bytes() || px >= py + y.bytes(), "gated_matmul: output ",
               y.describe(), " aliases the input");
  return {s, hidden};
}

template <class T>
void gated_gemv(int variant, const MatmulInput& in, const Weight& w_gate, const Weight& w_up,
                const Tensor& y, const Tensor& y_codes, const GatedShape& g,
                const DeviceContext& ctx) {
  GemvParams p{};
  p.x = in.x.data<float>();
  p.norm = in.norm.empty() ? nullptr : in.norm.data<float>();
  p.eps = in.eps;
  p.in = g.s.in;
  p.rows = g.hidden;
  p.n_outputs = 2;
  p.out[0] = gemv_output(w_gate, Tensor(), y);
  p.out[1] = gemv_output(w_up, Tensor(), Tensor());
  p.group = int(w_gate.group());
  p.x_codes = in.codes.empty() ? nullptr : static_cast<const int8_t*>(in.codes.raw_data());
  if (!y_codes.empty()) {
    check_input_codes("gated_matmul", "output codes", y_codes, g.hidden);
    p.y_codes = static_cast<int8_t*>(y_codes.raw_data());
  }
  run_gemv<T, true>(variant, p, ctx);
}

}  // namespace

void gated_gemv_with_variant(int variant, const MatmulInput& in, const Weight& w_gate,
                             const Weight& w_up, const Tensor& y, const Tensor& y_codes,
                             const DeviceContext& ctx) {
  const DType wtype = w_gate.dtype();
  const GatedShape g = check_gated(in, w_gate, w_up, y, wtype);
  KUIPER_CHECK(g.s.n == 1, "gated gemv: ", g.s.n, " rows, expected 1");
  switch (wtype) {
    case DType::kF32: return gated_gemv<float>(variant, in, w_gate, w_up, y, y_codes, g, ctx);
    case DType::kF16: return gated_gemv<f16>(variant, in, w_gate, w_up, y, y_codes, g, ctx);
    case DType::kBF16: return gated_gemv<bf16>(variant, in, w_gate, w_up, y, y_codes, g, ctx);
    case DType::kI8:
    case DType::kQ4:
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ4_K:
    case DType::kQ6_K:
      return with_codes(w_gate, [&]<class Q>(Q) {
        gated_gemv<Q>(variant, in, w_gate, w_up, y, y_codes, g, ctx);
      });
    default: fail("gated gemv: weights of ", dtype_name(wtype));
  }
}

template <class T>
void gated_matmul(const MatmulInput& in, const Weight& w_gate, const Weight& w_up, const Tensor& y,
                  const Tensor& y_codes, const DeviceContext& ctx) {
  const GatedShape g = check_gated(in, w_gate, w_up, y, dtype_of<T>());
  const int n = g.s.n, k = g.s.in;
  if (n == 0 || g.hidden == 0) return;
  if (n == 1)
    return gated_gemv<T>(gemv_default_variant(dtype_of<T>(), true), in, w_gate, w_up, y, y_codes, g,
                         ctx);
  // Workspace: the gate's products (and, where the weights sit side by side, the up
  // projection's right after them, so that one strided GEMM writes both), the prepared input.
  const void* wg = w_gate.values.raw_data();
  const void* wu = w_up.values.raw_data();
  const size_t gate_bytes = (size_t(n) * g.hidden * sizeof(float) + 255) / 256 * 256;
  float* py = y.data<float>();
  const bool paired = pair_gemms() && strides_after(wg, wu);
  const size_t outputs = (paired ? 2 : 1) * gate_bytes;
  char* scratch =
      static_cast<char*>(workspace(ctx, outputs + gemm_input_bytes<T>(in, n, k)).scratch);
  float* gate = reinterpret_cast<float*>(scratch);
  float* up = paired ? reinterpret_cast<float*>(scratch + gate_bytes) : py;
  const GemmInput x = prepare_gemm_input<T>(in, n, k, scratch + outputs, stream_of(ctx));
  const GemmJob jobs[] = {{wg, gate, g.hidden, 0.f}, {wu, up, g.hidden, 0.f}};
  run_gemms<T>(x, jobs, n, k, ctx);
  launch_binary(gate, up, py, int64_t(n) * g.hidden, stream_of(ctx), SwiGluOp{});
}

void gated_matmul_quantized(const MatmulInput& in, const Weight& w_gate, const Weight& w_up,
                            const Tensor& y, const Tensor& y_codes, const DeviceContext& ctx) {
  const GatedShape g = check_gated(in, w_gate, w_up, y, w_gate.dtype());
  const int n = g.s.n, k = g.s.in;
  if (n == 0 || g.hidden == 0) return;
  with_codes(w_gate, [&]<class Q>(Q) {
    if (n == 1)
      return gated_gemv<Q>(gemv_default_variant(w_gate.dtype(), true), in, w_gate, w_up, y, y_codes,
                           g, ctx);
    // Workspace: the gate's products, the prepared input, one dequantized chunk.
    const size_t gate_bytes = (size_t(n) * g.hidden * sizeof(float) + 255) / 256 * 256;
    const size_t x_bytes = (gemm_input_bytes<f16>(in, n, k) + 255) / 256 * 256;
    char* scratch = static_cast<char*>(
        workspace(ctx, gate_bytes + x_bytes + dequant_chunk_bytes(g.hidden, k)).scratch);
    float* gate = reinterpret_cast<float*>(scratch);
    const GemmInput x = prepare_gemm_input<f16>(in, n, k, scratch + gate_bytes, stream_of(ctx));
    auto* chunk = reinterpret_cast<__half*>(scratch + gate_bytes + x_bytes);
    gemm_quantized<DeviceType<Q>>(x, w_gate, nullptr, gate, n, k, g.hidden, false, chunk, ctx);
    gemm_quantized<DeviceType<Q>>(x, w_up, nullptr, y.data<float>(), n, k, g.hidden, false, chunk,
                                  ctx);
    float* py = y.data<float>();
    launch_binary(gate, py, py, int64_t(n) * g.hidden, stream_of(ctx), SwiGluOp{});
  });
}

template void gated_matmul<float>(const MatmulInput&, const Weight&, const Weight&, const Tensor&,
                                  const Tensor&, const DeviceContext&);
template void gated_matmul<f16>(const MatmulInput&, const Weight&, const Weight&, const Tensor&,
                                const Tensor&, const DeviceContext&);
template void gated_matmul<bf16>(const MatmulInput&, const Weight&, const Weight&, const Tensor&,
                                 const Tensor&, const DeviceContext&);

}  // namespace kuiper::kernels::cuda
