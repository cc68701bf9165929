// Memory-bandwidth benchmark of the CUDA decode kernels.
//  1. The ceiling: a large device-to-device copy (bytes read + bytes written per second).
//  2. Every GEMV variant of kernels/cuda/matmul.cuh on TinyLlama's matrix shapes, fp32/fp16/bf16
//     weights, rotating over enough copies of the matrices that L2 (50-60 MB on an H100/H200)
//     cannot serve them: GB/s of weights streamed. Also q/k/v as one three-output launch and
//     w1/w3 as one gated launch, both with the RMS norm folded in, as the model calls them.
//     Timed as CUDA graphs of 20 launches, as a decoding step runs them.
//  3. A TinyLlama-1.1B-shaped decoding step (22 layers, dim 2048, hidden 5632, 32 heads, 4 KV
//     heads, vocab 32000; random weights) made of the registered kernels as the model calls them
//     (six launches a block: q/k/v with the norm, rope_store, attention, wo accumulating into x,
//     gated w1/w3 with the norm, w2 accumulating; then the classifier with the final norm and
//     argmax), captured in a CUDA graph and replayed: the tokens/s the kernels allow before any
//     model code, the projections alone, and each op alone over all layers.
//  4. A prefill of 512 positions through the same layers (the cuBLAS path and causal attention).
//  5. With --attention-sweep: decoding attention alone (22 layers, us a step) at positions 16 to
//     2000, and the whole fp16 step at 512 and 2000, for each kernel configuration
//     (kernels/cuda/attention.h: the split kernel, the cluster kernel's sizes and warps).
//  6. With --cpu (no GPU needed): the CPU decode GEMV (the registered matmul, n = 1) on
//     TinyLlama's w1 and w2 shapes, at 1 thread and at every thread, for fp16, our int8 (g32)
//     and q4 (g32) and ggml's q8_0, q4_0, q4_k and q6_k: GB/s of weights (and scales) streamed,
//     over copies that together are larger than the last-level cache (--dtype: that one only).
// Usage: gemv_bench [--quick] [--model-only] [--attention-sweep] [--cpu]
//                   [--dtype fp16|fp32|bf16|int8|q4|q8_0|q4_0|q4_k|q6_k].
// int8 and q4 take groups of 32 with fp16 scales; ggml's blocks random codes with scales of 0.01.
// Times are medians of repeated event-timed runs. In the environment, KUIPER_CUDA_PDL=0 turns
// programmatic dependent launch off (2: the GEMV allows the next launch before its main loop),
// KUIPER_CUDA_GEMV=<i> picks the GEMV variant the model uses (KUIPER_CUDA_GEMV_GATED: for
// gated_matmul), KUIPER_CUDA_PDL_ATTENTION=0 launches attention without programmatic dependent
// launch, KUIPER_CUDA_ATTN_CHUNK=<keys> sets the fewest keys of a split of the split kernel, and
// KUIPER_CUDA_ATTN=split|cluster, KUIPER_CUDA_ATTN_CLUSTER, KUIPER_CUDA_ATTN_WARPS and
// KUIPER_CUDA_ATTN_SPREAD pick the decoding attention kernel.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstddef>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/gemv.h"
#include "kernels/kernels.h"
#include "kuiper/base/cuda/allocator.h"
#include "kuiper/base/cuda/check.h"
#include "kuiper/base/device_context.h"
#include "kuiper/base/ggml_blocks.h"

namespace {

using namespace kuiper;
using kernels::registry;

bool quick = false, model_only = false, attention_sweep = false, cpu = false;

// Median milliseconds per call of fn, timed with events over `calls` back-to-back calls.
double time_ms(const DeviceContext& ctx, int calls, const std::function<void(int)>& fn) {
  auto stream = static_cast<cudaStream_t>(ctx.cuda_stream());
  cudaEvent_t start, stop;
  KUIPER_CUDA_CHECK(cudaEventCreate(&start));
  KUIPER_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < std::max(3, calls / 10); ++i) fn(i);  // warm-up
  std::vector<double> runs;
  for (int rep = 0; rep < (quick ? 3 : 7); ++rep) {
    KUIPER_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < calls; ++i) fn(i);
    KUIPER_CUDA_CHECK(cudaEventRecord(stop, stream));
    KUIPER_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    KUIPER_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    runs.push_back(double(ms) / calls);
  }
  KUIPER_CUDA_CHECK(cudaEventDestroy(start));
  KUIPER_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

// Fills a CUDA tensor with uniform values in [-scale, scale): a random host block of 16 MiB
// repeated (contents do not change the timing, zeros could).
void fill_random(const Tensor& t, float scale, const DeviceContext& ctx) {
  static std::vector<float> block = [] {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> dist(-1.f, 1.f);
    std::vector<float> v(size_t(4) << 20);
    for (float& x : v) x = dist(rng);
    return v;
  }();
  const size_t elem = storage_bytes(t.dtype(), 1), per_block = block.size();
  std::vector<char> host(per_block * elem);
  for (size_t i = 0; i < per_block; ++i) {
    const float v = block[i] * scale;
    switch (t.dtype()) {
      case DType::kF32: std::memcpy(&host[i * 4], &v, 4); break;
      case DType::kF16: { const f16 h = to_f16(v); std::memcpy(&host[i * 2], &h, 2); break; }
      case DType::kBF16: { const bf16 h = to_bf16(v); std::memcpy(&host[i * 2], &h, 2); break; }
      default: fail("fill_random: ", dtype_name(t.dtype()));
    }
  }
  char* dst = static_cast<char*>(t.raw_data());
  for (size_t off = 0; off < t.bytes(); off += host.size())
    KUIPER_CUDA_CHECK(cudaMemcpy(dst + off, host.data(), std::min(host.size(), t.bytes() - off),
                                 cudaMemcpyHostToDevice));
  ctx.synchronize();
}

// Values in groups of 32 with fp16 scales (int8, q4), and the scales of ggml's blocks.
constexpr int64_t kBenchGroup = 32;
constexpr float kBenchScale = 0.01f;

// A random weight [rows, cols] of any dtype on `device`: float values uniform in [-0.02, 0.02),
// codes random bytes with scales of kBenchScale (int8, q4: fp16 scales, a tensor of their own;
// ggml's blocks: in the blocks).
Weight bench_weight(DType dtype, int64_t rows, int64_t cols, Device device,
                    const DeviceContext& ctx) {
  std::mt19937 rng(11);
  if (dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16) {
    Tensor t(dtype, {rows, cols}, device);
    if (device == Device::kCUDA) {
      fill_random(t, 0.02f, ctx);
      return t;
    }
    std::uniform_real_distribution<float> dist(-0.02f, 0.02f);
    for (int64_t i = 0; i < t.numel(); ++i) {
      const float v = dist(rng);
      if (dtype == DType::kF32) t.span<float>()[size_t(i)] = v;
      else if (dtype == DType::kF16) t.span<f16>()[size_t(i)] = to_f16(v);
      else t.span<bf16>()[size_t(i)] = to_bf16(v);
    }
    return t;
  }
  Tensor values(dtype, {rows, cols});
  auto* bytes = static_cast<uint8_t*>(values.raw_data());
  for (size_t i = 0; i < values.bytes(); i += 4) {
    const uint32_t r = rng();
    std::memcpy(bytes + i, &r, std::min<size_t>(4, values.bytes() - i));
  }
  if (dtype == DType::kI8)  // codes in [-127, 127], as the format allows
    for (int8_t& v : values.span<int8_t>()) v = std::max<int8_t>(v, -127);
  const f16 scale = to_f16(kBenchScale);
  if (is_ggml_block(dtype)) {
    const size_t stride = size_t(block_bytes(dtype));
    const size_t at = dtype == DType::kQ6_K ? offsetof(BlockQ6_K, d) : 0;
    for (size_t b = 0; b < values.bytes(); b += stride) {
      std::memcpy(bytes + b + at, &scale, sizeof scale);
      if (dtype == DType::kQ4_K) std::memcpy(bytes + b + 2, &scale, sizeof scale);  // dmin
    }
    return device == Device::kCUDA ? values.to(Device::kCUDA) : values;
  }
  Tensor scales(DType::kF16, {rows, cols / kBenchGroup});
  for (f16& v : scales.span<f16>()) v = scale;
  if (device == Device::kCPU) return {values, scales};
  return {values.to(Device::kCUDA), scales.to(Device::kCUDA)};
}

double copy_bandwidth(const DeviceContext& ctx) {
  const size_t bytes = size_t(1) << 30;
  Tensor a(DType::kF32, {int64_t(bytes / 4)}, Device::kCUDA), b(a.dtype(), a.shape(), Device::kCUDA);
  fill_random(a, 1.f, ctx);
  auto stream = static_cast<cudaStream_t>(ctx.cuda_stream());
  const double ms = time_ms(ctx, 10, [&](int) {
    KUIPER_CUDA_CHECK(cudaMemcpyAsync(b.raw_data(), a.raw_data(), bytes, cudaMemcpyDeviceToDevice,
                                      stream));
  });
  return 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
}

// Median milliseconds per replay of what `record` enqueues, captured once as a CUDA graph (after
// one eager run outside the capture: the workspace grows, modules load).
double time_graph_ms(const DeviceContext& ctx, int replays, const std::function<void()>& record) {
  auto stream = static_cast<cudaStream_t>(ctx.cuda_stream());
  record();
  ctx.synchronize();
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  KUIPER_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  record();
  KUIPER_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  KUIPER_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  const double ms = time_ms(ctx, replays, [&](int) {
    KUIPER_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  });
  KUIPER_CUDA_CHECK(cudaGraphExecDestroy(exec));
  KUIPER_CUDA_CHECK(cudaGraphDestroy(graph));
  return ms;
}

using kernels::MatmulInput;
using kernels::MatmulOutput;

std::string variant_name(const kernels::cuda::GemvVariant& v) {
  // rows/warp, unroll, warps/block, warps/row (a: auto), p: pipelined
  char name[32];
  std::snprintf(name, sizeof name, "r%du%dw%d%c%s", v.rows_per_warp, v.unroll, v.warps_per_block,
                v.warps_per_row == 0 ? 'a' : char('0' + v.warps_per_row), v.pipelined ? "p" : "");
  return name;
}

Tensor random_tensor(DType dtype, kuiper::Shape shape, float scale, const DeviceContext& ctx) {
  Tensor t(dtype, shape, Device::kCUDA);
  fill_random(t, scale, ctx);
  return t;
}

void gemv_sweep(const DeviceContext& ctx, const std::vector<DType>& dtypes) {
  enum Kind { kPlain, kNormed, kGated };
  struct MatrixShape {
    const char* name;
    std::vector<int64_t> outs;
    int64_t in;
    Kind kind;
  };
  const MatrixShape shapes[] = {{"w1/w3 5632x2048", {5632}, 2048, kPlain},
                                {"w2 2048x5632", {2048}, 5632, kPlain},
                                {"wq/wo 2048x2048", {2048}, 2048, kPlain},
                                {"wk/wv 256x2048", {256}, 2048, kPlain},
                                {"cls 32000x2048", {32000}, 2048, kPlain},
                                {"qkv+norm 2560x2048", {2048, 256, 256}, 2048, kNormed},
                                {"w13 gated+norm 2x5632", {5632, 5632}, 2048, kGated}};
  const auto variants = kernels::cuda::gemv_variants();
  std::printf(
      "\n== GEMV, weights streamed from HBM (GB/s; * = the default variant; graphs of 20)\n");
  std::printf("%-6s %-22s", "dtype", "shape");
  for (const auto& v : variants) std::printf(" %10s", variant_name(v).c_str());
  std::printf("   us(default)\n");
  for (DType dtype : dtypes) {
    for (const MatrixShape& s : shapes) {
      int64_t rows = 0;
      for (int64_t o : s.outs) rows += o;
      size_t bytes = storage_bytes(dtype, rows * s.in);
      if (is_quantized(dtype)) bytes += size_t(rows * s.in / kBenchGroup) * sizeof(f16);
      // Enough copies that together they are 4-5x an H100/H200's L2: each call reads from HBM.
      const int copies = int(std::max<size_t>(2, (size_t(256) << 20) / bytes + 1));
      std::vector<std::vector<Weight>> ws(static_cast<size_t>(copies));
      for (auto& c : ws)
        for (int64_t o : s.outs) c.push_back(bench_weight(dtype, o, s.in, Device::kCUDA, ctx));
      const Tensor x = random_tensor(DType::kF32, {1, s.in}, 1.f, ctx);
      const Tensor norm = random_tensor(DType::kF32, {s.in}, 1.f, ctx);
      std::vector<Tensor> ys;
      for (int64_t o : s.outs) ys.push_back(Tensor(DType::kF32, {1, o}, Device::kCUDA));
      const MatmulInput in{x, s.kind == kPlain ? Tensor() : norm, 1e-5f};
      std::printf("%-6s %-22s", std::string(dtype_name(dtype)).c_str(), s.name);
      double default_us = 0;
      for (int v = 0; v < int(variants.size()); ++v) {
        constexpr int kCalls = 20;
        const double ms = time_graph_ms(ctx, quick ? 5 : 20, [&] {
          for (int i = 0; i < kCalls; ++i) {
            const auto& w = ws[size_t(i % copies)];
            if (s.kind == kGated) {
              kernels::cuda::gated_gemv_with_variant(v, in, w[0], w[1], ys[0], Tensor(), ctx);
            } else {
              std::vector<MatmulOutput> outs;
              for (size_t j = 0; j < w.size(); ++j) outs.push_back({w[j], Tensor(), ys[j]});
              kernels::cuda::gemv_with_variant(v, in, outs, false, ctx);
            }
          }
        }) / kCalls;
        const bool is_default = v == kernels::cuda::gemv_default_variant(dtype, s.kind == kGated);
        if (is_default) default_us = ms * 1e3;
        std::printf(" %9.0f%s", double(bytes) / (ms * 1e-3) / 1e9, is_default ? "*" : " ");
      }
      std::printf("   %7.2f\n", default_us);
    }
  }
}

// TinyLlama-1.1B's shape, random weights, built from the registered CUDA kernels.
struct TinyLlama {
  static constexpr int64_t kLayers = 22, kDim = 2048, kHidden = 5632, kHeads = 32, kKvHeads = 4,
                           kHeadDim = 64, kVocab = 32000, kMaxSeq = 2048;
  static constexpr float kEps = 1e-5f;
  struct Layer {
    Tensor attn_norm, ffn_norm;
    Weight wq, wk, wv, wo, w1, w2, w3;
    Tensor k_cache, v_cache;
  };

  TinyLlama(DType wtype, const DeviceContext& ctx) : wtype(wtype) {
    auto weight = [&](int64_t out, int64_t in) {
      return bench_weight(wtype, out, in, Device::kCUDA, ctx);
    };
    auto norm = [&] { return random_tensor(DType::kF32, {kDim}, 1.f, ctx); };
    for (int l = 0; l < kLayers; ++l) {
      Layer L;
      L.attn_norm = norm();
      L.ffn_norm = norm();
      L.wq = weight(kHeads * kHeadDim, kDim);
      L.wk = weight(kKvHeads * kHeadDim, kDim);
      L.wv = weight(kKvHeads * kHeadDim, kDim);
      L.wo = weight(kDim, kHeads * kHeadDim);
      L.w1 = weight(kHidden, kDim);
      L.w3 = weight(kHidden, kDim);
      L.w2 = weight(kDim, kHidden);
      L.k_cache = random_tensor(DType::kF32, {kMaxSeq, kKvHeads * kHeadDim}, 1.f, ctx);
      L.v_cache = random_tensor(DType::kF32, {kMaxSeq, kKvHeads * kHeadDim}, 1.f, ctx);
      layers.push_back(std::move(L));
    }
    final_norm = norm();
    classifier = weight(kVocab, kDim);
    cos_sin = random_tensor(DType::kF32, {kMaxSeq, kHeadDim / 2, 2}, 1.f, ctx);
  }

  size_t decode_weight_bytes() const {
    size_t b = classifier.bytes();
    for (const Layer& L : layers)
      for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w1, &L.w2, &L.w3}) b += w->bytes();
    return b;
  }

  struct Activations {
    Tensor x, h, q, k, v, att, logits, next, positions;
    explicit Activations(int64_t n) {
      auto t = [&](int64_t width) { return Tensor(DType::kF32, {n, width}, Device::kCUDA); };
      x = t(kDim), h = t(kHidden), att = t(kHeads * kHeadDim);
      q = t(kHeads * kHeadDim), k = t(kKvHeads * kHeadDim), v = t(kKvHeads * kHeadDim);
      logits = Tensor(DType::kF32, {1, kVocab}, Device::kCUDA);
      next = Tensor(DType::kI32, {1}, Device::kCUDA);
      positions = Tensor(DType::kI32, {n}, Device::kCUDA);
    }
  };

  // The ops of a step, to run all of them or some (ops is a mask of these bits).
  enum Op : unsigned {
    kQkv = 1, kRope = 2, kAttention = 4, kWo = 8, kGated = 16, kW2 = 32, kClassifier = 64,
    kArgmax = 128, kProjections = kQkv | kWo | kGated | kW2 | kClassifier, kAll = 255
  };

  // All layers for the rows of `a` (their positions already in a.positions), as the model calls
  // the kernels.
  void forward(const Activations& a, const DeviceContext& ctx, unsigned ops = kAll) const {
    const auto& r = registry();
    constexpr Device kCuda = Device::kCUDA;
    constexpr DType kF32 = DType::kF32;
    const auto matmul = r.matmul.find(kCuda, wtype);
    const int64_t n = a.x.dim(0);
    for (const Layer& L : layers) {
      if (ops & kQkv) {
        const MatmulOutput qkv[] = {
            {L.wq, Tensor(), a.q}, {L.wk, Tensor(), a.k}, {L.wv, Tensor(), a.v}};
        matmul({a.x, L.attn_norm, kEps}, std::span(qkv), false, ctx);
      }
      if (ops & kRope)
        r.rope_store.find(kCuda, kF32)(a.q, a.k, a.v, a.positions, cos_sin, kHeadDim, L.k_cache,
                                       L.v_cache, ctx);
      if (ops & kAttention)
        r.attention.find(kCuda, kF32)(a.q, L.k_cache, L.v_cache, a.positions,
                                      {kHeads, kKvHeads, kHeadDim}, a.att, ctx);
      if (ops & kWo) {
        const MatmulOutput o[] = {{L.wo, Tensor(), a.x}};
        matmul({a.att, Tensor(), 0.f}, std::span(o), true, ctx);
      }
      if (ops & kGated)
        r.gated_matmul.find(kCuda, wtype)({a.x, L.ffn_norm, kEps}, L.w1, L.w3, a.h, Tensor(), ctx);
      if (ops & kW2) {
        const MatmulOutput down[] = {{L.w2, Tensor(), a.x}};
        matmul({a.h, Tensor(), 0.f}, std::span(down), true, ctx);
      }
    }
    if (ops & kClassifier) {
      const MatmulOutput cls[] = {{classifier, Tensor(), a.logits}};
      matmul({a.x.rows(n - 1, n), final_norm, kEps}, std::span(cls), false, ctx);
    }
    if (ops & kArgmax) r.argmax.find(kCuda, kF32)(a.logits, a.next, ctx);
  }

  DType wtype;
  std::vector<Layer> layers;
  Tensor final_norm;
  Weight classifier;
  Tensor cos_sin;
};

void set_positions(const Tensor& positions, int32_t first, const DeviceContext& ctx) {
  std::vector<int32_t> p(size_t(positions.numel()));
  for (size_t i = 0; i < p.size(); ++i) p[i] = first + int32_t(i);
  KUIPER_CUDA_CHECK(cudaMemcpyAsync(positions.raw_data(), p.data(), p.size() * 4,
                                    cudaMemcpyHostToDevice,
                                    static_cast<cudaStream_t>(ctx.cuda_stream())));
  ctx.synchronize();
}

// Milliseconds per replay of one decoding step (the ops in `ops`) captured as a graph.
double step_ms(const TinyLlama& model, const TinyLlama::Activations& a, unsigned ops,
               const DeviceContext& ctx) {
  return time_graph_ms(ctx, quick ? 10 : 50, [&] { model.forward(a, ctx, ops); });
}

// Decoding attention alone (all layers) and the whole step, for each attention configuration.
void attention_configs(const TinyLlama& model, const TinyLlama::Activations& one,
                       const DeviceContext& ctx) {
  using kernels::cuda::AttentionDecodeConfig;
  const AttentionDecodeConfig saved = kernels::cuda::attention_decode_config();
  std::vector<std::pair<std::string, AttentionDecodeConfig>> configs = {
      {"auto", {}}, {"split", {AttentionDecodeConfig::kSplit, 0, 0, -1}}};
  for (const auto& [cluster, warps, spread] :
       {std::tuple{4, 8, false}, {8, 8, false}, {8, 8, true}, {8, 16, false}, {16, 8, false},
        {16, 8, true}, {16, 16, false}})
    configs.push_back({"cluster " + std::to_string(cluster) + " warps " + std::to_string(warps) +
                           (spread ? " spread" : ""),
                       {AttentionDecodeConfig::kCluster, cluster, warps, spread ? 1 : 0}});
  const int32_t positions[] = {16, 256, 512, 1024, 2000};
  std::printf("\n== decoding attention configurations: attention alone (us a step, 22 layers), "
              "whole %s step (ms)\n%-26s", std::string(dtype_name(model.wtype)).c_str(), "config");
  for (int32_t pos : positions) std::printf("  att@%-4d", pos);
  std::printf("  step@512  step@2000\n");
  for (const auto& [name, config] : configs) {
    kernels::cuda::set_attention_decode_config(config);
    std::printf("%-26s", name.c_str());
    for (int32_t pos : positions) {
      set_positions(one.positions, pos, ctx);
      std::printf("  %8.1f", step_ms(model, one, TinyLlama::kAttention, ctx) * 1e3);
    }
    for (int32_t pos : {512, 2000}) {
      set_positions(one.positions, pos, ctx);
      std::printf("  %8.3f", step_ms(model, one, TinyLlama::kAll, ctx));
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  kernels::cuda::set_attention_decode_config(saved);
}

void model_bench(DType wtype, const DeviceContext& ctx, double copy_gbs) {
  const TinyLlama model(wtype, ctx);
  const double gb = double(model.decode_weight_bytes()) / 1e9;
  std::printf("\n== TinyLlama-1.1B shape, %s weights (%.2f GB read per token)\n",
              std::string(dtype_name(wtype)).c_str(), gb);

  const TinyLlama::Activations one(1);
  fill_random(one.x, 1.f, ctx);
  using M = TinyLlama;
  struct Config {
    const char* name;
    unsigned ops;
    int32_t pos;
  };
  const Config configs[] = {{"projections only", M::kProjections, 512},
                            {"all kernels", M::kAll, 16},
                            {"all kernels", M::kAll, 512},
                            {"all kernels", M::kAll, 2000}};
  for (const Config& c : configs) {
    set_positions(one.positions, c.pos, ctx);
    const double ms = step_ms(model, one, c.ops, ctx);
    std::printf("decode step (graph) %-16s at position %4d: %6.3f ms = %5.0f tokens/s, "
                "weights at %4.0f GB/s (%2.0f%% of the copy)\n",
                c.name, c.pos, ms, 1e3 / ms, gb / (ms * 1e-3), 100.0 * gb / (ms * 1e-3) / copy_gbs);
  }
  // Each op alone over all layers (a graph of 22 launches of it; the classifier and argmax once),
  // at position 512: where the step's time goes.
  set_positions(one.positions, 512, ctx);
  const std::pair<const char*, unsigned> ops[] = {
      {"q/k/v+norm", M::kQkv}, {"rope_store", M::kRope}, {"attention", M::kAttention},
      {"wo+residual", M::kWo}, {"w1/w3 gated+norm", M::kGated}, {"w2+residual", M::kW2},
      {"classifier+norm", M::kClassifier}, {"argmax", M::kArgmax}};
  std::printf("each op alone at position 512 (us per step):");
  for (const auto& [name, op] : ops)
    std::printf("  %s %.1f", name, step_ms(model, one, op, ctx) * 1e3);
  std::printf("\n");
  if (attention_sweep && wtype == DType::kF16) attention_configs(model, one, ctx);

  const int64_t n = 512;
  const TinyLlama::Activations many(n);
  fill_random(many.x, 1.f, ctx);
  set_positions(many.positions, 0, ctx);
  const double ms = time_ms(ctx, quick ? 2 : 5, [&](int) { model.forward(many, ctx); });
  std::printf("prefill of %lld positions (eager): %7.2f ms = %6.0f tokens/s\n", (long long)n, ms,
              double(n) * 1e3 / ms);
}

// The CPU decode GEMV (registered matmul, n = 1) of TinyLlama's w1 and w2 shapes per dtype, at
// 1 thread and at every thread: GB/s of weight bytes (scales included) streamed.
void cpu_sweep(const std::vector<DType>& dtypes) {
  const DeviceContext& ctx = DeviceContext::cpu();
  const int all_threads = kernels::cpu::threads();
  struct MatrixShape {
    const char* name;
    int64_t out, in;
  };
  const MatrixShape shapes[] = {{"w1 5632x2048", 5632, 2048}, {"w2 2048x5632", 2048, 5632}};
  std::printf("== CPU decode GEMV (matmul, n = 1), weights streamed (GB/s; int8/q4 in groups of "
              "32 with fp16 scales)\n%-6s %-14s %8s %10s %10s\n", "dtype", "shape", "MB",
              "1 thread", std::to_string(all_threads).append(" threads").c_str());
  for (DType dtype : dtypes)
    for (const MatrixShape& s : shapes) {
      // Copies that together are ~256 MB, far more than a last-level cache.
      const Weight one = bench_weight(dtype, s.out, s.in, Device::kCPU, ctx);
      const size_t bytes = one.bytes();
      const int copies = int(std::max<size_t>(2, (size_t(256) << 20) / bytes + 1));
      std::vector<Weight> ws{one};
      for (int c = 1; c < copies; ++c) ws.push_back(bench_weight(dtype, s.out, s.in, Device::kCPU, ctx));
      Tensor x(DType::kF32, {1, s.in}), y(DType::kF32, {1, s.out});
      for (float& v : x.span<float>()) v = 0.5f;
      const auto matmul = registry().matmul.find(Device::kCPU, dtype);
      std::printf("%-6s %-14s %8.2f", std::string(dtype_name(dtype)).c_str(), s.name,
                  double(bytes) / 1e6);
      for (int t : {1, all_threads}) {
        kernels::cpu::set_threads(t);
        const int calls = quick ? 2 * copies : 6 * copies;
        std::vector<double> runs;
        for (int rep = 0; rep < (quick ? 3 : 7); ++rep) {
          const auto start = std::chrono::steady_clock::now();
          for (int i = 0; i < calls; ++i) {
            const MatmulOutput o[] = {{ws[size_t(i % copies)], Tensor(), y}};
            matmul({x, Tensor(), 0.f}, std::span(o), false, ctx);
          }
          runs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
                         calls);
        }
        std::sort(runs.begin(), runs.end());
        std::printf(" %10.1f", double(bytes) / runs[runs.size() / 2] / 1e9);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  kernels::cpu::set_threads(all_threads);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<DType> dtypes = {DType::kF16, DType::kF32, DType::kBF16};
  bool dtype_given = false;
  for (int i = 1; i < argc; ++i) {
    quick = quick || std::strcmp(argv[i], "--quick") == 0;
    model_only = model_only || std::strcmp(argv[i], "--model-only") == 0;
    attention_sweep = attention_sweep || std::strcmp(argv[i], "--attention-sweep") == 0;
    cpu = cpu || std::strcmp(argv[i], "--cpu") == 0;
    if (std::strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) {
      const auto d = dtype_from_name(argv[++i]);
      if (!d || *d == DType::kI32) {
        std::fprintf(stderr, "gemv_bench: unknown --dtype %s\n", argv[i]);
        return 1;
      }
      dtypes = {*d};
      dtype_given = true;
    }
  }
  if (cpu) {
    try {
      cpu_sweep(dtype_given ? dtypes
                            : std::vector{DType::kF16, DType::kI8, DType::kQ4, DType::kQ8_0,
                                          DType::kQ4_0, DType::kQ4_K, DType::kQ6_K});
    } catch (const std::exception& e) {
      std::fprintf(stderr, "gemv_bench: %s\n", e.what());
      return 1;
    }
    return 0;
  }
  try {
    const DeviceContext ctx(Device::kCUDA);
    cudaDeviceProp prop{};
    KUIPER_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s, %d SMs, %.0f MiB, L2 %.0f MiB\n", prop.name, prop.multiProcessorCount,
                double(prop.totalGlobalMem) / (1 << 20), double(prop.l2CacheSize) / (1 << 20));
    const double copy_gbs = copy_bandwidth(ctx);
    std::printf("device-to-device copy of 1 GiB: %.0f GB/s (read + write)\n", copy_gbs);
    if (!model_only) gemv_sweep(ctx, dtypes);
    for (DType wtype : dtypes) model_bench(wtype, ctx, copy_gbs);
    const CudaMemoryStats s = cuda_allocator().stats();
    std::printf("\nallocator: peak in use %.2f GB, reserved %.2f GB, %zu cudaMalloc calls\n",
                double(s.peak_bytes_in_use) / 1e9, double(s.bytes_reserved) / 1e9, s.driver_allocs);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gemv_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
