// Projections of one input: for each output, y = norm(x) w^T (+ bias), or y += the same.
// Activations fp32, weights fp32/fp16/bf16, int8/q4 codes with group scales, or ggml's q8_0,
// q4_0, q4_k and q6_k blocks (ggml_blocks.cuh). The GEMV kernels and cuBLAS helpers live in
// matmul.cuh, shared with gated_matmul.cu.
//
// n == 1 (decoding) is a GEMV that must stream the weights at close to the memory bandwidth: it
// is nearly all of a decoding step's time. One launch covers every output (q, k and v of a
// block): their rows form one list of virtual rows, and each warp computes `kRows` of them,
// whichever output each belongs to. Each lane issues `kUnroll` 16-byte weight loads per row
// (coalesced: a warp reads 512 contiguous bytes a load) before it uses any, so many loads are in
// flight, and the pipelined variants issue the next batch before using the current one.
// Matrices with few rows split each row across several warps of a block (summed in shared
// memory) to keep ~16 warps per SM busy. Weights bypass L1, while the activation vector, which
// every warp reads, stays in L1. Products accumulate in fp32 and a warp shuffle reduces each row.
//  - Programmatic dependent launch (common.cuh): each warp loads its first batch of weights
//    before waiting for the previous kernel, so they stream while that kernel finishes.
//  - With `norm`, every block first stages x * norm in shared memory, in one batch of 16-byte
//    loads per thread, while summing x^2 (each block computes the row's norm itself: x is a few
//    KB, read from L2); the main loop reads x from there and the sums are scaled by
//    rsqrt(mean(x^2) + eps) at the end.
//  - The residual add is the epilogue: y = y + x w^T (+ bias) when accumulating.
//  - matmul_rope_store: q, k and v's GEMV also rotates q and k and stores k and v in the cache
//    (rope_store's work), one launch and one hop less a layer; where the variant's blocks do not
//    take whole pairs of rows (or n > 1), rope_store's own launch follows.
// Rows whose size or address do not allow 16-byte loads take a scalar kernel. Nothing here
// allocates (beyond the workspace, which does not move once large enough), synchronizes or reads
// values on the host: it can be captured in a graph. Variants and the defaults per weight type
// were chosen with bench/gemv_bench.cpp on an H200 (gemv.h, NOTES.md).
//
// n > 1 (prefill) goes to cuBLAS, one GEMM per output over one prepared input (normalised first
// when `norm` is given), two neighbouring outputs of one shape (k and v) as one batched call; a
// bias is broadcast into y first (added to it when accumulating) and the GEMM adds to it:
//  - fp32 weights: an fp32 GEMM with CUBLAS_COMPUTE_32F_PEDANTIC, which rules out TF32 whatever
//    the handle's math mode, so logits match the fp32 reference to ~1e-5.
//  - fp16/bf16 weights: cuBLAS has no fp32 x 16-bit GEMM, so x is rounded to the weights' type
//    and one tensor-core GEMM with fp32 accumulation runs per output, as in every peer (vLLM,
//    llama.cpp's cuBLAS path). That costs ~5e-4 (fp16) / ~4e-3 (bf16) of relative accuracy and
//    makes a batched step's results depend slightly on whether a row is decoded alone (the GEMV,
//    fp32 input) or with others. KUIPER_CUDA_GEMM16=split keeps fp32 accuracy instead: x = hi +
//    lo (hi = x rounded, lo = the rounding error rounded) and y = W hi + W lo, leaving the error
//    of lo (~2^-16 of x for bf16), at twice the tensor-core work and weight reads. Batched
//    decoding steps are bound by those reads: TinyLlama's shape at 64 sequences decoded 19,675
//    tok/s that way against 28,409 with one part (H200).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/matmul.cuh"
#include "kernels/paged_batch.h"

namespace kuiper::kernels::cuda {

InputShape check_input(const char* op, const MatmulInput& in) {
  expect_tensor(op, "input", in.x, DType::kF32);
  const int64_t k = in.x.dim(-1), n = in.x.numel() / std::max<int64_t>(k, 1);
  KUIPER_CHECK(k > 0, op, ": input ", in.x.describe(), " has no columns");
  if (!in.norm.empty()) {
    expect_tensor(op, "norm weight", in.norm, DType::kF32);
    expect_numel(op, "norm weight", in.norm, k);
  }
  KUIPER_CHECK(n <= INT_MAX && k <= INT_MAX, op, ": sizes beyond int range");
  if (!in.codes.empty()) check_input_codes(op, "input codes", in.codes, k);
  return {int(n), int(k)};
}

void check_input_codes(const char* op, const char* what, const Tensor& codes, int64_t in) {
  expect_tensor(op, what, codes, DType::kI8);
  KUIPER_CHECK(in % 32 == 0, op, ": ", what, " need a multiple of 32 values, not ", in);
  expect_numel(op, what, codes, input_codes_bytes(in));
  KUIPER_CHECK(aligned16(codes.raw_data()), op, ": ", what, " must be 16-byte aligned");
}

int check_projection(const char* op, const Weight& w, DType wtype, const Tensor& bias,
                     const Tensor& y, int n, int in) {
  expect_tensor(op, "weight", w.values, wtype);
  check_weight(w, op);
  if (w.quantized()) expect_tensor(op, "weight scales", w.scales, w.scales.dtype());
  expect_tensor(op, "output", y, DType::kF32);
  KUIPER_CHECK(w.cols() == in, op, ": weight ", w.describe(), " does not take inputs of ", in);
  const int64_t rows = w.rows();
  KUIPER_CHECK(rows <= INT_MAX, op, ": sizes beyond int range");
  expect_numel(op, "output", y, int64_t(n) * rows);
  if (!bias.empty()) {
    expect_tensor(op, "bias", bias, DType::kF32);
    expect_numel(op, "bias", bias, rows);
  }
  return int(rows);
}

namespace {

bool overlap(const Tensor& a, const Tensor& b) {
  const char* pa = static_cast<const char*>(a.raw_data());
  const char* pb = static_cast<const char*>(b.raw_data());
  return pa < pb + b.bytes() && pb < pa + a.bytes();
}

// The outputs' shapes; throws on any mismatch or an output aliasing the input.
std::vector<int> check_matmul(const MatmulInput& in, std::span<const MatmulOutput> outs,
                              DType wtype, InputShape s) {
  KUIPER_CHECK(!outs.empty(), "matmul: no outputs");
  std::vector<int> rows;
  for (const MatmulOutput& o : outs) {
    rows.push_back(check_projection("matmul", o.weight, wtype, o.bias, o.y, s.n, s.in));
    KUIPER_CHECK(!overlap(o.y, in.x), "matmul: output ", o.y.describe(), " aliases the input");
  }
  return rows;
}

// Returns whether the launch did the rope epilogue asked for (rope.cos_sin: one launch, q, k, v).
template <class T>
bool gemv_matmul(int variant, const MatmulInput& in, std::span<const MatmulOutput> outs,
                 bool accumulate, const std::vector<int>& rows, InputShape s,
                 const DeviceContext& ctx, const RopeStoreTarget& rope = {},
                 bool by_shape = false) {
  bool folded = false;
  for (size_t first = 0; first < outs.size(); first += kMaxGemvOutputs) {
    GemvParams p{};
    p.x = in.x.data<float>();
    p.norm = in.norm.empty() ? nullptr : in.norm.data<float>();
    p.eps = in.eps;
    p.in = s.in;
    p.accumulate = accumulate;
    p.n_outputs = int(std::min<size_t>(kMaxGemvOutputs, outs.size() - first));
    int64_t total = 0;
    for (int j = 0; j < p.n_outputs; ++j) {
      const MatmulOutput& o = outs[first + j];
      p.first_row[j] = int(total);
      p.out[j] = gemv_output(o.weight, o.bias, o.y);
      p.group = int(o.weight.group());
      total += rows[first + j];
    }
    KUIPER_CHECK(total <= INT_MAX, "matmul: sizes beyond int range");
    p.rows = int(total);
    for (int j = p.n_outputs; j <= kMaxGemvOutputs; ++j) p.first_row[j] = p.rows;
    p.x_codes = in.codes.empty() ? nullptr : static_cast<const int8_t*>(in.codes.raw_data());
    const MatmulOutput& o = outs[first];
    if (!o.codes.empty()) {
      KUIPER_CHECK(outs.size() == 1, "matmul: output codes are for a single output");
      check_input_codes("matmul", "output codes", o.codes, rows[first]);
      p.y_codes = static_cast<int8_t*>(o.codes.raw_data());
      if (!o.codes_norm.empty()) {
        expect_tensor("matmul", "output codes' norm", o.codes_norm, DType::kF32);
        expect_numel("matmul", "output codes' norm", o.codes_norm, rows[first]);
        p.y_codes_norm = o.codes_norm.data<float>();
      }
    }
    p.rope = rope;
    folded = run_gemv<T, false>(variant, p, ctx, by_shape);
  }
  return folded;
}

bool gemv_any(int variant, const MatmulInput& in, std::span<const MatmulOutput> outs,
              bool accumulate, const DeviceContext& ctx, const RopeStoreTarget& rope = {},
              bool by_shape = false) {
  const InputShape s = check_input("matmul", in);
  KUIPER_CHECK(!outs.empty(), "matmul: no outputs");
  const DType wtype = outs[0].weight.dtype();
  const std::vector<int> rows = check_matmul(in, outs, wtype, s);
  KUIPER_CHECK(s.n == 1, "gemv: ", s.n, " rows, expected 1");
  switch (wtype) {
    case DType::kF32: return gemv_matmul<float>(variant, in, outs, accumulate, rows, s, ctx, rope);
    case DType::kF16: return gemv_matmul<f16>(variant, in, outs, accumulate, rows, s, ctx, rope);
    case DType::kBF16: return gemv_matmul<bf16>(variant, in, outs, accumulate, rows, s, ctx, rope);
    case DType::kI8:
    case DType::kQ4:
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ4_K:
    case DType::kQ6_K: {
      bool folded = false;
      with_codes(outs[0].weight, [&]<class Q>(Q) {
        folded = gemv_matmul<Q>(variant, in, outs, accumulate, rows, s, ctx, rope, by_shape);
      });
      return folded;
    }
    default: fail("gemv: weights of ", dtype_name(wtype));
  }
}

// matmul_rope_store through GEMV variant `variant` for n == 1 (< 0: the default one).
void matmul_rope_store_variant(int variant, const MatmulInput& in,
                               std::span<const MatmulOutput> outs, const RopeStoreArgs& rope,
                               const DeviceContext& ctx) {
  constexpr const char* op = "matmul_rope_store";
  KUIPER_CHECK(outs.size() == 3, op, ": takes q, k and v, got ", outs.size(), " outputs");
  for (const MatmulOutput& o : outs)
    KUIPER_CHECK(same_storage(o.weight, outs[0].weight) && o.codes.empty(), op,
                 ": q, k and v must share one storage and write no codes");
  const Tensor &q = outs[0].y, &k = outs[1].y, &v = outs[2].y;
  check_paged_batch(op, rope.rows, rope.cache, k.dim(-1), Device::kCUDA);
  const RopeStoreTarget t = check_rope_store(op, q, k, v, rope.rows.positions, rope.rows.slots,
                                             rope.cos_sin, rope.head_dim, rope.cache.k,
                                             rope.cache.v);
  const InputShape s = check_input(op, in);
  if (s.n == 1) {
    const DType wtype = outs[0].weight.dtype();
    const bool by_shape = variant < 0;
    if (by_shape) variant = gemv_default_variant(wtype, false, !in.codes.empty());
    if (gemv_any(variant, in, outs, false, ctx, t, by_shape)) return;
  } else {
    registry().matmul.find(Device::kCUDA, outs[0].weight.dtype())(in, outs, false, ctx);
  }
  registry().paged_rope_store.find(Device::kCUDA, t.cache_dtype)(
      q, k, v, rope.rows, rope.cos_sin, rope.head_dim, rope.cache, ctx);
}

}  // namespace

void matmul_rope_store(const MatmulInput& in, std::span<const MatmulOutput> outs,
                       const RopeStoreArgs& rope, const DeviceContext& ctx) {
  matmul_rope_store_variant(-1, in, outs, rope, ctx);
}

void gemv_rope_store_with_variant(int variant, const MatmulInput& in,
                                  std::span<const MatmulOutput> outs, const RopeStoreArgs& rope,
                                  const DeviceContext& ctx) {
  KUIPER_CHECK(variant >= 0 && variant < kNumGemvVariants, "gemv: no variant ", variant);
  matmul_rope_store_variant(variant, in, outs, rope, ctx);
}

bool gemv_folds_rope() {
  static const bool folds = [] {
    const char* env = std::getenv("KUIPER_CUDA_GEMV_ROPE");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  return folds;
}

std::span<const GemvVariant> gemv_variants() { return kGemvVariants; }

int gemv_grid_share() {
  static const int share = [] {
    const char* env = std::getenv("KUIPER_CUDA_GEMV_GRID");
    if (env == nullptr) return 100;
    if (std::strcmp(env, "chunks") == 0) return 0;
    return std::clamp(std::atoi(env), 1, 100);
  }();
  return share;
}

InputCodes gemv_input_codes() {
  static const InputCodes which = [] {
    const char* env = std::getenv("KUIPER_CUDA_GEMV_CODES");
    if (env != nullptr && std::strcmp(env, "0") == 0) return InputCodes::kNone;
    if (env != nullptr && std::strcmp(env, "ffn") == 0) return InputCodes::kFfn;
    return InputCodes::kAll;
  }();
  return which;
}

namespace {

int env_variant(const char* name) {
  const char* env = std::getenv(name);
  const int v = env != nullptr ? std::atoi(env) : -1;
  return v >= 0 && v < kNumGemvVariants ? v : -1;
}

// KUIPER_CUDA_GEMV's variant, or -1.
int forced_variant() {
  static const int forced = env_variant("KUIPER_CUDA_GEMV");
  return forced;
}

}  // namespace

bool gemv_variant_forced() { return forced_variant() >= 0; }

// r2u4w4a for fp32, r2u2w4ap for 16-bit weights: the best all-round on TinyLlama's shapes.
// KUIPER_CUDA_GEMV=<index> (KUIPER_CUDA_GEMV_GATED for gated_matmul) overrides it, for
// measurements.
int gemv_default_variant(DType dtype, bool gated, bool input_codes) {
  static const int forced_gated = env_variant("KUIPER_CUDA_GEMV_GATED");
  if (gated && forced_gated >= 0) return forced_gated;
  if (forced_variant() >= 0) return forced_variant();
  // int8, q4: r1u4w8 (r1u2w8 for gated_matmul), with the grid filling the GPU
  // (gemv_grid_share): on an H200, Llama-3.1-8B's shape decoded int8 377 / q4 496 tok/s against
  // r1u2w8's 365 / 493 and r4u2w4's 340 / 449, TinyLlama's q4 1496 against 1448, int8 within
  // 1 % (NOTES.md). Given the input's codes, r1u2w8: r1u4w8 then needs 76 (int8) / 116 (q4)
  // registers, so three blocks an SM instead of four, and spills when held to 64; r1u2w8 takes
  // 59 / 64; run_gemv takes r2u2w8 instead where that needs one round of blocks, r1u2w8 two
  // (one_round_variant). ggml's blocks keep r4u2w4 until measured.
  if (is_quantized(dtype)) return gated || input_codes ? 5 : 6;
  if (is_ggml_block(dtype)) return 4;
  return dtype == DType::kF32 ? 3 : 2;
}

void gemv_with_variant(int variant, const MatmulInput& in, std::span<const MatmulOutput> outs,
                       bool accumulate, const DeviceContext& ctx) {
  gemv_any(variant, in, outs, accumulate, ctx);
}

template <class T>
void matmul(const MatmulInput& in, std::span<const MatmulOutput> outs, bool accumulate,
            const DeviceContext& ctx) {
  const InputShape s = check_input("matmul", in);
  const std::vector<int> rows = check_matmul(in, outs, dtype_of<T>(), s);
  if (s.n == 0) return;
  if (s.n == 1) {
    gemv_matmul<T>(gemv_default_variant(dtype_of<T>()), in, outs, accumulate, rows, s, ctx);
    return;
  }
  const size_t bytes = gemm_input_bytes<T>(in, s.n, s.in);
  char* scratch = bytes > 0 ? static_cast<char*>(workspace(ctx, bytes).scratch) : nullptr;
  const GemmInput x = prepare_gemm_input<T>(in, s.n, s.in, scratch, stream_of(ctx));
  std::vector<GemmJob> jobs;
  for (size_t j = 0; j < outs.size(); ++j) {
    if (rows[j] == 0) continue;  // nor a bias launch of no blocks
    const MatmulOutput& o = outs[j];
    float* y = o.y.data<float>();
    const float* bias = o.bias.empty() ? nullptr : o.bias.data<float>();
    jobs.push_back({o.weight.values.raw_data(), y, rows[j],
                    start_output(bias, y, s.n, rows[j], accumulate, stream_of(ctx))});
  }
  run_gemms<T>(x, jobs, s.n, s.in, ctx);
}

// Quantized weights (int8, q4, ggml's blocks): the GEMV reads codes and scales directly; prefill dequantizes
// chunks of rows to fp16 for tensor-core GEMMs over the input in fp16 (as for 16-bit weights).
void matmul_quantized(const MatmulInput& in, std::span<const MatmulOutput> outs, bool accumulate,
                      const DeviceContext& ctx) {
  const InputShape s = check_input("matmul", in);
  KUIPER_CHECK(!outs.empty(), "matmul: no outputs");
  const DType wtype = outs[0].weight.dtype();
  const std::vector<int> rows = check_matmul(in, outs, wtype, s);
  for (const MatmulOutput& o : outs)
    KUIPER_CHECK(same_storage(o.weight, outs[0].weight), "matmul: ", dtype_name(wtype),
                 " weights of one call must share group size and scale dtype");
  if (s.n == 0) return;
  with_codes(outs[0].weight, [&]<class Q>(Q) {
    if (s.n == 1) {
      gemv_matmul<Q>(gemv_default_variant(wtype, false, !in.codes.empty()), in, outs, accumulate,
                     rows, s, ctx, {}, true);
      return;
    }
    const size_t x_bytes = (gemm_input_bytes<f16>(in, s.n, s.in) + 255) / 256 * 256;
    const int max_rows = *std::max_element(rows.begin(), rows.end());
    char* scratch = static_cast<char*>(
        workspace(ctx, x_bytes + dequant_chunk_bytes(max_rows, s.in)).scratch);
    const GemmInput x = prepare_gemm_input<f16>(in, s.n, s.in, scratch, stream_of(ctx));
    auto* chunk = reinterpret_cast<__half*>(scratch + x_bytes);
    for (size_t j = 0; j < outs.size(); ++j) {
      if (rows[j] == 0) continue;
      const MatmulOutput& o = outs[j];
      gemm_quantized<DeviceType<Q>>(x, o.weight, o.bias.empty() ? nullptr : o.bias.data<float>(),
                                    o.y.data<float>(), s.n, s.in, rows[j], accumulate, chunk, ctx);
    }
  });
}

template void matmul<float>(const MatmulInput&, std::span<const MatmulOutput>, bool,
                            const DeviceContext&);
template void matmul<f16>(const MatmulInput&, std::span<const MatmulOutput>, bool,
                          const DeviceContext&);
template void matmul<bf16>(const MatmulInput&, std::span<const MatmulOutput>, bool,
                           const DeviceContext&);

}  // namespace kuiper::kernels::cuda
