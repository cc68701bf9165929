// The decoding-step contract of the CUDA kernels (cuda_kernels.h): with n == 1 none of them
// allocates, synchronizes or reads per-token values on the host, so one step captured into a CUDA
// graph serves every later token. A small attention block is run eagerly for several tokens, then
// captured once and replayed with only the position tensor updated between replays (the next
// token comes from the in-graph argmax): the logits must match the eager run bit for bit.
#include <cuda_runtime.h>

#include "kuiper/base/cuda/allocator.h"
#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

constexpr int kVocab = 97, kDim = 288, kHeads = 6, kKvHeads = 2, kHeadDim = 48, kMaxSeq = 256;
constexpr int kSteps = 40;

struct TinyStep {
  explicit TinyStep(std::mt19937& rng) {
    auto weights = [&](int64_t out, int64_t in) {
      return to_cuda(random_cpu(DType::kF16, {out, in}, rng, -0.2f, 0.2f));
    };
    table = weights(kVocab, kDim);
    wq = weights(kHeads * kHeadDim, kDim);
    wk = weights(kKvHeads * kHeadDim, kDim);
    wv = weights(kKvHeads * kHeadDim, kDim);
    wo = weights(kDim, kHeads * kHeadDim);
    classifier = weights(kVocab, kDim);
    norm = to_cuda(random_cpu(DType::kF32, {kDim}, rng, 0.5f, 1.5f));
    cos_sin = to_cuda(random_cpu(DType::kF32, {kMaxSeq, kHeadDim / 2, 2}, rng));
  }

  // One decoding step; every tensor it touches exists beforehand.
  void run(const DeviceContext& ctx) const {
    const auto& r = kernel_registry();
    constexpr Device kCuda = Device::kCUDA;
    constexpr DType kF32 = DType::kF32, kF16 = DType::kF16;
    r.embedding.find(kCuda, kF16)(token, table, x, ctx);
    r.rmsnorm.find(kCuda, kF32)(x, norm, 1e-5f, h, ctx);
    r.matmul.find(kCuda, kF16)(h, wq, Tensor(), q, ctx);
    r.matmul.find(kCuda, kF16)(h, wk, Tensor(), k, ctx);
    r.matmul.find(kCuda, kF16)(h, wv, Tensor(), v, ctx);
    r.rope.find(kCuda, kF32)(q, position, cos_sin, kHeadDim, ctx);
    r.rope.find(kCuda, kF32)(k, position, cos_sin, kHeadDim, ctx);
    r.scatter_rows.find(kCuda, kF32)(k, position, k_cache, ctx);
    r.scatter_rows.find(kCuda, kF32)(v, position, v_cache, ctx);
    r.attention.find(kCuda, kF32)(q, k_cache, v_cache, position, {kHeads, kKvHeads, kHeadDim},
                                  att, ctx);
    r.matmul.find(kCuda, kF16)(att, wo, Tensor(), h, ctx);
    r.add.find(kCuda, kF32)(x, h, x, ctx);
    r.swiglu.find(kCuda, kF32)(x, h, h, ctx);
    r.add.find(kCuda, kF32)(x, h, x, ctx);
    r.matmul.find(kCuda, kF16)(x, classifier, Tensor(), logits, ctx);
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

  Tensor table, wq, wk, wv, wo, classifier, norm, cos_sin;
  Tensor token{DType::kI32, {1}, Device::kCUDA}, position{DType::kI32, {1}, Device::kCUDA};
  Tensor x{DType::kF32, {1, kDim}, Device::kCUDA}, h{DType::kF32, {1, kDim}, Device::kCUDA};
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
