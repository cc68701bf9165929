// The decoding-step contract of the CUDA kernels (cuda_kernels.h): with n == 1 none of them
// allocates, synchronizes or reads per-token values on the host, so one step captured into a CUDA
// graph serves every later token. A small transformer block (the model's six launches: q/k/v
// with the norm folded in, rope_store, attention, wo and w2 accumulating into x, gated w1/w3) and
// the classifier run eagerly for several tokens, then are captured once and replayed with only
// the position tensor updated between replays (the next token comes from the in-graph argmax):
// the logits must match the eager run bit for bit.
#include <cuda_runtime.h>

#include "kuiper/base/cuda/allocator.h"
#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

constexpr int kVocab = 97, kDim = 288, kHidden = 320, kHeads = 6, kKvHeads = 2, kHeadDim = 48;
constexpr int kMaxSeq = 256, kSteps = 40;

// One block of the model's decoding step (kernels.h) and the classifier.
struct TinyStep {
  explicit TinyStep(std::mt19937& rng) {
    auto weights = [&](int64_t out, int64_t in) {
      return to_cuda(random_cpu(DType::kF16, {out, in}, rng, -0.2f, 0.2f));
    };
    auto norm = [&] { return to_cuda(random_cpu(DType::kF32, {kDim}, rng, 0.5f, 1.5f)); };
    table = weights(kVocab, kDim);
    wq = weights(kHeads * kHeadDim, kDim);
    wk = weights(kKvHeads * kHeadDim, kDim);
    wv = weights(kKvHeads * kHeadDim, kDim);
    bq = to_cuda(random_cpu(DType::kF32, {kHeads * kHeadDim}, rng));
    wo = weights(kDim, kHeads * kHeadDim);
    w1 = weights(kHidden, kDim);
    w3 = weights(kHidden, kDim);
    w2 = weights(kDim, kHidden);
    classifier = weights(kVocab, kDim);
    attn_norm = norm();
    ffn_norm = norm();
    final_norm = norm();
    cos_sin = to_cuda(random_cpu(DType::kF32, {kMaxSeq, kHeadDim / 2, 2}, rng));
  }

  // One decoding step; every tensor it touches exists beforehand.
  void run(const DeviceContext& ctx) const {
    const auto& r = kernel_registry();
    constexpr Device kCuda = Device::kCUDA;
    constexpr DType kF32 = DType::kF32, kF16 = DType::kF16;
    const auto matmul = r.matmul.find(kCuda, kF16);
    r.embedding.find(kCuda, kF16)(token, table, x, ctx);
    const MatmulOutput qkv[] = {{wq, bq, q}, {wk, Tensor(), k}, {wv, Tensor(), v}};
    matmul({x, attn_norm, 1e-5f}, std::span(qkv), false, ctx);
    r.rope_store.find(kCuda, kF32)(q, k, v, position, cos_sin, kHeadDim, k_cache, v_cache, ctx);
    r.attention.find(kCuda, kF32)(q, k_cache, v_cache, position, {kHeads, kKvHeads, kHeadDim},
                                  att, ctx);
    const MatmulOutput o[] = {{wo, Tensor(), x}};
    matmul(plain(att), std::span(o), true, ctx);
    r.gated_matmul.find(kCuda, kF16)({x, ffn_norm, 1e-5f}, w1, w3, h, Tensor(), ctx);
    const MatmulOutput down[] = {{w2, Tensor(), x}};
    matmul(plain(h), std::span(down), true, ctx);
    const MatmulOutput cls[] = {{classifier, Tensor(), logits}};
    matmul({x, final_norm, 1e-5f}, std::span(cls), false, ctx);
    r.argmax.find(kCuda, kF32)(logits, token, ctx);  // the next step's input
    r.softmax.find(kCuda, kF32)(logits, ctx);
  }

  void reset(int32_t first_token) const {
    token.copy_from(ints_cpu({first_token}), &cuda_ctx());
    auto stream = static_cast<cudaStream_t>(cuda_ctx().cuda_stream());
    KUIPER_CUDA_CHECK(cudaMemsetAsync(k_cache.raw_data(), 0, k_cache.bytes(), stream));
    KUIPER_CUDA_CHECK(cudaMemsetAsync(v_cache.raw_data(), 0, v_cache.bytes(), stream));
  }
  void set_position(int32_t p) const { position.copy_from(ints_cpu({p}), &cuda_ctx()); }

  Tensor table, wq, wk, wv, bq, wo, w1, w3, w2, classifier, attn_norm, ffn_norm, final_norm,
      cos_sin;
  Tensor token{DType::kI32, {1}, Device::kCUDA}, position{DType::kI32, {1}, Device::kCUDA};
  Tensor x{DType::kF32, {1, kDim}, Device::kCUDA}, h{DType::kF32, {1, kHidden}, Device::kCUDA};
  Tensor q{DType::kF32, {1, kHeads * kHeadDim}, Device::kCUDA};
  Tensor k{DType::kF32, {1, kKvHeads * kHeadDim}, Device::kCUDA};
  Tensor v{DType::kF32, {1, kKvHeads * kHeadDim}, Device::kCUDA};
  Tensor att{DType::kF32, {1, kHeads * kHeadDim}, Device::kCUDA};
  Tensor logits{DType::kF32, {1, kVocab}, Device::kCUDA};
  Tensor k_cache{DType::kF32, {kMaxSeq, kKvHeads * kHeadDim}, Device::kCUDA};
  Tensor v_cache{DType::kF32, {kMaxSeq, kKvHeads * kHeadDim}, Device::kCUDA};
};

TEST(CudaDecodeGraph, ReplayedStepMatchesEagerSteps) {
  KUIPER_REQUIRE_CUDA();
  std::mt19937 rng(101);
  const TinyStep step(rng);
  const DeviceContext& ctx = cuda_ctx();
  auto stream = static_cast<cudaStream_t>(ctx.cuda_stream());

  std::vector<Tensor> eager;
  step.reset(5);
  for (int t = 0; t < kSteps; ++t) {
    step.set_position(t);
    step.run(ctx);
    eager.push_back(to_cpu(step.logits));
  }

  step.reset(5);
  step.set_position(0);
  const size_t driver_allocs = cuda_allocator().stats().driver_allocs;
  cudaGraph_t graph = nullptr;
  // Global mode: any cudaMalloc or synchronization during the capture fails it.
  KUIPER_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  try {
    step.run(ctx);
  } catch (...) {
    cudaStreamEndCapture(stream, &graph);
    throw;
  }
  KUIPER_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  EXPECT_EQ(cuda_allocator().stats().driver_allocs, driver_allocs);
  cudaGraphExec_t exec = nullptr;
  KUIPER_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int t = 0; t < kSteps; ++t) {
    step.set_position(t);
    KUIPER_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    EXPECT_EQ(max_rel_diff(to_cpu(step.logits), eager[size_t(t)]), 0.f) << "step " << t;
  }
  KUIPER_CUDA_CHECK(cudaGraphExecDestroy(exec));
  KUIPER_CUDA_CHECK(cudaGraphDestroy(graph));
}

}  // namespace
}  // namespace kuiper::test
